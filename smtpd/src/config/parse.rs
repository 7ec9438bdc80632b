//! Reading smtpd.conf into a syntax tree: files, includes, macros and the
//! pest grammar.
//!
//! [`Reader`] reads a file statement by statement (see `source.rs` for how
//! statements are cut and macros expanded), parses each with the grammar of
//! `smtpd.pest` and builds its node with `tree.rs`. A macro definition takes
//! effect for the statements after it; an `include` reads the named file in
//! place. A statement with a syntax error is reported and skipped, and
//! reading goes on, so that one run reports every error.

use std::path::{Path, PathBuf};

use pest::error::{ErrorVariant, InputLocation};
use pest::Parser as _;

use super::ast::{Statement, StatementKind};
use super::check::Broken;
use super::error::{describe_io, Issue};
use super::source::{self, is_word_char, FileId, Macros, Sources, Span};
use super::tree::Builder;

// pest_derive generates a public `Rule` enum with one variant per grammar
// rule; it is only used inside this module tree.
#[allow(unreachable_pub, missing_docs)]
mod grammar {
    #[derive(pest_derive::Parser)]
    #[grammar = "config/smtpd.pest"]
    pub(crate) struct Grammar;
}

pub(crate) use grammar::Rule;

/// Reads configuration files into statements.
pub(crate) struct Reader<'a> {
    pub(crate) sources: &'a mut Sources,
    pub(crate) macros: Macros,
    pub(crate) issues: Vec<Issue>,
    pub(crate) statements: Vec<Statement>,
    /// What statements with syntax errors were declaring.
    pub(crate) broken: Broken,
    /// The files being read, outermost first (to refuse include loops).
    stack: Vec<PathBuf>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(sources: &'a mut Sources, macros: Macros) -> Self {
        Self {
            sources,
            macros,
            issues: Vec::new(),
            statements: Vec::new(),
            broken: Broken::default(),
            stack: Vec::new(),
        }
    }

    /// Reads the text of a file that has been added to the sources.
    pub(crate) fn read(&mut self, file: FileId) {
        let name = self.sources.file(file).name.clone();
        self.stack.push(name.canonicalize().unwrap_or(name));
        let (raw, lexical_errors) =
            source::split(file, &self.sources.file(file).text, &mut self.issues);
        // What a dropped statement declared is unknown: do not report a
        // missing rule on top.
        self.broken.rules |= lexical_errors;
        for statement in &raw {
            match self.macros.expand(statement) {
                Ok(expanded) => self.statement(&expanded),
                Err(issue) => self.issues.push(issue),
            }
        }
        self.stack.pop();
    }

    fn statement(&mut self, text: &source::Statement) {
        let pairs = match grammar::Grammar::parse(Rule::statement_line, &text.text) {
            Ok(pairs) => pairs,
            Err(e) => {
                self.issues.push(syntax_issue(text, &e));
                self.broken.note(&text.text);
                return;
            }
        };
        let Some(line) = pairs.into_iter().next() else {
            return;
        };
        let Some(pair) = line.into_inner().next() else {
            return;
        };
        let statement = Builder { statement: text }.statement(pair);
        match &statement.kind {
            StatementKind::Macro { name, value } => self.define(name, value, statement.span),
            StatementKind::Include(path) => self.include(&path.text, path.span),
            _ => {}
        }
        self.statements.push(statement);
    }

    fn define(&mut self, name: &super::ast::Value, value: &super::ast::Value, at: Span) {
        if name.text.chars().any(char::is_whitespace) || name.text.is_empty() {
            self.issues.push(
                Issue::new(name.span, "macro name cannot contain whitespace")
                    .expected("a name made of letters, digits and _"),
            );
            return;
        }
        self.macros.define(&name.text, &value.text, at);
    }

    /// Reads an included file. A relative path is taken from the directory
    /// of the including file.
    fn include(&mut self, path: &str, at: Span) {
        let path = relative_to(self.sources, at.start.file, Path::new(path));
        let key = path.canonicalize().unwrap_or_else(|_| path.clone());
        if self.stack.contains(&key) {
            self.issues.push(
                Issue::new(
                    at,
                    format!("include loop: {} is already being read", path.display()),
                )
                .expected("a file that does not include itself"),
            );
            return;
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let file = self.sources.add(path, text);
                self.read(file);
            }
            Err(e) => self.issues.push(
                Issue::new(
                    at,
                    format!(
                        "cannot read include file {}: {}",
                        path.display(),
                        describe_io(&e)
                    ),
                )
                .expected("a readable file"),
            ),
        }
    }
}

/// `path` as seen from the directory of `file` (unchanged when absolute).
pub(crate) fn relative_to(sources: &Sources, file: FileId, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    match sources.file(file).name.parent() {
        Some(dir) => dir.join(path),
        None => path.to_owned(),
    }
}

/// A syntax error as an issue: what was found and what was expected.
fn syntax_issue(text: &source::Statement, e: &pest::error::Error<Rule>) -> Issue {
    let offset = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let (found, len, keyword) = token_at(&text.text, offset);
    let mut issue = Issue::new(
        text.span(offset, offset + len.max(1)),
        format!("syntax error: unexpected {found}"),
    );
    if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
        let mut expected = describe(positives);
        let word = &text.text[offset..offset + len];
        let macro_name = offset == 0 && text.text[len..].trim_start().starts_with('=');
        if keyword && macro_name {
            expected.push_str(&format!(" (`{word}` is a keyword: it cannot name a macro)"));
        } else if keyword
            && positives
                .iter()
                .any(|r| matches!(r, Rule::value | Rule::tables))
        {
            expected.push_str(&format!(
                " (`{word}` is a keyword: write \"{word}\" to use it as a value)"
            ));
        }
        issue = issue.expected(expected);
    }
    issue
}

/// The token at `offset`: its description, its length in bytes, and
/// whether it is a keyword.
fn token_at(text: &str, offset: usize) -> (String, usize, bool) {
    let rest = &text[offset.min(text.len())..];
    let Some(first) = rest.chars().next() else {
        return ("end of line".to_owned(), 0, false);
    };
    if first == '\n' {
        return ("end of line".to_owned(), 1, false);
    }
    if first == '"' || first == '\'' {
        let len = rest[1..].find(first).map_or(rest.len(), |n| n + 2);
        return (format!("string {}", &rest[..len]), len, false);
    }
    if first.is_ascii_alphanumeric() || first == ':' || first == '_' {
        let len = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
        let word = &rest[..len];
        if KEYWORDS.contains(&word) {
            return (format!("keyword `{word}`"), len, true);
        }
        return (format!("`{word}`"), len, false);
    }
    (format!("`{first}`"), first.len_utf8(), false)
}

/// Every keyword, as the lexer spells it.
pub(crate) const KEYWORDS: &[&str] = &[
    "action",
    "admd",
    "alias",
    "any",
    "auth",
    "auth-optional",
    "backup",
    "bounce",
    "bypass",
    "ca",
    "cert",
    "chain",
    "chroot",
    "ciphers",
    "commit",
    "compression",
    "connect",
    "data",
    "data-line",
    "dhe",
    "disconnect",
    "domain",
    "ehlo",
    "encryption",
    "expand-only",
    "fcrdns",
    "filter",
    "for",
    "forward-only",
    "from",
    "group",
    "helo",
    "helo-src",
    "host",
    "hostname",
    "hostnames",
    "include",
    "inet4",
    "inet6",
    "junk",
    "key",
    "limit",
    "listen",
    "lmtp",
    "local",
    "mail-from",
    "maildir",
    "mask-src",
    "masquerade",
    "match",
    "max-deferred",
    "max-message-size",
    "mbox",
    "mda",
    "mta",
    "mx",
    "no-dsn",
    "no-verify",
    "noop",
    "on",
    "phase",
    "pki",
    "port",
    "proc",
    "proc-exec",
    "protocols",
    "proxy-v2",
    "queue",
    "quit",
    "rcpt-to",
    "rdns",
    "received-auth",
    "recipient",
    "regex",
    "reject",
    "relay",
    "report",
    "rewrite",
    "rset",
    "scheduler",
    "senders",
    "smtp",
    "smtp-in",
    "smtp-out",
    "smtps",
    "socket",
    "src",
    "srs",
    "sub-addr-delim",
    "table",
    "tag",
    "tagged",
    "tls",
    "tls-require",
    "ttl",
    "user",
    "userbase",
    "verify",
    "virtual",
    "warn-interval",
    "wrapper",
];

const DIRECTIVES: &str = "a directive (action, admd, bounce, ca, filter, include, listen, match, \
     mda, mta, pki, proc, queue, scheduler, smtp, srs, table) or a macro definition NAME = VALUE";

/// What the rules pest expected mean to a user, joined into one phrase.
fn describe(rules: &[Rule]) -> String {
    let mut parts: Vec<String> = Vec::new();
    // The end of the line reads best last.
    let ordered = rules
        .iter()
        .filter(|r| **r != Rule::EOI)
        .chain(rules.iter().filter(|r| **r == Rule::EOI));
    for &rule in ordered {
        let text = describe_rule(rule);
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    match parts.len() {
        0 => "something else".to_owned(),
        1 => parts.remove(0),
        n => format!("{} or {}", parts[..n - 1].join(", "), parts[n - 1]),
    }
}

fn describe_rule(rule: Rule) -> String {
    let name = format!("{rule:?}");
    if let Some(keyword) = name.strip_prefix("kw_") {
        return format!("`{}`", keyword.replace('_', "-"));
    }
    let text = match rule {
        Rule::include
        | Rule::table
        | Rule::pki
        | Rule::ca
        | Rule::listen
        | Rule::action
        | Rule::match_rule
        | Rule::filter
        | Rule::proc
        | Rule::queue
        | Rule::bounce
        | Rule::smtp
        | Rule::mta
        | Rule::mda
        | Rule::scheduler
        | Rule::srs
        | Rule::admd
        | Rule::macro_def
        | Rule::statement_line => DIRECTIVES,
        Rule::EOI => "the end of the line",
        Rule::value | Rule::quoted | Rule::bare | Rule::dq_text | Rule::sq_text => {
            "a value (a word or a quoted string)"
        }
        Rule::number => "a number",
        Rule::tables | Rule::table_match => "a table (<name>, a value or { ... })",
        Rule::table_ref => "<name>",
        Rule::inline_table => "{ ... }",
        Rule::map_entries | Rule::map_entry | Rule::list_entries => "a table entry",
        Rule::arrow => "`=` or `=>`",
        Rule::close_brace => "`}`",
        Rule::close_angle => "`>`",
        Rule::negation => "`!`",
        Rule::listen_socket => "`socket`",
        Rule::listen_iface => "an interface, an address or a host name",
        Rule::socket_opt => "a socket option (filter, mask-src, no-dsn, tag)",
        Rule::listen_opt => {
            "a listener option (inet4, inet6, port, tls, tls-require, smtps, pki, ca, ciphers, \
             protocols, auth, auth-optional, tag, hostname, hostnames, mask-src, received-auth, \
             no-dsn, proxy-v2, senders, filter)"
        }
        Rule::port => "a port (a number, a service name, smtp or smtps)",
        Rule::filter_ref => "`filter`",
        Rule::filter_block => "{ filter, ... }",
        Rule::filter_names => "a filter name",
        Rule::local_action | Rule::local_method => {
            "a delivery method (mbox, maildir, lmtp, mda, forward-only, expand-only)"
        }
        Rule::relay_action => "`relay`",
        Rule::local_opt => "a delivery option (alias, virtual, userbase, user, wrapper)",
        Rule::relay_opt => {
            "a relay option (backup, host, domain, auth, tls, pki, ca, ciphers, protocols, helo, \
             helo-src, src, mail-from, filter, srs)"
        }
        Rule::action_ttl => "`ttl`",
        Rule::match_opt => {
            "a match criterion (from, for, tag, helo, auth, tls, mail-from, rcpt-to, each may \
             follow a !)"
        }
        Rule::match_verdict => "`action NAME` or `reject`",
        Rule::from_crit => "`from`",
        Rule::for_crit => "`for`",
        Rule::tag_crit => "`tag`",
        Rule::helo_crit => "`helo`",
        Rule::auth_crit => "`auth`",
        Rule::tls_crit => "`tls`",
        Rule::mail_from_crit => "`mail-from`",
        Rule::rcpt_to_crit => "`rcpt-to`",
        Rule::proc_opt => "a process option (user, group, chroot)",
        Rule::proc_exec => "`proc-exec`",
        Rule::pki_param => "a pki parameter (cert, key, dhe)",
        Rule::filter_proc => "`proc`",
        Rule::filter_chain => "`chain`",
        Rule::filter_builtin => "`phase`",
        Rule::phase => "a phase (connect, helo, ehlo, auth, mail-from, rcpt-to, data, commit)",
        Rule::filter_cond => {
            "a condition (fcrdns, rdns, src, helo, auth, mail-from, rcpt-to, each may follow a !)"
        }
        Rule::filter_decision => "a decision (reject, disconnect, rewrite, report, junk, bypass)",
        Rule::limit_pair => "a limit (KEY NUMBER)",
        Rule::mta_limit => "a limit (inet4, inet6 or KEY NUMBER)",
        Rule::mta_for_domain => "`for domain`",
        _ => return name.replace('_', " "),
    };
    text.to_owned()
}
