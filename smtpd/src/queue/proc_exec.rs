//! The queue served by a program: `queue proc-exec "CMD"`, speaking queue
//! protocol 0.1 (SPEC.md section 4) through the child supervisor of
//! `crate::proc`.
//!
//! [`QueueProtocol`] is the queue family for the supervisor: no `config`
//! lines of its own, `register|CAPABILITY` lines recorded in a
//! [`Registration`] (0.1 defines none; a later revision adds optional
//! features a backend announces this way, see [`KNOWN_CAPABILITIES`]), and
//! answers keyed by request id, decoded with `smtpd_sdk::proto::queue`.
//!
//! [`ProcExecQueue`] is the [`QueueBackend`] over it. Each operation is one
//! request with a fresh 16-digit id, but for `message_write`, which splits
//! what intake hands it into chunks of at most [`CHUNK_SIZE`] bytes, sent
//! one after another, each once the previous one was answered `ok`: the
//! daemon never holds more than one caller's buffer and one encoded chunk
//! per message, whatever the message's size. Reads are bounded by
//! [`MAX_READ_LENGTH`]. Answers are checked against their request (the
//! result type, an envelope id under the right message, a walk that moves
//! forward, no more bytes than asked for); `error`, a malformed answer, a
//! timeout or a lost child become a temporary [`Error::Backend`] naming the
//! backend, so intake answers 4xx and the scheduler retries later.
//!
//! The supervisor restarts a backend that died with backoff. Every time the
//! backend comes back (a new child passed its handshake, or it answers
//! again after failures), [`QueueBackend::recoveries`] moves on, and the
//! scheduler walks the envelopes again (SPEC.md 4.9).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use smtpd_sdk::proto::queue::{
    Op, OpKind, QueueResult, Register, Request, Response, LEASE_CAPABILITY, VERSION,
};
use smtpd_sdk::proto::{ConfigLine, Line, ParseError, QueueId, Timestamp};
use tokio::sync::watch;

use super::{Claim, Error, EvpId, MsgId, QueueBackend, MAX_ENVELOPE_SIZE, MAX_READ_LENGTH};
use crate::proc::{self, Decoded, Family, Registered, Spec, StartError, State, Supervisor};

/// The largest chunk of a `message-write` request, in bytes (SPEC.md 4.4).
pub const CHUNK_SIZE: usize = smtpd_sdk::proto::queue::DEFAULT_CHUNK_SIZE;

/// How long a queue request may wait for its answer. A commit makes a
/// whole message durable, so it gets more than a table lookup.
pub const QUEUE_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The capabilities this daemon understands; a backend may register
/// others, which are recorded and logged as ignored. Queue 0.1 defines
/// `lease` (a store several daemons share, SPEC.md 4.12).
pub const KNOWN_CAPABILITIES: &[&str] = &[LEASE_CAPABILITY];

/// How many fresh ids a request tries when its id is still in flight.
const ID_ATTEMPTS: usize = 8;

/// What a queue program registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Every capability, known or not, in the order registered.
    pub capabilities: Vec<String>,
}

impl Registration {
    /// Whether the backend registered `capability`.
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// The queue protocol, for the supervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueProtocol;

/// A parse error without the line, which the supervisor quotes itself.
fn describe(e: &ParseError) -> String {
    format!("{} {} (expected {})", e.problem, e.field, e.expected)
}

/// The request a malformed line names, if its second field is a
/// well-formed request id.
fn named_request(line: &[u8]) -> Option<QueueId> {
    let mut fields = line.splitn(3, |&b| b == b'|');
    let kind = fields.next()?;
    let id = fields.next()?;
    if !kind.ends_with(b"-result") || id.len() != QueueId::WIDTH {
        return None;
    }
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if !id.iter().all(hex) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(id).ok()?, 16)
        .ok()
        .map(QueueId)
}

impl Family for QueueProtocol {
    type Key = QueueId;
    type Answer = Response;
    type Registration = Registration;

    fn protocol(&self) -> &'static str {
        VERSION
    }

    fn config(&self) -> Vec<ConfigLine> {
        Vec::new()
    }

    fn register(&self, line: &[u8], reg: &mut Registration) -> Result<Registered, String> {
        match Register::parse(line) {
            Ok(Register::Ready) => Ok(Registered::Ready),
            Ok(Register::Capability(name)) => {
                let known = KNOWN_CAPABILITIES.contains(&name.as_str());
                if !reg.has(&name) {
                    reg.capabilities.push(name.clone());
                }
                if known {
                    Ok(Registered::More)
                } else {
                    Ok(Registered::Ignored(format!("unknown capability {name}")))
                }
            }
            Err(e) => Err(describe(&e)),
        }
    }

    fn decode(&self, line: &[u8]) -> Decoded<QueueId, Response> {
        match Response::parse(line) {
            Ok(r) => Decoded::Answer {
                key: r.id,
                answer: r,
            },
            Err(e) => Decoded::Malformed {
                key: named_request(line),
                reason: describe(&e),
            },
        }
    }

    fn is_failure(&self, answer: &Response) -> bool {
        matches!(answer.result, QueueResult::Error(_))
    }
}

/// The time stamp of a request (informational, SPEC.md 1.4).
fn wire_time() -> Timestamp {
    Timestamp::now()
}

/// Whether the backend serves requests, and how often it came back.
struct Health {
    /// Set by a failed request, cleared by the next success.
    failing: AtomicBool,
    /// Counts the recoveries; the scheduler watches it.
    recoveries: watch::Sender<u64>,
}

impl Health {
    fn recovered(&self) {
        self.recoveries.send_modify(|n| *n += 1);
    }

    fn succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            self.recovered();
        }
    }

    fn failed(&self) {
        self.failing.store(true, Ordering::Relaxed);
    }
}

/// A queue served by a program.
pub struct ProcExecQueue {
    name: String,
    supervisor: Supervisor<QueueProtocol>,
    next_id: AtomicU64,
    health: Arc<Health>,
    /// The backend registered `lease` at start.
    shared: bool,
}

impl ProcExecQueue {
    /// Starts the program of `spec` and waits for its handshake.
    pub async fn start(spec: Spec) -> Result<Self, StartError> {
        let name = spec.name.clone();
        let supervisor = Supervisor::start(QueueProtocol, spec).await?;
        let health = Arc::new(Health {
            failing: AtomicBool::new(false),
            recoveries: watch::channel(0).0,
        });
        tokio::spawn(watch_restarts(supervisor.state(), Arc::clone(&health)));
        let shared = supervisor
            .registration()
            .is_some_and(|r| r.has(LEASE_CAPABILITY));
        Ok(Self {
            shared,
            name,
            supervisor,
            // Ids start at a random-looking place, so that a restarted
            // daemon does not reuse the last run's.
            next_id: AtomicU64::new(
                u64::from(Timestamp::now().micros).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            health,
        })
    }

    /// The supervisor running the program.
    pub fn supervisor(&self) -> &Supervisor<QueueProtocol> {
        &self.supervisor
    }

    /// Sends one request and waits for an answer to it, of the right type.
    async fn ask(&self, op: Op) -> Result<QueueResult, Error> {
        let kind = op.kind();
        let mut request = Request {
            timestamp: wire_time(),
            id: QueueId(0),
            op,
        };
        for _ in 0..ID_ATTEMPTS {
            request.id = QueueId(self.next_id.fetch_add(1, Ordering::Relaxed));
            match self.supervisor.call(request.id, &request).await {
                Err(proc::Error::KeyInUse { .. }) => continue,
                Err(e) => return Err(self.failed(e.to_string())),
                Ok(answer) if answer.op != kind => {
                    return Err(self.failed(format!(
                        "malformed answer: {} to a {} request",
                        answer.op.result_name(),
                        kind.name()
                    )))
                }
                Ok(Response {
                    result: QueueResult::Error(message),
                    ..
                }) => {
                    let message = message.unwrap_or_else(|| "error".to_owned());
                    return Err(self.failed(format!("{}: {message}", kind.name())));
                }
                Ok(answer) => {
                    self.health.succeeded();
                    return Ok(answer.result);
                }
            }
        }
        Err(self.failed("no free request id".to_owned()))
    }

    /// A failed request: counted, and turned into a temporary error.
    fn failed(&self, reason: String) -> Error {
        self.health.failed();
        self.error(reason)
    }

    fn error(&self, reason: String) -> Error {
        Error::Backend {
            backend: self.name.clone(),
            reason,
        }
    }

    /// An answer that is well-formed but wrong for what was asked.
    fn unexpected(&self, kind: OpKind, answer: &QueueResult) -> Error {
        self.failed(format!("malformed answer to {}: {answer:?}", kind.name()))
    }

    fn check_envelope(data: &[u8]) -> Result<(), Error> {
        if data.is_empty() || data.len() > MAX_ENVELOPE_SIZE {
            return Err(Error::EnvelopeSize { size: data.len() });
        }
        Ok(())
    }
}

/// Counts a recovery each time a new child passes its handshake after the
/// backend was down; ends when the backend stops for good.
async fn watch_restarts(mut state: watch::Receiver<State>, health: Arc<Health>) {
    let mut down = false;
    while state.changed().await.is_ok() {
        let now = state.borrow_and_update().clone();
        match now {
            State::Running { .. } if down => {
                down = false;
                health.failing.store(false, Ordering::Relaxed);
                health.recovered();
            }
            State::Running { .. } => {}
            State::Down { .. } => down = true,
            State::Stopped => break,
        }
    }
}

#[async_trait]
impl QueueBackend for ProcExecQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn message_create(&self) -> Result<MsgId, Error> {
        match self.ask(Op::MessageCreate).await? {
            QueueResult::Created(msgid) => Ok(msgid),
            other => Err(self.unexpected(OpKind::MessageCreate, &other)),
        }
    }

    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let mut offset = offset;
        for chunk in data.chunks(CHUNK_SIZE) {
            let op = Op::MessageWrite {
                msgid,
                offset,
                data: chunk.to_vec(),
            };
            match self.ask(op).await? {
                QueueResult::Ok => offset += chunk.len() as u64,
                other => return Err(self.unexpected(OpKind::MessageWrite, &other)),
            }
        }
        Ok(())
    }

    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        match self.ask(Op::MessageCommit { msgid, size }).await? {
            QueueResult::Ok => Ok(()),
            other => Err(self.unexpected(OpKind::MessageCommit, &other)),
        }
    }

    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        if length > MAX_READ_LENGTH {
            return Err(Error::ReadTooLarge { length });
        }
        let op = Op::MessageRead {
            msgid,
            offset,
            length,
        };
        match self.ask(op).await? {
            QueueResult::Data(data) if data.len() as u64 <= length => Ok(Some(data)),
            QueueResult::Data(data) => Err(self.failed(format!(
                "malformed answer to message-read: {} bytes for a read of {length}",
                data.len()
            ))),
            QueueResult::NotFound => Ok(None),
            other => Err(self.unexpected(OpKind::MessageRead, &other)),
        }
    }

    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        match self.ask(Op::MessageDelete { msgid }).await? {
            QueueResult::Ok => Ok(()),
            other => Err(self.unexpected(OpKind::MessageDelete, &other)),
        }
    }

    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        match self.ask(Op::MessageCorrupt { msgid }).await? {
            QueueResult::Ok => Ok(true),
            QueueResult::NotFound => Ok(false),
            other => Err(self.unexpected(OpKind::MessageCorrupt, &other)),
        }
    }

    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        Self::check_envelope(data)?;
        let op = Op::EnvelopeCreate {
            msgid,
            data: data.to_vec(),
        };
        match self.ask(op).await? {
            QueueResult::EnvelopeCreated(evpid) if evpid.msgid() == msgid => Ok(evpid),
            QueueResult::EnvelopeCreated(evpid) => Err(self.failed(format!(
                "malformed answer to envelope-create: envelope {evpid} for message {msgid}"
            ))),
            other => Err(self.unexpected(OpKind::EnvelopeCreate, &other)),
        }
    }

    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        Self::check_envelope(data)?;
        let op = Op::EnvelopeUpdate {
            evpid,
            data: data.to_vec(),
        };
        match self.ask(op).await? {
            QueueResult::Ok => Ok(true),
            QueueResult::NotFound => Ok(false),
            other => Err(self.unexpected(OpKind::EnvelopeUpdate, &other)),
        }
    }

    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        match self.ask(Op::EnvelopeLoad { evpid }).await? {
            QueueResult::Data(data) => Ok(Some(data)),
            QueueResult::NotFound => Ok(None),
            other => Err(self.unexpected(OpKind::EnvelopeLoad, &other)),
        }
    }

    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        match self.ask(Op::EnvelopeDelete { evpid }).await? {
            QueueResult::Ok => Ok(()),
            other => Err(self.unexpected(OpKind::EnvelopeDelete, &other)),
        }
    }

    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        match self.ask(Op::EnvelopeWalk { after }).await? {
            QueueResult::Walked(evpid, data) if evpid.0 > after.0 => Ok(Some((evpid, data))),
            QueueResult::Walked(evpid, _) => Err(self.failed(format!(
                "malformed answer to envelope-walk: {evpid} is not after {after}"
            ))),
            QueueResult::Done => Ok(None),
            other => Err(self.unexpected(OpKind::EnvelopeWalk, &other)),
        }
    }

    fn recoveries(&self) -> Option<watch::Receiver<u64>> {
        Some(self.health.recoveries.subscribe())
    }

    fn shared(&self) -> bool {
        self.shared
    }

    async fn envelope_claim(
        &self,
        evpid: EvpId,
        instance: &str,
        seconds: u64,
    ) -> Result<Claim, Error> {
        if !self.shared {
            return Ok(Claim::Granted);
        }
        let op = Op::EnvelopeClaim {
            evpid,
            instance: instance.to_owned(),
            seconds,
        };
        match self.ask(op).await? {
            QueueResult::Ok => Ok(Claim::Granted),
            QueueResult::Busy => Ok(Claim::Busy),
            QueueResult::NotFound => Ok(Claim::NotFound),
            other => Err(self.unexpected(OpKind::EnvelopeClaim, &other)),
        }
    }

    async fn envelope_release(&self, evpid: EvpId, instance: &str) -> Result<(), Error> {
        if !self.shared {
            return Ok(());
        }
        let op = Op::EnvelopeRelease {
            evpid,
            instance: instance.to_owned(),
        };
        match self.ask(op).await? {
            QueueResult::Ok => Ok(()),
            other => Err(self.unexpected(OpKind::EnvelopeRelease, &other)),
        }
    }

    async fn envelope_walk_free(
        &self,
        after: EvpId,
        instance: &str,
    ) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        if !self.shared {
            return self.envelope_walk(after).await;
        }
        let op = Op::EnvelopeWalkFree {
            after,
            instance: instance.to_owned(),
        };
        match self.ask(op).await? {
            QueueResult::Walked(evpid, data) if evpid.0 > after.0 => Ok(Some((evpid, data))),
            QueueResult::Walked(evpid, _) => Err(self.failed(format!(
                "malformed answer to envelope-walk-free: {evpid} is not after {after}"
            ))),
            QueueResult::Done => Ok(None),
            other => Err(self.unexpected(OpKind::EnvelopeWalkFree, &other)),
        }
    }

    async fn shutdown(&self) {
        self.supervisor.stop().await;
    }
}

#[cfg(test)]
mod tests;
