//! A message's data-line stream through the processes of a chain that
//! filter `data-line` (protocols.md section 2.7).
//!
//! The session sends every line (dot-stuffed as the client sent it, the
//! final `.` last) to the first process; what a process writes for the
//! session (any number of `filter-dataline` lines) reaches this stream
//! through the process's [`Streams`](super::proc_exec::Streams), and a
//! forwarder task sends it on to the next process; what the last one writes
//! comes back to the session ([`DataStream::next`]). Each send waits while
//! the process has not read half its buffer, so a large message streams
//! through in bounded memory, at the pace of the slowest process. A
//! process that goes down, or writes nothing for its timeout while the
//! session waits for the end of the message, fails the stream (451): the
//! message is dropped, never half queued.

use std::time::Duration;

use smtpd_sdk::proto::filter::{Input, Phase};
use smtpd_sdk::proto::{SessionId, Timestamp, Token};
use tokio::sync::mpsc;
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

/// One message on its way through the data-line filters.
pub struct DataStream {
    session: SessionId,
    stages: Vec<(FilterProc, Token)>,
    output: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Names a process that went down.
    down: mpsc::UnboundedReceiver<String>,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
    /// The final `.` was sent.
    ended: bool,
    /// The final `.` came back.
    done: bool,
    /// A send or a wait failed: the filters are no use for this message.
    failed: bool,
}

impl DataStream {
    /// Opens the stream of `session` through `stages` (process and its
    /// data-line token), in order; there is at least one.
    pub(super) fn start(session: SessionId, stages: Vec<(FilterProc, Token)>) -> Self {
        let mut receivers: Vec<_> = stages
            .iter()
            .map(|(proc, token)| proc.streams().open(session, *token))
            .collect();
        let (down_tx, down) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (proc, _) in &stages {
            let mut state = proc.supervisor().state();
            let (tx, name) = (down_tx.clone(), proc.name().to_owned());
            tasks.push(tokio::spawn(async move {
                let gone = state
                    .wait_for(|s| !matches!(s, State::Running { .. }))
                    .await;
                drop(gone);
                tx.send(name).ok();
            }));
        }
        let output = receivers
            .pop()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        for (input, (proc, token)) in receivers.into_iter().zip(stages.iter().skip(1)) {
            tasks.push(tokio::spawn(forward(input, proc.clone(), session, *token)));
        }
        let timeout = stages
            .iter()
            .map(|(proc, _)| proc.timeout())
            .max()
            .unwrap_or(Duration::from_secs(60));
        Self {
            session,
            stages,
            output,
            down,
            tasks,
            timeout,
            ended: false,
            done: false,
            failed: false,
        }
    }

    /// Gives up the message before its end: in the background, sends the
    /// final `.` (as OpenSMTPD does after an error) and drops what comes
    /// back up to the filters' own `.`, so that nothing of this message
    /// reaches the next one; bounded by the filter timeout. The session
    /// waits for the task before it starts another message.
    pub fn abandon(mut self) -> JoinHandle<()> {
        tokio::spawn(async move {
            if self.failed {
                return;
            }
            if !self.ended && self.send(b".").await.is_err() {
                return;
            }
            while !self.done {
                if self.next().await.is_err() {
                    return;
                }
            }
        })
    }

    /// Sends one line (stuffed; `.` ends the message) to the first
    /// process, once it has room for it.
    pub async fn send(&mut self, line: &[u8]) -> Result<(), Reply> {
        let sent = self.send_line(line).await;
        self.failed |= sent.is_err();
        sent
    }

    async fn send_line(&mut self, line: &[u8]) -> Result<(), Reply> {
        if let Ok(name) = self.down.try_recv() {
            tracing::warn!("filter {name} went down during a message");
            return Err(failed());
        }
        let Some((proc, token)) = self.stages.first() else {
            return Err(failed());
        };
        self.ended |= line == b".";
        let request = data_line(self.session, *token, line);
        let supervisor = proc.supervisor();
        // The common case needs no timer.
        let sent = match supervisor.has_room() {
            true => Ok(supervisor.send(&request)),
            false => tokio::time::timeout(self.timeout, supervisor.send_paced(&request)).await,
        };
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!("filter {}: data-line: {e}", proc.name());
                Err(failed())
            }
            Err(_) => {
                tracing::warn!(
                    "filter {}: did not read the message for {} s",
                    proc.name(),
                    self.timeout.as_secs()
                );
                Err(failed())
            }
        }
    }

    /// The next line the last process wrote, if one is there already.
    pub fn try_next(&mut self) -> Option<Vec<u8>> {
        let line = self.output.try_recv().ok()?;
        self.done |= line == b".";
        Some(line)
    }

    /// The next line the last process writes; fails when a process goes
    /// down or writes nothing for its timeout.
    pub async fn next(&mut self) -> Result<Vec<u8>, Reply> {
        let line = self.next_line().await;
        self.failed |= line.is_err();
        line
    }

    async fn next_line(&mut self) -> Result<Vec<u8>, Reply> {
        tokio::select! {
            biased;
            line = self.output.recv() => {
                let line = line.ok_or_else(failed)?;
                self.done |= line == b".";
                Ok(line)
            }
            name = self.down.recv() => {
                tracing::warn!(
                    "filter {} went down during a message",
                    name.as_deref().unwrap_or("?")
                );
                Err(failed())
            }
            () = tokio::time::sleep(self.timeout) => {
                tracing::warn!(
                    "filters of session {}: the message did not come back within {} s",
                    self.session,
                    self.timeout.as_secs()
                );
                Err(failed())
            }
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
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
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
            return;
        }
        if end {
            return;
        }
    }
}
