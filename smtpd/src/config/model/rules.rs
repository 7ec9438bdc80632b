//! `match` rules.

use super::{ActionId, TableId};

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
