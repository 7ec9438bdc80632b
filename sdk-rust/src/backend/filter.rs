//! Filters (protocol 0.7): implement [`Filter`], call [`run`].
//!
//! ```no_run
//! use smtpd_sdk::filter::{self, proceed, reject, Decision, Error, Filter, Phase, Registrations, Request};
//!
//! struct NoSpammer;
//!
//! impl Filter for NoSpammer {
//!     fn register(&self) -> Registrations {
//!         Registrations::new().phase(Phase::MailFrom)
//!     }
//!
//!     async fn on_phase(&self, request: &Request) -> Result<Decision, Error> {
//!         if request.param == b"spammer@example.com" {
//!             reject("550 5.7.1 Sender rejected")
//!         } else {
//!             proceed()
//!         }
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> std::process::ExitCode {
//!     filter::run(NoSpammer).await
//! }
//! ```
//!
//! # Ordering
//!
//! Everything the daemon sends about one session (report events, phase
//! requests, data-lines) is handled strictly in the order received, one item
//! at a time; different sessions are handled concurrently. So the output
//! lines of one message leave in order, and the `.` that ends a message
//! leaves after all other output of that message.
//!
//! # Data-lines
//!
//! [`Filter::on_data_line`] sees each message line exactly as the daemon
//! sends it (protocols.md §2.7): with the client's dot-stuffing (a content
//! line `.foo` arrives as `..foo`; [`unstuff`] removes it), never the final
//! `.`, which the SDK forwards itself after [`Filter::on_data_end`]. Lines
//! given to [`DataLines::push`] are sent as they are, so they must be
//! stuffed too; [`DataLines::push_unstuffed`] stuffs a line for you. A lone
//! `.` given to `push` is sent as `..` (a content line made of a dot), so
//! a filter cannot end a message early.
//!
//! # Failures
//!
//! A phase handler that returns an [`Error`], or a reject/disconnect reply
//! that OpenSMTPD would refuse, is answered with a temporary failure
//! (`reject|451 4.7.0 ...`, or `disconnect|421 4.7.0 ...` at connect). When
//! [`Filter::on_data_line`] fails, the rest of the message is dropped, the
//! terminating `.` is still sent, and the `commit` phase (which the SDK
//! registers whenever `data-line` is) is rejected with a 451 reply, so the
//! client retries later and nothing is lost silently.

use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::engine::{self, Ctx, Event};
use super::{handshake, stdio};
use crate::codec::LineCodec;
use crate::proto::filter::{Input, Output, Register, VERSION};
use crate::proto::Line;

pub use super::{Config, Error, RunError};
pub use crate::proto::filter::{
    AuthResult, Decision, Event as ReportEvent, EventKind, Fcrdns, Phase, Report, Request,
    Subsystem, TxResult,
};
pub use crate::proto::{SessionId, Token};

/// A filter. Registrations say which phases and report events the daemon
/// sends; every callback has a default (ignore reports, proceed, forward
/// data-lines unchanged).
///
/// The methods take `&self` and run concurrently for different sessions:
/// keep mutable state behind a `Mutex` or `RwLock`, and do not hold a lock
/// across an `.await`.
// The run loop polls every future on the caller's task, so the futures need
// no `Send` bound; `async fn` keeps implementations plain.
#[allow(async_fn_in_trait)]
pub trait Filter {
    /// The phases and report events to register.
    fn register(&self) -> Registrations;

    /// Called once with the daemon's configuration (`subsystem`, `admd`,
    /// ...), before [`Filter::register`]. An error stops the filter.
    fn configure(&mut self, config: &Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// A report event the filter registered. Errors are logged.
    async fn on_report(&self, report: &Report) -> Result<(), Error> {
        let _ = report;
        Ok(())
    }

    /// A phase request (any phase but data-line): the verdict.
    async fn on_phase(&self, request: &Request) -> Result<Decision, Error> {
        let _ = request;
        proceed()
    }

    /// One message line, still dot-stuffed: push 0, 1 or more lines to
    /// `out`. The default forwards the line unchanged.
    async fn on_data_line(
        &self,
        session: SessionId,
        line: &[u8],
        out: &mut DataLines,
    ) -> Result<(), Error> {
        let _ = session;
        out.push(line)
    }

    /// The message is complete: lines pushed here go out just before the
    /// final `.`, which the SDK sends itself.
    async fn on_data_end(&self, session: SessionId, out: &mut DataLines) -> Result<(), Error> {
        let _ = (session, out);
        Ok(())
    }
}

/// The phases and report events a filter asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registrations {
    phases: Vec<Phase>,
    reports: Vec<(Subsystem, Option<EventKind>)>,
}

impl Registrations {
    /// Nothing registered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a phase (`register|filter|smtp-in|PHASE`).
    pub fn phase(mut self, phase: Phase) -> Self {
        if !self.phases.contains(&phase) {
            self.phases.push(phase);
        }
        self
    }

    /// Asks for several phases.
    pub fn phases(self, phases: impl IntoIterator<Item = Phase>) -> Self {
        phases.into_iter().fold(self, Self::phase)
    }

    /// Asks for one report event (`register|report|SUBSYSTEM|EVENT`).
    pub fn report(mut self, subsystem: Subsystem, event: EventKind) -> Self {
        if !self.wants_report(subsystem, Some(event)) {
            self.reports.push((subsystem, Some(event)));
        }
        self
    }

    /// Asks for every report event of a subsystem
    /// (`register|report|SUBSYSTEM|*`).
    pub fn all_reports(mut self, subsystem: Subsystem) -> Self {
        self.reports.retain(|(s, _)| *s != subsystem);
        self.reports.push((subsystem, None));
        self
    }

    /// The phases asked for.
    pub fn phase_list(&self) -> &[Phase] {
        &self.phases
    }

    /// True when this report event was asked for (`None`: an event this
    /// codec does not know, wanted only through `*`).
    pub fn wants_report(&self, subsystem: Subsystem, event: Option<EventKind>) -> bool {
        self.reports
            .iter()
            .any(|(s, e)| *s == subsystem && (e.is_none() || *e == event))
    }

    fn wants_phase(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }

    /// What goes on the wire: the filter's own registrations, plus `commit`
    /// and `link-disconnect` when `data-line` is registered (the SDK needs
    /// them to fail a message whose data-line handler failed, and to forget
    /// the session).
    fn wire(&self) -> Vec<Register> {
        let mut wire = self.clone();
        if wire.wants_phase(Phase::DataLine) {
            wire = wire
                .phase(Phase::Commit)
                .report(Subsystem::SmtpIn, EventKind::LinkDisconnect);
        }
        let phases = wire.phases.iter().map(|&phase| Register::Filter { phase });
        let reports = wire
            .reports
            .iter()
            .map(|&(subsystem, event)| Register::Report { subsystem, event });
        reports
            .chain(phases)
            .chain(std::iter::once(Register::Ready))
            .collect()
    }
}

/// `proceed`: go on to the next filter, then run the command.
pub fn proceed() -> Result<Decision, Error> {
    Ok(Decision::Proceed)
}

/// `junk`: mark the transaction as spam and run the command.
pub fn junk() -> Result<Decision, Error> {
    Ok(Decision::Junk)
}

/// `reject|REPLY`: refuse the command with this SMTP reply, e.g.
/// `550 5.7.1 Sender rejected`. Fails on a reply OpenSMTPD would refuse
/// (see [`is_valid_reply`]).
pub fn reject(reply: impl Into<String>) -> Result<Decision, Error> {
    checked_reply(reply.into()).map(Decision::Reject)
}

/// `disconnect|REPLY`: send this SMTP reply and close the session. Fails on
/// a reply OpenSMTPD would refuse (see [`is_valid_reply`]).
pub fn disconnect(reply: impl Into<String>) -> Result<Decision, Error> {
    checked_reply(reply.into()).map(Decision::Disconnect)
}

/// `rewrite|PARAM`: run the command with this parameter instead (for
/// mail-from and rcpt-to, the bracketed form: `<new@example.org>`).
pub fn rewrite(param: impl Into<String>) -> Result<Decision, Error> {
    Ok(Decision::Rewrite(param.into()))
}

/// `report|TEXT`: report this text and run the command (see protocols.md
/// §2.6 for how OpenSMTPD 7.8 uses TEXT as the command's parameter).
pub fn report(text: impl Into<String>) -> Result<Decision, Error> {
    Ok(Decision::Report(text.into()))
}

/// True when OpenSMTPD accepts `reply` for reject/disconnect: a first digit
/// 4 or 5, two more digits, a space, and no line break.
pub fn is_valid_reply(reply: &str) -> bool {
    let b = reply.as_bytes();
    b.len() >= 5
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' '
        && !b.iter().any(|&c| c == b'\r' || c == b'\n')
}

fn checked_reply(reply: String) -> Result<String, Error> {
    if is_valid_reply(&reply) {
        Ok(reply)
    } else {
        Err(Error::failed(format!(
            "invalid SMTP reply {reply:?}: expected a 4xx or 5xx code, a space and text"
        )))
    }
}

/// Removes the dot-stuffing of a message line: `..foo` becomes `.foo`.
pub fn unstuff(line: &[u8]) -> &[u8] {
    line.strip_prefix(b".").unwrap_or(line)
}

/// The output of one data-line callback: `filter-dataline` lines for one
/// session, formatted as they are pushed.
#[derive(Debug)]
pub struct DataLines {
    session: SessionId,
    token: Token,
    out: BytesMut,
}

impl DataLines {
    fn new(session: SessionId, token: Token) -> Self {
        Self {
            session,
            token,
            out: BytesMut::new(),
        }
    }

    /// Sends a line that is already dot-stuffed, e.g. the input line
    /// itself. A lone `.` is sent as `..`. Fails on `\r` or `\n`.
    pub fn push(&mut self, line: impl AsRef<[u8]>) -> Result<(), Error> {
        let line = line.as_ref();
        let line = if line == b"." { &b".."[..] } else { line };
        self.put(line)
    }

    /// Sends a content line, adding the dot-stuffing (a leading `.` is
    /// doubled). Fails on `\r` or `\n`.
    pub fn push_unstuffed(&mut self, line: impl AsRef<[u8]>) -> Result<(), Error> {
        let line = line.as_ref();
        if line.first() == Some(&b'.') {
            let mut stuffed = Vec::with_capacity(line.len() + 1);
            stuffed.put_u8(b'.');
            stuffed.extend_from_slice(line);
            self.put(&stuffed)
        } else {
            self.put(line)
        }
    }

    /// The number of bytes formatted so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    fn put(&mut self, line: &[u8]) -> Result<(), Error> {
        Output::DataLine {
            session: self.session,
            token: self.token,
            line: line.to_vec(),
        }
        .format(&mut self.out)
        .map_err(Error::failed)
    }

    fn end(&mut self) {
        // A lone dot formats whatever the session and token.
        self.put(b".").ok();
    }
}

/// Runs `filter` on stdin/stdout until end of input. Returns the exit
/// status: success after a clean end of input; failure, with one line on
/// stderr, when the handshake fails or stdin/stdout fail.
pub async fn run<F: Filter>(filter: F) -> ExitCode {
    let result = match stdio::open() {
        Ok((input, output)) => run_with(filter, input, output).await,
        Err(e) => Err(e.into()),
    };
    super::exit_code(result)
}

/// Runs `filter` on any input and output until end of input.
pub async fn run_with<F, R, W>(mut filter: F, input: R, mut output: W) -> Result<(), RunError>
where
    F: Filter,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = FramedRead::with_capacity(input, LineCodec::new(), 64 * 1024);
    let Some(config) = handshake::read_config(&mut input, VERSION).await? else {
        return Ok(());
    };
    filter.configure(&config).map_err(RunError::Configure)?;
    let wants = filter.register();
    handshake::write_lines(&mut output, &wants.wire()).await?;

    let filter = &filter;
    let wants = &wants;
    let mut sessions: HashMap<SessionId, SessionState> = HashMap::new();
    engine::serve(input, &mut output, |event, ctx| match event {
        Event::Line(line) => match Input::parse(line) {
            Ok(input) => {
                let session = match &input {
                    Input::Report(r) => r.session,
                    Input::Filter(q) => q.session,
                };
                let state = sessions.entry(session).or_default();
                if state.busy {
                    state.queue.push_back(input);
                } else {
                    state.busy = true;
                    ctx.start(work(filter, wants, input, state.failure));
                }
            }
            Err(e) => tracing::warn!("dropped a line that is not a filter input: {e}"),
        },
        Event::Done(done) => {
            if let Some((next, failure)) = finish(&mut sessions, done, ctx) {
                ctx.start(work(filter, wants, next, failure));
            }
        }
    })
    .await?;
    output.shutdown().await.ok();
    Ok(())
}

/// What the SDK remembers about a session between two items.
#[derive(Default)]
struct SessionState {
    /// An item of this session is being handled.
    busy: bool,
    /// Items received meanwhile, in order.
    queue: VecDeque<Input>,
    /// Whether the data-line handler failed for the current message.
    failure: Failure,
}

/// A session's message after a data-line handler failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Failure {
    /// No failure.
    #[default]
    None,
    /// The handler failed: the rest of the message is dropped.
    Dropping,
    /// The message ended after a failure: its commit is rejected. A new
    /// data-line means the commit was never asked (the daemon gave up on
    /// the message) and a new message begins.
    Ended,
}

/// The result of handling one item.
struct Done {
    session: SessionId,
    out: BytesMut,
    failure: Failure,
    disconnected: bool,
}

/// Writes the output of a finished item and returns the session's next
/// item, if any, with the failure state to start it with.
fn finish<Fut>(
    sessions: &mut HashMap<SessionId, SessionState>,
    done: Done,
    ctx: &mut Ctx<'_, Fut>,
) -> Option<(Input, Failure)> {
    ctx.write_raw(&done.out);
    let state = sessions.get_mut(&done.session)?;
    state.failure = if done.disconnected {
        Failure::None
    } else {
        done.failure
    };
    match state.queue.pop_front() {
        Some(next) => Some((next, state.failure)),
        None => {
            state.busy = false;
            if state.failure == Failure::None {
                sessions.remove(&done.session);
            }
            None
        }
    }
}

/// Handles one item of a session.
async fn work<F: Filter>(
    filter: &F,
    wants: &Registrations,
    input: Input,
    failure: Failure,
) -> Done {
    match input {
        Input::Report(report) => {
            let disconnected = report.event.kind() == Some(EventKind::LinkDisconnect);
            if wants.wants_report(report.subsystem, report.event.kind()) {
                if let Err(e) = filter.on_report(&report).await {
                    tracing::warn!(session = %report.session, "report handler failed: {e}");
                }
            }
            Done {
                session: report.session,
                out: BytesMut::new(),
                failure,
                disconnected,
            }
        }
        Input::Filter(request) if request.phase == Phase::DataLine => {
            data_line(filter, request, failure).await
        }
        Input::Filter(request) => phase(filter, wants, request, failure).await,
    }
}

async fn phase<F: Filter>(
    filter: &F,
    wants: &Registrations,
    request: Request,
    failure: Failure,
) -> Done {
    let decision = match request.phase {
        Phase::Commit if failure != Failure::None => {
            Err(Error::failed("the data-line handler failed"))
        }
        Phase::Commit if !wants.wants_phase(Phase::Commit) => proceed(),
        _ => filter.on_phase(&request).await,
    };
    let decision = decision.and_then(|d| match d {
        Decision::Reject(r) => reject(r),
        Decision::Disconnect(r) => disconnect(r),
        other => Ok(other),
    });
    let mut out = BytesMut::new();
    let mut result = Output::Result {
        session: request.session,
        token: request.token,
        decision: decision.unwrap_or_else(|e| {
            tracing::warn!(session = %request.session, phase = %request.phase, "phase handler failed: {e}");
            temporary_failure(request.phase)
        }),
    };
    if let Err(e) = result.format(&mut out) {
        tracing::warn!(session = %request.session, "cannot send the decision: {e}");
        if let Output::Result { decision, .. } = &mut result {
            *decision = temporary_failure(request.phase);
        }
        // The failure decisions are valid replies and always format.
        result.format(&mut out).ok();
    }
    Done {
        session: request.session,
        out,
        failure: if request.phase == Phase::Commit {
            Failure::None
        } else {
            failure
        },
        disconnected: false,
    }
}

/// The temporary failure answered when a phase handler fails.
fn temporary_failure(phase: Phase) -> Decision {
    if phase == Phase::Connect {
        Decision::Disconnect("421 4.7.0 Temporary filter failure".to_owned())
    } else {
        Decision::Reject("451 4.7.0 Temporary filter failure".to_owned())
    }
}

async fn data_line<F: Filter>(filter: &F, request: Request, failure: Failure) -> Done {
    let session = request.session;
    let mut out = DataLines::new(session, request.token);
    // A data-line after a failed message's end starts a new message.
    let mut failure = match failure {
        Failure::Ended => Failure::None,
        other => other,
    };
    if request.param == b"." {
        if failure == Failure::None {
            if let Err(e) = filter.on_data_end(session, &mut out).await {
                tracing::warn!(session = %session, "data-end handler failed: {e}");
                out.out.clear();
                failure = Failure::Dropping;
            }
        }
        out.end();
        if failure == Failure::Dropping {
            failure = Failure::Ended;
        }
    } else if failure == Failure::None {
        if let Err(e) = filter.on_data_line(session, &request.param, &mut out).await {
            tracing::warn!(session = %session, "data-line handler failed, dropping the rest of the message: {e}");
            failure = Failure::Dropping;
            out.out.clear();
        }
    }
    Done {
        session,
        out: out.out,
        failure,
        disconnected: false,
    }
}
