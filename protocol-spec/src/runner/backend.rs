//! The backend process: started without a shell, fed through a writer task,
//! read line by line through the SDK's `LineCodec`, its stderr kept.
//!
//! Nothing here waits without a deadline: [`Backend::next`] takes one, and
//! the exit status is awaited for a bounded time before the process is
//! killed. The process is killed when the `Backend` is dropped.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use smtpd_sdk::codec::{Frame, LineCodec};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStderr, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

/// How many stderr lines are kept for reports.
const STDERR_LINES: usize = 20;
/// How much of one stderr line is kept.
const STDERR_LINE_MAX: usize = 300;

/// What the backend's stdout gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// A line, without its `\n`.
    Line(Vec<u8>),
    /// A line longer than the codec's limit (its length so far).
    TooLong(usize),
    /// stdout reached end of file: the backend closed it or exited.
    Closed,
    /// Nothing came before the deadline.
    TimedOut,
}

/// A running backend.
pub(crate) struct Backend {
    child: Child,
    stdin: Option<mpsc::UnboundedSender<Vec<u8>>>,
    stdout: mpsc::UnboundedReceiver<Next>,
    stdout_closed: bool,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_task: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Backend {
    /// Starts `command[0]` with the other elements as its arguments.
    pub(crate) fn spawn(command: &[String]) -> std::io::Result<Self> {
        let (program, args) = command.split_first().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command given")
        })?;
        // The runner's one place that starts a program; no shell is involved.
        #[allow(clippy::disallowed_methods)]
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let missing = || std::io::Error::other("a standard stream of the child is missing");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr_pipe = child.stderr.take().ok_or_else(missing)?;

        let (in_tx, in_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_lines(stdin, in_rx));

        let (out_tx, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(stdout, LineCodec::new());
            while let Some(Ok(frame)) = frames.next().await {
                let next = match frame {
                    Frame::Line(line) => Next::Line(line.to_vec()),
                    Frame::TooLong(len) => Next::TooLong(len),
                };
                if out_tx.send(next).is_err() {
                    return;
                }
            }
            let _ = out_tx.send(Next::Closed);
        });

        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn(keep_stderr(stderr_pipe, Arc::clone(&stderr)));
        Ok(Self {
            child,
            stdin: Some(in_tx),
            stdout: out_rx,
            stdout_closed: false,
            stderr,
            stderr_task: Some(stderr_task),
            status: None,
        })
    }

    /// Queues `line` and its `\n` for the backend's stdin. Lines sent after
    /// the backend stopped reading are dropped; its exit shows on stdout.
    pub(crate) fn send_line(&self, line: &[u8]) {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.send_raw(buf);
    }

    /// Queues bytes that already end with `\n`.
    pub(crate) fn send_raw(&self, bytes: Vec<u8>) {
        if let Some(stdin) = &self.stdin {
            let _ = stdin.send(bytes);
        }
    }

    /// Closes the backend's stdin once the queued lines are written.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next thing on stdout, waiting until `deadline` at most. Past the
    /// deadline it returns `TimedOut` even when lines are waiting, so that a
    /// backend flooding its stdout cannot keep a loop going.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Next {
        if self.stdout_closed {
            return Next::Closed;
        }
        if Instant::now() >= deadline {
            return Next::TimedOut;
        }
        match tokio::time::timeout_at(deadline, self.stdout.recv()).await {
            Ok(Some(Next::Closed) | None) => {
                self.stdout_closed = true;
                Next::Closed
            }
            Ok(Some(next)) => next,
            Err(_) => Next::TimedOut,
        }
    }

    /// The exit status, waiting up to `wait` for the process to end.
    pub(crate) async fn exit_status(&mut self, wait: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Ok(status)) = tokio::time::timeout(wait, self.child.wait()).await {
                self.status = Some(status);
            }
        }
        self.status
    }

    /// How the backend ended, for a report: `exited (status N)`, or that it
    /// still runs although its stdout is closed.
    pub(crate) async fn describe_exit(&mut self, wait: Duration) -> String {
        match self.exit_status(wait).await {
            Some(status) => describe_status(status),
            None => format!(
                "closed its stdout but was still running {} s later",
                wait.as_secs_f64()
            ),
        }
    }

    /// The last lines the backend wrote on stderr. Once the process is
    /// gone, waits briefly for the rest of its stderr.
    pub(crate) async fn stderr_tail(&mut self) -> Vec<String> {
        if self.status.is_some() {
            if let Some(task) = self.stderr_task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
            }
        }
        self.stderr
            .lock()
            .map(|lines| lines.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Ends the process if it still runs.
    pub(crate) async fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill().await;
            self.status = self.child.try_wait().ok().flatten();
        }
    }
}

/// `exited (status N)` or `killed by signal N`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited (status {code})"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

async fn write_lines(stdin: ChildStdin, mut lines: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut out = BufWriter::new(stdin);
    while let Some(line) = lines.recv().await {
        if out.write_all(&line).await.is_err() {
            return;
        }
        // Batch what is already queued, then flush.
        while let Ok(more) = lines.try_recv() {
            if out.write_all(&more).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

async fn keep_stderr(stderr: ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            buf.pop();
        }
        let cut = buf.len().min(STDERR_LINE_MAX);
        let line = String::from_utf8_lossy(&buf[..cut]).into_owned();
        if let Ok(mut lines) = tail.lock() {
            if lines.len() == STDERR_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }
}
