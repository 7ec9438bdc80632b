//! Configuration errors: where they are and how they are shown.
//!
//! Parsing and checking produce [`Issue`]s, which point into the source
//! text with a [`Span`]. Once loading is over, each issue becomes a
//! self-contained [`Diagnostic`] holding the file name, line, column and the
//! offending source line, printed as
//!
//! ```text
//! smtpd.conf:3:31: syntax error: unexpected `prot`
//!   listen on 127.0.0.1 port 2525 prot 25
//!                                 ^~~~
//!   expected: a listener option (inet4, inet6, port, tls, ...) or the end of the line
//! ```
//!
//! [`Error`] holds every diagnostic of a failed load: loading never stops at
//! the first problem.

use std::fmt;
use std::path::PathBuf;

use super::source::{Sources, Span};

/// A problem found while loading, located in the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub(crate) span: Span,
    pub(crate) message: String,
    pub(crate) expected: Option<String>,
}

impl Issue {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
            expected: None,
        }
    }

    pub(crate) fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// The diagnostic this issue becomes, with its source line.
    pub(crate) fn resolve(&self, sources: &Sources, severity: Severity) -> Diagnostic {
        let file = sources.file(self.span.start.file);
        let start = self.span.start;
        let end = self.span.end;
        let width = if end.file == start.file && end.line == start.line && end.col > start.col {
            end.col - start.col
        } else {
            1
        };
        Diagnostic {
            severity,
            location: Some(Location {
                file: file.name.clone(),
                line: start.line,
                column: start.col,
                source_line: sources.line(start.file, start.line).to_owned(),
                width,
            }),
            message: self.message.clone(),
            expected: self.expected.clone(),
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration is refused.
    Error,
    /// The configuration loads; something looks wrong.
    Warning,
}

/// Where a diagnostic points: a file, a line, a column and the text of the
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as it was named (in the command line or in `include`).
    pub file: PathBuf,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1, counted in characters.
    pub column: u32,
    /// The text of that line.
    pub source_line: String,
    /// How many characters the caret underlines (at least 1).
    pub width: u32,
}

/// One problem of a configuration, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where it is; `None` for problems outside any file (a `-D` argument,
    /// a configuration file that cannot be read).
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// What would have been right, when that can be said.
    pub expected: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with no location in the text.
    pub(crate) fn unlocated(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            location: None,
            message: message.into(),
            expected: None,
        }
    }

    /// `file:line:column: message` (or the message alone when there is no
    /// location): the first line of the printed form.
    pub fn headline(&self) -> String {
        let warning = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        match &self.location {
            Some(at) => format!(
                "{}:{}:{}: {warning}{}",
                at.file.display(),
                at.line,
                at.column,
                self.message
            ),
            None => format!("{warning}{}", self.message),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(at) = &self.location {
            // Keep tabs in the caret line so that it lines up under the text.
            let pad: String = at
                .source_line
                .chars()
                .take(at.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let tilde = "~".repeat(at.width.saturating_sub(1) as usize);
            write!(f, "\n  {}\n  {pad}^{tilde}", at.source_line)?;
        }
        if let Some(expected) = &self.expected {
            write!(f, "\n  expected: {expected}")?;
        }
        Ok(())
    }
}

/// A configuration that cannot be loaded, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct Error {
    /// The problems, in the order of the text (errors and warnings).
    pub diagnostics: Vec<Diagnostic>,
}

impl Error {
    /// Only the errors (not the warnings).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    let plural = if errors == 1 { "" } else { "s" };
    out.push_str(&format!("{errors} error{plural} in the configuration"));
    out
}

/// The text of an I/O error without Rust's ` (os error N)` suffix.
pub(crate) fn describe_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}
