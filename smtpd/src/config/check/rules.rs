//! `match` rules (smtpd-conf.md section 7).
//!
//! Each criterion family may appear once per rule. `from auth ...`,
//! `from mail-from ...` and `for rcpt-to ...` fill two slots: the source
//! (or destination) becomes `any`, never negated, and the `!` applies to the
//! auth, mail-from or rcpt-to part. Without `from`, a rule is `from local`;
//! without `for`, `for local`. The action must be declared before the rule.

use super::usage::{
    Usage, AUTH, FOR_DOMAIN, FROM_AUTH, FROM_RDNS, FROM_SRC, HELO, MAIL_FROM, RCPT_TO, TAG,
};
use super::{Checker, Namespace};
use crate::config::ast::{self, Criterion as Crit, ForSpec, FromSpec, Spanned};
use crate::config::model::{
    ActionId, Criterion, ForDestination, FromSource, Rule, TableMatch, Verdict,
};
use crate::config::source::Span;

/// The slots of a rule being built.
#[derive(Default)]
struct Slots {
    tag: Option<Criterion<TableMatch>>,
    from: Option<Criterion<FromSource>>,
    destination: Option<Criterion<ForDestination>>,
    helo: Option<Criterion<TableMatch>>,
    auth: Option<Criterion<Option<TableMatch>>>,
    tls: Option<Criterion<()>>,
    mail_from: Option<Criterion<TableMatch>>,
    rcpt_to: Option<Criterion<TableMatch>>,
}

/// Fills a slot, or reports that it is taken.
fn fill<T>(
    checker: &mut Checker<'_>,
    slot: &mut Option<Criterion<T>>,
    value: Criterion<T>,
    name: &str,
    span: Span,
) {
    if slot.is_some() {
        checker.error(
            span,
            format!("{name} already specified for this rule"),
            format!("{name} at most once in a rule"),
        );
        return;
    }
    *slot = Some(value);
}

fn crit<T>(negated: bool, test: T) -> Criterion<T> {
    Criterion { negated, test }
}

impl Checker<'_> {
    /// `match ... action NAME` or `match ... reject`.
    pub(super) fn rule(&mut self, rule: &ast::Match) {
        let mut slots = Slots::default();
        let mut ok = true;
        for opt in &rule.opts {
            ok &= self.criterion(&mut slots, opt);
        }
        let verdict = match &rule.verdict.node {
            ast::Verdict::Reject => Some(Verdict::Reject),
            ast::Verdict::Action(name) => self
                .lookup(Namespace::Action, name, "action")
                .map(|i| Verdict::Action(ActionId::from_index(i))),
        };
        let Some(verdict) = verdict.filter(|_| ok) else {
            self.broken_rule = true;
            return;
        };
        self.config.rules.push(Rule {
            tag: slots.tag,
            from: slots.from.unwrap_or_else(|| crit(false, FromSource::Local)),
            destination: slots
                .destination
                .unwrap_or_else(|| crit(false, ForDestination::Local)),
            helo: slots.helo,
            auth: slots.auth,
            tls: slots.tls,
            mail_from: slots.mail_from,
            rcpt_to: slots.rcpt_to,
            verdict,
        });
    }

    /// A table criterion; `None` (with an error) when the table is unusable.
    fn operand(
        &mut self,
        operand: &ast::TableMatch,
        usage: &Usage,
        ok: &mut bool,
    ) -> Option<TableMatch> {
        let found = self.table_match(operand, usage);
        *ok &= found.is_some();
        found
    }

    fn criterion(&mut self, s: &mut Slots, opt: &Spanned<ast::MatchOpt>) -> bool {
        let neg = opt.node.negated;
        let span = opt.span;
        let mut ok = true;
        match &opt.node.criterion {
            Crit::From(spec) => self.from(s, spec, neg, span, &mut ok),
            Crit::For(spec) => self.destination(s, spec, neg, span, &mut ok),
            Crit::Tag(t) => {
                if let Some(t) = self.operand(t, &TAG, &mut ok) {
                    fill(self, &mut s.tag, crit(neg, t), "tag", span);
                }
            }
            Crit::Helo(t) => {
                if let Some(t) = self.operand(t, &HELO, &mut ok) {
                    fill(self, &mut s.helo, crit(neg, t), "helo", span);
                }
            }
            Crit::Auth(t) => {
                let table = t.as_ref().map(|t| self.operand(t, &AUTH, &mut ok));
                if ok {
                    fill(self, &mut s.auth, crit(neg, table.flatten()), "auth", span);
                }
            }
            Crit::Tls => fill(self, &mut s.tls, crit(neg, ()), "tls", span),
            Crit::MailFrom(t) => {
                if let Some(t) = self.operand(t, &MAIL_FROM, &mut ok) {
                    fill(self, &mut s.mail_from, crit(neg, t), "mail-from", span);
                }
            }
            Crit::RcptTo(t) => {
                if let Some(t) = self.operand(t, &RCPT_TO, &mut ok) {
                    fill(self, &mut s.rcpt_to, crit(neg, t), "rcpt-to", span);
                }
            }
        }
        ok
    }

    fn from(&mut self, s: &mut Slots, spec: &FromSpec, neg: bool, span: Span, ok: &mut bool) {
        let source = match spec {
            FromSpec::Any => FromSource::Any,
            FromSpec::Local => FromSource::Local,
            FromSpec::Socket => FromSource::Socket,
            FromSpec::Src(t) => match self.operand(t, &FROM_SRC, ok) {
                Some(t) => FromSource::Src(t),
                None => return,
            },
            FromSpec::Rdns(t) => {
                let table = t.as_ref().map(|t| self.operand(t, &FROM_RDNS, ok));
                if !*ok {
                    return;
                }
                FromSource::Rdns(table.flatten())
            }
            FromSpec::Auth(t) => {
                let table = t.as_ref().map(|t| self.operand(t, &FROM_AUTH, ok));
                if !*ok {
                    return;
                }
                fill(
                    self,
                    &mut s.from,
                    crit(false, FromSource::Any),
                    "from",
                    span,
                );
                fill(self, &mut s.auth, crit(neg, table.flatten()), "auth", span);
                return;
            }
            FromSpec::MailFrom(t) => {
                if let Some(t) = self.operand(t, &MAIL_FROM, ok) {
                    fill(
                        self,
                        &mut s.from,
                        crit(false, FromSource::Any),
                        "from",
                        span,
                    );
                    fill(self, &mut s.mail_from, crit(neg, t), "mail-from", span);
                }
                return;
            }
        };
        fill(self, &mut s.from, crit(neg, source), "from", span);
    }

    fn destination(&mut self, s: &mut Slots, spec: &ForSpec, neg: bool, span: Span, ok: &mut bool) {
        let destination = match spec {
            ForSpec::Any => ForDestination::Any,
            ForSpec::Local => ForDestination::Local,
            ForSpec::Domain(t) => match self.operand(t, &FOR_DOMAIN, ok) {
                Some(t) => ForDestination::Domain(t),
                None => return,
            },
            ForSpec::RcptTo(t) => {
                if let Some(t) = self.operand(t, &RCPT_TO, ok) {
                    fill(
                        self,
                        &mut s.destination,
                        crit(false, ForDestination::Any),
                        "for",
                        span,
                    );
                    fill(self, &mut s.rcpt_to, crit(neg, t), "rcpt-to", span);
                }
                return;
            }
        };
        fill(
            self,
            &mut s.destination,
            crit(neg, destination),
            "for",
            span,
        );
    }
}
