//! Tables: declarations, operands, and whether a table may be used where it
//! is (OpenSMTPD's `table_check_use`).
//!
//! A use names the lookups it makes ([`Usage`]): the table types it accepts
//! (static lists, static mappings; backend tables always pass) and the
//! services it asks for. For static tables, whose content is known now, the
//! entries are also checked against what the service expects (addresses
//! for netaddr, relay URLs for relayhost, aliases(5) values for alias, ...),
//! and a bad entry is reported at its own line, in the configuration or in
//! the table file.

use std::path::{Path, PathBuf};

use smtpd_sdk::proto::table::Service;
use smtpd_sdk::tablefile::{Form, TableFile};

use super::{Checker, EntryAt, Namespace};
use crate::config::ast::{
    ProcExec, ProcOpt, TableExpr, TableMatch as AstTableMatch, TableSource, Tables, Value,
};
use crate::config::error::describe_io;
use crate::config::model::{
    ProcCommand, RelayUrl, StaticContent, Table, TableBackend, TableId, TableKind, TableMatch,
};
use crate::config::parse::relative_to;
use crate::config::source::{Pos, Span};
use crate::config::values;

/// Which table types a use accepts (backend tables always pass).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kinds {
    List,
    Mapping,
    Both,
}

/// How the entries of a static table are checked for a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validate {
    /// Keys are addresses or networks.
    Netaddr,
    /// Keys are source addresses.
    Source,
    /// Relay URLs: keys of a list, values of a mapping.
    Relayhost,
    /// Values are aliases(5) expansions.
    Alias,
    /// Values are `uid:gid:home`.
    Userinfo,
    /// Values are `user:password` or passwords.
    Credentials,
}

/// What a use of a table asks of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    /// The lookups, as in "may not be used for ... lookups".
    pub(crate) what: &'static str,
    pub(crate) kinds: Kinds,
    /// The use passes when the backend serves any of these; empty means no
    /// check at all (built-in filters, as in OpenSMTPD).
    pub(crate) services: &'static [Service],
    pub(crate) validate: Option<Validate>,
}

const fn usage(
    what: &'static str,
    kinds: Kinds,
    services: &'static [Service],
    validate: Option<Validate>,
) -> Usage {
    Usage {
        what,
        kinds,
        services,
        validate,
    }
}

pub(crate) const LISTEN_AUTH: Usage = usage(
    "auth",
    Kinds::Mapping,
    &[Service::Credentials],
    Some(Validate::Credentials),
);
pub(crate) const HOSTNAMES: Usage = usage("hostnames", Kinds::Mapping, &[Service::Addrname], None);
pub(crate) const SENDERS: Usage = usage("senders", Kinds::Mapping, &[Service::Mailaddrmap], None);
pub(crate) const ALIAS: Usage = usage(
    "alias",
    Kinds::Mapping,
    &[Service::Alias],
    Some(Validate::Alias),
);
pub(crate) const VIRTUAL: Usage = usage(
    "virtual",
    Kinds::Mapping,
    &[Service::Alias],
    Some(Validate::Alias),
);
pub(crate) const USERBASE: Usage = usage(
    "userbase",
    Kinds::Mapping,
    &[Service::Userinfo],
    Some(Validate::Userinfo),
);
pub(crate) const RELAY_HOST: Usage = usage(
    "relay host",
    Kinds::List,
    &[Service::Relayhost],
    Some(Validate::Relayhost),
);
pub(crate) const RELAY_DOMAIN: Usage = usage(
    "relay domain",
    Kinds::Mapping,
    &[Service::Relayhost],
    Some(Validate::Relayhost),
);
pub(crate) const RELAY_AUTH: Usage = usage(
    "relay auth",
    Kinds::Mapping,
    &[Service::Credentials],
    Some(Validate::Credentials),
);
pub(crate) const HELO_SRC: Usage = usage("helo-src", Kinds::Mapping, &[Service::Addrname], None);
pub(crate) const RELAY_SRC: Usage = usage(
    "relay src",
    Kinds::Both,
    &[Service::Source],
    Some(Validate::Source),
);
pub(crate) const FROM_SRC: Usage = usage(
    "from src",
    Kinds::List,
    &[Service::Netaddr],
    Some(Validate::Netaddr),
);
pub(crate) const FROM_RDNS: Usage = usage("from rdns", Kinds::List, &[Service::Domain], None);
pub(crate) const FROM_AUTH: Usage = usage(
    "from auth",
    Kinds::List,
    &[Service::String, Service::Credentials],
    None,
);
pub(crate) const FOR_DOMAIN: Usage = usage("for domain", Kinds::List, &[Service::Domain], None);
pub(crate) const TAG: Usage = usage("tag", Kinds::List, &[Service::String], None);
pub(crate) const HELO: Usage = usage("helo", Kinds::List, &[Service::Domain], None);
pub(crate) const AUTH: Usage = usage(
    "auth",
    Kinds::Both,
    &[Service::String, Service::Credentials],
    None,
);
pub(crate) const MAIL_FROM: Usage = usage("mail-from", Kinds::Both, &[Service::Mailaddr], None);
pub(crate) const RCPT_TO: Usage = usage("rcpt-to", Kinds::Both, &[Service::Mailaddr], None);
pub(crate) const REGEX: Usage = usage("regex", Kinds::List, &[Service::Regex], None);
pub(crate) const FILTER: Usage = usage("filter", Kinds::Both, &[], None);

impl Checker<'_> {
    /// `table NAME ...`.
    pub(super) fn declare_table(&mut self, name: &Value, source: &TableSource) {
        let index = self.config.tables.len();
        if self
            .names
            .contains_key(&(Namespace::Table, name.text.clone()))
        {
            self.declare(Namespace::Table, name, index);
            return;
        }
        let backend = match source {
            TableSource::Inline(tables) => {
                let (content, entries) = inline_content(&tables.expr);
                self.entries.insert(index, entries);
                Some(TableBackend::Inline(content))
            }
            TableSource::ProcExec(exec) => self.proc_command(exec).map(TableBackend::ProcExec),
            TableSource::Backend(spec) => self.table_backend(name, spec),
        };
        match backend {
            Some(backend) => {
                self.declare(Namespace::Table, name, index);
                self.config.tables.push(Table {
                    name: name.text.clone(),
                    backend,
                });
            }
            // The error is given; uses of the name are not reported again.
            None => {
                self.failed.insert((Namespace::Table, name.text.clone()));
            }
        }
    }

    /// The backend of `table NAME STRING` (smtpd-conf.md section 3.1).
    fn table_backend(&mut self, name: &Value, spec: &Value) -> Option<TableBackend> {
        let text = spec.text.as_str();
        let (backend, config) = if text.starts_with('/') {
            ("file", Some(text))
        } else {
            match text.split_once(':') {
                Some((backend, config)) => (backend, Some(config)),
                None => (text, None),
            }
        };
        match (backend, config) {
            ("file" | "static", Some(path)) if !path.is_empty() => {
                let path = relative_to(self.sources, spec.span.start.file, Path::new(path));
                self.file_table(spec, path)
            }
            ("getpwnam", _) => Some(TableBackend::Getpwnam),
            (_, Some(config)) if !config.starts_with('/') => {
                self.error(
                    spec.span,
                    format!("invalid backend parameter for table: {}", name.text),
                    "BACKEND:/absolute/path (a file: path may also be relative to this file)",
                );
                None
            }
            ("file" | "static", None) => {
                self.error(
                    spec.span,
                    format!("invalid backend parameter for table: {}", name.text),
                    "file:/path/to/table",
                );
                None
            }
            ("db", Some(path)) => {
                self.readable(spec.span, Path::new(path), "table file");
                Some(TableBackend::Db { path: path.into() })
            }
            (backend, config) => self.program_table(spec, backend, config),
        }
    }

    /// OpenSMTPD's external tables: `table-BACKEND` in the backends
    /// directory.
    fn program_table(
        &mut self,
        spec: &Value,
        backend: &str,
        config: Option<&str>,
    ) -> Option<TableBackend> {
        let program = self.opts.backends_dir.join(format!("table-{backend}"));
        let valid_name = !backend.is_empty() && !backend.contains('/');
        if !valid_name || !program.exists() {
            self.error(
                spec.span,
                format!("table backend \"{backend}\" does not exist"),
                format!(
                    "a builtin backend (file:/path, db:/path, getpwnam), proc-exec \"COMMAND\", \
                     or a backend program {}",
                    program.display()
                ),
            );
            return None;
        }
        Some(TableBackend::Program {
            backend: backend.to_owned(),
            program,
            argument: config.map(str::to_owned),
        })
    }

    /// Loads a `file:` table now: it must be readable and well formed.
    fn file_table(&mut self, spec: &Value, path: PathBuf) -> Option<TableBackend> {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.error(
                    spec.span,
                    format!(
                        "cannot read table file {}: {}",
                        path.display(),
                        describe_io(&e)
                    ),
                    "a readable table(5) file",
                );
                return None;
            }
        };
        let file = self
            .sources
            .add(path.clone(), String::from_utf8_lossy(&bytes).into_owned());
        let parsed = match TableFile::parse(&bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                let at = Pos {
                    file,
                    line: u32::try_from(e.line).unwrap_or(u32::MAX),
                    col: 1,
                };
                self.error(
                    Span::at(at),
                    format!("invalid table file: {}", e.kind),
                    "KEY VALUE lines (a mapping) or KEY lines (a list), not both",
                );
                return None;
            }
        };
        let mut entries = Vec::new();
        let content = match parsed.form() {
            Form::List => {
                StaticContent::List(parsed.entries().iter().map(|e| e.key.clone()).collect())
            }
            Form::Mapping => StaticContent::Mapping(
                parsed
                    .entries()
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                    .collect(),
            ),
        };
        for entry in parsed.entries() {
            let line = u32::try_from(entry.line).unwrap_or(u32::MAX);
            let text = self.sources.line(file, line);
            let col = |needle: &str| {
                let at = text.find(needle).unwrap_or(0);
                u32::try_from(text[..at].chars().count()).unwrap_or(0) + 1
            };
            let key_col = text.len() - text.trim_start().len();
            let key_col = u32::try_from(text[..key_col].chars().count()).unwrap_or(0) + 1;
            let value_col = entry.value.as_deref().map_or(key_col, col);
            let span = |col: u32, len: usize| Span {
                start: Pos { file, line, col },
                end: Pos {
                    file,
                    line,
                    col: col + u32::try_from(len.max(1)).unwrap_or(1),
                },
            };
            entries.push(EntryAt {
                key: span(key_col, entry.key.chars().count()),
                value: span(
                    value_col,
                    entry.value.as_deref().map_or(1, |v| v.chars().count()),
                ),
            });
        }
        self.entries.insert(self.config.tables.len(), entries);
        Some(TableBackend::File { path, content })
    }

    /// Reports a file that cannot be opened.
    pub(super) fn readable(&mut self, span: Span, path: &Path, what: &str) -> bool {
        match std::fs::File::open(path) {
            Ok(_) => true,
            Err(e) => {
                self.error(
                    span,
                    format!("cannot read {what} {}: {}", path.display(), describe_io(&e)),
                    "a readable file",
                );
                false
            }
        }
    }

    /// A `proc-exec "CMD" [user U] [group G] [chroot DIR]` command.
    pub(super) fn proc_command(&mut self, exec: &ProcExec) -> Option<ProcCommand> {
        let mut command = ProcCommand {
            command: exec.command.text.clone(),
            user: None,
            group: None,
            chroot: None,
        };
        let mut ok = true;
        if exec.command.text.trim().is_empty() {
            self.error(
                exec.command.span,
                "empty command",
                "a command line, such as \"filter-rspamd\"",
            );
            ok = false;
        }
        let mut seen = std::collections::HashSet::new();
        for opt in &exec.opts {
            let (name, value) = match &opt.node {
                ProcOpt::User(v) => ("user", v),
                ProcOpt::Group(v) => ("group", v),
                ProcOpt::Chroot(v) => ("chroot", v),
            };
            ok &= self.once(&mut seen, name, opt.span, "process");
            match &opt.node {
                ProcOpt::User(_) => command.user = Some(value.text.clone()),
                ProcOpt::Group(_) => command.group = Some(value.text.clone()),
                ProcOpt::Chroot(_) => command.chroot = Some(value.text.clone().into()),
            }
        }
        ok.then_some(command)
    }

    /// A table operand used for `usage`: resolved (or created when
    /// inline) and checked.
    pub(super) fn table(&mut self, tables: &Tables, usage: &Usage) -> Option<TableId> {
        let index = match &tables.expr {
            TableExpr::Named(name) => self.lookup(Namespace::Table, name, "table")?,
            expr => {
                let (content, entries) = inline_content(expr);
                let index = self.config.tables.len();
                self.entries.insert(index, entries);
                self.config.tables.push(Table {
                    name: format!("<dynamic:{}>", self.dynamic_tables),
                    backend: TableBackend::Inline(content),
                });
                self.dynamic_tables += 1;
                index
            }
        };
        self.check_use(index, tables, usage);
        Some(TableId::from_index(index))
    }

    /// A `[regex] <t>` operand: regex tables are checked for the regex
    /// service instead of `usage`.
    pub(super) fn table_match(
        &mut self,
        operand: &AstTableMatch,
        usage: &Usage,
    ) -> Option<TableMatch> {
        let usage = if operand.regex && !usage.services.is_empty() {
            Usage {
                what: usage.what,
                ..REGEX
            }
        } else {
            *usage
        };
        let table = self.table(&operand.tables, &usage)?;
        Some(TableMatch {
            table,
            regex: operand.regex,
        })
    }

    fn check_use(&mut self, index: usize, tables: &Tables, usage: &Usage) {
        if usage.services.is_empty() {
            return;
        }
        let table = &self.config.tables[index];
        let label = match &tables.expr {
            TableExpr::Named(_) => format!("table \"{}\"", table.name),
            _ => "this inline table".to_owned(),
        };
        let kind = table.kind();
        let kind_ok = matches!(
            (kind, usage.kinds),
            (TableKind::Dynamic, _)
                | (TableKind::List, Kinds::List | Kinds::Both)
                | (TableKind::Mapping, Kinds::Mapping | Kinds::Both)
        );
        if !kind_ok {
            let expected = match usage.kinds {
                Kinds::List => {
                    "a list (`{ a, b }` or a file of one value per line) or a backend table"
                }
                Kinds::Mapping => {
                    "a mapping (`{ key = value }` or a file of KEY VALUE lines) or a backend table"
                }
                Kinds::Both => "a list or a mapping",
            };
            self.error(
                tables.span,
                format!(
                    "{label} may not be used for {} lookups: it is {kind}",
                    usage.what
                ),
                expected,
            );
            return;
        }
        if !usage.services.iter().any(|s| table.serves(*s)) {
            let names: Vec<&str> = usage.services.iter().map(|s| s.name()).collect();
            self.error(
                tables.span,
                format!(
                    "{label} may not be used for {} lookups: its backend does not serve {}",
                    usage.what,
                    names.join(" or ")
                ),
                format!("a table whose backend serves {}", names.join(" or ")),
            );
            return;
        }
        if let Some(validate) = usage.validate {
            self.validate(index, validate);
        }
    }

    /// Checks the entries of a static table for a service, once.
    fn validate(&mut self, index: usize, validate: Validate) {
        let name = match validate {
            Validate::Netaddr => "netaddr",
            Validate::Source => "source",
            Validate::Relayhost => "relayhost",
            Validate::Alias => "alias",
            Validate::Userinfo => "userinfo",
            Validate::Credentials => "credentials",
        };
        if !self.validated.insert((index, name)) {
            return;
        }
        let content = match &self.config.tables[index].backend {
            TableBackend::Inline(c) | TableBackend::File { content: c, .. } => c.clone(),
            _ => return,
        };
        let Some(entries) = self.entries.get(&index).cloned() else {
            return;
        };
        let items: Vec<(&str, Option<&str>)> = match &content {
            StaticContent::List(keys) => keys.iter().map(|k| (k.as_str(), None)).collect(),
            StaticContent::Mapping(pairs) => pairs
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect(),
        };
        for ((key, value), at) in items.into_iter().zip(entries) {
            let (text, span) = match (validate, value) {
                (Validate::Netaddr | Validate::Source, _) | (Validate::Relayhost, None) => {
                    (key, at.key)
                }
                (_, Some(value)) => (value, at.value),
                (_, None) => continue,
            };
            if let Err((message, expected)) = check_entry(validate, text) {
                self.error(span, message, expected);
            }
        }
    }
}

/// Checks one entry for a service: the error message and what was expected.
fn check_entry(validate: Validate, text: &str) -> Result<(), (String, &'static str)> {
    match validate {
        Validate::Netaddr => (text == "local" || values::is_netaddr(text)).then_some(()).ok_or_else(|| {
            (
                format!("invalid address or network \"{text}\""),
                "an address or a CIDR network, such as 192.0.2.0/24 or [2001:db8::]/32",
            )
        }),
        Validate::Source => values::is_source_address(text).then_some(()).ok_or_else(|| {
            (
                format!("invalid source address \"{text}\""),
                "an IPv4 or IPv6 address",
            )
        }),
        Validate::Relayhost => RelayUrl::parse(text).map(|_| ()).map_err(|why| {
            (
                format!("invalid relay URL \"{text}\": {why}"),
                "[SCHEME://][LABEL@]HOST[:PORT], SCHEME one of smtp, smtp+tls, smtp+notls, lmtp, smtps",
            )
        }),
        Validate::Alias => values::check_alias(text).map_err(|why| (why, values::ALIAS_FORMAT)),
        Validate::Userinfo => values::check_userinfo(text).map_err(|why| (why, "UID:GID:HOMEDIR")),
        Validate::Credentials => {
            values::check_credentials(text).map_err(|why| (why, "USER:PASSWORD-HASH or PASSWORD-HASH"))
        }
    }
}

/// The content of an inline table operand (keys lower-cased; a key given
/// twice keeps its first place and takes the later value) and the
/// positions of its entries.
fn inline_content(expr: &TableExpr) -> (StaticContent, Vec<EntryAt>) {
    match expr {
        TableExpr::Named(_) => (StaticContent::List(Vec::new()), Vec::new()),
        TableExpr::Single(v) => (
            StaticContent::List(vec![v.text.to_lowercase()]),
            vec![EntryAt {
                key: v.span,
                value: v.span,
            }],
        ),
        TableExpr::List(values) => {
            let mut keys: Vec<String> = Vec::new();
            let mut entries = Vec::new();
            for v in values {
                let key = v.text.to_lowercase();
                if !keys.contains(&key) {
                    keys.push(key);
                    entries.push(EntryAt {
                        key: v.span,
                        value: v.span,
                    });
                }
            }
            (StaticContent::List(keys), entries)
        }
        TableExpr::Map(pairs) => {
            let mut out: Vec<(String, String)> = Vec::new();
            let mut entries: Vec<EntryAt> = Vec::new();
            for (k, v) in pairs {
                let key = k.text.to_lowercase();
                let at = EntryAt {
                    key: k.span,
                    value: v.span,
                };
                match out.iter().position(|(existing, _)| *existing == key) {
                    Some(i) => {
                        out[i].1 = v.text.clone();
                        entries[i] = at;
                    }
                    None => {
                        out.push((key, v.text.clone()));
                        entries.push(at);
                    }
                }
            }
            (StaticContent::Mapping(out), entries)
        }
    }
}
