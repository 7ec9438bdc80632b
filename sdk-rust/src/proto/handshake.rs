//! `config|...` lines: what the daemon says before `config|ready`. Shared by
//! the three families; the `register|...` answers are family-specific.

use bytes::BytesMut;

use super::line::{Cursor, Writer};
use super::{FormatError, Line, ParseError, Problem};

/// One handshake line from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLine {
    /// `config|KEY|VALUE`. Backends ignore keys they do not know.
    Entry {
        /// The key, e.g. `protocol`.
        key: String,
        /// The value, possibly empty, possibly with `|`.
        value: String,
    },
    /// `config|ready`: the daemon now waits for the registrations.
    Ready,
}

impl ConfigLine {
    /// A `config|KEY|VALUE` line.
    pub fn entry(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Entry {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl Line for ConfigLine {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        c.expect(b"config", "line type", "config")?;
        let key = c.text("config key", "a key such as protocol or ready")?;
        if key.is_empty() {
            return Err(c.error(Problem::Invalid, "config key", "a non-empty key"));
        }
        if key == "ready" {
            c.finish("config|ready")?;
            return Ok(Self::Ready);
        }
        let value = c.last_text("config value", "config|KEY|VALUE")?;
        Ok(Self::entry(key, value))
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        let mut w = Writer::new(out);
        w.raw(b"config");
        match self {
            Self::Ready => {
                w.raw(b"ready");
            }
            Self::Entry { key, value } => {
                if key == "ready" || key.is_empty() {
                    return Err(FormatError {
                        field: "config key",
                        reason: "must be non-empty and not 'ready'",
                    });
                }
                w.field("config key", key.as_bytes())?
                    .last("config value", value.as_bytes())?;
            }
        }
        w.end();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_round_trip() {
        for line in [
            &b"config|protocol|0.1"[..],
            b"config|ready",
            b"config|admd|mx|example",
            b"config|empty|",
        ] {
            let parsed = ConfigLine::parse(line).unwrap();
            let mut out = parsed.to_line().unwrap();
            assert_eq!(out.pop(), Some(b'\n'));
            assert_eq!(out, line);
        }
    }

    #[test]
    fn bad_config_lines() {
        for line in [
            &b"config"[..],
            b"config|ready|x",
            b"config|protocol",
            b"conf|a|b",
            b"config||x",
        ] {
            assert!(ConfigLine::parse(line).is_err(), "{line:?}");
        }
    }
}
