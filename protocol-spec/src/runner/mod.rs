//! The conformance run: start, handshake, replay, stress, stop, restart
//! with an unknown version.
//!
//! [`run`] drives one backend through the checks in order and prints each
//! result as it comes (`report.rs`). The pieces: `backend.rs` owns the child
//! process, `handshake.rs` the `config`/`register` exchange, `tracker.rs`
//! the protocol-level checks on every answer, `replay.rs` the vector cases,
//! `stress.rs` the pipelined load, `lifecycle.rs` the EOF and version
//! checks. Every wait has a deadline, so a run never hangs.

mod backend;
mod handshake;
mod lifecycle;
mod replay;
mod report;
mod stress;
mod tracker;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use smtpd_conformance::vectors::{self, Family};
use smtpd_sdk::tablefile::TableFile;
use tokio::time::Instant;

use backend::{Backend, Next};
use handshake::Registered;
use report::Failure;
pub(crate) use report::Report;
use tracker::{SentKind, Tracker, Verdict};

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) family: Family,
    pub(crate) fixture: Option<String>,
    pub(crate) vectors: PathBuf,
    pub(crate) timeout: Duration,
    pub(crate) stress: usize,
    pub(crate) command: Vec<String>,
}

/// Runs every check and returns the report (already printed). Fails only
/// when the run cannot start: unreadable vectors or an unknown fixture.
///
/// Every case gets a freshly started backend, as the vectors require (a
/// `fetch` cycles from the first value, a queue starts empty); so do the
/// stress pass and the unknown-version check.
pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Report> {
    let files = vectors::load_dir(&settings.vectors)?;
    let table_fixture = load_fixture(settings)?;
    let mut report = Report::new();
    report.note(&format!(
        "{} backend: {}",
        settings.family,
        settings.command.join(" ")
    ));
    let registered = match Session::start(settings).await {
        Ok(session) => {
            report.pass("handshake", &session.registered.describe());
            let registered = session.registered.clone();
            lifecycle::stop_at_eof(session, &mut report).await;
            registered
        }
        Err(failure) => {
            report.fail("handshake", &failure);
            report.finish();
            return Ok(report);
        }
    };
    replay::run(settings, &registered, &files, &mut report).await;
    if settings.stress == 0 {
        report.skip("stress", "not run: --stress 0");
    } else {
        match Session::start(settings).await {
            Ok(mut session) => {
                let load = stress::load(&session, settings.stress, table_fixture.as_ref());
                stress::run(&mut session, load, &mut report).await;
                session.stop().await;
            }
            Err(failure) => report.fail("stress", &failure),
        }
    }
    lifecycle::unknown_version(settings, &mut report).await;
    report.finish();
    Ok(report)
}

/// Checks `--fixture` and reads it when it is a table(5) file.
fn load_fixture(settings: &Settings) -> anyhow::Result<Option<TableFile>> {
    let Some(name) = &settings.fixture else {
        return Ok(None);
    };
    let path = settings.vectors.join("fixtures").join(name);
    if name.contains('/') || !path.is_file() {
        bail!(
            "unknown fixture {name:?}: no such file in {}",
            path.display()
        );
    }
    if settings.family != Family::Table || !name.ends_with(".table") {
        return Ok(None);
    }
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let table =
        TableFile::parse(&text).with_context(|| format!("bad fixture {}", path.display()))?;
    Ok(Some(table))
}

/// A started and handshaken backend with its in-flight bookkeeping.
pub(crate) struct Session {
    backend: Backend,
    tracker: Tracker,
    family: Family,
    registered: Registered,
    timeout: Duration,
}

/// What came back during one exchange.
#[derive(Debug, Default)]
struct Collected {
    /// Lines accepted as answers, in arrival order.
    answers: Vec<Vec<u8>>,
    /// Protocol violations, timeouts and missing answers.
    problems: Vec<String>,
    /// Set when the backend went away.
    died: Option<Failure>,
}

impl Session {
    /// Starts the backend and performs the handshake.
    async fn start(settings: &Settings) -> Result<Self, Failure> {
        let mut backend = Backend::spawn(&settings.command)
            .map_err(|e| Failure::new(format!("cannot start {}: {e}", settings.command[0])))?;
        let registered = handshake::perform(&mut backend, settings.family, settings.timeout).await;
        let registered = match registered {
            Ok(registered) => registered,
            Err(failure) => {
                backend.kill().await;
                return Err(failure);
            }
        };
        Ok(Self {
            backend,
            tracker: Tracker::new(settings.family),
            family: settings.family,
            registered,
            timeout: settings.timeout,
        })
    }

    /// Closes stdin and reads what the backend still writes until it
    /// closes stdout (a second at most), then ends the process. Returns the
    /// lines that answered nothing.
    async fn stop(mut self) -> Vec<String> {
        self.backend.close_stdin();
        let grace = self.timeout.min(Duration::from_secs(1));
        let deadline = Instant::now() + grace;
        let mut problems = Vec::new();
        loop {
            match self.backend.next(deadline).await {
                Next::Line(line) => {
                    if let Verdict::Violation(v) = self.tracker.received(&line) {
                        problems.push(v);
                    }
                }
                Next::TooLong(len) => problems.push(format!("a line of more than {len} bytes")),
                Next::Closed | Next::TimedOut => break,
            }
        }
        self.backend.kill().await;
        problems
    }

    /// Sends a line and records what it asks for.
    fn send(&mut self, line: &[u8]) -> SentKind {
        let kind = self.tracker.sent(line);
        self.backend.send_line(line);
        kind
    }

    /// Reads answers until every request in flight is answered (and, while a
    /// data-line stream is open, `expected` answers came), or until the
    /// timeout, or until the backend gave as many lines as expected with a
    /// violation among them.
    async fn collect(&mut self, expected: usize) -> Collected {
        let deadline = Instant::now() + self.timeout;
        let mut got = Collected::default();
        let mut lines = 0;
        loop {
            // Every request answered is enough, unless a data-line stream
            // is still open: then the expected lines are awaited.
            let enough = got.answers.len() >= expected || !self.tracker.open_streams();
            if self.tracker.pending() == 0 && enough {
                return got;
            }
            if !got.problems.is_empty() && lines >= expected.max(1) {
                break;
            }
            match self.backend.next(deadline).await {
                Next::Line(line) => {
                    lines += 1;
                    match self.tracker.received(&line) {
                        Verdict::Answer => got.answers.push(line),
                        Verdict::Violation(v) => got.problems.push(v),
                    }
                }
                Next::TooLong(len) => {
                    lines += 1;
                    got.problems
                        .push(format!("answered a line of more than {len} bytes"));
                }
                Next::Closed => {
                    got.died = Some(self.died().await);
                    return got;
                }
                Next::TimedOut => {
                    got.problems.push(format!(
                        "timed out: {} answers of {expected} expected after {} s",
                        got.answers.len(),
                        self.timeout.as_secs_f64()
                    ));
                    break;
                }
            }
        }
        got.problems.extend(self.tracker.abandon());
        got
    }

    /// Describes the backend's end: exit status and last stderr lines.
    async fn died(&mut self) -> Failure {
        let how = self.backend.describe_exit(self.timeout).await;
        let stderr = self.backend.stderr_tail().await;
        Failure::new(format!("the backend {how}")).with_stderr(&stderr)
    }
}
