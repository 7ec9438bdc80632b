//! Filter chains as sessions run them: the members of `filter NAME chain
//! { a, b, c }` (or the one filter a listener names) in declaration order,
//! built-in and proc filters mixed, and the token each proc member answers
//! under at each phase.
//!
//! A token names one member of one chain at one phase (protocols.md
//! section 2.8): it is fixed when the chain is built and echoed by the
//! filter. Here it is the chain's index, the member's place and the
//! phase's, packed in 64 bits, so that every request of a session has its
//! own (session, token) key.

use smtpd_sdk::proto::filter::Phase;
use smtpd_sdk::proto::Token;

use crate::config::{self, BuiltinFilter, Config, FilterId, FilterKind};

/// What one member of a chain is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    /// A built-in filter, evaluated inline.
    Builtin(BuiltinFilter),
    /// A filter process: its index among the daemon's processes.
    Proc(usize),
}

/// One member of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The filter's name, for `filter-report` events and logs.
    pub name: String,
    /// What it is.
    pub kind: MemberKind,
}

/// The filters a listener's sessions run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    index: u64,
    /// The members, in order.
    pub members: Vec<Member>,
    /// The distinct processes of the chain, in order: the ones its
    /// sessions report to.
    pub procs: Vec<usize>,
}

impl Chain {
    /// The chain of `filter` in `config`: its members if it is a chain,
    /// else the filter alone. `None` for an id out of range.
    pub fn build(config: &Config, filter: FilterId) -> Option<Self> {
        let declared = config.filters.get(filter.index())?;
        let ids = match &declared.kind {
            FilterKind::Chain(ids) => ids.clone(),
            _ => vec![filter],
        };
        let mut members = Vec::new();
        let mut procs = Vec::new();
        for id in ids {
            let member = config.filters.get(id.index())?;
            let kind = match &member.kind {
                FilterKind::Proc(proc) => {
                    if !procs.contains(&proc.index()) {
                        procs.push(proc.index());
                    }
                    MemberKind::Proc(proc.index())
                }
                FilterKind::Builtin(builtin) => MemberKind::Builtin(builtin.clone()),
                // The checker refuses nested chains.
                FilterKind::Chain(_) => continue,
            };
            members.push(Member {
                name: member.name.clone(),
                kind,
            });
        }
        Some(Self {
            index: filter.index() as u64,
            members,
            procs,
        })
    }

    /// A chain without members (for an id the configuration lacks).
    pub fn empty(index: usize) -> Self {
        Self {
            index: index as u64,
            members: Vec::new(),
            procs: Vec::new(),
        }
    }

    /// The token of member `member` at `phase`.
    pub fn token(&self, member: usize, phase: Phase) -> Token {
        let phase = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0) as u64;
        Token((self.index + 1) << 40 | (member as u64) << 8 | phase)
    }
}

/// The filter-protocol phase of a built-in filter's phase.
pub(super) fn wire_phase(phase: config::Phase) -> Phase {
    match phase {
        config::Phase::Connect => Phase::Connect,
        config::Phase::Helo => Phase::Helo,
        config::Phase::Ehlo => Phase::Ehlo,
        config::Phase::Auth => Phase::Auth,
        config::Phase::MailFrom => Phase::MailFrom,
        config::Phase::RcptTo => Phase::RcptTo,
        config::Phase::Data => Phase::Data,
        config::Phase::Commit => Phase::Commit,
    }
}

/// The phase's name in `filter-response` events (7.8 names connect
/// `connected` and starttls `tls`).
pub(super) fn response_phase(phase: Phase) -> &'static str {
    match phase {
        Phase::Connect => "connected",
        Phase::StartTls => "tls",
        other => other.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_keep_declaration_order_and_each_process_once() {
        let config = Config::parse_str(
            "smtpd.conf",
            "filter a proc-exec \"a\"\n\
             filter b phase mail-from match !fcrdns junk\n\
             filter c proc-exec \"c\"\n\
             filter all chain { c, b, a }\n\
             listen on 127.0.0.1 filter all\n\
             action \"a\" mbox\n\
             match for local action \"a\"\n",
            &config::LoadOptions::default(),
        )
        .unwrap()
        .config;
        let id = config.filter_named("all").unwrap();
        let chain = Chain::build(&config, id).unwrap();
        let names: Vec<&str> = chain.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
        let c = config.procs.iter().position(|p| p.name == "c").unwrap();
        let a = config.procs.iter().position(|p| p.name == "a").unwrap();
        assert_eq!(chain.procs, [c, a]);
        let single = Chain::build(&config, config.filter_named("a").unwrap()).unwrap();
        assert_eq!(single.members.len(), 1);
    }

    #[test]
    fn tokens_differ_by_member_and_phase() {
        let chain = Chain {
            index: 2,
            members: Vec::new(),
            procs: Vec::new(),
        };
        let t = chain.token(1, Phase::MailFrom);
        assert_ne!(t, chain.token(2, Phase::MailFrom));
        assert_ne!(t, chain.token(1, Phase::RcptTo));
        assert_eq!(t.to_string().len(), 16);
    }

    #[test]
    fn response_phases_use_7_8_names() {
        assert_eq!(response_phase(Phase::Connect), "connected");
        assert_eq!(response_phase(Phase::StartTls), "tls");
        assert_eq!(response_phase(Phase::MailFrom), "mail-from");
    }
}
