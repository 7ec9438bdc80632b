//! Framing: bytes to protocol lines and back, for tokio-util's `Framed`.
//!
//! Lines end with `\n` and are handed out without it. A line longer than the
//! limit is reported once as [`Frame::TooLong`] and discarded up to its
//! `\n`, so one bad line never ends the stream.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::proto::{Line, MAX_LINE};

/// One framed line, or the news that one was too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A line without its `\n`.
    Line(BytesMut),
    /// A line longer than the limit was dropped; its length so far.
    TooLong(usize),
}

/// Splits a byte stream into `\n`-terminated lines of bounded length.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_len: usize,
    /// Bytes already searched for `\n` in the buffer.
    scanned: usize,
    /// Set while skipping the rest of an over-long line.
    discarding: bool,
}

impl LineCodec {
    /// A codec accepting lines up to [`MAX_LINE`] bytes.
    pub fn new() -> Self {
        Self::with_max_len(MAX_LINE)
    }

    /// A codec accepting lines up to `max_len` bytes (without the `\n`).
    pub fn with_max_len(max_len: usize) -> Self {
        Self {
            max_len,
            scanned: 0,
            discarding: false,
        }
    }
}

impl Default for LineCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            let found = buf[self.scanned..].iter().position(|&b| b == b'\n');
            match (found, self.discarding) {
                (Some(n), true) => {
                    buf.advance(self.scanned + n + 1);
                    self.scanned = 0;
                    self.discarding = false;
                }
                (None, true) => {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                (Some(n), false) => {
                    let end = self.scanned + n;
                    self.scanned = 0;
                    if end > self.max_len {
                        buf.advance(end + 1);
                        return Ok(Some(Frame::TooLong(end)));
                    }
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    return Ok(Some(Frame::Line(line)));
                }
                (None, false) => {
                    if buf.len() > self.max_len {
                        let len = buf.len();
                        buf.clear();
                        self.scanned = 0;
                        self.discarding = true;
                        return Ok(Some(Frame::TooLong(len)));
                    }
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() || self.discarding => Ok(None),
            // An unterminated last line is dropped: a line is only complete
            // with its `\n`.
            None => {
                buf.clear();
                self.scanned = 0;
                Ok(None)
            }
        }
    }
}

impl<T: Line> Encoder<&T> for LineCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: &T, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        item.format(dst)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(codec: &mut LineCodec, input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn splits_lines_and_waits_for_the_rest() {
        let mut c = LineCodec::new();
        let mut buf = BytesMut::from(&b"a|b\nc|"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Line("a|b".into())));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"d\n\n");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Line("c|d".into())));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Line("".into())));
    }

    #[test]
    fn too_long_lines_are_reported_once_and_skipped() {
        let mut c = LineCodec::with_max_len(4);
        assert_eq!(
            frames(&mut c, b"12345\nok\n"),
            vec![Frame::TooLong(5), Frame::Line("ok".into())]
        );
        let mut c = LineCodec::with_max_len(4);
        let mut buf = BytesMut::from(&b"123456789"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::TooLong(9)));
        buf.extend_from_slice(b"more\nok\n");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Frame::Line("ok".into())));
    }
}
