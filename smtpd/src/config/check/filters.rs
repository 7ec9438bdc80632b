//! Filters: `proc`, `filter` (process, built-in, chain) and the filter
//! references of listeners and relays (smtpd-conf.md section 8).
//!
//! A chain holds existing filters that are not chains, each once, and no
//! two backed by the same process. A built-in filter's condition must make
//! sense in its phase (no HELO name before HELO, no recipient outside
//! rcpt-to), and `junk`/`bypass` are not for `commit`. Attaching a filter
//! marks its processes with the subsystem they serve (smtp-in for
//! listeners, smtp-out for relays).

use std::collections::BTreeSet;

use super::usage::FILTER;
use super::{Checker, Namespace};
use crate::config::ast::{self, Decision, FilterDef, FilterRef, ProcExec, Test, Value};
use crate::config::model::{
    BuiltinFilter, Criterion, Filter, FilterDecision, FilterId, FilterKind, FilterTest, Phase,
    Proc, ProcId, Subsystem,
};

impl Checker<'_> {
    /// `proc NAME "CMD" ...`.
    pub(super) fn proc(&mut self, name: &Value, exec: &ProcExec) {
        self.new_proc(name, exec);
    }

    fn new_proc(&mut self, name: &Value, exec: &ProcExec) -> Option<ProcId> {
        let command = self.proc_command(exec);
        let index = self.config.procs.len();
        if !self.declare(Namespace::Proc, name, index) {
            return None;
        }
        let Some(command) = command else {
            self.names.remove(&(Namespace::Proc, name.text.clone()));
            self.failed.insert((Namespace::Proc, name.text.clone()));
            return None;
        };
        self.config.procs.push(Proc {
            name: name.text.clone(),
            command,
            subsystems: BTreeSet::new(),
        });
        Some(ProcId::from_index(index))
    }

    /// `filter NAME ...`.
    pub(super) fn filter(&mut self, name: &Value, def: &FilterDef) {
        if self
            .names
            .contains_key(&(Namespace::Filter, name.text.clone()))
        {
            self.declare(Namespace::Filter, name, 0);
            return;
        }
        let kind = match def {
            FilterDef::Proc(proc) => self
                .lookup(Namespace::Proc, proc, "proc")
                .map(|i| FilterKind::Proc(ProcId::from_index(i))),
            FilterDef::ProcExec(exec) => self.new_proc(name, exec).map(FilterKind::Proc),
            FilterDef::Builtin {
                phase,
                condition,
                decision,
            } => self
                .builtin(phase, condition, decision)
                .map(FilterKind::Builtin),
            FilterDef::Chain(members) => self.chain(members).map(FilterKind::Chain),
        };
        let Some(kind) = kind else {
            self.failed.insert((Namespace::Filter, name.text.clone()));
            return;
        };
        self.declare(Namespace::Filter, name, self.config.filters.len());
        self.config.filters.push(Filter {
            name: name.text.clone(),
            kind,
        });
    }

    fn builtin(
        &mut self,
        phase: &ast::Spanned<Phase>,
        condition: &ast::Spanned<ast::Condition>,
        decision: &ast::Spanned<Decision>,
    ) -> Option<BuiltinFilter> {
        let (test, allowed) = self.test(&condition.node.test)?;
        let mut ok = true;
        if !allowed.contains(&phase.node) {
            let names: Vec<&str> = allowed.iter().map(|p| p.keyword()).collect();
            self.error(
                condition.span,
                format!(
                    "this condition cannot be used in phase {}",
                    phase.node.keyword()
                ),
                format!("one of the phases {}", names.join(", ")),
            );
            ok = false;
        }
        let decision_node = match &decision.node {
            Decision::Reject(m) => FilterDecision::Reject(m.text.clone()),
            Decision::Disconnect(m) => FilterDecision::Disconnect(m.text.clone()),
            Decision::Rewrite(v) => FilterDecision::Rewrite(v.text.clone()),
            Decision::Report(m) => FilterDecision::Report(m.text.clone()),
            Decision::Junk => FilterDecision::Junk,
            Decision::Bypass => FilterDecision::Bypass,
        };
        if phase.node == Phase::Commit
            && matches!(decision_node, FilterDecision::Junk | FilterDecision::Bypass)
        {
            self.error(
                decision.span,
                "junk and bypass are not allowed in phase commit",
                "reject, disconnect, rewrite or report",
            );
            ok = false;
        }
        ok.then_some(BuiltinFilter {
            phase: phase.node,
            condition: Criterion {
                negated: condition.node.negated,
                test,
            },
            decision: decision_node,
        })
    }

    /// A built-in filter's test and the phases where it makes sense.
    fn test(&mut self, test: &Test) -> Option<(FilterTest, &'static [Phase])> {
        use Phase::*;
        const ALL: &[Phase] = &[Connect, Helo, Ehlo, Auth, MailFrom, RcptTo, Data, Commit];
        const AFTER_HELO: &[Phase] = &[Helo, Ehlo, Auth, MailFrom, RcptTo, Data, Commit];
        const AFTER_AUTH: &[Phase] = &[Auth, MailFrom, RcptTo, Data, Commit];
        const AFTER_MAIL: &[Phase] = &[MailFrom, RcptTo, Data, Commit];
        let mut table = |t: &ast::TableMatch| self.table_match(t, &FILTER);
        Some(match test {
            Test::Fcrdns => (FilterTest::Fcrdns, ALL),
            Test::Rdns(None) => (FilterTest::Rdns(None), ALL),
            Test::Rdns(Some(t)) => (FilterTest::Rdns(Some(table(t)?)), ALL),
            Test::Src(t) => (FilterTest::Src(table(t)?), ALL),
            Test::Helo(t) => (FilterTest::Helo(table(t)?), AFTER_HELO),
            Test::Auth(None) => (FilterTest::Auth(None), AFTER_AUTH),
            Test::Auth(Some(t)) => (FilterTest::Auth(Some(table(t)?)), AFTER_AUTH),
            Test::MailFrom(t) => (FilterTest::MailFrom(table(t)?), AFTER_MAIL),
            Test::RcptTo(t) => (FilterTest::RcptTo(table(t)?), &[RcptTo]),
        })
    }

    /// The members of a chain (declared or inline).
    fn chain(&mut self, members: &[Value]) -> Option<Vec<FilterId>> {
        let mut ids = Vec::new();
        let mut procs = Vec::new();
        let mut ok = true;
        for member in members {
            let Some(index) = self.lookup(Namespace::Filter, member, "filter") else {
                ok = false;
                continue;
            };
            let id = FilterId::from_index(index);
            let kind = self.config.filters[index].kind.clone();
            if matches!(kind, FilterKind::Chain(_)) {
                self.error(
                    member.span,
                    "no filter chain allowed within a filter chain",
                    "a filter that is not a chain",
                );
                ok = false;
            } else if ids.contains(&id) {
                self.error(
                    member.span,
                    format!("filter \"{}\" is already in this chain", member.text),
                    "each filter once in a chain",
                );
                ok = false;
            } else if let FilterKind::Proc(proc) = kind {
                if procs.contains(&proc) {
                    self.error(
                        member.span,
                        format!(
                            "no proc allowed twice within a filter chain: \"{}\" uses proc \"{}\" again",
                            member.text, self.config.procs[proc.index()].name
                        ),
                        "filters backed by different procs",
                    );
                    ok = false;
                }
                procs.push(proc);
            }
            ids.push(id);
        }
        ok.then_some(ids)
    }

    /// `filter NAME` or `filter { ... }` on a listener or relay.
    pub(super) fn filter_ref(
        &mut self,
        filter: &FilterRef,
        subsystem: Subsystem,
    ) -> Option<FilterId> {
        let id = match filter {
            FilterRef::Named(name) => {
                FilterId::from_index(self.lookup(Namespace::Filter, name, "filter")?)
            }
            FilterRef::Inline(members) => {
                let members = self.chain(members)?;
                let id = FilterId::from_index(self.config.filters.len());
                self.config.filters.push(Filter {
                    name: format!("<dynchain:{:08x}>", self.dynamic_chains),
                    kind: FilterKind::Chain(members),
                });
                self.dynamic_chains += 1;
                id
            }
        };
        self.attach(id, subsystem);
        Some(id)
    }

    /// Marks the processes behind a filter as serving `subsystem`.
    fn attach(&mut self, id: FilterId, subsystem: Subsystem) {
        let members = match &self.config.filters[id.index()].kind {
            FilterKind::Chain(members) => members.clone(),
            _ => vec![id],
        };
        for member in members {
            if let FilterKind::Proc(proc) = self.config.filters[member.index()].kind {
                self.config.procs[proc.index()].subsystems.insert(subsystem);
            }
        }
    }
}
