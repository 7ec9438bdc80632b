//! smtpctl's commands carried out: connect to the daemon, send the
//! request, print what `output.rs` makes of the answer.
//!
//! Two commands do more than one request: `monitor` asks for the counters
//! each second and prints a line each time until interrupted
//! ([`monitor`]); `show queue` reads the spool itself when no daemon
//! answers, as OpenSMTPD's smtpctl does, listing every envelope with the
//! runstate `offline` ([`show_queue`], which `mailq` also runs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::{Client, ClientError};
use super::command::Command;
use super::envelopes;
use super::output::{self, Output};
use super::protocol::{Answer, Digest, Request, Target};
use super::stats;

/// How often `monitor` prints a line.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);

/// The fs spool of the daemon whose data directory is `data_dir`, as
/// the daemon chooses it: `/var/spool/smtpd` for root with the default
/// data directory, else `DIR/spool`.
pub fn spool_path(data_dir: &Path) -> PathBuf {
    let root = super::effective_uid() == 0;
    if root && data_dir == Path::new(super::DEFAULT_DATA_DIR) {
        PathBuf::from(crate::daemon::ROOT_SPOOL)
    } else {
        data_dir.join("spool")
    }
}

/// Carries out `command` with the daemon on `socket` (`spool`: where
/// `show queue` reads when no daemon runs). `encrypt` is not the
/// daemon's: it is refused here.
pub fn execute(command: Command, socket: &Path, spool: &Path) -> Output {
    match command {
        Command::Daemon(Request::ShowQueue { target }) => queue(socket, spool, target),
        Command::Daemon(request) => ask(socket, &request),
        Command::Monitor => monitor(socket, &mut std::io::stdout().lock()),
        Command::Encrypt(_) => Output::error("encrypt needs no daemon"),
    }
}

/// `show queue` (and `mailq`): every envelope of the daemon on `socket`,
/// or of the spool `spool` when no daemon answers there.
pub fn show_queue(socket: &Path, spool: &Path) -> Output {
    queue(socket, spool, Target::All)
}

fn queue(socket: &Path, spool: &Path, target: Target) -> Output {
    let request = Request::ShowQueue { target };
    match Client::connect(socket) {
        Ok(mut client) => match client.request(&request) {
            Ok(answers) => output::render(&request, &answers),
            Err(e) => Output::error(e),
        },
        Err(ClientError::Connect { .. }) => match envelopes::offline(spool) {
            Ok(entries) => Output::out(entries.iter().map(envelopes::line).collect::<String>()),
            Err(e) => Output::error(format!("{}: {e}", spool.display())),
        },
        Err(e) => Output::error(e),
    }
}

/// Sends one request and renders its answer.
fn ask(socket: &Path, request: &Request) -> Output {
    match Client::connect(socket).and_then(|mut client| client.request(request)) {
        Ok(answers) => output::render(request, &answers),
        Err(e) => Output::error(e),
    }
}

/// `monitor`: a line of counters to `out` every [`MONITOR_INTERVAL`] until
/// the connection or the output fails (or the process is interrupted).
pub fn monitor(socket: &Path, out: &mut impl Write) -> Output {
    let mut client = match Client::connect(socket) {
        Ok(client) => client,
        Err(e) => return Output::error(e),
    };
    let mut last = Digest::default();
    for count in 0u64.. {
        let answers = match client.request(&Request::Digest) {
            Ok(answers) => answers,
            Err(e) => return Output::error(e),
        };
        let digest = match answers.as_slice() {
            [Answer::Digest(digest), Answer::Succeeded] => *digest,
            _ => return output::render(&Request::Digest, &answers),
        };
        let header = stats::monitor_header(count).unwrap_or_default();
        let line = stats::monitor_line(&digest, &last);
        let written = out
            .write_all(header.as_bytes())
            .and_then(|()| out.write_all(line.as_bytes()))
            .and_then(|()| out.flush());
        if written.is_err() {
            // The reader went away (`smtpctl monitor | head`).
            return Output::default();
        }
        last = digest;
        std::thread::sleep(MONITOR_INTERVAL);
    }
    Output::default()
}
