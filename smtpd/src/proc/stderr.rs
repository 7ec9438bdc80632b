//! A backend's stderr, logged line by line with the backend's name
//! (`NAME: the line`, SPEC.md 1.1), for all three families.
//!
//! The reader also remembers the last line, which start-up errors quote,
//! and the line in which a backend says it does not speak the announced
//! protocol version (SPEC.md 1.7), which turns a handshake failure into a
//! clear "unsupported version" error.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use smtpd_sdk::codec::{Frame, LineCodec};
use tokio::process::ChildStderr;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

/// stderr lines longer than this are not shown.
const MAX_STDERR_LINE: usize = 64 * 1024;

/// What a backend said on stderr that start-up errors need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Said {
    /// The last line.
    pub(crate) last: Option<String>,
    /// The first line saying `unsupported protocol version`.
    pub(crate) unsupported_version: Option<String>,
}

/// Shared between the reader task and the handshake.
pub(crate) type Tail = Arc<Mutex<Said>>;

/// Reads `stderr` until it ends, logging every line.
pub(crate) fn forward(name: String, stderr: ChildStderr) -> (Tail, JoinHandle<()>) {
    let tail = Tail::default();
    let task = tokio::spawn(read(name, stderr, Arc::clone(&tail)));
    (tail, task)
}

/// A copy of what was said so far.
pub(crate) fn said(tail: &Tail) -> Said {
    tail.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

async fn read(name: String, stderr: ChildStderr, tail: Tail) {
    let mut lines = FramedRead::new(stderr, LineCodec::with_max_len(MAX_STDERR_LINE));
    while let Some(frame) = lines.next().await {
        let text = match frame {
            Ok(Frame::Line(line)) => {
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                String::from_utf8_lossy(line).into_owned()
            }
            Ok(Frame::TooLong(len)) => format!("(a line of {len} bytes, not shown)"),
            Err(_) => break,
        };
        tracing::info!(backend = %name, "{name}: {text}");
        let mut said = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if said.unsupported_version.is_none() && text.contains("unsupported protocol version") {
            said.unsupported_version = Some(text.clone());
        }
        said.last = Some(text);
    }
}
