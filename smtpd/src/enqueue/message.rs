//! The message `sendmail` reads on standard input, and the DATA it sends
//! for it, as OpenSMTPD's `enqueue.c` makes them.
//!
//! [`Message::read`] splits the input into lines (LF or CRLF), notes the
//! headers it knows (`From:`, `To:`, `Cc:`, `Bcc:`, `Subject:`, `Date:`,
//! `Message-Id:`, the MIME headers, `User-Agent:`), drops `Bcc:` headers, takes the
//! address of the `From:` header (the envelope sender when `-f` is not
//! given, as OpenSMTPD does) and, with `-t`, the recipients of `To:`,
//! `Cc:` and `Bcc:`. A header is recognised by its name at the start of a
//! line anywhere before the first empty line; a message in which none of
//! those is recognised has no header section, and its whole text becomes
//! the body (so does a header section of other headers only, as in
//! OpenSMTPD).
//!
//! [`Message::data`] is what goes between `DATA` and the final `.`: a
//! `From:` header when there is none (`NAME <sender>`), a `Date:` when
//! there is none, the MIME headers of quoted-printable when a line is too
//! long for SMTP (989 bytes or more) and no `Content-Transfer-Encoding:`
//! is given, then the message, mbox `From ` lines and `Return-Path:`
//! dropped from its header, lines dot-stuffed and ended with CRLF, long
//! body lines quoted-printable encoded (RFC 2045 section 6.7).

use super::address::{self, AddressError};

/// A line this long (with its newline) or longer needs encoding.
const LINESPLIT: usize = 990;

/// The longest encoded line, soft line break included.
const QP_LINE: usize = 76;

/// The headers `enqueue.c` looks for, by name with its colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    From,
    To,
    Cc,
    Bcc,
    Subject,
    Date,
    MessageId,
    MimeVersion,
    ContentType,
    ContentDisposition,
    ContentTransferEncoding,
    UserAgent,
}

const HEADERS: &[(&str, Header)] = &[
    ("From:", Header::From),
    ("To:", Header::To),
    ("Cc:", Header::Cc),
    ("Bcc:", Header::Bcc),
    ("Subject:", Header::Subject),
    ("Date:", Header::Date),
    ("Message-Id:", Header::MessageId),
    ("MIME-Version:", Header::MimeVersion),
    ("Content-Type:", Header::ContentType),
    ("Content-Disposition:", Header::ContentDisposition),
    (
        "Content-Transfer-Encoding:",
        Header::ContentTransferEncoding,
    ),
    ("User-Agent:", Header::UserAgent),
];

/// Which headers the message has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// `From:`.
    pub from: bool,
    /// `Date:`.
    pub date: bool,
    /// `Message-Id:`.
    pub message_id: bool,
    /// `MIME-Version:`.
    pub mime_version: bool,
    /// `Content-Type:`.
    pub content_type: bool,
    /// `Content-Disposition:`.
    pub content_disposition: bool,
    /// `Content-Transfer-Encoding:`.
    pub content_transfer_encoding: bool,
}

/// A message read from standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its lines without terminators, `Bcc:` headers left out.
    lines: Vec<Vec<u8>>,
    /// The headers it has.
    pub seen: Seen,
    /// A line is too long for SMTP.
    pub needs_encoding: bool,
    /// No header was recognised: the text is all body.
    pub no_header: bool,
    /// The (last) address of the `From:` headers, qualified.
    pub from_header: Option<String>,
    /// With `-t`: the addresses of `To:`, `Cc:` and `Bcc:`, qualified.
    pub header_recipients: Vec<String>,
}

/// The header being read and its value so far.
struct Current {
    header: Header,
    value: String,
}

impl Message {
    /// Reads `input`; bare user names in addresses get `host`. With
    /// `recipients`, `To:`, `Cc:` and `Bcc:` are read for recipients.
    pub fn read(input: &[u8], host: &str, recipients: bool) -> Result<Self, AddressError> {
        let mut message = Self {
            lines: Vec::new(),
            seen: Seen::default(),
            needs_encoding: false,
            no_header: true,
            from_header: None,
            header_recipients: Vec::new(),
        };
        let mut current: Option<Current> = None;
        let mut header_done = false;
        for line in split_lines(input) {
            header_done |= line.is_empty();
            let continues = matches!(line.first(), Some(b' ' | b'\t'));
            if !continues {
                if let Some(done) = current.take() {
                    message.header_end(done, host, recipients)?;
                }
                if !header_done {
                    current = header_of(line).map(|(header, value)| Current {
                        header,
                        value: String::from_utf8_lossy(value).into_owned(),
                    });
                    if let Some(started) = &current {
                        message.no_header = false;
                        message.see(started.header);
                    }
                }
            } else if let Some(current) = &mut current {
                current.value.push(' ');
                current.value.push_str(&String::from_utf8_lossy(line));
            }
            message.needs_encoding |= line.len() + 1 >= LINESPLIT;
            let bcc = matches!(&current, Some(c) if c.header == Header::Bcc);
            if !bcc {
                message.lines.push(line.to_vec());
            }
        }
        if let Some(done) = current.take() {
            message.header_end(done, host, recipients)?;
        }
        Ok(message)
    }

    fn see(&mut self, header: Header) {
        let seen = &mut self.seen;
        match header {
            Header::From => seen.from = true,
            Header::Date => seen.date = true,
            Header::MessageId => seen.message_id = true,
            Header::MimeVersion => seen.mime_version = true,
            Header::ContentType => seen.content_type = true,
            Header::ContentDisposition => seen.content_disposition = true,
            Header::ContentTransferEncoding => seen.content_transfer_encoding = true,
            Header::To | Header::Cc | Header::Bcc | Header::Subject | Header::UserAgent => {}
        }
    }

    /// A header of addresses is complete: read them.
    fn header_end(
        &mut self,
        done: Current,
        host: &str,
        recipients: bool,
    ) -> Result<(), AddressError> {
        match done.header {
            Header::From => {
                if let Some(last) = address::parse_list(&done.value)?.pop() {
                    self.from_header = Some(address::qualify(&last, host));
                }
            }
            Header::To | Header::Cc | Header::Bcc if recipients => {
                for found in address::parse_list(&done.value)? {
                    self.header_recipients.push(address::qualify(&found, host));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What to send between `DATA` and the final `.`, for the envelope
    /// `sender`, with `full_name` in an added `From:` and `date` in an
    /// added `Date:`.
    pub fn data(&self, sender: &str, full_name: Option<&str>, date: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line = |text: &str| {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        if !self.seen.from {
            match full_name {
                Some(name) => line(&format!("From: {name} <{sender}>")),
                None => line(&format!("From: <{sender}>")),
            }
        }
        if !self.seen.date {
            line(&format!("Date: {date}"));
        }
        let encode = self.needs_encoding && !self.seen.content_transfer_encoding;
        if encode {
            let mime = [
                (self.seen.mime_version, "MIME-Version: 1.0"),
                (
                    self.seen.content_type,
                    "Content-Type: text/plain; charset=unknown-8bit",
                ),
                (self.seen.content_disposition, "Content-Disposition: inline"),
            ];
            for (_, header) in mime.iter().filter(|(seen, _)| !seen) {
                line(header);
            }
            line("Content-Transfer-Encoding: quoted-printable");
        }
        if self.no_header {
            line("");
        }
        let mut in_header = !self.no_header;
        for text in &self.lines {
            if in_header {
                if starts_with_ignore_case(text, b"from ")
                    || starts_with_ignore_case(text, b"return-path: ")
                {
                    continue;
                }
                if text.is_empty() {
                    in_header = false;
                }
            } else if encode {
                // enqueue.c leaves a message without header unencoded
                // although it announced quoted-printable; this encodes it.
                quoted_printable(text, &mut out);
                continue;
            }
            if text.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// The lines of `input`: each ends at LF (a CR before it is dropped); a
/// last line without LF counts.
fn split_lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let empty = input.is_empty();
    input
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(move |_| !empty)
}

/// The header `line` starts, and its value after the colon.
fn header_of(line: &[u8]) -> Option<(Header, &[u8])> {
    HEADERS.iter().find_map(|(name, header)| {
        (starts_with_ignore_case(line, name.as_bytes())).then(|| (*header, &line[name.len()..]))
    })
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// One body line, quoted-printable, with soft line breaks, dot-stuffed.
fn quoted_printable(text: &[u8], out: &mut Vec<u8>) {
    let mut length = 0;
    for (i, &b) in text.iter().enumerate() {
        let last = i + 1 == text.len();
        let literal = match b {
            b' ' | b'\t' => !last,
            33..=60 | 62..=126 => true,
            _ => false,
        };
        let size = if literal { 1 } else { 3 };
        if length + size + 1 > QP_LINE {
            out.extend_from_slice(b"=\r\n");
            length = 0;
        }
        if length == 0 && b == b'.' {
            out.push(b'.');
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(format!("={b:02X}").as_bytes());
        }
        length += size;
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "host.test";
    const DATE: &str = "Thu, 1 Jan 1970 00:00:00 +0000";

    fn data(input: &str, recipients: bool) -> String {
        let message = Message::read(input.as_bytes(), HOST, recipients).unwrap();
        String::from_utf8(message.data("me@host.test", Some("Me"), DATE)).unwrap()
    }

    #[test]
    fn headers_are_noted_and_missing_ones_added() {
        let input = "Subject: hi\r\nTo: bob\r\n\r\nbody\r\n";
        let message = Message::read(input.as_bytes(), HOST, false).unwrap();
        assert!(!message.no_header);
        assert_eq!(message.seen, Seen::default());
        assert!(message.header_recipients.is_empty());
        assert_eq!(
            data(input, false),
            "From: Me <me@host.test>\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\n\
             Subject: hi\r\nTo: bob\r\n\r\nbody\r\n"
        );
        let full = "From: a@x\nDate: today\nMessage-Id: <1@x>\n\nbody\n";
        let message = Message::read(full.as_bytes(), HOST, false).unwrap();
        assert!(message.seen.from && message.seen.date && message.seen.message_id);
        assert_eq!(message.from_header.as_deref(), Some("a@x"));
        assert_eq!(
            data(full, false),
            "From: a@x\r\nDate: today\r\nMessage-Id: <1@x>\r\n\r\nbody\r\n"
        );
        let unnamed = Message::read(b"Subject: x\n\nb\n", HOST, false).unwrap();
        assert!(String::from_utf8(unnamed.data("me@h", None, DATE))
            .unwrap()
            .starts_with("From: <me@h>\r\n"));
    }

    #[test]
    fn recipients_from_headers_and_bcc_removed() {
        let input = "To: Bob <bob@x>, carol\nCc: dave@y\nBcc: eve@z,\n  frank\nSubject: s\n\nTo: not@header\n";
        let message = Message::read(input.as_bytes(), HOST, true).unwrap();
        assert_eq!(
            message.header_recipients,
            [
                "bob@x",
                "carol@host.test",
                "dave@y",
                "eve@z",
                "frank@host.test"
            ]
        );
        let sent = data(input, true);
        assert!(!sent.contains("Bcc"), "{sent}");
        assert!(!sent.contains("frank"), "{sent}");
        assert!(
            sent.contains("Cc: dave@y\r\nSubject: s\r\n\r\nTo: not@header\r\n"),
            "{sent}"
        );
        // Without -t the headers give no recipients (Bcc still goes).
        let message = Message::read(input.as_bytes(), HOST, false).unwrap();
        assert!(message.header_recipients.is_empty());
        assert!(!data(input, false).contains("Bcc"));
    }

    #[test]
    fn the_last_from_address_is_the_sender() {
        let input = "From: Alice <alice>\nSubject: s\n\n";
        let message = Message::read(input.as_bytes(), HOST, false).unwrap();
        assert_eq!(message.from_header.as_deref(), Some("alice@host.test"));
        let bad = "From: \"unclosed <a@x>\n\nbody\n";
        assert_eq!(
            Message::read(bad.as_bytes(), HOST, false),
            Err(AddressError::Syntax)
        );
    }

    #[test]
    fn text_without_headers_is_all_body() {
        let input = "hello\nthere\n";
        let message = Message::read(input.as_bytes(), HOST, false).unwrap();
        assert!(message.no_header);
        assert_eq!(
            data(input, false),
            "From: Me <me@host.test>\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\n\r\nhello\r\nthere\r\n"
        );
        // No final newline, an empty input.
        assert!(data("last line", false).ends_with("\r\n\r\nlast line\r\n"));
        assert!(data("", false).ends_with("+0000\r\n\r\n"));
    }

    #[test]
    fn dots_mbox_lines_and_return_path() {
        let input = "From alice Thu Jan  1 00:00:00 1970\nReturn-Path: <x@y>\nSubject: s\n\n.\n..x\nFrom here\n";
        let sent = data(input, false);
        assert!(
            sent.ends_with("Subject: s\r\n\r\n..\r\n...x\r\nFrom here\r\n"),
            "{sent}"
        );
        assert!(!sent.contains("Return-Path"), "{sent}");
        assert!(!sent.contains("From alice"), "{sent}");
    }

    #[test]
    fn long_lines_are_quoted_printable() {
        let long = format!("{}=\u{e9}x \n", ".a".repeat(600));
        let input = format!("Subject: s\n\nshort\n{long}");
        let message = Message::read(input.as_bytes(), HOST, false).unwrap();
        assert!(message.needs_encoding);
        let sent = data(&input, false);
        let (head, body) = sent.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n\
             Content-Disposition: inline\r\nContent-Transfer-Encoding: quoted-printable\r\nSubject: s"
        ), "{head}");
        let lines: Vec<&str> = body.trim_end_matches("\r\n").split("\r\n").collect();
        assert_eq!(lines[0], "short");
        assert!(lines.iter().all(|l| l.len() <= QP_LINE + 1), "{lines:?}");
        // Encoded lines that start with a dot have it stuffed; the last
        // holds the encoded `=`, e-acute and trailing space.
        assert!(lines[1].starts_with("..a.a"), "{lines:?}");
        assert!(
            lines[1..]
                .iter()
                .all(|l| !l.starts_with('.') || l.starts_with("..")),
            "{lines:?}"
        );
        assert!(
            lines.last().unwrap().ends_with("=3D=C3=A9x=20"),
            "{lines:?}"
        );
        // A given transfer encoding is left alone.
        let declared = format!("Content-Transfer-Encoding: base64\n\n{long}");
        let sent = data(&declared, false);
        assert!(!sent.contains("quoted-printable"), "{sent}");
        assert!(sent.contains(&format!(".{}", long.trim_end())));
    }

    #[test]
    fn bare_cr_lf_and_crlf_end_lines() {
        let message = Message::read(b"a: 1\r\nb: 2\n\nx\r\n", HOST, false).unwrap();
        assert_eq!(
            message.lines,
            [
                b"a: 1".to_vec(),
                b"b: 2".to_vec(),
                b"".to_vec(),
                b"x".to_vec()
            ]
        );
    }
}
