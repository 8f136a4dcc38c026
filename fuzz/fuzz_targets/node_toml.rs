//! Arbitrary text as node.toml, what `entente node` and every command with `--config`
//! read first: `NodeConfig::parse` (TOML, every section's fields and defaults, the
//! renamed keys' hints, each section's `validate()`, the log filter). An error names the
//! file and a line the text has; a config that parses gives its paths and HTTP limits,
//! and each crate's section is written back to TOML and read the same.

#![no_main]

use std::path::{Path, PathBuf};

use entente_settings::{ConfigError, NodeConfig};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/etc/entente/node.toml");
    match NodeConfig::parse(text, file) {
        Err(ConfigError::Field {
            file: named,
            line,
            field,
            reason,
        }) => {
            assert_eq!(named, file, "the error names another file");
            assert!(
                !field.is_empty() && !reason.is_empty(),
                "an error without a field or reason"
            );
            if let Some(line) = line {
                let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
                assert!(
                    (1..=lines).contains(&line),
                    "line {line} of a text with {lines} lines"
                );
            }
        }
        Err(e @ ConfigError::Read { .. }) => panic!("parsing read a file: {e}"),
        Ok(mut cfg) => {
            // What `NodeConfig::load` sets, then what the node derives from it.
            cfg.base_dir = PathBuf::from("/etc/entente");
            for p in [
                cfg.data_dir(),
                cfg.key_file(),
                cfg.token_file(),
                cfg.master_key_file(),
                cfg.policies_dir(),
            ]
            .into_iter()
            .chain(cfg.roster_file())
            {
                assert!(p.is_absolute(), "{} is not resolved", p.display());
            }
            let limits = cfg.api.limits();
            assert!(limits.header_read_timeout.as_secs() >= 1 && limits.request_timeout.as_secs() >= 1);
            round_trip(&cfg.gateway);
            round_trip(&cfg.lns);
            round_trip(&cfg.federation);
            round_trip(&cfg.delivery);
        }
    }
});

/// A section that was read and checked is written as TOML and reads back equal.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(section: &T) {
    let written = toml::to_string(section).expect("a checked section writes as TOML");
    let again: T = toml::from_str(&written).expect("a written section reads back");
    assert_eq!(&again, section, "the section read back differs:\n{written}");
}
