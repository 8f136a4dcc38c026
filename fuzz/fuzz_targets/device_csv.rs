//! Arbitrary text as a device import (the conventions' CSV template, French headers or
//! English aliases, `;` or `,`), as `POST /v1/devices/import` reads it:
//! `import::parse_csv`, all or nothing. An error names a line of the file; the devices
//! read have distinct DevEUIs.

#![no_main]

use std::collections::HashSet;

use entente_devices::import::{ImportDefaults, parse_csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_csv(text, &ImportDefaults::default()) {
        Ok(devices) => {
            let euis: HashSet<_> = devices.iter().map(|d| d.dev_eui).collect();
            assert_eq!(euis.len(), devices.len(), "two devices with one DevEUI");
        }
        Err(e) => {
            // The csv reader ends a record at \n, \r or \r\n; the header is line 1.
            let ends = text.bytes().filter(|b| matches!(b, b'\n' | b'\r')).count();
            assert!(
                e.line <= ends + 2,
                "error on line {} of a text with {ends} line ends",
                e.line
            );
        }
    }
});
