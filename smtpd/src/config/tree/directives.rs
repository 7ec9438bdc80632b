//! Directive builders: actions, match rules, filters and the global
//! options (see `tree.rs` for the token-level builders they use).

use pest::iterators::Pairs;

use super::{next, take_kw, Builder, P};
use crate::config::ast::*;
use crate::config::model::Phase;
use crate::config::parse::Rule;

impl Builder<'_> {
    pub(super) fn action(&self, mut inner: Pairs<'_, Rule>) -> Action {
        next(&mut inner);
        let name = self.value(next(&mut inner));
        let body = next(&mut inner);
        let kind = if body.as_rule() == Rule::local_action {
            let mut parts = body.into_inner();
            let method = next(&mut parts);
            ActionKind::Local {
                method: self.spanned(&method, self.local_method(method.clone())),
                opts: parts.map(|p| self.local_opt(p)).collect(),
            }
        } else {
            let mut parts = body.into_inner();
            next(&mut parts);
            ActionKind::Relay(parts.map(|p| self.relay_opt(p)).collect())
        };
        let ttl = inner
            .map(|p| {
                let mut parts = p.into_inner();
                next(&mut parts); // ttl
                self.value(next(&mut parts))
            })
            .collect();
        Action { name, kind, ttl }
    }

    pub(super) fn local_method(&self, p: P<'_>) -> LocalMethod {
        let mut inner = p.into_inner();
        match next(&mut inner).as_rule() {
            Rule::kw_mbox => LocalMethod::Mbox,
            Rule::kw_maildir => LocalMethod::Maildir {
                path: self.opt_value(&mut inner),
                junk: take_kw(&mut inner, Rule::kw_junk),
            },
            Rule::kw_lmtp => LocalMethod::Lmtp {
                destination: self.value(next(&mut inner)),
                rcpt_to: take_kw(&mut inner, Rule::kw_rcpt_to),
            },
            Rule::kw_mda => LocalMethod::Mda(self.value(next(&mut inner))),
            Rule::kw_forward_only => LocalMethod::ForwardOnly,
            _ => LocalMethod::ExpandOnly,
        }
    }

    pub(super) fn local_opt(&self, p: P<'_>) -> Spanned<LocalOpt> {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let node = match next(&mut inner).as_rule() {
            Rule::kw_alias => LocalOpt::Alias(self.tables(next(&mut inner))),
            Rule::kw_virtual => LocalOpt::Virtual(self.tables(next(&mut inner))),
            Rule::kw_userbase => LocalOpt::Userbase(self.tables(next(&mut inner))),
            Rule::kw_user => LocalOpt::User(self.value(next(&mut inner))),
            _ => LocalOpt::Wrapper(self.value(next(&mut inner))),
        };
        Spanned { node, span }
    }

    pub(super) fn relay_opt(&self, p: P<'_>) -> Spanned<RelayOpt> {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let first = next(&mut inner);
        let node = match first.as_rule() {
            Rule::kw_backup => {
                let mx = take_kw(&mut inner, Rule::kw_mx);
                RelayOpt::Backup(if mx { self.opt_value(&mut inner) } else { None })
            }
            Rule::kw_host => RelayOpt::Host(self.tables(next(&mut inner))),
            Rule::kw_domain => RelayOpt::Domain(self.tables(next(&mut inner))),
            Rule::kw_auth => RelayOpt::Auth(self.tables(next(&mut inner))),
            Rule::kw_tls => RelayOpt::Tls {
                no_verify: take_kw(&mut inner, Rule::kw_no_verify),
            },
            Rule::kw_pki => RelayOpt::Pki(self.value(next(&mut inner))),
            Rule::kw_ca => RelayOpt::Ca(self.value(next(&mut inner))),
            Rule::kw_ciphers => RelayOpt::Ciphers(self.value(next(&mut inner))),
            Rule::kw_protocols => RelayOpt::Protocols(self.value(next(&mut inner))),
            Rule::kw_helo_src => RelayOpt::HeloSrc(self.tables(next(&mut inner))),
            Rule::kw_helo => RelayOpt::Helo(self.value(next(&mut inner))),
            Rule::kw_src => RelayOpt::Src(self.tables(next(&mut inner))),
            Rule::kw_mail_from => RelayOpt::MailFrom(self.value(next(&mut inner))),
            Rule::kw_srs => RelayOpt::Srs,
            _ => RelayOpt::Filter(self.filter_ref(first)),
        };
        Spanned { node, span }
    }

    pub(super) fn match_rule(&self, mut inner: Pairs<'_, Rule>) -> Match {
        next(&mut inner);
        let mut opts = Vec::new();
        let mut verdict = None;
        for p in inner {
            if p.as_rule() == Rule::match_verdict {
                let mut parts = p.clone().into_inner();
                let node = match next(&mut parts).as_rule() {
                    Rule::kw_action => Verdict::Action(self.value(next(&mut parts))),
                    _ => Verdict::Reject,
                };
                verdict = Some(self.spanned(&p, node));
            } else {
                opts.push(self.match_opt(p));
            }
        }
        Match {
            opts,
            verdict: verdict.expect("the grammar ends every match rule with a verdict"),
        }
    }

    pub(super) fn match_opt(&self, p: P<'_>) -> Spanned<MatchOpt> {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let negated = take_kw(&mut inner, Rule::negation);
        let crit = next(&mut inner);
        let rule = crit.as_rule();
        let mut parts = crit.into_inner();
        next(&mut parts); // the criterion keyword
        let criterion = match rule {
            Rule::from_crit => Criterion::From(self.source_spec(parts)),
            Rule::for_crit => Criterion::For(self.destination_spec(parts)),
            Rule::tag_crit => Criterion::Tag(self.table_match(next(&mut parts))),
            Rule::helo_crit => Criterion::Helo(self.table_match(next(&mut parts))),
            Rule::auth_crit => Criterion::Auth(self.opt_table_match(&mut parts)),
            Rule::tls_crit => Criterion::Tls,
            Rule::mail_from_crit => Criterion::MailFrom(self.table_match(next(&mut parts))),
            _ => Criterion::RcptTo(self.table_match(next(&mut parts))),
        };
        Spanned {
            node: MatchOpt { negated, criterion },
            span,
        }
    }

    pub(super) fn source_spec(&self, mut parts: Pairs<'_, Rule>) -> FromSpec {
        match next(&mut parts).as_rule() {
            Rule::kw_any => FromSpec::Any,
            Rule::kw_local => FromSpec::Local,
            Rule::kw_socket => FromSpec::Socket,
            Rule::kw_src => FromSpec::Src(self.table_match(next(&mut parts))),
            Rule::kw_rdns => FromSpec::Rdns(self.opt_table_match(&mut parts)),
            Rule::kw_auth => FromSpec::Auth(self.opt_table_match(&mut parts)),
            _ => FromSpec::MailFrom(self.table_match(next(&mut parts))),
        }
    }

    pub(super) fn destination_spec(&self, mut parts: Pairs<'_, Rule>) -> ForSpec {
        match next(&mut parts).as_rule() {
            Rule::kw_any => ForSpec::Any,
            Rule::kw_local => ForSpec::Local,
            Rule::kw_domain => ForSpec::Domain(self.table_match(next(&mut parts))),
            _ => ForSpec::RcptTo(self.table_match(next(&mut parts))),
        }
    }

    pub(super) fn filter(&self, mut inner: Pairs<'_, Rule>) -> StatementKind {
        next(&mut inner);
        let name = self.value(next(&mut inner));
        let body = next(&mut inner);
        let rule = body.as_rule();
        let mut parts = body.into_inner();
        next(&mut parts); // proc, proc-exec, phase or chain
        let def = match rule {
            Rule::filter_proc => FilterDef::Proc(self.value(next(&mut parts))),
            Rule::proc_exec => FilterDef::ProcExec(self.proc_exec(&mut parts)),
            Rule::filter_chain => FilterDef::Chain(self.names(next(&mut parts))),
            _ => {
                let phase = next(&mut parts);
                next(&mut parts); // match
                let condition = next(&mut parts);
                let decision = next(&mut parts);
                FilterDef::Builtin {
                    phase: self.spanned(&phase, phase_of(&phase)),
                    condition: self.spanned(&condition, self.condition(condition.clone())),
                    decision: self.spanned(&decision, self.decision(decision.clone())),
                }
            }
        };
        StatementKind::Filter { name, def }
    }

    pub(super) fn condition(&self, p: P<'_>) -> Condition {
        let mut inner = p.into_inner();
        let negated = take_kw(&mut inner, Rule::negation);
        let test = match next(&mut inner).as_rule() {
            Rule::kw_fcrdns => Test::Fcrdns,
            Rule::kw_rdns => Test::Rdns(self.opt_table_match(&mut inner)),
            Rule::kw_src => Test::Src(self.table_match(next(&mut inner))),
            Rule::kw_helo => Test::Helo(self.table_match(next(&mut inner))),
            Rule::kw_auth => Test::Auth(self.opt_table_match(&mut inner)),
            Rule::kw_mail_from => Test::MailFrom(self.table_match(next(&mut inner))),
            _ => Test::RcptTo(self.table_match(next(&mut inner))),
        };
        Condition { negated, test }
    }

    pub(super) fn decision(&self, p: P<'_>) -> Decision {
        let mut inner = p.into_inner();
        match next(&mut inner).as_rule() {
            Rule::kw_reject => Decision::Reject(self.value(next(&mut inner))),
            Rule::kw_disconnect => Decision::Disconnect(self.value(next(&mut inner))),
            Rule::kw_rewrite => Decision::Rewrite(self.value(next(&mut inner))),
            Rule::kw_report => Decision::Report(self.value(next(&mut inner))),
            Rule::kw_junk => Decision::Junk,
            _ => Decision::Bypass,
        }
    }

    pub(super) fn queue(&self, mut inner: Pairs<'_, Rule>) -> QueueDirective {
        next(&mut inner);
        let first = next(&mut inner);
        match first.as_rule() {
            Rule::kw_compression => QueueDirective::Compression,
            Rule::kw_encryption => QueueDirective::Encryption(self.opt_value(&mut inner)),
            Rule::kw_ttl => QueueDirective::Ttl(self.value(next(&mut inner))),
            _ => {
                let mut parts = first.into_inner();
                next(&mut parts);
                QueueDirective::ProcExec(self.proc_exec(&mut parts))
            }
        }
    }

    pub(super) fn limit_pair(&self, p: P<'_>) -> LimitPair {
        let mut inner = p.into_inner();
        let key = self.value(next(&mut inner));
        LimitPair {
            key,
            value: self.number(next(&mut inner)),
        }
    }

    pub(super) fn smtp(&self, mut inner: Pairs<'_, Rule>) -> SmtpDirective {
        next(&mut inner);
        match next(&mut inner).as_rule() {
            Rule::kw_limit => SmtpDirective::Limit(inner.map(|p| self.limit_pair(p)).collect()),
            Rule::kw_ciphers => SmtpDirective::Ciphers(self.value(next(&mut inner))),
            Rule::kw_max_message_size => {
                let size = next(&mut inner);
                SmtpDirective::MaxMessageSize(if size.as_rule() == Rule::number {
                    Size::Number(self.number(size))
                } else {
                    Size::Scaled(self.value(size))
                })
            }
            _ => SmtpDirective::SubAddrDelim(self.value(next(&mut inner))),
        }
    }

    pub(super) fn mta(&self, mut inner: Pairs<'_, Rule>) -> MtaDirective {
        next(&mut inner);
        if next(&mut inner).as_rule() == Rule::kw_max_deferred {
            return MtaDirective::MaxDeferred(self.number(next(&mut inner)));
        }
        let mut domain = None;
        let mut items = Vec::new();
        for p in inner {
            if p.as_rule() == Rule::mta_for_domain {
                let mut parts = p.into_inner();
                next(&mut parts); // for
                next(&mut parts); // domain
                domain = Some(self.value(next(&mut parts)));
                continue;
            }
            let span = self.span(&p);
            let item = next(&mut p.into_inner());
            let node = match item.as_rule() {
                Rule::kw_inet4 => MtaLimit::Inet4,
                Rule::kw_inet6 => MtaLimit::Inet6,
                _ => MtaLimit::Pair(self.limit_pair(item)),
            };
            items.push(Spanned { node, span });
        }
        MtaDirective::Limit { domain, items }
    }

    pub(super) fn mda(&self, mut inner: Pairs<'_, Rule>) -> MdaDirective {
        next(&mut inner);
        if next(&mut inner).as_rule() == Rule::kw_limit {
            return MdaDirective::Limit(inner.map(|p| self.limit_pair(p)).collect());
        }
        let name = self.value(next(&mut inner));
        MdaDirective::Wrapper {
            name,
            command: self.value(next(&mut inner)),
        }
    }

    pub(super) fn srs(&self, mut inner: Pairs<'_, Rule>) -> SrsDirective {
        next(&mut inner);
        if next(&mut inner).as_rule() == Rule::kw_ttl {
            return SrsDirective::Ttl(self.value(next(&mut inner)));
        }
        let backup = take_kw(&mut inner, Rule::kw_backup);
        SrsDirective::Key {
            backup,
            secret: self.value(next(&mut inner)),
        }
    }
}

fn phase_of(p: &P<'_>) -> Phase {
    let kw = p.clone().into_inner().next().map(|k| k.as_rule());
    match kw {
        Some(Rule::kw_connect) => Phase::Connect,
        Some(Rule::kw_helo) => Phase::Helo,
        Some(Rule::kw_ehlo) => Phase::Ehlo,
        Some(Rule::kw_auth) => Phase::Auth,
        Some(Rule::kw_mail_from) => Phase::MailFrom,
        Some(Rule::kw_rcpt_to) => Phase::RcptTo,
        Some(Rule::kw_data) => Phase::Data,
        _ => Phase::Commit,
    }
}
