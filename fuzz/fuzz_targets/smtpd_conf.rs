//! Fuzzes the smtpd.conf parser and checker: any text gives a configuration
//! or diagnostics, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::config::{Config, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Config::parse_str("fuzz.conf", &text, &LoadOptions::default());
});
