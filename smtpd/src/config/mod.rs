//! smtpd.conf: the OpenSMTPD 7.8 configuration language, read and checked.
//!
//! Loading goes through three stages, each in its own file:
//!
//! 1. `source.rs` cuts files into statements (line continuations, comments,
//!    quotes) and expands macros; `parse.rs` parses each statement with the
//!    pest grammar `smtpd.pest`, following `include`s, into the syntax tree
//!    of `ast.rs` (built by `tree.rs`), whose nodes carry spans.
//! 2. `check.rs` resolves names and applies every semantic check into the
//!    typed [`Config`] of `model.rs`.
//! 3. Problems from either stage are collected, never stopping at the
//!    first, and returned as one [`Error`] whose [`Diagnostic`]s print as
//!    `file:line:column: message`, the source line, a caret and what was
//!    expected (`error.rs`).
//!
//! The module is pure: it reads the files the configuration names
//! (includes, `file:` tables, certificates, to check them) and nothing
//! else; it opens no socket and starts nothing. Names that only the running
//! daemon can resolve (interfaces, host names, the server name) are kept as
//! written.
//!
//! Where this reader differs from OpenSMTPD 7.8's:
//!
//! - Extensions: `table NAME proc-exec "CMD"` and `queue proc-exec "CMD"`
//!   run backend programs; relative paths in `include` and `file:` tables
//!   are taken from the directory of the file that names them (OpenSMTPD
//!   refuses relative `file:` paths and reads relative includes from its
//!   working directory).
//! - A number is accepted where OpenSMTPD's grammar wants a string
//!   (`n = 25`, `{ 1, 2 }`), and `port "587"` is port 587.
//! - Stricter, since the daemon would fail later anyway: an unknown pki or
//!   ca named by a relay action, an invalid lmtp destination, and static
//!   table entries that the lookups made of them could not use (a bad
//!   network for `from src`, a bad relay URL for `host`, ...) are errors
//!   when loading.
//! - More than four `bounce warn-interval` delays, or delays out of order,
//!   give a warning rather than nothing.

mod ast;
mod check;
mod error;
mod model;
mod parse;
mod source;
mod tree;
mod values;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::{Diagnostic, Error, Location, Severity};
pub use model::*;

use error::Issue;
use source::{Macros, Sources};

/// Where OpenSMTPD's portable build looks for helper and backend programs
/// (`PATH_LIBEXEC`).
pub const DEFAULT_BACKENDS_DIR: &str = "/usr/local/libexec/smtpd";

/// How to load a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Macros from the command line (`-D NAME=VALUE`), which the file cannot
    /// redefine.
    pub macros: Vec<(String, String)>,
    /// Where `table-NAME` programs are found for `table T NAME:/config`.
    pub backends_dir: PathBuf,
    /// Warn about macros that are never used (`-v`).
    pub verbose: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            macros: Vec::new(),
            backends_dir: PathBuf::from(DEFAULT_BACKENDS_DIR),
            verbose: false,
        }
    }
}

/// A configuration that loaded, and the warnings it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The checked configuration.
    pub config: Config,
    /// Things that look wrong but are allowed.
    pub warnings: Vec<Diagnostic>,
}

/// Splits a `-D NAME=VALUE` argument at its first `=`.
pub fn parse_macro_definition(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "could not parse macro definition {arg:?}: expected NAME=VALUE"
        )),
    }
}

impl Config {
    /// Reads, parses and checks the configuration file at `path` and every
    /// file it names.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Loaded, Error> {
        let path = path.as_ref();
        let text = std::fs::read(path).map_err(|e| Error {
            diagnostics: vec![Diagnostic::unlocated(format!(
                "{}: cannot read the configuration: {}",
                path.display(),
                error::describe_io(&e)
            ))],
        })?;
        Self::parse_str(path, &String::from_utf8_lossy(&text), opts)
    }

    /// Parses and checks configuration text, named `name` in diagnostics
    /// (relative includes and tables are taken from its directory).
    pub fn parse_str(
        name: impl Into<PathBuf>,
        text: &str,
        opts: &LoadOptions,
    ) -> Result<Loaded, Error> {
        let mut sources = Sources::default();
        let main = sources.add(name.into(), text.to_owned());
        let mut macros = Macros::default();
        for (name, value) in &opts.macros {
            macros.define_persistent(name, value);
        }
        let mut reader = parse::Reader::new(&mut sources, macros);
        reader.read(main);
        let parse::Reader {
            macros,
            mut issues,
            statements,
            broken,
            ..
        } = reader;
        let checked = check::check(&statements, &mut sources, opts, main, &broken);
        issues.extend(checked.issues);
        let mut warnings = checked.warnings;
        let mut unlocated = Vec::new();
        if opts.verbose {
            for (name, at) in macros.unused() {
                let message = format!("macro '{name}' not used");
                match at {
                    Some(span) => warnings.push(Issue::new(span, message)),
                    None => unlocated.push(Diagnostic {
                        severity: Severity::Warning,
                        ..Diagnostic::unlocated(message)
                    }),
                }
            }
        }
        let resolve = |list: &mut Vec<Issue>, severity| {
            list.sort_by_key(|i| i.span.start);
            list.iter()
                .map(|i| i.resolve(&sources, severity))
                .collect::<Vec<_>>()
        };
        let errors = resolve(&mut issues, Severity::Error);
        unlocated.extend(resolve(&mut warnings, Severity::Warning));
        match checked.config {
            Some(config) if errors.is_empty() => Ok(Loaded {
                config,
                warnings: unlocated,
            }),
            _ => Err(Error {
                diagnostics: errors.into_iter().chain(unlocated).collect(),
            }),
        }
    }
}

impl std::str::FromStr for Config {
    type Err = Error;

    /// Parses configuration text with the default options, named
    /// `smtpd.conf` in diagnostics.
    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse_str("smtpd.conf", text, &LoadOptions::default()).map(|l| l.config)
    }
}
