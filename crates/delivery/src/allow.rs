//! Where pushes may go, as the operator allows in node.toml (`delivery.push_urls`,
//! `delivery.push_directories`): a recipient's URL or directory outside the list is
//! refused when the recipient is created, so the API cannot aim the node at its own
//! internal services or make it write anywhere on its disk.

use std::path::{Component, Path, PathBuf};

use reqwest::Url;

use crate::recipient::RecipientKind;
use crate::settings::DeliveryConfig;

/// Whether `url` is allowed by `entry`: same scheme and host, the entry's port if it
/// names one (any port otherwise), and a path under the entry's.
fn url_allowed(entry: &str, url: &str) -> bool {
    let (Ok(e), Ok(u)) = (Url::parse(entry), Url::parse(url)) else {
        return false;
    };
    let port_ok = match e.port() {
        Some(p) => u.port_or_known_default() == Some(p),
        None => true,
    };
    let base = e.path().trim_end_matches('/');
    let path_ok = u.path() == base || u.path().starts_with(&format!("{base}/"));
    e.scheme() == u.scheme() && e.host_str() == u.host_str() && port_ok && path_ok && u.username().is_empty()
}

/// An absolute path without `..`, under one of the allowed directories.
fn directory_allowed(allowed: &[PathBuf], dir: &Path) -> bool {
    dir.is_absolute()
        && !dir.components().any(|c| c == Component::ParentDir)
        && allowed.iter().any(|a| dir.starts_with(a))
}

/// The allow-lists applied to recipients: a trait because `DeliveryConfig` is defined in
/// `entente_settings`, which reads node.toml and knows no recipients.
pub(crate) trait PushAllowList {
    /// Why a recipient of `kind` may not be created on this node, if it may not.
    fn refuses(&self, kind: &RecipientKind) -> Option<String>;
}

impl PushAllowList for DeliveryConfig {
    fn refuses(&self, kind: &RecipientKind) -> Option<String> {
        let url_refused = |url: &str| {
            (!self.push_urls.iter().any(|e| url_allowed(e, url)))
                .then(|| format!("{url} is not under any of delivery.push_urls in node.toml"))
        };
        match kind {
            RecipientKind::RestPull => None,
            RecipientKind::HttpPush { url, .. } => url_refused(url),
            RecipientKind::FilePush { url: Some(url), .. } => url_refused(url),
            RecipientKind::FilePush {
                directory: Some(dir), ..
            } => (!directory_allowed(&self.push_directories, dir)).then(|| {
                format!(
                    "{} is not under any of delivery.push_directories in node.toml",
                    dir.display()
                )
            }),
            RecipientKind::FilePush { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_allowed_by_scheme_host_port_and_path() {
        // (entry, url, allowed)
        let cases = [
            (
                "https://connector.example.fr/",
                "https://connector.example.fr/hook",
                true,
            ),
            (
                "https://connector.example.fr/in",
                "https://connector.example.fr/in/x",
                true,
            ),
            (
                "https://connector.example.fr/in",
                "https://connector.example.fr/inside",
                false,
            ),
            (
                "https://connector.example.fr/",
                "http://connector.example.fr/hook",
                false,
            ),
            (
                "https://connector.example.fr/",
                "https://connector.example.fr.evil.net/",
                false,
            ),
            (
                "https://connector.example.fr/",
                "https://x@connector.example.fr/",
                false,
            ),
            (
                "https://connector.example.fr:8443/",
                "https://connector.example.fr/",
                false,
            ),
            (
                "https://connector.example.fr:8443/",
                "https://connector.example.fr:8443/a",
                true,
            ),
            ("http://127.0.0.1", "http://127.0.0.1:9000/hook", true),
            (
                "http://127.0.0.1",
                "http://169.254.169.254/latest/meta-data",
                false,
            ),
            ("not a url", "https://connector.example.fr/", false),
        ];
        for (entry, url, allowed) in cases {
            assert_eq!(url_allowed(entry, url), allowed, "{entry} {url}");
        }
    }

    #[test]
    fn directories_are_allowed_below_an_entry_only() {
        let allowed = vec![PathBuf::from("/srv/exports")];
        for (dir, ok) in [
            ("/srv/exports", true),
            ("/srv/exports/tours", true),
            ("/srv/exports/../../etc", false),
            ("/srv/exportsx", false),
            ("srv/exports", false),
            ("/etc", false),
        ] {
            assert_eq!(directory_allowed(&allowed, Path::new(dir)), ok, "{dir}");
        }
    }

    #[test]
    fn nothing_is_allowed_until_the_operator_lists_it() {
        let kind = RecipientKind::HttpPush {
            url: "http://10.0.0.1/admin".into(),
            authorization: None,
        };
        assert!(DeliveryConfig::default().refuses(&kind).is_some());
        assert!(
            DeliveryConfig::default()
                .refuses(&RecipientKind::RestPull)
                .is_none()
        );
    }
}
