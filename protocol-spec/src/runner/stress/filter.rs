//! Filter load: many SMTP sessions at once. Each session walks the phases
//! the filter registered (connect, helo, mail-from, rcpt-to, data, the
//! data-lines of a short message, commit), one request at a time as the
//! daemon does, with `link-connect` and `link-disconnect` reports when the
//! filter registered them. The parameters are ones every example filter
//! lets through; any legal decision is accepted.

use std::collections::{HashMap, VecDeque};

use smtpd_conformance::vectors::Family;
use smtpd_conformance::wire::{parse_answer, Answer};
use smtpd_sdk::proto::filter::{
    Event, EventKind, Fcrdns, Input, Output, Phase, Report, Request, Subsystem,
};
use smtpd_sdk::proto::{Line, SessionId, Timestamp, Token};

use super::super::handshake::Registered;
use super::{Reaction, Rng, Workload};

/// The phases walked, in session order, with their parameters.
const PHASES: [(Phase, &str); 7] = [
    (Phase::Connect, "client.example.net|192.0.2.10"),
    (Phase::Helo, "client.example.net"),
    (Phase::MailFrom, "sender@example.net"),
    (Phase::RcptTo, "rcpt@example.org"),
    (Phase::Data, ""),
    (Phase::DataLine, ""),
    (Phase::Commit, ""),
];

/// The message sent through data-line, final `.` included.
const MESSAGE: [&str; 4] = ["Subject: stress", "", "a line of the message", "."];

enum Item {
    /// A report: sent, never answered.
    Report(Vec<u8>),
    /// A request answered by one filter-result.
    Ask(Vec<u8>),
    /// Data-lines answered by filter-dataline lines up to `.`.
    Stream(Vec<Vec<u8>>),
}

struct SmtpSession {
    plan: VecDeque<Item>,
}

pub(super) struct FilterLoad {
    sessions: Vec<SmtpSession>,
    by_id: HashMap<u64, usize>,
    waiting: usize,
    sent: usize,
    phases: usize,
}

fn line(input: Input) -> Vec<u8> {
    let mut line = input.to_line().unwrap_or_default();
    line.pop();
    line
}

fn report(session: SessionId, event: Event) -> Vec<u8> {
    line(Input::Report(Report {
        timestamp: Timestamp::now(),
        subsystem: Subsystem::SmtpIn,
        session,
        event,
    }))
}

fn request(session: SessionId, token: Token, phase: Phase, param: &str) -> Vec<u8> {
    line(Input::Filter(Request {
        timestamp: Timestamp::now(),
        phase,
        session,
        token,
        param: param.as_bytes().to_vec(),
    }))
}

impl FilterLoad {
    pub(super) fn new(
        count: usize,
        registered: &Registered,
        rng: &mut Rng,
    ) -> Result<Self, String> {
        let phases: Vec<(Phase, &str)> = PHASES
            .into_iter()
            .filter(|(phase, _)| registered.has_phase(*phase))
            .collect();
        let per_session: usize = phases
            .iter()
            .map(|(p, _)| {
                if *p == Phase::DataLine {
                    MESSAGE.len()
                } else {
                    1
                }
            })
            .sum();
        if per_session == 0 {
            return Err("not run: the filter registered none of the phases it walks".into());
        }
        let connect = registered.has_report(Subsystem::SmtpIn, Some(EventKind::LinkConnect));
        let disconnect = registered.has_report(Subsystem::SmtpIn, Some(EventKind::LinkDisconnect));
        let token = Token(rng.next());
        let base = rng.next() & 0xffff_ffff_0000_0000;
        let mut load = Self {
            sessions: Vec::new(),
            by_id: HashMap::new(),
            waiting: 0,
            sent: 0,
            phases: phases.len(),
        };
        for i in 0..count.div_ceil(per_session).max(1) {
            let id = SessionId(base + i as u64 + 1);
            let mut plan = VecDeque::new();
            if connect {
                plan.push_back(Item::Report(report(
                    id,
                    Event::LinkConnect {
                        rdns: "client.example.net".into(),
                        fcrdns: Fcrdns::Pass,
                        src: "192.0.2.10:50000".into(),
                        dest: "198.51.100.1:25".into(),
                    },
                )));
            }
            for (phase, param) in &phases {
                plan.push_back(if *phase == Phase::DataLine {
                    let lines = MESSAGE
                        .iter()
                        .map(|l| request(id, token, *phase, l))
                        .collect();
                    Item::Stream(lines)
                } else {
                    Item::Ask(request(id, token, *phase, param))
                });
            }
            if disconnect {
                plan.push_back(Item::Report(report(id, Event::LinkDisconnect)));
            }
            load.by_id.insert(id.0, load.sessions.len());
            load.sessions.push(SmtpSession { plan });
        }
        Ok(load)
    }

    /// The lines of session `index` up to its next question.
    fn advance(&mut self, index: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(item) = self.sessions[index].plan.pop_front() {
            match item {
                Item::Report(line) => out.push(line),
                Item::Ask(line) => {
                    self.sent += 1;
                    self.waiting += 1;
                    out.push(line);
                    break;
                }
                Item::Stream(lines) => {
                    self.sent += lines.len();
                    self.waiting += 1;
                    out.extend(lines);
                    break;
                }
            }
        }
        out
    }
}

impl Workload for FilterLoad {
    fn start(&mut self) -> Vec<Vec<u8>> {
        (0..self.sessions.len())
            .flat_map(|i| self.advance(i))
            .collect()
    }

    fn answered(&mut self, line: &[u8]) -> Reaction {
        let Ok(Answer::Filter(output)) = parse_answer(Family::Filter, line) else {
            return Reaction::default();
        };
        let (session, step_done) = match output {
            Output::Result { session, .. } => (session, true),
            Output::DataLine { session, line, .. } => (session, line == b"."),
        };
        let Some(&index) = self.by_id.get(&session.0) else {
            return Reaction::default();
        };
        if !step_done {
            return Reaction::default();
        }
        self.waiting = self.waiting.saturating_sub(1);
        Reaction {
            send: self.advance(index),
            problem: None,
        }
    }

    fn done(&self) -> bool {
        self.waiting == 0 && self.sessions.iter().all(|s| s.plan.is_empty())
    }

    fn requests(&self) -> usize {
        self.sent
    }

    fn describe(&self) -> String {
        format!(
            "{} sessions through {} phases each",
            self.sessions.len(),
            self.phases
        )
    }
}
