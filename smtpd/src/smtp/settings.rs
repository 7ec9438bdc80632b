//! What a listener's sessions share: TLS and AUTH modes, limits, the
//! extensions offered. The daemon builds one [`SessionConfig`] per
//! listener from smtpd.conf (`listen on ...`, `smtp limit`, `smtp
//! max-message-size`) and hands it, in an `Arc`, to every session.

/// How a listener uses TLS (`listen on ... tls | tls-require | smtps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    None,
    /// STARTTLS offered.
    StartTls,
    /// STARTTLS required before MAIL FROM.
    Required,
    /// TLS from the first byte.
    Smtps,
}

/// Whether a listener offers AUTH (`auth`, `auth-optional`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Not offered.
    None,
    /// Offered, not required.
    Optional,
    /// Offered and required before MAIL FROM.
    Required,
}

/// Session limits (`smtp max-message-size`, `smtp limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message accepted, in bytes (announced in SIZE).
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Messages per session.
    pub max_mails: usize,
}

impl Default for Limits {
    /// OpenSMTPD's defaults: 35 MiB, 1000 recipients, 100 messages.
    fn default() -> Self {
        Self {
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 1000,
            max_mails: 100,
        }
    }
}

/// What a listener's sessions share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The name in the greeting and the HELO answer.
    pub hostname: String,
    /// Limits.
    pub limits: Limits,
    /// TLS mode.
    pub tls: TlsMode,
    /// AUTH mode.
    pub auth: AuthMode,
    /// DSN offered (not `no-dsn`).
    pub dsn: bool,
    /// SMTPUTF8 offered.
    pub smtputf8: bool,
    /// The local socket: sessions count as authenticated.
    pub local: bool,
}

impl SessionConfig {
    /// A plain listener with OpenSMTPD's defaults: no TLS, no AUTH, DSN
    /// and SMTPUTF8 offered.
    pub fn new(hostname: &str) -> Self {
        Self {
            hostname: hostname.to_owned(),
            limits: Limits::default(),
            tls: TlsMode::None,
            auth: AuthMode::None,
            dsn: true,
            smtputf8: true,
            local: false,
        }
    }
}
