//! Replaying the vector cases of one family, each against a freshly
//! started backend (the vectors assume one: a fetch cycles from the first
//! value, a queue starts empty).
//!
//! Cases without a fixture always run; a case with `fixture: NAME` runs only
//! when `--fixture NAME` says the backend was loaded with it. Handshake and
//! codec-only cases are left to the codecs. Filter cases whose requests use
//! a phase the backend did not register are skipped (the daemon never sends
//! those), and report events it did not register are not sent; queue cases
//! using a lease operation are skipped unless the backend registered
//! `lease`. Each
//! exchange must pass the tracker's protocol checks and then match the
//! case's `<` lines; a case stops at its first failing exchange. After the
//! last exchange the backend's stdin is closed, and whatever it still
//! writes must answer something.

use smtpd_conformance::vectors::Family;
use smtpd_conformance::vectors::{match_answers, Captures, Case, Mismatch, VectorFile};
use smtpd_conformance::wire::{parse_request, Request};
use smtpd_sdk::proto::filter::Input;
use smtpd_sdk::proto::queue::{OpKind, LEASE_CAPABILITY};

use super::handshake::Registered;
use super::report::{show, Failure, Report};
use super::{Session, Settings};

/// Replays every case of the family, each against a freshly started
/// backend. `registered` is what the backend registered at its first start.
pub(super) async fn run(
    settings: &Settings,
    registered: &Registered,
    files: &[VectorFile],
    report: &mut Report,
) {
    let files: Vec<&VectorFile> = files
        .iter()
        .filter(|f| f.family == settings.family)
        .collect();
    let cases: usize = files.iter().map(|f| f.cases.len()).sum();
    let codec_only: usize = files
        .iter()
        .flat_map(|f| &f.cases)
        .filter(|c| c.is_codec_only())
        .count();
    report.note(&format!(
        "{} vector files, {cases} cases ({codec_only} for codecs only) in {}",
        files.len(),
        settings.vectors.display()
    ));
    for file in files {
        for case in file.cases.iter().filter(|c| !c.is_codec_only()) {
            let name = format!("{} {}", file.display_name(), case.name);
            if let Some(reason) = skip_reason(settings, registered, case) {
                report.skip(&name, &reason);
                continue;
            }
            let mut session = match Session::start(settings).await {
                Ok(session) => session,
                Err(failure) => {
                    report.fail(&name, &failure);
                    continue;
                }
            };
            let outcome = run_case(&mut session, case).await;
            let stray = session.stop().await;
            match outcome {
                Ok(()) if stray.is_empty() => report.pass(&name, ""),
                Ok(()) => {
                    let mut failure =
                        Failure::new(format!("wrote lines after the last exchange: {}", stray[0]));
                    failure.details = stray;
                    report.fail(&name, &failure);
                }
                Err(failure) => report.fail(&name, &failure),
            }
        }
    }
}

fn skip_reason(settings: &Settings, registered: &Registered, case: &Case) -> Option<String> {
    if let Some(fixture) = &case.fixture {
        if settings.fixture.as_deref() != Some(fixture.as_str()) {
            return Some(format!(
                "needs a backend loaded with fixtures/{fixture} (--fixture {fixture})"
            ));
        }
    }
    for exchange in case.exchanges() {
        for sent in &exchange.sent {
            if settings.family == Family::Queue {
                // The line may hold placeholders: only its operation is read.
                let op = sent.text.split(|&b| b == b'|').nth(3);
                let kind = op.and_then(OpKind::from_name);
                if kind.is_some_and(OpKind::needs_lease)
                    && !registered.has_capability(LEASE_CAPABILITY)
                {
                    let name = kind.map_or("", OpKind::name);
                    return Some(format!(
                        "the backend did not register {LEASE_CAPABILITY} ({name} needs it)"
                    ));
                }
                continue;
            }
            let Ok(Request::Filter(Input::Filter(request))) =
                parse_request(settings.family, &sent.text)
            else {
                continue;
            };
            if !registered.has_phase(request.phase) {
                return Some(format!(
                    "the backend did not register filter smtp-in {}",
                    request.phase
                ));
            }
        }
    }
    None
}

async fn run_case(session: &mut Session, case: &Case) -> Result<(), Failure> {
    let mut captures = Captures::new();
    for exchange in case.exchanges() {
        let mut problems = Vec::new();
        for sent in &exchange.sent {
            let line = sent.substitute(&captures).map_err(|name| {
                Failure::new(format!(
                    "line {}: cannot send it, {{{name}}} was not captured",
                    sent.line
                ))
            })?;
            if !wanted_by_backend(session, &line) {
                continue;
            }
            session.send(&line);
        }
        let got = session.collect(exchange.expected.len()).await;
        if let Some(mut failure) = got.died {
            let first = exchange.sent.first().map_or(case.line, |s| s.line);
            failure.summary = format!("{} (at the exchange of line {first})", failure.summary);
            return Err(failure);
        }
        problems.extend(got.problems);
        let mismatches = match_answers(
            session.family,
            &exchange.expected,
            &got.answers,
            &mut captures,
        );
        problems.extend(mismatches.iter().map(describe));
        if !problems.is_empty() {
            let first = exchange.sent.first().map_or(case.line, |s| s.line);
            let mut lines = problems.iter().flat_map(|p| p.lines().map(str::to_owned));
            let head = lines.next().unwrap_or_default();
            let mut failure = Failure::new(format!("the exchange of line {first}: {head}"));
            failure.details = lines.collect();
            if let Some(note) = &case.note {
                failure.details.push(format!("note: {note}"));
            }
            return Err(failure);
        }
    }
    Ok(())
}

/// False for a report event the filter did not register: the daemon sends
/// only registered events.
fn wanted_by_backend(session: &Session, line: &[u8]) -> bool {
    match parse_request(session.family, line) {
        Ok(Request::Filter(Input::Report(report))) => session
            .registered
            .has_report(report.subsystem, report.event.kind()),
        _ => true,
    }
}

fn describe(mismatch: &Mismatch) -> String {
    match mismatch {
        Mismatch::Missing { line, expected } => {
            format!("line {line}: no answer, expected {}", show(expected))
        }
        Mismatch::Different {
            line,
            expected,
            got,
        } => format!(
            "line {line}: expected {}\n         got      {}",
            show(expected),
            show(got)
        ),
        Mismatch::Unexpected { got } => format!("an answer no line expects: {}", show(got)),
    }
}
