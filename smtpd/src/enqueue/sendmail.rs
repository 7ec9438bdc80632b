//! `sendmail` (also `send-mail`): one message from standard input into the
//! queue, as OpenSMTPD's smtpctl does under that name.
//!
//! The arguments are read (`args.rs`) and the message prepared
//! (`submission.rs`) before anything is sent, so a bad command line or a
//! bad header fails at once. Then the daemon is asked for a local SMTP
//! session over its control socket (`crate::control::enqueue`) and the
//! dialogue runs (`dialogue.rs`); `-v` shows it on standard output. When
//! no daemon answers on the socket, the submission goes to the offline
//! queue (`offline.rs`) and the status is `EX_TEMPFAIL`, as OpenSMTPD's;
//! the daemon sends it when it starts.
//!
//! Exit statuses (sysexits): 0 once the daemon accepted the message;
//! 1 for a bad command line or header; `EX_SOFTWARE` (70) without
//! recipients, for `-q`, or for a refusal OpenSMTPD gives it for;
//! `EX_NOUSER` (67) when a recipient is refused for good; `EX_DATAERR`
//! (65) for an address with a control character; `EX_TEMPFAIL` (75) for a
//! temporary refusal, a broken connection, or an offline submission
//! (saved or not, the message says which).

use std::io::{Read, Write};

use super::account::Account;
use super::args::{self, Mode, Options};
use super::dialogue;
use super::newaliases::newaliases;
use super::offline;
use super::paths::Paths;
use super::submission;
use super::{EX_SOFTWARE, EX_TEMPFAIL, EX_UNAVAILABLE};
use crate::control::client::{Client, ClientError};
use crate::control::enqueue::open_session;

/// What sendmail takes from its surroundings.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The program's name, for messages.
    pub program: String,
    /// Where the daemon is.
    pub paths: Paths,
    /// The submitting user.
    pub account: Account,
    /// The host name bare addresses get.
    pub host: String,
    /// The `Date:` header's text, if one is added.
    pub date: String,
}

/// Standard input, output and error.
pub struct Stdio<'a> {
    /// The message.
    pub input: &'a mut dyn Read,
    /// The `-v` transcript.
    pub output: &'a mut dyn Write,
    /// Errors and notices.
    pub error: &'a mut dyn Write,
}

/// What ends a run before the message is queued: the message printed
/// after the program's name, and the exit status.
struct Exit {
    message: String,
    status: i32,
}

fn exit(message: impl std::fmt::Display, status: i32) -> Exit {
    Exit {
        message: message.to_string(),
        status,
    }
}

/// Runs sendmail with `args` (without the program's name); returns the
/// exit status.
pub fn sendmail(env: &Environment, args: &[String], stdio: Stdio<'_>) -> i32 {
    let program = env.program.as_str();
    let Stdio {
        input,
        output,
        error,
    } = stdio;
    let result = match args::parse(args) {
        Ok(Mode::Send(options)) => send(env, args, &options, input, output),
        Ok(Mode::Newaliases) => return newaliases("newaliases", &[], &env.paths, output, error),
        Ok(Mode::RunQueue) => Err(exit(
            "-q is not supported: smtpd schedules its queue itself",
            EX_SOFTWARE,
        )),
        Err(e) => {
            let _ = writeln!(error, "{program}: {e}");
            let _ = writeln!(error, "usage: {program} [-tv] [-f from] [-F name] to ...");
            return 1;
        }
    };
    match result {
        Ok(()) => 0,
        Err(Exit { message, status }) => {
            let _ = writeln!(error, "{program}: {message}");
            status
        }
    }
}

/// Reads, prepares and sends the message, or saves it offline.
fn send(
    env: &Environment,
    args: &[String],
    options: &Options,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<(), Exit> {
    let mut raw = Vec::new();
    input
        .read_to_end(&mut raw)
        .map_err(|e| exit(format!("read error: {e}"), EX_UNAVAILABLE))?;
    let submission = submission::prepare(options, &raw, &env.account, &env.host, &env.date)
        .map_err(|e| exit(&e, e.exit_status()))?;
    let client = match Client::connect(&env.paths.socket) {
        Ok(client) => client,
        Err(ClientError::Connect { .. }) => return Err(save_offline(env, args, &raw)),
        Err(e) => return Err(exit(e, EX_TEMPFAIL)),
    };
    let stream = open_session(client).map_err(|e| exit(e, EX_TEMPFAIL))?;
    let transcript = options.verbose.then_some(output);
    dialogue::submit(
        stream.reader,
        stream.writer,
        &submission.envelope,
        &submission.data,
        transcript,
    )
    .map_err(|e| exit(&e, e.exit_status()))
}

/// The daemon is not running: the submission goes to the offline queue
/// (`EX_TEMPFAIL` either way; the message says whether it was saved).
fn save_offline(env: &Environment, args: &[String], input: &[u8]) -> Exit {
    let socket = env.paths.socket.display();
    let message = match offline::save(&env.paths.offline, args, input) {
        Ok(path) => format!(
            "smtpd is not running ({socket}): message saved as {}, to be sent when smtpd starts",
            path.display()
        ),
        Err(e) => format!("smtpd is not running ({socket}), and the message is not saved: {e}"),
    };
    exit(message, EX_TEMPFAIL)
}
