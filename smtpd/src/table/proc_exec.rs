//! Tables served by a program: `table NAME proc-exec "CMD"` and OpenSMTPD's
//! `table NAME BACKEND:CONFIG`, which runs `table-BACKEND CONFIG` from the
//! backends directory. Both speak table 0.1 (SPEC.md section 2) through
//! the child supervisor of `crate::proc`.
//!
//! [`TableProtocol`] is the table family for the supervisor: the
//! `config|tablename` line, `register|SERVICE` lines, and answers keyed by
//! result type and request id, decoded with `smtpd_sdk::proto::table`.
//! [`ProcExecTable`] is the [`Table`] over it: it lower-cases keys and
//! refuses those that cannot be sent (over 1023 bytes, or holding `\r` or
//! `\n`) without sending anything, gives each request a fresh 8-digit id,
//! and maps answers: `found` and `not-found` are hits and misses, `error`,
//! a malformed answer, a timeout or a lost child are temporary failures.

use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use smtpd_sdk::proto::table::{Op, OpKind, Register, Request, Response, TableResult, VERSION};
use smtpd_sdk::proto::{ConfigLine, Line, ParseError, Problem, TableId, Timestamp};

use super::{Error, ProcStats, Service, Table};
use crate::proc::{self, Decoded, Family, Registered, Spec, StartError, Supervisor};

/// The longest key a table request may carry, in bytes.
pub const MAX_KEY: usize = 1023;

/// How many fresh ids a request tries when its id is still in flight.
const ID_ATTEMPTS: usize = 8;

/// What a table program registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The services, in the order registered.
    pub services: Vec<Service>,
}

/// The table protocol, for the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProtocol {
    table: String,
}

impl TableProtocol {
    /// The protocol for the table with this name (sent as
    /// `config|tablename`).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
        }
    }
}

/// The time stamp of a request: wall-clock time from the coarse clock,
/// good to a few milliseconds and much cheaper to read than the precise
/// one (the stamp is informational, SPEC.md 1.4).
fn wire_time() -> Timestamp {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } == 0 {
            if let (Ok(secs), Ok(nanos)) = (u64::try_from(now.tv_sec), u32::try_from(now.tv_nsec)) {
                return Timestamp {
                    secs,
                    micros: nanos / 1000,
                };
            }
        }
    }
    Timestamp::now()
}

/// A parse error without the line, which the supervisor quotes itself.
fn describe(e: &ParseError) -> String {
    format!("{} {} (expected {})", e.problem, e.field, e.expected)
}

/// The request a line names, if its first two fields are a result type
/// and a well-formed id.
fn named_request(line: &[u8]) -> Option<(OpKind, TableId)> {
    let mut fields = line.splitn(3, |&b| b == b'|');
    let kind = fields.next()?;
    let id = fields.next()?;
    let kind = [OpKind::Check, OpKind::Lookup, OpKind::Fetch, OpKind::Update]
        .into_iter()
        .find(|k| k.result_name().as_bytes() == kind)?;
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if id.len() != TableId::WIDTH || !id.iter().all(hex) {
        return None;
    }
    let id = u32::from_str_radix(std::str::from_utf8(id).ok()?, 16).ok()?;
    Some((kind, TableId(id)))
}

impl Family for TableProtocol {
    type Key = (OpKind, TableId);
    type Answer = TableResult;
    type Registration = Registration;

    fn protocol(&self) -> &'static str {
        VERSION
    }

    fn config(&self) -> Vec<ConfigLine> {
        vec![ConfigLine::entry("tablename", self.table.as_str())]
    }

    fn register(&self, line: &[u8], reg: &mut Registration) -> Result<Registered, String> {
        match Register::parse(line) {
            Ok(Register::Service(service)) => {
                if !reg.services.contains(&service) {
                    reg.services.push(service);
                }
                Ok(Registered::More)
            }
            Ok(Register::Ready) if reg.services.is_empty() => {
                Err("register|ready before any service was registered".to_owned())
            }
            Ok(Register::Ready) => Ok(Registered::Ready),
            Err(e) if e.problem == Problem::Unknown && e.field == "service" => Ok(
                Registered::Ignored(format!("registration of an unknown service: {}", e.line)),
            ),
            Err(e) => Err(describe(&e)),
        }
    }

    fn decode(&self, line: &[u8]) -> Decoded<Self::Key, TableResult> {
        match Response::parse(line) {
            Ok(r) => Decoded::Answer {
                key: (r.op, r.id),
                answer: r.result,
            },
            Err(e) => Decoded::Malformed {
                key: named_request(line),
                reason: describe(&e),
            },
        }
    }

    fn is_failure(&self, answer: &TableResult) -> bool {
        matches!(answer, TableResult::Error(_))
    }
}

/// A table served by a program.
pub struct ProcExecTable {
    name: String,
    backend: String,
    supervisor: Supervisor<TableProtocol>,
    next_id: AtomicU32,
}

impl ProcExecTable {
    /// Starts the program of `spec` for the table `name` and waits for its
    /// handshake. `backend` is how `smtpctl show tables` shows it.
    pub async fn start(
        name: impl Into<String>,
        backend: impl Into<String>,
        spec: Spec,
    ) -> Result<Self, StartError> {
        let name = name.into();
        let supervisor = Supervisor::start(TableProtocol::new(name.clone()), spec).await?;
        Ok(Self {
            name,
            backend: backend.into(),
            supervisor,
            // Ids start at a random-looking place, as 7.8's random ids do,
            // so that a restarted daemon does not reuse the last run's.
            next_id: AtomicU32::new(Timestamp::now().micros.wrapping_mul(2_654_435_761)),
        })
    }

    /// The supervisor running the program.
    pub fn supervisor(&self) -> &Supervisor<TableProtocol> {
        &self.supervisor
    }

    /// The key as sent: lower-cased, and refused when it cannot be sent.
    fn wire_key(&self, key: &str) -> Result<String, Error> {
        let invalid = |reason| Error::InvalidKey {
            table: self.name.clone(),
            reason,
        };
        if key.len() > MAX_KEY {
            return Err(invalid("longer than 1023 bytes"));
        }
        if key.contains(['\r', '\n']) {
            return Err(invalid("holds a carriage return or newline"));
        }
        Ok(key.to_ascii_lowercase())
    }

    /// Sends one request and waits for its answer.
    async fn ask(&self, op: Op) -> Result<TableResult, Error> {
        let kind = op.kind();
        let mut request = Request {
            timestamp: wire_time(),
            table: self.name.clone(),
            id: TableId(0),
            op,
        };
        for _ in 0..ID_ATTEMPTS {
            request.id = TableId(self.next_id.fetch_add(1, Ordering::Relaxed));
            match self.supervisor.call((kind, request.id), &request).await {
                Err(proc::Error::KeyInUse { .. }) => continue,
                answer => return answer.map_err(|e| self.failure(e)),
            }
        }
        Err(Error::Unavailable {
            table: self.name.clone(),
            reason: "no free request id".to_owned(),
        })
    }

    fn failure(&self, e: proc::Error) -> Error {
        let table = self.name.clone();
        match e {
            proc::Error::Timeout { after, .. } => Error::Timeout {
                table,
                seconds: after.as_secs(),
            },
            proc::Error::Malformed { reason, .. } => Error::Backend {
                table,
                message: Some(format!("malformed answer: {reason}")),
            },
            other => Error::Unavailable {
                table,
                reason: other.to_string(),
            },
        }
    }

    fn unexpected(&self, answer: &TableResult) -> Error {
        Error::Backend {
            table: self.name.clone(),
            message: Some(format!("unexpected answer {answer:?}")),
        }
    }

    fn backend_error(&self, message: Option<String>) -> Error {
        Error::Backend {
            table: self.name.clone(),
            message,
        }
    }

    /// A value answer (lookup, fetch).
    fn value(&self, answer: TableResult) -> Result<Option<String>, Error> {
        match answer {
            TableResult::Value(value) => Ok(Some(value)),
            TableResult::NotFound => Ok(None),
            TableResult::Error(message) => Err(self.backend_error(message)),
            other => Err(self.unexpected(&other)),
        }
    }
}

#[async_trait]
impl Table for ProcExecTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> String {
        self.backend.clone()
    }

    async fn check(&self, service: Service, key: &str) -> Result<bool, Error> {
        let key = self.wire_key(key)?;
        match self.ask(Op::Check { service, key }).await? {
            TableResult::Found => Ok(true),
            TableResult::NotFound => Ok(false),
            TableResult::Error(message) => Err(self.backend_error(message)),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        let key = self.wire_key(key)?;
        let answer = self.ask(Op::Lookup { service, key }).await?;
        self.value(answer)
    }

    async fn fetch(&self, service: Service) -> Result<Option<String>, Error> {
        let answer = self.ask(Op::Fetch { service }).await?;
        self.value(answer)
    }

    async fn update(&self) -> Result<(), Error> {
        match self.ask(Op::Update).await? {
            TableResult::Ok => Ok(()),
            TableResult::Error(message) => Err(self.backend_error(message)),
            other => Err(self.unexpected(&other)),
        }
    }

    fn proc_stats(&self) -> Option<ProcStats> {
        let stats = self.supervisor.stats();
        Some(ProcStats {
            pid: stats.pid,
            requests: stats.requests,
            errors: stats.errors,
            restarts: stats.restarts,
            p99_micros: stats.p99_micros,
        })
    }

    fn registered_services(&self) -> Option<Vec<Service>> {
        self.supervisor
            .registration()
            .map(|registration| registration.services.clone())
    }

    async fn shutdown(&self) {
        self.supervisor.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol() -> TableProtocol {
        TableProtocol::new("aliases")
    }

    #[test]
    fn wire_time_is_now() {
        let (coarse, precise) = (wire_time(), Timestamp::now());
        assert!(coarse <= precise);
        assert!(precise.secs - coarse.secs <= 1);
    }

    #[test]
    fn registrations() {
        let p = protocol();
        let mut reg = Registration::default();
        assert_eq!(
            p.register(b"register|ready", &mut reg),
            Err("register|ready before any service was registered".to_owned())
        );
        assert_eq!(
            p.register(b"register|alias", &mut reg),
            Ok(Registered::More)
        );
        assert_eq!(
            p.register(b"register|alias", &mut reg),
            Ok(Registered::More)
        );
        assert!(matches!(
            p.register(b"register|frobnicate", &mut reg),
            Ok(Registered::Ignored(_))
        ));
        assert!(p
            .register(b"lookup-result|00000001|not-found", &mut reg)
            .is_err());
        assert!(p.register(b"register", &mut reg).is_err());
        assert_eq!(
            p.register(b"register|ready", &mut reg),
            Ok(Registered::Ready)
        );
        assert_eq!(reg.services, [Service::Alias]);
        assert_eq!(p.config(), [ConfigLine::entry("tablename", "aliases")]);
    }

    #[test]
    fn answers_are_keyed_by_result_type_and_id() {
        let p = protocol();
        assert_eq!(
            p.decode(b"lookup-result|0000000a|found|a|b"),
            Decoded::Answer {
                key: (OpKind::Lookup, TableId(10)),
                answer: TableResult::Value("a|b".into())
            }
        );
        assert_eq!(
            p.decode(b"update-result|ffffffff|error"),
            Decoded::Answer {
                key: (OpKind::Update, TableId(u32::MAX)),
                answer: TableResult::Error(None)
            }
        );
    }

    #[test]
    fn malformed_answers_name_their_request_when_they_can() {
        let p = protocol();
        for (line, key) in [
            (
                &b"lookup-result|0000000a|ok"[..],
                Some((OpKind::Lookup, TableId(10))),
            ),
            (
                b"check-result|0000000b|found|x",
                Some((OpKind::Check, TableId(11))),
            ),
            (
                b"fetch-result|0000000c|found|",
                Some((OpKind::Fetch, TableId(12))),
            ),
            (b"check-result|0000000B|found", None),
            (b"check-result|b|found", None),
            (b"lookup|0000000a|found|x", None),
            (b"garbage", None),
            (b"", None),
        ] {
            match p.decode(line) {
                Decoded::Malformed { key: got, .. } => assert_eq!(got, key, "{line:?}"),
                other => panic!("{line:?} decoded as {other:?}"),
            }
        }
        assert!(p.is_failure(&TableResult::Error(None)));
        assert!(!p.is_failure(&TableResult::NotFound));
    }
}
