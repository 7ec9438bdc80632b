//! Protocol-level checks on everything a backend writes after the handshake.
//!
//! The tracker knows every request in flight. Each line the backend writes
//! must parse as the family's answer type (through the codec), answer a
//! request that is outstanding (by request id for tables and queues, by
//! session id and token for filters), not answer it twice, and be a legal
//! answer to that operation. Anything else is a violation, described with
//! the offending line.

use std::collections::{HashMap, HashSet, VecDeque};

use smtpd_conformance::vectors::Family;
use smtpd_conformance::wire::{parse_answer, parse_request, Answer, Request};
use smtpd_sdk::proto::filter::{Decision, Input, Output, Phase};
use smtpd_sdk::proto::ParseError;

use super::report::show;

/// What a sent line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SentKind {
    /// A request that must be answered.
    Request,
    /// A filter report or a data-line: nothing (or a stream) is owed.
    NoAnswer,
    /// The codec cannot read it, so no answer can be tracked.
    Untracked(ParseError),
}

/// What a received line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A proper answer to an outstanding request.
    Answer,
    /// A protocol violation, described.
    Violation(String),
}

/// A filter session and token, as numbers.
type FilterKey = (u64, u64);

/// Requests in flight and answers seen.
#[derive(Debug)]
pub(crate) struct Tracker {
    family: Family,
    /// Table and queue: request id as sent -> the operation's name.
    requests: HashMap<String, Pending>,
    /// Filter: outstanding phases (not data-line) per session and token.
    results: HashMap<FilterKey, VecDeque<Phase>>,
    /// Filter: open data-line streams; true once the final `.` was sent.
    streams: HashMap<FilterKey, bool>,
    /// Filter: data-line streams that ended with `.`.
    finished: HashSet<FilterKey>,
    /// Answered requests, to tell a duplicate from an unsolicited line.
    answered: HashSet<String>,
    /// Requests given up on after a timeout.
    abandoned: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    op: String,
    /// False when the codec does not know the operation (a `~>` line).
    known: bool,
}

fn filter_key_text(key: FilterKey) -> String {
    format!("session {:016x} token {:016x}", key.0, key.1)
}

impl Tracker {
    pub(crate) fn new(family: Family) -> Self {
        Self {
            family,
            requests: HashMap::new(),
            results: HashMap::new(),
            streams: HashMap::new(),
            finished: HashSet::new(),
            answered: HashSet::new(),
            abandoned: HashSet::new(),
        }
    }

    /// Records a line sent to the backend.
    pub(crate) fn sent(&mut self, line: &[u8]) -> SentKind {
        match parse_request(self.family, line) {
            Ok(Request::Table(r)) => self.expect(r.id.to_string(), r.op.kind().name(), true),
            Ok(Request::Queue(r)) => self.expect(r.id.to_string(), r.op.kind().name(), true),
            Ok(Request::Filter(Input::Report(_))) => SentKind::NoAnswer,
            Ok(Request::Filter(Input::Filter(r))) => {
                let key = (r.session.0, r.token.0);
                if r.phase == Phase::DataLine {
                    let done = self.streams.entry(key).or_insert(false);
                    *done |= r.param == b".";
                    self.finished.remove(&key);
                    SentKind::NoAnswer
                } else {
                    self.results.entry(key).or_default().push_back(r.phase);
                    SentKind::Request
                }
            }
            Err(e) => match e.reply_to.clone() {
                Some(to) => self.expect(to.id, &to.op, false),
                None => SentKind::Untracked(e),
            },
        }
    }

    fn expect(&mut self, id: String, op: &str, known: bool) -> SentKind {
        self.answered.remove(&id);
        self.abandoned.remove(&id);
        let op = op.to_owned();
        self.requests.insert(id, Pending { op, known });
        SentKind::Request
    }

    /// Answers still owed: requests, and data-line streams whose final `.`
    /// was sent but not returned.
    pub(crate) fn pending(&self) -> usize {
        self.requests.len()
            + self.results.values().map(VecDeque::len).sum::<usize>()
            + self.streams.values().filter(|&&done| done).count()
    }

    /// True while a data-line stream is open without its final `.` sent:
    /// how many lines will come back is then the filter's choice.
    pub(crate) fn open_streams(&self) -> bool {
        self.streams.values().any(|&final_sent| !final_sent)
    }

    /// Gives up on every outstanding answer; returns what was missing.
    pub(crate) fn abandon(&mut self) -> Vec<String> {
        let mut missing: Vec<String> = Vec::new();
        for (id, pending) in self.requests.drain() {
            missing.push(format!("no answer to {} request {id}", pending.op));
            self.abandoned.insert(id);
        }
        for (key, phases) in self.results.drain() {
            for phase in phases {
                missing.push(format!(
                    "no filter-result for {phase} ({})",
                    filter_key_text(key)
                ));
            }
            self.abandoned.insert(filter_key_text(key));
        }
        self.streams.retain(|&key, done| {
            if *done {
                missing.push(format!(
                    "the data-lines never ended with '.' ({})",
                    filter_key_text(key)
                ));
            }
            !*done
        });
        missing.sort();
        missing
    }

    /// Checks a line written by the backend.
    pub(crate) fn received(&mut self, line: &[u8]) -> Verdict {
        match parse_answer(self.family, line) {
            Ok(Answer::Table(r)) => self.answer(r.id.to_string(), r.op.name(), line),
            Ok(Answer::Queue(r)) => self.answer(r.id.to_string(), r.op.name(), line),
            Ok(Answer::Filter(out)) => self.filter_output(out, line),
            Err(e) => self.unparsed(line, &e),
        }
    }

    fn answer(&mut self, id: String, op: &str, line: &[u8]) -> Verdict {
        let Some(pending) = self.requests.remove(&id) else {
            return Verdict::Violation(self.stray(&id, line));
        };
        self.answered.insert(id);
        if pending.op == op {
            Verdict::Answer
        } else {
            Verdict::Violation(format!(
                "answered a {} request with {op}-result: {}",
                pending.op,
                show(line)
            ))
        }
    }

    /// A line that answers nothing outstanding.
    fn stray(&mut self, id: &str, line: &[u8]) -> String {
        if self.abandoned.remove(id) {
            format!("late answer (after the timeout): {}", show(line))
        } else if self.answered.contains(id) {
            format!("duplicate answer: {}", show(line))
        } else {
            format!(
                "unsolicited answer, no such request outstanding: {}",
                show(line)
            )
        }
    }

    /// An answer the codec cannot read is garbage, unless it answers a
    /// request the codec did not know either: `OP-result|ID|error...`.
    fn unparsed(&mut self, line: &[u8], error: &ParseError) -> Verdict {
        let fields: Vec<&[u8]> = line.splitn(4, |&b| b == b'|').collect();
        if let [kind, id, status, ..] = fields[..] {
            let id = String::from_utf8_lossy(id).into_owned();
            let answers_unknown = self
                .requests
                .get(&id)
                .is_some_and(|p| !p.known && kind == format!("{}-result", p.op).as_bytes());
            if answers_unknown && status == b"error" {
                self.requests.remove(&id);
                self.answered.insert(id);
                return Verdict::Answer;
            }
        }
        Verdict::Violation(format!("answered garbage: {} ({error})", show(line)))
    }

    fn filter_output(&mut self, out: Output, line: &[u8]) -> Verdict {
        match out {
            Output::Result {
                session,
                token,
                decision,
            } => self.filter_result((session.0, token.0), &decision, line),
            Output::DataLine {
                session,
                token,
                line: data,
            } => self.filter_dataline((session.0, token.0), &data, line),
        }
    }

    fn filter_result(&mut self, key: FilterKey, decision: &Decision, line: &[u8]) -> Verdict {
        let text = filter_key_text(key);
        let phase = self.results.get_mut(&key).and_then(VecDeque::pop_front);
        let Some(phase) = phase else {
            if self.streams.contains_key(&key) {
                return Verdict::Violation(format!(
                    "filter-result during the data-line phase: {}",
                    show(line)
                ));
            }
            return Verdict::Violation(self.stray(&text, line));
        };
        if self.results.get(&key).is_some_and(VecDeque::is_empty) {
            self.results.remove(&key);
        }
        self.answered.insert(text);
        match decision {
            Decision::Junk if phase == Phase::Commit => Verdict::Violation(format!(
                "junk is not allowed at commit (OpenSMTPD exits): {}",
                show(line)
            )),
            Decision::Reject(reply) | Decision::Disconnect(reply) if !is_error_reply(reply) => {
                Verdict::Violation(format!(
                    "a reject or disconnect needs a 4xx or 5xx SMTP reply (\"550 5.7.1 text\"): {}",
                    show(line)
                ))
            }
            _ => Verdict::Answer,
        }
    }

    fn filter_dataline(&mut self, key: FilterKey, data: &[u8], line: &[u8]) -> Verdict {
        let Some(&final_sent) = self.streams.get(&key) else {
            return Verdict::Violation(if self.finished.contains(&key) {
                format!(
                    "filter-dataline after the message's final '.': {}",
                    show(line)
                )
            } else {
                format!(
                    "unsolicited filter-dataline, no data-line request: {}",
                    show(line)
                )
            });
        };
        if data != b"." {
            return Verdict::Answer;
        }
        self.streams.remove(&key);
        self.finished.insert(key);
        if final_sent {
            Verdict::Answer
        } else {
            Verdict::Violation(format!(
                "ended the message with '.' before the daemon sent its final '.': {}",
                show(line)
            ))
        }
    }
}

/// A reply OpenSMTPD accepts for reject and disconnect: three digits, the
/// first 4 or 5, then a space and text.
fn is_error_reply(reply: &str) -> bool {
    let b = reply.as_bytes();
    b.len() >= 5
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' '
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKUP: &[u8] = b"table|0.1|1731000001.000412|standard|lookup|alias|0000000a|k";

    #[test]
    fn table_answers_are_matched_once() {
        let mut t = Tracker::new(Family::Table);
        assert_eq!(t.sent(LOOKUP), SentKind::Request);
        assert_eq!(t.pending(), 1);
        assert_eq!(
            t.received(b"lookup-result|0000000a|not-found"),
            Verdict::Answer
        );
        assert_eq!(t.pending(), 0);
        let dup = t.received(b"lookup-result|0000000a|not-found");
        assert!(matches!(dup, Verdict::Violation(v) if v.starts_with("duplicate")));
        let stray = t.received(b"lookup-result|0000000b|not-found");
        assert!(matches!(stray, Verdict::Violation(v) if v.starts_with("unsolicited")));
        let garbage = t.received(b"hello");
        assert!(matches!(garbage, Verdict::Violation(v) if v.starts_with("answered garbage")));
    }

    #[test]
    fn the_answer_must_fit_the_operation() {
        let mut t = Tracker::new(Family::Table);
        t.sent(LOOKUP);
        let wrong = t.received(b"check-result|0000000a|found");
        assert!(matches!(wrong, Verdict::Violation(v) if v.contains("lookup request")));
    }

    #[test]
    fn unknown_requests_are_answered_with_errors() {
        let mut t = Tracker::new(Family::Queue);
        let line = b"queue|0.1|1731000001.000412|frobnicate|0000000000000001|x";
        assert_eq!(t.sent(line), SentKind::Request);
        assert_eq!(
            t.received(b"frobnicate-result|0000000000000001|error|unknown operation"),
            Verdict::Answer
        );
        t.sent(line);
        let ok = t.received(b"frobnicate-result|0000000000000001|ok");
        assert!(matches!(ok, Verdict::Violation(_)));
    }

    #[test]
    fn timeouts_abandon_and_late_answers_are_named() {
        let mut t = Tracker::new(Family::Table);
        t.sent(LOOKUP);
        assert_eq!(t.abandon(), vec!["no answer to lookup request 0000000a"]);
        assert_eq!(t.pending(), 0);
        let late = t.received(b"lookup-result|0000000a|not-found");
        assert!(matches!(late, Verdict::Violation(v) if v.starts_with("late answer")));
    }

    #[test]
    fn filter_results_and_data_lines() {
        let mut t = Tracker::new(Family::Filter);
        let report = b"report|0.7|1.000000|smtp-in|link-disconnect|00000000000000a1";
        assert_eq!(t.sent(report), SentKind::NoAnswer);
        t.sent(b"filter|0.7|1.000000|smtp-in|commit|00000000000000a1|00000000000000b1|");
        let junk = t.received(b"filter-result|00000000000000a1|00000000000000b1|junk");
        assert!(matches!(junk, Verdict::Violation(v) if v.contains("commit")));
        t.sent(b"filter|0.7|1.000000|smtp-in|data-line|00000000000000a1|00000000000000b1|x");
        let early = t.received(b"filter-result|00000000000000a1|00000000000000b1|proceed");
        assert!(matches!(early, Verdict::Violation(v) if v.contains("data-line phase")));
        assert_eq!(t.pending(), 0);
        t.sent(b"filter|0.7|1.000000|smtp-in|data-line|00000000000000a1|00000000000000b1|.");
        assert_eq!(t.pending(), 1);
        let line = b"filter-dataline|00000000000000a1|00000000000000b1|x";
        assert_eq!(t.received(line), Verdict::Answer);
        let end = b"filter-dataline|00000000000000a1|00000000000000b1|.";
        assert_eq!(t.received(end), Verdict::Answer);
        assert_eq!(t.pending(), 0);
        let after = t.received(line);
        assert!(matches!(after, Verdict::Violation(v) if v.contains("after the message")));
    }

    #[test]
    fn reject_replies_must_be_smtp_errors() {
        assert!(is_error_reply("550 5.7.1 No"));
        assert!(is_error_reply("421 bye"));
        assert!(!is_error_reply("250 ok"));
        assert!(!is_error_reply("55 x"));
        assert!(!is_error_reply("550-x"));
    }
}
