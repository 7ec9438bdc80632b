//! Fuzzes the `config|...` handshake parser shared by the three families.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_sdk::proto::ConfigLine;
use smtpd_sdk_fuzz::round_trip;

fuzz_target!(|data: &[u8]| {
    round_trip::<ConfigLine>(data);
});
