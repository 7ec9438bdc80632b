//! The formats of values inside smtpd.conf and its tables: delays, sizes,
//! ports, host names, network addresses, relay URLs, and the values that
//! table services return (aliases, userinfo, credentials).
//!
//! Pure functions, used by `check.rs`; the relay URL parser is public since
//! relaying parses the URLs that tables return at run time too. Each parser
//! follows the OpenSMTPD 7.8 function named in its documentation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::model::{MailFromRewrite, RelayScheme, RelayUrl};

/// A delay: a number of at least 1 and a unit `s`, `m`, `h` or `d`
/// (`delaytonum`); at most `INT_MAX` seconds.
pub(crate) fn delay(text: &str) -> Option<Duration> {
    let (digits, factor) = match text.as_bytes().last()? {
        b's' => (&text[..text.len() - 1], 1),
        b'm' => (&text[..text.len() - 1], 60),
        b'h' => (&text[..text.len() - 1], 3600),
        b'd' => (&text[..text.len() - 1], 86400),
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = n.checked_mul(factor)?;
    (n >= 1 && secs <= i32::MAX as u64).then(|| Duration::from_secs(secs))
}

/// What a delay looks like, for error messages.
pub(crate) const DELAY_FORMAT: &str =
    "a number of at least 1 followed by s, m, h or d (such as 30m or 4d)";

/// A size in bytes: digits with an optional fraction and a unit of `B K M
/// G T P E`, powers of 1024 (`scan_scaled`).
pub(crate) fn size(text: &str) -> Option<u64> {
    let (number, unit) = match text.as_bytes().last()? {
        c if c.is_ascii_digit() => (text, 0),
        c => {
            let power = b"BKMGTPE"
                .iter()
                .position(|u| u == &c.to_ascii_uppercase())?;
            (&text[..text.len() - 1], power)
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || (unit == 0 && !fraction.is_empty()) {
        return None;
    }
    let scale = 1u64.checked_shl(10 * u32::try_from(unit).ok()?)?;
    let mut bytes = whole.parse::<u64>().ok()?.checked_mul(scale)?;
    // Each fractional digit adds digit * scale / 10^k (truncated).
    let mut divisor = 1u64;
    for d in fraction.bytes().take(18) {
        divisor *= 10;
        bytes = bytes.checked_add(u64::from(d - b'0') * scale / divisor)?;
    }
    Some(bytes)
}

/// What a size looks like, for error messages.
pub(crate) const SIZE_FORMAT: &str =
    "a number of bytes, or a number with a unit B, K, M, G, T, P or E (such as 35M)";

/// A TCP port from a service name: a few well-known names, then
/// `/etc/services`.
pub(crate) fn service_port(name: &str) -> Option<u16> {
    let known = [
        ("smtp", 25),
        ("lmtp", 24),
        ("submission", 587),
        ("submissions", 465),
        ("smtps", 465),
        ("urd", 465),
    ];
    if let Some((_, port)) = known.iter().find(|(n, _)| *n == name) {
        return Some(*port);
    }
    let services = std::fs::read_to_string("/etc/services").ok()?;
    services.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let primary = fields.next()?;
        let (port, proto) = fields.next()?.split_once('/')?;
        let named = primary == name || fields.any(|alias| alias == name);
        (named && proto == "tcp")
            .then(|| port.parse().ok())
            .flatten()
    })
}

/// A host name: dot-separated labels of letters, digits, `-` and `_`.
pub(crate) fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An address or a network, as netaddr tables hold them (`text_to_netaddr`):
/// `192.0.2.1`, `192.0.2.0/24`, `10/8`, `2001:db8::1`, `[2001:db8::]/32`,
/// optionally prefixed with `IPv6:`.
pub(crate) fn is_netaddr(text: &str) -> bool {
    let text = strip_prefix_ignore_case(text, "IPv6:");
    let (addr, bits) = match text.rsplit_once('/') {
        Some((addr, bits)) => {
            if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            (addr, bits.parse::<u32>().ok())
        }
        None => (text, None),
    };
    let bracketed = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']'));
    let max = if let Some(inner) = bracketed {
        if inner.parse::<IpAddr>().is_err() {
            return false;
        }
        if inner.contains(':') {
            128
        } else {
            32
        }
    } else if addr.parse::<Ipv4Addr>().is_ok() {
        32
    } else if addr.parse::<Ipv6Addr>().is_ok() {
        128
    } else if bits.is_some() && is_short_ipv4(addr) {
        32
    } else {
        return false;
    };
    match (text.contains('/'), bits) {
        (false, _) => true,
        (true, Some(bits)) => bits <= max,
        (true, None) => false,
    }
}

/// `10`, `10.1`, `10.1.2`: the short forms inet_net_pton accepts before a
/// mask.
fn is_short_ipv4(text: &str) -> bool {
    let octets: Vec<&str> = text.split('.').collect();
    octets.len() <= 3
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.parse::<u8>().is_ok())
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> &'a str {
    match text.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &text[prefix.len()..],
        _ => text,
    }
}

/// A source address for relaying: an IPv4 or IPv6 address, IPv6 maybe in
/// brackets and with a `%scope`.
pub(crate) fn is_source_address(text: &str) -> bool {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let addr = match inner.split_once('%') {
        Some((addr, scope)) if !scope.is_empty() => addr,
        Some(_) => return false,
        None => inner,
    };
    addr.parse::<IpAddr>().is_ok()
}

impl RelayUrl {
    /// Parses `[SCHEME://][LABEL@]HOST[:PORT]` (`text_to_relayhost`), e.g.
    /// `smtp+tls://mylabel@smtp.example.org:587` or `lmtp://[::1]:24`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some((name, rest)) => (scheme_named(name)?, rest),
            None => (RelayScheme::Smtp, text),
        };
        let (label, hostport) = match rest.split_once('@') {
            Some((label, hostport)) => {
                if label.is_empty() {
                    return Err("empty label before @".to_owned());
                }
                if !matches!(scheme, RelayScheme::SmtpTls | RelayScheme::Smtps) {
                    return Err(
                        "a label (LABEL@) is only allowed with smtp+tls:// or smtps://".to_owned(),
                    );
                }
                (Some(label.to_owned()), hostport)
            }
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)?;
        if scheme == RelayScheme::Lmtp && port.is_none() {
            return Err("lmtp:// requires a port".to_owned());
        }
        Ok(Self {
            scheme,
            label,
            host,
            port,
        })
    }
}

fn scheme_named(name: &str) -> Result<RelayScheme, String> {
    let schemes = [
        ("smtp", RelayScheme::Smtp),
        ("smtp+tls", RelayScheme::SmtpTls),
        ("smtp+notls", RelayScheme::SmtpNoTls),
        ("lmtp", RelayScheme::Lmtp),
        ("smtps", RelayScheme::Smtps),
    ];
    schemes
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            format!("unknown scheme {name}:// (expected smtp, smtp+tls, smtp+notls, lmtp or smtps)")
        })
}

/// `host`, `host:port`, `[addr]` or `[addr]:port`.
fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ] after an address".to_owned())?;
        if addr.parse::<IpAddr>().is_err() {
            return Err(format!("invalid address [{addr}]"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {after:?} after [{addr}]"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if !is_hostname(host) {
            return Err(format!("invalid host name {host:?}"));
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("invalid port {p:?}"))?,
        ),
    };
    Ok((host, port))
}

/// An LMTP destination: `host:port`, `[addr]:port` or an absolute Unix
/// socket path.
pub(crate) fn is_lmtp_destination(text: &str) -> bool {
    if text.starts_with('/') {
        return true;
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(addr) => addr.parse::<IpAddr>().is_ok(),
        None => is_hostname(host),
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0)
        || (!port.is_empty() && port.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    host_ok && port_ok
}

/// A relay `mail-from` value: `user@domain`, `user` or `@domain`.
pub(crate) fn mail_from(text: &str) -> Option<MailFromRewrite> {
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    match text.split_once('@') {
        None => Some(MailFromRewrite::User(text.to_owned())),
        Some((_, domain)) if domain.is_empty() || domain.contains('@') => None,
        Some(("", domain)) => is_hostname(domain).then(|| MailFromRewrite::Domain(domain.into())),
        Some((user, domain)) => is_hostname(domain).then(|| MailFromRewrite::Address {
            user: user.to_owned(),
            domain: domain.to_owned(),
        }),
    }
}

/// Checks an alias value: a comma-separated list of expansion targets
/// (tables.md section 2.1).
pub(crate) fn check_alias(value: &str) -> Result<(), String> {
    let elements = split_alias(value);
    if elements.iter().all(|e| e.is_empty()) {
        return Err("empty alias".to_owned());
    }
    for element in elements.iter().filter(|e| !e.is_empty()) {
        if !is_alias_element(element) {
            return Err(format!("invalid alias target {element:?}"));
        }
    }
    Ok(())
}

/// What an alias value holds, for error messages.
pub(crate) const ALIAS_FORMAT: &str = "comma-separated user names, user@domain addresses, \
     /absolute/files, |commands, include:/files or error:NNN messages";

fn split_alias(value: &str) -> Vec<String> {
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' => {
                current.push(c);
                escaped = true;
            }
            '"' | '\'' if quote == Some(c) => {
                quote = None;
                current.push(c);
            }
            '"' | '\'' if quote.is_none() => {
                quote = Some(c);
                current.push(c);
            }
            ',' if quote.is_none() => elements.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    elements.push(current);
    elements.into_iter().map(|e| e.trim().to_owned()).collect()
}

fn is_alias_element(e: &str) -> bool {
    let strip = |prefix: &str| {
        e.strip_prefix(prefix)
            .or_else(|| e.strip_prefix(&format!(":{prefix}")))
    };
    if let Some(rest) = strip("error:") {
        let b = rest.as_bytes();
        return b.len() >= 5
            && matches!(b[0], b'4' | b'5')
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && b[3] == b' '
            && b[4].is_ascii_alphanumeric();
    }
    if let Some(path) = strip("include:") {
        return path.starts_with('/');
    }
    if e.starts_with('|') || e.starts_with("\"|") || e.starts_with('/') {
        return true;
    }
    if let Some((user, domain)) = e.rsplit_once('@') {
        let user_ok = !user.is_empty()
            && !user.contains('@')
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%*/?|^{}`~&'+-=_.".contains(c));
        let domain_ok = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        return e.len() >= 3 && user_ok && domain_ok;
    }
    e.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'))
}

/// Checks a userinfo value, `UID:GID:HOMEDIR`.
pub(crate) fn check_userinfo(value: &str) -> Result<(), String> {
    let mut parts = value.splitn(3, ':');
    let uid = parts.next().unwrap_or("");
    let gid = parts.next().unwrap_or("");
    let dir = parts.next().unwrap_or("");
    if uid.parse::<u32>().is_err() || gid.parse::<u32>().is_err() || dir.is_empty() {
        return Err(format!("invalid userinfo {value:?}"));
    }
    Ok(())
}

/// Checks a credentials value, `user:password` or `password`.
pub(crate) fn check_credentials(value: &str) -> Result<(), String> {
    if value.len() < 3 {
        return Err("credentials shorter than 3 characters".to_owned());
    }
    if value.starts_with(':') || value.ends_with(':') {
        return Err(format!(
            "invalid credentials {value:?} (empty user or password)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1s", Some(1)),
            ("30m", Some(1800)),
            ("4h", Some(14400)),
            ("4d", Some(345_600)),
            ("0s", None),
            ("4", None),
            ("h", None),
            ("4w", None),
            ("-1d", None),
            ("1.5h", None),
            ("2147483647s", Some(2_147_483_647)),
            ("2147483648s", None),
            ("99999999999999999999d", None),
        ];
        for (text, secs) in cases {
            assert_eq!(delay(text).map(|d| d.as_secs()), *secs, "{text}");
        }
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("1024", Some(1024)),
            ("512B", Some(512)),
            ("10K", Some(10240)),
            ("35M", Some(36_700_160)),
            ("35m", Some(36_700_160)),
            ("1.5M", Some(1_572_864)),
            ("1G", Some(1 << 30)),
            ("2E", Some(2 << 60)),
            ("16E", None),
            ("M", None),
            ("-1M", None),
            ("1.5", None),
            ("1X", None),
        ];
        for (text, bytes) in cases {
            assert_eq!(size(text), *bytes, "{text}");
        }
    }

    #[test]
    fn netaddrs() {
        for good in [
            "192.0.2.1",
            "192.0.2.0/24",
            "10/8",
            "0.0.0.0/0",
            "::1",
            "::/0",
            "2001:db8::/32",
            "[2001:db8::1]",
            "[2001:db8::]/32",
            "IPv6:2001:db8::1",
            "ipv6:[::1]",
        ] {
            assert!(is_netaddr(good), "{good}");
        }
        for bad in [
            "192.0.2.256",
            "192.0.2.0/33",
            "::/129",
            "10",
            "example.org",
            "192.0.2.0/",
            "[192.0.2.1",
            "1.2.3.4/x",
        ] {
            assert!(!is_netaddr(bad), "{bad}");
        }
    }

    #[test]
    fn relay_urls() {
        let url = RelayUrl::parse("smtp+tls://label@mx.example.org:587").unwrap();
        assert_eq!(url.scheme, RelayScheme::SmtpTls);
        assert_eq!(url.label.as_deref(), Some("label"));
        assert_eq!(url.host, "mx.example.org");
        assert_eq!(url.port, Some(587));
        let url = RelayUrl::parse("[2001:db8::1]").unwrap();
        assert_eq!(
            (url.scheme, url.host.as_str(), url.port),
            (RelayScheme::Smtp, "[2001:db8::1]", None)
        );
        assert_eq!(
            RelayUrl::parse("lmtp://127.0.0.1:24").unwrap().port,
            Some(24)
        );
        for (bad, why) in [
            ("ftp://host", "unknown scheme"),
            ("smtp://label@host", "label"),
            ("lmtp://host", "requires a port"),
            ("smtp://host:0", "invalid port"),
            ("smtp://host:99999", "invalid port"),
            ("smtp://bad host", "invalid host"),
            ("smtp://[::1", "missing ]"),
            ("smtp://[nope]", "invalid address"),
        ] {
            let e = RelayUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn alias_values() {
        for good in [
            "root",
            "alice, bob",
            "alice@example.org",
            "|/usr/bin/vacation alice",
            "\"|/bin/cat, with comma\"",
            "/var/mail/archive",
            "include:/etc/mail/list",
            ":include:/etc/mail/list",
            "error:550 no such user",
            "first.last+tag, x_y-z",
        ] {
            assert!(check_alias(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            " , ",
            "error:250 ok",
            "include:relative",
            "a b",
            "@example.org",
        ] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_values() {
        assert!(check_userinfo("1000:1000:/home/a:b").is_ok());
        assert!(check_userinfo("x:1000:/home/a").is_err());
        assert!(check_userinfo("1000:1000:").is_err());
        assert!(check_credentials("alice:$2b$10$abc").is_ok());
        assert!(check_credentials("secret").is_ok());
        assert!(check_credentials(":pw").is_err());
        assert!(check_credentials("ab").is_err());
        assert!(is_source_address("[fe80::1%eth0]"));
        assert!(is_source_address("192.0.2.7"));
        assert!(!is_source_address("mx.example.org"));
        assert!(is_lmtp_destination("/var/run/dovecot/lmtp"));
        assert!(is_lmtp_destination("127.0.0.1:24"));
        assert!(is_lmtp_destination("[::1]:lmtp"));
        assert!(!is_lmtp_destination("localhost"));
        assert_eq!(
            mail_from("@example.org"),
            Some(MailFromRewrite::Domain("example.org".into()))
        );
        assert_eq!(
            mail_from("bounces"),
            Some(MailFromRewrite::User("bounces".into()))
        );
        assert!(mail_from("a@").is_none());
        assert!(mail_from("a b").is_none());
        assert_eq!(service_port("submission"), Some(587));
        assert!(is_hostname("mx1.example.org"));
        assert!(!is_hostname("a..b"));
    }
}
