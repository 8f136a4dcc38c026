//! node.toml as an operator may write it by mistake, or as a file from elsewhere may
//! arrive: the full template with values replaced by extremes of every kind, lines lost
//! or repeated, bytes flipped. Parsing answers an error naming a field, or a config whose
//! derived settings are usable; it never panics. The fuzz target `node_toml` (fuzz/)
//! runs the same parser (`entente_settings`) on blind byte mutations; this test stays
//! beside the template it starts from (init.rs) and reaches every field with the values
//! at its edges under plain `cargo test`.

use std::path::Path;

use entente_model::MemberId;
use proptest::prelude::*;

use crate::config::NodeConfig;
use crate::init::{template_for, uncommented};

/// Values at the edges of what each kind of field accepts.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e309",
    "nan",
    "inf",
    "-0.0",
    "true",
    "[]",
    "{}",
    "[[]]",
    "\"\"",
    "\"0s\"",
    "\"0ms\"",
    "\"1ns\"",
    "\"18446744073709551615s\"",
    "\"99999999999days\"",
    "\"200 years\"",
    "\"-5s\"",
    "\"\\u0000\"",
    "\"ffffff\"",
    "\"000000\"",
    "\"26012000/0\"",
    "\"26012000/32\"",
    "\"26012000/33\"",
    "\"0.0.0.0:0\"",
    "\"[::]:65535\"",
    "\"127.0.0.1:65536\"",
    "\"/ip4/999.0.0.1/tcp/1\"",
    "\"/ip4/127.0.0.1/tcp/0\"",
    "[\"http://127.0.0.1\", \"ftp://x\"]",
    "[\"/\"]",
    "\"../../etc/passwd\"",
    "\"EU868\"",
    "\"ZZ999\"",
    "\"é\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// The value of the n-th `key = value` line becomes this.
    Value(usize, &'static str),
    DropLine(usize),
    RepeatLine(usize),
    /// The byte at this offset (modulo the length) becomes this one.
    Byte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), proptest::sample::select(EXTREMES)).prop_map(|(i, v)| Mutation::Value(i, v)),
        1 => any::<usize>().prop_map(Mutation::DropLine),
        1 => any::<usize>().prop_map(Mutation::RepeatLine),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let settings: Vec<usize> = (0..lines.len())
        .filter(|&i| !lines[i].starts_with('#') && lines[i].contains(" = "))
        .collect();
    let mut bytes_to_flip = Vec::new();
    for m in mutations {
        match *m {
            Mutation::Value(n, value) => {
                let line = &mut lines[settings[n % settings.len()]];
                let key = line.split(" = ").next().unwrap_or_default().to_string();
                *line = format!("{key} = {value}");
            }
            Mutation::DropLine(n) => {
                let i = n % lines.len();
                lines[i].clear();
            }
            Mutation::RepeatLine(n) => {
                let i = n % lines.len();
                let copy = lines[i].clone();
                lines.push(copy);
            }
            Mutation::Byte(at, b) => bytes_to_flip.push((at, b)),
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    for (at, b) in bytes_to_flip {
        let len = bytes.len();
        bytes[at % len] = b;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn a_mangled_node_toml_is_refused_or_usable(
        mutations in proptest::collection::vec(mutation(), 1..6)
    ) {
        let member: MemberId = "smo-vdln".parse().unwrap();
        let text = apply(&uncommented(&template_for(&member)), &mutations);
        match NodeConfig::parse(&text, Path::new("node.toml")) {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(cfg) => {
                let limits = cfg.api.limits();
                prop_assert!(limits.header_read_timeout.as_secs() >= 1);
                let _ = cfg.key_file();
                let _ = cfg.policies_dir();
            }
        }
    }
}
