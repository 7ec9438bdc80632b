//! `senders <t> masquerade`: the `From:` header of an authenticated
//! user's message is rewritten to the envelope sender, as OpenSMTPD 7.8
//! rewrites it (`header_domain_append_callback` and
//! `header_address_rewrite_buffer` in `smtp_session.c`).
//!
//! [`Masquerade`] watches the lines of the header section (told apart as
//! `headers.rs` tells them) and holds back each `From:` header, with its
//! continuation lines, until it ends. The value is then cut into
//! addresses at every comma outside quotes and comments, and in each one
//! the address is replaced by the sender: the text between `<` and `>`
//! when there are angle brackets, else the last word outside comments.
//! An empty part becomes the sender. A part that holds a `:` outside
//! quotes and comments (a group), or whose quotes, comments or brackets
//! do not balance, is left as it is.
//! Everything else (the header's name and spacing, display names,
//! comments, folding) is kept. One difference: a bare one-character
//! address at the very start of the value is replaced (OpenSMTPD inserts
//! the sender in front of it).

/// The longest part OpenSMTPD rewrites (its line buffer); longer ones are
/// left as they are.
const MAX_PART: usize = 65_534;

/// The `From:` rewriter of one message.
#[derive(Debug)]
pub(super) struct Masquerade {
    /// The envelope sender, `user@domain`.
    address: Vec<u8>,
    /// A `From:` header being read: its lines so far.
    held: Vec<Vec<u8>>,
    /// A header was seen last.
    in_header: bool,
    /// The header section has ended.
    done: bool,
}

impl Masquerade {
    /// Rewrites `From:` to `address`.
    pub(super) fn new(address: &str) -> Self {
        Self {
            address: address.as_bytes().to_vec(),
            held: Vec::new(),
            in_header: false,
            done: false,
        }
    }

    /// Takes one line of the message; returns the lines to write now, in
    /// order (none while a `From:` header is held back).
    pub(super) fn line(&mut self, line: &[u8]) -> Vec<Vec<u8>> {
        if self.done {
            return vec![line.to_vec()];
        }
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        if continues && self.in_header {
            if self.held.is_empty() {
                return vec![line.to_vec()];
            }
            self.held.push(line.to_vec());
            return Vec::new();
        }
        let mut out = self.release();
        match line.iter().position(|&b| b == b':') {
            Some(colon) if !continues => {
                self.in_header = true;
                if line[..colon].eq_ignore_ascii_case(b"From") {
                    self.held.push(line.to_vec());
                } else {
                    out.push(line.to_vec());
                }
            }
            _ => {
                self.done = true;
                out.push(line.to_vec());
            }
        }
        out
    }

    /// Whether lines pass unchanged from now on (the header section is
    /// over and nothing is held).
    pub(super) fn passes(&self) -> bool {
        self.done && self.held.is_empty()
    }

    /// The lines still held at the end of the message.
    pub(super) fn finish(&mut self) -> Vec<Vec<u8>> {
        self.release()
    }

    /// The held `From:` header, rewritten.
    fn release(&mut self) -> Vec<Vec<u8>> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.held);
        let first = &held[0];
        let Some(colon) = first.iter().position(|&b| b == b':') else {
            return held;
        };
        let mut value = first[colon + 1..].to_vec();
        for line in &held[1..] {
            value.push(b'\n');
            value.extend_from_slice(line);
        }
        let mut header = first[..=colon].to_vec();
        header.extend_from_slice(&rewrite_value(&value, &self.address));
        header.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
    }
}

/// The value of a `From:` header (its lines joined by `\n`), each
/// comma-separated part's address replaced by `address`.
fn rewrite_value(value: &[u8], address: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + address.len());
    let mut part = Vec::new();
    let (mut escape, mut quote, mut comment) = (false, false, 0usize);
    for &c in value {
        if c == b'(' && !escape && !quote {
            comment += 1;
        }
        if c == b'"' && !escape && comment == 0 {
            quote = !quote;
        }
        if c == b')' && !escape && !quote && comment > 0 {
            comment -= 1;
        }
        escape = c == b'\\' && !escape && comment == 0;
        if c == b',' && !escape && !quote && comment == 0 {
            out.extend_from_slice(&rewrite_part(&part, address));
            out.push(b',');
            part.clear();
        } else {
            part.push(c);
        }
    }
    out.extend_from_slice(&rewrite_part(&part, address));
    out
}

/// One address of the value (`header_address_rewrite_buffer`).
fn rewrite_part(part: &[u8], address: &[u8]) -> Vec<u8> {
    if part.len() > MAX_PART {
        return part.to_vec();
    }
    let (mut escape, mut quote, mut comment, mut bracket) = (false, false, 0usize, 0usize);
    let mut group = false;
    let mut brackets: Option<(usize, usize)> = None;
    let mut open = 0;
    let mut last: Option<usize> = None;
    for (i, &c) in part.iter().enumerate() {
        if c == b'(' && !escape && !quote {
            comment += 1;
        }
        if c == b'"' && !escape && comment == 0 {
            quote = !quote;
        }
        if c == b')' && !escape && !quote && comment > 0 {
            comment -= 1;
        }
        escape = c == b'\\' && !escape && comment == 0 && !quote;
        let plain = !escape && comment == 0 && !quote;
        if c == b'<' && plain && bracket == 0 {
            bracket += 1;
            open = i + 1;
        }
        if c == b'>' && plain && bracket > 0 {
            bracket -= 1;
            brackets = Some((open, i));
        }
        group |= c == b':' && plain;
        if comment == 0 && c != b')' && !c.is_ascii_whitespace() && c != 0x0b {
            last = Some(i);
        }
    }
    if escape || quote || comment > 0 || bracket > 0 || group {
        return part.to_vec();
    }
    let (begin, end) = match (brackets, last) {
        (Some(range), _) => range,
        (None, None) => (0, 0),
        (None, Some(last)) => {
            let begin = part[..=last]
                .iter()
                .rposition(|&c| c == b')' || c.is_ascii_whitespace() || c == 0x0b)
                .map_or(0, |at| at + 1);
            (begin, last + 1)
        }
    };
    let mut out = Vec::with_capacity(part.len() + address.len());
    out.extend_from_slice(&part[..begin]);
    out.extend_from_slice(address);
    out.extend_from_slice(&part[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDER: &str = "alice@example.org";

    /// The message's lines as written, one string per line.
    fn run(lines: &[&str]) -> Vec<String> {
        let mut masquerade = Masquerade::new(SENDER);
        let mut out = Vec::new();
        for line in lines {
            out.extend(masquerade.line(line.as_bytes()));
        }
        out.extend(masquerade.finish());
        out.into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn the_address_is_replaced_and_the_rest_kept() {
        let cases: &[(&str, &str)] = &[
            ("From: bob@other.test", "From: alice@example.org"),
            (
                "From: Bob Smith <bob@other.test>",
                "From: Bob Smith <alice@example.org>",
            ),
            (
                "From: \"Smith, Bob\" <bob@other.test> (work)",
                "From: \"Smith, Bob\" <alice@example.org> (work)",
            ),
            (
                "From: bob@other.test (Bob Smith)",
                "From: alice@example.org (Bob Smith)",
            ),
            ("FROM:bob", "FROM:alice@example.org"),
            ("From: <>", "From: <alice@example.org>"),
            ("From:", "From:alice@example.org"),
            ("From: b", "From: alice@example.org"),
            // Every address of a list.
            (
                "From: a@x.test, B <b@y.test>",
                "From: alice@example.org, B <alice@example.org>",
            ),
            // Groups and unbalanced text are left alone.
            ("From: undisclosed:;", "From: undisclosed:;"),
            ("From: list: a@x.test", "From: list: a@x.test"),
            ("From: Bob <bob@other.test", "From: Bob <bob@other.test"),
            (
                "From: \"Bob <bob@other.test>",
                "From: \"Bob <bob@other.test>",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(run(&[line, "", "body"]), [*expected, "", "body"], "{line}");
        }
    }

    #[test]
    fn folded_from_headers_stay_folded() {
        let out = run(&[
            "Subject: hi",
            "From: Bob Smith",
            "\t<bob@other.test>",
            "To: carol@x.test",
            "",
            "From: a body line is text",
        ]);
        assert_eq!(
            out,
            [
                "Subject: hi",
                "From: Bob Smith",
                "\t<alice@example.org>",
                "To: carol@x.test",
                "",
                "From: a body line is text",
            ]
        );
    }

    #[test]
    fn only_from_headers_of_the_header_section() {
        let out = run(&[
            "Reply-To: bob@other.test",
            "X-From: bob@other.test",
            "Sender: bob@other.test",
            "text that ends the headers",
            "From: bob@other.test",
        ]);
        assert_eq!(
            out,
            [
                "Reply-To: bob@other.test",
                "X-From: bob@other.test",
                "Sender: bob@other.test",
                "text that ends the headers",
                "From: bob@other.test",
            ]
        );
        // A message that is all header: released at its end.
        assert_eq!(run(&["From: bob@other.test"]), ["From: alice@example.org"]);
        // Two From headers: both rewritten.
        assert_eq!(
            run(&["From: a@x.test", "from: b@y.test", ""]),
            ["From: alice@example.org", "from: alice@example.org", ""]
        );
    }

    #[test]
    fn held_lines_keep_their_order() {
        let mut masquerade = Masquerade::new(SENDER);
        assert_eq!(masquerade.line(b"Subject: a"), [b"Subject: a".to_vec()]);
        assert!(masquerade.line(b"From: b@x.test").is_empty());
        assert!(masquerade.line(b"  (comment)").is_empty());
        let out = masquerade.line(b"Date: now");
        assert_eq!(
            out,
            [
                b"From: alice@example.org".to_vec(),
                b"  (comment)".to_vec(),
                b"Date: now".to_vec()
            ]
        );
        assert!(masquerade.finish().is_empty());
        assert!(!masquerade.passes());
        masquerade.line(b"");
        assert!(masquerade.passes());
    }
}
