//! One inbound session's filters: the chain walked at each phase, the
//! report events sent to the chain's processes, and the message's
//! data-line stream.
//!
//! [`SessionFilters::phase`] walks the chain in order through the members
//! that filter the phase (built-in filters through [`builtin::evaluate`],
//! processes through their supervisor, one request outstanding), stops at
//! the first decision that is not `proceed`, and reports the outcome
//! (`filter-response`). Beyond OpenSMTPD: a process that is down, dies
//! with the request in flight, does not answer within its timeout or
//! answers a malformed line gives a temporary failure (421 and the end of
//! the session at connect, helo and ehlo; 451 elsewhere), never a lost
//! message. A `report` decision emits `filter-report`; a built-in filter's
//! goes on with the next filter, a process's ends the chain and is the
//! phase's `filter-response`, the command running with its own parameter
//! (7.8 would give it the report's text as parameter, a bug not copied).
//!
//! [`SessionFilters::report`] sends one smtp-in event to every process of
//! the chain that registered for it. [`DataStream`] carries the message
//! through the processes that filter `data-line`, one after the other.

use std::sync::Arc;

use smtpd_sdk::proto::filter::{
    Decision, Event, EventKind, Input, Phase, Report, Request, Subsystem,
};
use smtpd_sdk::proto::{SessionId, Timestamp, Token};

use super::builtin::{self, Facts, Outcome};
use super::chain::{response_phase, wire_phase, Chain, MemberKind};
use super::stream::{DataOutput, DataStream};
use super::Inner;
use crate::smtp::Reply;

/// What the chain decided about a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run the command.
    Proceed,
    /// Refuse it with this reply.
    Reject(Reply),
    /// Refuse it with this reply and close the session.
    Disconnect(Reply),
    /// Run it with this parameter instead.
    Rewrite(String),
}

/// The `report|0.7|...` line of `event`.
pub(super) fn report_line(
    subsystem: Subsystem,
    session: SessionId,
    event: Event,
    timestamp: Timestamp,
) -> Input {
    Input::Report(Report {
        timestamp,
        subsystem,
        session,
        event,
    })
}

/// The `filter|0.7|...|smtp-in|PHASE|SID|TOKEN|PARAM` line of a request.
pub(super) fn request_line(
    phase: Phase,
    session: SessionId,
    token: Token,
    param: &[u8],
    timestamp: Timestamp,
) -> Input {
    Input::Filter(Request {
        timestamp,
        phase,
        session,
        token,
        param: param.to_vec(),
    })
}

/// A filter's reply text as a [`Reply`], after 7.8's check (a text that is
/// no 4xx/5xx reply becomes `421 Internal server error`); whether the
/// session then closes (any 421).
pub fn filter_reply(text: &str) -> (Reply, bool) {
    let (checked, close) = builtin::checked_reply(text);
    let code = checked
        .get(..3)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(421);
    let rest = checked.get(4..).unwrap_or("");
    (Reply::bare(code, rest), close)
}

/// The reply when a filter could not decide: 421 (and the end of the
/// session) before the client identified itself, 451 after.
fn unavailable(phase: Phase) -> Verdict {
    match phase {
        Phase::Connect | Phase::Helo | Phase::Ehlo => Verdict::Disconnect(Reply::bare(
            421,
            "4.7.0 Filter unavailable, try again later",
        )),
        _ => Verdict::Reject(Reply::bare(
            451,
            "4.7.0 Filter unavailable, try again later",
        )),
    }
}

/// One session's filters.
pub struct SessionFilters {
    pub(super) inner: Arc<Inner>,
    pub(super) chain: Arc<Chain>,
    pub(super) id: SessionId,
    junk: bool,
    /// A filter said `junk` before any transaction: every message of the
    /// session is junk.
    session_junk: bool,
    /// A filter said `junk` in the phase being run.
    junked_now: bool,
    /// A filter process said `report` in the phase being run: its text.
    reported_now: Option<String>,
}

impl std::fmt::Debug for SessionFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFilters")
            .field("id", &self.id)
            .field("junk", &self.junk)
            .finish_non_exhaustive()
    }
}

impl SessionFilters {
    pub(super) fn new(inner: Arc<Inner>, chain: Arc<Chain>, id: SessionId) -> Self {
        Self {
            inner,
            chain,
            id,
            junk: false,
            session_junk: false,
            junked_now: false,
            reported_now: None,
        }
    }

    /// The session's id on the filter wire.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Whether a filter said `junk` (the message gets `X-Spam: Yes`).
    pub fn is_junk(&self) -> bool {
        self.junk || self.session_junk
    }

    /// Forgets the transaction's `junk` at its end (a session marked
    /// before any transaction stays marked).
    pub fn reset_junk(&mut self) {
        self.junk = false;
    }

    /// Whether the chain has filter processes (which see transaction
    /// ids).
    pub fn has_procs(&self) -> bool {
        !self.chain.procs.is_empty()
    }

    /// Whether some process of the chain wants `event`; lets callers skip
    /// building events nobody reads.
    pub fn wants(&self, event: EventKind) -> bool {
        self.chain.procs.iter().any(|&p| {
            self.inner.procs[p]
                .registration()
                .is_some_and(|r| r.reports(Subsystem::SmtpIn, event))
        })
    }

    /// Sends `event` to every process of the chain that registered for it.
    pub fn report(&self, event: Event) {
        let Some(kind) = event.kind() else {
            return;
        };
        let mut line = None;
        for &p in &self.chain.procs {
            let proc = &self.inner.procs[p];
            if !proc
                .registration()
                .is_some_and(|r| r.reports(Subsystem::SmtpIn, kind))
            {
                continue;
            }
            let line = line.get_or_insert_with(|| {
                report_line(Subsystem::SmtpIn, self.id, event.clone(), Timestamp::now())
            });
            match proc.supervisor().send(line) {
                Ok(()) => proc.flow().report(),
                Err(e) => {
                    tracing::debug!("report {} to filter {}: {e}", kind.name(), proc.name());
                }
            }
        }
    }

    /// Runs the chain for `phase` with the command's parameter.
    pub async fn phase(&mut self, phase: Phase, param: &str, facts: &Facts<'_>) -> Verdict {
        self.junked_now = false;
        let verdict = self.walk(phase, param, facts).await;
        let reported = self.reported_now.take();
        let (response, param) = match &verdict {
            Verdict::Proceed if self.junked_now => ("junk", None),
            Verdict::Proceed if reported.is_some() => ("report", reported),
            Verdict::Proceed => ("proceed", None),
            Verdict::Reject(reply) => ("reject", Some(reply.to_string())),
            Verdict::Disconnect(reply) => ("disconnect", Some(reply.to_string())),
            Verdict::Rewrite(value) => ("rewrite", Some(value.clone())),
        };
        self.report(Event::FilterResponse {
            phase: response_phase(phase).to_owned(),
            response: response.to_owned(),
            param,
        });
        verdict
    }

    async fn walk(&mut self, phase: Phase, param: &str, facts: &Facts<'_>) -> Verdict {
        let chain = Arc::clone(&self.chain);
        for (index, member) in chain.members.iter().enumerate() {
            let outcome = match &member.kind {
                MemberKind::Builtin(filter) => {
                    if wire_phase(builtin::run_phase(filter)) != phase {
                        continue;
                    }
                    match builtin::evaluate(filter, facts, &self.inner.tables).await {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            tracing::warn!("filter {}: {e}", member.name);
                            return unavailable(phase);
                        }
                    }
                }
                MemberKind::Proc(p) => match self.ask(*p, index, phase, param).await {
                    Some(Some(outcome)) => outcome,
                    Some(None) => continue,
                    // QUIT is never held back.
                    None if phase == Phase::Quit => continue,
                    None => return unavailable(phase),
                },
            };
            match outcome {
                Outcome::Proceed => {}
                Outcome::Bypass => return Verdict::Proceed,
                // A built-in filter's report goes on with the chain
                // (smtpd-conf.md 8.2).
                Outcome::Report(message) if matches!(member.kind, MemberKind::Builtin(_)) => {
                    self.report(Event::FilterReport {
                        kind: "builtin".to_owned(),
                        name: member.name.clone(),
                        message,
                    });
                }
                // A process's ends it, and the command runs with its own
                // parameter (SPEC.md 3.5).
                Outcome::Report(message) => {
                    self.report(Event::FilterReport {
                        kind: "proc".to_owned(),
                        name: member.name.clone(),
                        message: message.clone(),
                    });
                    self.reported_now = Some(message);
                    return Verdict::Proceed;
                }
                Outcome::Junk if phase == Phase::Commit => {
                    // Fatal in 7.8; too late to add the header here.
                    tracing::warn!("filter {}: junk at commit, ignored", member.name);
                }
                Outcome::Junk => {
                    match phase {
                        Phase::MailFrom | Phase::RcptTo | Phase::Data => self.junk = true,
                        _ => self.session_junk = true,
                    }
                    self.junked_now = true;
                    return Verdict::Proceed;
                }
                Outcome::Reject(text) => {
                    let (reply, close) = filter_reply(&text);
                    return match close {
                        true => Verdict::Disconnect(reply),
                        false => Verdict::Reject(reply),
                    };
                }
                Outcome::Disconnect(text) => return Verdict::Disconnect(filter_reply(&text).0),
                Outcome::Rewrite(value) => return Verdict::Rewrite(value),
            }
        }
        Verdict::Proceed
    }

    /// Asks process `p`, member `index` of the chain: `Some(None)` when it
    /// does not filter `phase`, `None` when it could not answer.
    async fn ask(
        &self,
        p: usize,
        index: usize,
        phase: Phase,
        param: &str,
    ) -> Option<Option<Outcome>> {
        let proc = &self.inner.procs[p];
        let Some(registration) = proc.registration() else {
            // What it registered last says whether it is missed here.
            if proc.last_registration().is_some_and(|r| !r.filters(phase)) {
                return Some(None);
            }
            tracing::warn!("filter {} is down, {} refused for now", proc.name(), phase);
            return None;
        };
        if !registration.filters(phase) {
            return Some(None);
        }
        let token = self.chain.token(index, phase);
        let request = request_line(phase, self.id, token, param.as_bytes(), Timestamp::now());
        match proc.supervisor().call((self.id, token), &request).await {
            Ok(decision) => Some(Some(match decision {
                Decision::Proceed => Outcome::Proceed,
                Decision::Junk => Outcome::Junk,
                Decision::Reject(r) => Outcome::Reject(r),
                Decision::Disconnect(r) => Outcome::Disconnect(r),
                Decision::Rewrite(v) => Outcome::Rewrite(v),
                Decision::Report(t) => Outcome::Report(t),
            })),
            Err(e) => {
                tracing::warn!("filter {}: {phase}: {e}", proc.name());
                None
            }
        }
    }

    /// Starts the message's data-line stream through the chain's processes
    /// that filter `data-line`; `None` when none does (lines then go
    /// straight to the queue). Fails (451) when one of them is down.
    pub fn start_data(&self) -> Result<Option<(DataStream, DataOutput)>, Reply> {
        let mut stages = Vec::new();
        for (index, member) in self.chain.members.iter().enumerate() {
            let MemberKind::Proc(p) = member.kind else {
                continue;
            };
            let proc = &self.inner.procs[p];
            match proc.registration() {
                None if proc
                    .last_registration()
                    .is_some_and(|r| !r.filters(Phase::DataLine)) => {}
                Some(r) if r.filters(Phase::DataLine) => {
                    stages.push((proc.clone(), self.chain.token(index, Phase::DataLine)));
                }
                Some(_) => {}
                None => {
                    tracing::warn!("filter {} is down, DATA refused for now", proc.name());
                    return Err(Reply::bare(
                        451,
                        "4.7.0 Filter unavailable, try again later",
                    ));
                }
            }
        }
        Ok((!stages.is_empty()).then(|| DataStream::start(self.id, stages)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(line: &Input) -> String {
        let mut out = bytes::BytesMut::new();
        smtpd_sdk::proto::Line::format(line, &mut out).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// protocols.md 2.10 and 2.4, byte for byte.
    #[test]
    fn lines_are_7_8s() {
        let sid = SessionId(0xa1b2_c3d4_e5f6_0718);
        let at = |secs, micros| Timestamp { secs, micros };
        let cases = [
            (
                report_line(
                    Subsystem::SmtpIn,
                    sid,
                    Event::LinkConnect {
                        rdns: "host.example.net".into(),
                        fcrdns: smtpd_sdk::proto::filter::Fcrdns::Pass,
                        src: "192.0.2.7:50123".into(),
                        dest: "198.51.100.2:25".into(),
                    },
                    at(1_731_000_000, 100_000),
                ),
                "report|0.7|1731000000.100000|smtp-in|link-connect|a1b2c3d4e5f60718|host.example.net|pass|192.0.2.7:50123|198.51.100.2:25\n",
            ),
            (
                report_line(Subsystem::SmtpIn, sid, Event::LinkDisconnect, at(1_731_000_009, 0)),
                "report|0.7|1731000009.000000|smtp-in|link-disconnect|a1b2c3d4e5f60718\n",
            ),
            (
                report_line(
                    Subsystem::SmtpIn,
                    sid,
                    Event::FilterResponse {
                        phase: response_phase(Phase::Connect).into(),
                        response: "proceed".into(),
                        param: None,
                    },
                    at(1_731_000_000, 200_000),
                ),
                "report|0.7|1731000000.200000|smtp-in|filter-response|a1b2c3d4e5f60718|connected|proceed\n",
            ),
            (
                report_line(
                    Subsystem::SmtpOut,
                    sid,
                    Event::TxCommit {
                        msgid: smtpd_sdk::proto::MsgId(0x0bad_cafe),
                        size: 1234,
                    },
                    at(1, 2),
                ),
                "report|0.7|1.000002|smtp-out|tx-commit|a1b2c3d4e5f60718|0badcafe|1234\n",
            ),
            (
                request_line(
                    Phase::MailFrom,
                    sid,
                    Token(0x5d0a_0001_0000_0001),
                    b"alice@example.net",
                    at(1_731_000_003, 250_000),
                ),
                "filter|0.7|1731000003.250000|smtp-in|mail-from|a1b2c3d4e5f60718|5d0a000100000001|alice@example.net\n",
            ),
            (
                request_line(
                    Phase::DataLine,
                    sid,
                    Token(0x5d0a_0001_0000_0002),
                    b"..starts with a dot",
                    at(1_731_000_004, 100_000),
                ),
                "filter|0.7|1731000004.100000|smtp-in|data-line|a1b2c3d4e5f60718|5d0a000100000002|..starts with a dot\n",
            ),
            (
                request_line(Phase::Commit, sid, Token(3), b"", at(1_731_000_004, 100_300)),
                "filter|0.7|1731000004.100300|smtp-in|commit|a1b2c3d4e5f60718|0000000000000003|\n",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(wire(&line), expected);
        }
    }

    /// A session of a chain of built-in filters only: no process, no wire.
    async fn builtin_session(conf: &str) -> SessionFilters {
        let text = format!(
            "{conf}listen on 127.0.0.1 filter all\naction \"a\" mbox\nmatch for local action \"a\"\n"
        );
        let config = crate::config::Config::parse_str(
            "smtpd.conf",
            &text,
            &crate::config::LoadOptions::default(),
        )
        .unwrap()
        .config;
        let tables = crate::table::build(&config, &crate::table::BuildOptions::default())
            .await
            .unwrap();
        let options = super::super::StartOptions {
            backends_dir: "/nonexistent".into(),
            user: None,
            timeout: super::super::DEFAULT_TIMEOUT,
            admd: "mx.test".into(),
        };
        let filters = super::super::Filters::start(&config, tables, &options)
            .await
            .unwrap();
        filters
            .session(config.filter_named("all").unwrap())
            .unwrap()
    }

    fn facts() -> Facts<'static> {
        Facts {
            src: crate::rules::Source::Ip([192, 0, 2, 7].into()),
            rdns: None,
            fcrdns: false,
            helo: Some("client.test"),
            auth_user: None,
            mail_from: Some("a@example.net"),
            rcpt_to: Some("b@example.org"),
        }
    }

    #[tokio::test]
    async fn junk_before_a_transaction_marks_the_session_and_after_only_it() {
        let mut s = builtin_session(
            "filter early phase connect match !fcrdns junk\n\
             filter late phase rcpt-to match rcpt-to regex \"^spam@\" junk\n\
             filter bye phase mail-from match mail-from regex \"^bad@\" reject \"550 5.7.1 No\"\n\
             filter all chain { early, late, bye }\n",
        )
        .await;
        assert_eq!(
            s.phase(Phase::Connect, "", &facts()).await,
            Verdict::Proceed
        );
        assert!(s.is_junk());
        s.reset_junk();
        assert!(s.is_junk(), "the session stays junk");

        let mut s = builtin_session(
            "filter late phase rcpt-to match rcpt-to regex \"^spam@\" junk\n\
             filter bye phase mail-from match mail-from regex \"^bad@\" reject \"550 5.7.1 No\"\n\
             filter all chain { late, bye }\n",
        )
        .await;
        let spam = Facts {
            rcpt_to: Some("spam@example.org"),
            ..facts()
        };
        assert_eq!(
            s.phase(Phase::RcptTo, "spam@example.org", &spam).await,
            Verdict::Proceed
        );
        assert!(s.is_junk());
        s.reset_junk();
        assert!(!s.is_junk(), "the next transaction is clean");
        let bad = Facts {
            mail_from: Some("bad@example.net"),
            ..facts()
        };
        let Verdict::Reject(reply) = s.phase(Phase::MailFrom, "bad@example.net", &bad).await else {
            panic!("not rejected");
        };
        assert_eq!(reply.to_string(), "550 5.7.1 No");
    }

    #[test]
    fn filter_replies_are_checked_as_7_8_checks_them() {
        let (reply, close) = filter_reply("550 5.7.1 No thanks");
        assert_eq!(reply.to_string(), "550 5.7.1 No thanks");
        assert!(!close);
        let (reply, close) = filter_reply("421 4.7.0 Go away");
        assert_eq!(reply.to_string(), "421 4.7.0 Go away");
        assert!(close);
        let (reply, close) = filter_reply("250 fine");
        assert_eq!(reply.to_string(), "421 Internal server error");
        assert!(close);
    }

    #[test]
    fn unavailable_filters_give_421_before_helo_and_451_after() {
        assert!(matches!(unavailable(Phase::Connect), Verdict::Disconnect(r) if r.code() == 421));
        assert!(matches!(unavailable(Phase::Ehlo), Verdict::Disconnect(r) if r.code() == 421));
        assert!(matches!(unavailable(Phase::MailFrom), Verdict::Reject(r) if r.code() == 451));
        assert!(matches!(unavailable(Phase::Commit), Verdict::Reject(r) if r.code() == 451));
    }
}
