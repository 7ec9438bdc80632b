//! A message on its way into the queue: its lines as the client (or the
//! data-line filters) gave them, through the loop cut ([`Hops`]),
//! masquerading and the headers a local submission lacks, buffered and
//! written in chunks of [`CHUNK`] bytes.
//!
//! The handler owns the [`Message`] while the client sends; with
//! data-line filters, the task that writes what the filters give back
//! owns it until their final `.` (`filtered.rs`).

use super::headers::MissingHeaders;
use super::hops::Hops;
use super::masquerade::Masquerade;
use crate::queue::{self, MsgId, QueueBackend};
use crate::smtp::Reply;

/// The bytes buffered before a write to the queue.
pub(super) const CHUNK: usize = 64 * 1024;

/// A message being received.
pub(super) struct Message {
    pub(super) msgid: MsgId,
    buffer: Vec<u8>,
    pub(super) written: u64,
    /// On the socket listener: what the header section lacks.
    pub(super) headers: Option<MissingHeaders>,
    /// The `Received:` headers counted (the loop cut).
    hops: Hops,
    /// With `senders ... masquerade`: the `From:` rewriter.
    pub(super) masquerade: Option<Masquerade>,
}

impl Message {
    /// The empty message `msgid`.
    pub(super) fn new(
        msgid: MsgId,
        headers: Option<MissingHeaders>,
        masquerade: Option<Masquerade>,
    ) -> Self {
        Self {
            msgid,
            buffer: Vec::with_capacity(CHUNK + 1024),
            written: 0,
            headers,
            hops: Hops::default(),
            masquerade,
        }
    }

    /// The bytes written and buffered.
    pub(super) fn size(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// One line of the message, unstuffed: the loop cut, masquerading,
    /// then the queue.
    pub(super) async fn take_line(
        &mut self,
        queue: &dyn QueueBackend,
        line: &[u8],
    ) -> Result<(), Reply> {
        if self.hops.line(line).is_err() {
            return Err(Reply::loop_detected());
        }
        let masquerade = self.masquerade.as_mut().filter(|m| !m.passes());
        match masquerade.map(|m| m.line(line)) {
            Some(released) => {
                for line in released {
                    self.write_line(queue, &line).await?;
                }
                Ok(())
            }
            None => self.write_line(queue, line).await,
        }
    }

    /// One line as it goes to the queue: after the headers a local
    /// submission lacks, if this line ends the header section.
    pub(super) async fn write_line(
        &mut self,
        queue: &dyn QueueBackend,
        line: &[u8],
    ) -> Result<(), Reply> {
        let added = match self.headers.as_mut() {
            Some(headers) => headers.before(line),
            None => Vec::new(),
        };
        for header in added {
            self.push_line(queue, header.as_bytes())
                .await
                .map_err(|e| super::handler::queue_reply(&e))?;
        }
        self.push_line(queue, line)
            .await
            .map_err(|e| super::handler::queue_reply(&e))
    }

    /// Appends one line, CRLF added, flushing full chunks.
    pub(super) async fn push_line(
        &mut self,
        queue: &dyn QueueBackend,
        line: &[u8],
    ) -> Result<(), queue::Error> {
        self.buffer.extend_from_slice(line);
        self.buffer.extend_from_slice(b"\r\n");
        if self.buffer.len() >= CHUNK {
            self.flush(queue).await?;
        }
        Ok(())
    }

    /// Writes the buffered bytes to the queue.
    pub(super) async fn flush(&mut self, queue: &dyn QueueBackend) -> Result<(), queue::Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        queue
            .message_write(self.msgid, self.written, &self.buffer)
            .await?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}
