//! The metric families the exporter keeps, and their rendering in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! A [`Metrics`] holds counters and gauges by family and label set; the
//! report handler ([`crate::exporter`]) changes them and the HTTP server
//! ([`crate::http`]) renders them. Every family is declared in [`FAMILIES`]
//! with its help text, so a scrape shows each family (with its `# HELP` and
//! `# TYPE` lines) even before its first sample.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Whether a family only goes up or may go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A metric family: its name, kind and help text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    /// The metric name.
    pub(crate) name: &'static str,
    /// Counter or gauge.
    pub(crate) kind: Kind,
    /// The `# HELP` text.
    pub(crate) help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

/// Every report event received, by name (unknown names included).
pub(crate) const REPORTS: Family = counter(
    "smtpd_report_events_total",
    "Report events received, by subsystem and event name.",
);
/// `link-connect`.
pub(crate) const CONNECTIONS: Family = counter(
    "smtpd_connections_total",
    "Connections (link-connect), by subsystem and FCrDNS result.",
);
/// `link-disconnect`.
pub(crate) const DISCONNECTIONS: Family = counter(
    "smtpd_disconnections_total",
    "Disconnections (link-disconnect), by subsystem.",
);
/// Sessions connected and not yet disconnected.
pub(crate) const SESSIONS: Family = Family {
    name: "smtpd_sessions_active",
    kind: Kind::Gauge,
    help: "Sessions seen connecting and not yet disconnected, by subsystem.",
};
/// `link-identify`.
pub(crate) const IDENTIFY: Family = counter(
    "smtpd_identify_total",
    "HELO/EHLO/LHLO accepted (link-identify), by subsystem and method.",
);
/// `link-tls`.
pub(crate) const TLS: Family = counter(
    "smtpd_tls_total",
    "TLS sessions established (link-tls), by subsystem.",
);
/// `link-auth`.
pub(crate) const AUTH: Family = counter(
    "smtpd_auth_total",
    "Authentication attempts (link-auth), by subsystem and result.",
);
/// `tx-begin`.
pub(crate) const TX_BEGIN: Family = counter(
    "smtpd_tx_begin_total",
    "Transactions begun (tx-begin), by subsystem.",
);
/// `tx-mail`.
pub(crate) const TX_MAIL: Family = counter(
    "smtpd_tx_mail_total",
    "MAIL FROM results (tx-mail), by subsystem and result.",
);
/// `tx-rcpt`.
pub(crate) const TX_RCPT: Family = counter(
    "smtpd_tx_rcpt_total",
    "RCPT TO results (tx-rcpt), by subsystem and result.",
);
/// `tx-envelope`.
pub(crate) const TX_ENVELOPE: Family = counter(
    "smtpd_tx_envelopes_total",
    "Envelopes queued (tx-envelope), by subsystem.",
);
/// `tx-data`.
pub(crate) const TX_DATA: Family = counter(
    "smtpd_tx_data_total",
    "DATA results (tx-data), by subsystem and result.",
);
/// `tx-commit`.
pub(crate) const TX_COMMIT: Family = counter(
    "smtpd_tx_commit_total",
    "Transactions committed (tx-commit), by subsystem.",
);
/// The sizes of `tx-commit`.
pub(crate) const TX_COMMIT_BYTES: Family = counter(
    "smtpd_tx_commit_bytes_total",
    "Bytes of committed messages (tx-commit sizes), by subsystem.",
);
/// `tx-rollback`.
pub(crate) const TX_ROLLBACK: Family = counter(
    "smtpd_tx_rollback_total",
    "Transactions rolled back (tx-rollback), by subsystem.",
);
/// `protocol-client`.
pub(crate) const COMMANDS: Family = counter(
    "smtpd_commands_total",
    "Client commands (protocol-client), by subsystem and verb.",
);
/// `filter-response`.
pub(crate) const FILTER_RESPONSES: Family = counter(
    "smtpd_filter_responses_total",
    "Final filter chain outcomes (filter-response), by subsystem, phase and response.",
);
/// `filter-report`.
pub(crate) const FILTER_REPORTS: Family = counter(
    "smtpd_filter_reports_total",
    "Filter reports (filter-report), by subsystem, kind and filter name.",
);
/// `timeout`.
pub(crate) const TIMEOUTS: Family = counter(
    "smtpd_timeouts_total",
    "Sessions that timed out (timeout), by subsystem.",
);

/// Every family, in the order a scrape shows them.
pub(crate) const FAMILIES: &[Family] = &[
    REPORTS,
    CONNECTIONS,
    DISCONNECTIONS,
    SESSIONS,
    IDENTIFY,
    TLS,
    AUTH,
    TX_BEGIN,
    TX_MAIL,
    TX_RCPT,
    TX_ENVELOPE,
    TX_DATA,
    TX_COMMIT,
    TX_COMMIT_BYTES,
    TX_ROLLBACK,
    COMMANDS,
    FILTER_RESPONSES,
    FILTER_REPORTS,
    TIMEOUTS,
];

/// A label set: `(name, value)` pairs in the order written.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// The samples of every family.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    samples: Mutex<BTreeMap<&'static str, BTreeMap<Labels, i64>>>,
}

impl Metrics {
    /// Adds `delta` to the sample of `family` with `labels`.
    pub(crate) fn add(&self, family: Family, labels: &[(&'static str, &str)], delta: i64) {
        let labels: Labels = labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        *samples
            .entry(family.name)
            .or_default()
            .entry(labels)
            .or_default() += delta;
    }

    /// Adds one to the sample of `family` with `labels`.
    pub(crate) fn inc(&self, family: Family, labels: &[(&'static str, &str)]) {
        self.add(family, labels, 1);
    }

    /// The value of one sample (0 when never changed), for tests.
    #[cfg(test)]
    pub(crate) fn value(&self, family: Family, labels: &[(&'static str, &str)]) -> i64 {
        let labels: Labels = labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .get(family.name)
            .and_then(|f| f.get(&labels))
            .copied()
            .unwrap_or(0)
    }

    /// Every family in the text exposition format.
    pub(crate) fn render(&self) -> String {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for family in FAMILIES {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            for (labels, value) in samples.get(family.name).into_iter().flatten() {
                let _ = writeln!(out, "{}{} {value}", family.name, label_text(labels));
            }
        }
        out
    }
}

/// `{a="x",b="y"}`, or nothing for no labels.
fn label_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_type_and_samples() {
        let metrics = Metrics::default();
        metrics.inc(CONNECTIONS, &[("subsystem", "smtp-in"), ("fcrdns", "pass")]);
        metrics.inc(CONNECTIONS, &[("subsystem", "smtp-in"), ("fcrdns", "pass")]);
        metrics.add(SESSIONS, &[("subsystem", "smtp-in")], 2);
        metrics.add(SESSIONS, &[("subsystem", "smtp-in")], -1);
        let text = metrics.render();
        for family in FAMILIES {
            assert!(text.contains(&format!("# HELP {} ", family.name)), "{text}");
        }
        assert!(text.contains("# TYPE smtpd_connections_total counter\n"));
        assert!(text.contains("# TYPE smtpd_sessions_active gauge\n"));
        assert!(text.contains("smtpd_connections_total{subsystem=\"smtp-in\",fcrdns=\"pass\"} 2\n"));
        assert!(text.contains("smtpd_sessions_active{subsystem=\"smtp-in\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics.inc(
            FILTER_REPORTS,
            &[
                ("subsystem", "smtp-in"),
                ("kind", "proc"),
                ("name", "a\"b\\c\nd"),
            ],
        );
        assert!(metrics.render().contains(
            r#"smtpd_filter_reports_total{subsystem="smtp-in",kind="proc",name="a\"b\\c\nd"} 1"#
        ));
    }
}
