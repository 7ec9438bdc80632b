//! The stress pass: many requests pipelined, every answer matched by id.
//!
//! A [`Workload`] per family produces the requests (`table.rs`: lookups and
//! checks; `queue.rs`: message life cycles; `filter.rs`: many sessions'
//! phases) and reacts to each answer, possibly with follow-up requests. The
//! driver sends them through the session, so the tracker checks every
//! answer: none missing, none duplicated, none unsolicited. The workload
//! also checks content where it knows the right answer (fixture values,
//! message data read back). An answer must come within the timeout of the
//! previous one; the throughput is printed.

mod filter;
mod queue;
mod table;

use std::time::{SystemTime, UNIX_EPOCH};

use smtpd_conformance::vectors::Family;
use smtpd_sdk::tablefile::TableFile;
use tokio::time::Instant;

use super::backend::Next;
use super::report::{Failure, Report};
use super::tracker::Verdict;
use super::Session;

/// Problems listed in the report; the rest are counted.
const SHOWN_PROBLEMS: usize = 10;
/// Problems after which the pass gives up (a backend flooding its stdout).
const MAX_PROBLEMS: usize = 1000;

/// Requests of one family and what to do with their answers.
pub(super) trait Workload: Send {
    /// The first requests, all sent at once.
    fn start(&mut self) -> Vec<Vec<u8>>;
    /// Follow-up requests after an accepted answer, and a problem if the
    /// answer is not the right one.
    fn answered(&mut self, line: &[u8]) -> Reaction;
    /// True when every planned request was sent and answered.
    fn done(&self) -> bool;
    /// Requests sent so far.
    fn requests(&self) -> usize;
    /// What the requests are, for the report.
    fn describe(&self) -> String;
}

/// What a workload does after an answer.
#[derive(Debug, Default)]
pub(super) struct Reaction {
    pub(super) send: Vec<Vec<u8>>,
    pub(super) problem: Option<String>,
}

/// The workload for the session's family, or why there is none.
pub(super) fn load(
    session: &Session,
    requests: usize,
    fixture: Option<&TableFile>,
) -> Result<Box<dyn Workload>, String> {
    let mut rng = Rng::seeded();
    match session.family {
        Family::Table => Ok(Box::new(table::TableLoad::new(
            requests,
            &session.registered.services(),
            fixture,
            &mut rng,
        ))),
        Family::Queue => Ok(Box::new(queue::QueueLoad::new(requests, &mut rng))),
        Family::Filter => filter::FilterLoad::new(requests, &session.registered, &mut rng)
            .map(|load| Box::new(load) as Box<dyn Workload>),
    }
}

/// Counts problems and keeps the first few.
#[derive(Debug, Default)]
struct Problems {
    shown: Vec<String>,
    count: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        self.count += 1;
        if self.shown.len() < SHOWN_PROBLEMS {
            self.shown.push(problem);
        }
    }
}

/// Runs the workload and reports one check, `stress`.
pub(super) async fn run(
    session: &mut Session,
    load: Result<Box<dyn Workload>, String>,
    report: &mut Report,
) {
    const NAME: &str = "stress";
    let mut work = match load {
        Ok(work) => work,
        Err(reason) => {
            report.skip(NAME, &reason);
            return;
        }
    };
    let started = Instant::now();
    let mut problems = Problems::default();
    let mut answers = 0usize;
    for line in work.start() {
        session.send(&line);
    }
    while session.tracker.pending() > 0 || !work.done() {
        if problems.count >= MAX_PROBLEMS {
            problems.push(format!("gave up after {MAX_PROBLEMS} problems"));
            session.tracker.abandon();
            break;
        }
        let deadline = Instant::now() + session.timeout;
        match session.backend.next(deadline).await {
            Next::Line(line) => match session.tracker.received(&line) {
                Verdict::Answer => {
                    answers += 1;
                    let reaction = work.answered(&line);
                    for next in reaction.send {
                        session.send(&next);
                    }
                    if let Some(problem) = reaction.problem {
                        problems.push(problem);
                    }
                }
                Verdict::Violation(v) => problems.push(v),
            },
            Next::TooLong(len) => problems.push(format!("a line of more than {len} bytes")),
            Next::Closed => {
                let mut failure = session.died().await;
                failure.summary = format!(
                    "{} after {answers} answers to {} requests",
                    failure.summary,
                    work.requests()
                );
                report.fail(NAME, &failure);
                return;
            }
            Next::TimedOut => {
                problems.push(format!(
                    "no answer for {} s with {} answers outstanding",
                    session.timeout.as_secs_f64(),
                    session.tracker.pending()
                ));
                for missing in session.tracker.abandon() {
                    problems.push(missing);
                }
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let requests = work.requests();
    let rate = requests as f64 / secs.max(1e-6);
    let summary = format!(
        "{requests} requests pipelined ({}), {answers} answers, in {secs:.2} s ({rate:.0} requests/s)",
        work.describe()
    );
    if problems.count == 0 {
        report.pass(NAME, &summary);
    } else {
        let mut failure = Failure::new(format!("{} problems; {summary}", problems.count));
        failure.details = problems.shown;
        report.fail(NAME, &failure);
    }
}

/// A small xorshift generator: random keys and ids, no cryptography.
pub(super) struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self((nanos ^ u64::from(std::process::id()) << 32) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
