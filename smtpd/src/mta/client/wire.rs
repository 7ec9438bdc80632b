//! The byte stream under a client session: commands gathered in a write
//! buffer and sent in one write (so pipelined commands, and the last
//! block of a message with its final dot, leave in one segment), replies
//! read line by line into [`PeerReply`]s, each bounded in time.
//!
//! The stream is boxed ([`BoxIo`]) so that a session keeps one type from
//! plain text to TLS. Lines longer than [`MAX_LINE`] and replies that break
//! the protocol are temporary failures: the session is over.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::failure::{Failure, Stage};
use super::reply::{PeerReply, ReplyParser};
use super::{Said, Transcript};

/// The longest reply line accepted (OpenSMTPD's line limit).
pub const MAX_LINE: usize = 65535;

/// How much of a line debug logs show.
const LOG_LINE: usize = 200;

/// A byte stream a session can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The boxed stream of a session.
pub type BoxIo = Box<dyn Io>;

/// A stream with its read and write buffers.
pub(super) struct Wire {
    stream: BoxIo,
    input: BytesMut,
    output: Vec<u8>,
    parser: ReplyParser,
    transcript: Option<Transcript>,
}

impl Wire {
    pub(super) fn new(stream: BoxIo, transcript: Option<Transcript>) -> Self {
        Self {
            stream,
            input: BytesMut::with_capacity(4096),
            output: Vec::with_capacity(4096),
            parser: ReplyParser::new(),
            transcript,
        }
    }

    /// Adds a command line to the write buffer.
    pub(super) fn queue(&mut self, line: &str) {
        self.queue_secret(line, line);
    }

    /// Adds a line that logs and the transcript show as `shown` (AUTH
    /// payloads masked).
    pub(super) fn queue_secret(&mut self, line: &str, shown: &str) {
        tracing::debug!(line = %cut(shown.as_bytes()), "mta >>>");
        self.said(shown);
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Tells the transcript of a client line written by other means (the
    /// final dot after the message).
    pub(super) fn said(&self, line: &str) {
        if let Some(transcript) = &self.transcript {
            transcript.say(Said::Client(line));
        }
    }

    /// The transcript, for the wire after a TLS handshake.
    pub(super) fn transcript(&self) -> Option<Transcript> {
        self.transcript.clone()
    }

    /// The write buffer, for message data.
    pub(super) fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Bytes in the write buffer.
    pub(super) fn pending(&self) -> usize {
        self.output.len()
    }

    /// Sends the write buffer within `limit`.
    pub(super) async fn flush(&mut self, stage: Stage, limit: Duration) -> Result<(), Failure> {
        let write = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => {
                self.output.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::temporary(stage, format!("write error: {e}"))),
            Err(_) => Err(Failure::temporary(stage, "timeout while sending")),
        }
    }

    /// Reads one complete reply within `limit`.
    pub(super) async fn reply(
        &mut self,
        stage: Stage,
        limit: Duration,
    ) -> Result<PeerReply, Failure> {
        match tokio::time::timeout(limit, self.read_reply(stage)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::temporary(stage, "timeout waiting for a reply")),
        }
    }

    async fn read_reply(&mut self, stage: Stage) -> Result<PeerReply, Failure> {
        loop {
            let line = self.line(stage).await?;
            tracing::debug!(line = %cut(&line), "mta <<<");
            if let Some(transcript) = &self.transcript {
                transcript.say(Said::Server(&String::from_utf8_lossy(&line)));
            }
            match self.parser.push(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(bad) => return Err(Failure::temporary(stage, bad.to_string())),
            }
        }
    }

    /// The next line, without its CRLF (or bare LF).
    async fn line(&mut self, stage: Stage) -> Result<Vec<u8>, Failure> {
        let mut searched = 0;
        loop {
            if let Some(pos) = self.input[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + pos;
                let mut line = self.input.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                return Ok(line.to_vec());
            }
            searched = self.input.len();
            if searched > MAX_LINE {
                return Err(Failure::temporary(stage, "reply line too long"));
            }
            self.input.reserve(4096);
            let read = self.stream.read_buf(&mut self.input).await;
            match read {
                Ok(0) => {
                    return Err(Failure::temporary(stage, "connection closed by the peer"));
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::temporary(stage, format!("read error: {e}"))),
            }
        }
    }

    /// Whether the peer sent bytes not read yet (after the 220 to
    /// STARTTLS, an injection attempt).
    pub(super) fn has_input(&self) -> bool {
        self.input.has_remaining()
    }

    /// The stream, for a TLS handshake; the buffers must be empty.
    pub(super) fn into_stream(self) -> BoxIo {
        self.stream
    }

    /// Closes the stream (TLS close_notify, TCP FIN), within `limit`.
    pub(super) async fn shutdown(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }
}

/// A line for debug logs: lossy UTF-8, at most [`LOG_LINE`] bytes.
fn cut(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(LOG_LINE)]).into_owned()
}
