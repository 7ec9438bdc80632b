//! The envelope: one recipient of a queued message with its delivery
//! state, and its serialisation, OpenSMTPD's ASCII envelope format
//! (queue.md section 4): one `key: value` line per field, version 3.
//!
//! [`Envelope::to_bytes`] writes the fields in OpenSMTPD's order and omits
//! those whose text is empty; [`Envelope::parse`] reads them back strictly
//! (unknown keys, malformed lines, blank lines, bad values and a missing or
//! other version are errors that say which line and why). The scheduler,
//! the intake and `smtpctl show envelope` use these; the queue backends
//! only ever see the bytes.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{EvpId, MsgId};

/// The envelope format version written and accepted.
pub const VERSION: u32 = 3;

/// The longest error line kept, as OpenSMTPD's `LINE_MAX` buffer.
pub const MAX_ERRORLINE: usize = 2047;

/// The longest DSN ENVID (RFC 3461: 100 characters).
pub const MAX_DSN_ENVID: usize = 100;

/// The longest DSN ORCPT (RFC 3461: 500 characters).
pub const MAX_DSN_ORCPT: usize = 500;

/// An envelope of a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Its id, once the queue assigned one (not serialised: it is the
    /// blob's key).
    pub id: Option<EvpId>,
    /// The action (`action NAME`) that delivers it.
    pub dispatcher: String,
    /// The listener's tag, empty if none.
    pub tag: String,
    /// How it is delivered, with the fields of that kind.
    pub kind: Kind,
    /// The server name used in the session.
    pub smtpname: String,
    /// The client's HELO/EHLO argument (never empty).
    pub helo: String,
    /// The client's reverse DNS name, or `<unknown>` (never empty).
    pub hostname: String,
    /// The authenticated user, empty if none.
    pub username: String,
    /// The last error, an SMTP-style line, empty if none.
    pub errorline: String,
    /// Where the message came from.
    pub source: Source,
    /// The envelope sender (the null sender is empty user and domain).
    pub sender: MailAddr,
    /// The recipient as given by the client.
    pub rcpt: MailAddr,
    /// The recipient after expansion.
    pub dest: MailAddr,
    /// Creation time, Unix seconds.
    pub ctime: u64,
    /// Last attempt, Unix seconds (0: never).
    pub last_try: u64,
    /// Threshold of the last delay warning sent, Unix seconds.
    pub last_bounce: u64,
    /// Informational lifetime in seconds (0 for normal envelopes).
    pub ttl: u64,
    /// Attempts that failed temporarily.
    pub retry: u16,
    /// Persisted flags.
    pub flags: Flags,
    /// DSN NOTIFY bits ([`Notify`]).
    pub dsn_notify: Notify,
    /// DSN RET, if given.
    pub dsn_ret: Option<DsnRet>,
    /// DSN ENVID, empty if none.
    pub dsn_envid: String,
    /// DSN ORCPT, empty if none.
    pub dsn_orcpt: String,
    /// Enhanced status of the last attempt, if any.
    pub status: Option<Status>,
}

/// The delivery type and its own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Local delivery (`type: mda`).
    Mda(Mda),
    /// Relay (`type: mta`).
    Mta,
    /// A delivery status notification to the sender (`type: bounce`).
    Bounce(Bounce),
}

/// The fields of a local delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mda {
    /// Command or file of an alias-generated delivery (`|cmd`, `/file`).
    pub exec: String,
    /// The `+tag` part of the local user.
    pub subaddress: String,
    /// The local user to deliver to.
    pub user: String,
}

/// What a bounce reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounce {
    /// Permanent failure.
    Failed,
    /// A delay warning.
    Delayed {
        /// The lifetime announced, seconds.
        ttl: u64,
        /// The delay that triggered it, seconds.
        delay: u64,
    },
    /// Success notification.
    Delivered,
}

/// The client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Local submission (`local`).
    Local,
    /// IPv4.
    V4(Ipv4Addr),
    /// IPv6, written in brackets.
    V6(Ipv6Addr),
}

/// A mail address, `user@domain`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailAddr {
    /// The local part.
    pub user: String,
    /// The domain.
    pub domain: String,
}

/// Persisted flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// The client was authenticated.
    pub authenticated: bool,
    /// The envelope is a bounce.
    pub bounce: bool,
    /// The message was generated internally.
    pub internal: bool,
}

/// DSN NOTIFY bits, as OpenSMTPD stores them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify(pub u8);

impl Notify {
    /// NOTIFY=SUCCESS.
    pub const SUCCESS: u8 = 1;
    /// NOTIFY=FAILURE.
    pub const FAILURE: u8 = 2;
    /// NOTIFY=DELAY.
    pub const DELAY: u8 = 4;
    /// NOTIFY=NEVER.
    pub const NEVER: u8 = 8;
}

/// DSN RET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnRet {
    /// Return the full message.
    Full,
    /// Return the headers only.
    Hdrs,
}

/// An enhanced status code `CLASS.X.Y`, `code` being `10 * X + Y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// 2, 4 or 5.
    pub class: u8,
    /// `10 * X + Y`, below 100.
    pub code: u8,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.code / 10, self.code % 10)
    }
}

impl fmt::Display for MailAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::V4(a) => write!(f, "{a}"),
            Self::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Why bytes are not a valid envelope, or an envelope cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A line is not `key: value` (or is blank, or not UTF-8).
    #[error("envelope line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key this format does not define.
    #[error("envelope line {line}: unknown key {key:?}")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: String,
    },
    /// A value that does not parse, or does not fit its field.
    #[error("envelope field {key}: invalid value {value:?}: expected {expected}")]
    Invalid {
        /// The field.
        key: &'static str,
        /// The value found.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
    /// A required field is missing or empty.
    #[error("envelope field {key} is missing or empty")]
    Missing {
        /// The field.
        key: &'static str,
    },
    /// The version is not [`VERSION`].
    #[error("envelope version {0} is not supported (expected {VERSION})")]
    Version(u64),
    /// A field of another delivery type.
    #[error("envelope field {key} is not allowed for type {kind}")]
    WrongType {
        /// The field.
        key: &'static str,
        /// The envelope's type.
        kind: &'static str,
    },
}

/// Every key, in the order they are written.
const KEYS: [&str; 28] = [
    "version",
    "dispatcher",
    "tag",
    "type",
    "smtpname",
    "helo",
    "hostname",
    "username",
    "errorline",
    "sockaddr",
    "sender",
    "rcpt",
    "dest",
    "ctime",
    "last-try",
    "last-bounce",
    "ttl",
    "retry",
    "flags",
    "dsn-notify",
    "dsn-ret",
    "dsn-envid",
    "dsn-orcpt",
    "esc-class",
    "esc-code",
    "mda-exec",
    "mda-subaddress",
    "mda-user",
];

/// The bounce keys, accepted after [`KEYS`].
const BOUNCE_KEYS: [&str; 3] = ["bounce-ttl", "bounce-delay", "bounce-type"];

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Self::Mda(_) => "mda",
            Self::Mta => "mta",
            Self::Bounce(_) => "bounce",
        }
    }
}

impl Envelope {
    /// The message this envelope belongs to, once it has an id.
    pub fn msgid(&self) -> Option<MsgId> {
        self.id.map(EvpId::msgid)
    }

    /// Sets the error line as OpenSMTPD keeps it: one line (line breaks
    /// become spaces), cut at [`MAX_ERRORLINE`] bytes with `...`.
    pub fn set_errorline(&mut self, text: &str) {
        let mut line: String = text
            .trim_start()
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        if line.len() > MAX_ERRORLINE {
            let mut cut = MAX_ERRORLINE - 3;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str("...");
        }
        self.errorline = line;
    }

    /// The envelope in OpenSMTPD's ASCII format. Fails when a text field
    /// cannot be written so that it reads back the same: it holds a line
    /// break or starts with a blank, or is too long.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = String::with_capacity(512);
        let mut put = |key: &'static str, value: String| -> Result<(), EnvelopeError> {
            if value.is_empty() {
                return Ok(());
            }
            if value.contains(['\n', '\r']) || value.starts_with([' ', '\t']) {
                return Err(EnvelopeError::Invalid {
                    key,
                    value,
                    expected: "one line, not starting with a blank",
                });
            }
            out.push_str(key);
            out.push_str(": ");
            out.push_str(&value);
            out.push('\n');
            Ok(())
        };
        put("version", VERSION.to_string())?;
        put("dispatcher", self.dispatcher.clone())?;
        put("tag", self.tag.clone())?;
        put("type", self.kind.name().to_owned())?;
        put("smtpname", self.smtpname.clone())?;
        put("helo", self.helo.clone())?;
        put("hostname", self.hostname.clone())?;
        put("username", self.username.clone())?;
        put("errorline", self.errorline.clone())?;
        put("sockaddr", self.source.to_string())?;
        put("sender", self.sender.to_string())?;
        put("rcpt", self.rcpt.to_string())?;
        put("dest", self.dest.to_string())?;
        put("ctime", self.ctime.to_string())?;
        put("last-try", self.last_try.to_string())?;
        put("last-bounce", self.last_bounce.to_string())?;
        put("ttl", self.ttl.to_string())?;
        put("retry", self.retry.to_string())?;
        put("flags", format_flags(self.flags))?;
        put("dsn-notify", self.dsn_notify.0.to_string())?;
        let ret = self.dsn_ret.map(|r| match r {
            DsnRet::Full => "FULL",
            DsnRet::Hdrs => "HDRS",
        });
        put("dsn-ret", ret.unwrap_or_default().to_owned())?;
        put("dsn-envid", self.dsn_envid.clone())?;
        put("dsn-orcpt", self.dsn_orcpt.clone())?;
        if let Some(s) = self.status {
            put("esc-class", s.class.to_string())?;
            put("esc-code", format!("{:02}", s.code))?;
        }
        match &self.kind {
            Kind::Mda(m) => {
                put("mda-exec", m.exec.clone())?;
                put("mda-subaddress", m.subaddress.clone())?;
                put("mda-user", m.user.clone())?;
            }
            Kind::Mta => {}
            Kind::Bounce(b) => {
                if let Bounce::Delayed { ttl, delay } = b {
                    put("bounce-ttl", ttl.to_string())?;
                    put("bounce-delay", delay.to_string())?;
                }
                let name = match b {
                    Bounce::Failed => "failed",
                    Bounce::Delayed { .. } => "delayed",
                    Bounce::Delivered => "delivered",
                };
                put("bounce-type", name.to_owned())?;
            }
        }
        self.check()?;
        Ok(out.into_bytes())
    }

    /// Reads an envelope in OpenSMTPD's ASCII format; `id` is the id it
    /// was stored under, if known.
    pub fn parse(bytes: &[u8], id: Option<EvpId>) -> Result<Self, EnvelopeError> {
        let fields = split_fields(bytes)?;
        let mut f = Fields(fields);
        let version = f.number("version", u64::MAX)?;
        match version {
            None => return Err(EnvelopeError::Missing { key: "version" }),
            Some(v) if v != u64::from(VERSION) => return Err(EnvelopeError::Version(v)),
            Some(_) => {}
        }
        let kind = parse_kind(&mut f)?;
        let status = match f.number("esc-class", 5)? {
            None | Some(0) => {
                f.take("esc-code");
                None
            }
            Some(class @ (2 | 4 | 5)) => Some(Status {
                class: class as u8,
                code: f.number("esc-code", 99)?.unwrap_or(0) as u8,
            }),
            Some(class) => return Err(invalid("esc-class", class.to_string(), "2, 4 or 5")),
        };
        let envelope = Self {
            id,
            dispatcher: f.text("dispatcher"),
            tag: f.text("tag"),
            kind,
            smtpname: f.text("smtpname"),
            helo: f.text("helo"),
            hostname: f.text("hostname"),
            username: f.text("username"),
            errorline: f.text("errorline"),
            source: f
                .take("sockaddr")
                .map(|v| parse_source(&v))
                .transpose()?
                .unwrap_or(Source::Local),
            sender: f.addr("sender")?,
            rcpt: f.addr("rcpt")?,
            dest: f.addr("dest")?,
            ctime: f.number("ctime", i64::MAX as u64)?.unwrap_or(0),
            last_try: f.number("last-try", i64::MAX as u64)?.unwrap_or(0),
            last_bounce: f.number("last-bounce", i64::MAX as u64)?.unwrap_or(0),
            ttl: f.number("ttl", i64::MAX as u64)?.unwrap_or(0),
            retry: f.number("retry", u64::from(u16::MAX))?.unwrap_or(0) as u16,
            flags: f
                .take("flags")
                .map(|v| parse_flags(&v))
                .transpose()?
                .unwrap_or_default(),
            dsn_notify: Notify(f.number("dsn-notify", 15)?.unwrap_or(0) as u8),
            dsn_ret: f.take("dsn-ret").map(|v| parse_ret(&v)).transpose()?,
            dsn_envid: f.text("dsn-envid"),
            dsn_orcpt: f.text("dsn-orcpt"),
            status,
        };
        envelope.check()?;
        Ok(envelope)
    }

    /// The checks shared by writing and reading.
    fn check(&self) -> Result<(), EnvelopeError> {
        for (key, value) in [
            ("dispatcher", &self.dispatcher),
            ("helo", &self.helo),
            ("hostname", &self.hostname),
        ] {
            if value.is_empty() {
                return Err(EnvelopeError::Missing { key });
            }
        }
        for (key, value, max) in [
            ("errorline", &self.errorline, MAX_ERRORLINE),
            ("dsn-envid", &self.dsn_envid, MAX_DSN_ENVID),
            ("dsn-orcpt", &self.dsn_orcpt, MAX_DSN_ORCPT),
        ] {
            if value.len() > max {
                return Err(invalid(key, value.clone(), "a shorter text"));
            }
        }
        if let Some(s) = self.status {
            if !matches!(s.class, 2 | 4 | 5) || s.code > 99 {
                return Err(invalid(
                    "esc-class",
                    s.to_string(),
                    "class 2, 4 or 5, code below 100",
                ));
            }
        }
        if self.dsn_notify.0 > 15 {
            return Err(invalid(
                "dsn-notify",
                self.dsn_notify.0.to_string(),
                "0 to 15",
            ));
        }
        for (key, addr) in [
            ("sender", &self.sender),
            ("rcpt", &self.rcpt),
            ("dest", &self.dest),
        ] {
            if addr.domain.contains('@') {
                return Err(invalid(key, addr.to_string(), "a domain without @"));
            }
        }
        Ok(())
    }
}

fn invalid(key: &'static str, value: impl Into<String>, expected: &'static str) -> EnvelopeError {
    EnvelopeError::Invalid {
        key,
        value: value.into(),
        expected,
    }
}

/// Splits the bytes into `key -> value` (keys lower-cased, the last of a
/// repeated key kept), refusing malformed lines and unknown keys.
fn split_fields(bytes: &[u8]) -> Result<HashMap<&'static str, String>, EnvelopeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        EnvelopeError::Malformed {
            line,
            reason: "not UTF-8",
        }
    })?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut fields = HashMap::new();
    if body.is_empty() {
        return Ok(fields);
    }
    for (n, raw) in body.split('\n').enumerate() {
        let line = n + 1;
        if raw.is_empty() {
            return Err(EnvelopeError::Malformed {
                line,
                reason: "blank line",
            });
        }
        let key_len = raw
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-')
            .count();
        if key_len == 0 {
            return Err(EnvelopeError::Malformed {
                line,
                reason: "expected a key of letters, digits and -",
            });
        }
        let (key, rest) = raw.split_at(key_len);
        let Some(value) = rest.trim_start_matches([' ', '\t']).strip_prefix(':') else {
            return Err(EnvelopeError::Malformed {
                line,
                reason: "expected ':' after the key",
            });
        };
        let lower = key.to_ascii_lowercase();
        let Some(known) = KEYS.iter().chain(&BOUNCE_KEYS).find(|k| **k == lower) else {
            return Err(EnvelopeError::UnknownKey {
                line,
                key: key.to_owned(),
            });
        };
        fields.insert(*known, value.trim_start_matches([' ', '\t']).to_owned());
    }
    Ok(fields)
}

/// The parsed `key -> value` lines, consumed field by field.
struct Fields(HashMap<&'static str, String>);

impl Fields {
    fn take(&mut self, key: &'static str) -> Option<String> {
        self.0.remove(key)
    }

    fn text(&mut self, key: &'static str) -> String {
        self.take(key).unwrap_or_default()
    }

    fn number(&mut self, key: &'static str, max: u64) -> Result<Option<u64>, EnvelopeError> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match v.parse::<u64>() {
            Ok(n) if n <= max && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
            _ => Err(invalid(key, v, "a decimal number in range")),
        }
    }

    fn addr(&mut self, key: &'static str) -> Result<MailAddr, EnvelopeError> {
        let Some(v) = self.take(key) else {
            return Ok(MailAddr::default());
        };
        match v.rsplit_once('@') {
            Some((user, domain)) => Ok(MailAddr {
                user: user.to_owned(),
                domain: domain.to_owned(),
            }),
            None => Err(invalid(key, v, "user@domain")),
        }
    }
}

fn parse_kind(f: &mut Fields) -> Result<Kind, EnvelopeError> {
    let name = f
        .take("type")
        .ok_or(EnvelopeError::Missing { key: "type" })?;
    let kind = match name.to_ascii_lowercase().as_str() {
        "mda" => Kind::Mda(Mda {
            exec: f.text("mda-exec"),
            subaddress: f.text("mda-subaddress"),
            user: f.text("mda-user"),
        }),
        "mta" => Kind::Mta,
        "bounce" => Kind::Bounce(parse_bounce(f)?),
        _ => return Err(invalid("type", name, "mda, mta or bounce")),
    };
    for key in ["mda-exec", "mda-subaddress", "mda-user"]
        .into_iter()
        .chain(BOUNCE_KEYS)
    {
        if f.0.contains_key(key) {
            return Err(EnvelopeError::WrongType {
                key,
                kind: kind.name(),
            });
        }
    }
    Ok(kind)
}

fn parse_bounce(f: &mut Fields) -> Result<Bounce, EnvelopeError> {
    let name = f
        .take("bounce-type")
        .ok_or(EnvelopeError::Missing { key: "bounce-type" })?;
    let ttl = f.number("bounce-ttl", i64::MAX as u64)?;
    let delay = f.number("bounce-delay", i64::MAX as u64)?;
    let bounce = match name.to_ascii_lowercase().as_str() {
        "failed" | "error" => Bounce::Failed,
        "delivered" | "dsn" => Bounce::Delivered,
        "delayed" | "warn" => {
            return Ok(Bounce::Delayed {
                ttl: ttl.unwrap_or(0),
                delay: delay.unwrap_or(0),
            })
        }
        _ => return Err(invalid("bounce-type", name, "failed, delayed or delivered")),
    };
    // Only delay warnings carry a ttl and a delay; zeros are harmless.
    for (key, value) in [("bounce-ttl", ttl), ("bounce-delay", delay)] {
        if value.is_some_and(|v| v != 0) {
            return Err(EnvelopeError::WrongType {
                key,
                kind: "bounce (not delayed)",
            });
        }
    }
    Ok(bounce)
}

fn parse_source(v: &str) -> Result<Source, EnvelopeError> {
    if v == "local" {
        return Ok(Source::Local);
    }
    let parsed = match v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) => inner.parse().ok().map(Source::V6),
        None => v.parse().ok().map(Source::V4),
    };
    parsed.ok_or_else(|| invalid("sockaddr", v, "local, an IPv4 address or [IPv6]"))
}

fn format_flags(flags: Flags) -> String {
    let words: Vec<&str> = [
        (flags.authenticated, "authenticated"),
        (flags.bounce, "bounce"),
        (flags.internal, "internal"),
    ]
    .into_iter()
    .filter_map(|(set, word)| set.then_some(word))
    .collect();
    words.join(" ")
}

fn parse_flags(v: &str) -> Result<Flags, EnvelopeError> {
    let mut flags = Flags::default();
    for word in v.split([' ', ',', '|']).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "authenticated" => flags.authenticated = true,
            "bounce" => flags.bounce = true,
            "internal" => flags.internal = true,
            "enqueued" => {}
            _ => return Err(invalid("flags", v, "authenticated, bounce, internal")),
        }
    }
    Ok(flags)
}

fn parse_ret(v: &str) -> Result<DsnRet, EnvelopeError> {
    match v.to_ascii_uppercase().as_str() {
        "FULL" => Ok(DsnRet::Full),
        "HDRS" => Ok(DsnRet::Hdrs),
        _ => Err(invalid("dsn-ret", v, "FULL or HDRS")),
    }
}

#[cfg(test)]
mod tests;
