//! Filter processes: `proc NAME "CMD"` and `filter NAME proc-exec "CMD"`,
//! speaking filter protocol 0.7 (SPEC.md section 3, OpenSMTPD 7.8's
//! smtpd-filters(7)) through the child supervisor of `crate::proc`.
//!
//! [`FilterProtocol`] is the filter family for the supervisor: the
//! `config|smtp-session-timeout`, `config|subsystem` and `config|admd`
//! lines, `register|report|...` and `register|filter|smtp-in|...` lines
//! ([`Registration`]), and the filter's output: a `filter-result` answers
//! the request keyed by its session and token, a `filter-dataline` goes to
//! the data-line stream of its session and token ([`Streams`]), and
//! anything else is logged with the filter's name and the line, and fails
//! the request it names, if any.
//!
//! [`FilterProc`] is one running process, shared by every session of every
//! chain that uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use smtpd_sdk::proto::filter::{Decision, EventKind, Output, Phase, Register, Subsystem, VERSION};
use smtpd_sdk::proto::{ConfigLine, Line, ParseError, SessionId, Token};
use tokio::sync::mpsc;

use crate::proc::{Decoded, Family, Registered, Spec, StartError, Supervisor};

/// How long OpenSMTPD tells filters a session may idle
/// (`config|smtp-session-timeout`).
pub const SESSION_TIMEOUT_SECS: u64 = 300;

/// What a filter process registered at its handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The phases it filters, one bit per [`Phase`] (in `Phase::ALL`
    /// order).
    phases: u32,
    /// The events it wants, one bit per [`EventKind`] (in
    /// `EventKind::ALL` order), for smtp-in and smtp-out.
    reports: [u32; 2],
}

fn bit<T: PartialEq>(all: &[T], value: &T) -> u32 {
    all.iter()
        .position(|v| v == value)
        .map_or(0, |index| 1 << index)
}

const fn subsystem_index(subsystem: Subsystem) -> usize {
    match subsystem {
        Subsystem::SmtpIn => 0,
        Subsystem::SmtpOut => 1,
    }
}

impl Registration {
    /// Whether the process filters `phase`.
    pub fn filters(&self, phase: Phase) -> bool {
        self.phases & bit(Phase::ALL, &phase) != 0
    }

    /// Whether the process wants `event` of `subsystem`.
    pub fn reports(&self, subsystem: Subsystem, event: EventKind) -> bool {
        self.reports[subsystem_index(subsystem)] & bit(EventKind::ALL, &event) != 0
    }

    /// Whether it wants any event of `subsystem`.
    pub fn reports_any(&self, subsystem: Subsystem) -> bool {
        self.reports[subsystem_index(subsystem)] != 0
    }

    fn add(&mut self, register: Register) {
        match register {
            Register::Filter { phase } => self.phases |= bit(Phase::ALL, &phase),
            Register::Report { subsystem, event } => {
                let bits = match event {
                    None => u32::MAX,
                    Some(event) => bit(EventKind::ALL, &event),
                };
                self.reports[subsystem_index(subsystem)] |= bits;
            }
            Register::Ready => {}
        }
    }
}

/// How many data-lines a filter may have written ahead of the session
/// (or the next filter) reading them; beyond that the filter's output is
/// not read until there is room (backpressure).
pub const STREAM_LINES: usize = 64;

/// Where one session's data-lines go, by session and token.
type Routes = HashMap<(SessionId, Token), mpsc::Sender<Vec<u8>>>;

/// A line for a full stream, held until it has room.
type Blocked = (SessionId, Token, mpsc::Sender<Vec<u8>>, Vec<u8>);

/// Where the data-lines a filter writes go: to the stream of the session
/// and token they name, each a bounded channel. A line for a full stream
/// waits in [`Streams::relieve`], and the filter's output is not read
/// meanwhile.
#[derive(Debug)]
pub struct Streams {
    routes: Mutex<Routes>,
    blocked: Mutex<Option<Blocked>>,
    /// How long a line may wait for room before its stream is cut.
    timeout: Duration,
}

impl Default for Streams {
    fn default() -> Self {
        Self::new(super::DEFAULT_TIMEOUT)
    }
}

impl Streams {
    /// No stream yet; a line waits at most `timeout` for room.
    pub fn new(timeout: Duration) -> Self {
        Self {
            routes: Mutex::default(),
            blocked: Mutex::default(),
            timeout,
        }
    }

    /// Opens the stream of `session` at `token`; its lines arrive on the
    /// receiver until [`Streams::close`] (or until the receiver is
    /// dropped).
    pub fn open(&self, session: SessionId, token: Token) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(STREAM_LINES);
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((session, token), tx);
        rx
    }

    /// Closes the stream of `session` at `token`.
    pub fn close(&self, session: SessionId, token: Token) {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(session, token));
    }

    /// Hands a line to its stream; false when no stream is open there. A
    /// line for a full stream is kept for [`Streams::relieve`].
    fn deliver(&self, session: SessionId, token: Token, line: Vec<u8>) -> bool {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = routes.get(&(session, token)) else {
            return false;
        };
        match tx.try_send(line) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(line)) => {
                *self.blocked.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((session, token, tx.clone(), line));
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Waits until the held line, if any, has room in its stream. A
    /// stream that takes nothing for the timeout is cut (its reader then
    /// sees it end early and fails the message).
    async fn relieve(&self) {
        let held = self
            .blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some((session, token, tx, line)) = held else {
            return;
        };
        match tokio::time::timeout(self.timeout, tx.send(line)).await {
            Ok(Ok(())) => {}
            // Its reader is gone: so is the message.
            Ok(Err(_)) => {}
            Err(_) => {
                tracing::warn!(
                    "data-lines of session {session}: not read for {} s, stream cut",
                    self.timeout.as_secs()
                );
                // Only this stream: the session may have opened another
                // at the same token since.
                let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
                if routes
                    .get(&(session, token))
                    .is_some_and(|route| route.same_channel(&tx))
                {
                    routes.remove(&(session, token));
                }
            }
        }
    }
}

/// The filter protocol, for the supervisor.
#[derive(Debug)]
pub struct FilterProtocol {
    name: String,
    subsystems: Vec<Subsystem>,
    admd: String,
    streams: Arc<Streams>,
}

impl FilterProtocol {
    /// The protocol for the process `name`, used by the `subsystems`,
    /// announcing `admd` as the authserv-id.
    pub fn new(
        name: impl Into<String>,
        subsystems: Vec<Subsystem>,
        admd: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            subsystems,
            admd: admd.into(),
            streams: Arc::default(),
        }
    }

    /// This protocol with data-lines waiting at most `timeout` for a slow
    /// reader.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.streams = Arc::new(Streams::new(timeout));
        self
    }
}

/// A parse error without the line, which the supervisor quotes itself.
fn describe(e: &ParseError) -> String {
    format!("{} {} (expected {})", e.problem, e.field, e.expected)
}

/// The session and token a malformed `filter-result` line names, if its
/// first fields can be read.
fn named_request(line: &[u8]) -> Option<(SessionId, Token)> {
    let mut fields = line.splitn(4, |&b| b == b'|');
    if fields.next()? != b"filter-result" {
        return None;
    }
    let hex = |raw: &[u8]| u64::from_str_radix(std::str::from_utf8(raw).ok()?, 16).ok();
    let session = hex(fields.next()?)?;
    let token = hex(fields.next()?)?;
    Some((SessionId(session), Token(token)))
}

impl Family for FilterProtocol {
    type Key = (SessionId, Token);
    type Answer = Decision;
    type Registration = Registration;

    fn protocol(&self) -> &'static str {
        VERSION
    }

    fn config(&self) -> Vec<ConfigLine> {
        let mut lines = vec![ConfigLine::entry(
            "smtp-session-timeout",
            SESSION_TIMEOUT_SECS.to_string(),
        )];
        for subsystem in &self.subsystems {
            lines.push(ConfigLine::entry("subsystem", subsystem.name()));
        }
        lines.push(ConfigLine::entry("admd", self.admd.as_str()));
        lines
    }

    fn register(&self, line: &[u8], reg: &mut Registration) -> Result<Registered, String> {
        match Register::parse(line) {
            Ok(Register::Ready) => Ok(Registered::Ready),
            Ok(register) => {
                reg.add(register);
                Ok(Registered::More)
            }
            Err(e) => Err(describe(&e)),
        }
    }

    fn relieve(&self) -> impl std::future::Future<Output = ()> + Send {
        self.streams.relieve()
    }

    fn decode(&self, line: &[u8]) -> Decoded<Self::Key, Decision> {
        match Output::parse(line) {
            Ok(Output::Result {
                session,
                token,
                decision,
            }) => Decoded::Answer {
                key: (session, token),
                answer: decision,
            },
            Ok(Output::DataLine {
                session,
                token,
                line,
            }) => {
                if !self.streams.deliver(session, token, line) {
                    // 7.8 ignores lines for sessions that are gone.
                    tracing::debug!(
                        filter = %self.name,
                        "filter {}: data-line for session {session} token {token}, which streams nothing, dropped",
                        self.name
                    );
                }
                Decoded::Handled
            }
            Err(e) => Decoded::Malformed {
                key: named_request(line),
                reason: describe(&e),
            },
        }
    }
}

/// What a process was sent besides requests, for `smtpctl show filters`
/// (the supervisor counts requests, their errors and latency).
#[derive(Debug, Default)]
pub struct Flow {
    reports: AtomicU64,
    data_lines: AtomicU64,
    data_errors: AtomicU64,
}

/// A snapshot of a [`Flow`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Report lines sent.
    pub reports: u64,
    /// Data-lines sent.
    pub data_lines: u64,
    /// Messages whose data-lines failed on this process (it went down,
    /// did not read them or did not give the message back in time).
    pub data_errors: u64,
}

impl Flow {
    /// Counts a report line sent.
    pub fn report(&self) {
        self.reports.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a data-line sent.
    pub fn data_line(&self) {
        self.data_lines.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message whose data-lines failed here.
    pub fn data_error(&self) {
        self.data_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> FlowStats {
        FlowStats {
            reports: self.reports.load(Ordering::Relaxed),
            data_lines: self.data_lines.load(Ordering::Relaxed),
            data_errors: self.data_errors.load(Ordering::Relaxed),
        }
    }
}

/// One filter process, shared by every session.
#[derive(Clone)]
pub struct FilterProc {
    supervisor: Supervisor<FilterProtocol>,
    streams: Arc<Streams>,
    flow: Arc<Flow>,
    /// What a process registered last, kept while none runs.
    last: Arc<Mutex<Option<Arc<Registration>>>>,
}

impl FilterProc {
    /// Starts the process of `spec` and waits for its handshake.
    pub async fn start(protocol: FilterProtocol, spec: Spec) -> Result<Self, StartError> {
        let streams = Arc::clone(&protocol.streams);
        let supervisor = Supervisor::start(protocol, spec).await?;
        let last = Arc::new(Mutex::new(supervisor.registration()));
        Ok(Self {
            supervisor,
            streams,
            flow: Arc::default(),
            last,
        })
    }

    /// The supervisor running the process.
    pub fn supervisor(&self) -> &Supervisor<FilterProtocol> {
        &self.supervisor
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        self.supervisor.name()
    }

    /// How long it may take to answer.
    pub fn timeout(&self) -> Duration {
        self.supervisor.spec().request_timeout
    }

    /// What the running process registered; `None` while it is down.
    pub fn registration(&self) -> Option<Arc<Registration>> {
        self.supervisor.registration()
    }

    /// What the last process registered, running or not (a restarted
    /// process registers anew: this is updated then).
    pub fn last_registration(&self) -> Option<Arc<Registration>> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(now) = self.supervisor.registration() {
            *last = Some(now);
        }
        last.clone()
    }

    /// The data-line streams of its sessions.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Its report and data-line counters.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(lines: &[&str]) -> Registration {
        let protocol = FilterProtocol::new("f", vec![Subsystem::SmtpIn], "mx.example.org");
        let mut reg = Registration::default();
        for line in lines {
            assert_eq!(
                protocol.register(line.as_bytes(), &mut reg),
                Ok(Registered::More)
            );
        }
        assert_eq!(
            protocol.register(b"register|ready", &mut reg),
            Ok(Registered::Ready)
        );
        reg
    }

    #[test]
    fn registrations_are_remembered() {
        let reg = registered(&[
            "register|report|smtp-in|link-connect",
            "register|report|smtp-out|*",
            "register|filter|smtp-in|mail-from",
            "register|filter|smtp-in|data-line",
        ]);
        assert!(reg.filters(Phase::MailFrom));
        assert!(reg.filters(Phase::DataLine));
        assert!(!reg.filters(Phase::RcptTo));
        assert!(reg.reports(Subsystem::SmtpIn, EventKind::LinkConnect));
        assert!(!reg.reports(Subsystem::SmtpIn, EventKind::LinkDisconnect));
        assert!(reg.reports(Subsystem::SmtpOut, EventKind::TxCommit));
        assert!(reg.reports_any(Subsystem::SmtpOut));
    }

    #[test]
    fn bad_registrations_fail_the_handshake() {
        let protocol = FilterProtocol::new("f", vec![Subsystem::SmtpIn], "mx");
        let mut reg = Registration::default();
        for line in [
            "register|filter|smtp-out|mail-from",
            "register|report|smtp-in|no-such-event",
            "hello",
        ] {
            assert!(
                protocol.register(line.as_bytes(), &mut reg).is_err(),
                "{line}"
            );
        }
    }

    #[test]
    fn the_handshake_announces_7_8_keys() {
        let protocol = FilterProtocol::new(
            "f",
            vec![Subsystem::SmtpIn, Subsystem::SmtpOut],
            "mx.example.org",
        );
        let mut out = bytes::BytesMut::new();
        for line in protocol.config() {
            line.format(&mut out).unwrap();
        }
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "config|smtp-session-timeout|300\nconfig|subsystem|smtp-in\n\
             config|subsystem|smtp-out\nconfig|admd|mx.example.org\n"
        );
    }

    #[test]
    fn results_answer_requests_and_datalines_go_to_streams() {
        let protocol = FilterProtocol::new("f", vec![Subsystem::SmtpIn], "mx");
        assert_eq!(
            protocol.decode(b"filter-result|00000000000000a1|0000000000000002|reject|550 no"),
            Decoded::Answer {
                key: (SessionId(0xa1), Token(2)),
                answer: Decision::Reject("550 no".into()),
            }
        );
        let mut rx = protocol.streams.open(SessionId(0xa1), Token(3));
        assert_eq!(
            protocol.decode(b"filter-dataline|00000000000000a1|0000000000000003|..x|y"),
            Decoded::Handled
        );
        assert_eq!(rx.try_recv().unwrap(), b"..x|y");
        protocol.streams.close(SessionId(0xa1), Token(3));
        assert_eq!(
            protocol.decode(b"filter-dataline|00000000000000a1|0000000000000003|z"),
            Decoded::Handled
        );
        let Decoded::Malformed { key, .. } =
            protocol.decode(b"filter-result|00000000000000a1|0000000000000002|maybe")
        else {
            panic!("accepted");
        };
        assert_eq!(key, Some((SessionId(0xa1), Token(2))));
    }

    fn dataline(i: usize) -> Vec<u8> {
        format!("filter-dataline|0000000000000001|0000000000000001|{i}").into_bytes()
    }

    #[tokio::test]
    async fn a_full_stream_holds_the_reader_until_there_is_room() {
        let protocol = FilterProtocol::new("f", vec![Subsystem::SmtpIn], "mx");
        let mut rx = protocol.streams.open(SessionId(1), Token(1));
        for i in 0..=STREAM_LINES {
            assert_eq!(protocol.decode(&dataline(i)), Decoded::Handled);
        }
        // The line past the bound waits, and the reader with it.
        let relieve = protocol.relieve();
        tokio::pin!(relieve);
        assert!(futures::poll!(relieve.as_mut()).is_pending());
        assert_eq!(rx.recv().await.unwrap(), b"0");
        relieve.await;
        for i in 1..=STREAM_LINES {
            assert_eq!(rx.recv().await.unwrap(), i.to_string().into_bytes());
        }
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_nobody_reads_is_cut_after_the_timeout() {
        let protocol = FilterProtocol::new("f", vec![Subsystem::SmtpIn], "mx")
            .with_timeout(Duration::from_secs(3));
        let mut rx = protocol.streams.open(SessionId(1), Token(1));
        for i in 0..=STREAM_LINES {
            protocol.decode(&dataline(i));
        }
        protocol.relieve().await;
        // What fitted is there, then the stream ends: its reader fails the
        // message rather than miss a line.
        for i in 0..STREAM_LINES {
            assert_eq!(rx.recv().await.unwrap(), i.to_string().into_bytes());
        }
        assert_eq!(rx.recv().await, None);
        assert!(!protocol
            .streams
            .deliver(SessionId(1), Token(1), b"late".to_vec()));
    }
}
