//! Filters, their processes, and mda wrappers.

use std::collections::BTreeSet;

use super::{Criterion, FilterId, ProcCommand, ProcId, TableMatch};

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
