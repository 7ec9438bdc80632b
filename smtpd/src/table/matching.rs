//! The comparisons a table served by the daemon itself uses to match a
//! session key against its entries (tables.md section 1.4): pure functions,
//! called by `static_table.rs` for `check` and `lookup`.
//!
//! Which comparison a service uses is [`Comparison::for_service`]:
//!
//! | Service | Comparison |
//! |---|---|
//! | domain | [`domain_matches`]: `*` in the entry matches any run of characters |
//! | netaddr | exact text, else the entry as a [`Network`] (CIDR, IPv4 or IPv6) containing the key's address |
//! | mailaddr | [`mailaddr_matches`]: `user`, `@domain`, `user@domain`, `@`, with domain patterns and sub-address removal |
//! | regex | the entry is a regular expression ([`compile_regex`]) searched in the key |
//! | any other | exact text |
//!
//! [`Pattern::matches`] applies them to one entry, keeping what it parsed
//! of the entry for the next key. Keys reach these functions lower-cased
//! ([`normalize_key`]), and entries are stored lower-cased, as OpenSMTPD
//! does; the comparisons are nevertheless ASCII case-insensitive where
//! OpenSMTPD's are.
//!
//! Where this differs from OpenSMTPD 7.8's C code, it follows tables.md:
//! a domain `*` backtracks like a shell glob, so `*.example.org` matches
//! `a.b.example.org` (OpenSMTPD's `hostname_match` skips to the first
//! character equal to the one after the `*` and never backtracks, so it
//! does not), and `[v6]/n` networks are accepted besides `v6/n`. Regular
//! expressions are read by the `regex` crate, whose syntax is a superset of
//! POSIX extended expressions for all practical purposes (bracket classes
//! such as `[[:alpha:]]` included; back-references are not, as in ERE).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};

use super::{Error, Service};

/// The longest key a table is asked for, in bytes (OpenSMTPD's 1024-byte
/// buffer with its NUL).
pub(crate) const MAX_KEY_LEN: usize = 1023;

/// The key to look up: `key` lower-cased (ASCII), or an error when it is too
/// long (tables.md section 1.4). Every table asks with keys made by this.
pub(crate) fn normalize_key<'a>(table: &str, key: &'a str) -> Result<Cow<'a, str>, Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey {
            table: table.to_owned(),
            reason: "longer than 1023 bytes",
        });
    }
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(key.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(key))
    }
}

/// How a service compares a key with a table's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    /// Host name patterns.
    Domain,
    /// Addresses and networks.
    Netaddr,
    /// Mail address patterns.
    Mailaddr,
    /// Regular expressions.
    Regex,
    /// Exact text.
    Exact,
}

impl Comparison {
    /// The comparison `service` uses.
    pub(crate) fn for_service(service: Service) -> Self {
        match service {
            Service::Domain => Self::Domain,
            Service::Netaddr => Self::Netaddr,
            Service::Mailaddr => Self::Mailaddr,
            Service::Regex => Self::Regex,
            _ => Self::Exact,
        }
    }
}

/// Whether host name `name` matches `pattern`, ASCII case-insensitively,
/// where each `*` of the pattern matches any run of characters (dots
/// included, the empty run too).
pub(crate) fn domain_matches(name: &str, pattern: &str) -> bool {
    let (name, pattern) = (name.as_bytes(), pattern.as_bytes());
    let (mut n, mut p) = (0, 0);
    // Where to resume after the last `*`: the pattern position after it and
    // the name position it has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, n));
            }
            Some(c) if c.eq_ignore_ascii_case(&name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((after, consumed)) => {
                    p = after;
                    n = consumed + 1;
                    star = Some((after, consumed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// An address with a prefix length: a network, or one address (full
/// length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    /// The address as written.
    pub(crate) addr: IpAddr,
    /// The prefix length (32 or 128 for a single address).
    pub(crate) bits: u8,
}

impl Network {
    /// Reads `a.b.c.d`, `a.b.c.d/n`, the short `a/n`, `a.b/n`, `a.b.c/n`,
    /// `v6`, `v6/n`, `[v6]`, `[v6]/n` or `[v6/n]`, each maybe after
    /// `IPv6:` (outside or inside the brackets, any case).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = strip_ipv6_tag(text);
        let text = match text.strip_prefix('[') {
            Some(inner) => {
                let (inner, after) = inner.split_once(']')?;
                let inner = strip_ipv6_tag(inner);
                match after {
                    "" => Cow::Borrowed(inner),
                    mask if mask.starts_with('/') && !inner.contains('/') => {
                        Cow::Owned(format!("{inner}{mask}"))
                    }
                    _ => return None,
                }
            }
            None => Cow::Borrowed(text),
        };
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => {
                if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (addr, Some(bits.parse::<u8>().ok()?))
            }
            None => (&*text, None),
        };
        let (addr, max) = if let Ok(v4) = addr.parse::<Ipv4Addr>() {
            (IpAddr::V4(v4), 32)
        } else if let Ok(v6) = addr.parse::<Ipv6Addr>() {
            (IpAddr::V6(v6), 128)
        } else if bits.is_some() {
            (IpAddr::V4(short_ipv4(addr)?), 32)
        } else {
            return None;
        };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Self { addr, bits })
    }

    /// Whether `addr` is in this network (never across address families).
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn strip_ipv6_tag(text: &str) -> &str {
    match text.get(..5) {
        Some(head) if head.eq_ignore_ascii_case("IPv6:") => &text[5..],
        _ => text,
    }
}

/// `10`, `10.1`, `10.1.2`: the short forms inet_net_pton accepts before a
/// mask, the missing octets zero.
fn short_ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

/// A mail address split at its last `@`, as OpenSMTPD's
/// `text_to_mailaddr` splits it: `user` alone, `@domain`, `user@domain`,
/// or `@` (both empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mailaddr<'a> {
    /// The local part (may be empty).
    pub(crate) user: &'a str,
    /// The domain (may be empty, or a pattern in a table entry).
    pub(crate) domain: &'a str,
}

impl<'a> Mailaddr<'a> {
    /// The longest local part OpenSMTPD stores.
    const MAX_USER: usize = 64;
    /// The longest domain OpenSMTPD stores.
    const MAX_DOMAIN: usize = 255;

    /// Splits `text`; `None` when a part is too long to be an address.
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        let (user, domain) = text.rsplit_once('@').unwrap_or((text, ""));
        (user.len() <= Self::MAX_USER && domain.len() <= Self::MAX_DOMAIN)
            .then_some(Self { user, domain })
    }
}

/// Whether the address `key` matches the mailaddr `pattern` (tables.md
/// section 1.4): `@` (both parts empty) matches everything; a pattern domain
/// must match the key's domain as a host name pattern; a pattern user must
/// equal the key's user ASCII case-insensitively, after the key's
/// sub-address (from the first `delim`) is removed when the pattern's user
/// has none.
pub(crate) fn mailaddr_matches(key: &str, pattern: &str, delim: char) -> bool {
    let (Some(key), Some(pattern)) = (Mailaddr::parse(key), Mailaddr::parse(pattern)) else {
        return false;
    };
    if !pattern.domain.is_empty() && !domain_matches(key.domain, pattern.domain) {
        return false;
    }
    if pattern.user.is_empty() {
        return true;
    }
    let user = if pattern.user.contains(delim) {
        key.user
    } else {
        key.user.split(delim).next().unwrap_or(key.user)
    };
    user.eq_ignore_ascii_case(pattern.user)
}

/// Compiles a table's regex entry: a leading `(?i)` makes it
/// case-insensitive, as in OpenSMTPD. `None` when it is not a valid
/// expression (such an entry never matches).
pub(crate) fn compile_regex(pattern: &str) -> Option<Regex> {
    let (pattern, insensitive) = match pattern.strip_prefix("(?i)") {
        Some(rest) => (rest, true),
        None => (pattern, false),
    };
    RegexBuilder::new(pattern)
        .case_insensitive(insensitive)
        .build()
        .ok()
}

/// A key prepared for comparisons: its text, and for netaddr comparisons
/// its address, read once for all entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    text: &'a str,
    addr: Option<IpAddr>,
}

impl<'a> Key<'a> {
    /// Prepares `text` (already normalised) for `comparison`.
    pub(crate) fn new(comparison: Comparison, text: &'a str) -> Self {
        let addr = match comparison {
            Comparison::Netaddr => Network::parse(text).map(|n| n.addr),
            _ => None,
        };
        Self { text, addr }
    }
}

/// A table entry's key with what the comparisons make of it (its network,
/// its compiled expression), each made the first time it is needed and
/// kept.
#[derive(Debug)]
pub(crate) struct Pattern {
    text: String,
    network: OnceLock<Option<Network>>,
    regex: OnceLock<Option<Regex>>,
}

impl Pattern {
    /// An entry whose key is `text`.
    pub(crate) fn new(text: String) -> Self {
        Self {
            text,
            network: OnceLock::new(),
            regex: OnceLock::new(),
        }
    }

    /// The entry's key as stored.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Whether `key` matches this entry with `comparison`; `delim` is the
    /// sub-address delimiter of mailaddr comparisons.
    ///
    /// - domain: [`domain_matches`];
    /// - netaddr: the same text (ASCII case-insensitively), or both read
    ///   as [`Network`]s of one family and the key's address inside the
    ///   entry's network;
    /// - mailaddr: [`mailaddr_matches`];
    /// - regex: the entry, compiled by [`compile_regex`], found anywhere in
    ///   the key (an invalid expression never matches);
    /// - exact: the same text.
    pub(crate) fn matches(&self, comparison: Comparison, key: &Key<'_>, delim: char) -> bool {
        match comparison {
            Comparison::Exact => self.text == key.text,
            Comparison::Domain => domain_matches(key.text, &self.text),
            Comparison::Netaddr => {
                self.text.eq_ignore_ascii_case(key.text)
                    || key.addr.is_some_and(|addr| {
                        self.network
                            .get_or_init(|| Network::parse(&self.text))
                            .is_some_and(|net| net.contains(addr))
                    })
            }
            Comparison::Mailaddr => mailaddr_matches(key.text, &self.text, delim),
            Comparison::Regex => self
                .regex
                .get_or_init(|| compile_regex(&self.text))
                .as_ref()
                .is_some_and(|re| re.is_match(key.text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry against one key, twice (the second time with what the
    /// first one parsed).
    fn matches(comparison: Comparison, key: &str, entry: &str) -> bool {
        let pattern = Pattern::new(entry.to_owned());
        let key = Key::new(comparison, key);
        let first = pattern.matches(comparison, &key, '+');
        assert_eq!(pattern.matches(comparison, &key, '+'), first);
        first
    }

    #[test]
    fn domains() {
        let cases: &[(&str, &str, bool)] = &[
            ("example.org", "example.org", true),
            ("Example.ORG", "example.org", true),
            ("example.org", "EXAMPLE.org", true),
            ("example.org", "example.net", false),
            ("example.org", "example.or", false),
            ("example.or", "example.org", false),
            ("a.example.org", "*.example.org", true),
            ("a.b.example.org", "*.example.org", true),
            ("example.org", "*.example.org", false),
            ("xexample.org", "*.example.org", false),
            ("anything", "*", true),
            ("", "*", true),
            ("", "", true),
            ("a", "", false),
            ("mx1.example.org", "mx*.example.org", true),
            ("mx.example.org", "mx*.example.org", true),
            ("mail.example.org", "mx*.example.org", false),
            ("a.example.org", "*.*.org", true),
            ("example.org", "*.*.org", false),
            ("aaa.b", "*a.b", true),
            ("abab.c", "*ab.c", true),
            ("example.org", "example.org*", true),
            ("example.org", "**.org", true),
            ("[192.0.2.1]", "[192.0.2.1]", true),
            ("é.example", "é.example", true),
        ];
        for (name, pattern, expected) in cases {
            assert_eq!(
                domain_matches(name, pattern),
                *expected,
                "{name:?} against {pattern:?}"
            );
        }
    }

    #[test]
    fn networks_read() {
        let v4 = |s: &str, bits| {
            Some(Network {
                addr: IpAddr::V4(s.parse().unwrap()),
                bits,
            })
        };
        let v6 = |s: &str, bits| {
            Some(Network {
                addr: IpAddr::V6(s.parse().unwrap()),
                bits,
            })
        };
        let cases: &[(&str, Option<Network>)] = &[
            ("192.0.2.1", v4("192.0.2.1", 32)),
            ("192.0.2.0/24", v4("192.0.2.0", 24)),
            ("0.0.0.0/0", v4("0.0.0.0", 0)),
            ("10/8", v4("10.0.0.0", 8)),
            ("172.16/12", v4("172.16.0.0", 12)),
            ("192.168.1/24", v4("192.168.1.0", 24)),
            ("2001:db8::1", v6("2001:db8::1", 128)),
            ("2001:db8::/32", v6("2001:db8::", 32)),
            ("[2001:db8::1]", v6("2001:db8::1", 128)),
            ("[2001:db8::]/32", v6("2001:db8::", 32)),
            ("[2001:db8::/32]", v6("2001:db8::", 32)),
            ("IPv6:2001:db8::1", v6("2001:db8::1", 128)),
            ("ipv6:2001:db8::/48", v6("2001:db8::", 48)),
            ("[IPv6:2001:db8::1]", v6("2001:db8::1", 128)),
            ("IPv6:[2001:db8::1]", v6("2001:db8::1", 128)),
            ("::/0", v6("::", 0)),
            ("[192.0.2.1]", v4("192.0.2.1", 32)),
            ("local", None),
            ("10", None),
            ("10.1.2.3.4/8", None),
            ("192.0.2.0/33", None),
            ("2001:db8::/129", None),
            ("192.0.2.0/", None),
            ("192.0.2.0/x", None),
            ("192.0.2.0/+8", None),
            ("[2001:db8::1", None),
            ("[2001:db8::1]x", None),
            ("[2001:db8::/32]/32", None),
            ("256.0.0.0/8", None),
            ("example.org", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(Network::parse(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn netaddrs() {
        let cases: &[(&str, &str, bool)] = &[
            ("local", "local", true),
            ("local", "0.0.0.0/0", false),
            ("192.0.2.1", "192.0.2.1", true),
            ("192.0.2.1", "192.0.2.2", false),
            ("192.0.2.1", "192.0.2.0/24", true),
            ("192.0.3.1", "192.0.2.0/24", false),
            ("192.0.2.1", "0.0.0.0/0", true),
            ("10.1.2.3", "10/8", true),
            ("11.1.2.3", "10/8", false),
            ("172.31.255.255", "172.16.0.0/12", true),
            ("172.32.0.0", "172.16.0.0/12", false),
            // The entry's host bits do not matter: the mask applies to both.
            ("192.0.2.77", "192.0.2.1/24", true),
            ("[2001:db8::1]", "[2001:db8::1]", true),
            ("[2001:db8::1]", "2001:db8::1", true),
            ("[2001:db8::1]", "IPv6:2001:db8::1", true),
            ("[2001:db8::1]", "[2001:db8::]/32", true),
            ("[2001:db8:1::1]", "2001:db8::/32", true),
            ("[2001:db9::1]", "2001:db8::/32", false),
            ("[2001:db8::1]", "::/0", true),
            ("[2001:db8::1]", "0.0.0.0/0", false),
            ("192.0.2.1", "::/0", false),
            ("[::ffff:192.0.2.1]", "192.0.2.0/24", false),
            ("[2001:DB8::1]", "[2001:db8::1]", true),
            ("192.0.2.1", "not-an-address", false),
            ("not-an-address", "0.0.0.0/0", false),
        ];
        for (key, entry, expected) in cases {
            assert_eq!(
                matches(Comparison::Netaddr, key, entry),
                *expected,
                "{key:?} against {entry:?}"
            );
        }
    }

    #[test]
    fn mailaddrs() {
        let cases: &[(&str, &str, char, bool)] = &[
            ("alice@example.org", "@", '+', true),
            ("@", "@", '+', true),
            ("alice@example.org", "alice@example.org", '+', true),
            ("Alice@Example.org", "alice@example.org", '+', true),
            ("alice@example.org", "bob@example.org", '+', false),
            ("alice@example.org", "alice@example.net", '+', false),
            ("alice@example.org", "@example.org", '+', true),
            ("alice@example.net", "@example.org", '+', false),
            ("alice@example.org", "alice", '+', true),
            ("alice@example.net", "alice", '+', true),
            ("bob@example.org", "alice", '+', false),
            ("alice@mx.example.org", "alice@*.example.org", '+', true),
            ("alice@example.org", "alice@*.example.org", '+', false),
            ("alice@a.example.org", "@*.example.org", '+', true),
            // Sub-addresses.
            ("alice+lists@example.org", "alice@example.org", '+', true),
            ("alice+lists@example.org", "alice", '+', true),
            (
                "alice+lists@example.org",
                "alice+lists@example.org",
                '+',
                true,
            ),
            (
                "alice+other@example.org",
                "alice+lists@example.org",
                '+',
                false,
            ),
            ("alice@example.org", "alice+lists@example.org", '+', false),
            ("alice+a+b@example.org", "alice@example.org", '+', true),
            ("alice-lists@example.org", "alice@example.org", '-', true),
            ("alice+lists@example.org", "alice@example.org", '-', false),
            // The split is at the last '@'.
            ("\"a@b\"@example.org", "@example.org", '+', true),
            // The null sender and addresses without a domain.
            ("@", "alice", '+', false),
            ("@", "@example.org", '+', false),
            ("alice", "alice", '+', true),
            ("alice", "alice@example.org", '+', false),
            // Too long to be an address.
            (&*format!("{}@example.org", "a".repeat(65)), "@", '+', false),
            (&*format!("alice@{}", "a".repeat(256)), "alice", '+', false),
        ];
        for (key, pattern, delim, expected) in cases {
            assert_eq!(
                mailaddr_matches(key, pattern, *delim),
                *expected,
                "{key:?} against {pattern:?} ({delim})"
            );
        }
    }

    #[test]
    fn regexes() {
        let cases: &[(&str, &str, bool)] = &[
            ("mx.example.org", "example", true),
            ("mx.example.org", "^mx\\.", true),
            ("mx.example.org", "^example", false),
            ("mx.example.org", "\\.org$", true),
            ("mx.example.org", "^(mx|mail)[0-9]*\\.example\\.org$", true),
            (
                "mail7.example.org",
                "^(mx|mail)[0-9]*\\.example\\.org$",
                true,
            ),
            (
                "smtp.example.org",
                "^(mx|mail)[0-9]*\\.example\\.org$",
                false,
            ),
            ("MX.example.org", "^mx", false),
            ("MX.example.org", "(?i)^mx", true),
            ("abc", "[[:alpha:]]+", true),
            ("123", "^[[:alpha:]]+$", false),
            ("anything", "", true),
            // Invalid expressions never match.
            ("a(b", "a(b", false),
            ("abc", "[", false),
            ("abc", "(?i)(", false),
        ];
        for (key, pattern, expected) in cases {
            assert_eq!(
                matches(Comparison::Regex, key, pattern),
                *expected,
                "{key:?} against {pattern:?}"
            );
        }
    }

    #[test]
    fn keys_are_lower_cased_and_bounded() {
        assert_eq!(
            normalize_key("t", "MiXed@Example.ORG").unwrap(),
            "mixed@example.org"
        );
        assert!(matches!(
            normalize_key("t", "plain").unwrap(),
            Cow::Borrowed("plain")
        ));
        assert_eq!(normalize_key("t", "ÉCOLE").unwrap(), "École");
        assert!(normalize_key("t", &"a".repeat(1023)).is_ok());
        assert_eq!(
            normalize_key("t", &"a".repeat(1024)).unwrap_err(),
            Error::InvalidKey {
                table: "t".to_owned(),
                reason: "longer than 1023 bytes",
            }
        );
    }

    #[test]
    fn services_compare_as_tables_md_says() {
        let cases = [
            (Service::Domain, Comparison::Domain),
            (Service::Netaddr, Comparison::Netaddr),
            (Service::Mailaddr, Comparison::Mailaddr),
            (Service::Regex, Comparison::Regex),
            (Service::String, Comparison::Exact),
            (Service::Alias, Comparison::Exact),
            (Service::Credentials, Comparison::Exact),
            (Service::Userinfo, Comparison::Exact),
            (Service::Source, Comparison::Exact),
            (Service::Addrname, Comparison::Exact),
            (Service::Mailaddrmap, Comparison::Exact),
            (Service::Relayhost, Comparison::Exact),
        ];
        for (service, comparison) in cases {
            assert_eq!(Comparison::for_service(service), comparison, "{service}");
        }
    }
}
