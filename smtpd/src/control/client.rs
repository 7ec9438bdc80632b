//! The client end of the control socket, used by `smtpctl`: connect, send
//! a request, read answer lines up to the final one.
//!
//! Blocking I/O on a `std` Unix stream: smtpctl sends one request and
//! waits, so it needs no runtime. Reads give up after [`ANSWER_TIMEOUT`],
//! longer than any table's request timeout, so a wedged daemon cannot hang
//! a script forever.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{self, Answer, DecodeError, Request, MAX_LINE};

/// How long to wait for each answer line.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a request got no complete answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("smtpd doesn't seem to be running: connect: {}: {}", path.display(), strerror(source))]
    Connect {
        /// The socket tried.
        path: PathBuf,
        /// What connect(2) said.
        source: io::Error,
    },
    /// Reading or writing failed, or timed out.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The daemon sent a line this client does not understand.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The daemon closed the connection before its final answer.
    #[error("control socket: the daemon closed the connection before answering")]
    Closed,
}

/// An I/O error as strerror(3) says it, without Rust's "(os error N)".
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// A connection to the daemon's control socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// The connection's halves, with what was read but not consumed (a
    /// local session's greeting may follow its answer at once).
    pub(super) fn into_parts(self) -> (BufReader<UnixStream>, UnixStream) {
        (self.reader, self.writer)
    }

    /// Sends `request` and returns every answer line, the final one last.
    pub fn request(&mut self, request: &Request) -> Result<Vec<Answer>, ClientError> {
        self.writer
            .write_all(protocol::encode(request).as_bytes())?;
        let mut answers = Vec::new();
        loop {
            let mut line = String::new();
            let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
            let read = self.reader.by_ref().take(limit).read_line(&mut line)?;
            if read == 0 {
                return Err(ClientError::Closed);
            }
            let answer: Answer = protocol::decode(&line)?;
            let done = answer.is_final();
            answers.push(answer);
            if done {
                return Ok(answers);
            }
        }
    }
}
