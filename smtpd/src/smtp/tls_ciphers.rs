//! libtls `protocols` and `ciphers` strings read onto what rustls offers,
//! and the OpenSSL names libtls reports for the negotiated suite.
//!
//! `protocols` is read as `tls_config_parse_protocols` reads it: words
//! separated by `,` or `:`, case-insensitive, `tlsv1.0` .. `tlsv1.3`,
//! `tlsv1` (all four), `all`/`legacy`, `default`/`secure` (1.2 and 1.3),
//! each negated by a leading `!` (a string starting with a negation starts
//! from `all`). `ciphers` is a libtls keyword (`secure`, `default`,
//! `compat`, `legacy`, `insecure`, `all`: every suite rustls has is in each)
//! or an OpenSSL cipher list: elements separated by `:`, `,`, `;` or
//! spaces, prefixed by `!` (removed for good), `-` (removed) or `+`
//! (reordered: no effect here), made of attributes joined by `+` (all must
//! hold). Unknown words select nothing, as in OpenSSL.

use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

/// The TLS versions a listener accepts (those rustls has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    /// TLS 1.2.
    pub tls12: bool,
    /// TLS 1.3.
    pub tls13: bool,
}

impl Protocols {
    /// libtls's default, `secure`: TLS 1.2 and 1.3.
    pub const DEFAULT: Self = Self {
        tls12: true,
        tls13: true,
    };

    /// The rustls versions, newest first.
    pub(super) fn versions(self) -> Vec<&'static SupportedProtocolVersion> {
        let mut versions = Vec::new();
        if self.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        versions
    }
}

// libtls's protocol bits.
const TLS10: u8 = 1;
const TLS11: u8 = 2;
const TLS12: u8 = 4;
const TLS13: u8 = 8;
const ALL: u8 = TLS10 | TLS11 | TLS12 | TLS13;

/// Reads a libtls protocol string. TLS 1.0 and 1.1 are accepted and
/// dropped (rustls has neither); a string leaving neither 1.2 nor 1.3 is
/// an error.
pub fn parse_protocols(text: &str) -> Result<Protocols, String> {
    let mut set = 0u8;
    for word in text.split([',', ':']) {
        let word = word.trim_start_matches([' ', '\t']);
        let (negate, name) = match word.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, word),
        };
        if negate && set == 0 {
            set = ALL;
        }
        let bits = match name.to_ascii_lowercase().as_str() {
            "all" | "legacy" => ALL,
            "default" | "secure" => TLS12 | TLS13,
            "tlsv1" => ALL,
            "tlsv1.0" => TLS10,
            "tlsv1.1" => TLS11,
            "tlsv1.2" => TLS12,
            "tlsv1.3" => TLS13,
            _ => return Err(format!("unknown protocol {name:?}")),
        };
        match negate {
            true => set &= !bits,
            false => set |= bits,
        }
    }
    let protocols = Protocols {
        tls12: set & TLS12 != 0,
        tls13: set & TLS13 != 0,
    };
    match protocols.tls12 || protocols.tls13 {
        true => Ok(protocols),
        false => Err("neither TLSv1.2 nor TLSv1.3 (the only versions supported)".to_owned()),
    }
}

/// What OpenSSL knows of each suite rustls offers: its name, strength and
/// the attributes cipher strings select it by.
struct Known {
    suite: CipherSuite,
    openssl: &'static str,
    bits: u32,
    attributes: &'static [&'static str],
}

/// Attributes every TLS 1.2 suite of rustls has, beyond its own.
const TLS12_COMMON: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "TLSv1.2", "kECDHE", "ECDHE", "EECDH", "AEAD",
];
/// Attributes every TLS 1.3 suite has.
const TLS13_COMMON: &[&str] = &["ALL", "DEFAULT", "HIGH", "TLSv1.3", "AEAD"];

const KNOWN: &[Known] = &[
    Known {
        suite: CipherSuite::TLS13_AES_256_GCM_SHA384,
        openssl: "TLS_AES_256_GCM_SHA384",
        bits: 256,
        attributes: &["AES", "AES256", "AESGCM", "SHA384"],
    },
    Known {
        suite: CipherSuite::TLS13_AES_128_GCM_SHA256,
        openssl: "TLS_AES_128_GCM_SHA256",
        bits: 128,
        attributes: &["AES", "AES128", "AESGCM", "SHA256"],
    },
    Known {
        suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        openssl: "TLS_CHACHA20_POLY1305_SHA256",
        bits: 256,
        attributes: &["CHACHA20", "SHA256"],
    },
    Known {
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        bits: 256,
        attributes: &["aECDSA", "ECDSA", "AES", "AES256", "AESGCM", "SHA384"],
    },
    Known {
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        bits: 128,
        attributes: &["aECDSA", "ECDSA", "AES", "AES128", "AESGCM", "SHA256"],
    },
    Known {
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        bits: 256,
        attributes: &["aECDSA", "ECDSA", "CHACHA20", "SHA256"],
    },
    Known {
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
        bits: 256,
        attributes: &["aRSA", "AES", "AES256", "AESGCM", "SHA384"],
    },
    Known {
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
        bits: 128,
        attributes: &["aRSA", "AES", "AES128", "AESGCM", "SHA256"],
    },
    Known {
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
        bits: 256,
        attributes: &["aRSA", "CHACHA20", "SHA256"],
    },
];

fn known(suite: CipherSuite) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.suite == suite)
}

/// The name libtls reports for a suite (OpenSSL's) and its strength in
/// bits; a suite OpenSSL has no name for keeps its IANA name.
pub(super) fn openssl_name(suite: CipherSuite) -> (String, u32) {
    match known(suite) {
        Some(k) => (k.openssl.to_owned(), k.bits),
        None => (suite.as_str().unwrap_or("UNKNOWN").to_owned(), 0),
    }
}

fn is_tls13(suite: &SupportedCipherSuite) -> bool {
    matches!(suite, SupportedCipherSuite::Tls13(_))
}

/// Whether `attribute` holds for `suite`: an alias, or its OpenSSL or IANA
/// name.
fn holds(attribute: &str, suite: &SupportedCipherSuite) -> bool {
    let id = suite.suite();
    let Some(k) = known(id) else {
        return false;
    };
    let common = match is_tls13(suite) {
        true => TLS13_COMMON,
        false => TLS12_COMMON,
    };
    let iana = id.as_str().unwrap_or_default();
    k.openssl == attribute
        || iana == attribute
        || iana.replacen("TLS13_", "TLS_", 1) == attribute
        || common.contains(&attribute)
        || k.attributes.contains(&attribute)
}

/// Whether the element names a TLS 1.3 suite (or all of them) itself:
/// then the string governs TLS 1.3 suites too.
fn names_tls13(attributes: &[&str]) -> bool {
    attributes.iter().any(|a| {
        *a == "TLSv1.3"
            || KNOWN[..3]
                .iter()
                .any(|k| k.openssl == *a || k.suite.as_str() == Some(a))
    })
}

/// The suites of `available` a libtls cipher string selects, in
/// `available`'s order.
pub(super) fn select(
    text: &str,
    available: &[SupportedCipherSuite],
    protocols: Protocols,
) -> Result<Vec<SupportedCipherSuite>, String> {
    let keyword = ["secure", "default", "compat", "legacy", "insecure", "all"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(text));
    if keyword {
        return Ok(available.to_vec());
    }
    let mut chosen = vec![false; available.len()];
    let mut killed = vec![false; available.len()];
    let mut governs_tls13 = false;
    let elements = text
        .split([':', ',', ';', ' '])
        .filter(|e| !e.is_empty() && !e.starts_with('@'));
    for element in elements {
        let (op, body) = match element.as_bytes()[0] {
            op @ (b'!' | b'-' | b'+') => (op, &element[1..]),
            _ => (b' ', element),
        };
        let attributes: Vec<&str> = body.split('+').collect();
        if op == b' ' && names_tls13(&attributes) {
            governs_tls13 = true;
        }
        for (i, suite) in available.iter().enumerate() {
            if !attributes.iter().all(|a| holds(a, suite)) {
                continue;
            }
            match op {
                b'!' => killed[i] = true,
                b'-' => chosen[i] = false,
                b'+' => {}
                _ => chosen[i] = true,
            }
        }
    }
    let selected: Vec<SupportedCipherSuite> = available
        .iter()
        .enumerate()
        .filter(|&(i, suite)| match is_tls13(suite) && !governs_tls13 {
            true => true,
            false => chosen[i] && !killed[i],
        })
        .map(|(_, suite)| *suite)
        .collect();
    let tls12 = selected.iter().any(|s| !is_tls13(s));
    let tls13 = selected.iter().any(is_tls13);
    if (protocols.tls12 && tls12) || (protocols.tls13 && tls13) {
        Ok(selected)
    } else {
        Err("selects no cipher suite available for the protocols in use".to_owned())
    }
}
