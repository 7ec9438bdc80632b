//! From pest's parse tree to the syntax tree of `ast.rs`.
//!
//! The grammar (`smtpd.pest`) guarantees the shape of every pair, so this
//! module only walks it: each function takes one pair of a known rule and
//! returns its node, with spans mapped back to the source through the
//! statement's position map.

mod directives;

use pest::iterators::{Pair, Pairs};

use super::ast::*;
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
