//! `smtpd`: the mail server daemon.
//!
//! Command line as OpenSMTPD's: `smtpd [-dnv] [-D macro=value] [-f file]`,
//! plus `--data-dir`, `--control-socket`, `--user`, `--backends-dir`, and
//! the resolver's `--resolv-conf` and `--nameserver`, and `--mailbox-dir`
//! (where `mbox` deliveries go, `/var/mail`), and `--queue-key-file` (the
//! queue encryption key, also taken from `SMTPD_QUEUE_KEY`, read before
//! detaching: `smtpd::queue::layers::key`), `--queue-lease` and
//! `--queue-rewalk` (a queue shared with other daemons:
//! `smtpd::scheduler::lease`). Called as `smtpd
//! mail.maildir|mail.local|mail.mboxfile ...` it is the delivery helper
//! the daemon runs as a mailbox's owner (`smtpd::delivery::helper`).
//! The configuration is loaded and checked first; every error is printed
//! and the status is 1. With `-n` that is all (`configuration OK`, status
//! 0). Otherwise `smtpd::daemon::run` starts the tables, the control
//! socket, the queue and the SMTP listeners and serves until SIGTERM or
//! SIGINT (status 0), or fails to start (status 1). With `-d` it stays in
//! the foreground and logs to standard error; without, it detaches
//! (`smtpd::daemon::detach`: the command returns once the daemon listens,
//! with status 1 and the error if it could not start), logs to syslog and
//! writes a pid file (`--pidfile`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use smtpd::config::{self, Config, LoadOptions};
use smtpd::{daemon, dns, log, privsep};

/// OpenSMTPD-compatible mail server.
#[derive(Debug, Parser)]
#[command(name = "smtpd", version, about)]
struct Args {
    /// Do not daemonize; log to standard error.
    #[arg(short = 'd')]
    debug: bool,
    /// Check the configuration only.
    #[arg(short = 'n')]
    check_only: bool,
    /// More verbose logging (may be repeated); warns about unused macros.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Define a macro that the configuration cannot redefine.
    #[arg(short = 'D', value_name = "macro=value", value_parser = config::parse_macro_definition)]
    define: Vec<(String, String)>,
    /// The configuration file.
    #[arg(
        short = 'f',
        value_name = "file",
        default_value = "/etc/mail/smtpd.conf"
    )]
    file: PathBuf,
    /// Where `table-NAME` backend programs live.
    #[arg(long, value_name = "dir", default_value = config::DEFAULT_BACKENDS_DIR)]
    backends_dir: PathBuf,
    /// The data directory when not run by root (created 0700 if missing).
    #[arg(long, value_name = "dir", default_value = smtpd::control::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The control socket [default: /var/run/smtpd.sock as root, else
    /// DIR/smtpd.sock in the data directory].
    #[arg(long, value_name = "path")]
    control_socket: Option<PathBuf>,
    /// The user backend children run as [default: _smtpd as root, else
    /// this user].
    #[arg(long, value_name = "name")]
    user: Option<String>,
    /// The resolver's configuration (resolv.conf format) [default:
    /// /etc/resolv.conf unless --nameserver is given].
    #[arg(long, value_name = "path")]
    resolv_conf: Option<PathBuf>,
    /// A nameserver to ask instead of resolv.conf's (repeatable; port 53
    /// unless given, `[IPv6]:PORT`).
    #[arg(long = "nameserver", value_name = "IP[:PORT]", value_parser = dns::parse_nameserver)]
    nameservers: Vec<SocketAddr>,
    /// The port relaying connects to on MX hosts (tests run theirs on
    /// other ports).
    #[arg(long, value_name = "port", default_value_t = 25)]
    mx_port: u16,
    /// Every wait of a relay session (connect, greeting, each reply, TLS,
    /// each block of data), in seconds, instead of OpenSMTPD's 300; not an
    /// smtpd.conf option (7.8 has none): for tests with peers that stall.
    #[arg(long, value_name = "seconds", value_parser = clap::value_parser!(u64).range(1..=3600))]
    mta_timeout: Option<u64>,
    /// How long a filter process may take to answer a request, in seconds;
    /// past it the session gets a temporary failure.
    #[arg(long, value_name = "seconds", default_value_t = smtpd::filter::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    filter_timeout: u64,
    /// Where `mbox` deliveries append (`DIR/USER`).
    #[arg(long, value_name = "dir", default_value = smtpd::delivery::local::DEFAULT_MAILBOX_DIR)]
    mailbox_dir: PathBuf,
    /// The pid file [default: /var/run/smtpd.pid as root, else
    /// DIR/smtpd.pid in the data directory; none with -d unless given].
    #[arg(long, value_name = "path")]
    pidfile: Option<PathBuf>,
    /// The queue encryption key (`queue encryption`): the first line of
    /// this file, which other users may not read; else the
    /// SMTPD_QUEUE_KEY environment variable, else smtpd.conf's form.
    #[arg(long, value_name = "path")]
    queue_key_file: Option<PathBuf>,
    /// The lease on an envelope claimed from a queue shared with other
    /// daemons (a queue backend that registered `lease`), in seconds;
    /// renewed every third of it during a delivery.
    #[arg(long, value_name = "seconds", default_value_t = smtpd::scheduler::lease::DEFAULT_LEASE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    queue_lease: u64,
    /// How often a shared queue is walked for mail other daemons accepted
    /// and envelopes whose lease ran out, in seconds.
    #[arg(long, value_name = "seconds", default_value_t = smtpd::scheduler::lease::DEFAULT_REWALK.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    queue_rewalk: u64,
}

fn main() -> ExitCode {
    // The delivery helpers the daemon runs as a mailbox's owner when root
    // (`smtpd mail.maildir ...`).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(status) = smtpd::delivery::helper::main(&argv) {
        return status;
    }
    let args = Args::parse();
    init_logging(&args);
    let opts = LoadOptions {
        macros: args.define.clone(),
        backends_dir: args.backends_dir.clone(),
        verbose: args.verbose > 0,
    };
    let loaded = match Config::load(&args.file, &opts) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    if args.check_only {
        eprintln!("configuration OK");
        return ExitCode::SUCCESS;
    }
    // The key is read now, while standard input and the terminal are
    // still this process's.
    let queue_key = match smtpd::queue::layers::resolve(
        loaded.config.queue.encryption.as_ref(),
        args.queue_key_file.as_deref(),
        std::env::var_os(smtpd::queue::layers::KEY_ENV),
    ) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("smtpd: {e}");
            return ExitCode::from(1);
        }
    };
    // Without -d: into the background now, before any thread exists; this
    // process waits for the daemon to start and exits with its status.
    let mut ready = None;
    if !args.debug {
        match daemon::detach() {
            Ok(daemon::Detached::Parent(status)) => return ExitCode::from(status),
            Ok(daemon::Detached::Daemon(daemon)) => ready = Some(daemon),
            Err(e) => {
                eprintln!("fatal: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let pidfile = match (args.pidfile, args.debug) {
        (Some(path), _) => Some(path),
        (None, false) => Some(daemon::pidfile_path(&args.data_dir)),
        (None, true) => None,
    };
    // As root, the privileged helper is forked now, before any thread
    // exists; the daemon drops to the unprivileged user once it has bound
    // its sockets (smtpd::privsep).
    let privsep = match start_privsep(args.user.as_deref()) {
        Ok(privsep) => privsep,
        Err(e) => {
            match ready {
                Some(ready) => ready.failed(&e.to_string()),
                None => eprintln!("smtpd: {e}"),
            }
            return ExitCode::from(1);
        }
    };
    let options = daemon::Options {
        data_dir: args.data_dir,
        control_socket: args.control_socket,
        user: args.user,
        backends_dir: args.backends_dir,
        resolv_conf: args.resolv_conf,
        nameservers: args.nameservers,
        mx_port: args.mx_port,
        mta_timeout: args.mta_timeout.map(std::time::Duration::from_secs),
        mailbox_dir: args.mailbox_dir,
        privsep,
        pidfile,
        queue_key,
        filter_timeout: std::time::Duration::from_secs(args.filter_timeout),
        sharing: smtpd::scheduler::Sharing::new(
            std::time::Duration::from_secs(args.queue_lease),
            std::time::Duration::from_secs(args.queue_rewalk),
        ),
    };
    // One event-loop thread, as OpenSMTPD's processes each have, plus tokio's
    // blocking pool for disk work: on small machines a second worker only
    // competes for CPU with the backend children the daemon talks to
    // (`cargo bench -p smtpd --bench table_lookups` compares both).
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| {
            let started = || {
                if let Some(ready) = ready.take() {
                    ready.started();
                }
            };
            rt.block_on(daemon::run(&loaded.config, &options, started))
                .map_err(|e| e.to_string())
        });
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e}");
            if let Some(ready) = ready {
                ready.failed(&e);
            }
            ExitCode::from(1)
        }
    }
}

/// As root: the unprivileged identity (`--user`, else `_smtpd`) and the
/// privileged helper, forked now; `None` when not root.
fn start_privsep(user: Option<&str>) -> std::io::Result<Option<daemon::Privsep>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let identity = privsep::Identity::lookup(user.unwrap_or(daemon::CHILD_USER))?;
    if identity.uid == 0 {
        return Err(std::io::Error::other(
            "the unprivileged user may not be root",
        ));
    }
    let client = privsep::start(identity)?;
    Ok(Some(daemon::Privsep { client, identity }))
}

/// Logs what OpenSMTPD logs (info) when serving, warnings only when
/// checking (`-n`); `-v` adds debug, `-vv` trace; `RUST_LOG` overrides.
/// With `-d` or `-n` to standard error (with `-d`, lines name their module
/// and are coloured on a terminal), else to syslog (`smtpd::log`).
fn init_logging(args: &Args) {
    let level = match (args.check_only, args.verbose) {
        (_, 2..) => "trace",
        (_, 1) => "debug",
        (true, 0) => "warn",
        (false, 0) => "info",
    };
    let output = if args.debug || args.check_only {
        log::Output::Stderr { debug: args.debug }
    } else {
        log::Output::Syslog
    };
    log::init(output, level);
}
