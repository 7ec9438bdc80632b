//! The checks around a backend's life: it exits 0 when its stdin ends, and
//! a second start announcing an unknown protocol version makes it exit
//! non-zero without registering.

use smtpd_conformance::wire::parse_registration;
use tokio::time::Instant;

use super::backend::{describe_status, Backend, Next};
use super::handshake::config_lines;
use super::report::{show, Failure, Report};
use super::tracker::Verdict;
use super::{Session, Settings};

/// The version no backend speaks.
const UNKNOWN_VERSION: &str = "9.9";

/// Closes the backend's stdin: in-flight work may still be answered, then
/// it must exit with status 0 within the timeout.
pub(super) async fn stop_at_eof(mut session: Session, report: &mut Report) {
    const NAME: &str = "exit at end of input";
    session.backend.close_stdin();
    let deadline = Instant::now() + session.timeout;
    let mut problems = Vec::new();
    loop {
        match session.backend.next(deadline).await {
            Next::Line(line) => {
                if let Verdict::Violation(v) = session.tracker.received(&line) {
                    problems.push(v);
                }
            }
            Next::TooLong(len) => problems.push(format!("a line of more than {len} bytes")),
            Next::Closed => break,
            Next::TimedOut => {
                problems.push(format!(
                    "stdout still open {} s after stdin was closed",
                    session.timeout.as_secs_f64()
                ));
                break;
            }
        }
    }
    let status = session.backend.exit_status(session.timeout).await;
    session.backend.kill().await;
    let stderr = session.backend.stderr_tail().await;
    match status {
        Some(s) if s.success() && problems.is_empty() => report.pass(NAME, "exited (status 0)"),
        Some(s) if !s.success() => {
            let mut failure = Failure::new(format!(
                "{} after its stdin was closed (expected status 0)",
                describe_status(s)
            ));
            failure.details = problems;
            report.fail(NAME, &failure.with_stderr(&stderr));
        }
        Some(_) => {
            let mut failure = Failure::new("wrote lines that answer nothing before exiting");
            failure.details = problems;
            report.fail(NAME, &failure.with_stderr(&stderr));
        }
        None => {
            let mut failure = Failure::new(format!(
                "still running {} s after its stdin was closed",
                session.timeout.as_secs_f64()
            ));
            failure.details = problems;
            report.fail(NAME, &failure.with_stderr(&stderr));
        }
    }
}

/// Starts the backend again, announces protocol version 9.9 and expects it
/// to exit non-zero without registering.
pub(super) async fn unknown_version(settings: &Settings, report: &mut Report) {
    const NAME: &str = "unknown protocol version";
    let mut backend = match Backend::spawn(&settings.command) {
        Ok(backend) => backend,
        Err(e) => {
            report.fail(NAME, &Failure::new(format!("cannot start it again: {e}")));
            return;
        }
    };
    for line in config_lines(settings.family, UNKNOWN_VERSION) {
        backend.send_raw(line);
    }
    let deadline = Instant::now() + settings.timeout;
    let outcome = match backend.next(deadline).await {
        Next::Line(line) => {
            let what = match parse_registration(settings.family, &line) {
                Ok(_) => "registered anyway",
                Err(_) => "answered instead of exiting",
            };
            Err(format!(
                "{what} after config|protocol|{UNKNOWN_VERSION}: {}",
                show(&line)
            ))
        }
        Next::TooLong(len) => Err(format!("answered a line of more than {len} bytes")),
        Next::Closed => Ok(()),
        Next::TimedOut => Err(format!(
            "neither exited nor answered within {} s of config|protocol|{UNKNOWN_VERSION}",
            settings.timeout.as_secs_f64()
        )),
    };
    let status = match outcome {
        Ok(()) => backend.exit_status(settings.timeout).await,
        Err(_) => None,
    };
    backend.kill().await;
    let stderr = backend.stderr_tail().await;
    match (outcome, status) {
        (Err(summary), _) => report.fail(NAME, &Failure::new(summary).with_stderr(&stderr)),
        (Ok(()), Some(s)) if !s.success() => {
            let said = stderr
                .first()
                .map(|line| format!(", stderr: {line}"))
                .unwrap_or_default();
            report.pass(
                NAME,
                &format!("{} without registering{said}", describe_status(s)),
            );
        }
        (Ok(()), Some(s)) => report.fail(
            NAME,
            &Failure::new(format!(
                "{} without registering; a refusal must exit non-zero",
                describe_status(s)
            ))
            .with_stderr(&stderr),
        ),
        (Ok(()), None) => report.fail(
            NAME,
            &Failure::new(format!(
                "closed its stdout but was still running {} s later",
                settings.timeout.as_secs_f64()
            ))
            .with_stderr(&stderr),
        ),
    }
}
