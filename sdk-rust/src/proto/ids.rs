//! Identifiers and timestamps: newtypes printed as OpenSMTPD prints them.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Parses exactly `width` lower-case hex digits.
pub(crate) fn parse_hex_exact(raw: &[u8], width: usize) -> Option<u64> {
    if raw.len() != width {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(digit))
    })
}

/// Parses 1 to 16 hex digits of either case, as OpenSMTPD's `strtoull` does
/// for filter session ids and tokens.
pub(crate) fn parse_hex_lenient(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 16 {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

/// Parses a decimal number without sign or leading `+`.
pub(crate) fn parse_decimal(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $width:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            /// Number of hex digits on the wire.
            pub const WIDTH: usize = $width;
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:0width$x}", self.0, width = $width)
            }
        }
    };
}

hex_id!(
    /// A table request id: 8 lower-case hex digits.
    TableId, u32, 8
);
hex_id!(
    /// A filter session id (one SMTP session): 16 hex digits.
    SessionId, u64, 16
);
hex_id!(
    /// A filter token (a filter's place in a phase's chain): 16 hex digits.
    Token, u64, 16
);
hex_id!(
    /// A queue request id: 16 lower-case hex digits.
    QueueId, u64, 16
);
hex_id!(
    /// A message id: 8 lower-case hex digits, never zero.
    MsgId, u32, 8
);
hex_id!(
    /// An envelope id: 16 lower-case hex digits; the upper half is its
    /// message's id and the lower half is never zero.
    EvpId, u64, 16
);

impl EvpId {
    /// The message this envelope belongs to.
    pub fn msgid(self) -> MsgId {
        MsgId((self.0 >> 32) as u32)
    }

    /// The envelope id made of a message id and a non-zero lower half.
    pub fn new(msgid: MsgId, low: u32) -> Self {
        Self(u64::from(msgid.0) << 32 | u64::from(low))
    }
}

/// A wall-clock time stamp, `SECONDS.MICROSECONDS` with six digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub secs: u64,
    /// Microseconds, below 1,000,000.
    pub micros: u32,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            secs: since.as_secs(),
            micros: since.subsec_micros(),
        }
    }

    pub(crate) fn parse(raw: &[u8]) -> Option<Self> {
        let dot = raw.iter().position(|&b| b == b'.')?;
        let (secs, micros) = (&raw[..dot], &raw[dot + 1..]);
        if micros.len() != 6 {
            return None;
        }
        Some(Self {
            secs: parse_decimal(secs)?,
            micros: u32::try_from(parse_decimal(micros)?).ok()?,
        })
    }

    pub(crate) fn write(&self, out: &mut bytes::BytesMut) {
        if self.micros >= 1_000_000 {
            use std::fmt::Write;
            // Writing into a BytesMut cannot fail.
            let _ = write!(out, "{}.{:06}", self.secs, self.micros);
            return;
        }
        // Digit by digit: this runs for every request the daemon sends.
        let mut text = [0u8; 27];
        let mut end = text.len();
        let mut micros = self.micros;
        for _ in 0..6 {
            end -= 1;
            text[end] = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        end -= 1;
        text[end] = b'.';
        let mut secs = self.secs;
        loop {
            end -= 1;
            text[end] = b'0' + (secs % 10) as u8;
            secs /= 10;
            if secs == 0 {
                break;
            }
        }
        out.extend_from_slice(&text[end..]);
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.secs, self.micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsers() {
        assert_eq!(parse_hex_exact(b"0000a00f", 8), Some(0xa00f));
        assert_eq!(parse_hex_exact(b"0000A00F", 8), None);
        assert_eq!(parse_hex_exact(b"a00f", 8), None);
        assert_eq!(parse_hex_lenient(b"A00F"), Some(0xa00f));
        assert_eq!(parse_hex_lenient(b""), None);
        assert_eq!(parse_hex_lenient(b"11112222333344445"), None);
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"-1"), None);
    }

    #[test]
    fn timestamps() {
        let ts = Timestamp::parse(b"1731000001.000412").unwrap();
        assert_eq!((ts.secs, ts.micros), (1731000001, 412));
        assert_eq!(ts.to_string(), "1731000001.000412");
        for ts in [
            Timestamp { secs: 0, micros: 0 },
            Timestamp {
                secs: 1731000001,
                micros: 412,
            },
            Timestamp {
                secs: u64::MAX,
                micros: 999_999,
            },
            Timestamp {
                secs: 7,
                micros: 1_000_001,
            },
        ] {
            let mut out = bytes::BytesMut::new();
            ts.write(&mut out);
            assert_eq!(&out[..], ts.to_string().as_bytes());
        }
        assert!(Timestamp::parse(b"1731000001.412").is_none());
        assert!(Timestamp::parse(b"1731000001").is_none());
    }

    #[test]
    fn ids_print_as_fixed_width_hex() {
        assert_eq!(TableId(0x1f).to_string(), "0000001f");
        let evp = EvpId::new(MsgId(0xdeadbeef), 7);
        assert_eq!(evp.to_string(), "deadbeef00000007");
        assert_eq!(evp.msgid(), MsgId(0xdeadbeef));
    }
}
