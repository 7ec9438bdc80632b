//! Fuzzes the `config|...` handshake parser shared by the three families.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_sdk::proto::{ConfigLine, Line};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = ConfigLine::parse(data) {
        let line = value.to_line().expect("a parsed value formats");
        let again = ConfigLine::parse(&line[..line.len() - 1]).expect("a formatted line parses");
        assert_eq!(again, value);
    }
});
