//! Pure parsing and formatting of protocol lines.
//!
//! Every line type has `parse(&[u8]) -> Result<Self, ParseError>` taking one
//! line *without* its terminating `\n`, and `format(&self, &mut BytesMut)`
//! appending the line *with* its `\n`. Parsing is strict: trailing fields,
//! missing fields, bad ids and control characters are errors that name what
//! was expected and quote the line; no input makes a parser panic.
//! Formatting refuses values that would forge a line: a `\n` or `\r` in any
//! field, a `|` in any field but the last.

mod error;
pub mod filter;
mod handshake;
mod ids;
mod keyword;
mod line;
pub mod queue;
pub mod table;

pub use error::{FormatError, ParseError, Problem, ReplyTo};
pub use handshake::ConfigLine;
pub use ids::{EvpId, MsgId, QueueId, SessionId, TableId, Timestamp, Token};

/// The longest line (without its `\n`) the codec accepts by default: 1 MiB.
pub const MAX_LINE: usize = 1 << 20;

/// A line type of one of the protocol families.
pub trait Line: Sized {
    /// Parses one line, given without its terminating `\n`.
    fn parse(line: &[u8]) -> Result<Self, ParseError>;

    /// Appends the line, terminated by `\n`, to `out`. On error nothing is
    /// appended.
    fn format(&self, out: &mut bytes::BytesMut) -> Result<(), FormatError>;

    /// Formats the line into a fresh buffer (with its `\n`).
    fn to_line(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = bytes::BytesMut::new();
        self.format(&mut out)?;
        Ok(out.to_vec())
    }
}
