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
            RecipientKind::FilePush { interval_secs: 0, .. } => {
                Err("interval_secs must be at least 1".into())
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
