//! Parse and format errors shared by the three families.

use std::fmt;

/// What was wrong with a field or a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The line ended before this field.
    Missing,
    /// The field is present but not of the expected form.
    Invalid,
    /// The field names something this codec does not know.
    Unknown,
    /// More fields follow where the line should have ended.
    Trailing,
    /// The line holds a `\r` or `\n`.
    ControlChar,
    /// A text field is not valid UTF-8.
    NotUtf8,
    /// The line is longer than the limit.
    TooLong,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Unknown => "unknown",
            Self::Trailing => "unexpected data after",
            Self::ControlChar => "carriage return or newline in",
            Self::NotUtf8 => "non UTF-8 bytes in",
            Self::TooLong => "too long:",
        })
    }
}

/// Enough of a request that failed to parse to answer it with an `error`
/// result: the result type prefix (`lookup`, `message-create`, ...) and the
/// request id exactly as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The operation name; the answer's first field is `{op}-result`.
    pub op: String,
    /// The request id as sent.
    pub id: String,
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What went wrong.
    pub problem: Problem,
    /// The field concerned (`"request id"`, `"service"`, `"line"`...).
    pub field: &'static str,
    /// What the field or line should have looked like.
    pub expected: &'static str,
    /// The offending line, lossily decoded and cut to 200 bytes.
    pub line: String,
    /// Set when the line was a request whose id could be read, so that the
    /// receiver can still answer it with an error.
    pub reply_to: Option<ReplyTo>,
}

const QUOTED_LINE_MAX: usize = 200;

impl ParseError {
    pub(crate) fn new(
        problem: Problem,
        field: &'static str,
        expected: &'static str,
        line: &[u8],
    ) -> Self {
        let cut = line.len().min(QUOTED_LINE_MAX);
        let mut quoted = String::from_utf8_lossy(&line[..cut]).into_owned();
        if cut < line.len() {
            quoted.push_str("...");
        }
        Self {
            problem,
            field,
            expected,
            line: quoted,
            reply_to: None,
        }
    }

    pub(crate) fn with_reply_to(mut self, op: &[u8], id: &[u8]) -> Self {
        self.reply_to = Some(ReplyTo {
            op: String::from_utf8_lossy(op).into_owned(),
            id: String::from_utf8_lossy(id).into_owned(),
        });
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (expected {}) in line {:?}",
            self.problem, self.field, self.expected, self.line
        )
    }
}

impl std::error::Error for ParseError {}

/// A value that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot send {field}: {reason}")]
pub struct FormatError {
    /// The field concerned.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: &'static str,
}
