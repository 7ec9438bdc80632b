//! The replies of a next hop (RFC 5321 section 4.2), parsed: a code, an
//! optional enhanced status code (RFC 3463) and the text of every line.
//!
//! [`ReplyParser`] takes reply lines one at a time (CRLF already cut) and
//! yields a [`PeerReply`] at the last line of a reply (`250 ...` after any
//! number of `250-...`). It is pure: the session's wire feeds it. A line
//! that is not `DDD`, `DDD text` or `DDD-text`, or a continuation whose
//! code differs from the first line's, is a [`BadReply`]; so is a reply
//! longer than [`MAX_REPLY_LINES`] lines (a peer cannot make us hold an
//! unbounded EHLO answer).

use std::fmt;

use crate::smtp::Enhanced;

/// The most lines one reply may have.
pub const MAX_REPLY_LINES: usize = 512;

/// One complete reply of the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReply {
    code: u16,
    status: Option<Enhanced>,
    lines: Vec<String>,
}

impl PeerReply {
    /// A reply from its parts (tests, and failures made up locally).
    pub fn new(code: u16, status: Option<Enhanced>, lines: Vec<String>) -> Self {
        Self {
            code,
            status,
            lines,
        }
    }

    /// The three-digit code.
    pub const fn code(&self) -> u16 {
        self.code
    }

    /// The first digit of the code (2, 3, 4 or 5 from a sane peer).
    pub const fn class(&self) -> u16 {
        self.code / 100
    }

    /// The enhanced status code of the first line, when it has one.
    pub const fn status(&self) -> Option<Enhanced> {
        self.status
    }

    /// The text of each line, without the code (and without the enhanced
    /// status code of the first line).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Whether the code is 2xx.
    pub const fn is_success(&self) -> bool {
        self.class() == 2
    }

    /// Whether the code is 4xx (try again later).
    pub const fn is_temporary(&self) -> bool {
        self.class() == 4
    }

    /// The reply on one line, as logs and envelope error lines show it:
    /// `CODE STATUS TEXT`, the lines joined by spaces.
    pub fn one_line(&self) -> String {
        let mut out = self.code.to_string();
        if let Some(status) = self.status {
            out.push(' ');
            out.push_str(&status.to_string());
        }
        for line in &self.lines {
            if !line.is_empty() {
                out.push(' ');
                out.push_str(line);
            }
        }
        out
    }
}

impl fmt::Display for PeerReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// A reply line that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad reply line {line:?}: {why}")]
pub struct BadReply {
    /// The offending line (lossy UTF-8, cut to 200 bytes).
    pub line: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl BadReply {
    fn new(line: &[u8], why: &'static str) -> Self {
        let cut = &line[..line.len().min(200)];
        Self {
            line: String::from_utf8_lossy(cut).into_owned(),
            why,
        }
    }
}

/// Assembles reply lines into replies.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    status: Option<Enhanced>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// A parser between replies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one line (without CRLF): `Ok(Some(reply))` at the end of a
    /// reply, `Ok(None)` after a continuation line.
    pub fn push(&mut self, line: &[u8]) -> Result<Option<PeerReply>, BadReply> {
        let (code, last, text) = split_line(line)?;
        if let Some(first) = self.code {
            if first != code {
                return Err(BadReply::new(line, "continuation with another code"));
            }
        }
        let text = String::from_utf8_lossy(text).into_owned();
        let text = if self.code.is_none() {
            let (status, rest) = enhanced(code, &text);
            self.status = status;
            rest.to_owned()
        } else {
            strip_status(code, &text).to_owned()
        };
        self.code = Some(code);
        self.lines.push(text);
        if self.lines.len() > MAX_REPLY_LINES && !last {
            return Err(BadReply::new(line, "reply with too many lines"));
        }
        if !last {
            return Ok(None);
        }
        let reply = PeerReply {
            code,
            status: self.status.take(),
            lines: std::mem::take(&mut self.lines),
        };
        self.code = None;
        Ok(Some(reply))
    }
}

/// `DDD`, `DDD text` or `DDD-text`: the code, whether it is the last line,
/// and the text.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), BadReply> {
    let digits = line
        .get(..3)
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .ok_or_else(|| BadReply::new(line, "no three-digit code"))?;
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(BadReply::new(line, "code out of range"));
    }
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(BadReply::new(line, "no space or dash after the code")),
    }
}

/// The enhanced status code at the start of `text`, when its class
/// matches the reply code's, and the rest of the text.
fn enhanced(code: u16, text: &str) -> (Option<Enhanced>, &str) {
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = word.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (None, text);
    };
    let parsed = (
        class.parse::<u8>(),
        subject.parse::<u16>(),
        detail.parse::<u16>(),
    );
    match parsed {
        (Ok(class), Ok(subject), Ok(detail))
            if u16::from(class) == code / 100
                && subject < 1000
                && detail < 1000
                && word.len() <= 9 =>
        {
            (Some(Enhanced::new(class, subject, detail)), rest)
        }
        _ => (None, text),
    }
}

/// A continuation line without its repeated enhanced status code.
fn strip_status(code: u16, text: &str) -> &str {
    match enhanced(code, text) {
        (Some(_), rest) => rest,
        (None, text) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Vec<PeerReply>, BadReply> {
        let mut parser = ReplyParser::new();
        let mut out = Vec::new();
        for line in lines {
            if let Some(reply) = parser.push(line.as_bytes())? {
                out.push(reply);
            }
        }
        Ok(out)
    }

    /// Reply lines, and the code, status and texts expected of them.
    type Case<'a> = (&'a [&'a str], u16, Option<Enhanced>, &'a [&'a str]);

    #[test]
    fn single_and_multi_line_replies() {
        let table: &[Case<'_>] = &[
            (&["220 mx.example ESMTP"], 220, None, &["mx.example ESMTP"]),
            (&["250"], 250, None, &[""]),
            (
                &["250 2.1.0 Ok"],
                250,
                Some(Enhanced::new(2, 1, 0)),
                &["Ok"],
            ),
            (
                &["550-5.1.1 No such", "550-5.1.1 user", "550 5.1.1 here"],
                550,
                Some(Enhanced::new(5, 1, 1)),
                &["No such", "user", "here"],
            ),
            // A status whose class differs from the code's is text.
            (&["250 5.0.0 odd"], 250, None, &["5.0.0 odd"]),
            (
                &["250-mx", "250-PIPELINING", "250 SIZE 100"],
                250,
                None,
                &["mx", "PIPELINING", "SIZE 100"],
            ),
        ];
        for (lines, code, status, texts) in table {
            let replies = parse(lines).unwrap();
            assert_eq!(replies.len(), 1, "{lines:?}");
            assert_eq!(replies[0].code(), *code);
            assert_eq!(replies[0].status(), *status);
            assert_eq!(replies[0].lines(), *texts);
        }
    }

    #[test]
    fn garbage_is_refused() {
        for lines in [
            &["hello"][..],
            &["25"],
            &["2500 x"],
            &["250x"],
            &["099 x"],
            &["250-a", "251 b"],
        ] {
            assert!(parse(lines).is_err(), "{lines:?}");
        }
    }

    #[test]
    fn one_line_form_for_logs() {
        let reply = parse(&["451-4.3.0 try", "451 4.3.0 later"]).unwrap();
        assert_eq!(reply[0].one_line(), "451 4.3.0 try later");
        assert!(reply[0].is_temporary());
    }

    #[test]
    fn replies_are_bounded() {
        let mut parser = ReplyParser::new();
        let mut result = Ok(None);
        for _ in 0..=MAX_REPLY_LINES {
            result = parser.push(b"250-x");
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
