//! Message content through the layers, in bounded memory: a [`Writer`]
//! turns the plaintext chunks of `message_write` into sealed records (one
//! per [`SEGMENT_SIZE`] bytes) written to the backend as they fill, and a
//! [`Cursor`] serves `message_read` at plaintext offsets by walking the
//! records forward from where it stopped, so that reading a message from
//! start to end reads every stored byte about once. At most one segment
//! and one read-ahead window are held per writer or cursor.
//!
//! Sealing and opening a full segment (up to a millisecond of gzip) runs
//! on tokio's blocking pool; small pieces are done in place.

use std::sync::Arc;

use super::format::{
    Codec, OpenError, RecordKind, MESSAGE_HEADER_LEN, RECORD_HEAD_LEN, SEGMENT_SIZE,
};
use crate::queue::{Error, MsgId, QueueBackend, MAX_READ_LENGTH};

/// Pieces at least this large are sealed or opened off the event loop.
const BLOCKING_SIZE: usize = 16 * 1024;

/// An uncommitted message being written.
#[derive(Debug, Default)]
pub struct Writer {
    /// Plaintext bytes accepted.
    pub plain: u64,
    /// Bytes written to the backend.
    stored: u64,
    /// Records written.
    index: u64,
    /// Plaintext not yet sealed (less than a segment).
    pending: Vec<u8>,
    /// A write to the backend failed: what it holds is unknown.
    broken: bool,
}

impl Writer {
    /// Appends `data` at plaintext `offset`, writing every full segment.
    pub async fn write(
        &mut self,
        inner: &dyn QueueBackend,
        codec: &Arc<Codec>,
        msgid: MsgId,
        offset: u64,
        mut data: &[u8],
    ) -> Result<(), Error> {
        self.usable(msgid)?;
        if offset != self.plain {
            return Err(Error::BadOffset {
                msgid,
                offset,
                size: self.plain,
            });
        }
        while !data.is_empty() {
            let take = (SEGMENT_SIZE - self.pending.len()).min(data.len());
            if self.pending.is_empty() && take == SEGMENT_SIZE {
                // A whole segment straight from the caller's buffer.
                self.flush(inner, codec, msgid, RecordKind::Data, &data[..take])
                    .await?;
            } else {
                self.pending.extend_from_slice(&data[..take]);
                if self.pending.len() == SEGMENT_SIZE {
                    let segment = std::mem::take(&mut self.pending);
                    self.flush(inner, codec, msgid, RecordKind::Data, &segment)
                        .await?;
                    self.pending = segment;
                    self.pending.clear();
                }
            }
            self.plain += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    /// Writes the last record and commits `size` plaintext bytes.
    pub async fn commit(
        &mut self,
        inner: &dyn QueueBackend,
        codec: &Arc<Codec>,
        msgid: MsgId,
        size: u64,
    ) -> Result<(), Error> {
        self.usable(msgid)?;
        if size != self.plain {
            return Err(Error::SizeMismatch {
                msgid,
                announced: size,
                size: self.plain,
            });
        }
        let rest = std::mem::take(&mut self.pending);
        self.flush(inner, codec, msgid, RecordKind::Last, &rest)
            .await?;
        let committed = inner.message_commit(msgid, self.stored).await;
        // The last record is written: another commit cannot follow it.
        self.broken = committed.is_err();
        committed
    }

    fn usable(&self, msgid: MsgId) -> Result<(), Error> {
        if self.broken {
            return Err(Error::UnknownMessage {
                msgid,
                expected: "uncommitted (an earlier write failed)",
            });
        }
        Ok(())
    }

    /// Seals one segment and writes it (after the header, first).
    async fn flush(
        &mut self,
        inner: &dyn QueueBackend,
        codec: &Arc<Codec>,
        msgid: MsgId,
        kind: RecordKind,
        segment: &[u8],
    ) -> Result<(), Error> {
        let header = codec.message_header();
        let mut out = Vec::new();
        if self.stored == 0 {
            out.extend_from_slice(&header);
        }
        let index = self.index;
        let record = if segment.len() >= BLOCKING_SIZE {
            let (codec, segment) = (Arc::clone(codec), segment.to_vec());
            tokio::task::spawn_blocking(move || {
                codec.seal_record(&header, msgid, index, kind, &segment)
            })
            .await
            .map_err(|e| Error::Task {
                reason: e.to_string(),
            })?
        } else {
            codec.seal_record(&header, msgid, index, kind, segment)
        };
        out.extend_from_slice(&record);
        let written = inner.message_write(msgid, self.stored, &out).await;
        if written.is_err() {
            self.broken = true;
        }
        written?;
        self.stored += out.len() as u64;
        self.index += 1;
        Ok(())
    }
}

/// Why a read did not answer bytes.
#[derive(Debug)]
pub enum ReadError {
    /// The backend has no such committed message.
    Gone,
    /// The backend failed.
    Backend(Error),
    /// The stored bytes do not open.
    Open(OpenError),
}

impl From<OpenError> for ReadError {
    fn from(e: OpenError) -> Self {
        Self::Open(e)
    }
}

/// One decoded segment.
#[derive(Debug)]
struct Segment {
    index: u64,
    plain: Vec<u8>,
    last: bool,
}

/// A read position in one committed message.
#[derive(Debug)]
pub struct Cursor {
    msgid: MsgId,
    /// The message header (part of every record's authenticated data).
    header: Vec<u8>,
    segment_size: usize,
    /// Stored bytes read ahead; `buf[pos..]` starts at stored offset
    /// `buf_off`, where record `next_index` starts.
    buf: Vec<u8>,
    pos: usize,
    buf_off: u64,
    next_index: u64,
    /// The segment decoded last.
    segment: Option<Segment>,
}

impl Cursor {
    /// A cursor at the start of `msgid`, its header checked.
    pub async fn open(
        inner: &dyn QueueBackend,
        codec: &Codec,
        msgid: MsgId,
    ) -> Result<Self, ReadError> {
        let mut cursor = Self {
            msgid,
            header: Vec::new(),
            segment_size: SEGMENT_SIZE,
            buf: Vec::new(),
            pos: 0,
            buf_off: 0,
            next_index: 0,
            segment: None,
        };
        cursor.fill(inner, MESSAGE_HEADER_LEN).await?;
        cursor.segment_size = codec.open_message_header(&cursor.buf)?;
        cursor.header = cursor.buf[..MESSAGE_HEADER_LEN].to_vec();
        cursor.consume(MESSAGE_HEADER_LEN);
        Ok(cursor)
    }

    /// The plaintext offset this cursor serves without going back.
    pub fn position(&self) -> u64 {
        let index = self.segment.as_ref().map_or(self.next_index, |s| s.index);
        index * self.segment_size as u64
    }

    /// Up to `length` plaintext bytes from `offset` (fewer only at the
    /// end).
    pub async fn read(
        &mut self,
        inner: &dyn QueueBackend,
        codec: &Arc<Codec>,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, ReadError> {
        let size = self.segment_size as u64;
        let mut out = Vec::with_capacity(length.min(MAX_READ_LENGTH) as usize);
        let mut at = offset;
        while (out.len() as u64) < length {
            let Some(segment) = self.segment_at(inner, codec, at / size).await? else {
                break;
            };
            let within = (at % size) as usize;
            if within >= segment.plain.len() {
                break;
            }
            let take = (segment.plain.len() - within).min((length - out.len() as u64) as usize);
            out.extend_from_slice(&segment.plain[within..within + take]);
            at += take as u64;
            if segment.last && within + take == segment.plain.len() {
                break;
            }
        }
        Ok(out)
    }

    /// Segment `index`, decoding forward (from the start when it lies
    /// behind); `None` past the last one.
    async fn segment_at(
        &mut self,
        inner: &dyn QueueBackend,
        codec: &Arc<Codec>,
        index: u64,
    ) -> Result<Option<&Segment>, ReadError> {
        if self.segment.as_ref().is_some_and(|s| s.index == index) {
            return Ok(self.segment.as_ref());
        }
        if index < self.next_index {
            self.rewind();
        }
        loop {
            if self.segment.as_ref().is_some_and(|s| s.last) {
                return Ok(None);
            }
            let segment = self.next_segment(inner, codec).await?;
            let found = segment.index == index;
            self.segment = Some(segment);
            if found {
                return Ok(self.segment.as_ref());
            }
        }
    }

    /// Back to the first record.
    fn rewind(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.buf_off = MESSAGE_HEADER_LEN as u64;
        self.next_index = 0;
        self.segment = None;
    }

    /// Decodes the record at the cursor.
    async fn next_segment(
        &mut self,
        inner: &dyn QueueBackend,
        codec: &Arc<Codec>,
    ) -> Result<Segment, ReadError> {
        self.fill(inner, RECORD_HEAD_LEN).await?;
        let head = &self.buf[self.pos..self.pos + RECORD_HEAD_LEN];
        let index = self.next_index;
        let kind = RecordKind::from_byte(head[0]).ok_or_else(|| {
            OpenError::Malformed(format!("record {index} of unknown kind {}", head[0]))
        })?;
        let len = u32::from_be_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        if len > Codec::max_body(self.segment_size) {
            return Err(OpenError::Malformed(format!("record {index} of {len} bytes")).into());
        }
        self.fill(inner, RECORD_HEAD_LEN + len).await?;
        let start = self.pos + RECORD_HEAD_LEN;
        let body = &self.buf[start..start + len];
        let plain = if len >= BLOCKING_SIZE {
            let (codec, header, body, msgid) = (
                Arc::clone(codec),
                self.header.clone(),
                body.to_vec(),
                self.msgid,
            );
            tokio::task::spawn_blocking(move || {
                codec.open_record(&header, msgid, index, kind, &body)
            })
            .await
            .map_err(|e| {
                ReadError::Backend(Error::Task {
                    reason: e.to_string(),
                })
            })??
        } else {
            codec.open_record(&self.header, self.msgid, index, kind, body)?
        };
        self.consume(RECORD_HEAD_LEN + len);
        self.next_index += 1;
        let last = kind == RecordKind::Last;
        if last && self.pos < self.buf.len() {
            return Err(OpenError::Malformed("bytes after the last record".to_owned()).into());
        }
        Ok(Segment { index, plain, last })
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.buf_off += n as u64;
    }

    /// Reads until `n` bytes are buffered at the cursor.
    async fn fill(&mut self, inner: &dyn QueueBackend, n: usize) -> Result<(), ReadError> {
        if self.buf.len() - self.pos >= n {
            return Ok(());
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        while self.buf.len() < n {
            let at = self.buf_off + self.buf.len() as u64;
            let chunk = match inner.message_read(self.msgid, at, MAX_READ_LENGTH).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Err(ReadError::Gone),
                Err(e) => return Err(ReadError::Backend(e)),
            };
            if chunk.is_empty() {
                return Err(OpenError::Malformed(format!("truncated at byte {at}")).into());
            }
            self.buf.extend_from_slice(&chunk);
        }
        Ok(())
    }
}
