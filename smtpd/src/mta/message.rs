//! The message of a batch, as the client's `send` reads it: never whole
//! in memory. A message that fits in one queue read
//! ([`MAX_READ_LENGTH`]) is kept from the size check and sent from
//! memory; a larger one is counted once in chunks (for `SIZE=`) and then
//! streamed from the queue for each transaction by local delivery's
//! reader ([`crate::delivery::message::reader`]), so a relay batch holds
//! at most one chunk of it. A read failure while streaming is an error
//! of the reader, and so is a message that ends before its size (the
//! stored copy shrank): the client then abandons the transaction before
//! the final dot, so the peer never accepts a truncated message.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use crate::queue::{MsgId, QueueBackend, MAX_READ_LENGTH};

/// A reader of the message for one transaction.
pub(super) type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Where a batch's message comes from, and its size.
pub(super) struct Message {
    size: u64,
    source: Source,
}

enum Source {
    /// Small enough to have been read in one chunk.
    Whole(Bytes),
    /// Streamed from the queue.
    Queued {
        queue: Arc<dyn QueueBackend>,
        msgid: MsgId,
    },
}

impl Message {
    /// Finds the size of `msgid`, reading it chunk by chunk; `Err` says
    /// why it cannot be read (a queue failure, or no such message).
    pub(super) async fn open(queue: Arc<dyn QueueBackend>, msgid: MsgId) -> Result<Self, String> {
        // The bytes read so far, while they fit in one chunk.
        let mut held: Option<Vec<u8>> = Some(Vec::new());
        let mut size = 0u64;
        loop {
            let chunk = read(&*queue, msgid, size).await?;
            if chunk.is_empty() {
                break;
            }
            size += chunk.len() as u64;
            held = match held {
                Some(mut data) if size <= MAX_READ_LENGTH => {
                    data.extend_from_slice(&chunk);
                    Some(data)
                }
                _ => None,
            };
        }
        Ok(match held {
            Some(data) => Self::whole(data),
            None => Self {
                size,
                source: Source::Queued { queue, msgid },
            },
        })
    }

    fn whole(data: Vec<u8>) -> Self {
        Self {
            size: data.len() as u64,
            source: Source::Whole(Bytes::from(data)),
        }
    }

    /// The size in bytes as stored (CRLF line ends).
    pub(super) const fn size(&self) -> u64 {
        self.size
    }

    /// Whether the message is held in memory (at most one chunk).
    #[cfg(test)]
    const fn in_memory(&self) -> bool {
        matches!(self.source, Source::Whole(_))
    }

    /// A reader from the start, for one transaction.
    pub(super) fn reader(&self) -> Reader {
        match &self.source {
            Source::Whole(data) => Box::new(Cursor::new(data.clone())),
            Source::Queued { queue, msgid } => Box::new(Whole {
                inner: crate::delivery::message::reader(Arc::clone(queue), *msgid, String::new()),
                size: self.size,
                seen: 0,
            }),
        }
    }
}

/// A reader of the stored message (CRLF as LF) that fails at its end
/// when it gave less than `size` stored bytes: each LF it gives stands
/// for at most two stored bytes, each other byte for one.
struct Whole<R> {
    inner: R,
    size: u64,
    /// Stored bytes accounted for so far (at most).
    seen: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Whole<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() && this.seen < this.size {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the message ended early (at most {} of {} bytes)",
                            this.seen, this.size
                        ),
                    )));
                }
                let lines = new.iter().filter(|&&b| b == b'\n').count();
                this.seen += (new.len() + lines) as u64;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// One chunk at `offset`.
async fn read(queue: &dyn QueueBackend, msgid: MsgId, offset: u64) -> Result<Vec<u8>, String> {
    queue
        .message_read(msgid, offset, MAX_READ_LENGTH)
        .await
        .map_err(|e| format!("queue: {e}"))?
        .ok_or_else(|| format!("message {msgid} is missing"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::queue::fs::FsQueue;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("smtpd-mta-message-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn store(queue: &dyn QueueBackend, content: &[u8]) -> MsgId {
        let msgid = queue.message_create().await.unwrap();
        let mut offset = 0;
        for chunk in content.chunks(100_000) {
            queue.message_write(msgid, offset, chunk).await.unwrap();
            offset += chunk.len() as u64;
        }
        queue.message_commit(msgid, offset).await.unwrap();
        msgid
    }

    async fn read_all(message: &Message) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        message.reader().read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn small_messages_are_held_large_ones_streamed() {
        let dir = TempDir::new("sizes");
        let queue: Arc<dyn QueueBackend> = Arc::new(FsQueue::open(dir.0.join("q")).unwrap());
        let small = b"Subject: s\r\n\r\nbody\r\n".to_vec();
        let msgid = store(&*queue, &small).await;
        let message = Message::open(Arc::clone(&queue), msgid).await.unwrap();
        assert!(message.in_memory());
        assert_eq!(message.size(), small.len() as u64);
        assert_eq!(read_all(&message).await.unwrap(), small);

        let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
        let large: Vec<u8> = line.repeat(3 * MAX_READ_LENGTH as usize / line.len());
        let msgid = store(&*queue, &large).await;
        let message = Message::open(Arc::clone(&queue), msgid).await.unwrap();
        assert!(!message.in_memory());
        assert_eq!(message.size(), large.len() as u64);
        // Two transactions read it whole each time (CRLF as LF: the
        // client's encoder puts CRLF back).
        let lf: Vec<u8> = line[..line.len() - 2]
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<u8>>()
            .repeat(large.len() / line.len());
        assert_eq!(read_all(&message).await.unwrap(), lf);
        assert_eq!(read_all(&message).await.unwrap(), lf);

        // A stored copy that shrank under the reader: an error at its end.
        let short = Whole {
            inner: Cursor::new(b"line\nline\n".to_vec()),
            size: 13,
            seen: 0,
        };
        let mut out = Vec::new();
        let mut short: Reader = Box::new(short);
        let error = short.read_to_end(&mut out).await.unwrap_err();
        assert!(error.to_string().contains("ended early"), "{error}");
        let exact = Whole {
            inner: Cursor::new(b"line\nline\n".to_vec()),
            size: 12,
            seen: 0,
        };
        let mut exact: Reader = Box::new(exact);
        exact.read_to_end(&mut out).await.unwrap();

        // Gone from the queue: the reader fails instead of ending early.
        queue.message_delete(msgid).await.unwrap();
        assert!(read_all(&message).await.is_err());
        let missing = Message::open(Arc::clone(&queue), msgid).await;
        assert!(missing.is_err_and(|e| e.contains("missing")));
    }
}
