//! The handshake: the daemon's `config|...` lines, the backend's
//! `register|...` lines up to `register|ready`, and what went wrong when
//! they do not come ("never registered", "exited during handshake",
//! "answered garbage").

use std::collections::BTreeSet;
use std::time::Duration;

use smtpd_conformance::vectors::Family;
use smtpd_conformance::wire::{parse_registration, Registration};
use smtpd_sdk::proto::filter::{self, EventKind, Phase, Subsystem};
use smtpd_sdk::proto::{queue, table, ConfigLine, Line};
use tokio::time::Instant;

use super::backend::{Backend, Next};
use super::report::{show, Failure};

/// The table name announced to table backends (the vectors use it).
pub(crate) const TABLE_NAME: &str = "standard";

/// The daemon's handshake for `family` announcing protocol `version`,
/// formatted by the codec, each line with its `\n`.
pub(crate) fn config_lines(family: Family, version: &str) -> Vec<Vec<u8>> {
    let mut lines = vec![
        ConfigLine::entry("smtpd-version", env!("CARGO_PKG_VERSION")),
        ConfigLine::entry("protocol", version),
    ];
    match family {
        Family::Table => lines.push(ConfigLine::entry("tablename", TABLE_NAME)),
        Family::Filter => {
            lines.push(ConfigLine::entry("smtp-session-timeout", "300"));
            lines.push(ConfigLine::entry("subsystem", "smtp-in"));
            lines.push(ConfigLine::entry("admd", "conformance.example.org"));
        }
        Family::Queue => {}
    }
    lines.push(ConfigLine::Ready);
    lines
        .iter()
        .map(|line| line.to_line().unwrap_or_default())
        .collect()
}

/// What a backend registered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registered {
    pub(crate) lines: Vec<Registration>,
}

impl Registered {
    /// The table services registered, in protocol order.
    pub(crate) fn services(&self) -> Vec<table::Service> {
        let set: BTreeSet<table::Service> = self
            .lines
            .iter()
            .filter_map(|r| match r {
                Registration::Table(table::Register::Service(s)) => Some(*s),
                _ => None,
            })
            .collect();
        set.into_iter().collect()
    }

    /// True when a queue backend registered `capability`.
    pub(crate) fn has_capability(&self, capability: &str) -> bool {
        self.lines.iter().any(
            |r| matches!(r, Registration::Queue(queue::Register::Capability(c)) if c == capability),
        )
    }

    /// True when the filter registered `phase`.
    pub(crate) fn has_phase(&self, phase: Phase) -> bool {
        self.lines.iter().any(|r| {
            matches!(r, Registration::Filter(filter::Register::Filter { phase: p }) if *p == phase)
        })
    }

    /// True when the filter registered report `event` of `subsystem`, by
    /// name or with `*`. `None` is an event the codec does not know: only
    /// `*` covers it.
    pub(crate) fn has_report(&self, subsystem: Subsystem, event: Option<EventKind>) -> bool {
        self.lines.iter().any(|r| match r {
            Registration::Filter(filter::Register::Report {
                subsystem: s,
                event: registered,
            }) => {
                *s == subsystem
                    && (registered.is_none() || (event.is_some() && *registered == event))
            }
            _ => false,
        })
    }

    /// The registrations as the backend wrote them, for the report.
    pub(crate) fn describe(&self) -> String {
        let names: Vec<String> = self
            .lines
            .iter()
            .filter(|r| !r.is_ready())
            .map(|r| {
                let line = match r {
                    Registration::Table(x) => x.to_line(),
                    Registration::Filter(x) => x.to_line(),
                    Registration::Queue(x) => x.to_line(),
                };
                let line = line.unwrap_or_default();
                let text = String::from_utf8_lossy(&line);
                text.trim_end().trim_start_matches("register|").to_owned()
            })
            .collect();
        if names.is_empty() {
            "registered nothing".into()
        } else {
            format!("registered {}", names.join(", "))
        }
    }
}

/// Sends the handshake and reads the registrations until `register|ready`,
/// within `timeout`.
pub(crate) async fn perform(
    backend: &mut Backend,
    family: Family,
    timeout: Duration,
) -> Result<Registered, Failure> {
    for line in config_lines(family, family.version()) {
        backend.send_raw(line);
    }
    let deadline = Instant::now() + timeout;
    let mut registered = Registered::default();
    loop {
        let line = match backend.next(deadline).await {
            Next::Line(line) => line,
            Next::TooLong(len) => {
                return Err(Failure::new(format!(
                    "answered garbage: a line of more than {len} bytes"
                )))
            }
            Next::Closed => {
                let how = backend.describe_exit(timeout).await;
                let how = how.replacen("exited ", "", 1);
                let stderr = backend.stderr_tail().await;
                return Err(
                    Failure::new(format!("exited during handshake {how}")).with_stderr(&stderr)
                );
            }
            Next::TimedOut => {
                let stderr = backend.stderr_tail().await;
                let got = registered.lines.len();
                return Err(Failure::new(format!(
                    "never registered: no register|ready within {} s ({got} registration lines before)",
                    timeout.as_secs_f64()
                ))
                .with_stderr(&stderr));
            }
        };
        match parse_registration(family, &line) {
            Ok(r) if r.is_ready() => break,
            Ok(r) => registered.lines.push(r),
            Err(e) => {
                let stderr = backend.stderr_tail().await;
                let mut failure = Failure::new(format!("answered garbage: {}", show(&line)));
                failure.details.push(format!("parse error: {e}"));
                return Err(failure.with_stderr(&stderr));
            }
        }
    }
    if family == Family::Table && registered.services().is_empty() {
        return Err(Failure::new(
            "registered no service (OpenSMTPD 7.8 refuses such a table)",
        ));
    }
    Ok(registered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(family: Family, lines: &[&str]) -> Registered {
        Registered {
            lines: lines
                .iter()
                .map(|l| parse_registration(family, l.as_bytes()).unwrap())
                .collect(),
        }
    }

    #[test]
    fn the_daemon_handshake_per_family() {
        let table: Vec<String> = config_lines(Family::Table, "0.1")
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert_eq!(table[1], "config|protocol|0.1\n");
        assert_eq!(table[2], "config|tablename|standard\n");
        assert_eq!(table.last().unwrap(), "config|ready\n");
        let filter = config_lines(Family::Filter, "9.9");
        assert!(filter.contains(&b"config|protocol|9.9\n".to_vec()));
        assert!(filter.contains(&b"config|subsystem|smtp-in\n".to_vec()));
    }

    #[test]
    fn filter_registrations_decide_what_is_sent() {
        let r = registered(
            Family::Filter,
            &[
                "register|report|smtp-in|link-connect",
                "register|filter|smtp-in|helo",
            ],
        );
        assert!(r.has_phase(Phase::Helo));
        assert!(!r.has_phase(Phase::Ehlo));
        assert!(r.has_report(Subsystem::SmtpIn, Some(EventKind::LinkConnect)));
        assert!(!r.has_report(Subsystem::SmtpIn, Some(EventKind::TxBegin)));
        assert!(!r.has_report(Subsystem::SmtpOut, Some(EventKind::LinkConnect)));
        assert!(!r.has_report(Subsystem::SmtpIn, None));
        let all = registered(Family::Filter, &["register|report|smtp-in|*"]);
        assert!(all.has_report(Subsystem::SmtpIn, Some(EventKind::TxBegin)));
        assert!(all.has_report(Subsystem::SmtpIn, None));
        assert_eq!(all.describe(), "registered report|smtp-in|*");
    }

    #[test]
    fn queue_capabilities() {
        let r = registered(Family::Queue, &["register|lease", "register|other"]);
        assert!(r.has_capability("lease"));
        assert!(!r.has_capability("compress"));
        assert!(!registered(Family::Queue, &[]).has_capability("lease"));
    }

    #[test]
    fn table_services_in_protocol_order() {
        let r = registered(
            Family::Table,
            &["register|auth", "register|alias", "register|auth"],
        );
        assert_eq!(
            r.services(),
            vec![table::Service::Alias, table::Service::Auth]
        );
    }
}
