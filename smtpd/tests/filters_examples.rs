//! The example filters of `backends/` end to end, in one chain on one
//! listener of the built `smtpd`: `filter-senders` (Python, the SDK from
//! `sdk-python/src`), a built-in filter that reports, and
//! `filter-prometheus` (Rust), whose metrics are scraped over HTTP.
//!
//! The senders filter refuses a denied domain at MAIL FROM and stamps
//! `X-Sender-Policy:` on the message it lets through; the exporter's
//! counts then match the session exactly (connection, identification,
//! transaction, recipients, envelopes, commit, the filter response to the
//! refused sender, the built-in filter's report, disconnection).
//!
//! The exporter attached both to a listener and to a relay action counts
//! each side under its own subsystem label (smtp-in and smtp-out), the
//! relay's next hop being the scripted peer of `common/peer.rs`.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::mail::{accepted_id, free_port, Smtpd, LOCAL, TEMPFAIL};
use common::peer::{Peer, Script};
use common::{Scratch, DEADLINE};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The built `filter-prometheus` of this build's profile, built when
/// missing.
fn filter_prometheus() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // target/PROFILE/deps/filters_examples-HASH
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().unwrap().parent().unwrap();
        let binary = profile.join("filter-prometheus");
        if !binary.exists() {
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "filter-prometheus"]);
            if profile.file_name().is_some_and(|p| p == "release") {
                cargo.arg("--release");
            }
            let status = cargo.current_dir(workspace()).status().unwrap();
            assert!(status.success(), "building filter-prometheus failed");
        }
        binary
    })
}

/// The command that runs `filter-senders` with `policy`.
fn filter_senders(policy: &Path) -> String {
    format!(
        "/usr/bin/env PYTHONPATH={} python3 {} {}",
        workspace().join("sdk-python/src").display(),
        workspace()
            .join("backends/filter-senders/filter_senders.py")
            .display(),
        policy.display()
    )
}

/// The body of `GET /metrics` on 127.0.0.1:`port`.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}

/// The value of the sample `series` (name and labels, as rendered), 0
/// when absent.
fn sample(metrics: &str, series: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// Scrapes until `series` reaches `value` (the exporter counts events as
/// they arrive), within the deadline; the last scrape.
fn scrape_until(port: u16, series: &str, value: i64) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let metrics = scrape(port);
        if sample(&metrics, series) == value {
            return metrics;
        }
        assert!(
            Instant::now() < end,
            "{series} never reached {value}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn senders_policy_report_and_metrics() {
    let dir = Scratch::new("filters-examples", "chain");
    let policy = dir.write(
        "senders",
        "allow example.org\nallow *.example.org\ndeny spam.example\ndefault deny\n",
    );
    let metrics_port = free_port();
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", "vmail 65534:65534:/nonexistent\n");
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "table vusers file:{}\n\
             table users file:{}\n\
             filter policy proc-exec \"{}\"\n\
             filter noted phase rcpt-to match rcpt-to {{ \"noted@example.org\" }} report \"recipient noted\"\n\
             filter metrics proc-exec \"{} 127.0.0.1:{metrics_port}\"\n\
             filter examples chain {{ policy, noted, metrics }}\n\
             listen on 127.0.0.1 port {port} hostname mx.test filter examples\n\
             action \"local\" mda \"{TEMPFAIL}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"local\"\n",
            vusers.display(),
            users.display(),
            filter_senders(&policy),
            filter_prometheus().display(),
        )
    });

    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect(
        "MAIL FROM:<someone@spam.example>",
        "550 5.7.1 Sender domain not allowed",
    );
    c.expect(
        "MAIL FROM:<someone@other.example>",
        "550 5.7.1 Sender domain not allowed",
    );
    c.expect_code("MAIL FROM:<alice@mx.example.org>", "250");
    c.expect_code("RCPT TO:<bob@example.org>", "250");
    c.expect_code("RCPT TO:<noted@example.org>", "250");
    let reply = c.data("Subject: policy\r\n\r\n..a dotted line\r\nbye\r\n");
    let msgid = accepted_id(&reply);
    c.expect_code("QUIT", "221");

    let message = smtpd.spool.message(&msgid);
    assert!(
        message.starts_with(
            "X-Sender-Policy: allow; domain=mx.example.org; rule=\"allow *.example.org\"\r\nReceived: "
        ),
        "{message}"
    );
    assert!(message.contains("\r\n.a dotted line\r\n"), "{message}");
    assert_eq!(smtpd.spool.envelopes(&msgid).len(), 2);

    let s = "subsystem=\"smtp-in\"";
    let metrics = scrape_until(
        metrics_port,
        &format!("smtpd_disconnections_total{{{s}}}"),
        1,
    );
    for (series, value) in [
        (format!("smtpd_connections_total{{{s},fcrdns=\"pass\"}}"), 1),
        (format!("smtpd_sessions_active{{{s}}}"), 0),
        (format!("smtpd_identify_total{{{s},method=\"EHLO\"}}"), 1),
        (format!("smtpd_tx_begin_total{{{s}}}"), 1),
        (format!("smtpd_tx_mail_total{{{s},result=\"ok\"}}"), 1),
        (format!("smtpd_tx_rcpt_total{{{s},result=\"ok\"}}"), 2),
        (format!("smtpd_tx_envelopes_total{{{s}}}"), 2),
        (format!("smtpd_tx_data_total{{{s},result=\"ok\"}}"), 1),
        (format!("smtpd_tx_commit_total{{{s}}}"), 1),
        (format!("smtpd_tx_rollback_total{{{s}}}"), 0),
        (format!("smtpd_commands_total{{{s},verb=\"MAIL\"}}"), 3),
        (format!("smtpd_commands_total{{{s},verb=\"RCPT\"}}"), 2),
        (
            format!("smtpd_filter_responses_total{{{s},phase=\"mail-from\",response=\"reject\"}}"),
            2,
        ),
        (
            format!("smtpd_filter_reports_total{{{s},kind=\"builtin\",name=\"noted\"}}"),
            1,
        ),
    ] {
        assert_eq!(sample(&metrics, &series), value, "{series}:\n{metrics}");
    }
    let bytes = sample(&metrics, &format!("smtpd_tx_commit_bytes_total{{{s}}}"));
    assert!(bytes > 0, "{metrics}");
}

#[test]
fn metrics_of_a_listener_and_a_relay_action() {
    let dir = Scratch::new("filters-examples", "relay");
    let peer = Peer::start(Script::accept());
    let metrics_port = free_port();
    let smtpd = Smtpd::start(&dir, |port| {
        format!(
            "filter metrics proc-exec \"{} 127.0.0.1:{metrics_port}\"\n\
             listen on 127.0.0.1 port {port} hostname mx.test filter metrics\n\
             action \"relay\" relay host \"smtp://127.0.0.1:{}\" filter metrics\n\
             match from local for any action \"relay\"\n",
            filter_prometheus().display(),
            peer.port(),
        )
    });

    let mut c = smtpd.connect(LOCAL);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<alice@local.test>", "250");
    c.expect_code("RCPT TO:<judy@elsewhere.test>", "250");
    let msgid = accepted_id(&c.data("Subject: relayed\r\n\r\nHello.\r\n"));
    c.expect_code("QUIT", "221");
    let line = smtpd.wait_for(&format!(" mta delivery evpid={msgid}"));
    assert!(line.contains("result=\"Ok\""), "{line}");

    let (inbound, outbound) = ("subsystem=\"smtp-in\"", "subsystem=\"smtp-out\"");
    let metrics = scrape_until(
        metrics_port,
        &format!("smtpd_tx_commit_total{{{outbound}}}"),
        1,
    );
    for (series, value) in [
        (format!("smtpd_tx_commit_total{{{inbound}}}"), 1),
        (format!("smtpd_tx_rcpt_total{{{inbound},result=\"ok\"}}"), 1),
        (
            format!("smtpd_connections_total{{{outbound},fcrdns=\"pass\"}}"),
            1,
        ),
        (
            format!("smtpd_identify_total{{{outbound},method=\"EHLO\"}}"),
            1,
        ),
        (format!("smtpd_tx_begin_total{{{outbound}}}"), 1),
        (
            format!("smtpd_tx_mail_total{{{outbound},result=\"ok\"}}"),
            1,
        ),
        (
            format!("smtpd_tx_rcpt_total{{{outbound},result=\"ok\"}}"),
            1,
        ),
        (
            format!("smtpd_tx_data_total{{{outbound},result=\"ok\"}}"),
            1,
        ),
    ] {
        assert_eq!(sample(&metrics, &series), value, "{series}:\n{metrics}");
    }
}
