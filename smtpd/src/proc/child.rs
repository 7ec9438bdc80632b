//! One child, from spawn to death: the handshake, then the tasks that write
//! its requests and read its answers.
//!
//! [`launch`] spawns the program (`spawn.rs`), starts logging its stderr
//! (`stderr.rs`), writes the `config|...` lines and reads registrations up
//! to `register|ready`, within the handshake timeout. A failure there is a
//! [`StartError`] that says what the backend did, quoting its stderr (a
//! backend that does not speak the announced version says so there).
//!
//! After the handshake a [`Link`] is what callers use: requests go through
//! a channel to the writer task, which writes them in batches, with at most
//! `max_buffered` bytes waiting; the reader task decodes each answer line
//! with the [`Family`] and completes the matching request in the
//! [`Inflight`] map. A malformed line is logged with the backend's name and
//! fails the request it names, if any. Neither task decides anything about
//! the child's life: the supervisor watches them end.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use smtpd_sdk::codec::{Frame, LineCodec};
use smtpd_sdk::proto::{ConfigLine, Line};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use super::inflight::{Failure, Inflight};
use super::spawn::{self, Spawned, KILL_GRACE};
use super::stderr::{self, Tail};
use super::{Decoded, Family, Registered, Spec, StartError};

/// The daemon's version, announced in `config|smtpd-version`.
const SMTPD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How many bytes of requests the writer gathers into one write.
const BATCH: usize = 64 * 1024;

/// How much of an offending line is logged.
const QUOTED_LINE_MAX: usize = 200;

/// A line for the log: lossily decoded, cut to 200 bytes.
pub(crate) fn quoted(line: &[u8]) -> String {
    let cut = line.len().min(QUOTED_LINE_MAX);
    let mut text = String::from_utf8_lossy(&line[..cut]).into_owned();
    if cut < line.len() {
        text.push_str("...");
    }
    text
}

/// Why a request could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Too many bytes already wait for the child.
    Overloaded,
    /// The writer is gone with its child.
    Closed,
}

/// What callers use to reach a child that passed its handshake.
pub(crate) struct Link<F: Family> {
    /// The child's pid.
    pub(crate) pid: u32,
    /// What it registered.
    pub(crate) registration: Arc<F::Registration>,
    /// Its requests in flight.
    pub(crate) inflight: Inflight<F::Key, F::Answer>,
    /// Signalled when a request timed out without the child writing
    /// anything since it was sent: the child hangs.
    pub(crate) hung: Notify,
    requests: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    max_buffered: usize,
    lines_read: AtomicU64,
}

impl<F: Family> Link<F> {
    /// Queues a request line for the writer.
    pub(crate) fn send(&self, line: Bytes) -> Result<(), SendError> {
        let len = line.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_buffered {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(SendError::Overloaded);
        }
        self.requests.send(line).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            SendError::Closed
        })
    }

    /// Asks the writer to write what is queued, then close the child's
    /// stdin.
    pub(crate) fn close_input(&self) {
        // An empty line is the writer's signal to close.
        self.requests.send(Bytes::new()).ok();
    }

    /// How many lines the child wrote since its handshake.
    pub(crate) fn lines_read(&self) -> u64 {
        self.lines_read.load(Ordering::Acquire)
    }
}

/// A child past its handshake, and the tasks serving it.
pub(crate) struct Running<F: Family> {
    pub(crate) link: Arc<Link<F>>,
    pub(crate) child: Child,
    /// Ends when the child's stdout ends.
    pub(crate) reader: JoinHandle<()>,
    /// Aborting it closes the child's stdin.
    pub(crate) writer: JoinHandle<()>,
    pub(crate) started: Instant,
}

/// Starts a child and performs the handshake.
pub(crate) async fn launch<F: Family>(
    family: &Arc<F>,
    spec: &Spec,
) -> Result<Running<F>, StartError> {
    let Spawned {
        mut child,
        pid,
        mut stdin,
        stdout,
        stderr,
    } = spawn::spawn(spec)?;
    tracing::debug!(backend = %spec.name, pid, "backend {} started", spec.name);
    let (tail, stderr_task) = stderr::forward(spec.name.clone(), stderr);
    let mut lines = FramedRead::new(stdout, LineCodec::new());
    let handshake = handshake(family.as_ref(), &spec.name, &mut stdin, &mut lines);
    let registration = match tokio::time::timeout(spec.handshake_timeout, handshake).await {
        Ok(Ok(registration)) => registration,
        Ok(Err(failure)) => {
            let error = explain(
                failure,
                family.protocol(),
                spec,
                &mut child,
                stderr_task,
                &tail,
            );
            let error = error.await;
            dispose(child);
            return Err(error);
        }
        Err(_) => {
            dispose(child);
            return Err(StartError::HandshakeTimeout {
                backend: spec.name.clone(),
                after: spec.handshake_timeout,
                stderr: stderr::said(&tail).last,
            });
        }
    };
    let (requests, queue) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let link = Arc::new(Link {
        pid,
        registration: Arc::new(registration),
        inflight: Inflight::new(),
        hung: Notify::new(),
        requests,
        queued: Arc::clone(&queued),
        max_buffered: spec.max_buffered,
        lines_read: AtomicU64::new(0),
    });
    let reader = tokio::spawn(read_answers(
        Arc::clone(family),
        Arc::clone(&link),
        lines,
        spec.name.clone(),
    ));
    let writer = tokio::spawn(write_requests(queue, stdin, queued, spec.name.clone()));
    Ok(Running {
        link,
        child,
        reader,
        writer,
        started: Instant::now(),
    })
}

/// How a handshake went wrong.
enum HandshakeFailure {
    /// The child's stdout ended, or its stdin closed: what happened.
    Gone(String),
    /// Something else than a registration, or a registration that is
    /// wrong.
    BadLine(String),
}

async fn handshake<F: Family>(
    family: &F,
    name: &str,
    stdin: &mut ChildStdin,
    lines: &mut FramedRead<ChildStdout, LineCodec>,
) -> Result<F::Registration, HandshakeFailure> {
    let mut config = vec![
        ConfigLine::entry("smtpd-version", SMTPD_VERSION),
        ConfigLine::entry("protocol", family.protocol()),
    ];
    config.extend(family.config());
    config.push(ConfigLine::Ready);
    let mut out = BytesMut::new();
    for line in &config {
        line.format(&mut out).map_err(|e| {
            HandshakeFailure::BadLine(format!("cannot send the configuration: {e}"))
        })?;
    }
    tracing::debug!(backend = %name, "> {}", quoted(out.trim_ascii_end()));
    if let Err(e) = stdin.write_all(&out).await {
        return Err(HandshakeFailure::Gone(format!("cannot write to it: {e}")));
    }
    let mut registration = F::Registration::default();
    loop {
        let line = match lines.next().await {
            None => return Err(HandshakeFailure::Gone("its output ended".to_owned())),
            Some(Err(e)) => {
                return Err(HandshakeFailure::Gone(format!(
                    "cannot read its output: {e}"
                )))
            }
            Some(Ok(Frame::TooLong(len))) => {
                return Err(HandshakeFailure::BadLine(format!(
                    "a line longer than 1 MiB ({len} bytes read)"
                )))
            }
            Some(Ok(Frame::Line(line))) => line,
        };
        tracing::debug!(backend = %name, "< {}", quoted(&line));
        match family.register(&line, &mut registration) {
            Ok(Registered::More) => {}
            Ok(Registered::Ignored(what)) => {
                tracing::warn!(backend = %name, "backend {name}: {what}: ignored");
            }
            Ok(Registered::Ready) => return Ok(registration),
            Err(reason) => {
                return Err(HandshakeFailure::BadLine(format!(
                    "{reason}: {}",
                    quoted(&line)
                )))
            }
        }
    }
}

/// Turns a failed handshake into an error that says what the backend did:
/// for a backend that went away, its exit status and what it said on
/// stderr.
async fn explain(
    failure: HandshakeFailure,
    protocol: &'static str,
    spec: &Spec,
    child: &mut Child,
    stderr_task: JoinHandle<()>,
    tail: &Tail,
) -> StartError {
    let reason = match failure {
        HandshakeFailure::BadLine(reason) => reason,
        HandshakeFailure::Gone(what) => {
            // It closed its output: it is exiting. Its last words are on
            // stderr, read until that closes too.
            let status = tokio::time::timeout(KILL_GRACE, child.wait()).await;
            tokio::time::timeout(KILL_GRACE, stderr_task).await.ok();
            if let Some(line) = stderr::said(tail).unsupported_version {
                return StartError::UnsupportedVersion {
                    backend: spec.name.clone(),
                    protocol,
                    line,
                };
            }
            match status {
                Ok(Ok(status)) => format!("the backend exited before register|ready ({status})"),
                _ => format!("{what} before register|ready"),
            }
        }
    };
    StartError::Handshake {
        backend: spec.name.clone(),
        reason,
        stderr: stderr::said(tail).last,
    }
}

/// Terminates a child that is no use, in the background.
pub(crate) fn dispose(mut child: Child) {
    tokio::spawn(async move {
        spawn::terminate(&mut child).await.ok();
    });
}

async fn read_answers<F: Family>(
    family: Arc<F>,
    link: Arc<Link<F>>,
    mut lines: FramedRead<ChildStdout, LineCodec>,
    name: String,
) {
    while let Some(frame) = lines.next().await {
        match frame {
            Ok(Frame::Line(line)) => {
                link.lines_read.fetch_add(1, Ordering::AcqRel);
                dispatch(family.as_ref(), &link, &line, &name);
            }
            Ok(Frame::TooLong(len)) => {
                link.lines_read.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(
                    backend = %name,
                    "bad line from backend {name}: a line longer than 1 MiB ({len} bytes read), dropped"
                );
            }
            Err(e) => {
                tracing::warn!(backend = %name, "backend {name}: cannot read its output: {e}");
                break;
            }
        }
    }
}

/// Hands one answer line to the request it names.
fn dispatch<F: Family>(family: &F, link: &Link<F>, line: &[u8], name: &str) {
    tracing::debug!(backend = %name, "< {}", quoted(line));
    match family.decode(line) {
        Decoded::Answer { key, answer } => {
            if !link.inflight.complete(&key, Ok(answer)) {
                tracing::warn!(
                    backend = %name,
                    "backend {name}: answer to no request in flight (unknown, late or duplicate), dropped: {}",
                    quoted(line)
                );
            }
        }
        Decoded::Malformed { key, reason } => {
            tracing::warn!(backend = %name, "bad line from backend {name}: {reason}: {}", quoted(line));
            if let Some(key) = key {
                link.inflight
                    .complete(&key, Err(Failure::Malformed(reason)));
            }
        }
    }
}

async fn write_requests(
    mut requests: mpsc::UnboundedReceiver<Bytes>,
    mut stdin: ChildStdin,
    queued: Arc<AtomicUsize>,
    name: String,
) {
    let mut batch = BytesMut::with_capacity(BATCH);
    while let Some(first) = requests.recv().await {
        // An empty line (from `close_input`) ends the input.
        let mut closing = first.is_empty();
        batch.clear();
        batch.extend_from_slice(&first);
        while !closing && batch.len() < BATCH {
            match requests.try_recv() {
                Ok(more) if more.is_empty() => closing = true,
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = stdin.write_all(&batch).await {
            tracing::debug!(backend = %name, "backend {name}: cannot write: {e}");
            break;
        }
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        if closing {
            break;
        }
    }
}
