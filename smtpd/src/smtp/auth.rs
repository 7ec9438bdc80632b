//! AUTH helpers (RFC 4954): base64 as SASL uses it (standard alphabet,
//! padded) and the PLAIN message (RFC 4616).
//!
//! The session calls these; it keeps the exchange's state itself.
//! [`Credentials`] never prints its password.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(byte: u8) -> Option<u32> {
    ALPHABET
        .iter()
        .position(|&c| c == byte)
        .and_then(|p| u32::try_from(p).ok())
}

/// Decodes padded standard base64; `None` on any other input.
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, chunk) in text.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut word = 0u32;
        for &byte in &chunk[..4 - pad] {
            word = (word << 6) | sextet(byte)?;
        }
        word <<= 6 * pad;
        let bytes = word.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Encodes bytes in padded standard base64.
pub fn encode_base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut word = [0u8; 4];
        word[1..=chunk.len()].copy_from_slice(chunk);
        let word = u32::from_be_bytes(word);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (word >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A user name and password a client gave, to be checked against the
/// listener's `auth` table.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity (login).
    pub user: String,
    /// The password, as given.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Reads a PLAIN message `authzid NUL authcid NUL passwd`. An authzid other
/// than empty or the authcid is refused (no proxy authorisation), as are
/// empty names, non-UTF-8 text and control characters.
pub fn parse_plain(message: &[u8]) -> Option<Credentials> {
    let mut parts = message.split(|&b| b == 0);
    let (authz, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || (!authz.is_empty() && authz != user) {
        return None;
    }
    Some(Credentials {
        user: text(user)?,
        password: text(password)?,
    })
}

/// A user name or password from AUTH LOGIN, or a PLAIN field: UTF-8
/// without control characters.
pub(crate) fn text(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(char::is_control)).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"Username:", "VXNlcm5hbWU6"),
            (b"\0user\0pass", "AHVzZXIAcGFzcw=="),
            (b"\xff\xfe\xfd", "//79"),
        ];
        for (data, text) in cases {
            assert_eq!(encode_base64(data), *text);
            assert_eq!(decode_base64(text.as_bytes()).as_deref(), Some(*data));
        }
        for bad in ["Zg", "Zg=", "Z===", "Zg==Zg==", "Zm9v!A==", "Zm 9"] {
            assert_eq!(decode_base64(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn plain_messages() {
        let ok = parse_plain(b"\0user\0secret").unwrap();
        assert_eq!((ok.user.as_str(), ok.password.as_str()), ("user", "secret"));
        assert!(parse_plain(b"user\0user\0secret").is_some());
        for bad in [
            &b"other\0user\0secret"[..],
            b"\0\0secret",
            b"\0user",
            b"\0user\0sec\0ret",
            b"\0us\ner\0secret",
            b"\0user\0\xff",
        ] {
            assert_eq!(parse_plain(bad), None, "{bad:?}");
        }
        assert!(!format!("{ok:?}").contains("secret"));
    }
}
