//! SMTP replies (RFC 5321 section 4.2) with enhanced status codes
//! (RFC 3463, RFC 2034), and the reply texts the session sends.
//!
//! A [`Reply`] is a code, an optional [`Enhanced`] status and one or more
//! lines of text; [`Reply::format`] writes it as the wire wants it
//! (`250-first`, ..., `250 last`, each ending in CRLF, the enhanced code on
//! every line). Text can never break a line: a CR, LF or other control
//! character given to a constructor becomes a space, so a peer's input
//! echoed in a reply cannot inject a second reply.
//!
//! The named constructors hold the texts, following OpenSMTPD's
//! `smtp_session.c` where it has one (`250 2.0.0 Ok`, `553 5.1.0 Sender
//! address syntax error`, `250 2.1.5 Destination address valid: Recipient
//! ok`, ...); they are the only place the session's wording lives.

use std::fmt;

use bytes::{BufMut, BytesMut};

/// An enhanced mail system status code (RFC 3463): `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent).
    pub class: u8,
    /// The subject (0 to 7).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl Enhanced {
    /// A status code from its three numbers.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<Enhanced>,
    lines: Vec<String>,
}

/// Replaces every control character by a space, so a text stays on its line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: Enhanced, text: &str) -> Self {
        Self {
            code,
            status: Some(status),
            lines: vec![one_line(text)],
        }
    }

    /// A one-line reply without an enhanced status code (220, 221 greeting
    /// forms, 334, 354: RFC 2034 leaves them bare).
    pub fn bare(code: u16, text: &str) -> Self {
        Self {
            code,
            status: None,
            lines: vec![one_line(text)],
        }
    }

    /// A multi-line reply; `lines` must not be empty (an empty list gives
    /// one empty line).
    pub fn multi<S: AsRef<str>>(code: u16, status: Option<Enhanced>, lines: &[S]) -> Self {
        let mut lines: Vec<String> = lines.iter().map(|l| one_line(l.as_ref())).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
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

    /// The enhanced status code, if the reply has one.
    pub const fn status(&self) -> Option<Enhanced> {
        self.status
    }

    /// The lines of text, without code or status.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Whether the code is a positive completion or intermediate (2xx, 3xx).
    pub const fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Writes the reply in wire form, CRLF after every line.
    pub fn format(&self, dst: &mut BytesMut) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let head = match self.status {
                Some(status) if line.is_empty() => format!("{}{}{}", self.code, sep, status),
                Some(status) => format!("{}{}{} ", self.code, sep, status),
                None => format!("{}{}", self.code, sep),
            };
            dst.reserve(head.len() + line.len() + 2);
            dst.put_slice(head.as_bytes());
            dst.put_slice(line.as_bytes());
            dst.put_slice(b"\r\n");
        }
    }
}

/// The wire form without the final CRLF, lines joined by CRLF: handy for
/// logs and tests.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = BytesMut::new();
        self.format(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        f.write_str(text.trim_end_matches("\r\n"))
    }
}

const OK: Enhanced = Enhanced::new(2, 0, 0);
const INVALID_COMMAND: Enhanced = Enhanced::new(5, 5, 1);
const SYNTAX: Enhanced = Enhanced::new(5, 5, 2);
const INVALID_ARGUMENTS: Enhanced = Enhanced::new(5, 5, 4);

/// The reply texts, one constructor per situation.
impl Reply {
    /// `220 HOST ESMTP smtpd`: the greeting, shaped as OpenSMTPD's.
    pub fn greeting(hostname: &str) -> Self {
        Self::bare(220, &format!("{hostname} ESMTP smtpd"))
    }

    /// `250 2.0.0 Ok`: MAIL FROM accepted, NOOP.
    pub fn ok() -> Self {
        Self::new(250, OK, "Ok")
    }

    /// `250 2.1.5 Destination address valid: Recipient ok`.
    pub fn recipient_ok() -> Self {
        Self::new(
            250,
            Enhanced::new(2, 1, 5),
            "Destination address valid: Recipient ok",
        )
    }

    /// `250 2.0.0 Reset state`.
    pub fn reset() -> Self {
        Self::new(250, OK, "Reset state")
    }

    /// `250 2.0.0 ID Message accepted for delivery`.
    pub fn accepted(id: &dyn fmt::Display) -> Self {
        Self::new(250, OK, &format!("{id} Message accepted for delivery"))
    }

    /// `354 Enter mail, end with "." on a line by itself`.
    pub fn start_data() -> Self {
        Self::bare(354, "Enter mail, end with \".\" on a line by itself")
    }

    /// `221 2.0.0 Bye`.
    pub fn bye() -> Self {
        Self::new(221, OK, "Bye")
    }

    /// `220 2.0.0 Ready to start TLS`.
    pub fn ready_for_tls() -> Self {
        Self::new(220, OK, "Ready to start TLS")
    }

    /// The HELP text (214, multi-line).
    pub fn help() -> Self {
        Self::multi(
            214,
            Some(OK),
            &[
                "This is OpenSMTPD-compatible smtpd",
                "To report bugs in the implementation, please contact the maintainers",
                "with full details",
                "End of HELP info",
            ],
        )
    }

    /// `421 4.4.2 HOST Timeout, closing transmission channel`.
    pub fn timeout(hostname: &str) -> Self {
        Self::new(
            421,
            Enhanced::new(4, 4, 2),
            &format!("{hostname} Timeout, closing transmission channel"),
        )
    }

    /// `421 4.3.2 HOST Service shutting down, closing transmission channel`.
    pub fn shutting_down(hostname: &str) -> Self {
        Self::new(
            421,
            Enhanced::new(4, 3, 2),
            &format!("{hostname} Service shutting down, closing transmission channel"),
        )
    }

    /// `421 4.7.0 HOST Too many sessions, closing transmission channel`.
    pub fn too_many_sessions(hostname: &str) -> Self {
        Self::new(
            421,
            Enhanced::new(4, 7, 0),
            &format!("{hostname} Too many sessions, closing transmission channel"),
        )
    }

    /// `451 4.3.0 Temporary failure`: a backend, the queue or a table failed.
    pub fn temporary_failure() -> Self {
        Self::new(451, Enhanced::new(4, 3, 0), "Temporary failure")
    }

    /// `452 4.5.3 Too many recipients: Too many recipients` (RFC 5321's
    /// 452; OpenSMTPD says 451).
    pub fn too_many_recipients() -> Self {
        Self::new(
            452,
            Enhanced::new(4, 5, 3),
            "Too many recipients: Too many recipients",
        )
    }

    /// `452 4.5.3 Too many recipients: Too many messages sent`: the
    /// session's max-mails.
    pub fn too_many_messages() -> Self {
        Self::new(
            452,
            Enhanced::new(4, 5, 3),
            "Too many recipients: Too many messages sent",
        )
    }

    /// `452 4.3.1 Insufficient system storage`.
    pub fn insufficient_storage() -> Self {
        Self::new(452, Enhanced::new(4, 3, 1), "Insufficient system storage")
    }

    /// `500 5.5.1 Invalid command: Command unrecognized`.
    pub fn unknown_command() -> Self {
        Self::new(
            500,
            INVALID_COMMAND,
            "Invalid command: Command unrecognized",
        )
    }

    /// `500 5.5.2 Line too long`.
    pub fn line_too_long() -> Self {
        Self::new(500, SYNTAX, "Line too long")
    }

    /// `500 5.5.2 Bare CR or LF in command line`.
    pub fn bare_newline() -> Self {
        Self::new(500, SYNTAX, "Bare CR or LF in command line")
    }

    /// `501 5.5.4 Syntax: EXPECTED`: a command's arguments did not parse.
    pub fn syntax(expected: &str) -> Self {
        Self::new(501, INVALID_ARGUMENTS, &format!("Syntax: {expected}"))
    }

    /// `501 5.5.4 Invalid command arguments: WHAT`.
    pub fn invalid_arguments(what: &str) -> Self {
        Self::new(
            501,
            INVALID_ARGUMENTS,
            &format!("Invalid command arguments: {what}"),
        )
    }

    /// `501 5.5.1 Invalid command: VERB requires domain name`: HELO or
    /// EHLO without its argument.
    pub fn domain_required(verb: &str) -> Self {
        Self::new(
            501,
            INVALID_COMMAND,
            &format!("Invalid command: {verb} requires domain name"),
        )
    }

    /// `501 5.5.4 Invalid command arguments: Invalid domain name`: HELO
    /// or EHLO with an argument that is no domain.
    pub fn invalid_domain() -> Self {
        Self::invalid_arguments("Invalid domain name")
    }

    /// `502 5.5.1 Command not implemented` (VRFY, EXPN).
    pub fn not_implemented() -> Self {
        Self::new(502, INVALID_COMMAND, "Command not implemented")
    }

    /// `503 5.5.1 Invalid command: Command not allowed at this point.`:
    /// a command out of sequence.
    pub fn bad_sequence() -> Self {
        Self::new(
            503,
            INVALID_COMMAND,
            "Invalid command: Command not allowed at this point.",
        )
    }

    /// `503 5.5.1 Invalid command: Already identified`: a second HELO/EHLO.
    pub fn already_identified() -> Self {
        Self::new(503, INVALID_COMMAND, "Invalid command: Already identified")
    }

    /// `503 5.5.1 Invalid command: Already authenticated`.
    pub fn already_authenticated() -> Self {
        Self::new(
            503,
            INVALID_COMMAND,
            "Invalid command: Already authenticated",
        )
    }

    /// `503 5.5.1 Invalid command: Channel already secured`.
    pub fn already_secured() -> Self {
        Self::new(
            503,
            INVALID_COMMAND,
            "Invalid command: Channel already secured",
        )
    }

    /// `503 5.5.4 Invalid command arguments: No recipient specified`.
    pub fn no_recipient() -> Self {
        Self::new(
            503,
            INVALID_ARGUMENTS,
            "Invalid command arguments: No recipient specified",
        )
    }

    /// `503 5.5.1 Invalid command: Command not supported`: STARTTLS or
    /// AUTH where they are not offered.
    pub fn not_supported() -> Self {
        Self::new(
            503,
            INVALID_COMMAND,
            "Invalid command: Command not supported",
        )
    }

    /// `501 5.5.2 Invalid authentication data`: bad base64 or PLAIN message.
    pub fn auth_syntax() -> Self {
        Self::new(501, SYNTAX, "Invalid authentication data")
    }

    /// `250 HOST Hello HELO PEER, pleased to meet you`: the HELO answer, and
    /// the first line of EHLO's.
    pub fn hello_text(hostname: &str, helo: &str, peer: &str) -> String {
        format!("{hostname} Hello {helo} {peer}, pleased to meet you")
    }

    /// `504 5.5.4 Unsupported authentication mechanism`.
    pub fn unsupported_mechanism() -> Self {
        Self::new(
            504,
            INVALID_ARGUMENTS,
            "Unsupported authentication mechanism",
        )
    }

    /// `530 5.5.1 Invalid command: Must issue a STARTTLS command first`.
    pub fn tls_required() -> Self {
        Self::new(
            530,
            INVALID_COMMAND,
            "Invalid command: Must issue a STARTTLS command first",
        )
    }

    /// `530 5.5.1 Invalid command: Must issue an AUTH command first`.
    pub fn auth_required() -> Self {
        Self::new(
            530,
            INVALID_COMMAND,
            "Invalid command: Must issue an AUTH command first",
        )
    }

    /// `334 TEXT`: an AUTH challenge (base64 text, possibly empty).
    pub fn auth_challenge(text: &str) -> Self {
        Self::bare(334, text)
    }

    /// `235 2.0.0 Authentication succeeded`.
    pub fn auth_succeeded() -> Self {
        Self::new(235, OK, "Authentication succeeded")
    }

    /// `535 5.7.8 Authentication failed`.
    pub fn auth_failed() -> Self {
        Self::new(535, Enhanced::new(5, 7, 8), "Authentication failed")
    }

    /// `454 4.7.0 Temporary authentication failure`: the credentials could
    /// not be checked (a table error), RFC 4954.
    pub fn auth_temporary_failure() -> Self {
        Self::new(
            454,
            Enhanced::new(4, 7, 0),
            "Temporary authentication failure",
        )
    }

    /// `501 5.7.0 Authentication aborted`: the client answered `*`.
    pub fn auth_aborted() -> Self {
        Self::new(501, Enhanced::new(5, 7, 0), "Authentication aborted")
    }

    /// `550 5.1.1 Invalid recipient: <ADDRESS>`: no rule accepts it.
    pub fn invalid_recipient(address: &str) -> Self {
        Self::new(
            550,
            Enhanced::new(5, 1, 1),
            &format!("Invalid recipient: <{address}>"),
        )
    }

    /// `550 5.7.1 Delivery not authorized, message refused`: a reject rule
    /// or a filter said no.
    pub fn refused() -> Self {
        Self::new(
            550,
            Enhanced::new(5, 7, 1),
            "Delivery not authorized, message refused",
        )
    }

    /// `550 5.5.2 Bare CR or LF in message data`: the data was refused.
    pub fn bare_newline_in_data() -> Self {
        Self::new(550, SYNTAX, "Bare CR or LF in message data")
    }

    /// `500 5.5.2 Line too long` for a data line past the limit.
    pub fn data_line_too_long() -> Self {
        Self::line_too_long()
    }

    /// `552 5.3.4 Message too big for system: Transaction failed, message
    /// too big` (RFC 5321's 552; OpenSMTPD says 554).
    pub fn message_too_big() -> Self {
        Self::new(
            552,
            Enhanced::new(5, 3, 4),
            "Message too big for system: Transaction failed, message too big",
        )
    }

    /// `530 5.7.1 Sender rejected`: an authenticated user may not send
    /// as this sender (`senders`; OpenSMTPD's text, with an enhanced code).
    pub fn sender_rejected() -> Self {
        Self::new(530, Enhanced::new(5, 7, 1), "Sender rejected")
    }

    /// `500 5.4.6 Routing loop detected: Loop detected`: the message holds
    /// too many `Received:` headers.
    pub fn loop_detected() -> Self {
        Self::new(
            500,
            Enhanced::new(5, 4, 6),
            "Routing loop detected: Loop detected",
        )
    }

    /// `553 5.1.0 Sender address syntax error`.
    pub fn bad_sender() -> Self {
        Self::new(553, Enhanced::new(5, 1, 0), "Sender address syntax error")
    }

    /// `501 5.1.3 Recipient address syntax error` (OpenSMTPD's code).
    pub fn bad_recipient() -> Self {
        Self::new(
            501,
            Enhanced::new(5, 1, 3),
            "Recipient address syntax error",
        )
    }

    /// `553 5.6.7 Non-ASCII address without SMTPUTF8` (RFC 6531 3.5).
    pub fn utf8_not_declared() -> Self {
        Self::new(
            553,
            Enhanced::new(5, 6, 7),
            "Non-ASCII address without SMTPUTF8",
        )
    }

    /// `555 5.5.4 Invalid command arguments: Unsupported option NAME`: an
    /// unknown or not offered MAIL FROM / RCPT TO parameter (RFC 5321's
    /// 555; OpenSMTPD says 503).
    pub fn unsupported_parameter(name: &str) -> Self {
        Self::new(
            555,
            INVALID_ARGUMENTS,
            &format!("Invalid command arguments: Unsupported option {name}"),
        )
    }

    /// `555 5.5.4 Invalid command arguments: Invalid value for NAME`.
    pub fn bad_parameter(name: &str) -> Self {
        Self::new(
            555,
            INVALID_ARGUMENTS,
            &format!("Invalid command arguments: Invalid value for {name}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: &Reply) -> String {
        let mut buf = BytesMut::new();
        reply.format(&mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn formats_one_and_many_lines() {
        let cases: [(Reply, &str); 6] = [
            (Reply::ok(), "250 2.0.0 Ok\r\n"),
            (
                Reply::bad_sender(),
                "553 5.1.0 Sender address syntax error\r\n",
            ),
            (
                Reply::start_data(),
                "354 Enter mail, end with \".\" on a line by itself\r\n",
            ),
            (Reply::auth_challenge(""), "334 \r\n"),
            (
                Reply::multi(250, None, &["mx Hello", "8BITMIME", "HELP"]),
                "250-mx Hello\r\n250-8BITMIME\r\n250 HELP\r\n",
            ),
            (
                Reply::multi(214, Some(OK), &["a", ""]),
                "214-2.0.0 a\r\n214 2.0.0\r\n",
            ),
        ];
        for (reply, expected) in cases {
            assert_eq!(wire(&reply), expected);
        }
    }

    #[test]
    fn text_cannot_break_the_line() {
        let reply = Reply::invalid_recipient("a\r\n250 2.0.0 injected@b");
        assert_eq!(
            wire(&reply),
            "550 5.1.1 Invalid recipient: <a  250 2.0.0 injected@b>\r\n"
        );
        let multi = Reply::multi(250, None, &["x\ny", "z\0"]);
        assert_eq!(wire(&multi), "250-x y\r\n250 z \r\n");
    }

    #[test]
    fn display_and_accessors() {
        let reply = Reply::help();
        assert_eq!(reply.code(), 214);
        assert_eq!(reply.status(), Some(Enhanced::new(2, 0, 0)));
        assert_eq!(reply.lines().len(), 4);
        assert!(reply.to_string().ends_with("214 2.0.0 End of HELP info"));
        assert!(Reply::start_data().is_positive());
        assert!(!Reply::too_many_recipients().is_positive());
        assert_eq!(
            Reply::accepted(&format_args!("{:08x}", 0xdead_u32)).to_string(),
            "250 2.0.0 0000dead Message accepted for delivery"
        );
        assert_eq!(Reply::multi::<&str>(250, None, &[]).lines(), [""]);
    }
}
