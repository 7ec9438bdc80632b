//! Field splitting and field writing, the two primitives every line type is
//! built from.

use bytes::{BufMut, BytesMut};

use super::error::{FormatError, ParseError, Problem};

/// Splits a line into `|`-separated fields, left to right.
pub(crate) struct Cursor<'a> {
    line: &'a [u8],
    /// Start of the next field; `None` once the last field was taken.
    pos: Option<usize>,
}

impl<'a> Cursor<'a> {
    /// Starts on a line, refusing `\r` and `\n` anywhere in it.
    pub(crate) fn new(line: &'a [u8]) -> Result<Self, ParseError> {
        if line.iter().any(|&b| b == b'\n' || b == b'\r') {
            return Err(ParseError::new(
                Problem::ControlChar,
                "line",
                "a single line without CR or LF",
                line,
            ));
        }
        Ok(Self { line, pos: Some(0) })
    }

    /// An error about `field` in this line.
    pub(crate) fn error(
        &self,
        problem: Problem,
        field: &'static str,
        expected: &'static str,
    ) -> ParseError {
        ParseError::new(problem, field, expected, self.line)
    }

    /// The next field, which must not be the rest of the line when more
    /// separators follow.
    pub(crate) fn field(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<&'a [u8], ParseError> {
        let Some(start) = self.pos else {
            return Err(self.error(Problem::Missing, field, expected));
        };
        let rest = &self.line[start..];
        match rest.iter().position(|&b| b == b'|') {
            Some(n) => {
                self.pos = Some(start + n + 1);
                Ok(&rest[..n])
            }
            None => {
                self.pos = None;
                Ok(rest)
            }
        }
    }

    /// The rest of the line as one field, `|` included.
    pub(crate) fn last(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<&'a [u8], ParseError> {
        self.opt_last()
            .ok_or_else(|| self.error(Problem::Missing, field, expected))
    }

    /// The rest of the line if a separator announced one more field.
    pub(crate) fn opt_last(&mut self) -> Option<&'a [u8]> {
        let start = self.pos.take()?;
        Some(&self.line[start..])
    }

    /// True when no field is left.
    pub(crate) fn is_done(&self) -> bool {
        self.pos.is_none()
    }

    /// Fails when fields remain.
    pub(crate) fn finish(&self, after: &'static str) -> Result<(), ParseError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(self.error(Problem::Trailing, after, "the end of the line"))
        }
    }

    /// The next field as UTF-8 text.
    pub(crate) fn text(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<&'a str, ParseError> {
        let raw = self.field(field, expected)?;
        self.utf8(raw, field)
    }

    /// The rest of the line as UTF-8 text.
    pub(crate) fn last_text(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<&'a str, ParseError> {
        let raw = self.last(field, expected)?;
        self.utf8(raw, field)
    }

    /// Checks that `raw` is UTF-8.
    pub(crate) fn utf8(&self, raw: &'a [u8], field: &'static str) -> Result<&'a str, ParseError> {
        std::str::from_utf8(raw).map_err(|_| self.error(Problem::NotUtf8, field, "UTF-8 text"))
    }

    /// Expects the next field to be exactly `word`.
    pub(crate) fn expect(
        &mut self,
        word: &'static [u8],
        field: &'static str,
        expected: &'static str,
    ) -> Result<(), ParseError> {
        let got = self.field(field, expected)?;
        if got == word {
            Ok(())
        } else {
            Err(self.error(Problem::Invalid, field, expected))
        }
    }
}

/// Appends fields to a buffer, refusing values that would forge a line.
pub(crate) struct Writer<'a> {
    out: &'a mut BytesMut,
    start: usize,
    first: bool,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut BytesMut) -> Self {
        let start = out.len();
        Self {
            out,
            start,
            first: true,
        }
    }

    fn separator(&mut self) {
        if !self.first {
            self.out.put_u8(b'|');
        }
        self.first = false;
    }

    /// A field known to be safe (a keyword, an id, a number).
    pub(crate) fn raw(&mut self, value: &[u8]) -> &mut Self {
        self.separator();
        self.out.put_slice(value);
        self
    }

    /// A field written by `write` (which must write only safe bytes).
    pub(crate) fn separator_then(&mut self, write: impl FnOnce(&mut BytesMut)) -> &mut Self {
        self.separator();
        write(self.out);
        self
    }

    /// A lower-case hex number of exactly `width` digits.
    pub(crate) fn hex(&mut self, value: u64, width: usize) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.separator();
        for i in (0..width).rev() {
            self.out.put_u8(DIGITS[((value >> (i * 4)) & 0xf) as usize]);
        }
        self
    }

    /// A decimal number.
    pub(crate) fn decimal(&mut self, value: u64) -> &mut Self {
        self.separator();
        let mut digits = [0u8; 20];
        let mut n = value;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.put_slice(&digits[i..]);
        self
    }

    /// A field that is not the last one: no `|`, `\r` or `\n`.
    pub(crate) fn field(
        &mut self,
        name: &'static str,
        value: &[u8],
    ) -> Result<&mut Self, FormatError> {
        if value.contains(&b'|') {
            return Err(self.fail(name, "a '|' is only allowed in the last field"));
        }
        self.last(name, value)
    }

    /// The last field: anything but `\r` and `\n`.
    pub(crate) fn last(
        &mut self,
        name: &'static str,
        value: &[u8],
    ) -> Result<&mut Self, FormatError> {
        if value.iter().any(|&b| b == b'\n' || b == b'\r') {
            return Err(self.fail(name, "contains a carriage return or newline"));
        }
        Ok(self.raw(value))
    }

    fn fail(&mut self, field: &'static str, reason: &'static str) -> FormatError {
        self.out.truncate(self.start);
        FormatError { field, reason }
    }

    /// Terminates the line.
    pub(crate) fn end(&mut self) {
        self.out.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_splits_and_keeps_pipes_in_the_last_field() {
        let mut c = Cursor::new(b"a|b|c|d").unwrap();
        assert_eq!(c.field("x", "x").unwrap(), b"a");
        assert_eq!(c.field("x", "x").unwrap(), b"b");
        assert_eq!(c.last("x", "x").unwrap(), b"c|d");
        assert!(c.finish("x").is_ok());
        assert!(c.field("x", "x").is_err());
    }

    #[test]
    fn cursor_tells_empty_last_field_from_none() {
        let mut c = Cursor::new(b"error|").unwrap();
        c.field("s", "s").unwrap();
        assert_eq!(c.opt_last(), Some(&b""[..]));
        let mut c = Cursor::new(b"error").unwrap();
        c.field("s", "s").unwrap();
        assert_eq!(c.opt_last(), None);
    }

    #[test]
    fn cursor_refuses_control_characters() {
        assert!(Cursor::new(b"a|b\r").is_err());
        assert!(Cursor::new(b"a\nb").is_err());
    }

    #[test]
    fn writer_refuses_forged_lines_and_leaves_nothing_behind() {
        let mut out = BytesMut::from(&b"kept\n"[..]);
        let mut w = Writer::new(&mut out);
        w.raw(b"a");
        assert!(w.field("key", b"x|y").is_err());
        assert_eq!(&out[..], b"kept\n");
        let mut w = Writer::new(&mut out);
        assert!(w.last("value", b"x\ny").is_err());
        assert_eq!(&out[..], b"kept\n");
    }

    #[test]
    fn writer_formats_numbers() {
        let mut out = BytesMut::new();
        Writer::new(&mut out)
            .hex(0xab, 8)
            .decimal(0)
            .decimal(1234567)
            .end();
        assert_eq!(&out[..], b"000000ab|0|1234567\n");
    }
}
