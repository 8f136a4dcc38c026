//! Recipients: where a device group's data goes. Several per group, changeable any time.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecipientKind {
    /// POST of each message as JSON; 2xx deletes it, anything else is retried.
    HttpPush {
        url: String,
        /// Sent as the Authorization header, e.g. "Bearer ...".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization: Option<String>,
    },
    /// The member's connector fetches with GET /v1/uplinks?recipient=ID&cursor=C.
    RestPull,
    /// A CSV or JSON file of the messages gathered, every `interval_secs`, written to a
    /// directory or PUT to an HTTPS URL.
    FilePush {
        format: FileFormat,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        directory: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        interval_secs: u64,
    },
}

/// What the API takes to create a recipient.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRecipient {
    pub name: String,
    /// Device group whose uplinks go to this recipient.
    pub group: String,
    pub kind: RecipientKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub id: u64,
    pub name: String,
    pub group: String,
    pub kind: RecipientKind,
    pub created_at: DateTime<Utc>,
}

/// The longest a file push gathers messages before writing them.
pub const MAX_FILE_INTERVAL_SECS: u64 = 31 * 86_400;

impl NewRecipient {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.group.trim().is_empty() {
            return Err("name and group must not be empty".into());
        }
        let http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        match &self.kind {
            RecipientKind::HttpPush { url, .. } if !http(url) => {
                Err(format!("{url:?} is not an http(s) URL"))
            }
            RecipientKind::HttpPush {
                authorization: Some(a),
                ..
            } if reqwest::header::HeaderValue::from_str(a).is_err() || a.len() > 4096 => {
                Err("authorization must be a header value (visible ASCII, at most 4096 bytes)".into())
            }
            RecipientKind::FilePush { interval_secs, .. }
                if !(1..=MAX_FILE_INTERVAL_SECS).contains(interval_secs) =>
            {
                Err(format!(
                    "interval_secs must be between 1 and {MAX_FILE_INTERVAL_SECS} (31 days)"
                ))
            }
            RecipientKind::FilePush {
                directory: None,
                url: None,
                ..
            } => Err("a file push needs a directory or a url".into()),
            RecipientKind::FilePush {
                directory: Some(_),
                url: Some(_),
                ..
            } => Err("a file push goes to a directory or a url, not both".into()),
            RecipientKind::FilePush { url: Some(u), .. } if !http(u) => {
                Err(format!("{u:?} is not an http(s) URL"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_push(interval_secs: u64) -> NewRecipient {
        NewRecipient {
            name: "archive".into(),
            group: "meters".into(),
            kind: RecipientKind::FilePush {
                format: FileFormat::Csv,
                directory: Some("/var/lib/entente/out".into()),
                url: None,
                interval_secs,
            },
        }
    }

    #[test]
    fn a_file_push_interval_is_between_a_second_and_a_month() {
        for (secs, ok) in [
            (0, false),
            (1, true),
            (MAX_FILE_INTERVAL_SECS, true),
            (MAX_FILE_INTERVAL_SECS + 1, false),
            (u64::MAX, false),
        ] {
            assert_eq!(file_push(secs).validate().is_ok(), ok, "{secs} s");
        }
    }
}
