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
//! Both ends are built from this file, so they cannot disagree; the
//! protocol carries no version of its own.

use serde::{Deserialize, Serialize};

pub use crate::table::Service;

/// The longest request or answer line either end accepts, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// What a client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// `smtpctl show tables`: every table, its backend and counters.
    ShowTables,
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
}

impl Request {
    /// Whether only root and the daemon's own user may send it: requests
    /// that change state, and those that reveal table content (which may
    /// hold credentials). Anyone may submit mail.
    pub fn is_privileged(&self) -> bool {
        !matches!(self, Self::ShowTables | Self::SmtpSession)
    }
}

/// One line of the daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Answer {
    /// A data line of `show tables`.
    Table(TableStatus),
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
