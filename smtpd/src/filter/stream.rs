//! A message's data-line stream through the processes of a chain that
//! filter `data-line` (protocols.md section 2.7).
//!
//! The stream has two halves. The session sends every line (dot-stuffed
//! as the client sent it, the final `.` last) through the [`DataStream`]
//! to the first process; what a process writes for the session (any
//! number of `filter-dataline` lines) reaches a bounded channel through
//! the process's [`Streams`](super::proc_exec::Streams), and a forwarder
//! task sends it on to the next process; what the last one writes comes
//! out of the [`DataOutput`], which the session reads concurrently (it
//! writes the message to the queue as it comes, while the client is still
//! sending). Every hop is bounded: each send waits while the process has
//! not read half its buffer, and a process's output is not read while its
//! channel is full, so a large message streams through in bounded memory
//! at the pace of the slowest stage, even through a filter that holds the
//! whole message and gives it back at the end. A process that goes down,
//! or writes nothing for its timeout once the final `.` went out, fails
//! the stream (451): the message is dropped, never half queued. Before
//! the `.` the output is not timed: a filter may hold lines back, and the
//! client has its own (longer) data timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smtpd_sdk::proto::filter::{Input, Phase};
use smtpd_sdk::proto::{SessionId, Timestamp, Token};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::proc_exec::FilterProc;
use super::session::request_line;
use crate::proc::State;
use crate::smtp::Reply;

fn failed() -> Reply {
    Reply::bare(451, "4.7.0 Filter failed, try again later")
}

fn data_line(session: SessionId, token: Token, line: &[u8]) -> Input {
    request_line(Phase::DataLine, session, token, line, Timestamp::now())
}

/// The sending half of one message's way through the data-line filters.
pub struct DataStream {
    session: SessionId,
    stages: Vec<(FilterProc, Token)>,
    /// Set when a process goes down.
    down: Arc<AtomicBool>,
    /// Tells the output that the final `.` went out.
    dot: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
    /// The final `.` was sent.
    ended: bool,
    /// A send failed: the filters are no use for this message.
    failed: bool,
}

/// The receiving half: what the last process gives back.
pub struct DataOutput {
    session: SessionId,
    output: mpsc::Receiver<Vec<u8>>,
    /// Names a process that went down.
    down: mpsc::UnboundedReceiver<String>,
    /// Every stage, to count a failure on.
    stages: Vec<FilterProc>,
    /// Whether the final `.` went out: only then is the output timed (a
    /// filter may hold lines back until the end of the message, and the
    /// client may take its time).
    dot: watch::Receiver<bool>,
    timeout: Duration,
    /// The final `.` came back.
    done: bool,
}

impl DataStream {
    /// Opens the stream of `session` through `stages` (process and its
    /// data-line token), in order; there is at least one.
    pub(super) fn start(
        session: SessionId,
        stages: Vec<(FilterProc, Token)>,
    ) -> (Self, DataOutput) {
        let mut receivers: Vec<_> = stages
            .iter()
            .map(|(proc, token)| proc.streams().open(session, *token))
            .collect();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let down = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (proc, _) in &stages {
            let mut state = proc.supervisor().state();
            let (tx, flag, name) = (down_tx.clone(), Arc::clone(&down), proc.name().to_owned());
            tasks.push(tokio::spawn(async move {
                let gone = state
                    .wait_for(|s| !matches!(s, State::Running { .. }))
                    .await;
                drop(gone);
                flag.store(true, Ordering::Relaxed);
                tx.send(name).ok();
            }));
        }
        let output = receivers.pop().unwrap_or_else(|| mpsc::channel(1).1);
        for (input, (proc, token)) in receivers.into_iter().zip(stages.iter().skip(1)) {
            tasks.push(tokio::spawn(forward(input, proc.clone(), session, *token)));
        }
        let timeout = stages
            .iter()
            .map(|(proc, _)| proc.timeout())
            .max()
            .unwrap_or(Duration::from_secs(60));
        let (dot, dot_rx) = watch::channel(false);
        let output = DataOutput {
            session,
            dot: dot_rx,
            output,
            down: down_rx,
            stages: stages.iter().map(|(proc, _)| proc.clone()).collect(),
            timeout,
            done: false,
        };
        let input = Self {
            session,
            stages,
            down,
            dot,
            tasks,
            timeout,
            ended: false,
            failed: false,
        };
        (input, output)
    }

    /// Whether the final `.` went out (and every line before it).
    pub fn dot_sent(&self) -> bool {
        self.ended && !self.failed
    }

    /// Whether the final `.` went out, or nothing more can.
    pub fn is_over(&self) -> bool {
        self.ended || self.failed
    }

    /// Sends one line (stuffed; `.` ends the message) to the first
    /// process, once it has room for it.
    pub async fn send(&mut self, line: &[u8]) -> Result<(), Reply> {
        let sent = self.send_line(line).await;
        self.failed |= sent.is_err();
        sent
    }

    async fn send_line(&mut self, line: &[u8]) -> Result<(), Reply> {
        if self.failed || self.down.load(Ordering::Relaxed) {
            tracing::warn!(
                "filters of session {}: a process went down during a message",
                self.session
            );
            return Err(failed());
        }
        let Some((proc, token)) = self.stages.first() else {
            return Err(failed());
        };
        if line == b"." {
            self.ended = true;
            self.dot.send_replace(true);
        }
        let request = data_line(self.session, *token, line);
        let supervisor = proc.supervisor();
        // The common case needs no timer.
        let sent = match supervisor.has_room() {
            true => Ok(supervisor.send(&request)),
            false => tokio::time::timeout(self.timeout, supervisor.send_paced(&request)).await,
        };
        match sent {
            Ok(Ok(())) => {
                proc.flow().data_line();
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::warn!("filter {}: data-line: {e}", proc.name());
                proc.flow().data_error();
                Err(failed())
            }
            Err(_) => {
                tracing::warn!(
                    "filter {}: did not read the message for {} s",
                    proc.name(),
                    self.timeout.as_secs()
                );
                proc.flow().data_error();
                Err(failed())
            }
        }
    }

    /// Ends a message given up before its end: sends the final `.` (as
    /// OpenSMTPD does after an error) unless it went out or the filters
    /// failed, so that what they still hold of it comes back, to be
    /// dropped by the output's reader.
    pub async fn end(&mut self) {
        if !self.is_over() {
            self.send(b".").await.ok();
        }
    }
}

impl DataOutput {
    /// Whether the final `.` came back.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next line the last process writes; fails when a process goes
    /// down, or writes nothing for its timeout once the final `.` went
    /// out.
    pub async fn next(&mut self) -> Result<Vec<u8>, Reply> {
        let mut dot = self.dot.clone();
        let timeout = self.timeout;
        let deadline = async move {
            // A closed channel: the message is over one way or another.
            dot.wait_for(|sent| *sent).await.ok();
            tokio::time::sleep(timeout).await;
        };
        tokio::select! {
            biased;
            line = self.output.recv() => {
                let Some(line) = line else {
                    self.count_failure(None);
                    return Err(failed());
                };
                self.done |= line == b".";
                Ok(line)
            }
            name = self.down.recv() => {
                tracing::warn!(
                    "filter {} went down during a message",
                    name.as_deref().unwrap_or("?")
                );
                self.count_failure(name.as_deref());
                Err(failed())
            }
            () = deadline => {
                tracing::warn!(
                    "filters of session {}: the message did not come back within {} s",
                    self.session,
                    self.timeout.as_secs()
                );
                self.count_failure(None);
                Err(failed())
            }
        }
    }

    /// Counts a failed message on the process named, else the last one.
    fn count_failure(&self, name: Option<&str>) {
        let named = name.and_then(|n| self.stages.iter().find(|p| p.name() == n));
        if let Some(proc) = named.or_else(|| self.stages.last()) {
            proc.flow().data_error();
        }
    }
}

impl std::fmt::Debug for DataStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStream")
            .field("session", &self.session)
            .field("stages", &self.stages.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DataOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataOutput")
            .field("session", &self.session)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Drop for DataStream {
    fn drop(&mut self) {
        for (proc, token) in &self.stages {
            proc.streams().close(self.session, *token);
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Sends what one process wrote to the next, until the final `.`.
async fn forward(
    mut input: mpsc::Receiver<Vec<u8>>,
    next: FilterProc,
    session: SessionId,
    token: Token,
) {
    while let Some(line) = input.recv().await {
        let end = line == b".";
        if let Err(e) = next
            .supervisor()
            .send_paced(&data_line(session, token, &line))
            .await
        {
            tracing::warn!("filter {}: data-line: {e}", next.name());
            next.flow().data_error();
            return;
        }
        next.flow().data_line();
        if end {
            return;
        }
    }
}
