//! Fuzzes the filter family's parsers (see the crate's `round_trip`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_sdk::proto::filter;
use smtpd_sdk_fuzz::round_trip;

fuzz_target!(|data: &[u8]| {
    round_trip::<filter::Register>(data);
    round_trip::<filter::Input>(data);
    round_trip::<filter::Output>(data);
});
