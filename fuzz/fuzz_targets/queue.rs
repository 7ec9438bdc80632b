//! Fuzzes the queue family's parsers: any bytes give a value or an error, and
//! every parsed value formats to a line that parses back to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_sdk::proto::{queue, Line};

fn check<T: Line + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = T::parse(data) {
        let line = value.to_line().expect("a parsed value formats");
        let again = T::parse(&line[..line.len() - 1]).expect("a formatted line parses");
        assert_eq!(again, value);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<queue::Register>(data);
    check::<queue::Request>(data);
    check::<queue::Response>(data);
});
