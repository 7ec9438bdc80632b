//! The control protocol: what `smtpctl` and the daemon say to each other
//! over the control socket.
//!
//! A client writes one [`Request`] as a line of JSON; the daemon answers
//! with lines of JSON, each an [`Answer`]: zero or more data lines (a
//! [`TableStatus`] per table, a lookup's value) and then exactly one final
//! line ([`Answer::is_final`]): `succeeded`, `failed` with a reason, or
//! `denied` when the request needs privileges the peer lacks. A client may
//! send further requests on the same connection after the final answer.
//!
//! ```text
//! > {"command":"update-table","name":"aliases"}
//! < {"answer":"succeeded"}
//! > {"command":"show-tables"}
//! < {"answer":"table","name":"aliases","backend":"file:/etc/mail/aliases","proc":null}
//! < {"answer":"succeeded"}
//! ```
//!
//! Envelope and message ids travel as their hex text (`"0a1b2c3d"`);
//! file content (`show envelope`, `show message`) travels in [`Answer::Data`]
//! chunks whose text holds one character per byte (U+0000 to U+00FF), so
//! that any bytes, 8-bit mail included, pass through JSON unchanged.
//!
//! Both ends are built from this file, so they cannot disagree; the
//! protocol carries no version of its own.

use serde::{Deserialize, Serialize};

pub use crate::queue::{EvpId, MsgId};
pub use crate::table::Service;

/// The longest request or answer line either end accepts, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// What a client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// `smtpctl show tables`: every table, its backend and counters.
    ShowTables,
    /// `smtpctl show filters`: every filter process, its state and
    /// counters, as [`Answer::Filter`]s.
    ShowFilters,
    /// `smtpctl update table NAME`: reload a static table, or send
    /// `update` to a table's program.
    UpdateTable {
        /// The table's configured name.
        name: String,
    },
    /// `smtpctl check table NAME SERVICE KEY`: whether the key matches.
    CheckTable {
        /// The table's configured name.
        name: String,
        /// The service to check for.
        #[serde(with = "service_name")]
        service: Service,
        /// The key.
        key: String,
    },
    /// `smtpctl lookup table NAME SERVICE KEY`: the key's value.
    LookupTable {
        /// The table's configured name.
        name: String,
        /// The service to look up.
        #[serde(with = "service_name")]
        service: Service,
        /// The key.
        key: String,
    },
    /// `sendmail`: an SMTP session of the socket listener. After the
    /// `succeeded` answer the connection speaks SMTP (see
    /// `crate::control::enqueue`).
    SmtpSession,
    /// `smtpctl show queue [MSGID]`: an [`Answer::Envelope`] per envelope.
    ShowQueue {
        /// All envelopes, or those of one message (or one envelope).
        target: Target,
    },
    /// `smtpctl show envelope EVPID`: the envelope as stored, in
    /// [`Answer::Data`] chunks.
    ShowEnvelope {
        /// The envelope.
        #[serde(with = "hex")]
        evpid: EvpId,
    },
    /// `smtpctl show message MSGID|EVPID`: the message as stored, in
    /// [`Answer::Data`] chunks.
    ShowMessage {
        /// The message.
        #[serde(with = "hex")]
        msgid: MsgId,
    },
    /// `smtpctl show stats`: an [`Answer::Stat`] per counter.
    ShowStats,
    /// `smtpctl show status`: an [`Answer::Status`].
    ShowStatus,
    /// `smtpctl show hosts`: the next-hop addresses the MTA knows, as
    /// [`Answer::Line`]s.
    ShowHosts,
    /// `smtpctl show relays`: the MTA's destinations.
    ShowRelays,
    /// `smtpctl show routes`: the MTA's routes (source, next hop).
    ShowRoutes,
    /// `smtpctl monitor` (each second): an [`Answer::Digest`].
    Digest,
    /// `smtpctl schedule`: try envelopes now; an [`Answer::Count`].
    Schedule {
        /// Which envelopes.
        target: Target,
    },
    /// `smtpctl remove`: delete envelopes without a bounce; an
    /// [`Answer::Count`].
    Remove {
        /// Which envelopes.
        target: Target,
    },
    /// `smtpctl pause envelope`: hold envelopes; an [`Answer::Count`].
    PauseEnvelope {
        /// Which envelopes.
        target: Target,
    },
    /// `smtpctl resume envelope`: release held envelopes; an
    /// [`Answer::Count`].
    ResumeEnvelope {
        /// Which envelopes.
        target: Target,
    },
    /// `smtpctl pause mda|mta|smtp`; fails when already paused.
    Pause {
        /// What to pause.
        agent: Agent,
    },
    /// `smtpctl resume mda|mta|smtp`; fails when not paused.
    Resume {
        /// What to resume.
        agent: Agent,
    },
    /// `smtpctl discover EVPID`: schedule an envelope copied into the
    /// queue by hand; an [`Answer::Count`].
    Discover {
        /// The envelope.
        #[serde(with = "hex")]
        evpid: EvpId,
    },
    /// `smtpctl log verbose` (debug lines) and `log brief`.
    Log {
        /// Whether to log debug lines.
        verbose: bool,
    },
}

/// Which envelopes a command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Target {
    /// One envelope.
    Envelope(#[serde(with = "hex")] EvpId),
    /// The envelopes of one message.
    Message(#[serde(with = "hex")] MsgId),
    /// Every envelope.
    All,
}

/// What `pause` and `resume` apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Agent {
    /// Local deliveries.
    Mda,
    /// Relaying.
    Mta,
    /// Accepting SMTP sessions (and local submissions).
    Smtp,
}

impl Agent {
    /// The word smtpctl and the log use (`mda`, `mta`, `smtp`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mda => "mda",
            Self::Mta => "mta",
            Self::Smtp => "smtp",
        }
    }
}

impl Request {
    /// Whether only root and the daemon's own user may send it: requests
    /// that change state, and those that reveal table content (which may
    /// hold credentials). Anyone may submit mail.
    pub fn is_privileged(&self) -> bool {
        !matches!(
            self,
            Self::ShowTables | Self::ShowFilters | Self::SmtpSession
        )
    }
}

/// One line of the daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Answer {
    /// A data line of `show tables`.
    Table(TableStatus),
    /// A data line of `show filters`.
    Filter(FilterStatus),
    /// A data line of `check table`.
    Check {
        /// Whether the key matched.
        found: bool,
    },
    /// A data line of `lookup table`.
    Lookup {
        /// The value, if the key was found.
        value: Option<String>,
    },
    /// A data line of `show queue`: one envelope.
    Envelope(QueueEntry),
    /// A data line of `show envelope` and `show message`: the next bytes
    /// of the file, one character per byte.
    Data {
        /// The bytes ([`to_text`], [`from_text`]).
        text: String,
    },
    /// A data line of `show stats`: one counter.
    Stat {
        /// The counter's name (`scheduler.delivery.ok`).
        key: String,
        /// Its value (`uptime`: seconds since the daemon started).
        value: i64,
    },
    /// The data line of `show status`.
    Status(PauseStatus),
    /// A data line of `show hosts`, `show relays` and `show routes`: one
    /// line as printed.
    Line {
        /// The line, without its newline.
        text: String,
    },
    /// The data line of a `monitor` request.
    Digest(Digest),
    /// The data line of `schedule`, `remove`, `pause envelope`, `resume
    /// envelope` and `discover`: how many envelopes it applied to.
    Count {
        /// The number of envelopes.
        count: usize,
    },
    /// Final: the request was carried out.
    Succeeded,
    /// Final: the request failed.
    Failed {
        /// Why, for the administrator.
        reason: String,
    },
    /// Final: the peer may not send this request.
    Denied,
}

impl Answer {
    /// Whether this line ends the answer to a request.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed { .. } | Self::Denied)
    }
}

/// An envelope as `show queue` lists it: its file's fields and what the
/// scheduler knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueEntry {
    /// The envelope.
    #[serde(with = "hex")]
    pub evpid: EvpId,
    /// The client's address family: `local`, `inet4` or `inet6`.
    pub family: String,
    /// The delivery type: `mda`, `mta` or `bounce`.
    pub kind: String,
    /// Flags from `bounce`, `auth`, `internal`, `suspend`, `hold`.
    pub flags: Vec<String>,
    /// The sender, `user@domain` (`@` for the null sender).
    pub sender: String,
    /// The recipient as given.
    pub rcpt: String,
    /// The recipient after expansion.
    pub dest: String,
    /// Creation time, Unix seconds.
    pub ctime: u64,
    /// Creation time plus the envelope's `ttl` field.
    pub expire: u64,
    /// Last attempt, Unix seconds (0: never).
    pub last_try: u64,
    /// Attempts that failed temporarily.
    pub retry: u16,
    /// Where it is in the scheduler.
    pub runstate: RunState,
    /// The last error line.
    pub error: String,
}

/// An envelope's place in the scheduler, with the delay `show queue`
/// prints beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RunState {
    /// Waiting (or ready): seconds until its attempt, negative once due.
    Pending {
        /// Seconds until the next attempt.
        delay: i64,
    },
    /// Being delivered.
    Inflight {
        /// Seconds since the attempt started.
        delay: i64,
    },
    /// In no known state.
    Invalid,
    /// Read from the spool while no daemon runs.
    Offline,
}

/// What `show status` prints: which activities are paused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseStatus {
    /// Local deliveries.
    pub mda: bool,
    /// Relaying.
    pub mta: bool,
    /// SMTP sessions.
    pub smtp: bool,
}

/// The counters `monitor` prints the changes of (OpenSMTPD's
/// `stat_digest`), each counted since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// SMTP sessions opened.
    pub clt_connect: u64,
    /// SMTP sessions closed.
    pub clt_disconnect: u64,
    /// Envelopes the scheduler took in.
    pub evp_enqueued: u64,
    /// Envelopes the scheduler let go of.
    pub evp_dequeued: u64,
    /// Envelopes expired.
    pub evp_expired: u64,
    /// Envelopes removed by the administrator.
    pub evp_removed: u64,
    /// Bounce envelopes created.
    pub evp_bounce: u64,
    /// Deliveries that succeeded.
    pub dlv_ok: u64,
    /// Deliveries that failed for good.
    pub dlv_permfail: u64,
    /// Deliveries that failed temporarily.
    pub dlv_tempfail: u64,
    /// Delivery loops cut.
    pub dlv_loop: u64,
}

/// A table as `show tables` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableStatus {
    /// The configured name.
    pub name: String,
    /// How it is served (`file:/path`, `proc-exec "CMD"`, ...).
    pub backend: String,
    /// Counters, for tables served by a program.
    pub proc: Option<ProcCounters>,
}

/// A filter process as `show filters` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterStatus {
    /// The process's name (`proc NAME`, `filter NAME proc-exec`).
    pub name: String,
    /// The command it runs.
    pub command: String,
    /// `running`, `down (WHY)` or `stopped`.
    pub state: String,
    /// Its counters: requests are filter requests (one per phase asked),
    /// errors the failed requests and the messages whose data-lines
    /// failed here, latency that of the requests' answers.
    pub proc: ProcCounters,
    /// Report lines sent.
    pub reports: u64,
    /// Data-lines sent.
    pub data_lines: u64,
}

/// The counters of a table served by a program (`crate::table::ProcStats`
/// on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcCounters {
    /// The running child's pid, if one runs.
    pub pid: Option<u32>,
    /// Requests sent since start-up.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Times the child was restarted.
    pub restarts: u64,
    /// 99th percentile of recent answer latencies, in microseconds.
    pub p99_micros: Option<u64>,
}

impl From<crate::table::ProcStats> for ProcCounters {
    fn from(s: crate::table::ProcStats) -> Self {
        Self {
            pid: s.pid,
            requests: s.requests,
            errors: s.errors,
            restarts: s.restarts,
            p99_micros: s.p99_micros,
        }
    }
}

/// A line that is not valid JSON for the expected type, or is too long.
#[derive(Debug, thiserror::Error)]
#[error("invalid control line: {0}")]
pub struct DecodeError(String);

/// Encodes a request or answer as one line, newline included.
pub fn encode<T: Serialize>(item: &T) -> String {
    let mut line = serde_json::to_string(item)
        .expect("control types serialise: plain structs and enums, string keys only");
    line.push('\n');
    line
}

/// Decodes one line (without or with its newline).
pub fn decode<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, DecodeError> {
    if line.len() > MAX_LINE {
        return Err(DecodeError(format!("line over {MAX_LINE} bytes")));
    }
    serde_json::from_str(line.trim_end_matches(['\r', '\n']))
        .map_err(|e| DecodeError(e.to_string()))
}

/// Bytes as the text of an [`Answer::Data`]: one character per byte.
pub fn to_text(bytes: &[u8]) -> String {
    bytes.iter().copied().map(char::from).collect()
}

/// The bytes of an [`Answer::Data`] text; `None` if a character is past
/// U+00FF.
pub fn from_text(text: &str) -> Option<Vec<u8>> {
    text.chars().map(|c| u8::try_from(c).ok()).collect()
}

/// An id as exactly its width of hex digits, either case, never zero
/// (OpenSMTPD's MSGID and EVPID arguments).
pub trait HexId: Sized + std::fmt::Display {
    /// Parses the id; `None` when `text` is not one.
    fn from_hex(text: &str) -> Option<Self>;
}

/// Parses exactly `width` hex digits of either case, not all zero.
fn parse_hex(text: &str, width: usize) -> Option<u64> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok().filter(|n| *n != 0)
}

impl HexId for MsgId {
    fn from_hex(text: &str) -> Option<Self> {
        let n = parse_hex(text, Self::WIDTH)?;
        u32::try_from(n).ok().map(Self)
    }
}

impl HexId for EvpId {
    fn from_hex(text: &str) -> Option<Self> {
        parse_hex(text, Self::WIDTH).map(Self)
    }
}

/// Serialises ids as their hex text.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::HexId;

    pub(super) fn serialize<T: HexId, S: Serializer>(id: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(super) fn deserialize<'de, T: HexId, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        T::from_hex(&text).ok_or_else(|| serde::de::Error::custom(format!("invalid id {text:?}")))
    }
}

/// Serialises a [`Service`] as its wire name (`alias`, `domain`, ...).
mod service_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Service;

    pub(super) fn serialize<S: Serializer>(service: &Service, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(service.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Service, D::Error> {
        let name = String::deserialize(d)?;
        Service::from_name(name.as_bytes())
            .ok_or_else(|| serde::de::Error::custom(format!("unknown service {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_as_single_lines() {
        let requests = [
            Request::ShowTables,
            Request::UpdateTable {
                name: "aliases".into(),
            },
            Request::CheckTable {
                name: "domains".into(),
                service: Service::Domain,
                key: "example.org".into(),
            },
            Request::LookupTable {
                name: "aliases".into(),
                service: Service::Alias,
                key: "a \"quoted\"\nkey".into(),
            },
        ];
        for r in requests {
            let line = encode(&r);
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert_eq!(decode::<Request>(&line).unwrap(), r);
        }
        let answers = [
            Answer::Table(TableStatus {
                name: "users".into(),
                backend: "proc-exec \"table-shell.sh users\"".into(),
                proc: Some(ProcCounters {
                    pid: Some(42),
                    requests: 7,
                    errors: 1,
                    restarts: 0,
                    p99_micros: Some(1200),
                }),
            }),
            Answer::Check { found: true },
            Answer::Lookup { value: None },
            Answer::Lookup {
                value: Some("root".into()),
            },
            Answer::Succeeded,
            Answer::Failed {
                reason: "no table named \"x\"".into(),
            },
            Answer::Denied,
        ];
        for a in answers {
            let line = encode(&a);
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert_eq!(decode::<Answer>(&line).unwrap(), a);
        }
    }

    #[test]
    fn the_wire_form_is_stable() {
        assert_eq!(
            encode(&Request::UpdateTable {
                name: "aliases".into()
            }),
            "{\"command\":\"update-table\",\"name\":\"aliases\"}\n"
        );
        assert_eq!(
            encode(&Request::LookupTable {
                name: "t".into(),
                service: Service::Mailaddrmap,
                key: "k".into()
            }),
            "{\"command\":\"lookup-table\",\"name\":\"t\",\"service\":\"mailaddrmap\",\"key\":\"k\"}\n"
        );
        assert_eq!(encode(&Answer::Succeeded), "{\"answer\":\"succeeded\"}\n");
    }

    #[test]
    fn queue_requests_and_answers_round_trip() {
        let evpid = EvpId(0x0a1b_2c3d_0000_0001);
        let msgid = MsgId(0x0a1b_2c3d);
        let requests = [
            Request::ShowQueue {
                target: Target::All,
            },
            Request::ShowQueue {
                target: Target::Message(msgid),
            },
            Request::ShowEnvelope { evpid },
            Request::ShowMessage { msgid },
            Request::ShowStats,
            Request::ShowStatus,
            Request::Digest,
            Request::Schedule {
                target: Target::Envelope(evpid),
            },
            Request::Remove {
                target: Target::All,
            },
            Request::PauseEnvelope {
                target: Target::Message(msgid),
            },
            Request::ResumeEnvelope {
                target: Target::All,
            },
            Request::Pause { agent: Agent::Smtp },
            Request::Resume { agent: Agent::Mta },
            Request::Discover { evpid },
            Request::Log { verbose: false },
        ];
        for r in requests {
            let line = encode(&r);
            assert!(r.is_privileged(), "{line}");
            assert_eq!(decode::<Request>(&line).unwrap(), r, "{line}");
        }
        let answers = [
            Answer::Envelope(QueueEntry {
                evpid,
                family: "inet4".into(),
                kind: "mta".into(),
                flags: vec!["bounce".into(), "hold".into()],
                sender: "@".into(),
                rcpt: "a@b".into(),
                dest: "a@b".into(),
                ctime: 1,
                expire: 2,
                last_try: 3,
                retry: 4,
                runstate: RunState::Inflight { delay: 5 },
                error: "421 later".into(),
            }),
            Answer::Data {
                text: to_text(b"\x00\r\n\xff"),
            },
            Answer::Stat {
                key: "uptime".into(),
                value: 7,
            },
            Answer::Status(PauseStatus {
                mda: true,
                ..PauseStatus::default()
            }),
            Answer::Digest(Digest {
                dlv_ok: 3,
                ..Digest::default()
            }),
            Answer::Count { count: 2 },
        ];
        for a in answers {
            let line = encode(&a);
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(!a.is_final());
            assert_eq!(decode::<Answer>(&line).unwrap(), a, "{line}");
        }
        assert_eq!(
            encode(&Request::Schedule {
                target: Target::Envelope(evpid)
            }),
            "{\"command\":\"schedule\",\"target\":{\"envelope\":\"0a1b2c3d00000001\"}}\n"
        );
        assert_eq!(
            encode(&Request::Pause { agent: Agent::Mda }),
            "{\"command\":\"pause\",\"agent\":\"mda\"}\n"
        );
    }

    #[test]
    fn ids_are_exactly_their_width_of_hex_and_never_zero() {
        assert_eq!(MsgId::from_hex("0A1b2c3d"), Some(MsgId(0x0a1b_2c3d)));
        assert_eq!(
            EvpId::from_hex("0a1b2c3d00000001"),
            Some(EvpId(0x0a1b_2c3d_0000_0001))
        );
        for bad in [
            "",
            "0a1b2c3",
            "0a1b2c3d0",
            "00000000",
            "+a1b2c3d",
            "0x1b2c3d",
        ] {
            assert_eq!(MsgId::from_hex(bad), None, "{bad}");
        }
        assert_eq!(EvpId::from_hex("0000000000000000"), None);
        assert_eq!(EvpId::from_hex("0a1b2c3d"), None);
        let line = "{\"command\":\"show-envelope\",\"evpid\":\"0a1b2c3d\"}";
        assert!(decode::<Request>(line).is_err());
    }

    #[test]
    fn data_text_carries_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = to_text(&bytes);
        assert_eq!(from_text(&text).unwrap(), bytes);
        let line = encode(&Answer::Data { text });
        assert!(line.len() < 6 * 256 + 64, "{}", line.len());
        assert_eq!(from_text("\u{100}"), None);
    }

    #[test]
    fn bad_lines_are_refused() {
        for line in [
            "",
            "not json",
            "{\"command\":\"reboot\"}",
            "{\"command\":\"update-table\"}",
            "{\"command\":\"check-table\",\"name\":\"t\",\"service\":\"nope\",\"key\":\"k\"}",
        ] {
            assert!(decode::<Request>(line).is_err(), "{line}");
        }
        let long = format!(
            "{{\"command\":\"update-table\",\"name\":\"{}\"}}",
            "x".repeat(MAX_LINE)
        );
        assert!(decode::<Request>(&long).is_err());
    }

    #[test]
    fn only_show_tables_and_submission_are_unprivileged() {
        assert!(!Request::ShowTables.is_privileged());
        assert!(!Request::SmtpSession.is_privileged());
        assert_eq!(
            encode(&Request::SmtpSession),
            "{\"command\":\"smtp-session\"}\n"
        );
        assert!(Request::UpdateTable { name: "t".into() }.is_privileged());
    }
}
