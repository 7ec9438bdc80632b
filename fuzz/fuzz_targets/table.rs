//! Fuzzes the table family's parsers (see the crate's `round_trip`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_sdk::proto::table;
use smtpd_sdk_fuzz::round_trip;

fuzz_target!(|data: &[u8]| {
    round_trip::<table::Register>(data);
    round_trip::<table::Request>(data);
    round_trip::<table::Response>(data);
});
