//! The filter run loop, driven in memory with real protocol lines.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use smtpd_sdk::filter::{
    self, is_valid_reply, junk, proceed, reject, rewrite, unstuff, DataLines, Decision, Error,
    EventKind, Filter, Phase, Registrations, Report, Request, RunError, SessionId, Subsystem,
};
use tokio::sync::Notify;

const A: &str = "a1b2c3d4e5f60718";
const B: &str = "b1b2c3d4e5f60718";
const TOKEN: &str = "5d0a000100000002";

/// A filter whose inputs say what to do, and which records what it saw.
struct TestFilter {
    gate: Arc<Notify>,
    seen: Rc<RefCell<Vec<String>>>,
}

impl TestFilter {
    fn new() -> Self {
        Self {
            gate: Arc::new(Notify::new()),
            seen: Rc::new(RefCell::new(Vec::new())),
        }
    }
}

impl Filter for TestFilter {
    fn register(&self) -> Registrations {
        Registrations::new()
            .phases([Phase::Connect, Phase::MailFrom, Phase::DataLine])
            .report(Subsystem::SmtpIn, EventKind::LinkConnect)
    }

    async fn on_report(&self, report: &Report) -> Result<(), Error> {
        self.seen
            .borrow_mut()
            .push(format!("report {} {}", report.session, report.event.name()));
        Ok(())
    }

    async fn on_phase(&self, request: &Request) -> Result<Decision, Error> {
        self.seen
            .borrow_mut()
            .push(format!("phase {} {}", request.session, request.phase));
        match (request.phase, request.param_str().as_ref()) {
            (Phase::Connect, "fail|192.0.2.1") => Err(Error::failed("no database")),
            (Phase::MailFrom, "fail@example.com") => Err(Error::failed("no database")),
            (Phase::MailFrom, "bad-reply@example.com") => {
                Ok(Decision::Reject("250 all good".to_owned()))
            }
            (Phase::MailFrom, "newline@example.com") => rewrite("<a@b>\r\n"),
            (Phase::MailFrom, "spammer@example.com") => reject("550 5.7.1 Sender rejected"),
            (Phase::MailFrom, "junk@example.com") => junk(),
            _ => proceed(),
        }
    }

    async fn on_data_line(
        &self,
        _session: SessionId,
        line: &[u8],
        out: &mut DataLines,
    ) -> Result<(), Error> {
        match line {
            b"wait" => {
                self.gate.notified().await;
                out.push("waited")
            }
            b"open" => {
                self.gate.notify_one();
                out.push(line)
            }
            b"twice" => {
                out.push(line)?;
                out.push(line)
            }
            b"drop" => Ok(()),
            b"boom" => Err(Error::failed("cannot filter")),
            b"lone-dot" => out.push("."),
            b"..unstuffed" => out.push_unstuffed(unstuff(line)),
            _ => out.push(line),
        }
    }

    async fn on_data_end(&self, _session: SessionId, out: &mut DataLines) -> Result<(), Error> {
        out.push("-- footer")
    }
}

fn data_line(session: &str, line: &str) -> String {
    format!("filter|0.7|1731000004.000100|smtp-in|data-line|{session}|{TOKEN}|{line}")
}

fn phase(phase: &str, session: &str, token: &str, param: &str) -> String {
    format!("filter|0.7|1731000003.250000|smtp-in|{phase}|{session}|{token}|{param}")
}

fn out(session: &str, line: &str) -> String {
    format!("filter-dataline|{session}|{TOKEN}|{line}")
}

#[tokio::test]
async fn registrations_add_commit_and_link_disconnect_for_data_lines() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        let registered = daemon
            .handshake(
                "0.7",
                &[("subsystem", "smtp-in"), ("admd", "mx.example.org")],
            )
            .await;
        assert_eq!(
            registered,
            [
                "register|report|smtp-in|link-connect",
                "register|report|smtp-in|link-disconnect",
                "register|filter|smtp-in|connect",
                "register|filter|smtp-in|mail-from",
                "register|filter|smtp-in|data-line",
                "register|filter|smtp-in|commit",
                "register|ready",
            ]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(TestFilter::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn an_unknown_version_stops_the_filter() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.send("config|protocol|0.6").await;
        daemon.send("config|ready").await;
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(TestFilter::new(), input, output), script);
    assert_eq!(
        result.unwrap_err().to_string(),
        "unsupported protocol version 0.6 (this backend speaks 0.7)"
    );
}

#[tokio::test]
async fn decisions_and_failures() {
    let (mut daemon, input, output) = common::pipes();
    let t = "0000000000000001";
    let script = async {
        daemon.handshake("0.7", &[]).await;
        let cases = [
            (phase("mail-from", A, t, "alice@example.com"), "proceed"),
            (
                phase("mail-from", A, t, "spammer@example.com"),
                "reject|550 5.7.1 Sender rejected",
            ),
            (phase("mail-from", A, t, "junk@example.com"), "junk"),
            (
                phase("mail-from", A, t, "fail@example.com"),
                "reject|451 4.7.0 Temporary filter failure",
            ),
            (
                phase("mail-from", A, t, "bad-reply@example.com"),
                "reject|451 4.7.0 Temporary filter failure",
            ),
            (
                phase("mail-from", A, t, "newline@example.com"),
                "reject|451 4.7.0 Temporary filter failure",
            ),
            (
                phase("connect", A, t, "fail|192.0.2.1"),
                "disconnect|421 4.7.0 Temporary filter failure",
            ),
            // A phase the filter did not register still gets an answer.
            (phase("rcpt-to", A, t, "bob@example.org"), "proceed"),
        ];
        for (request, decision) in cases {
            daemon.send(&request).await;
            assert_eq!(
                daemon.recv().await.unwrap(),
                format!("filter-result|{A}|{t}|{decision}"),
                "{request}"
            );
        }
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(TestFilter::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn data_lines_keep_their_order_within_a_session_only() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.handshake("0.7", &[]).await;
        // Session A blocks on its first line until session B opens the gate.
        for line in ["wait", "second", "twice", "drop", "."] {
            daemon.send(&data_line(A, line)).await;
        }
        for line in ["open", "."] {
            daemon.send(&data_line(B, line)).await;
        }
        let lines = daemon.recv_n(9).await;
        // A is still waiting when B's first line is answered; after that
        // the two sessions may interleave, each in its own order.
        assert_eq!(lines[0], out(B, "open"));
        let of = |s: &str| -> Vec<String> {
            let prefix = format!("filter-dataline|{s}|");
            lines
                .iter()
                .filter(|l| l.starts_with(&prefix))
                .cloned()
                .collect()
        };
        assert_eq!(of(B), [out(B, "open"), out(B, "-- footer"), out(B, ".")]);
        assert_eq!(
            of(A),
            [
                out(A, "waited"),
                out(A, "second"),
                out(A, "twice"),
                out(A, "twice"),
                out(A, "-- footer"),
                out(A, "."),
            ]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(TestFilter::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn dot_stuffing_is_preserved() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.handshake("0.7", &[]).await;
        for line in ["..dot", "lone-dot", "..unstuffed", "", "."] {
            daemon.send(&data_line(A, line)).await;
        }
        assert_eq!(
            daemon.recv_n(6).await,
            [
                out(A, "..dot"),
                out(A, ".."),
                out(A, "..unstuffed"),
                out(A, ""),
                out(A, "-- footer"),
                out(A, "."),
            ]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(TestFilter::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn a_failed_data_line_fails_the_commit_but_ends_the_message() {
    let (mut daemon, input, output) = common::pipes();
    let commit = "0000000000000003";
    let script = async {
        daemon.handshake("0.7", &[]).await;
        for line in ["first", "boom", "after", "."] {
            daemon.send(&data_line(A, line)).await;
        }
        assert_eq!(daemon.recv_n(2).await, [out(A, "first"), out(A, ".")]);
        daemon.send(&phase("commit", A, commit, "")).await;
        assert_eq!(
            daemon.recv().await.unwrap(),
            format!("filter-result|{A}|{commit}|reject|451 4.7.0 Temporary filter failure")
        );
        // The next message of the session is filtered normally.
        for line in ["again", "."] {
            daemon.send(&data_line(A, line)).await;
        }
        assert_eq!(
            daemon.recv_n(3).await,
            [out(A, "again"), out(A, "-- footer"), out(A, ".")]
        );
        daemon.send(&phase("commit", A, commit, "")).await;
        assert_eq!(
            daemon.recv().await.unwrap(),
            format!("filter-result|{A}|{commit}|proceed")
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(TestFilter::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn a_failed_message_without_commit_does_not_spoil_the_next_one() {
    let (mut daemon, input, output) = common::pipes();
    let commit = "0000000000000003";
    let script = async {
        daemon.handshake("0.7", &[]).await;
        // The daemon gives up on the first message (no commit phase).
        for line in ["boom", "after", ".", "next", "."] {
            daemon.send(&data_line(A, line)).await;
        }
        assert_eq!(
            daemon.recv_n(4).await,
            [
                out(A, "."),
                out(A, "next"),
                out(A, "-- footer"),
                out(A, ".")
            ]
        );
        daemon.send(&phase("commit", A, commit, "")).await;
        assert_eq!(
            daemon.recv().await.unwrap(),
            format!("filter-result|{A}|{commit}|proceed")
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(TestFilter::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn reports_reach_the_filter_in_session_order() {
    let (mut daemon, input, output) = common::pipes();
    let filter = TestFilter::new();
    let seen = Rc::clone(&filter.seen);
    let t = "0000000000000001";
    let script = async {
        daemon.handshake("0.7", &[]).await;
        daemon
            .send(&format!("report|0.7|1731000000.100000|smtp-in|link-connect|{A}|host.example.net|pass|192.0.2.7:50123|198.51.100.2:25"))
            .await;
        // Not registered by the filter: not passed on.
        daemon
            .send(&format!(
                "report|0.7|1731000000.100001|smtp-in|link-greeting|{A}|mx.example.org"
            ))
            .await;
        // Registered by the SDK only: not passed on either.
        daemon
            .send(&format!(
                "report|0.7|1731000000.100002|smtp-in|link-disconnect|{B}"
            ))
            .await;
        daemon
            .send(&phase("mail-from", A, t, "alice@example.com"))
            .await;
        assert_eq!(
            daemon.recv().await.unwrap(),
            format!("filter-result|{A}|{t}|proceed")
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(filter::run_with(filter, input, output), script);
    result.unwrap();
    assert_eq!(
        *seen.borrow(),
        [
            format!("report {A} link-connect"),
            format!("phase {A} mail-from")
        ]
    );
}

#[test]
fn replies_are_checked_as_opensmtpd_checks_them() {
    for (reply, valid) in [
        ("550 5.7.1 No", true),
        ("421 Bye", true),
        ("451 x", true),
        ("451 ", false),
        ("250 ok", false),
        ("550-5.7.1 No", false),
        ("55 x", false),
        ("5a0 x", false),
        ("550 a\nb", false),
    ] {
        assert_eq!(is_valid_reply(reply), valid, "{reply:?}");
        assert_eq!(reject(reply).is_ok(), valid, "{reply:?}");
        assert_eq!(filter::disconnect(reply).is_ok(), valid, "{reply:?}");
    }
}

#[test]
fn helpers_build_decisions() {
    assert_eq!(proceed(), Ok(Decision::Proceed));
    assert_eq!(junk(), Ok(Decision::Junk));
    assert_eq!(rewrite("<a@b>"), Ok(Decision::Rewrite("<a@b>".to_owned())));
    assert_eq!(
        filter::report("noted"),
        Ok(Decision::Report("noted".to_owned()))
    );
    assert_eq!(unstuff(b"..x"), b".x");
    assert_eq!(unstuff(b"x"), b"x");
}

#[test]
fn the_version_error_names_both_versions() {
    let e = RunError::UnsupportedVersion {
        got: "1.0".to_owned(),
        speaks: "0.7",
    };
    assert_eq!(
        e.to_string(),
        "unsupported protocol version 1.0 (this backend speaks 0.7)"
    );
}
