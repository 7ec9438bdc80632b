//! The `Date:` and `Message-ID:` headers OpenSMTPD adds to local
//! submissions when the message lacks them (`smtp_tx_dataline` in
//! `smtp_session.c`, on the socket listener).
//!
//! [`MissingHeaders`] watches the message's lines as the client sends
//! them, read as OpenSMTPD's `rfc5322.c` reads them: a line that does not
//! start with a space or tab and holds a `:` starts a header (its name is
//! the text before the first `:`), a line starting with a space or tab
//! continues the header before it, and any other line (the blank line
//! before the body, or text that is no header) ends the header section.
//! There, or at the end of a message that is all header, the missing
//! headers are written: `Date:` first, then `Message-ID:
//! <RANDOM16HEX@HOSTNAME>`.

/// What the header section of one message has shown so far.
#[derive(Debug)]
pub(super) struct MissingHeaders {
    /// The listener's host name, for the Message-ID.
    hostname: String,
    /// The date to write (the transaction's time, RFC 5322).
    date: String,
    /// A header was seen last (so a line starting with a space continues
    /// it).
    in_header: bool,
    /// The header section has ended.
    done: bool,
    has_date: bool,
    has_message_id: bool,
}

impl MissingHeaders {
    /// Watches a new message on a listener named `hostname`; `date` is
    /// written if the message has none.
    pub(super) fn new(hostname: &str, date: String) -> Self {
        Self {
            hostname: hostname.to_owned(),
            date,
            in_header: false,
            done: false,
            has_date: false,
            has_message_id: false,
        }
    }

    /// The lines to write before `line`: the missing headers when `line`
    /// is the first that is not part of the header section, else none.
    pub(super) fn before(&mut self, line: &[u8]) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        if continues && self.in_header {
            return Vec::new();
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) if !continues => {
                let name = &line[..colon];
                self.has_date |= name.eq_ignore_ascii_case(b"Date");
                self.has_message_id |= name.eq_ignore_ascii_case(b"Message-Id");
                self.in_header = true;
                Vec::new()
            }
            _ => self.missing(),
        }
    }

    /// The lines to write after the last line of the message: the missing
    /// headers if the header section never ended.
    pub(super) fn at_end(&mut self) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        self.missing()
    }

    fn missing(&mut self) -> Vec<String> {
        self.done = true;
        let mut lines = Vec::new();
        if !self.has_date {
            lines.push(format!("Date: {}", self.date));
        }
        if !self.has_message_id {
            lines.push(format!(
                "Message-ID: <{:016x}@{}>",
                random_u64(),
                self.hostname
            ));
        }
        lines
    }
}

/// A random 64-bit value from the kernel, else from the clock and a
/// counter (ids need only be unique, not secret).
fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut buf = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if usize::try_from(n).ok() == Some(buf.len()) {
        return u64::from_ne_bytes(buf);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Wed, 25 Nov 2026 16:01:14 +0000";

    /// The message with the added lines in place, one string per line.
    fn run(lines: &[&str]) -> Vec<String> {
        let mut headers = MissingHeaders::new("mx.example.org", DATE.to_owned());
        let mut out = Vec::new();
        for line in lines {
            out.extend(headers.before(line.as_bytes()));
            out.push((*line).to_owned());
        }
        out.extend(headers.at_end());
        out
    }

    fn is_message_id(line: &str) -> bool {
        let Some(id) = line
            .strip_prefix("Message-ID: <")
            .and_then(|rest| rest.strip_suffix("@mx.example.org>"))
        else {
            return false;
        };
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[test]
    fn both_are_added_before_the_blank_line() {
        let out = run(&["Subject: hi", "To: bob", "", "body"]);
        assert_eq!(out.len(), 6, "{out:?}");
        assert_eq!(out[..2], ["Subject: hi", "To: bob"]);
        assert_eq!(out[2], format!("Date: {DATE}"));
        assert!(is_message_id(&out[3]), "{out:?}");
        assert_eq!(out[4..], ["", "body"]);
    }

    #[test]
    fn present_headers_are_kept_and_not_added_again() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &[
                    "DATE: Thu, 1 Jan 1970 00:00:00 +0000",
                    "message-id: <a@b>",
                    "",
                    "x",
                ],
                &[
                    "DATE: Thu, 1 Jan 1970 00:00:00 +0000",
                    "message-id: <a@b>",
                    "",
                    "x",
                ],
            ),
            (
                &["Message-Id: <a@b>", "", "Date: not a header in the body"],
                &[
                    "Message-Id: <a@b>",
                    "Date: Wed, 25 Nov 2026 16:01:14 +0000",
                    "",
                    "Date: not a header in the body",
                ],
            ),
        ];
        for (lines, expected) in cases {
            assert_eq!(run(lines), *expected, "{lines:?}");
        }
    }

    #[test]
    fn continuation_lines_belong_to_their_header() {
        let out = run(&[
            "Subject: a",
            " long subject",
            "\tstill",
            "Date: now",
            "",
            "b",
        ]);
        assert_eq!(
            out[..4],
            ["Subject: a", " long subject", "\tstill", "Date: now"]
        );
        assert!(is_message_id(&out[4]), "{out:?}");
        assert_eq!(out[5..], ["", "b"]);
    }

    #[test]
    fn a_line_that_is_no_header_ends_the_section() {
        // No colon: the header section ends before it.
        let out = run(&["Subject: a", "just text", "more: text"]);
        assert_eq!(out[0], "Subject: a");
        assert_eq!(out[1], format!("Date: {DATE}"));
        assert!(is_message_id(&out[2]));
        assert_eq!(out[3..], ["just text", "more: text"]);
        // A first line starting with a space continues nothing.
        let out = run(&[" indented: x", "Date: y"]);
        assert_eq!(out[0], format!("Date: {DATE}"));
        assert_eq!(out[2..], [" indented: x", "Date: y"]);
    }

    #[test]
    fn a_message_of_headers_only_gets_them_at_its_end() {
        let out = run(&["Subject: only headers"]);
        assert_eq!(
            out[..2],
            ["Subject: only headers", &format!("Date: {DATE}")]
        );
        assert!(is_message_id(&out[2]));
        assert_eq!(out.len(), 3);
        let out = run(&[]);
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn ids_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
