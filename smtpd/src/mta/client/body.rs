//! The message as DATA sends it (RFC 5321 section 4.5.2): every line
//! ending in CRLF (a bare LF becomes CRLF, so both the queue's CRLF form
//! and the LF form local delivery reads are fine), a `.` doubled at the
//! start of a line, and a CRLF added when the message does not end with
//! one, before the final `.`.
//!
//! [`Encoder`] is pure and works chunk by chunk, so a message of any size
//! goes through in bounded memory: it keeps only whether the previous
//! chunk ended at a line start or on a CR. It also notes what the session
//! must check while streaming: 8-bit bytes and the size on the wire.

/// The encoder's state between chunks.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The next byte starts a line.
    line_start: bool,
    /// The last byte was a CR.
    after_cr: bool,
    /// A byte above 127 was seen.
    eight_bit: bool,
    /// Bytes produced, without the dot-stuffing and the final dot.
    size: u64,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder at the start of a message.
    pub const fn new() -> Self {
        Self {
            line_start: true,
            after_cr: false,
            eight_bit: false,
            size: 0,
        }
    }

    /// Whether a byte above 127 was seen so far.
    pub const fn eight_bit(&self) -> bool {
        self.eight_bit
    }

    /// The message's size so far as the peer counts it (CRLF line ends,
    /// without dot-stuffing).
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Encodes `chunk`, appending to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if !self.eight_bit && chunk.iter().any(|&b| b >= 0x80) {
            self.eight_bit = true;
        }
        out.reserve(chunk.len() + chunk.len() / 64 + 4);
        let before = out.len();
        let mut stuffed = 0u64;
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.line_start && rest[0] == b'.' {
                out.push(b'.');
                stuffed += 1;
            }
            let (line, ends) = match rest.iter().position(|&b| b == b'\n') {
                Some(pos) => (&rest[..pos], true),
                None => (rest, false),
            };
            out.extend_from_slice(line);
            if let Some(&last) = line.last() {
                self.after_cr = last == b'\r';
            }
            if ends {
                if !self.after_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.after_cr = false;
                self.line_start = true;
                rest = &rest[line.len() + 1..];
            } else {
                self.line_start = false;
                rest = &[];
            }
        }
        self.size += (out.len() - before) as u64 - stuffed;
    }

    /// Ends the message: a CRLF when the last line lacks one, then `.`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.line_start {
            let end: &[u8] = if self.after_cr { b"\n" } else { b"\r\n" };
            out.extend_from_slice(end);
            self.size += end.len() as u64;
            self.line_start = true;
            self.after_cr = false;
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(chunks: &[&[u8]]) -> (Vec<u8>, Encoder) {
        let mut encoder = Encoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            encoder.push(chunk, &mut out);
        }
        encoder.finish(&mut out);
        (out, encoder)
    }

    #[test]
    fn line_ends_and_dot_stuffing() {
        let table: &[(&[&[u8]], &[u8])] = &[
            (&[b""], b".\r\n"),
            (&[b"a\nb\n"], b"a\r\nb\r\n.\r\n"),
            (&[b"a\r\nb\r\n"], b"a\r\nb\r\n.\r\n"),
            (&[b"no end"], b"no end\r\n.\r\n"),
            (&[b".\n..x\n"], b"..\r\n...x\r\n.\r\n"),
            (&[b"a.\n.b"], b"a.\r\n..b\r\n.\r\n"),
            // Chunk boundaries anywhere: before a dot, inside CRLF.
            (&[b"a\n", b".b\n"], b"a\r\n..b\r\n.\r\n"),
            (&[b"a\r", b"\n.\r", b"\n"], b"a\r\n..\r\n.\r\n"),
            (&[b"a", b"b", b"\n"], b"ab\r\n.\r\n"),
            (&[b"x\r"], b"x\r\n.\r\n"),
            // A lone CR inside a line stays.
            (&[b"a\rb\n"], b"a\rb\r\n.\r\n"),
        ];
        for (chunks, expected) in table {
            let (out, _) = encode(chunks);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected),
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn size_and_eight_bit() {
        let (_, encoder) = encode(&[b"ab\n", b".c\n"]);
        assert_eq!(encoder.size(), 8);
        assert!(!encoder.eight_bit());
        let (_, encoder) = encode(&[b"caf\xc3\xa9\n"]);
        assert!(encoder.eight_bit());
    }

    #[test]
    fn one_byte_chunks_give_the_same_output() {
        let message = b"Subject: x\n\n.\n..\nline\r\n.end";
        let (whole, _) = encode(&[message]);
        let pieces: Vec<&[u8]> = message.chunks(1).collect();
        let (split, _) = encode(&pieces);
        assert_eq!(whole, split);
    }
}
