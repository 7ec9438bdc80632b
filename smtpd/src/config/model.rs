//! The checked configuration: what the daemon runs with.
//!
//! [`Config`] is built once by `check.rs` and never changes afterwards (the
//! daemon shares it behind an `Arc`). Every name is resolved: rules point at
//! actions, actions and listeners at tables and filters, by index ([`TableId`],
//! [`ActionId`], ...). Fixed sets of the grammar are enums. Defaults are
//! filled in (OpenSMTPD 7.8's, see smtpd-conf.md section 9), so a field
//! never means "unset, look up the default elsewhere", except where the
//! default is only known at run time (the server name, interface addresses),
//! which is `None` or a [`BuiltinTable`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use smtpd_sdk::proto::table::Service;

/// A whole smtpd.conf, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Every table: the built-in ones first (see [`TableId::LOCALHOST`] and
    /// its siblings), then declared and anonymous tables in order.
    pub tables: Vec<Table>,
    /// `pki` entries, in order of first declaration.
    pub pkis: Vec<Pki>,
    /// `ca` entries, in order of first declaration.
    pub cas: Vec<Ca>,
    /// The Unix socket listener, which always exists.
    pub socket: SocketListener,
    /// `listen on IFACE` listeners, in order.
    pub listeners: Vec<Listener>,
    /// `action` dispatchers, in order.
    pub actions: Vec<Action>,
    /// `match` rules, in order: the first that matches wins.
    pub rules: Vec<Rule>,
    /// Filter processes (`proc`, and `filter NAME proc-exec`), in order.
    pub procs: Vec<Proc>,
    /// Filters and chains, in order (anonymous inline chains included).
    pub filters: Vec<Filter>,
    /// `mda wrapper` commands, in order.
    pub mda_wrappers: Vec<MdaWrapper>,
    /// `queue` options.
    pub queue: QueueOptions,
    /// `bounce` options.
    pub bounce: BounceOptions,
    /// `smtp` options.
    pub smtp: SmtpOptions,
    /// `mta` options.
    pub mta: MtaOptions,
    /// `mda limit` values.
    pub mda: MdaLimits,
    /// `scheduler limit` values.
    pub scheduler: SchedulerLimits,
    /// `srs` options.
    pub srs: SrsOptions,
    /// `admd`: the authserv-id announced to filters; `None` means the server
    /// name.
    pub admd: Option<String>,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) u32);

        impl $name {
            /// The position in the matching `Config` vector.
            pub fn index(self) -> usize {
                self.0 as usize
            }

            pub(crate) fn from_index(index: usize) -> Self {
                Self(u32::try_from(index).unwrap_or(u32::MAX))
            }
        }

        impl std::ops::Index<$name> for Config {
            type Output = $item;

            fn index(&self, id: $name) -> &$item {
                &self.$field[id.index()]
            }
        }
    };
}

id_type!(
    /// A table of [`Config::tables`].
    TableId, tables, Table
);
id_type!(
    /// An entry of [`Config::pkis`].
    PkiId, pkis, Pki
);
id_type!(
    /// An entry of [`Config::cas`].
    CaId, cas, Ca
);
id_type!(
    /// An action of [`Config::actions`].
    ActionId, actions, Action
);
id_type!(
    /// A process of [`Config::procs`].
    ProcId, procs, Proc
);
id_type!(
    /// A filter of [`Config::filters`].
    FilterId, filters, Filter
);
id_type!(
    /// A wrapper of [`Config::mda_wrappers`].
    WrapperId, mda_wrappers, MdaWrapper
);

impl TableId {
    /// `<localhost>`: `from local`.
    pub const LOCALHOST: Self = Self(0);
    /// `<anyhost>`: `from any`.
    pub const ANYHOST: Self = Self(1);
    /// `<localnames>`: `for local`.
    pub const LOCALNAMES: Self = Self(2);
    /// `<anydestination>`: `for any`.
    pub const ANYDESTINATION: Self = Self(3);
    /// `<getpwnam>`: the default `userbase`.
    pub const GETPWNAM: Self = Self(4);
}

impl Config {
    /// The table declared (or built in) with this name.
    pub fn table_named(&self, name: &str) -> Option<TableId> {
        position(&self.tables, |t| t.name == name).map(TableId::from_index)
    }

    /// The action with this name.
    pub fn action_named(&self, name: &str) -> Option<ActionId> {
        position(&self.actions, |a| a.name == name).map(ActionId::from_index)
    }

    /// The filter or chain with this name.
    pub fn filter_named(&self, name: &str) -> Option<FilterId> {
        position(&self.filters, |f| f.name == name).map(FilterId::from_index)
    }

    /// The process with this name.
    pub fn proc_named(&self, name: &str) -> Option<ProcId> {
        position(&self.procs, |p| p.name == name).map(ProcId::from_index)
    }

    /// The pki with this (lower-case) name.
    pub fn pki_named(&self, name: &str) -> Option<PkiId> {
        position(&self.pkis, |p| p.name == name).map(PkiId::from_index)
    }

    /// The ca with this (lower-case) name.
    pub fn ca_named(&self, name: &str) -> Option<CaId> {
        position(&self.cas, |c| c.name == name).map(CaId::from_index)
    }
}

fn position<T>(items: &[T], pred: impl Fn(&T) -> bool) -> Option<usize> {
    items.iter().position(pred)
}

// ------------------------------------------------------------------ tables

/// A table: a name and where its content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The declared name; anonymous tables are `<dynamic:N>` and built-in
    /// ones `<localhost>`, `<anyhost>`, `<localnames>`, `<anydestination>`,
    /// `<getpwnam>`.
    pub name: String,
    /// The content or the program that serves it.
    pub backend: TableBackend,
}

/// Where a table's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableBackend {
    /// A table whose content the daemon computes at start-up.
    Builtin(BuiltinTable),
    /// `{ ... }` or a single value written in the configuration.
    Inline(StaticContent),
    /// `file:/path` or `/path`: a table(5) file, as loaded when the
    /// configuration was checked (the table reloads it on update).
    File {
        /// The file.
        path: PathBuf,
        /// Its content when the configuration was loaded.
        content: StaticContent,
    },
    /// `db:/path`: a Berkeley DB file made by makemap.
    Db {
        /// The database file.
        path: PathBuf,
    },
    /// `getpwnam`: the system password database (service userinfo only).
    Getpwnam,
    /// OpenSMTPD's `NAME:/config` form: the program `table-NAME` of the
    /// backends directory, run with the config path as its argument.
    Program {
        /// The backend name (`sqlite` in `sqlite:/etc/mail/db.conf`).
        backend: String,
        /// The program to run (`BACKENDS_DIR/table-sqlite`).
        program: PathBuf,
        /// Its argument, when one was given.
        argument: Option<String>,
    },
    /// `proc-exec "CMD"`: a command speaking the table protocol.
    ProcExec(ProcCommand),
}

/// The tables smtpd creates before reading the configuration
/// (smtpd-conf.md section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinTable {
    /// `local` and every local interface address.
    Localhost,
    /// `local`, `0.0.0.0/0` and `::/0`.
    Anyhost,
    /// `localhost`, the server name and every local interface address.
    Localnames,
    /// `*` (and the short host name when it differs from the server name).
    Anydestination,
}

/// The entries of a static table; keys are lower-cased, values kept as
/// written, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticContent {
    /// Keys only.
    List(Vec<String>),
    /// Key/value pairs.
    Mapping(Vec<(String, String)>),
}

/// A table's type as OpenSMTPD's `table_check_use` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// A static list.
    List,
    /// A static mapping.
    Mapping,
    /// Any backend that is not static: it passes every type check.
    Dynamic,
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::List => "a list",
            Self::Mapping => "a mapping",
            Self::Dynamic => "a backend table",
        })
    }
}

impl Table {
    /// List, mapping, or dynamic.
    pub fn kind(&self) -> TableKind {
        match &self.backend {
            TableBackend::Builtin(_) => TableKind::List,
            TableBackend::Inline(c) | TableBackend::File { content: c, .. } => c.kind(),
            TableBackend::Db { .. }
            | TableBackend::Getpwnam
            | TableBackend::Program { .. }
            | TableBackend::ProcExec(_) => TableKind::Dynamic,
        }
    }

    /// Whether the backend can answer lookups of this service. Programs
    /// announce their services only when they run, so at configuration time
    /// they are taken to serve every service (as OpenSMTPD does).
    pub fn serves(&self, service: Service) -> bool {
        match &self.backend {
            TableBackend::Getpwnam => service == Service::Userinfo,
            TableBackend::Builtin(_)
            | TableBackend::Inline(_)
            | TableBackend::File { .. }
            | TableBackend::Db { .. } => service != Service::Auth,
            TableBackend::Program { .. } | TableBackend::ProcExec(_) => true,
        }
    }
}

impl StaticContent {
    /// List or mapping.
    pub fn kind(&self) -> TableKind {
        match self {
            Self::List(_) => TableKind::List,
            Self::Mapping(_) => TableKind::Mapping,
        }
    }
}

/// A child process command (`proc-exec "CMD"` of tables, filters and the
/// queue, and `proc NAME "CMD"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCommand {
    /// The command line as written. A command that does not start with `/`
    /// is looked up in the backends directory.
    pub command: String,
    /// `user U`: run as this user (default `_smtpd` when started as root).
    pub user: Option<String>,
    /// `group G`: run with this group (default: the user's primary group).
    pub group: Option<String>,
    /// `chroot DIR`: chroot before dropping privileges.
    pub chroot: Option<PathBuf>,
}

// ------------------------------------------------------------------ TLS

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

// ------------------------------------------------------------------ actions

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

// ------------------------------------------------------------------ rules

/// `match ... action NAME` or `match ... reject`. The criteria are tested in
/// field order (tag, from, for, helo, auth, tls, mail-from, rcpt-to),
/// stopping at the first false one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `tag [regex] <t>`.
    pub tag: Option<Criterion<TableMatch>>,
    /// The session's source (default `from local`).
    pub from: Criterion<FromSource>,
    /// The recipient's destination (default `for local`).
    pub destination: Criterion<ForDestination>,
    /// `helo [regex] <t>`.
    pub helo: Option<Criterion<TableMatch>>,
    /// `auth`, `auth [regex] <t>` (also from `from auth ...`).
    pub auth: Option<Criterion<Option<TableMatch>>>,
    /// `tls` (its value is whether the criterion is negated).
    pub tls: Option<Criterion<()>>,
    /// `mail-from [regex] <t>` (also from `from mail-from ...`).
    pub mail_from: Option<Criterion<TableMatch>>,
    /// `rcpt-to [regex] <t>` (also from `for rcpt-to ...`).
    pub rcpt_to: Option<Criterion<TableMatch>>,
    /// What happens to matching recipients.
    pub verdict: Verdict,
}

/// A rule criterion and whether it was negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criterion<T> {
    /// Written with `!`.
    pub negated: bool,
    /// What is tested.
    pub test: T,
}

/// A table tested by a criterion or a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMatch {
    /// The table.
    pub table: TableId,
    /// `regex`: entries are regular expressions (service regex).
    pub regex: bool,
}

/// `from ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromSource {
    /// `from any` (`<anyhost>`; also implied by `from auth` and
    /// `from mail-from`).
    Any,
    /// `from local` (`<localhost>`), the default.
    Local,
    /// `from socket`: the Unix socket only.
    Socket,
    /// `from src <t>`: source address (netaddr or regex).
    Src(TableMatch),
    /// `from rdns [<t>]`: the session has reverse DNS (matching `<t>`).
    Rdns(Option<TableMatch>),
}

/// `for ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForDestination {
    /// `for any` (`<anydestination>`; also implied by `for rcpt-to`).
    Any,
    /// `for local` (`<localnames>`), the default.
    Local,
    /// `for domain <t>`: recipient domain (domain or regex).
    Domain(TableMatch),
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver with this action.
    Action(ActionId),
    /// Refuse the recipient (550).
    Reject,
}

// ------------------------------------------------------------------ filters

/// A filter process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// The name (a `proc` name, or the filter name of `filter NAME
    /// proc-exec`).
    pub name: String,
    /// What to run.
    pub command: ProcCommand,
    /// The subsystems it is attached to, announced at handshake.
    pub subsystems: BTreeSet<Subsystem>,
}

/// Where a filter process is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subsystem {
    /// A listener: the filter stream and smtp-in reports.
    SmtpIn,
    /// A relay action: smtp-out reports.
    SmtpOut,
}

/// `filter NAME ...`, or an anonymous inline chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The name (`<dynchain:XXXXXXXX>` for inline chains).
    pub name: String,
    /// What it is.
    pub kind: FilterKind,
}

/// The kinds of filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterKind {
    /// Backed by a filter process.
    Proc(ProcId),
    /// A built-in filter.
    Builtin(BuiltinFilter),
    /// A chain of non-chain filters, run in order.
    Chain(Vec<FilterId>),
}

/// `filter NAME phase PHASE match CONDITION DECISION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinFilter {
    /// When it runs. OpenSMTPD 7.8 registers `phase auth` filters for the
    /// connect phase (its grammar drops the phase); this is the phase as
    /// written.
    pub phase: Phase,
    /// What it tests.
    pub condition: Criterion<FilterTest>,
    /// What it does when the condition holds.
    pub decision: FilterDecision,
}

/// Filter phases of built-in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `connect`.
    Connect,
    /// `helo`.
    Helo,
    /// `ehlo`.
    Ehlo,
    /// `auth`.
    Auth,
    /// `mail-from`.
    MailFrom,
    /// `rcpt-to`.
    RcptTo,
    /// `data`.
    Data,
    /// `commit`.
    Commit,
}

impl Phase {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Helo => "helo",
            Self::Ehlo => "ehlo",
            Self::Auth => "auth",
            Self::MailFrom => "mail-from",
            Self::RcptTo => "rcpt-to",
            Self::Data => "data",
            Self::Commit => "commit",
        }
    }
}

/// Conditions of built-in filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterTest {
    /// Forward-confirmed reverse DNS passed.
    Fcrdns,
    /// The session has reverse DNS (matching the table).
    Rdns(Option<TableMatch>),
    /// Source address.
    Src(TableMatch),
    /// HELO name.
    Helo(TableMatch),
    /// Authenticated (as a user of the table).
    Auth(Option<TableMatch>),
    /// Sender.
    MailFrom(TableMatch),
    /// Recipient of the current RCPT TO.
    RcptTo(TableMatch),
}

/// Decisions of built-in filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterDecision {
    /// Reply with this message.
    Reject(String),
    /// Reply with this message and close.
    Disconnect(String),
    /// Replace the command parameter.
    Rewrite(String),
    /// Emit a report event and go on.
    Report(String),
    /// Mark as spam.
    Junk,
    /// Skip the rest of the chain for this phase.
    Bypass,
}

/// `mda wrapper NAME "CMD"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdaWrapper {
    /// The name actions refer to.
    pub name: String,
    /// The command (formats and `%{mda}` allowed).
    pub command: String,
}

// ------------------------------------------------------------------ options

/// A secret from the configuration; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `queue ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// `compression`: gzip messages and envelopes.
    pub compression: bool,
    /// `encryption [KEY]`: AES-256-GCM.
    pub encryption: Option<QueueKey>,
    /// `ttl`: default envelope lifetime (4 days).
    pub ttl: Duration,
    /// Where the queue lives.
    pub backend: QueueBackend,
}

/// Where the queue encryption key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKey {
    /// `queue encryption`: prompted for at start-up.
    Prompt,
    /// `queue encryption stdin` (or `"-"`): one line of standard input.
    Stdin,
    /// The key itself (32 bytes).
    Inline(Secret),
}

/// The queue storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueueBackend {
    /// The spool directory (the default).
    #[default]
    Filesystem,
    /// `queue proc-exec "CMD"`: a program speaking the queue protocol.
    ProcExec(ProcCommand),
}

/// `bounce warn-interval ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceOptions {
    /// Delay warnings, ascending (at most 4; default one at 4h).
    pub warn_intervals: Vec<Duration>,
}

/// `smtp ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpOptions {
    /// `ciphers`: default libtls cipher string.
    pub ciphers: Option<String>,
    /// `limit max-mails`: messages per session (100).
    pub max_mails: u64,
    /// `limit max-rcpt`: recipients per transaction (1000).
    pub max_rcpt: u64,
    /// `max-message-size` in bytes (35M).
    pub max_message_size: u64,
    /// `sub-addr-delim` (`+`).
    pub sub_addr_delim: char,
}

/// `mta ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaOptions {
    /// `max-deferred`: envelopes kept per failing host (100).
    pub max_deferred: u64,
    /// `limit ...`: the defaults.
    pub limits: MtaLimits,
    /// `limit for domain D ...`: per-domain limits (each starts as a copy
    /// of the defaults at the time it is first declared).
    pub domain_limits: Vec<(String, MtaLimits)>,
}

macro_rules! limits {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident = $key:literal : $default:expr,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: u64,)+
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)+ }
            }
        }

        impl $name {
            /// The keys accepted in `limit` lists.
            pub const KEYS: &'static [&'static str] = &[$($key,)+];

            /// Sets the value of `key`; false for an unknown key.
            pub(crate) fn set(&mut self, key: &str, value: u64) -> bool {
                match key {
                    $($key => self.$field = value,)+
                    _ => return false,
                }
                true
            }
        }
    };
}

limits!(
    /// `mta limit ...` values (connection counts, delays in seconds).
    MtaLimitValues {
        /// `max-conn-per-host`.
        max_conn_per_host = "max-conn-per-host": 10,
        /// `max-conn-per-route`.
        max_conn_per_route = "max-conn-per-route": 5,
        /// `max-conn-per-source`.
        max_conn_per_source = "max-conn-per-source": 100,
        /// `max-conn-per-connector`.
        max_conn_per_connector = "max-conn-per-connector": 20,
        /// `max-conn-per-relay`.
        max_conn_per_relay = "max-conn-per-relay": 100,
        /// `max-conn-per-domain`.
        max_conn_per_domain = "max-conn-per-domain": 100,
        /// `conn-delay-host` (seconds).
        conn_delay_host = "conn-delay-host": 0,
        /// `conn-delay-route` (seconds).
        conn_delay_route = "conn-delay-route": 5,
        /// `conn-delay-source` (seconds).
        conn_delay_source = "conn-delay-source": 0,
        /// `conn-delay-connector` (seconds).
        conn_delay_connector = "conn-delay-connector": 0,
        /// `conn-delay-relay` (seconds).
        conn_delay_relay = "conn-delay-relay": 2,
        /// `conn-delay-domain` (seconds).
        conn_delay_domain = "conn-delay-domain": 0,
        /// `reconn-delay-route` (seconds).
        reconn_delay_route = "reconn-delay-route": 3,
        /// `session-mail-max`.
        session_mail_max = "session-mail-max": 100,
        /// `session-transaction-delay` (seconds).
        session_transaction_delay = "session-transaction-delay": 0,
        /// `session-keepalive` (seconds).
        session_keepalive = "session-keepalive": 10,
        /// `max-failures-per-session`.
        max_failures_per_session = "max-failures-per-session": 25,
        /// `task-hiwat`.
        task_hiwat = "task-hiwat": 50,
        /// `task-lowat`.
        task_lowat = "task-lowat": 30,
        /// `task-release`.
        task_release = "task-release": 10,
    }
);

/// `mta limit [for domain D] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MtaLimits {
    /// `inet4` / `inet6`: connect with this family only.
    pub family: Option<AddressFamily>,
    /// The numeric limits.
    pub values: MtaLimitValues,
}

limits!(
    /// `mda limit ...` values.
    MdaLimits {
        /// `max-session`.
        max_session = "max-session": 50,
        /// `max-session-per-user`.
        max_session_per_user = "max-session-per-user": 7,
        /// `task-hiwat`.
        task_hiwat = "task-hiwat": 50,
        /// `task-lowat`.
        task_lowat = "task-lowat": 30,
        /// `task-release`.
        task_release = "task-release": 10,
    }
);

limits!(
    /// `scheduler limit ...` values.
    SchedulerLimits {
        /// `max-inflight`.
        max_inflight = "max-inflight": 5000,
        /// `max-evp-batch-size`.
        max_evp_batch_size = "max-evp-batch-size": 256,
        /// `max-msg-batch-size`.
        max_msg_batch_size = "max-msg-batch-size": 1024,
        /// `max-schedule`.
        max_schedule = "max-schedule": 10,
    }
);

/// `srs ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrsOptions {
    /// `key SECRET`.
    pub key: Option<Secret>,
    /// `key backup SECRET`: the previous key, still accepted.
    pub backup_key: Option<Secret>,
    /// `ttl` (whole days, at least one; default 4 days).
    pub ttl: Duration,
}

/// Four days, OpenSMTPD's default queue and SRS lifetime.
pub(crate) const FOUR_DAYS: Duration = Duration::from_secs(4 * 24 * 3600);

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            compression: false,
            encryption: None,
            ttl: FOUR_DAYS,
            backend: QueueBackend::Filesystem,
        }
    }
}

impl Default for BounceOptions {
    fn default() -> Self {
        Self {
            warn_intervals: vec![Duration::from_secs(4 * 3600)],
        }
    }
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            ciphers: None,
            max_mails: 100,
            max_rcpt: 1000,
            max_message_size: 35 * 1024 * 1024,
            sub_addr_delim: '+',
        }
    }
}

impl Default for MtaOptions {
    fn default() -> Self {
        Self {
            max_deferred: 100,
            limits: MtaLimits::default(),
            domain_limits: Vec::new(),
        }
    }
}

impl Default for SrsOptions {
    fn default() -> Self {
        Self {
            key: None,
            backup_key: None,
            ttl: FOUR_DAYS,
        }
    }
}
