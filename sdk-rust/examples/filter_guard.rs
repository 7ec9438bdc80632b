//! `filter_guard`: the example filter of protocol-spec/vectors/fixtures/
//! standard.filter, exactly.
//!
//! - connect, data, commit: proceed;
//! - helo/ehlo `spammer.example`: reject `550 5.7.1 Go away`;
//! - mail-from `spammer@example.com`: reject `550 5.7.1 Sender rejected`;
//!   `junk@example.com`: junk; `rewrite@example.com`: rewrite to
//!   `<postmaster@example.org>`;
//! - rcpt-to `drop@example.org`: disconnect `421 4.7.0 Too many
//!   recipients`; `report@example.org`: report `recipient noted`;
//! - data-line: every line unchanged, except `secret`, sent as
//!   `[redacted]`; the final `.` is forwarded by the SDK;
//! - reports link-connect and link-disconnect are logged at debug level.
//!
//! ```text
//! filter guard proc-exec "filter_guard"
//! ```

use std::process::ExitCode;

use smtpd_sdk::filter::{
    self, disconnect, junk, proceed, reject, report, rewrite, DataLines, Decision, Error,
    EventKind, Filter, Phase, Registrations, Report, Request, SessionId, Subsystem,
};

pub(crate) struct Guard;

impl Filter for Guard {
    fn register(&self) -> Registrations {
        Registrations::new()
            .phases([
                Phase::Connect,
                Phase::Helo,
                Phase::Ehlo,
                Phase::MailFrom,
                Phase::RcptTo,
                Phase::Data,
                Phase::DataLine,
                Phase::Commit,
            ])
            .report(Subsystem::SmtpIn, EventKind::LinkConnect)
            .report(Subsystem::SmtpIn, EventKind::LinkDisconnect)
    }

    async fn on_report(&self, report: &Report) -> Result<(), Error> {
        tracing::debug!(session = %report.session, event = report.event.name(), "report");
        Ok(())
    }

    async fn on_phase(&self, request: &Request) -> Result<Decision, Error> {
        let param = request.param.as_slice();
        match (request.phase, param) {
            (Phase::Helo | Phase::Ehlo, b"spammer.example") => reject("550 5.7.1 Go away"),
            (Phase::MailFrom, b"spammer@example.com") => reject("550 5.7.1 Sender rejected"),
            (Phase::MailFrom, b"junk@example.com") => junk(),
            (Phase::MailFrom, b"rewrite@example.com") => rewrite("<postmaster@example.org>"),
            (Phase::RcptTo, b"drop@example.org") => disconnect("421 4.7.0 Too many recipients"),
            (Phase::RcptTo, b"report@example.org") => report("recipient noted"),
            _ => proceed(),
        }
    }

    async fn on_data_line(
        &self,
        _session: SessionId,
        line: &[u8],
        out: &mut DataLines,
    ) -> Result<(), Error> {
        if line == b"secret" {
            out.push("[redacted]")
        } else {
            out.push(line)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    filter::run(Guard).await
}
