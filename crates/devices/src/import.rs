//! Device import from the conventions' CSV template (French headers, English aliases).
//!
//! All-or-nothing: the whole file is parsed and checked before anything is stored, and the
//! first error names the line, the column and the reason.

use std::collections::HashMap;
use std::fmt;

use entente_model::{DevAddr, DevEui, JoinEui, Position};

use crate::device::{AbpKeys, Device, DeviceClass, Lifecycle, MacVersion, Profile, UseCase};
use entente_frame::keys::AesKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportError {
    /// 1-based line in the file (the header is line 1); 0 when the file itself is unreadable.
    pub line: usize,
    pub column: Option<String>,
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column `{}`: {}", self.line, c, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Name,
    Serial,
    Reference,
    Equipment,
    Address,
    Geolocation,
    Latitude,
    Longitude,
    Lifecycle,
    Group,
    SubGroup,
    Offer,
    DevEui,
    Class,
    JoinEui,
    AppKey,
    NwkKey,
    Version,
    Activation,
    DevAddr,
    NwkSKey,
    SNwkSIntKey,
    NwkSEncKey,
    AppSKey,
    RxDelay,
    Rx1DrOffset,
    Rx2Dr,
    Quantities,
    UseCase,
    Adr,
    ChannelsProvisioned,
    Decoder,
    MemberKeepsAppSKey,
}

/// Lower case, accents folded, only letters and digits: "Numéro de série" -> "numerodeserie".
fn normalise(h: &str) -> String {
    h.chars()
        .flat_map(|c| c.to_lowercase())
        .map(|c| match c {
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'à' | 'â' | 'ä' => 'a',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            other => other,
        })
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn field_of(header: &str) -> Option<Field> {
    use Field::*;
    Some(match normalise(header).as_str() {
        "nom" | "name" => Name,
        "numerodeserie" | "serial" | "serialnumber" => Serial,
        "reference" => Reference,
        "equipement" | "equipment" => Equipment,
        "adresse" | "address" => Address,
        "geolocalisation" | "geolocation" | "geolocationmode" => Geolocation,
        "latitude" | "lat" => Latitude,
        "longitude" | "lon" | "lng" => Longitude,
        "statutcycledevie" | "cycledevie" | "lifecycle" | "lifecyclestatus" => Lifecycle,
        "groupesousgroupe" | "groupe" | "group" => Group,
        "sousgroupe" | "subgroup" => SubGroup,
        "offre" | "offer" => Offer,
        "deveui" => DevEui,
        "classe" | "class" => Class,
        "appeui" | "joineui" => JoinEui,
        "appkey" => AppKey,
        "nwkkey" => NwkKey,
        "versionlorawan" | "lorawanversion" | "macversion" | "version" => Version,
        "activation" => Activation,
        "devaddr" => DevAddr,
        "nwkskey" | "fnwksintkey" => NwkSKey,
        "snwksintkey" => SNwkSIntKey,
        "nwksenckey" => NwkSEncKey,
        "appskey" => AppSKey,
        "rxdelay" | "delairx" => RxDelay,
        "rx1droffset" => Rx1DrOffset,
        "rx2dr" => Rx2Dr,
        "nombredegrandeurs" | "grandeursmesurees" | "measuredquantities" | "quantities" => Quantities,
        "casdusage" | "usage" | "usecase" => UseCase,
        "adr" => Adr,
        "decodeur" | "decoder" => Decoder,
        "canauxprovisionnes" | "channelsprovisioned" => ChannelsProvisioned,
        "appskeyconserveeparlemembre" | "memberkeepsappskey" => MemberKeepsAppSKey,
        _ => return None,
    })
}

const MANDATORY: &[(Field, &str)] = &[
    (Field::Name, "Nom"),
    (Field::Serial, "Numéro de série"),
    (Field::Geolocation, "Géolocalisation"),
    (Field::Latitude, "Latitude"),
    (Field::Longitude, "Longitude"),
    (Field::Group, "Groupe / sous-groupe"),
    (Field::DevEui, "Dev EUI"),
    (Field::Class, "Classe"),
];

/// Options of an import: the host's default group and profile for unspecified columns.
#[derive(Debug, Clone)]
pub struct ImportDefaults {
    pub group: String,
    pub profile: Profile,
    /// Decoder names the node knows (the delivery catalogue); None accepts any name.
    pub decoders: Option<&'static [&'static str]>,
}

impl Default for ImportDefaults {
    fn default() -> Self {
        ImportDefaults {
            group: "default".into(),
            profile: Profile::default(),
            decoders: None,
        }
    }
}

/// Parses a whole CSV file into device records, or the first error.
pub fn parse_csv(text: &str, defaults: &ImportDefaults) -> Result<Vec<Device>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // spreadsheet BOM
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.matches(';').count() > first.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ImportError {
            line: 1,
            column: None,
            reason: format!("unreadable header: {e}"),
        })?
        .clone();
    let mut columns: HashMap<Field, (usize, String)> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let Some(f) = field_of(h) else {
            return Err(ImportError {
                line: 1,
                column: Some(h.into()),
                reason: "unknown column".into(),
            });
        };
        if columns.insert(f, (i, h.to_string())).is_some() {
            return Err(ImportError {
                line: 1,
                column: Some(h.into()),
                reason: "column given twice".into(),
            });
        }
    }
    for (f, name) in MANDATORY {
        if !columns.contains_key(f) {
            return Err(ImportError {
                line: 1,
                column: Some((*name).into()),
                reason: "mandatory column missing".into(),
            });
        }
    }
    let mut devices = Vec::new();
    let mut seen = HashMap::new();
    for (n, rec) in reader.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| ImportError {
            line: e.position().map(|p| p.line() as usize).unwrap_or(line),
            column: None,
            reason: format!("{e}"),
        })?;
        let row = Row {
            rec: &rec,
            columns: &columns,
            line,
        };
        let d = row.device(defaults)?;
        if let Some(prev) = seen.insert(d.dev_eui, line) {
            return Err(row.err(
                Field::DevEui,
                format!("DevEUI {} already on line {prev}", d.dev_eui),
            ));
        }
        devices.push(d);
    }
    if devices.is_empty() {
        return Err(ImportError {
            line: 2,
            column: None,
            reason: "the file has no device".into(),
        });
    }
    Ok(devices)
}

struct Row<'a> {
    rec: &'a csv::StringRecord,
    columns: &'a HashMap<Field, (usize, String)>,
    line: usize,
}

impl Row<'_> {
    fn get(&self, f: Field) -> Option<&str> {
        let (i, _) = self.columns.get(&f)?;
        self.rec.get(*i).filter(|v| !v.is_empty())
    }

    fn err(&self, f: Field, reason: impl Into<String>) -> ImportError {
        let column = self
            .columns
            .get(&f)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| format!("{f:?}"));
        ImportError {
            line: self.line,
            column: Some(column),
            reason: reason.into(),
        }
    }

    fn required(&self, f: Field) -> Result<&str, ImportError> {
        self.get(f).ok_or_else(|| self.err(f, "mandatory value is empty"))
    }

    fn parse<T: std::str::FromStr>(&self, f: Field) -> Result<Option<T>, ImportError>
    where
        T::Err: fmt::Display,
    {
        match self.get(f) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| self.err(f, e.to_string())),
        }
    }

    fn number(&self, f: Field) -> Result<f64, ImportError> {
        // French spreadsheets write decimals with a comma.
        let v = self.required(f)?.replace(',', ".");
        v.parse::<f64>()
            .map_err(|_| self.err(f, format!("{v:?} is not a number")))
    }

    fn flag(&self, f: Field) -> Result<Option<bool>, ImportError> {
        match self.get(f).map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "oui" | "vrai" => Ok(Some(true)),
                "0" | "false" | "no" | "non" | "faux" => Ok(Some(false)),
                _ => Err(self.err(f, format!("{v:?} is not yes/no"))),
            },
        }
    }

    fn device(&self, defaults: &ImportDefaults) -> Result<Device, ImportError> {
        use Field as F;
        let dev_eui: DevEui = self
            .required(F::DevEui)?
            .parse()
            .map_err(|e| self.err(F::DevEui, format!("{e}")))?;
        let class = match self
            .required(F::Class)?
            .to_ascii_uppercase()
            .trim_start_matches("CLASS")
            .trim()
        {
            "A" => DeviceClass::A,
            "C" => DeviceClass::C,
            "B" => return Err(self.err(F::Class, "Class B is not supported; use A or C")),
            other => return Err(self.err(F::Class, format!("{other:?} is not A or C"))),
        };
        let position = Position {
            latitude: self.number(F::Latitude)?,
            longitude: self.number(F::Longitude)?,
            altitude: None,
        }
        .validate()
        .map_err(|e| self.err(F::Latitude, e.to_string()))?;
        let (group, sub_group) = {
            let g = self.get(F::Group).unwrap_or(&defaults.group);
            match g.split_once('/') {
                Some((a, b)) => (a.trim().to_string(), b.trim().to_string()),
                None => (g.to_string(), self.get(F::SubGroup).unwrap_or("").to_string()),
            }
        };
        let mut profile = defaults.profile.clone();
        profile.class = class;
        if let Some(v) = self.parse::<MacVersion>(F::Version)? {
            profile.mac_version = v;
        }
        if let Some(v) = self.parse::<u8>(F::RxDelay)? {
            profile.rx_delay = v;
        }
        if let Some(v) = self.parse::<u8>(F::Rx1DrOffset)? {
            profile.rx1_dr_offset = v;
        }
        if let Some(v) = self.parse::<u8>(F::Rx2Dr)? {
            profile.rx2_dr = v;
        }
        if let Some(v) = self.parse::<u8>(F::Quantities)? {
            profile.measured_quantities = v;
        }
        if let Some(v) = self.flag(F::Adr)? {
            profile.adr = v;
        }
        if let Some(v) = self.get(F::Decoder) {
            if let Some(known) = defaults.decoders
                && !known.contains(&v)
            {
                return Err(self.err(
                    F::Decoder,
                    format!("unknown decoder {v:?} (known: {})", known.join(", ")),
                ));
            }
            profile.decoder = Some(v.to_string());
        }
        if let Some(v) = self.flag(F::ChannelsProvisioned)? {
            profile.channels_provisioned = v;
        }
        if let Some(u) = self.get(F::UseCase) {
            profile.use_case = match normalise(u).as_str() {
                "watermetering" | "telereleveeau" | "comptageeau" | "eau" | "water" => UseCase::WaterMetering,
                "other" | "autre" | "autres" => UseCase::Other,
                _ => return Err(self.err(F::UseCase, format!("{u:?} is not water-metering or other"))),
            };
        }
        let key = |f: Field| self.parse::<AesKey>(f);
        let member_keeps = self.flag(F::MemberKeepsAppSKey)?.unwrap_or(false);
        let abp = match self.get(F::Activation).map(|v| v.to_ascii_uppercase()) {
            Some(a) if a == "ABP" => Some(AbpKeys {
                dev_addr: self
                    .required(F::DevAddr)?
                    .parse::<DevAddr>()
                    .map_err(|e| self.err(F::DevAddr, e.to_string()))?,
                nwk_s_key: key(F::NwkSKey)?
                    .ok_or_else(|| self.err(F::NwkSKey, "an ABP device needs its NwkSKey"))?,
                s_nwk_s_int_key: key(F::SNwkSIntKey)?,
                nwk_s_enc_key: key(F::NwkSEncKey)?,
                app_s_key: key(F::AppSKey)?,
            }),
            Some(a) if a == "OTAA" => None,
            None => None,
            Some(a) => return Err(self.err(F::Activation, format!("{a:?} is not OTAA or ABP"))),
        };
        let join_eui = match abp {
            Some(_) => self.parse::<JoinEui>(F::JoinEui)?,
            None => Some(
                self.required(F::JoinEui)?
                    .parse::<JoinEui>()
                    .map_err(|e| self.err(F::JoinEui, e.to_string()))?,
            ),
        };
        let d = Device {
            dev_eui,
            name: self.required(F::Name)?.to_string(),
            serial: self.required(F::Serial)?.to_string(),
            reference: self.get(F::Reference).unwrap_or("").to_string(),
            equipment: self.get(F::Equipment).unwrap_or("").to_string(),
            address: self.get(F::Address).unwrap_or("").to_string(),
            geolocation_mode: self
                .required(F::Geolocation)?
                .parse()
                .map_err(|e: String| self.err(F::Geolocation, e))?,
            position: Some(position),
            lifecycle: self.parse::<Lifecycle>(F::Lifecycle)?.unwrap_or(Lifecycle::None),
            group,
            sub_group,
            offer: self.get(F::Offer).unwrap_or("").to_string(),
            join_eui,
            app_key: key(F::AppKey)?,
            nwk_key: key(F::NwkKey)?,
            abp,
            member_keeps_app_s_key: member_keeps,
            profile,
        };
        d.validate().map_err(|e| {
            let col = if e.contains("AppKey") {
                F::AppKey
            } else if e.contains("NwkKey") {
                F::NwkKey
            } else if e.contains("JoinEUI") {
                F::JoinEui
            } else {
                F::DevEui
            };
            self.err(col, e)
        })?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FR: &str = "Nom;Numéro de série;Référence;Équipement;Adresse;Géolocalisation;Latitude;Longitude;Statut cycle de vie;Groupe / sous-groupe;Offre;Dev EUI;Classe;App EUI;App Key\n\
Compteur 1;SN-001;WM-15;Compteur eau;1 rue de Blois, Blois;MANUAL;47,5861;1,3359;SERVICE;AGGLOPOLYS/Eau;Réseau;70B3D5E75E000001;A;70B3D5E75E000000;2B7E151628AED2A6ABF7158809CF4F3C\n\
Lampadaire 7;SN-007;;Luminaire;;NONE;47.59;1.33;STOCK;AGGLOPOLYS/Eclairage;;70B3D5E75E000007;C;70B3D5E75E000000;2B7E151628AED2A6ABF7158809CF4F3C\n";

    #[test]
    fn reads_the_french_template() {
        let d = parse_csv(FR, &ImportDefaults::default()).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "Compteur 1");
        assert_eq!(d[0].group, "AGGLOPOLYS");
        assert_eq!(d[0].sub_group, "Eau");
        assert_eq!(d[0].position.unwrap().latitude, 47.5861);
        assert_eq!(d[1].profile.class, DeviceClass::C);
        assert_eq!(d[1].lifecycle, Lifecycle::Stock);
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad = FR.replace("70B3D5E75E000007;C", "70B3D5E75E00000;C");
        let e = parse_csv(&bad, &ImportDefaults::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (3, Some("Dev EUI")));
        let bad = FR.replace(";A;", ";B;");
        let e = parse_csv(&bad, &ImportDefaults::default()).unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (2, Some("Classe")));
        let e = parse_csv("name,serial\nx,y\n", &ImportDefaults::default()).unwrap_err();
        assert_eq!(e.line, 1);
        let dup = format!("{FR}{}", FR.lines().nth(1).unwrap());
        let e = parse_csv(&dup, &ImportDefaults::default()).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.to_string().contains("already on line 2"), "{e}");
    }

    #[test]
    fn english_aliases_and_abp() {
        let csv = "name,serial,geolocation,latitude,longitude,group,deveui,class,activation,devaddr,nwkskey,appskey,version\n\
m,s,NONE,0,0,g,0000000000000001,A,ABP,26011234,000102030405060708090a0b0c0d0e0f,000102030405060708090a0b0c0d0e0f,1.0.2\n";
        let d = parse_csv(csv, &ImportDefaults::default()).unwrap();
        assert_eq!(d[0].abp.as_ref().unwrap().dev_addr, DevAddr(0x2601_1234));
        assert_eq!(d[0].profile.mac_version, MacVersion::V1_0_2);
    }
}
