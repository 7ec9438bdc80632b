//! What the `match` criteria test: the [`Envelope`] of one recipient, with
//! the facts of its session ([`Source`], reverse name, HELO name, login,
//! TLS, tag) and of its transaction (sender and recipient [`Address`]es).
//!
//! The SMTP session builds one for each RCPT TO, and delivery builds one
//! for each address an alias or `.forward` expands to (`internal`).

use std::fmt;
use std::net::IpAddr;

use crate::table::static_table::address_text;

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The local Unix socket (`sendmail`, `smtpctl`).
    Socket,
    /// A network peer.
    Ip(IpAddr),
}

impl Source {
    /// The text `from` tables are asked about: `local` for the socket,
    /// `1.2.3.4`, or `[2001:db8::1]` (an IPv4-mapped IPv6 peer, as a
    /// dual-stack socket reports IPv4 clients, as its IPv4 address).
    pub fn key(&self) -> String {
        match self {
            Self::Socket => "local".to_owned(),
            Self::Ip(addr) => address_text(addr.to_canonical()),
        }
    }
}

/// A mail address as the rules see it: a local part and a domain, either
/// of which may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Address {
    /// The local part.
    pub user: String,
    /// The domain.
    pub domain: String,
}

impl Address {
    /// `user@domain`.
    pub fn new(user: impl Into<String>, domain: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            domain: domain.into(),
        }
    }

    /// The null sender, `MAIL FROM:<>`.
    pub fn null() -> Self {
        Self::default()
    }

    /// Splits `text` at its last `@`; without one, `text` is the local
    /// part and the domain is empty.
    pub fn parse(text: &str) -> Self {
        match text.rsplit_once('@') {
            Some((user, domain)) => Self::new(user, domain),
            None => Self::new(text, ""),
        }
    }

    /// Whether this is the null sender.
    pub fn is_null(&self) -> bool {
        self.user.is_empty() && self.domain.is_empty()
    }
}

/// `user@domain`; the null sender is `@`, the key OpenSMTPD looks up for
/// it.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

/// One recipient and everything the rules may test about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The session's source.
    pub source: Source,
    /// The source's reverse DNS name; `None` when it has none (OpenSMTPD's
    /// `<unknown>`).
    pub rdns: Option<String>,
    /// The HELO or EHLO argument.
    pub helo: String,
    /// The user the session authenticated as, if it did. Socket sessions
    /// count as authenticated, as the local user who submitted.
    pub auth_user: Option<String>,
    /// Whether the session is protected by TLS.
    pub tls: bool,
    /// The listener's `tag`, if any.
    pub tag: Option<String>,
    /// The envelope sender ([`Address::null`] for `MAIL FROM:<>`).
    pub mail_from: Address,
    /// The recipient being matched.
    pub rcpt_to: Address,
    /// Produced by alias or `.forward` expansion rather than received: its
    /// `from` criteria see the source `local`.
    pub internal: bool,
}

impl Envelope {
    /// A received recipient, from a session with no reverse name, no HELO,
    /// no login, no TLS and no tag.
    pub fn new(source: Source, mail_from: Address, rcpt_to: Address) -> Self {
        Self {
            source,
            rdns: None,
            helo: String::new(),
            auth_user: None,
            tls: false,
            tag: None,
            mail_from,
            rcpt_to,
            internal: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys() {
        let cases: &[(Source, &str)] = &[
            (Source::Socket, "local"),
            (Source::Ip("192.0.2.1".parse().unwrap()), "192.0.2.1"),
            (Source::Ip("2001:db8::1".parse().unwrap()), "[2001:db8::1]"),
            (Source::Ip("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1"),
            (Source::Ip("::1".parse().unwrap()), "[::1]"),
        ];
        for (source, key) in cases {
            assert_eq!(source.key(), *key, "{source:?}");
        }
    }

    #[test]
    fn addresses() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "alice@example.org",
                "alice",
                "example.org",
                "alice@example.org",
            ),
            (
                "\"a@b\"@example.org",
                "\"a@b\"",
                "example.org",
                "\"a@b\"@example.org",
            ),
            ("postmaster", "postmaster", "", "postmaster@"),
            ("@example.org", "", "example.org", "@example.org"),
            ("", "", "", "@"),
        ];
        for (text, user, domain, shown) in cases {
            let address = Address::parse(text);
            assert_eq!(address, Address::new(*user, *domain), "{text:?}");
            assert_eq!(address.to_string(), *shown, "{text:?}");
        }
        assert!(Address::null().is_null());
        assert!(!Address::parse("a@b").is_null());
    }
}
