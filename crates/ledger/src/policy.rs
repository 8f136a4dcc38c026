//! Billing rules as the conventions write them, loaded from `policies/*.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::money::Cents;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("no billing policy {0:?} under the policies directory")]
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingPolicy {
    /// `creditor/name`, as agreements reference it.
    pub id: String,
    pub creditor: String,
    /// VAT rate in basis points (2 000 = 20 %).
    pub vat_rate_bp: u32,
    pub payment_days: u32,
    pub rule: Rule,
    #[serde(default)]
    pub penalties: Option<Penalties>,
    #[serde(default)]
    pub subscription: Option<Subscription>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// Yearly fee nbO x taO: objects declared on 1 January of the year, times the
    /// yearly tariff per object voted by the host (001 art. 6).
    AnnualDeclared { tariff_per_object_cents: i64 },
    /// Catalogue prices per service and use case, per year and counting unit, billed
    /// monthly pro rata from the first full month after the first communication, any
    /// started month due (004 art. 5.2).
    Catalogue {
        /// A device measuring up to this many quantities is one unit (000 annex 1).
        quantities_per_unit: u32,
        prices: Vec<Price>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub service: String,
    pub use_case: String,
    pub cents_per_year: i64,
}

/// What the network operator owes when it fails (004 art. 7), capped at a share of the
/// year's amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Penalties {
    pub per_non_conformity_cents: i64,
    pub per_week_of_delay_cents: i64,
    /// Cap as basis points of the year's amount excl. VAT (2 000 = 20 %).
    pub cap_bp: u32,
}

/// Yearly subscription of a non-member: a rate per inhabitant, capped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub cents_per_inhabitant: i64,
    pub cap_cents: i64,
}

/// The highest price a policy may set, in cents (ten billion euros): a year's amount for
/// any number of devices then stays far inside what cents can count.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000_000;

impl BillingPolicy {
    pub fn parse(text: &str, path: &str) -> Result<BillingPolicy, PolicyError> {
        let p: BillingPolicy = toml::from_str(text).map_err(|e| PolicyError::Invalid {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let bad = |reason: &str| PolicyError::Invalid {
            path: path.into(),
            reason: reason.into(),
        };
        if p.vat_rate_bp > 10_000 {
            return Err(bad("vat_rate_bp is over 100 %"));
        }
        match &p.rule {
            Rule::AnnualDeclared {
                tariff_per_object_cents,
            } if !(0..=MAX_PRICE_CENTS).contains(tariff_per_object_cents) => {
                return Err(bad("a tariff is 0 to 10 000 000 000 EUR"));
            }
            Rule::Catalogue {
                quantities_per_unit: 0,
                ..
            } => {
                return Err(bad("quantities_per_unit must be at least 1"));
            }
            Rule::Catalogue { prices, .. }
                if prices
                    .iter()
                    .any(|p| !(0..=MAX_PRICE_CENTS).contains(&p.cents_per_year)) =>
            {
                return Err(bad("a price is 0 to 10 000 000 000 EUR"));
            }
            _ => {}
        }
        Ok(p)
    }

    /// `policies/<creditor>/<name>.toml` for the reference `creditor/name`.
    pub fn load(dir: &Path, reference: &str) -> Result<BillingPolicy, PolicyError> {
        let ok = reference.split('/').all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
        if !ok || reference.split('/').count() != 2 {
            return Err(PolicyError::Unknown(reference.into()));
        }
        let path = dir.join(format!("{reference}.toml"));
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PolicyError::Unknown(reference.into()),
            _ => PolicyError::Io {
                path: path.display().to_string(),
                source: e,
            },
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn price(&self, service: &str, use_case: &str) -> Option<Cents> {
        match &self.rule {
            Rule::Catalogue { prices, .. } => prices
                .iter()
                .find(|p| p.service == service && p.use_case == use_case)
                .map(|p| Cents(p.cents_per_year)),
            Rule::AnnualDeclared { .. } => None,
        }
    }
}
