//! What every fuzz target checks: any bytes give a value or an error, never a
//! panic, and every parsed value formats to a line that parses back to it.

use smtpd_sdk::proto::Line;

/// Parses `data` as a `T`; when that succeeds, formats and re-parses it.
pub fn round_trip<T: Line + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = T::parse(data) {
        let line = value.to_line().expect("a parsed value formats");
        let again = T::parse(&line[..line.len() - 1]).expect("a formatted line parses");
        assert_eq!(again, value);
    }
}
