//! Passwords checked against a `credentials` table value, as OpenSMTPD's
//! `lka_authenticate` checks them with `crypt_checkpass(3)`, and the hashes
//! `smtpctl encrypt` makes.
//!
//! A value is `user:hash` or `hash` (tables.md section 2.2); the user part
//! is not compared (OpenSMTPD looks the login up as the key and checks the
//! hash only). Hashes are crypt(3) strings: bcrypt (`$2a$`, `$2b$`, `$2y$`)
//! and SHA-crypt (`$5$` SHA-256, `$6$` SHA-512, with `rounds=N` clamped to
//! 1000..=999999999 as glibc does). Anything else is refused: like
//! `crypt_checkpass`, there is no plaintext comparison. The computed hash
//! is compared with the stored one in constant time.
//!
//! The SMTP connection's handler calls [`check`] with the [`Credentials`]
//! the session decoded (`auth.rs`); smtpctl calls [`encrypt`].

use subtle::ConstantTimeEq;

use super::auth::Credentials;

/// The longest credentials value OpenSMTPD accepts, exclusive (LINE_MAX).
const VALUE_MAX: usize = 2048;

/// The bcrypt cost of the hashes [`encrypt`] makes (2^10 rounds).
pub const ENCRYPT_COST: u32 = 10;

/// Why a value cannot be checked. Authentication then fails; the daemon
/// logs the reason (never the value, which holds a hash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a credentials value: too short, too long, or an empty side of
    /// the colon.
    #[error("malformed credentials value ({0})")]
    Malformed(&'static str),
    /// A hash of a scheme this server does not check, named by its prefix
    /// (`$1$`, `$y$`, or `plain` for no `$` prefix at all).
    #[error("unsupported password hash scheme {0}")]
    UnsupportedScheme(String),
    /// A supported scheme whose text is not a valid hash.
    #[error("invalid {scheme} hash ({why})")]
    InvalidHash {
        /// The scheme, `bcrypt`, `sha256-crypt` or `sha512-crypt`.
        scheme: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// Hashing failed (no randomness for a salt).
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// A credentials value split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The user before the colon, when there is one.
    pub user: Option<&'a str>,
    /// The password hash.
    pub hash: &'a str,
}

impl<'a> Entry<'a> {
    /// Splits `user:hash` (at the first colon) or takes `hash` whole, with
    /// OpenSMTPD's limits: 3 to 2047 bytes, neither side empty.
    pub fn parse(value: &'a str) -> Result<Self, Error> {
        if value.len() < 3 {
            return Err(Error::Malformed("shorter than 3 characters"));
        }
        if value.len() >= VALUE_MAX {
            return Err(Error::Malformed("2048 characters or longer"));
        }
        match value.split_once(':') {
            None => Ok(Self {
                user: None,
                hash: value,
            }),
            Some(("", _)) | Some((_, "")) => Err(Error::Malformed("empty user or password")),
            Some((user, hash)) => Ok(Self {
                user: Some(user),
                hash,
            }),
        }
    }
}

/// Whether the client's password matches the credentials table value
/// found for its login.
pub fn check(value: &str, credentials: &Credentials) -> Result<bool, Error> {
    check_password(value, credentials.password.as_bytes())
}

/// Whether `password` matches the hash of a credentials table value.
pub fn check_password(value: &str, password: &[u8]) -> Result<bool, Error> {
    verify_hash(Entry::parse(value)?.hash, password)
}

/// Whether `password` matches a crypt(3) `hash` of a supported scheme.
pub fn verify_hash(hash: &str, password: &[u8]) -> Result<bool, Error> {
    if let Some(rest) = hash.strip_prefix("$5$") {
        return sha_crypt(Sha::Sha256, rest, password);
    }
    if let Some(rest) = hash.strip_prefix("$6$") {
        return sha_crypt(Sha::Sha512, rest, password);
    }
    for prefix in ["$2a$", "$2b$", "$2y$"] {
        if hash.starts_with(prefix) {
            return bcrypt_check(hash, password);
        }
    }
    Err(Error::UnsupportedScheme(scheme_of(hash)))
}

/// A bcrypt hash (`$2b$10$...`) of `password`, with a random salt, as
/// `smtpctl encrypt` prints it.
pub fn encrypt(password: &[u8]) -> Result<String, Error> {
    bcrypt::hash(password, ENCRYPT_COST).map_err(|e| Error::Hashing(e.to_string()))
}

/// The `$...$` prefix of a hash, or `plain` when it has none.
fn scheme_of(hash: &str) -> String {
    let prefix = hash
        .strip_prefix('$')
        .and_then(|rest| rest.split_once('$'))
        .map(|(id, _)| id)
        .filter(|id| !id.is_empty() && id.len() <= 8 && id.bytes().all(|b| b.is_ascii_graphic()));
    match prefix {
        Some(id) => format!("${id}$"),
        None => "plain".to_owned(),
    }
}

/// The alphabet of crypt(3)'s base64 (bcrypt's and SHA-crypt's).
fn is_crypt64(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// `$2X$CC$` then 22 characters of salt and 31 of hash. The comparison
/// itself is the bcrypt crate's, in constant time (`subtle`).
fn bcrypt_check(hash: &str, password: &[u8]) -> Result<bool, Error> {
    let invalid = |why: &str| Error::InvalidHash {
        scheme: "bcrypt",
        why: why.to_owned(),
    };
    let cost = hash.get(4..6).ok_or_else(|| invalid("no cost"))?;
    let body = hash.get(7..).ok_or_else(|| invalid("no salt"))?;
    let cost: u32 = match (cost.bytes().all(|b| b.is_ascii_digit()), hash.get(6..7)) {
        (true, Some("$")) => cost.parse().map_err(|_| invalid("bad cost"))?,
        _ => return Err(invalid("the cost is not two digits")),
    };
    if !(4..=31).contains(&cost) {
        return Err(invalid("the cost is not between 04 and 31"));
    }
    if body.len() != 53 || !is_crypt64(body) {
        return Err(invalid("salt and hash are not 53 base64 characters"));
    }
    bcrypt::verify(password, hash).map_err(|e| invalid(&e.to_string()))
}

#[derive(Clone, Copy)]
enum Sha {
    Sha256,
    Sha512,
}

impl Sha {
    fn scheme(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256-crypt",
            Self::Sha512 => "sha512-crypt",
        }
    }

    /// The length of the base64 hash part.
    fn hash_len(self) -> usize {
        match self {
            Self::Sha256 => 43,
            Self::Sha512 => 86,
        }
    }
}

/// Rounds as glibc reads them: `rounds=N`, clamped to the allowed range.
fn sha_rounds(text: &str) -> Option<usize> {
    let rounds: u64 = text.parse().ok()?;
    let clamped = rounds.clamp(1_000, 999_999_999);
    usize::try_from(clamped).ok()
}

/// `[rounds=N$]SALT$HASH` after `$5$` or `$6$`: the salt (at most 16
/// characters are used, as glibc uses them) and rounds hash the password,
/// the result is compared with HASH in constant time.
fn sha_crypt(sha: Sha, rest: &str, password: &[u8]) -> Result<bool, Error> {
    let invalid = |why: &str| Error::InvalidHash {
        scheme: sha.scheme(),
        why: why.to_owned(),
    };
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(after) => {
            let (n, rest) = after.split_once('$').ok_or_else(|| invalid("no salt"))?;
            (sha_rounds(n).ok_or_else(|| invalid("bad rounds"))?, rest)
        }
        None => (5_000, rest),
    };
    let (salt, expected) = rest.split_once('$').ok_or_else(|| invalid("no hash"))?;
    if expected.len() != sha.hash_len() || !is_crypt64(expected) {
        return Err(invalid("the hash part has the wrong length or alphabet"));
    }
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let computed = match sha {
        Sha::Sha256 => sha_crypt::Sha256Params::new(rounds)
            .and_then(|params| sha_crypt::sha256_crypt_b64(password, salt, &params)),
        Sha::Sha512 => sha_crypt::Sha512Params::new(rounds)
            .and_then(|params| sha_crypt::sha512_crypt_b64(password, salt, &params)),
    }
    .map_err(|e| invalid(&format!("{e:?}")))?;
    Ok(computed.as_bytes().ct_eq(expected.as_bytes()).into())
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
