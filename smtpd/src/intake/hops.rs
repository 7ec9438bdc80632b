//! The loop cut: a message whose header section holds [`MAX_HOPS`]
//! `Received:` headers has gone round too often, and the end of its DATA
//! is refused (`500 5.4.6 Routing loop detected: Loop detected`), the
//! message dropped.
//!
//! As OpenSMTPD 7.8 counts them (`smtp_tx_dataline`, `MAX_HOPS_COUNT`
//! 100): each client header whose name (the text before the first `:`)
//! is `Received`, in any case, counts once, continuation lines included;
//! the count is checked as each one starts, so the 100th is refused and
//! 99 pass. The header this daemon adds is not counted. Header lines are
//! told apart as `headers.rs` tells them: a line not starting with a space
//! or tab that holds a `:` starts a header, a line starting with one
//! continues it, and any other line ends the header section.

/// OpenSMTPD's `MAX_HOPS_COUNT`: this many `Received:` headers is a loop.
pub(super) const MAX_HOPS: usize = 100;

/// The `Received:` headers of one message's header section, so far.
#[derive(Debug, Default)]
pub(super) struct Hops {
    received: usize,
    /// A header was seen last (so a line starting with a space or tab
    /// continues it).
    in_header: bool,
    /// The header section has ended (counting is over).
    done: bool,
}

/// The message has looped: [`MAX_HOPS`] `Received:` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Looped;

impl Hops {
    /// Counts `line`, one line of the message as the client sent it
    /// (unstuffed, without CRLF).
    pub(super) fn line(&mut self, line: &[u8]) -> Result<(), Looped> {
        if self.done {
            return Ok(());
        }
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        let colon = line.iter().position(|&b| b == b':');
        let colon = match (continues, colon) {
            (true, _) if self.in_header => return Ok(()),
            (false, Some(colon)) => colon,
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        self.in_header = true;
        if line[..colon].eq_ignore_ascii_case(b"Received") {
            self.received += 1;
            if self.received >= MAX_HOPS {
                tracing::warn!("warn: loop detected");
                return Err(Looped);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `lines`; the index of the refused line, if any.
    fn refused_at(lines: &[String]) -> Option<usize> {
        let mut hops = Hops::default();
        lines
            .iter()
            .position(|line| hops.line(line.as_bytes()).is_err())
    }

    fn received(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("Received: from hop{i}.test by mx{i}.test"))
            .collect()
    }

    #[test]
    fn the_hundredth_received_header_is_a_loop() {
        assert_eq!(refused_at(&received(99)), None);
        assert_eq!(refused_at(&received(100)), Some(99));
        assert_eq!(refused_at(&received(101)), Some(99));
    }

    #[test]
    fn only_received_headers_of_the_header_section_count() {
        let mut lines = vec!["Subject: a".to_owned()];
        for (i, line) in received(99).into_iter().enumerate() {
            lines.push(line);
            // Continuations and other headers do not count.
            lines.push(format!("\tid {i}"));
            lines.push(" ; date".to_owned());
            lines.push("X-Received: elsewhere".to_owned());
        }
        lines.push(String::new());
        // In the body, these are text.
        lines.extend(received(10));
        assert_eq!(refused_at(&lines), None);
        // Any case counts; a name with a space before the colon is
        // another header, as in OpenSMTPD.
        let mut lines: Vec<String> = (0..99).map(|_| "rEcEiVeD: x".to_owned()).collect();
        lines.push("Received : y".to_owned());
        assert_eq!(refused_at(&lines), None);
        lines.push("RECEIVED:z".to_owned());
        assert_eq!(refused_at(&lines), Some(100));
    }

    #[test]
    fn a_line_that_is_no_header_ends_the_count() {
        let mut lines = received(50);
        lines.push("no colon here".to_owned());
        lines.extend(received(60));
        assert_eq!(refused_at(&lines), None);
        // A first line starting with a space continues nothing.
        let mut lines = vec![" folded: x".to_owned()];
        lines.extend(received(120));
        assert_eq!(refused_at(&lines), None);
    }
}
