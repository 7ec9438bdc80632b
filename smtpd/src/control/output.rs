//! What smtpctl prints for the daemon's answer to a request, and its exit
//! status, following OpenSMTPD's smtpctl where it has the command:
//!
//! - `update table`: `command succeeded` (status 0), or `command failed:
//!   REASON` (status 1), on standard output;
//! - `show tables`: the columns of `listing.rs`;
//! - `check table`: `found` or `not found`; `lookup table`: the value, or
//!   `not found` (status 0 either way: the daemon answered);
//! - a refused request: `smtpctl: need root privileges` on standard
//!   error, status 1, as OpenSMTPD's smtpctl says when not run by root.

use super::listing;
use super::protocol::{Answer, Request};

/// Text for standard output and standard error, and the exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// For standard output.
    pub stdout: String,
    /// For standard error.
    pub stderr: String,
    /// The exit status.
    pub status: u8,
}

impl Output {
    fn out(text: String) -> Self {
        Self {
            stdout: text,
            ..Self::default()
        }
    }

    fn failed(stdout: String) -> Self {
        Self {
            stdout,
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
        Answer::Failed { reason } => return Output::failed(format!("command failed: {reason}\n")),
        Answer::Denied => return Output::error("need root privileges"),
        other => return unexpected(other),
    }
    match (request, data) {
        (Request::UpdateTable { .. }, []) => Output::out("command succeeded\n".to_owned()),
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
        (Request::CheckTable { .. }, [Answer::Check { found }]) => {
            Output::out(if *found { "found\n" } else { "not found\n" }.to_owned())
        }
        (Request::LookupTable { .. }, [Answer::Lookup { value }]) => Output::out(match value {
            Some(value) => format!("{value}\n"),
            None => "not found\n".to_owned(),
        }),
        (_, [other, ..]) => unexpected(other),
        (_, []) => unexpected(last),
    }
}

fn unexpected(answer: &Answer) -> Output {
    Output::error(format!("unexpected answer from smtpd: {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{Service, TableStatus};
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
        ] {
            let out = render(&request, &answers);
            assert_eq!(out.status, 1, "{request:?} {answers:?}");
            assert!(out.stderr.starts_with("smtpctl: "), "{out:?}");
            assert!(out.stdout.is_empty());
        }
    }
}
