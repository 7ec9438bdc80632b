//! Listeners and their TLS material (`pki`, `ca`).

use std::net::IpAddr;
use std::path::PathBuf;

use super::{CaId, FilterId, PkiId, TableId};

/// `pki NAME ...`: a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The (lower-case) name: a host name or `*`.
    pub name: String,
    /// The certificate (chain) file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// Diffie-Hellman parameters.
    pub dhe: Dhe,
}

/// `dhe` of a pki.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dhe {
    /// DHE suites disabled (the default).
    #[default]
    None,
    /// Automatic parameter size.
    Auto,
    /// Fixed 1024-bit parameters.
    Legacy,
}

/// `ca NAME cert FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    /// The (lower-case) name.
    pub name: String,
    /// The CA certificates file.
    pub cert: PathBuf,
}

// ------------------------------------------------------------------ listeners

/// The Unix socket listener (`listen on socket`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SocketListener {
    /// Filter or chain for smtp-in.
    pub filter: Option<FilterId>,
    /// Omit `from ...` in `Received:` headers.
    pub mask_src: bool,
    /// No DSN.
    pub no_dsn: bool,
    /// Tag for the sessions.
    pub tag: Option<String>,
}

/// `listen on IFACE ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// What to listen on.
    pub address: ListenAddress,
    /// `inet4` / `inet6`: only this address family.
    pub family: Option<AddressFamily>,
    /// The port (default 25, or 465 with `smtps`).
    pub port: u16,
    /// The TLS mode.
    pub tls: ListenerTls,
    /// `verify` after `smtps` or `tls-require`: a client certificate is
    /// required.
    pub verify_client: bool,
    /// Server certificates; the first is the default, the others serve SNI.
    pub pkis: Vec<PkiId>,
    /// CA for client certificates.
    pub ca: Option<CaId>,
    /// libtls cipher string (overrides `smtp ciphers`).
    pub ciphers: Option<String>,
    /// libtls protocol string.
    pub protocols: Option<String>,
    /// `auth` / `auth-optional`.
    pub auth: Option<ListenerAuth>,
    /// Filter or chain for smtp-in.
    pub filter: Option<FilterId>,
    /// The name in the banner, the HELO reply and `Received:`.
    pub hostname: Option<String>,
    /// Per-local-address server names (addrname mapping).
    pub hostnames: Option<TableId>,
    /// Omit `from ...` in `Received:` headers.
    pub mask_src: bool,
    /// Add `auth=yes/no` to `Received:`.
    pub received_auth: bool,
    /// No DSN.
    pub no_dsn: bool,
    /// Expect a PROXY protocol v2 header.
    pub proxy_v2: bool,
    /// `senders <t> [masquerade]`.
    pub senders: Option<Senders>,
    /// Tag for the sessions.
    pub tag: Option<String>,
}

impl Listener {
    /// A listener on `address` with no option set: port 0 (the checker
    /// fills in the default), no TLS, no AUTH, no filter, no tag.
    pub fn new(address: ListenAddress) -> Self {
        Self {
            address,
            family: None,
            port: 0,
            tls: ListenerTls::None,
            verify_client: false,
            pkis: Vec::new(),
            ca: None,
            ciphers: None,
            protocols: None,
            auth: None,
            filter: None,
            hostname: None,
            hostnames: None,
            mask_src: false,
            received_auth: false,
            no_dsn: false,
            proxy_v2: false,
            senders: None,
            tag: None,
        }
    }
}

/// What a listener binds to. Names are resolved when binding: an interface
/// or interface group (all its addresses), else a host name (all its A and
/// AAAA records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// An address literal.
    Ip(IpAddr),
    /// An interface, interface group or host name.
    Name(String),
}

/// `inet4` / `inet6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4 only.
    Inet4,
    /// IPv6 only.
    Inet6,
}

/// The TLS mode of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerTls {
    /// No TLS.
    #[default]
    None,
    /// `tls`: STARTTLS offered.
    StartTls,
    /// `tls-require`: STARTTLS required before MAIL FROM.
    StartTlsRequired,
    /// `smtps`: TLS from the first byte.
    Smtps,
}

/// `auth [<t>]` or `auth-optional [<t>]` on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerAuth {
    /// `auth` (required before MAIL FROM) rather than `auth-optional`.
    pub required: bool,
    /// Credentials table; `None` means system accounts.
    pub table: Option<TableId>,
}

/// `senders <t> [masquerade]` on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Senders {
    /// Login -> allowed MAIL FROM addresses (mailaddrmap).
    pub table: TableId,
    /// Also rewrite `From:` to the envelope sender.
    pub masquerade: bool,
}
