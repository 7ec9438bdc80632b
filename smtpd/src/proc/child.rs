//! One child, from spawn to death: the handshake, then the tasks that write
//! its requests and read its answers.
//!
//! [`launch`] spawns the program (`spawn.rs`), starts logging its stderr
//! (`stderr.rs`), writes the `config|...` lines and reads registrations up
//! to `register|ready`, within the handshake timeout. A failure there is a
//! [`StartError`] that says what the backend did, quoting its stderr (a
//! backend that does not speak the announced version says so there).
//!
//! After the handshake three tasks serve the child through the backend's
//! [`Link`]: the writer takes the whole outbox at each turn and writes it at
//! once; the reader decodes each answer line with the [`Family`] and
//! completes the matching request in the link's in-flight map (a malformed
//! line is logged with the backend's name and fails the request it names,
//! if any); the sweeper ticks thirty times per request timeout and fails
//! the requests that have waited a whole timeout (so a request times out
//! between its timeout and a thirtieth more, with no timer per request),
//! and when
//! one of them saw the child write nothing at all while it waited, it tells
//! the supervisor that the child hangs (a child that answers other requests
//! is alive: only the unanswered request fails). None of the tasks decides anything about the child's life:
//! the supervisor watches them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use smtpd_sdk::codec::{Frame, LineCodec};
use smtpd_sdk::proto::{ConfigLine, Line};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::codec::FramedRead;

use super::inflight::Failure;
use super::link::{Link, BATCH};
use super::spawn::{self, Spawned, KILL_GRACE};
use super::stderr::{self, Tail};
use super::{Decoded, Family, Registered, Spec, StartError};

/// The daemon's version, announced in `config|smtpd-version`.
const SMTPD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Below this many bytes waiting, the writer lets other tasks run before it
/// writes.
const SMALL_BATCH: usize = 4096;

/// How many bytes the reader asks for at once.
const READ_BUFFER: usize = 64 * 1024;

/// How many times per request timeout the sweeper looks for expired
/// requests.
const SWEEPS_PER_TIMEOUT: u32 = 30;

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

/// A child past its handshake, and the tasks serving it.
pub(crate) struct Running<F: Family> {
    pub(crate) pid: u32,
    pub(crate) child: Child,
    /// What it registered, until the supervisor opens the link with it.
    pub(crate) registration: Option<F::Registration>,
    /// Ends when the child's stdout ends.
    pub(crate) reader: JoinHandle<()>,
    /// Aborting it closes the child's stdin.
    pub(crate) writer: JoinHandle<()>,
    /// Expires requests; runs until aborted.
    pub(crate) sweeper: JoinHandle<()>,
    /// Signalled by the sweeper when the child hangs.
    pub(crate) hung: Arc<Notify>,
    pub(crate) started: Instant,
}

/// Starts a child and performs the handshake.
pub(crate) async fn launch<F: Family>(
    family: &Arc<F>,
    spec: &Spec,
    link: &Arc<Link<F>>,
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
    let mut lines = FramedRead::with_capacity(stdout, LineCodec::new(), READ_BUFFER);
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
    link.prepare();
    let hung = Arc::new(Notify::new());
    let reader = tokio::spawn(read_answers(
        Arc::clone(family),
        Arc::clone(link),
        lines,
        spec.name.clone(),
    ));
    let writer = tokio::spawn(write_requests(Arc::clone(link), stdin, spec.name.clone()));
    let sweeper = tokio::spawn(sweep(
        Arc::clone(link),
        Arc::clone(&hung),
        spec.request_timeout,
    ));
    Ok(Running {
        pid,
        child,
        registration: Some(registration),
        reader,
        writer,
        sweeper,
        hung,
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
                link.line_read();
                dispatch(family.as_ref(), &link, &line, &name);
                family.relieve().await;
            }
            Ok(Frame::TooLong(len)) => {
                link.line_read();
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
        Decoded::Handled => {}
    }
}

/// The sweeper's tick, and how many ticks make a request timeout.
fn sweep_schedule(timeout: Duration) -> (Duration, u64) {
    let tick = (timeout / SWEEPS_PER_TIMEOUT).max(Duration::from_millis(1));
    let ticks = (timeout.as_nanos() / tick.as_nanos()).max(1);
    (tick, u64::try_from(ticks).unwrap_or(u64::MAX))
}

/// Fails the requests that have waited a whole timeout, and tells the
/// supervisor when the child wrote nothing at all while one of them
/// waited.
async fn sweep<F: Family>(link: Arc<Link<F>>, hung: Arc<Notify>, timeout: Duration) {
    let (tick, ticks) = sweep_schedule(timeout);
    let mut clock = tokio::time::interval_at(Instant::now() + tick, tick);
    clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // How many lines the child had written when each recent epoch began.
    let mut written = VecDeque::from([(link.epoch(), link.lines_read())]);
    loop {
        clock.tick().await;
        let epoch = link.tick();
        written.push_back((epoch, link.lines_read()));
        while written.len() as u64 > ticks.saturating_add(2) {
            written.pop_front();
        }
        // Registered in epoch e, a request has waited `ticks` whole ticks
        // once the epoch is past e + ticks.
        let Some(before) = epoch.checked_sub(ticks) else {
            continue;
        };
        let expired = link.inflight.expire(before);
        let now = link.lines_read();
        let silent = |e: &u64| {
            written
                .iter()
                .any(|&(epoch, lines)| epoch == *e && lines == now)
        };
        if expired.iter().any(silent) {
            hung.notify_one();
        }
    }
}

async fn write_requests<F: Family>(link: Arc<Link<F>>, mut stdin: ChildStdin, name: String) {
    let mut batch = BytesMut::with_capacity(BATCH);
    loop {
        let closing = link.take(&mut batch);
        if batch.is_empty() {
            if closing {
                // Dropping stdin closes it.
                return;
            }
            link.wake_writer.notified().await;
            // Woken by the first request after a pause, the writer may run
            // before the other tasks that are about to send theirs (the
            // multi-thread scheduler runs a task it just woke next). Let
            // them add their requests first, for one write rather than one
            // each; under load the outbox is rarely this small.
            if link.waiting() < SMALL_BATCH {
                tokio::task::yield_now().await;
            }
            continue;
        }
        if let Err(e) = stdin.write_all(&batch).await {
            tracing::debug!(backend = %name, "backend {name}: cannot write: {e}");
            return;
        }
        batch.clear();
        link.written();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweeper_ticks_thirty_times_per_timeout() {
        assert_eq!(
            sweep_schedule(Duration::from_secs(30)),
            (Duration::from_secs(1), 30)
        );
        assert_eq!(
            sweep_schedule(Duration::from_secs(300)),
            (Duration::from_secs(10), 30)
        );
        assert_eq!(
            sweep_schedule(Duration::from_millis(3)),
            (Duration::from_millis(1), 3)
        );
    }

    #[test]
    fn quoted_lines_are_cut() {
        assert_eq!(quoted(b"short"), "short");
        let long = quoted(&[b'x'; 300]);
        assert_eq!(long.len(), 203);
        assert!(long.ends_with("..."));
    }
}
