use serde::{Deserialize, Serialize};

use crate::ModelError;

/// A WGS84 position, as a gateway reports it or an operator enters it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
    /// Metres above sea level, when known. (Never skipped when serialising: the store's
    /// binary encoding is positional.)
    #[serde(default)]
    pub altitude: Option<f64>,
}

impl Position {
    /// Refuses coordinates off the globe (and NaN), which GPS-less gateways sometimes send.
    pub fn validate(self) -> Result<Self, ModelError> {
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err(ModelError::BadPosition(format!(
                "latitude {} is outside -90..90",
                self.latitude
            )));
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err(ModelError::BadPosition(format!(
                "longitude {} is outside -180..180",
                self.longitude
            )));
        }
        if let Some(a) = self.altitude
            && !a.is_finite()
        {
            return Err(ModelError::BadPosition(format!("altitude {a} is not a number")));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ranges() {
        let ok = Position {
            latitude: 47.39,
            longitude: 0.69,
            altitude: Some(60.0),
        };
        assert!(ok.validate().is_ok());
        assert!(Position { latitude: 91.0, ..ok }.validate().is_err());
        assert!(
            Position {
                longitude: f64::NAN,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            Position {
                altitude: Some(f64::INFINITY),
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
