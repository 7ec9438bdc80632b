//! The filter side: registers every report event of the subsystems the
//! daemon announced, and turns each event into metric changes.
//!
//! The exporter registers no phase, so it never delays a session: smtpd
//! only tells it what happened. Sessions are remembered from `link-connect`
//! to `link-disconnect` so that the active-sessions gauge only counts
//! sessions it saw begin (a filter started while sessions run would
//! otherwise go negative).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use smtpd_sdk::filter::{
    Config, Error, Filter, Registrations, Report, ReportEvent, SessionId, Subsystem,
};

use crate::metrics::{self, Metrics};

/// The SMTP verbs counted by name; other commands count as `other`.
const VERBS: &[&str] = &[
    "HELO", "EHLO", "LHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "QUIT",
    "NOOP", "HELP", "VRFY", "EXPN", ".",
];

/// The report-stream exporter.
pub(crate) struct Exporter {
    metrics: Arc<Metrics>,
    /// The subsystems announced at handshake (smtp-in when none was).
    subsystems: Vec<Subsystem>,
    /// Sessions between link-connect and link-disconnect.
    open: Mutex<HashSet<(Subsystem, SessionId)>>,
}

impl Exporter {
    /// An exporter feeding `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            subsystems: vec![Subsystem::SmtpIn],
            open: Mutex::new(HashSet::new()),
        }
    }

    /// Counts one report event.
    pub(crate) fn count(&self, report: &Report) {
        let m = &*self.metrics;
        let sub = report.subsystem.name();
        let s = ("subsystem", sub);
        m.inc(metrics::REPORTS, &[s, ("event", report.event.name())]);
        match &report.event {
            ReportEvent::LinkConnect { fcrdns, .. } => {
                m.inc(metrics::CONNECTIONS, &[s, ("fcrdns", fcrdns.name())]);
                if self
                    .open_sessions()
                    .insert((report.subsystem, report.session))
                {
                    m.add(metrics::SESSIONS, &[s], 1);
                }
            }
            ReportEvent::LinkDisconnect => {
                m.inc(metrics::DISCONNECTIONS, &[s]);
                if self
                    .open_sessions()
                    .remove(&(report.subsystem, report.session))
                {
                    m.add(metrics::SESSIONS, &[s], -1);
                }
            }
            ReportEvent::LinkIdentify { method, .. } => {
                m.inc(
                    metrics::IDENTIFY,
                    &[s, ("method", &method.to_ascii_uppercase())],
                );
            }
            ReportEvent::LinkTls { .. } => m.inc(metrics::TLS, &[s]),
            ReportEvent::LinkAuth { result, .. } => {
                m.inc(metrics::AUTH, &[s, ("result", result.name())]);
            }
            ReportEvent::TxBegin { .. } => m.inc(metrics::TX_BEGIN, &[s]),
            ReportEvent::TxMail { result, .. } => {
                m.inc(metrics::TX_MAIL, &[s, ("result", result.name())]);
            }
            ReportEvent::TxRcpt { result, .. } => {
                m.inc(metrics::TX_RCPT, &[s, ("result", result.name())]);
            }
            ReportEvent::TxEnvelope { .. } => m.inc(metrics::TX_ENVELOPE, &[s]),
            ReportEvent::TxData { result, .. } => {
                m.inc(metrics::TX_DATA, &[s, ("result", result.name())]);
            }
            ReportEvent::TxCommit { size, .. } => {
                m.inc(metrics::TX_COMMIT, &[s]);
                m.add(
                    metrics::TX_COMMIT_BYTES,
                    &[s],
                    i64::try_from(*size).unwrap_or(i64::MAX),
                );
            }
            ReportEvent::TxRollback { .. } => m.inc(metrics::TX_ROLLBACK, &[s]),
            ReportEvent::ProtocolClient { line } => {
                m.inc(metrics::COMMANDS, &[s, ("verb", verb(line))]);
            }
            ReportEvent::FilterResponse {
                phase, response, ..
            } => m.inc(
                metrics::FILTER_RESPONSES,
                &[s, ("phase", phase), ("response", response)],
            ),
            ReportEvent::FilterReport { kind, name, .. } => {
                m.inc(
                    metrics::FILTER_REPORTS,
                    &[s, ("kind", kind), ("name", name)],
                );
            }
            ReportEvent::Timeout => m.inc(metrics::TIMEOUTS, &[s]),
            _ => {}
        }
    }

    fn open_sessions(&self) -> std::sync::MutexGuard<'_, HashSet<(Subsystem, SessionId)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The verb of a client command line, upper-cased, or `other`.
fn verb(line: &str) -> &'static str {
    let word = line.split([' ', ':']).next().unwrap_or_default();
    VERBS
        .iter()
        .find(|v| v.eq_ignore_ascii_case(word))
        .copied()
        .unwrap_or("other")
}

impl Filter for Exporter {
    fn configure(&mut self, config: &Config) -> Result<(), Error> {
        let announced: Vec<Subsystem> = config
            .get_all("subsystem")
            .filter_map(|s| Subsystem::from_name(s.as_bytes()))
            .collect();
        if !announced.is_empty() {
            self.subsystems = announced;
        }
        Ok(())
    }

    fn register(&self) -> Registrations {
        self.subsystems
            .iter()
            .fold(Registrations::new(), |r, &s| r.all_reports(s))
    }

    async fn on_report(&self, report: &Report) -> Result<(), Error> {
        self.count(report);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use smtpd_sdk::proto::filter::Input;
    use smtpd_sdk::proto::Line;

    use super::*;
    use crate::metrics::*;

    fn feed(exporter: &Exporter, lines: &[&str]) {
        for line in lines {
            match Input::parse(line.as_bytes()) {
                Ok(Input::Report(report)) => exporter.count(&report),
                other => panic!("not a report: {line}: {other:?}"),
            }
        }
    }

    const SID: &str = "a1b2c3d4e5f60718";

    fn line(event: &str) -> String {
        format!("report|0.7|1731000000.100000|smtp-in|{event}")
    }

    #[test]
    fn a_session_with_one_message_and_a_refused_recipient() {
        let exporter = Exporter::new(Arc::new(Metrics::default()));
        let lines: Vec<String> = [
            format!("link-connect|{SID}|host.example.net|pass|192.0.2.7:50123|198.51.100.2:25"),
            format!("protocol-client|{SID}|EHLO host.example.net"),
            format!("link-identify|{SID}|EHLO|host.example.net"),
            format!("link-auth|{SID}|fail|alice"),
            format!("link-auth|{SID}|pass|alice"),
            format!("protocol-client|{SID}|MAIL FROM:<a@example.net>"),
            format!("tx-begin|{SID}|0badcafe"),
            format!("tx-mail|{SID}|0badcafe|ok|a@example.net"),
            format!("tx-rcpt|{SID}|0badcafe|ok|b@example.org"),
            format!("tx-rcpt|{SID}|0badcafe|permfail|nobody@example.org"),
            format!("tx-envelope|{SID}|0badcafe|0badcafe00000001"),
            format!("tx-data|{SID}|0badcafe|ok"),
            format!("filter-response|{SID}|rcpt-to|reject|550 no"),
            format!("filter-report|{SID}|builtin|f1|noted"),
            format!("tx-commit|{SID}|0badcafe|1234"),
            format!("tx-reset|{SID}|0badcafe"),
            format!("protocol-client|{SID}|quit"),
        ]
        .iter()
        .map(|e| line(e))
        .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        feed(&exporter, &lines);
        let m = &exporter.metrics;
        let s = ("subsystem", "smtp-in");
        assert_eq!(m.value(CONNECTIONS, &[s, ("fcrdns", "pass")]), 1);
        assert_eq!(m.value(SESSIONS, &[s]), 1);
        assert_eq!(m.value(IDENTIFY, &[s, ("method", "EHLO")]), 1);
        assert_eq!(m.value(AUTH, &[s, ("result", "fail")]), 1);
        assert_eq!(m.value(AUTH, &[s, ("result", "pass")]), 1);
        assert_eq!(m.value(TX_BEGIN, &[s]), 1);
        assert_eq!(m.value(TX_MAIL, &[s, ("result", "ok")]), 1);
        assert_eq!(m.value(TX_RCPT, &[s, ("result", "ok")]), 1);
        assert_eq!(m.value(TX_RCPT, &[s, ("result", "permfail")]), 1);
        assert_eq!(m.value(TX_ENVELOPE, &[s]), 1);
        assert_eq!(m.value(TX_DATA, &[s, ("result", "ok")]), 1);
        assert_eq!(m.value(TX_COMMIT, &[s]), 1);
        assert_eq!(m.value(TX_COMMIT_BYTES, &[s]), 1234);
        assert_eq!(m.value(COMMANDS, &[s, ("verb", "MAIL")]), 1);
        assert_eq!(m.value(COMMANDS, &[s, ("verb", "QUIT")]), 1);
        assert_eq!(
            m.value(
                FILTER_RESPONSES,
                &[s, ("phase", "rcpt-to"), ("response", "reject")]
            ),
            1
        );
        assert_eq!(
            m.value(FILTER_REPORTS, &[s, ("kind", "builtin"), ("name", "f1")]),
            1
        );
        assert_eq!(m.value(REPORTS, &[s, ("event", "tx-reset")]), 1);

        feed(&exporter, &[&line(&format!("link-disconnect|{SID}"))]);
        assert_eq!(m.value(DISCONNECTIONS, &[s]), 1);
        assert_eq!(m.value(SESSIONS, &[s]), 0);
    }

    #[test]
    fn a_disconnect_of_a_session_never_seen_leaves_the_gauge_alone() {
        let exporter = Exporter::new(Arc::new(Metrics::default()));
        feed(&exporter, &[&line(&format!("link-disconnect|{SID}"))]);
        let s = ("subsystem", "smtp-in");
        assert_eq!(exporter.metrics.value(SESSIONS, &[s]), 0);
        assert_eq!(exporter.metrics.value(DISCONNECTIONS, &[s]), 1);
    }

    #[test]
    fn registers_every_report_of_the_announced_subsystems() {
        let mut exporter = Exporter::new(Arc::new(Metrics::default()));
        exporter
            .configure(&Config::from_entries([
                ("protocol", "0.7"),
                ("subsystem", "smtp-in"),
                ("subsystem", "smtp-out"),
            ]))
            .unwrap();
        let r = exporter.register();
        assert!(r.wants_report(Subsystem::SmtpIn, None));
        assert!(r.wants_report(Subsystem::SmtpOut, None));
        assert!(r.phase_list().is_empty());

        let exporter = Exporter::new(Arc::new(Metrics::default()));
        let r = exporter.register();
        assert!(r.wants_report(Subsystem::SmtpIn, None));
        assert!(!r.wants_report(Subsystem::SmtpOut, None));
    }

    #[test]
    fn verbs() {
        for (line, expected) in [
            ("MAIL FROM:<a@b>", "MAIL"),
            ("rcpt to:<a@b>", "RCPT"),
            ("AUTH PLAIN ********", "AUTH"),
            (".", "."),
            ("XCLIENT foo", "other"),
            ("", "other"),
        ] {
            assert_eq!(verb(line), expected, "{line}");
        }
    }
}
