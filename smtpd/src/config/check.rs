//! From the syntax tree to the typed [`Config`]: every semantic check of
//! smtpd-conf.md section 10.
//!
//! [`check`] walks the statements in order, as OpenSMTPD's parser does: a
//! table, action, filter, proc, wrapper, pki or ca must be declared before a
//! statement refers to it. Each problem becomes an [`Issue`] at the span of
//! the offending text, and checking goes on, so one run reports them all.
//! The work is split by subject:
//!
//! - `tables.rs`: `table` declarations (inline, files, backends);
//! - `usage.rs`: table operands, and whether a table can serve what it is
//!   used for (`table_check_use`), including the content of static tables;
//! - `listen.rs`: `listen on`, `pki`, `ca`;
//! - `action.rs`: `action` (local methods and relay);
//! - `rules.rs`: `match`;
//! - `filters.rs`: `proc`, `filter` and filter references;
//! - `options.rs`: `queue`, `bounce`, `smtp`, `mta`, `mda`, `scheduler`,
//!   `srs`, `admd`.

mod action;
mod filters;
mod listen;
mod options;
mod rules;
mod tables;
mod usage;

use std::collections::{HashMap, HashSet};

use super::ast::{Number, Statement, StatementKind, Value};
use super::error::Issue;
use super::model::*;
use super::source::{FileId, Sources, Span};
use super::LoadOptions;

/// The kinds of names a configuration declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Namespace {
    Table,
    Action,
    Filter,
    Proc,
    Wrapper,
    Pki,
    Ca,
}

impl Namespace {
    fn keyword(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Action => "action",
            Self::Filter => "filter",
            Self::Proc => "proc",
            Self::Wrapper => "mda wrapper",
            Self::Pki => "pki",
            Self::Ca => "ca",
        }
    }
}

/// What checking produced: the configuration when nothing was wrong.
pub(crate) struct Checked {
    pub(crate) config: Option<Config>,
    pub(crate) issues: Vec<Issue>,
    pub(crate) warnings: Vec<Issue>,
}

/// What statements with syntax errors were about to declare, so that
/// references to them are not reported a second time.
#[derive(Debug, Default)]
pub(crate) struct Broken {
    names: HashSet<(Namespace, String)>,
    pub(crate) rules: bool,
}

impl Broken {
    /// Notes the declaration a statement that failed to parse was making,
    /// from its first words.
    pub(crate) fn note(&mut self, text: &str) {
        let mut words = text
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '"' || c == '\''));
        let first = words.next().unwrap_or("");
        let second = words.next().unwrap_or("").to_owned();
        let third = words.next().unwrap_or("").to_owned();
        let ns = match first {
            "match" => {
                self.rules = true;
                return;
            }
            "table" => Namespace::Table,
            "action" => Namespace::Action,
            "proc" => Namespace::Proc,
            "pki" => Namespace::Pki,
            "ca" => Namespace::Ca,
            "filter" => {
                self.names.insert((Namespace::Proc, second.clone()));
                Namespace::Filter
            }
            "mda" if second == "wrapper" => {
                self.names.insert((Namespace::Wrapper, third));
                return;
            }
            _ => return,
        };
        self.names.insert((ns, second));
    }
}

/// Checks the statements of a configuration whose main file is `main`.
pub(crate) fn check(
    statements: &[Statement],
    sources: &mut Sources,
    opts: &LoadOptions,
    main: FileId,
    broken: &Broken,
) -> Checked {
    let mut checker = Checker::new(sources, opts, statements, broken);
    for statement in statements {
        checker.statement(statement);
    }
    if checker.config.rules.is_empty() && !broken.rules && !checker.broken_rule {
        let end = checker.sources.end_of(main);
        checker.issues.push(
            Issue::new(Span::at(end), "no rules, nothing to do")
                .expected("at least one `match ... action NAME` or `match ... reject` rule"),
        );
    }
    checker.finish_tls();
    let Checker {
        config,
        issues,
        warnings,
        ..
    } = checker;
    Checked {
        config: issues.is_empty().then_some(config),
        issues,
        warnings,
    }
}

/// Positions of a static table's entries, to point at a bad one.
#[derive(Debug, Clone, Copy)]
struct EntryAt {
    key: Span,
    value: Span,
}

/// The spans of a pki's parts, for the checks made once all are read.
#[derive(Debug)]
struct PkiSpans {
    name: Span,
    cert: Option<Span>,
    key: Option<Span>,
}

pub(crate) struct Checker<'a> {
    sources: &'a mut Sources,
    opts: &'a LoadOptions,
    config: Config,
    issues: Vec<Issue>,
    warnings: Vec<Issue>,
    /// Where each name is declared (first declaration), from a first pass:
    /// to say "declared later" when a statement refers to it too early.
    declarations: HashMap<(Namespace, String), Span>,
    broken: &'a Broken,
    /// Declarations that were refused: uses are not reported again.
    failed: HashSet<(Namespace, String)>,
    names: HashMap<(Namespace, String), usize>,
    /// Entry positions of static tables, by table index.
    entries: HashMap<usize, Vec<EntryAt>>,
    validated: HashSet<(usize, &'static str)>,
    dynamic_tables: usize,
    /// A rule was refused: "no rules" would be one error too many.
    broken_rule: bool,
    dynamic_chains: usize,
    socket_configured: bool,
    pki_spans: Vec<PkiSpans>,
    ca_spans: Vec<Span>,
    /// pki and ca names used by relay actions, resolved at the end.
    relay_tls_refs: Vec<(Namespace, Value)>,
}

impl<'a> Checker<'a> {
    fn new(
        sources: &'a mut Sources,
        opts: &'a LoadOptions,
        statements: &[Statement],
        broken: &'a Broken,
    ) -> Self {
        let mut checker = Self {
            sources,
            opts,
            config: initial_config(),
            issues: Vec::new(),
            warnings: Vec::new(),
            declarations: HashMap::new(),
            broken,
            failed: HashSet::new(),
            names: HashMap::new(),
            entries: HashMap::new(),
            validated: HashSet::new(),
            dynamic_tables: 0,
            broken_rule: false,
            dynamic_chains: 0,
            socket_configured: false,
            pki_spans: Vec::new(),
            ca_spans: Vec::new(),
            relay_tls_refs: Vec::new(),
        };
        for (i, table) in checker.config.tables.iter().enumerate() {
            checker
                .names
                .insert((Namespace::Table, table.name.clone()), i);
        }
        for statement in statements {
            if let Some((ns, name)) = declaration(&statement.kind) {
                checker
                    .declarations
                    .entry((ns, name.text.clone()))
                    .or_insert(name.span);
            }
        }
        checker
    }

    fn statement(&mut self, statement: &Statement) {
        match &statement.kind {
            StatementKind::Include(_) | StatementKind::Macro { .. } => {}
            StatementKind::Table { name, source } => self.declare_table(name, source),
            StatementKind::Pki { name, params } => self.pki(name, params),
            StatementKind::Ca { name, cert } => self.ca(name, cert),
            StatementKind::ListenSocket(opts) => self.listen_socket(opts, statement.span),
            StatementKind::Listen { iface, opts } => self.listen(iface, opts),
            StatementKind::Action(action) => self.action(action),
            StatementKind::Match(rule) => self.rule(rule),
            StatementKind::Proc { name, command } => self.proc(name, command),
            StatementKind::Filter { name, def } => self.filter(name, def),
            StatementKind::Queue(q) => self.queue(q),
            StatementKind::Bounce(delays) => self.bounce(delays),
            StatementKind::Smtp(s) => self.smtp(s),
            StatementKind::Mta(m) => self.mta(m),
            StatementKind::Mda(m) => self.mda(m),
            StatementKind::Scheduler(pairs) => self.scheduler(pairs),
            StatementKind::Srs(s) => self.srs(s),
            StatementKind::Admd(v) => self.admd(v),
        }
    }

    fn error(&mut self, span: Span, message: impl Into<String>, expected: impl Into<String>) {
        self.issues
            .push(Issue::new(span, message).expected(expected));
    }

    fn warn(&mut self, span: Span, message: impl Into<String>) {
        self.warnings.push(Issue::new(span, message));
    }

    /// The index of a declared name, or an error saying why not (not
    /// declared, or declared only later).
    fn lookup(&mut self, ns: Namespace, name: &Value, what: &str) -> Option<usize> {
        if let Some(&index) = self.names.get(&(ns, name.text.clone())) {
            return Some(index);
        }
        let key = (ns, name.text.clone());
        if self.broken.names.contains(&key) || self.failed.contains(&key) {
            return None;
        }
        let keyword = ns.keyword();
        let a = if keyword.starts_with('a') { "an" } else { "a" };
        let expected = match self.declarations.get(&(ns, name.text.clone())) {
            Some(at) if at.start > name.span.start || at.start.file != name.span.start.file => {
                let file = self.sources.file(at.start.file).name.display().to_string();
                format!(
                    "{a} {keyword} declared before use: \"{}\" is declared later, at {file}:{}",
                    name.text, at.start.line
                )
            }
            _ => format!(
                "{a} {keyword} declared earlier with `{keyword} {} ...`",
                name.text
            ),
        };
        self.error(
            name.span,
            format!("no {what} named \"{}\"", name.text),
            expected,
        );
        None
    }

    /// Records a new name; false (with an error) when it is taken.
    fn declare(&mut self, ns: Namespace, name: &Value, index: usize) -> bool {
        let key = (ns, name.text.clone());
        if self.names.contains_key(&key) {
            let keyword = ns.keyword();
            self.error(
                name.span,
                format!("{keyword} \"{}\" is already declared", name.text),
                format!("a name not used by another {keyword}"),
            );
            return false;
        }
        self.names.insert(key, index);
        true
    }

    /// A NUMBER token as a non-negative count.
    fn count(&mut self, n: &Number, what: &str) -> Option<u64> {
        match n.text.parse::<i64>() {
            Ok(v) if v >= 0 => u64::try_from(v).ok(),
            Ok(_) => {
                self.error(
                    n.span,
                    format!("invalid {what}: {} is negative", n.text),
                    "a number of 0 or more",
                );
                None
            }
            Err(_) => {
                self.error(
                    n.span,
                    format!("invalid {what}: {} is out of range", n.text),
                    "a number that fits in 64 bits",
                );
                None
            }
        }
    }

    /// Reports an option given twice; true the first time.
    fn once(
        &mut self,
        seen: &mut HashSet<&'static str>,
        option: &'static str,
        span: Span,
        scope: &str,
    ) -> bool {
        if seen.insert(option) {
            return true;
        }
        self.error(
            span,
            format!("{option} already specified for this {scope}"),
            format!("{option} at most once"),
        );
        false
    }
}

/// The name a statement declares, if any.
fn declaration(kind: &StatementKind) -> Option<(Namespace, &Value)> {
    use super::ast::MdaDirective;
    match kind {
        StatementKind::Table { name, .. } => Some((Namespace::Table, name)),
        StatementKind::Action(action) => Some((Namespace::Action, &action.name)),
        StatementKind::Filter { name, .. } => Some((Namespace::Filter, name)),
        StatementKind::Proc { name, .. } => Some((Namespace::Proc, name)),
        StatementKind::Mda(MdaDirective::Wrapper { name, .. }) => Some((Namespace::Wrapper, name)),
        StatementKind::Pki { name, .. } => Some((Namespace::Pki, name)),
        StatementKind::Ca { name, .. } => Some((Namespace::Ca, name)),
        _ => None,
    }
}

/// The configuration before the first statement: built-in tables and
/// defaults.
fn initial_config() -> Config {
    let builtin = |name: &str, backend| Table {
        name: name.to_owned(),
        backend,
    };
    Config {
        tables: vec![
            builtin(
                "<localhost>",
                TableBackend::Builtin(BuiltinTable::Localhost),
            ),
            builtin("<anyhost>", TableBackend::Builtin(BuiltinTable::Anyhost)),
            builtin(
                "<localnames>",
                TableBackend::Builtin(BuiltinTable::Localnames),
            ),
            builtin(
                "<anydestination>",
                TableBackend::Builtin(BuiltinTable::Anydestination),
            ),
            builtin("<getpwnam>", TableBackend::Getpwnam),
        ],
        pkis: Vec::new(),
        cas: Vec::new(),
        socket: SocketListener::default(),
        listeners: Vec::new(),
        actions: Vec::new(),
        rules: Vec::new(),
        procs: Vec::new(),
        filters: Vec::new(),
        mda_wrappers: Vec::new(),
        queue: QueueOptions::default(),
        bounce: BounceOptions::default(),
        smtp: SmtpOptions::default(),
        mta: MtaOptions::default(),
        mda: MdaLimits::default(),
        scheduler: SchedulerLimits::default(),
        srs: SrsOptions::default(),
        admd: None,
    }
}
