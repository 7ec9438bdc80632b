//! Mail addresses as SMTP carries them (RFC 5321 section 4.1.2), validated
//! as strictly as OpenSMTPD's `smtp_mailaddr`, `valid_localpart` and
//! `valid_domainpart` do: that check, made on every address before it is
//! accepted, is what closed CVE-2020-7247.
//!
//! - The local part is a dot-atom of letters, digits and
//!   `!#%'*/?^~+-=_`: no empty atom, no space, `;`, `<`, `>`, `(`, `)`,
//!   `,`, `:`, `\`, `"`, control or NUL. Quoted local parts are refused, as
//!   OpenSMTPD refuses them. This is OpenSMTPD's `MAILADDR_ALLOWED` less
//!   `` ` ``, `$`, `{`, `}`, `|` and `&`: RFC 5322 allows them, but no real
//!   address needs them and they spell shell commands without a space
//!   (`` `echo${IFS}...|base64${IFS}-d|sh` ``, or `x&reboot&@example.org`,
//!   where `&` both ends the command before it and runs the next), which
//!   reach a shell in OpenSMTPD 7.8 through `%{sender:raw}` or the mda
//!   environment (`$SENDER`). With them out, no POSIX shell
//!   metacharacter (`|&;<>()`, space, tab, newline) is left in an
//!   address. Refusing them here keeps CVE-2020-7247's class of attack
//!   out at the door, whatever an mda command does with the address.
//! - The domain is a host name (labels of letters, digits, `-` and `_`,
//!   each starting and ending with a letter or digit, as `res_hnok`; no
//!   empty label, at most 63 bytes a label) or an address literal
//!   `[192.0.2.1]` / `[IPv6:2001:db8::1]`.
//! - A source route `@a,@b:` in front is checked and dropped (RFC 5321
//!   says to ignore it; OpenSMTPD strips it too), so the domain that counts
//!   for relaying is always the one after the last `@`.
//! - Without a domain (`<postmaster>`, or `<postmaster@>` whose domain is
//!   empty) the address is local; the session completes it with its host
//!   name, as OpenSMTPD's `smtp_mailaddr` does for both.
//! - Limits: 255 bytes for the local part and for the domain, as
//!   OpenSMTPD's buffers allow (RFC 5321's 64-byte local part would refuse
//!   real SRS and VERP addresses).
//!
//! Non-ASCII letters (UTF-8 only) are accepted in both parts; whether the
//! transaction may use them (SMTPUTF8, RFC 6531) is the session's call,
//! through [`Mailbox::is_ascii`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest local part accepted, in bytes.
pub const MAX_LOCAL_PART: usize = 255;
/// The longest domain accepted, in bytes.
pub const MAX_DOMAIN: usize = 255;
const MAX_LABEL: usize = 63;

/// Printable ASCII characters allowed in a local part besides letters and
/// digits: OpenSMTPD's `MAILADDR_ALLOWED` without `` ` ``, `$`, `{`, `}`,
/// `|` and `&` (see the module documentation).
const LOCAL_ALLOWED: &[u8] = b"!#%'*/?^~+-=_";

/// The domain part of an address, or the argument of HELO / EHLO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A host name, as given (case kept).
    Name(String),
    /// An address literal, `[192.0.2.1]` or `[IPv6:...]`.
    Literal(IpAddr),
}

impl Domain {
    /// Parses a host name or address literal.
    pub fn parse(text: &[u8]) -> Option<Self> {
        if let Some(inner) = text.strip_prefix(b"[") {
            return parse_literal(inner.strip_suffix(b"]")?).map(Self::Literal);
        }
        if text.is_empty() || text.len() > MAX_DOMAIN {
            return None;
        }
        let name = std::str::from_utf8(text).ok()?;
        name.split('.')
            .all(valid_label)
            .then(|| Self::Name(name.to_owned()))
    }

    /// Whether the domain is ASCII only.
    pub fn is_ascii(&self) -> bool {
        match self {
            Self::Name(name) => name.is_ascii(),
            Self::Literal(_) => true,
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Literal(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            Self::Literal(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

fn parse_literal(inner: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(inner).ok()?;
    match text.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            text[5..].parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        }
        _ => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// A letter or digit; any non-ASCII character but controls and spaces
/// counts as a letter (internationalised names).
fn border_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn valid_label(label: &str) -> bool {
    let (Some(first), Some(last)) = (label.chars().next(), label.chars().last()) else {
        return false;
    };
    label.len() <= MAX_LABEL
        && border_char(first)
        && border_char(last)
        && label
            .chars()
            .all(|c| border_char(c) || c == '-' || c == '_')
}

fn local_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || LOCAL_ALLOWED.contains(&(c as u8))
    } else {
        !c.is_control() && !c.is_whitespace()
    }
}

fn valid_local_part(local: &str) -> bool {
    local.len() <= MAX_LOCAL_PART
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(local_char))
}

/// A mailbox: `local@domain`, or a bare local part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part, a validated dot-atom.
    pub local: String,
    /// The domain; `None` for a bare local part such as `postmaster`.
    pub domain: Option<Domain>,
}

impl Mailbox {
    /// Parses the text between `<` and `>` (a source route in front is
    /// checked and dropped). The null path `<>` is not a mailbox. An empty
    /// domain (`user@`) is no domain, as in OpenSMTPD.
    pub fn parse(path: &[u8]) -> Option<Self> {
        let mailbox = strip_source_route(path)?;
        let (local, domain) = match mailbox.iter().position(|&b| b == b'@') {
            Some(at) if at + 1 == mailbox.len() => (&mailbox[..at], None),
            Some(at) => (&mailbox[..at], Some(Domain::parse(&mailbox[at + 1..])?)),
            None => (mailbox, None),
        };
        let local = std::str::from_utf8(local).ok()?;
        valid_local_part(local).then(|| Self {
            local: local.to_owned(),
            domain,
        })
    }

    /// Whether both parts are ASCII only (no SMTPUTF8 needed).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_ref().map_or(true, Domain::is_ascii)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(domain) => write!(f, "{}@{}", self.local, domain),
            None => f.write_str(&self.local),
        }
    }
}

/// Drops an A-d-l (`@a,@b:`) in front of the mailbox after checking each
/// of its domains; `None` if it is malformed.
fn strip_source_route(path: &[u8]) -> Option<&[u8]> {
    if path.first() != Some(&b'@') {
        return Some(path);
    }
    let colon = path.iter().position(|&b| b == b':')?;
    for hop in path[..colon].split(|&b| b == b',') {
        Domain::parse(hop.strip_prefix(b"@")?)?;
    }
    Some(&path[colon + 1..])
}

/// The reverse-path of MAIL FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: the null sender of bounces.
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => Ok(()),
            Self::Mailbox(mailbox) => mailbox.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"example.org", Some("example.org")),
            (b"localhost", Some("localhost")),
            (b"a-b.c_d.example", Some("a-b.c_d.example")),
            (b"[192.0.2.1]", Some("[192.0.2.1]")),
            (b"[IPv6:2001:db8::1]", Some("[IPv6:2001:db8::1]")),
            (b"[ipv6:::1]", Some("[IPv6:::1]")),
            (
                "b\u{fc}cher.example".as_bytes(),
                Some("b\u{fc}cher.example"),
            ),
            (b"", None),
            (b"a..b", None),
            (b".a", None),
            (b"a.", None),
            (b"-a.b", None),
            (b"a-.b", None),
            (b"_a.b", None),
            (b"a b", None),
            (b"a;b", None),
            (b"a\0b", None),
            (b"[192.0.2.1", None),
            (b"[192.0.2.256]", None),
            (b"[2001:db8::1]", None),
            (b"[IPv6:192.0.2.1]", None),
            (b"[foo:bar]", None),
            (b"[192.0.2.1]x", None),
            (b"\xff.example", None),
        ];
        for (input, expected) in cases {
            let got = Domain::parse(input).map(|d| d.to_string());
            assert_eq!(
                got.as_deref(),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_label = "a".repeat(64);
        assert!(Domain::parse(long_label.as_bytes()).is_none());
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(64)
        );
        assert!(Domain::parse(long.as_bytes()).is_none());
    }

    #[test]
    fn mailboxes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("user@example.org", Some("user@example.org")),
            ("first.last@example.org", Some("first.last@example.org")),
            ("a+tag@example.org", Some("a+tag@example.org")),
            ("postmaster", Some("postmaster")),
            (
                "@relay.example,@b.example:user@example.org",
                Some("user@example.org"),
            ),
            ("@relay.example:user@example.org", Some("user@example.org")),
            (
                "user%other.example@example.org",
                Some("user%other.example@example.org"),
            ),
            ("other!user@example.org", Some("other!user@example.org")),
            (
                "o'brien-co/x?y#z^w~v@example.org",
                Some("o'brien-co/x?y#z^w~v@example.org"),
            ),
            ("pipe|user@example.org", None),
            // `&` ends one shell command and starts the next.
            ("bill&ted@example.org", None),
            ("x&reboot&@example.org", None),
            ("user@[192.0.2.1]", Some("user@[192.0.2.1]")),
            ("@bad;route:user@example.org", None),
            // Valid atext that OpenSMTPD accepts, refused here.
            ("`id`@example.org", None),
            ("$HOME@example.org", None),
            ("{a}@example.org", None),
            ("@relay.example;user@example.org", None),
            ("@:user@example.org", None),
            ("a:b@example.org", None),
            ("", None),
            ("@example.org", None),
            (".user@example.org", None),
            ("user.@example.org", None),
            ("us..er@example.org", None),
            ("a@b@example.org", None),
            ("\"quoted\"@example.org", None),
            ("\"a|b\"@example.org", None),
            ("us er@example.org", None),
            (";sleep 66;", None),
            // OpenSMTPD takes an empty domain as none: local.
            ("user@", Some("user")),
            ("@", None),
            ("user@@", None),
            ("user\\@example.org", None),
        ];
        for (input, expected) in cases {
            let got = Mailbox::parse(input.as_bytes()).map(|m| m.to_string());
            assert_eq!(got.as_deref(), *expected, "{input:?}");
        }
        let local = "a".repeat(MAX_LOCAL_PART);
        assert!(Mailbox::parse(format!("{local}@x").as_bytes()).is_some());
        assert!(Mailbox::parse(format!("{local}a@x").as_bytes()).is_none());
    }

    #[test]
    fn ascii_and_utf8() {
        let ascii = Mailbox::parse(b"a@b").unwrap();
        assert!(ascii.is_ascii());
        let utf8 = Mailbox::parse("j\u{f6}rg@b".as_bytes()).unwrap();
        assert!(!utf8.is_ascii());
        let domain = Mailbox::parse("a@\u{e9}t\u{e9}.example".as_bytes()).unwrap();
        assert!(!domain.is_ascii());
        assert!(Mailbox::parse(b"j\xc3rg@b").is_none());
        assert!(Mailbox::parse("a\u{85}b@c".as_bytes()).is_none());
        assert!(Mailbox::parse("a\u{a0}b@c".as_bytes()).is_none());
        assert_eq!(ReversePath::Null.to_string(), "");
    }
}
