//! What smtpctl prints for the daemon's answer to a request, and its exit
//! status, following OpenSMTPD's smtpctl where it has the command:
//!
//! - `update table`: `command succeeded` (status 0), or `command failed:
//!   REASON` (status 1), on standard output;
//! - `show tables`: the columns of `listing.rs`;
//! - `check table`: `found` or `not found`; `lookup table`: the value, or
//!   `not found` (status 0 either way: the daemon answered);
//! - `show queue`: a line per envelope (`envelopes.rs`); `show envelope`:
//!   the file as stored; `show message`: the message with LF line ends;
//!   `show stats`: `key=value` lines (`stats.rs`); `show status`: `MDA`,
//!   `MTA` and `SMTP`, each `running` or `paused`;
//! - `schedule`, `remove`, `pause envelope`, `resume envelope`: `N
//!   envelope scheduled` (`envelopes` when N > 1), `removed`, `paused`,
//!   `resumed`; `discover`: `N envelopes discovered` (`envelope` when N
//!   is 1);
//! - `pause`, `resume` and `log`: `command succeeded`, or `command failed`
//!   (when already in that state);
//! - a refused request: `smtpctl: need root privileges` on standard
//!   error, status 1, as OpenSMTPD's smtpctl says when not run by root.

use super::protocol::{self, Answer, Request};
use super::{envelopes, listing, stats};

/// Bytes for standard output, text for standard error, and the exit
/// status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// For standard output (a message shown may hold any bytes).
    pub stdout: Vec<u8>,
    /// For standard error.
    pub stderr: String,
    /// The exit status.
    pub status: u8,
}

impl Output {
    /// `text` on standard output, status 0.
    pub fn out(text: impl Into<Vec<u8>>) -> Self {
        Self {
            stdout: text.into(),
            ..Self::default()
        }
    }

    fn failed(stdout: String) -> Self {
        Self {
            stdout: stdout.into_bytes(),
            status: 1,
            ..Self::default()
        }
    }

    /// An error of smtpctl itself, `smtpctl: ` and the message on standard
    /// error, status 1.
    pub fn error(message: impl std::fmt::Display) -> Self {
        Self {
            stderr: format!("smtpctl: {message}\n"),
            status: 1,
            ..Self::default()
        }
    }
}

/// Renders the answers to `request`, the final answer last (as
/// `Client::request` returns them).
pub fn render(request: &Request, answers: &[Answer]) -> Output {
    let Some((last, data)) = answers.split_last() else {
        return Output::error("no answer from smtpd");
    };
    match last {
        Answer::Succeeded => {}
        Answer::Failed { reason } if reason.is_empty() => {
            return Output::failed("command failed\n".to_owned())
        }
        Answer::Failed { reason } => return Output::failed(format!("command failed: {reason}\n")),
        Answer::Denied => return Output::error("need root privileges"),
        other => return unexpected(other),
    }
    match (request, data) {
        (
            Request::UpdateTable { .. }
            | Request::Pause { .. }
            | Request::Resume { .. }
            | Request::Log { .. },
            [],
        ) => Output::out("command succeeded\n"),
        (Request::ShowQueue { .. }, data) => {
            let mut text = String::new();
            for answer in data {
                match answer {
                    Answer::Envelope(entry) => text.push_str(&envelopes::line(entry)),
                    other => return unexpected(other),
                }
            }
            Output::out(text)
        }
        (Request::ShowEnvelope { .. }, data) => match bytes(data) {
            Ok(bytes) => Output::out(bytes),
            Err(out) => out,
        },
        (Request::ShowMessage { .. }, data) => match bytes(data) {
            Ok(bytes) => Output::out(lf_endings(&bytes)),
            Err(out) => out,
        },
        (Request::ShowHosts | Request::ShowRelays | Request::ShowRoutes, data) => {
            let mut text = String::new();
            for answer in data {
                match answer {
                    Answer::Line { text: line } => {
                        text.push_str(line);
                        text.push('\n');
                    }
                    other => return unexpected(other),
                }
            }
            Output::out(text)
        }
        (Request::ShowStats, data) => match stats::stat_lines(data) {
            Some(text) => Output::out(text),
            None => unexpected(&data[0]),
        },
        (Request::ShowStatus, [Answer::Status(s)]) => {
            let state = |paused: bool| if paused { "paused" } else { "running" };
            Output::out(format!(
                "MDA {}\nMTA {}\nSMTP {}\n",
                state(s.mda),
                state(s.mta),
                state(s.smtp)
            ))
        }
        (Request::Digest, [Answer::Digest(digest)]) => {
            let header = stats::monitor_header(0).unwrap_or_default();
            let line = stats::monitor_line(digest, &protocol::Digest::default());
            Output::out(format!("{header}{line}"))
        }
        (Request::Discover { .. }, [Answer::Count { count }]) => {
            let plural = if *count == 1 { "" } else { "s" };
            Output::out(format!("{count} envelope{plural} discovered\n"))
        }
        (
            Request::Schedule { .. }
            | Request::Remove { .. }
            | Request::PauseEnvelope { .. }
            | Request::ResumeEnvelope { .. },
            [Answer::Count { count }],
        ) => {
            let done = match request {
                Request::Schedule { .. } => "scheduled",
                Request::Remove { .. } => "removed",
                Request::PauseEnvelope { .. } => "paused",
                _ => "resumed",
            };
            let plural = if *count > 1 { "s" } else { "" };
            Output::out(format!("{count} envelope{plural} {done}\n"))
        }
        (Request::ShowTables, data) => {
            let mut tables = Vec::new();
            for answer in data {
                match answer {
                    Answer::Table(status) => tables.push(status.clone()),
                    other => return unexpected(other),
                }
            }
            Output::out(listing::tables(&tables))
        }
        (Request::ShowFilters, data) => {
            let mut filters = Vec::new();
            for answer in data {
                match answer {
                    Answer::Filter(status) => filters.push(status.clone()),
                    other => return unexpected(other),
                }
            }
            Output::out(listing::filters(&filters))
        }
        (Request::CheckTable { .. }, [Answer::Check { found }]) => {
            Output::out(if *found { "found\n" } else { "not found\n" })
        }
        (Request::LookupTable { .. }, [Answer::Lookup { value }]) => Output::out(match value {
            Some(value) => format!("{value}\n"),
            None => "not found\n".to_owned(),
        }),
        (_, [other, ..]) => unexpected(other),
        (_, []) => unexpected(last),
    }
}

/// The bytes of [`Answer::Data`] lines, in order.
fn bytes(data: &[Answer]) -> Result<Vec<u8>, Output> {
    let mut bytes = Vec::new();
    for answer in data {
        let Answer::Data { text } = answer else {
            return Err(unexpected(answer));
        };
        let chunk = protocol::from_text(text)
            .ok_or_else(|| Output::error("invalid data from smtpd: a character past U+00FF"))?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// `message` with each CRLF turned into LF, as OpenSMTPD stores messages.
pub fn lf_endings(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut bytes = message.iter().peekable();
    while let Some(&byte) = bytes.next() {
        if byte == b'\r' && bytes.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(byte);
    }
    out
}

fn unexpected(answer: &Answer) -> Output {
    Output::error(format!("unexpected answer from smtpd: {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{
        Agent, EvpId, PauseStatus, QueueEntry, RunState, Service, TableStatus, Target,
    };
    use super::*;

    fn update() -> Request {
        Request::UpdateTable {
            name: "aliases".into(),
        }
    }

    fn lookup() -> Request {
        Request::LookupTable {
            name: "aliases".into(),
            service: Service::Alias,
            key: "root".into(),
        }
    }

    #[test]
    fn each_answer_prints_as_smtpctl_prints_it() {
        let status = |status: u8, stdout: &str, stderr: &str| Output {
            stdout: stdout.into(),
            stderr: stderr.into(),
            status,
        };
        let check = Request::CheckTable {
            name: "t".into(),
            service: Service::Domain,
            key: "k".into(),
        };
        let cases = [
            (
                update(),
                vec![Answer::Succeeded],
                status(0, "command succeeded\n", ""),
            ),
            (
                update(),
                vec![Answer::Failed {
                    reason: "no table named \"aliases\"".into(),
                }],
                status(1, "command failed: no table named \"aliases\"\n", ""),
            ),
            (
                update(),
                vec![Answer::Denied],
                status(1, "", "smtpctl: need root privileges\n"),
            ),
            (
                lookup(),
                vec![
                    Answer::Lookup {
                        value: Some("admin, ops".into()),
                    },
                    Answer::Succeeded,
                ],
                status(0, "admin, ops\n", ""),
            ),
            (
                lookup(),
                vec![Answer::Lookup { value: None }, Answer::Succeeded],
                status(0, "not found\n", ""),
            ),
            (
                check.clone(),
                vec![Answer::Check { found: true }, Answer::Succeeded],
                status(0, "found\n", ""),
            ),
            (
                check,
                vec![Answer::Check { found: false }, Answer::Succeeded],
                status(0, "not found\n", ""),
            ),
            (
                Request::ShowTables,
                vec![
                    Answer::Table(TableStatus {
                        name: "t".into(),
                        backend: "file:/t".into(),
                        proc: None,
                    }),
                    Answer::Succeeded,
                ],
                status(
                    0,
                    "NAME  BACKEND  PID  REQUESTS  ERRORS  RESTARTS  P99\n\
                     t     file:/t  -    -         -       -         -\n",
                    "",
                ),
            ),
        ];
        for (request, answers, expected) in cases {
            assert_eq!(
                render(&request, &answers),
                expected,
                "{request:?} {answers:?}"
            );
        }
    }

    fn text(out: &Output) -> &str {
        std::str::from_utf8(&out.stdout).unwrap()
    }

    #[test]
    fn counts_print_with_openbsd_plurals() {
        let all = Target::All;
        let cases = [
            (
                Request::Schedule { target: all },
                0,
                "0 envelope scheduled\n",
            ),
            (
                Request::Schedule { target: all },
                1,
                "1 envelope scheduled\n",
            ),
            (
                Request::Schedule { target: all },
                2,
                "2 envelopes scheduled\n",
            ),
            (Request::Remove { target: all }, 3, "3 envelopes removed\n"),
            (
                Request::PauseEnvelope { target: all },
                1,
                "1 envelope paused\n",
            ),
            (
                Request::ResumeEnvelope { target: all },
                0,
                "0 envelope resumed\n",
            ),
            (
                Request::Discover {
                    evpid: EvpId(0x0a1b_2c3d_0000_0001),
                },
                0,
                "0 envelopes discovered\n",
            ),
            (
                Request::Discover {
                    evpid: EvpId(0x0a1b_2c3d_0000_0001),
                },
                1,
                "1 envelope discovered\n",
            ),
        ];
        for (request, count, expected) in cases {
            let out = render(&request, &[Answer::Count { count }, Answer::Succeeded]);
            assert_eq!((text(&out), out.status), (expected, 0), "{request:?}");
        }
    }

    #[test]
    fn pause_resume_and_log_succeed_or_fail_without_a_reason() {
        let pause = Request::Pause { agent: Agent::Mda };
        let out = render(&pause, &[Answer::Succeeded]);
        assert_eq!((text(&out), out.status), ("command succeeded\n", 0));
        let again = Answer::Failed {
            reason: String::new(),
        };
        let out = render(&pause, &[again]);
        assert_eq!((text(&out), out.status), ("command failed\n", 1));
        let log = Request::Log { verbose: true };
        let out = render(&log, &[Answer::Succeeded]);
        assert_eq!(text(&out), "command succeeded\n");
    }

    #[test]
    fn show_status_envelope_message_and_stats() {
        let status = PauseStatus {
            mda: true,
            mta: false,
            smtp: true,
        };
        let out = render(
            &Request::ShowStatus,
            &[Answer::Status(status), Answer::Succeeded],
        );
        assert_eq!(text(&out), "MDA paused\nMTA running\nSMTP paused\n");

        let evpid = EvpId(0x0a1b_2c3d_0000_0001);
        let data = |bytes: &[u8]| Answer::Data {
            text: protocol::to_text(bytes),
        };
        let envelope = render(
            &Request::ShowEnvelope { evpid },
            &[
                data(b"version: 3\n"),
                data(b"type: mda\n"),
                Answer::Succeeded,
            ],
        );
        assert_eq!(text(&envelope), "version: 3\ntype: mda\n");
        // A CR LF split between two data lines is still one line end.
        let message = render(
            &Request::ShowMessage {
                msgid: evpid.msgid(),
            },
            &[
                data(b"Subject: caf\xc3\xa9\r"),
                data(b"\n\r\nbody\rbare CR\r\n"),
                Answer::Succeeded,
            ],
        );
        assert_eq!(
            message.stdout,
            b"Subject: caf\xc3\xa9\n\nbody\rbare CR\n".to_vec()
        );
        let bad = render(
            &Request::ShowEnvelope { evpid },
            &[
                Answer::Data {
                    text: "\u{20ac}".into(),
                },
                Answer::Succeeded,
            ],
        );
        assert_eq!(bad.status, 1);
        assert!(bad.stdout.is_empty());

        let stats = render(
            &Request::ShowStats,
            &[
                Answer::Stat {
                    key: "control.session".into(),
                    value: 1,
                },
                Answer::Stat {
                    key: "uptime".into(),
                    value: 61,
                },
                Answer::Succeeded,
            ],
        );
        assert_eq!(
            text(&stats),
            "control.session=1\nuptime=61\nuptime.human=1m1s\n"
        );
    }

    #[test]
    fn show_queue_prints_a_line_per_envelope() {
        let entry = QueueEntry {
            evpid: EvpId(0x0a1b_2c3d_0000_0001),
            family: "local".into(),
            kind: "mda".into(),
            flags: vec!["suspend".into()],
            sender: "@".into(),
            rcpt: "bob@example.org".into(),
            dest: "bob@example.org".into(),
            ctime: 10,
            expire: 10,
            last_try: 12,
            retry: 1,
            runstate: RunState::Pending { delay: 8 },
            error: "421 temporary".into(),
        };
        let out = render(
            &Request::ShowQueue {
                target: Target::All,
            },
            &[
                Answer::Envelope(entry.clone()),
                Answer::Envelope(entry),
                Answer::Succeeded,
            ],
        );
        let line = "0a1b2c3d00000001|local|mda|suspend|@|bob@example.org|bob@example.org|\
                    10|10|12|1|pending|8|421 temporary\n";
        assert_eq!(text(&out), format!("{line}{line}"));
        let empty = render(
            &Request::ShowQueue {
                target: Target::All,
            },
            &[Answer::Succeeded],
        );
        assert_eq!((text(&empty), empty.status), ("", 0));
    }

    #[test]
    fn answers_that_do_not_fit_the_request_are_errors() {
        for (request, answers) in [
            (update(), vec![]),
            (update(), vec![Answer::Check { found: true }]),
            (
                update(),
                vec![Answer::Check { found: true }, Answer::Succeeded],
            ),
            (lookup(), vec![Answer::Succeeded]),
            (
                Request::ShowTables,
                vec![Answer::Lookup { value: None }, Answer::Succeeded],
            ),
            (Request::ShowStatus, vec![Answer::Succeeded]),
            (
                Request::Remove {
                    target: Target::All,
                },
                vec![Answer::Succeeded],
            ),
            (
                Request::ShowStats,
                vec![Answer::Count { count: 1 }, Answer::Succeeded],
            ),
        ] {
            let out = render(&request, &answers);
            assert_eq!(out.status, 1, "{request:?} {answers:?}");
            assert!(out.stderr.starts_with("smtpctl: "), "{out:?}");
            assert!(out.stdout.is_empty());
        }
    }
}
