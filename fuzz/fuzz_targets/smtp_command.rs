//! Fuzzes the SMTP command parser: any line gives a command or a syntax
//! error, never a panic, and an accepted command prints to a line that parses
//! back to the same command.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::smtp::Command;

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = Command::parse(data) {
        let line = command.to_string();
        assert_eq!(Command::parse(line.as_bytes()), Ok(command), "{line}");
    }
});
