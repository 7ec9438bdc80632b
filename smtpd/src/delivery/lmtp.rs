//! LMTP delivery, as OpenSMTPD's `mail.lmtp` does it (delivery.md section
//! 5.3): one session per message to a Unix socket or a TCP host.
//!
//! [`deliver`] sends `LHLO`, `MAIL FROM:<SENDER>`, `RCPT TO:<RCPT>`,
//! `DATA`, the message with CRLF line endings and dot-stuffing, `.`, and
//! `QUIT`. A reply that does not start with `2` (`3` for `DATA`) ends the
//! delivery: temporarily when it starts with `4` (mail.lmtp exits 75),
//! permanently otherwise (exit 69). The caller bounds the whole delivery
//! in time (the delivery process's time limit).

use std::path::PathBuf;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

/// Where to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpDestination {
    /// A Unix socket (an absolute path).
    Unix(PathBuf),
    /// A TCP host and port.
    Tcp {
        /// A host name or an address (without brackets).
        host: String,
        /// The port (25 when not given).
        port: u16,
    },
}

impl LmtpDestination {
    /// Parses mail.lmtp's `-d` argument: `/path`, `[addr]:port`,
    /// `host:port`, or `host` (port 25).
    pub fn parse(text: &str) -> Result<Self, LmtpError> {
        let invalid = || LmtpError::Permanent(format!("invalid destination {text:?}"));
        if text.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
            }
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(invalid());
        }
        let port = match port {
            Some(port) => port.parse().ok().filter(|p| *p != 0).ok_or_else(invalid)?,
            None => 25,
        };
        Ok(Self::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// The envelope of one LMTP delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpEnvelope {
    /// The `LHLO` argument (`localhost` by default in mail.lmtp).
    pub lhlo: String,
    /// `MAIL FROM` (empty for the null sender).
    pub sender: String,
    /// `RCPT TO`: the user name (`-u`) or the recipient address (`-r`).
    pub recipient: String,
}

/// Why an LMTP delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LmtpError {
    /// Try again later (connection problems, 4xx replies).
    #[error("{0}")]
    Temporary(String),
    /// Failed for good (5xx or unexpected replies).
    #[error("{0}")]
    Permanent(String),
}

impl LmtpError {
    /// mail.lmtp's exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Temporary(_) => 75,
            Self::Permanent(_) => 69,
        }
    }
}

/// Delivers `message` (LF line endings) to `destination`.
pub async fn deliver(
    destination: &LmtpDestination,
    envelope: &LmtpEnvelope,
    message: impl AsyncRead + Unpin,
) -> Result<(), LmtpError> {
    let connect_error = |e: std::io::Error| LmtpError::Temporary(format!("connect: {e}"));
    match destination {
        LmtpDestination::Unix(path) => {
            let stream = UnixStream::connect(path).await.map_err(connect_error)?;
            session(stream, envelope, message).await
        }
        LmtpDestination::Tcp { host, port } => {
            let stream = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(connect_error)?;
            session(stream, envelope, message).await
        }
    }
}

fn io_error(e: std::io::Error) -> LmtpError {
    LmtpError::Temporary(format!("lmtp: {e}"))
}

/// The session over a connected stream.
async fn session(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    envelope: &LmtpEnvelope,
    message: impl AsyncRead + Unpin,
) -> Result<(), LmtpError> {
    let mut stream = BufReader::new(stream);
    expect(&mut stream, b'2').await?;
    let commands = [
        format!("LHLO {}", envelope.lhlo),
        format!("MAIL FROM:<{}>", envelope.sender),
        format!("RCPT TO:<{}>", envelope.recipient),
    ];
    for command in commands {
        send(&mut stream, &command).await?;
        expect(&mut stream, b'2').await?;
    }
    send(&mut stream, "DATA").await?;
    expect(&mut stream, b'3').await?;
    send_body(&mut stream, message).await?;
    expect(&mut stream, b'2').await?;
    send(&mut stream, "QUIT").await?;
    // The delivery is done; the answer to QUIT does not change that.
    let _ = expect(&mut stream, b'2').await;
    Ok(())
}

async fn send(stream: &mut (impl AsyncWrite + Unpin), line: &str) -> Result<(), LmtpError> {
    stream
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(io_error)?;
    stream.flush().await.map_err(io_error)
}

/// Sends the message with CRLF endings and dot-stuffing, then `.`.
async fn send_body(
    stream: &mut (impl AsyncWrite + Unpin),
    message: impl AsyncRead + Unpin,
) -> Result<(), LmtpError> {
    let mut reader = BufReader::new(message);
    let mut line = Vec::new();
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(io_error)?
            == 0
        {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        if out.len() >= 60 * 1024 {
            stream.write_all(&out).await.map_err(io_error)?;
            out.clear();
        }
    }
    out.extend_from_slice(b".\r\n");
    stream.write_all(&out).await.map_err(io_error)?;
    stream.flush().await.map_err(io_error)
}

/// Reads one (possibly multi-line) reply and checks its first digit.
async fn expect(stream: &mut (impl AsyncBufRead + Unpin), digit: u8) -> Result<(), LmtpError> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stream.read_line(&mut line).await.map_err(io_error)?;
        if n == 0 {
            return Err(LmtpError::Temporary(
                "lmtp: connection closed by the server".to_owned(),
            ));
        }
        let bytes = line.as_bytes();
        if bytes.len() < 4 || bytes[3] != b'-' {
            break;
        }
    }
    let reply = line.trim_end().to_owned();
    match reply.as_bytes().first() {
        Some(first) if *first == digit => Ok(()),
        Some(b'4') => Err(LmtpError::Temporary(reply)),
        _ => Err(LmtpError::Permanent(reply)),
    }
}

#[cfg(test)]
mod tests;
