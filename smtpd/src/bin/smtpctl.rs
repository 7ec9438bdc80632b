//! `smtpctl`: steer a running smtpd over its control socket.
//!
//! `smtpctl [-s socket] [--data-dir dir] command [argument ...]`, with
//! OpenSMTPD's command words (abbreviations allowed): `show tables`,
//! `update table NAME`, `show queue|envelope|message|stats|status`,
//! `schedule`, `remove`, `pause|resume envelope|mda|mta|smtp`, `discover`,
//! `log verbose|brief`, `monitor`, and ours, `check table NAME SERVICE
//! KEY` and `lookup table NAME SERVICE KEY` (`smtpd::control::cli`). The
//! socket is found as the daemon places it
//! (`smtpd::control::socket_path`); `show queue` reads the daemon's spool
//! when no daemon runs (`--data-dir`). `encrypt [STRING]` needs no
//! daemon: it prints a bcrypt hash of STRING, or of each line of standard
//! input. Exit status 0 when the command succeeded, 1 otherwise.
//!
//! Run as `sendmail`, `send-mail`, `newaliases` or `makemap` (a link to
//! this binary), it is that program (`smtpd::enqueue`); run as `mailq`, it
//! is `smtpctl show queue` of the daemon `smtpd::enqueue::Paths` finds.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use smtpd::control::cli;
use smtpd::control::command::{self, Command, CommandError};
use smtpd::control::output::Output;
use smtpd::enqueue::{self, Program};

/// Control a running smtpd.
#[derive(Debug, Parser)]
#[command(name = "smtpctl", version, after_help = after_help())]
struct Args {
    /// The control socket [default: /var/run/smtpd.sock as root, else
    /// DIR/smtpd.sock].
    #[arg(short = 's', value_name = "socket")]
    socket: Option<PathBuf>,
    /// The daemon's data directory, where its socket is when not run by
    /// root.
    #[arg(long, value_name = "dir", default_value = smtpd::control::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The command and its arguments.
    #[arg(
        value_name = "command",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    words: Vec<String>,
}

fn after_help() -> String {
    let commands: Vec<String> = command::patterns().map(|p| format!("  {p}")).collect();
    format!("Commands:\n{}", commands.join("\n"))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = argv.first().map_or("smtpctl", String::as_str);
    if let Some(status) = enqueue::run(argv0, argv.get(1..).unwrap_or_default()) {
        return ExitCode::from(u8::try_from(status).unwrap_or(1));
    }
    let args = match Program::of(argv0) {
        Program::Mailq => mailq(),
        _ => Args::parse(),
    };
    let out = run(&args);
    // Output errors (a closed pipe) change nothing the daemon did.
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    ExitCode::from(out.status)
}

/// `mailq`: `show queue` of the daemon `smtpd::enqueue::Paths` finds.
fn mailq() -> Args {
    let paths = enqueue::Paths::from_env();
    Args {
        socket: Some(paths.socket),
        data_dir: paths
            .data_dir
            .unwrap_or_else(|| smtpd::control::DEFAULT_DATA_DIR.into()),
        words: vec!["show".to_owned(), "queue".to_owned()],
    }
}

fn run(args: &Args) -> Output {
    let command = match command::parse(&args.words) {
        Ok(Command::Encrypt(password)) => return encrypt(password.as_deref()),
        Ok(command) => command,
        Err(e @ CommandError::Service(_)) => return Output::error(e),
        // OpenSMTPD prints these bare, without the program's name.
        Err(e) => {
            return Output {
                stderr: format!("{e}\n"),
                status: 1,
                ..Output::default()
            }
        }
    };
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| smtpd::control::socket_path(&args.data_dir));
    let spool = cli::spool_path(&args.data_dir);
    cli::execute(command, &socket, &spool)
}

/// `encrypt`: the hash of `password`, or of each line of standard input
/// (without its newline), one per line, each printed once made.
fn encrypt(password: Option<&str>) -> Output {
    let result = match password {
        Some(password) => print_hash(password.as_bytes()),
        None => std::io::stdin()
            .lock()
            .split(b'\n')
            .try_for_each(|line| print_hash(&line?)),
    };
    match result {
        Ok(()) => Output::default(),
        Err(e) => Output::error(e),
    }
}

fn print_hash(password: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let hash = smtpd::smtp::credentials::encrypt(password)?;
    writeln!(std::io::stdout(), "{hash}")?;
    Ok(())
}
