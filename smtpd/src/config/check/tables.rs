//! `table` declarations (smtpd-conf.md section 3): inline tables,
//! `file:` tables (loaded now, so that a missing or malformed file is an
//! error at once), OpenSMTPD's `BACKEND:/config` programs, `db:`,
//! `getpwnam`, and `proc-exec` commands.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use smtpd_sdk::tablefile::{ErrorKind, Form, TableFile};

use super::{Checker, EntryAt, Namespace};
use crate::config::ast::{ProcExec, ProcOpt, TableExpr, TableSource, Value};
use crate::config::error::describe_io;
use crate::config::model::{ProcCommand, StaticContent, Table, TableBackend};
use crate::config::parse::relative_to;
use crate::config::source::{Pos, Span};

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
                    expected_in_table_file(&e.kind),
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
        let mut seen = HashSet::new();
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
}

/// The content of an inline table operand (keys lower-cased; a key given
/// twice keeps its first place and takes the later value) and the
/// positions of its entries.
pub(super) fn inline_content(expr: &TableExpr) -> (StaticContent, Vec<EntryAt>) {
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

/// What a table(5) file line should have been, for the error's hint.
fn expected_in_table_file(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotUtf8 => "UTF-8 text",
        ErrorKind::ControlChar => "lines without carriage returns or NUL bytes",
        ErrorKind::UnclosedBracket => "a bracketed key closed by `]`, e.g. [2001:db8::1]",
        ErrorKind::EmptyValue { .. } => {
            "KEY VALUE on every line, since the first line made the file a mapping"
        }
        _ => "a valid table(5) file",
    }
}
