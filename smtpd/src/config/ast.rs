//! The syntax tree of smtpd.conf, as the grammar read it.
//!
//! One [`Statement`] per directive, in file order (includes already spliced
//! in). Nodes keep what was written and where ([`Span`]); nothing here is
//! checked yet: names are not resolved, numbers, delays and sizes are still
//! text. `parse.rs` builds the tree, `check.rs` turns it into the typed
//! [`Config`](super::Config). Keyword sets that the grammar fixes (phases)
//! reuse the model's enums.

use super::model::Phase;
use super::source::Span;

/// A value token: a bare word or a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Value {
    /// The text, with quotes removed and escapes resolved.
    pub(crate) text: String,
    /// Written between quotes.
    pub(crate) quoted: bool,
    pub(crate) span: Span,
}

/// A NUMBER token, kept as text until checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Number {
    pub(crate) text: String,
    pub(crate) span: Span,
}

/// Something with the span it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spanned<T> {
    pub(crate) node: T,
    pub(crate) span: Span,
}

/// A table operand (`<t>` in the reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tables {
    pub(crate) expr: TableExpr,
    pub(crate) span: Span,
}

/// The forms a table operand takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableExpr {
    /// `<name>`: a declared table.
    Named(Value),
    /// `value`: an anonymous list of one value.
    Single(Value),
    /// `{ a, b }`: an anonymous list.
    List(Vec<Value>),
    /// `{ k = v, ... }`: an anonymous mapping.
    Map(Vec<(Value, Value)>),
}

/// A table operand, optionally tested as regular expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableMatch {
    pub(crate) regex: bool,
    pub(crate) tables: Tables,
}

/// `filter NAME` or `filter { A, B }` on a listener or a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterRef {
    Named(Value),
    Inline(Vec<Value>),
}

/// A directive and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub(crate) kind: StatementKind,
    pub(crate) span: Span,
}

/// Every directive of smtpd.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatementKind {
    Include(Value),
    Macro {
        name: Value,
        value: Value,
    },
    Table {
        name: Value,
        source: TableSource,
    },
    Pki {
        name: Value,
        params: Vec<PkiParam>,
    },
    Ca {
        name: Value,
        cert: Value,
    },
    ListenSocket(Vec<Spanned<SocketOpt>>),
    Listen {
        iface: Value,
        opts: Vec<Spanned<ListenOpt>>,
    },
    Action(Action),
    Match(Match),
    Proc {
        name: Value,
        command: ProcExec,
    },
    Filter {
        name: Value,
        def: FilterDef,
    },
    Queue(QueueDirective),
    Bounce(Vec<Value>),
    Smtp(SmtpDirective),
    Mta(MtaDirective),
    Mda(MdaDirective),
    Scheduler(Vec<LimitPair>),
    Srs(SrsDirective),
    Admd(Value),
}

/// What follows `table NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableSource {
    /// `{ ... }`.
    Inline(Tables),
    /// `proc-exec "CMD" [user U] [group G] [chroot D]`.
    ProcExec(ProcExec),
    /// `/path`, `file:/path`, `backend:/path`, `getpwnam`.
    Backend(Value),
}

/// A command run as a child process, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcExec {
    pub(crate) command: Value,
    pub(crate) opts: Vec<Spanned<ProcOpt>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProcOpt {
    User(Value),
    Group(Value),
    Chroot(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PkiParam {
    Cert(Value),
    Key(Value),
    Dhe(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SocketOpt {
    Filter(FilterRef),
    MaskSrc,
    NoDsn,
    Tag(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenOpt {
    Inet4,
    Inet6,
    Port(Port),
    Smtps { verify: bool },
    TlsRequire { verify: bool },
    Tls,
    Pki(Value),
    Ca(Value),
    Ciphers(Value),
    Protocols(Value),
    Auth(Option<Tables>),
    AuthOptional(Option<Tables>),
    Tag(Value),
    Hostnames(Tables),
    Hostname(Value),
    MaskSrc,
    ReceivedAuth,
    NoDsn,
    ProxyV2,
    Senders { tables: Tables, masquerade: bool },
    Filter(FilterRef),
}

/// The operand of `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Port {
    /// The keyword `smtp`.
    Smtp,
    /// The keyword `smtps`.
    Smtps,
    Number(Number),
    /// A service name (or a quoted number).
    Name(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Action {
    pub(crate) name: Value,
    pub(crate) kind: ActionKind,
    pub(crate) ttl: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionKind {
    Local {
        method: Spanned<LocalMethod>,
        opts: Vec<Spanned<LocalOpt>>,
    },
    Relay(Vec<Spanned<RelayOpt>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalMethod {
    Mbox,
    Maildir { path: Option<Value>, junk: bool },
    Lmtp { destination: Value, rcpt_to: bool },
    Mda(Value),
    ForwardOnly,
    ExpandOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalOpt {
    Alias(Tables),
    Virtual(Tables),
    Userbase(Tables),
    User(Value),
    Wrapper(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RelayOpt {
    Backup(Option<Value>),
    Host(Tables),
    Domain(Tables),
    Auth(Tables),
    Tls { no_verify: bool },
    Pki(Value),
    Ca(Value),
    Ciphers(Value),
    Protocols(Value),
    HeloSrc(Tables),
    Helo(Value),
    Src(Tables),
    MailFrom(Value),
    Filter(FilterRef),
    Srs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Match {
    pub(crate) opts: Vec<Spanned<MatchOpt>>,
    pub(crate) verdict: Spanned<Verdict>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MatchOpt {
    pub(crate) negated: bool,
    pub(crate) criterion: Criterion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Criterion {
    From(FromSpec),
    For(ForSpec),
    Tag(TableMatch),
    Helo(TableMatch),
    Auth(Option<TableMatch>),
    Tls,
    MailFrom(TableMatch),
    RcptTo(TableMatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromSpec {
    Any,
    Local,
    Socket,
    Src(TableMatch),
    Rdns(Option<TableMatch>),
    Auth(Option<TableMatch>),
    MailFrom(TableMatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ForSpec {
    Any,
    Local,
    Domain(TableMatch),
    RcptTo(TableMatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Action(Value),
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterDef {
    Proc(Value),
    ProcExec(ProcExec),
    Builtin {
        phase: Spanned<Phase>,
        condition: Spanned<Condition>,
        decision: Spanned<Decision>,
    },
    Chain(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) negated: bool,
    pub(crate) test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Test {
    Fcrdns,
    Rdns(Option<TableMatch>),
    Src(TableMatch),
    Helo(TableMatch),
    Auth(Option<TableMatch>),
    MailFrom(TableMatch),
    RcptTo(TableMatch),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Reject(Value),
    Disconnect(Value),
    Rewrite(Value),
    Report(Value),
    Junk,
    Bypass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueueDirective {
    Compression,
    Encryption(Option<Value>),
    Ttl(Value),
    ProcExec(ProcExec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SmtpDirective {
    Limit(Vec<LimitPair>),
    Ciphers(Value),
    MaxMessageSize(Size),
    SubAddrDelim(Value),
}

/// A size: a NUMBER of bytes or a word with a unit (`35M`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Size {
    Number(Number),
    Scaled(Value),
}

/// `KEY NUMBER` in `limit` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitPair {
    pub(crate) key: Value,
    pub(crate) value: Number,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MtaDirective {
    MaxDeferred(Number),
    Limit {
        domain: Option<Value>,
        items: Vec<Spanned<MtaLimit>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MtaLimit {
    Inet4,
    Inet6,
    Pair(LimitPair),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MdaDirective {
    Limit(Vec<LimitPair>),
    Wrapper { name: Value, command: Value },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SrsDirective {
    Key { backup: bool, secret: Value },
    Ttl(Value),
}
