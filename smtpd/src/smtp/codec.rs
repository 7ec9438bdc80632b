//! The SMTP framing: [`LineCodec`], a tokio-util `Decoder` of the client's
//! bytes and `Encoder` of [`Reply`]s.
//!
//! Command mode yields one [`Frame::Line`] per CRLF-terminated line, CRLF
//! stripped, bytes as sent (no UTF-8 requirement). A line whose terminator
//! is a bare LF, or that holds a bare CR, is refused as
//! [`Frame::Invalid`] (the session answers 500): SMTP lines end in CRLF
//! only. A line longer than `max_len` is reported once as
//! [`LineError::TooLong`], then discarded up to the next LF, so the session
//! answers "500 5.5.2 Line too long" and goes on.
//!
//! [`LineCodec::start_data`] switches to DATA mode after the 354. Each
//! line comes out as [`Frame::Data`], dot-unstuffed, without its CRLF; the
//! message size (unstuffed bytes plus two per line, as the message will
//! be stored with CRLF) is counted here. The end of data is only the
//! sequence CRLF `.` CRLF in the raw stream (the CRLF of the DATA command
//! counts as the first): `LF.LF`, `LF.CRLF`, `CR.CR` and the like never end
//! it, so a message cannot smuggle a second one past a server that reads
//! ends differently. Bare CR or LF inside the data is **refused**, as
//! OpenSMTPD and Postfix (`smtpd_forbid_bare_newline`) refuse it, rather
//! than normalised: the message is discarded up to the real end and
//! [`DataEnd::BareNewline`] reported (550). Likewise a message past
//! `max_size` is discarded up to the final `.` and reported as
//! [`DataEnd::TooLarge`] (552), and a data line past `max_len` as
//! [`DataEnd::LineTooLong`]. Once an error is set no more `Data` frames
//! come, so the driver never buffers what will be refused; it drops what it
//! already got when the end is not [`DataEnd::Complete`]. 8-bit bytes
//! pass untouched. After the end the codec is back in command mode.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::reply::Reply;

/// What is wrong with a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Longer than the limit (reported once, the rest discarded).
    TooLong,
    /// Ended by a LF without CR, or holding a CR not followed by LF.
    BareNewline,
}

/// How a DATA phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEnd {
    /// CRLF.CRLF reached, everything passed; the message's size in bytes.
    Complete {
        /// Unstuffed bytes plus CRLF per line.
        size: u64,
    },
    /// The message grew past the limit; the rest was discarded.
    TooLarge,
    /// A bare CR or LF was seen; the rest was discarded.
    BareNewline,
    /// A line was longer than the limit; the rest was discarded.
    LineTooLong,
}

/// One unit of client input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A command line (or an AUTH response), CRLF stripped.
    Line(Bytes),
    /// A command line that was refused.
    Invalid(LineError),
    /// A message line, dot-unstuffed, CRLF stripped.
    Data(Bytes),
    /// The end of the message (the final `.` line).
    DataEnd(DataEnd),
}

#[derive(Debug)]
struct DataState {
    max_size: u64,
    size: u64,
    error: Option<DataEnd>,
    /// The previous line ended with CRLF (true at the start: the DATA
    /// command's own CRLF).
    after_crlf: bool,
}

/// The SMTP line codec; see the module documentation.
#[derive(Debug)]
pub struct LineCodec {
    max_len: usize,
    /// Where to resume the search for LF.
    scanned: usize,
    /// Discarding an over-long line up to the next LF.
    discarding: bool,
    /// The last byte discarded was a CR (for a line discarded in pieces).
    discarded_cr: bool,
    data: Option<DataState>,
}

impl LineCodec {
    /// A codec refusing lines longer than `max_len` bytes (CRLF excluded).
    pub const fn new(max_len: usize) -> Self {
        Self {
            max_len,
            scanned: 0,
            discarding: false,
            discarded_cr: false,
            data: None,
        }
    }

    /// The line limit.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// Switches to DATA mode, for a message of at most `max_size` bytes.
    pub fn start_data(&mut self, max_size: u64) {
        self.data = Some(DataState {
            max_size,
            size: 0,
            error: None,
            after_crlf: true,
        });
    }

    /// Whether the codec is in DATA mode.
    pub const fn in_data(&self) -> bool {
        self.data.is_some()
    }

    /// The next raw line from `buf`, the limit applied.
    fn next_raw(&mut self, buf: &mut BytesMut) -> Option<Raw> {
        let Some(offset) = buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            if self.discarding || buf.len() > self.max_len + 1 {
                if let Some(&last) = buf.last() {
                    self.discarded_cr = last == b'\r';
                }
                buf.clear();
                self.scanned = 0;
                if !self.discarding {
                    self.discarding = true;
                    return Some(Raw::Overflow { ended: None });
                }
            } else {
                self.scanned = buf.len();
            }
            return None;
        };
        let end = self.scanned + offset;
        self.scanned = 0;
        let crlf = match end {
            0 => self.discarded_cr && self.discarding,
            _ => buf[end - 1] == b'\r',
        };
        if self.discarding {
            let _ = buf.split_to(end + 1);
            self.discarding = false;
            return Some(Raw::OverflowEnd { crlf });
        }
        if end > self.max_len + 1 {
            let _ = buf.split_to(end + 1);
            return Some(Raw::Overflow { ended: Some(crlf) });
        }
        Some(Raw::Line(buf.split_to(end + 1)))
    }

    fn decode_command(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            match self.next_raw(buf)? {
                Raw::Line(line) => return Some(command_line(line)),
                Raw::Overflow { .. } => return Some(Frame::Invalid(LineError::TooLong)),
                Raw::OverflowEnd { .. } => {}
            }
        }
    }

    fn decode_data(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            let raw = self.next_raw(buf)?;
            let state = self.data.as_mut()?;
            let line = match raw {
                Raw::Line(line) => line,
                Raw::Overflow { ended } => {
                    state.error.get_or_insert(DataEnd::LineTooLong);
                    match ended {
                        Some(crlf) => state.after_crlf = crlf,
                        None => return None,
                    }
                    continue;
                }
                Raw::OverflowEnd { crlf } => {
                    state.after_crlf = crlf;
                    continue;
                }
            };
            if state.after_crlf && line.as_ref() == b".\r\n" {
                let end = state
                    .error
                    .unwrap_or(DataEnd::Complete { size: state.size });
                self.data = None;
                return Some(Frame::DataEnd(end));
            }
            if let Some(frame) = state.data_line(line) {
                return Some(frame);
            }
        }
    }
}

/// A raw line as [`LineCodec::next_raw`] cuts it.
enum Raw {
    /// A whole line with its LF, within the limit.
    Line(BytesMut),
    /// A line passed the limit; `ended` holds whether it ended in CRLF if
    /// its LF was already seen (else the rest is being discarded).
    Overflow { ended: Option<bool> },
    /// The LF of a line being discarded.
    OverflowEnd { crlf: bool },
}

/// Checks a command line's terminator and strips it.
fn command_line(mut line: BytesMut) -> Frame {
    let len = line.len();
    if len < 2 || line[len - 2] != b'\r' {
        return Frame::Invalid(LineError::BareNewline);
    }
    line.truncate(len - 2);
    if line.contains(&b'\r') {
        return Frame::Invalid(LineError::BareNewline);
    }
    Frame::Line(line.freeze())
}

impl DataState {
    /// Accounts for one data line (with its LF); the frame to yield, if
    /// the message is still good.
    fn data_line(&mut self, mut line: BytesMut) -> Option<Frame> {
        let len = line.len();
        let crlf = len >= 2 && line[len - 2] == b'\r';
        self.after_crlf = crlf;
        line.truncate(if crlf { len - 2 } else { len - 1 });
        if !crlf || line.contains(&b'\r') {
            self.error.get_or_insert(DataEnd::BareNewline);
        }
        if line.first() == Some(&b'.') {
            let _ = line.split_to(1);
        }
        self.size = self.size.saturating_add(line.len() as u64 + 2);
        if self.size > self.max_size {
            self.error.get_or_insert(DataEnd::TooLarge);
        }
        match self.error {
            None => Some(Frame::Data(line.freeze())),
            Some(_) => None,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        Ok(if self.data.is_some() {
            self.decode_data(buf)
        } else {
            self.decode_command(buf)
        })
    }

    /// At end of input an unterminated line is dropped: it was never a
    /// command, and a message without its final `.` is never complete.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.clear();
            self.scanned = 0;
        }
        Ok(frame)
    }
}

impl Encoder<&Reply> for LineCodec {
    type Error = io::Error;

    fn encode(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), io::Error> {
        reply.format(dst);
        Ok(())
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
