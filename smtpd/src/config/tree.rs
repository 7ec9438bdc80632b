//! From pest's parse tree to the syntax tree of `ast.rs`.
//!
//! The grammar (`smtpd.pest`) guarantees the shape of every pair, so this
//! module only walks it: each function takes one pair of a known rule and
//! returns its node, with spans mapped back to the source through the
//! statement's position map.

use pest::iterators::{Pair, Pairs};

use super::ast::*;
use super::model::Phase;
use super::parse::Rule;
use super::source::{self, Span};

type P<'i> = Pair<'i, Rule>;

/// Builds nodes for one statement.
pub(crate) struct Builder<'s> {
    pub(crate) statement: &'s source::Statement,
}

/// The next operand of a rule whose shape the grammar fixes.
fn next<'i>(inner: &mut Pairs<'i, Rule>) -> P<'i> {
    inner
        .next()
        .expect("the grammar guarantees this operand is present")
}

/// True when the next pair is of `rule`; consumes it then.
fn take_kw(inner: &mut Pairs<'_, Rule>, rule: Rule) -> bool {
    if inner.peek().is_some_and(|p| p.as_rule() == rule) {
        inner.next();
        true
    } else {
        false
    }
}

impl Builder<'_> {
    fn span(&self, p: &P<'_>) -> Span {
        let s = p.as_span();
        self.statement.span(s.start(), s.end())
    }

    fn spanned<T>(&self, p: &P<'_>, node: T) -> Spanned<T> {
        Spanned {
            node,
            span: self.span(p),
        }
    }

    /// A `value` pair.
    fn value(&self, p: P<'_>) -> Value {
        let span = self.span(&p);
        let token = next(&mut p.into_inner());
        match token.as_rule() {
            Rule::quoted => {
                let text = next(&mut token.into_inner());
                let quote = if text.as_rule() == Rule::dq_text {
                    '"'
                } else {
                    '\''
                };
                Value {
                    text: unescape(text.as_str(), quote),
                    quoted: true,
                    span,
                }
            }
            _ => Value {
                text: token.as_str().to_owned(),
                quoted: false,
                span,
            },
        }
    }

    fn opt_value(&self, inner: &mut Pairs<'_, Rule>) -> Option<Value> {
        if inner.peek().is_some_and(|p| p.as_rule() == Rule::value) {
            inner.next().map(|p| self.value(p))
        } else {
            None
        }
    }

    fn number(&self, p: P<'_>) -> Number {
        Number {
            text: p.as_str().to_owned(),
            span: self.span(&p),
        }
    }

    /// A `tables` pair.
    fn tables(&self, p: P<'_>) -> Tables {
        let span = self.span(&p);
        let form = next(&mut p.into_inner());
        let expr = match form.as_rule() {
            Rule::table_ref => TableExpr::Named(self.value(next(&mut form.into_inner()))),
            Rule::inline_table => self.inline_table(form),
            _ => TableExpr::Single(self.value(form)),
        };
        Tables { expr, span }
    }

    fn inline_table(&self, p: P<'_>) -> TableExpr {
        let entries = next(&mut p.into_inner());
        match entries.as_rule() {
            Rule::map_entries => TableExpr::Map(
                entries
                    .into_inner()
                    .map(|entry| {
                        let mut kv = entry.into_inner();
                        let key = self.value(next(&mut kv));
                        next(&mut kv); // = or =>
                        (key, self.value(next(&mut kv)))
                    })
                    .collect(),
            ),
            _ => TableExpr::List(entries.into_inner().map(|v| self.value(v)).collect()),
        }
    }

    fn opt_tables(&self, inner: &mut Pairs<'_, Rule>) -> Option<Tables> {
        if inner.peek().is_some_and(|p| p.as_rule() == Rule::tables) {
            inner.next().map(|p| self.tables(p))
        } else {
            None
        }
    }

    /// A `table_match` pair.
    fn table_match(&self, p: P<'_>) -> TableMatch {
        let mut inner = p.into_inner();
        let regex = take_kw(&mut inner, Rule::kw_regex);
        TableMatch {
            regex,
            tables: self.tables(next(&mut inner)),
        }
    }

    fn opt_table_match(&self, inner: &mut Pairs<'_, Rule>) -> Option<TableMatch> {
        inner.next().map(|p| self.table_match(p))
    }

    fn names(&self, p: P<'_>) -> Vec<Value> {
        p.into_inner().map(|v| self.value(v)).collect()
    }

    /// A `filter_ref` pair.
    fn filter_ref(&self, p: P<'_>) -> FilterRef {
        let mut inner = p.into_inner();
        next(&mut inner); // kw_filter
        let target = next(&mut inner);
        match target.as_rule() {
            Rule::filter_block => FilterRef::Inline(self.names(next(&mut target.into_inner()))),
            _ => FilterRef::Named(self.value(target)),
        }
    }

    /// A `proc_exec` pair, or the operands of `proc NAME CMD ...` after the
    /// name.
    fn proc_exec(&self, inner: &mut Pairs<'_, Rule>) -> ProcExec {
        let command = self.value(next(inner));
        let opts = inner.map(|opt| self.proc_opt(opt)).collect();
        ProcExec { command, opts }
    }

    fn proc_opt(&self, p: P<'_>) -> Spanned<ProcOpt> {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let kw = next(&mut inner).as_rule();
        let value = self.value(next(&mut inner));
        let node = match kw {
            Rule::kw_user => ProcOpt::User(value),
            Rule::kw_group => ProcOpt::Group(value),
            _ => ProcOpt::Chroot(value),
        };
        Spanned { node, span }
    }

    /// The one statement of a `statement_line`.
    pub(crate) fn statement(&self, p: P<'_>) -> Statement {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut inner = p.into_inner();
        let kind = match rule {
            Rule::macro_def => {
                let name = self.value(next(&mut inner));
                StatementKind::Macro {
                    name,
                    value: self.value(next(&mut inner)),
                }
            }
            Rule::include => {
                next(&mut inner);
                StatementKind::Include(self.value(next(&mut inner)))
            }
            Rule::table => self.table(inner),
            Rule::pki => self.pki(inner),
            Rule::ca => {
                next(&mut inner);
                let name = self.value(next(&mut inner));
                next(&mut inner);
                StatementKind::Ca {
                    name,
                    cert: self.value(next(&mut inner)),
                }
            }
            Rule::listen => self.listen(inner),
            Rule::action => StatementKind::Action(self.action(inner)),
            Rule::match_rule => StatementKind::Match(self.match_rule(inner)),
            Rule::proc => {
                next(&mut inner);
                let name = self.value(next(&mut inner));
                StatementKind::Proc {
                    name,
                    command: self.proc_exec(&mut inner),
                }
            }
            Rule::filter => self.filter(inner),
            Rule::queue => StatementKind::Queue(self.queue(inner)),
            Rule::bounce => {
                next(&mut inner);
                next(&mut inner);
                StatementKind::Bounce(inner.map(|v| self.value(v)).collect())
            }
            Rule::smtp => StatementKind::Smtp(self.smtp(inner)),
            Rule::mta => StatementKind::Mta(self.mta(inner)),
            Rule::mda => StatementKind::Mda(self.mda(inner)),
            Rule::scheduler => {
                next(&mut inner);
                next(&mut inner);
                StatementKind::Scheduler(inner.map(|p| self.limit_pair(p)).collect())
            }
            Rule::srs => StatementKind::Srs(self.srs(inner)),
            _ => {
                next(&mut inner);
                StatementKind::Admd(self.value(next(&mut inner)))
            }
        };
        Statement { kind, span }
    }

    fn table(&self, mut inner: Pairs<'_, Rule>) -> StatementKind {
        next(&mut inner);
        let name = self.value(next(&mut inner));
        let source = next(&mut inner);
        let source = match source.as_rule() {
            Rule::inline_table => TableSource::Inline(Tables {
                span: self.span(&source),
                expr: self.inline_table(source),
            }),
            Rule::proc_exec => {
                let mut inner = source.into_inner();
                next(&mut inner);
                TableSource::ProcExec(self.proc_exec(&mut inner))
            }
            _ => TableSource::Backend(self.value(source)),
        };
        StatementKind::Table { name, source }
    }

    fn pki(&self, mut inner: Pairs<'_, Rule>) -> StatementKind {
        next(&mut inner);
        let name = self.value(next(&mut inner));
        let params = inner
            .map(|p| {
                let mut inner = p.into_inner();
                let kw = next(&mut inner).as_rule();
                let value = self.value(next(&mut inner));
                match kw {
                    Rule::kw_cert => PkiParam::Cert(value),
                    Rule::kw_key => PkiParam::Key(value),
                    _ => PkiParam::Dhe(value),
                }
            })
            .collect();
        StatementKind::Pki { name, params }
    }

    fn listen(&self, mut inner: Pairs<'_, Rule>) -> StatementKind {
        next(&mut inner);
        next(&mut inner);
        let target = next(&mut inner);
        let socket = target.as_rule() == Rule::listen_socket;
        let mut inner = target.into_inner();
        if socket {
            next(&mut inner);
            return StatementKind::ListenSocket(inner.map(|p| self.socket_opt(p)).collect());
        }
        let iface = self.value(next(&mut inner));
        let opts = inner.map(|p| self.listen_opt(p)).collect();
        StatementKind::Listen { iface, opts }
    }

    fn socket_opt(&self, p: P<'_>) -> Spanned<SocketOpt> {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let first = next(&mut inner);
        let node = match first.as_rule() {
            Rule::filter_ref => SocketOpt::Filter(self.filter_ref(first)),
            Rule::kw_mask_src => SocketOpt::MaskSrc,
            Rule::kw_no_dsn => SocketOpt::NoDsn,
            _ => SocketOpt::Tag(self.value(next(&mut inner))),
        };
        Spanned { node, span }
    }

    fn listen_opt(&self, p: P<'_>) -> Spanned<ListenOpt> {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let first = next(&mut inner);
        let node = match first.as_rule() {
            Rule::kw_inet4 => ListenOpt::Inet4,
            Rule::kw_inet6 => ListenOpt::Inet6,
            Rule::kw_port => ListenOpt::Port(self.port(next(&mut inner))),
            Rule::kw_smtps => ListenOpt::Smtps {
                verify: take_kw(&mut inner, Rule::kw_verify),
            },
            Rule::kw_tls_require => ListenOpt::TlsRequire {
                verify: take_kw(&mut inner, Rule::kw_verify),
            },
            Rule::kw_tls => ListenOpt::Tls,
            Rule::kw_pki => ListenOpt::Pki(self.value(next(&mut inner))),
            Rule::kw_ca => ListenOpt::Ca(self.value(next(&mut inner))),
            Rule::kw_ciphers => ListenOpt::Ciphers(self.value(next(&mut inner))),
            Rule::kw_protocols => ListenOpt::Protocols(self.value(next(&mut inner))),
            Rule::kw_auth => ListenOpt::Auth(self.opt_tables(&mut inner)),
            Rule::kw_auth_optional => ListenOpt::AuthOptional(self.opt_tables(&mut inner)),
            Rule::kw_tag => ListenOpt::Tag(self.value(next(&mut inner))),
            Rule::kw_hostnames => ListenOpt::Hostnames(self.tables(next(&mut inner))),
            Rule::kw_hostname => ListenOpt::Hostname(self.value(next(&mut inner))),
            Rule::kw_mask_src => ListenOpt::MaskSrc,
            Rule::kw_received_auth => ListenOpt::ReceivedAuth,
            Rule::kw_no_dsn => ListenOpt::NoDsn,
            Rule::kw_proxy_v2 => ListenOpt::ProxyV2,
            Rule::kw_senders => ListenOpt::Senders {
                tables: self.tables(next(&mut inner)),
                masquerade: take_kw(&mut inner, Rule::kw_masquerade),
            },
            _ => ListenOpt::Filter(self.filter_ref(first)),
        };
        Spanned { node, span }
    }

    fn port(&self, p: P<'_>) -> Port {
        let operand = next(&mut p.into_inner());
        match operand.as_rule() {
            Rule::kw_smtp => Port::Smtp,
            Rule::kw_smtps => Port::Smtps,
            Rule::number => Port::Number(self.number(operand)),
            _ => Port::Name(self.value(operand)),
        }
    }

    fn action(&self, mut inner: Pairs<'_, Rule>) -> Action {
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

    fn local_method(&self, p: P<'_>) -> LocalMethod {
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

    fn local_opt(&self, p: P<'_>) -> Spanned<LocalOpt> {
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

    fn relay_opt(&self, p: P<'_>) -> Spanned<RelayOpt> {
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

    fn match_rule(&self, mut inner: Pairs<'_, Rule>) -> Match {
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

    fn match_opt(&self, p: P<'_>) -> Spanned<MatchOpt> {
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

    fn source_spec(&self, mut parts: Pairs<'_, Rule>) -> FromSpec {
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

    fn destination_spec(&self, mut parts: Pairs<'_, Rule>) -> ForSpec {
        match next(&mut parts).as_rule() {
            Rule::kw_any => ForSpec::Any,
            Rule::kw_local => ForSpec::Local,
            Rule::kw_domain => ForSpec::Domain(self.table_match(next(&mut parts))),
            _ => ForSpec::RcptTo(self.table_match(next(&mut parts))),
        }
    }

    fn filter(&self, mut inner: Pairs<'_, Rule>) -> StatementKind {
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

    fn condition(&self, p: P<'_>) -> Condition {
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

    fn decision(&self, p: P<'_>) -> Decision {
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

    fn queue(&self, mut inner: Pairs<'_, Rule>) -> QueueDirective {
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

    fn limit_pair(&self, p: P<'_>) -> LimitPair {
        let mut inner = p.into_inner();
        let key = self.value(next(&mut inner));
        LimitPair {
            key,
            value: self.number(next(&mut inner)),
        }
    }

    fn smtp(&self, mut inner: Pairs<'_, Rule>) -> SmtpDirective {
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

    fn mta(&self, mut inner: Pairs<'_, Rule>) -> MtaDirective {
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

    fn mda(&self, mut inner: Pairs<'_, Rule>) -> MdaDirective {
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

    fn srs(&self, mut inner: Pairs<'_, Rule>) -> SrsDirective {
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

/// Resolves the escapes of a quoted string's body: a backslash before the
/// quote, a space or a tab yields that character; any other backslash is
/// kept.
fn unescape(body: &str, quote: char) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if n == quote || n == ' ' || n == '\t' {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}
