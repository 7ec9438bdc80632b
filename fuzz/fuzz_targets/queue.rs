//! Fuzzes the queue family's parsers (see the crate's `round_trip`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_sdk::proto::queue;
use smtpd_sdk_fuzz::round_trip;

fuzz_target!(|data: &[u8]| {
    round_trip::<queue::Register>(data);
    round_trip::<queue::Request>(data);
    round_trip::<queue::Response>(data);
});
