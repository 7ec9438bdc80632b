//! The lines of each family, sorted by direction, through the one codec.
//!
//! Every parse and format in the conformance kit goes through
//! `smtpd_sdk::proto`; this module only chooses the line type: what the
//! daemon sends (`config|...` handshake lines, then requests or filter
//! input) and what a backend writes (`register|...` lines, then answers).

use smtpd_sdk::proto::{filter, queue, table, ConfigLine, FormatError, Line, ParseError};

use crate::vectors::Family;

/// A line the daemon writes to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonLine {
    /// A handshake line.
    Config(ConfigLine),
    /// A request, or for filters a report or a filter request.
    Request(Request),
}

/// A request (or filter input) of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `table|0.1|...`.
    Table(table::Request),
    /// `report|0.7|...` or `filter|0.7|...`.
    Filter(filter::Input),
    /// `queue|0.1|...`.
    Queue(queue::Request),
}

/// A line a backend writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendLine {
    /// A handshake line.
    Register(Registration),
    /// An answer.
    Answer(Answer),
}

/// A `register|...` line of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A table's service or `ready`.
    Table(table::Register),
    /// A filter's phase, report event or `ready`.
    Filter(filter::Register),
    /// A queue capability or `ready`.
    Queue(queue::Register),
}

impl Registration {
    /// True for `register|ready`, the end of the handshake.
    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            Self::Table(table::Register::Ready)
                | Self::Filter(filter::Register::Ready)
                | Self::Queue(queue::Register::Ready)
        )
    }
}

/// An answer of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `OP-result|ID|...`.
    Table(table::Response),
    /// `filter-result|...` or `filter-dataline|...`.
    Filter(filter::Output),
    /// `OP-result|ID|...`.
    Queue(queue::Response),
}

/// Parses a request of `family` (not a handshake line).
pub fn parse_request(family: Family, line: &[u8]) -> Result<Request, ParseError> {
    Ok(match family {
        Family::Table => Request::Table(table::Request::parse(line)?),
        Family::Filter => Request::Filter(filter::Input::parse(line)?),
        Family::Queue => Request::Queue(queue::Request::parse(line)?),
    })
}

/// Parses a `register|...` line of `family`.
pub fn parse_registration(family: Family, line: &[u8]) -> Result<Registration, ParseError> {
    Ok(match family {
        Family::Table => Registration::Table(table::Register::parse(line)?),
        Family::Filter => Registration::Filter(filter::Register::parse(line)?),
        Family::Queue => Registration::Queue(queue::Register::parse(line)?),
    })
}

/// Parses an answer of `family` (not a handshake line).
pub fn parse_answer(family: Family, line: &[u8]) -> Result<Answer, ParseError> {
    Ok(match family {
        Family::Table => Answer::Table(table::Response::parse(line)?),
        Family::Filter => Answer::Filter(filter::Output::parse(line)?),
        Family::Queue => Answer::Queue(queue::Response::parse(line)?),
    })
}

/// Parses a line the daemon writes: `config|...` as a handshake line,
/// anything else as a request.
pub fn parse_daemon_line(family: Family, line: &[u8]) -> Result<DaemonLine, ParseError> {
    if line.starts_with(b"config|") {
        ConfigLine::parse(line).map(DaemonLine::Config)
    } else {
        parse_request(family, line).map(DaemonLine::Request)
    }
}

/// Parses a line a backend writes: `register|...` as a handshake line,
/// anything else as an answer.
pub fn parse_backend_line(family: Family, line: &[u8]) -> Result<BackendLine, ParseError> {
    if line.starts_with(b"register|") {
        parse_registration(family, line).map(BackendLine::Register)
    } else {
        parse_answer(family, line).map(BackendLine::Answer)
    }
}

/// True when every parser of that direction refuses `line`: the handshake
/// line type and the request (or answer) type alike.
pub fn refused_by_all(family: Family, to_backend: bool, line: &[u8]) -> bool {
    if to_backend {
        ConfigLine::parse(line).is_err() && parse_request(family, line).is_err()
    } else {
        parse_registration(family, line).is_err() && parse_answer(family, line).is_err()
    }
}

impl DaemonLine {
    /// The line formatted again, with its `\n`.
    pub fn to_line(&self) -> Result<Vec<u8>, FormatError> {
        match self {
            Self::Config(c) => c.to_line(),
            Self::Request(r) => r.to_line(),
        }
    }
}

impl Request {
    /// The line formatted again, with its `\n`.
    pub fn to_line(&self) -> Result<Vec<u8>, FormatError> {
        match self {
            Self::Table(r) => r.to_line(),
            Self::Filter(r) => r.to_line(),
            Self::Queue(r) => r.to_line(),
        }
    }
}

impl BackendLine {
    /// The line formatted again, with its `\n`.
    pub fn to_line(&self) -> Result<Vec<u8>, FormatError> {
        match self {
            Self::Register(Registration::Table(r)) => r.to_line(),
            Self::Register(Registration::Filter(r)) => r.to_line(),
            Self::Register(Registration::Queue(r)) => r.to_line(),
            Self::Answer(a) => a.to_line(),
        }
    }
}

impl Answer {
    /// The line formatted again, with its `\n`.
    pub fn to_line(&self) -> Result<Vec<u8>, FormatError> {
        match self {
            Self::Table(r) => r.to_line(),
            Self::Filter(r) => r.to_line(),
            Self::Queue(r) => r.to_line(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted_by_direction_and_family() {
        let config = parse_daemon_line(Family::Queue, b"config|protocol|0.1").unwrap();
        assert!(matches!(config, DaemonLine::Config(_)));
        let request = parse_daemon_line(
            Family::Queue,
            b"queue|0.1|1731000001.000412|message-create|0000000000000001",
        )
        .unwrap();
        assert!(matches!(request, DaemonLine::Request(Request::Queue(_))));
        assert!(parse_daemon_line(Family::Table, b"queue|0.1|1.000000|x|1").is_err());
        let ready = parse_backend_line(Family::Filter, b"register|ready").unwrap();
        assert!(matches!(ready, BackendLine::Register(ref r) if r.is_ready()));
        let answer = parse_backend_line(Family::Table, b"check-result|00000001|found").unwrap();
        assert_eq!(answer.to_line().unwrap(), b"check-result|00000001|found\n");
    }

    #[test]
    fn refusal_needs_every_parser_of_the_direction() {
        assert!(refused_by_all(
            Family::Table,
            false,
            b"lookup-result|5E3A91C0|not-found"
        ));
        assert!(!refused_by_all(Family::Table, false, b"register|alias"));
        assert!(!refused_by_all(Family::Table, true, b"config|ready"));
        assert!(refused_by_all(Family::Table, true, b"config|ready|x"));
    }
}
