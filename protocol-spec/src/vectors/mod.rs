//! The test-vector files of `protocol-spec/vectors/`, read into cases.
//!
//! The format is specified in `vectors/README.md`; this module implements
//! exactly that. [`load_dir`] reads every `table/*.txt`, `filter/*.txt` and
//! `queue/*.txt` file into [`VectorFile`]s; each holds [`Case`]s made of
//! [`Step`]s: exchanges (lines the daemon sends, then the answers a correct
//! backend gives) and codec-only lines that every parser must refuse.
//! Malformed files are refused with a [`VectorError`] naming `file:line`.
//!
//! Answers are matched by [`Pattern`] (placeholders `{*}` and `{NAME}`, with
//! the captured values kept in [`Captures`]) and associated with the
//! expected lines by the family's rule in [`match_answers`]. The runner, the
//! codec tests and anyone replaying the vectors use this module; it calls
//! nothing but the standard library.

mod answers;
mod parse;
mod pattern;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use answers::{answer_key, match_answers, Mismatch};
pub use parse::{load_dir, load_file, parse_file};
pub use pattern::{Captures, Field, Pattern};

/// The directory holding the vectors of this source tree:
/// `protocol-spec/vectors`, found from the crate's manifest directory.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// A protocol family; its vectors live in the directory of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Tables, protocol 0.1.
    Table,
    /// Filters, protocol 0.7.
    Filter,
    /// Queue backends, protocol 0.1.
    Queue,
}

impl Family {
    /// Every family, in directory order.
    pub const ALL: [Self; 3] = [Self::Table, Self::Filter, Self::Queue];

    /// The family's name, which is also its vector directory.
    pub fn name(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Filter => "filter",
            Self::Queue => "queue",
        }
    }

    /// The family called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The protocol version the daemon announces for this family.
    pub fn version(self) -> &'static str {
        match self {
            Self::Table => smtpd_sdk::proto::table::VERSION,
            Self::Filter => smtpd_sdk::proto::filter::VERSION,
            Self::Queue => smtpd_sdk::proto::queue::VERSION,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One vector file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The family, from the directory the file is in.
    pub family: Family,
    /// Its cases, in file order.
    pub cases: Vec<Case>,
}

impl VectorFile {
    /// `family/file.txt`: how reports name the file.
    pub fn display_name(&self) -> String {
        let file = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{}/{}", self.family, file)
    }
}

/// A case: `=== NAME` and the lines up to the next `===`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The name, unique within its file.
    pub name: String,
    /// The line of the `===` directive.
    pub line: usize,
    /// The fixture the answers assume (`fixture: NAME`), if any.
    pub fixture: Option<String>,
    /// Free text for reports (`note: TEXT`), if any.
    pub note: Option<String>,
    /// Exchanges and codec-only lines, in file order.
    pub steps: Vec<Step>,
}

impl Case {
    /// The case's exchanges, in order.
    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.steps.iter().filter_map(|s| match s {
            Step::Exchange(e) => Some(e),
            Step::Refused(_) => None,
        })
    }

    /// True when a runner has nothing to replay: the case holds only
    /// codec-only lines, or it shows a handshake (`config|` lines), which a
    /// runner performs itself.
    pub fn is_codec_only(&self) -> bool {
        let mut exchanges = self.exchanges().peekable();
        exchanges.peek().is_none()
            || self.exchanges().any(|e| {
                e.sent.iter().any(|s| s.text.starts_with(b"config|"))
                    || e.expected
                        .iter()
                        .any(|x| x.pattern.text().starts_with(b"register|"))
            })
    }
}

/// One step of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Lines sent without waiting, then the answers to them.
    Exchange(Exchange),
    /// A malformed line (`!>` or `!<`) that every parser must refuse.
    Refused(Refused),
}

/// A run of `>`/`~>` lines and the run of `<` lines that follows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exchange {
    /// What the daemon sends, in order.
    pub sent: Vec<Sent>,
    /// What a correct backend answers, matched by the family's rule (not by
    /// position).
    pub expected: Vec<Expected>,
}

/// A `>` or `~>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its line number in the file.
    pub line: usize,
    /// The line as written, without the prefix and without `\n`.
    pub text: Vec<u8>,
    /// True for `~>`: a request naming something the codec does not know.
    pub unknown: bool,
    /// The captured names it refers to (`{NAME}` fields), in order.
    pub refs: Vec<String>,
}

impl Sent {
    /// True when the line holds `{NAME}` fields to substitute.
    pub fn has_placeholders(&self) -> bool {
        !self.refs.is_empty()
    }

    /// The line to send, with every `{NAME}` field replaced by its captured
    /// text. Fails with the name of a value that was not captured.
    pub fn substitute(&self, captures: &Captures) -> Result<Vec<u8>, String> {
        if self.refs.is_empty() {
            return Ok(self.text.clone());
        }
        let mut out = Vec::with_capacity(self.text.len());
        for (i, field) in self.text.split(|&b| b == b'|').enumerate() {
            if i > 0 {
                out.push(b'|');
            }
            match pattern::placeholder_name(field) {
                Some(name) if self.refs.iter().any(|r| r == name) => {
                    let value = captures.get(name).ok_or_else(|| name.to_owned())?;
                    out.extend_from_slice(value);
                }
                _ => out.extend_from_slice(field),
            }
        }
        Ok(out)
    }
}

/// A `<` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Its line number in the file.
    pub line: usize,
    /// The answer, with its placeholders.
    pub pattern: Pattern,
}

/// A `!>` or `!<` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its line number in the file.
    pub line: usize,
    /// Which side would have written it.
    pub direction: Direction,
    /// The line, without the prefix and without `\n`.
    pub text: Vec<u8>,
}

/// Who writes a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The daemon, to the backend's stdin.
    ToBackend,
    /// The backend, on its stdout.
    FromBackend,
}

/// A malformed vector file, or one that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct VectorError {
    /// The file.
    pub path: PathBuf,
    /// The offending line (0 when the file itself is the problem).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}
