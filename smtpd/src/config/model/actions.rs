//! Actions: local delivery methods and relaying.

use std::time::Duration;

use super::{FilterId, TableId, WrapperId};

/// `action NAME ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The name rules refer to.
    pub name: String,
    /// Local delivery or relay.
    pub kind: ActionKind,
    /// `ttl`: envelope lifetime for this action (else `queue ttl`).
    pub ttl: Option<Duration>,
}

/// The two families of dispatchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Local delivery.
    Local(LocalDelivery),
    /// Relaying to another host.
    Relay(Relay),
}

/// A local delivery action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDelivery {
    /// How mail is delivered.
    pub method: LocalMethod,
    /// `alias <t>` or `virtual <t>`.
    pub expansion: Option<Expansion>,
    /// `userbase <t>` (default `<getpwnam>`).
    pub userbase: TableId,
    /// `user NAME`: deliver as this system user.
    pub user: Option<String>,
    /// `wrapper NAME`.
    pub wrapper: Option<WrapperId>,
}

/// Local delivery methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalMethod {
    /// The system mailbox, through mail.local.
    Mbox,
    /// A maildir: `~/Maildir` or `path` (which may hold `%{...}` formats).
    Maildir {
        /// The maildir path (formats allowed); `None` is `~/Maildir`.
        path: Option<String>,
        /// `junk`: spam goes to `.Junk`.
        junk: bool,
    },
    /// LMTP to `host:port`, `[v6]:port` or a Unix socket path.
    Lmtp {
        /// Where to connect.
        destination: String,
        /// `rcpt-to`: RCPT is the recipient address, not the user name.
        rcpt_to: bool,
    },
    /// Pipe to a command (formats allowed).
    Mda {
        /// The command.
        command: String,
    },
    /// Accept only when expansion yields remote addresses.
    ForwardOnly,
    /// Accept only when an alias or .forward provides the delivery.
    ExpandOnly,
}

impl LocalMethod {
    /// The method's keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::Mbox => "mbox",
            Self::Maildir { .. } => "maildir",
            Self::Lmtp { .. } => "lmtp",
            Self::Mda { .. } => "mda",
            Self::ForwardOnly => "forward-only",
            Self::ExpandOnly => "expand-only",
        }
    }
}

/// How local recipients are expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expansion {
    /// `alias <t>`: aliases(5) lookups by user name.
    Alias(TableId),
    /// `virtual <t>`: lookups by full address, then `@domain`.
    Virtual(TableId),
}

/// A relay action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Relay {
    /// `backup [mx NAME]`.
    pub backup: Option<Backup>,
    /// `host <t>` or `domain <t>`; `None` means MX lookup.
    pub route: Option<RelayRoute>,
    /// `auth <t>`: credentials for relay URLs with a label.
    pub auth: Option<TableId>,
    /// `tls [no-verify]`.
    pub tls: Option<RelayTls>,
    /// `pki NAME`: client certificate (resolved when relaying).
    pub pki: Option<String>,
    /// `ca NAME`: CA for the server certificate (resolved when relaying).
    pub ca: Option<String>,
    /// libtls cipher string.
    pub ciphers: Option<String>,
    /// libtls protocol string.
    pub protocols: Option<String>,
    /// `helo NAME`.
    pub helo: Option<String>,
    /// `helo-src <t>`: HELO name by local address (addrname).
    pub helo_src: Option<TableId>,
    /// `src <t>`: source addresses, fetched round-robin.
    pub src: Option<TableId>,
    /// `mail-from ADDR`: sender rewrite.
    pub mail_from: Option<MailFromRewrite>,
    /// Filter or chain for smtp-out (report events only).
    pub filter: Option<FilterId>,
    /// `srs`: rewrite forwarded senders with SRS.
    pub srs: bool,
}

/// `backup [mx NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Relative to this MX name instead of ourselves.
    pub mx: Option<String>,
}

/// Where a relay sends mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRoute {
    /// `host <t>`: relay URLs, fetched round-robin.
    Host(TableId),
    /// `domain <t>`: recipient domain -> relay URL.
    Domain(TableId),
}

/// `tls` on a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// `tls`: mandatory, verified.
    Verify,
    /// `tls no-verify`: mandatory, not verified.
    NoVerify,
}

/// `mail-from` on a relay: which parts of a non-empty sender to replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailFromRewrite {
    /// `user@domain`: both.
    Address {
        /// New local part.
        user: String,
        /// New domain.
        domain: String,
    },
    /// `user`: the local part only.
    User(String),
    /// `@domain`: the domain only.
    Domain(String),
}

/// A relay URL, `[SCHEME://][LABEL@]HOST[:PORT]` (smtpd-conf.md 6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// The scheme (`smtp` when none is written).
    pub scheme: RelayScheme,
    /// The auth table key.
    pub label: Option<String>,
    /// A host name or an address (written `[addr]`).
    pub host: String,
    /// The port (the scheme's default when `None`).
    pub port: Option<u16>,
}

/// Relay URL schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayScheme {
    /// `smtp://`: opportunistic STARTTLS.
    Smtp,
    /// `smtp+tls://`: mandatory STARTTLS.
    SmtpTls,
    /// `smtp+notls://`: no TLS.
    SmtpNoTls,
    /// `lmtp://`: LMTP, no TLS, port required.
    Lmtp,
    /// `smtps://`: TLS on connect.
    Smtps,
}
