//! Proc-exec tables over real processes.
//!
//! The example table backends of the Rust SDK, the Python SDK and plain
//! shell (protocol-spec/examples/table-shell.sh, through OpenSMTPD's
//! `shell:/path` form) serve every service of the standard fixture through
//! `table::build`. Small misbehaving backends in `tests/children/` are
//! killed mid-run, answer garbage, answer late, hang, never register, speak
//! a protocol version from the future or stop reading: the daemon's side
//! logs it, fails the requests concerned temporarily, restarts what must be
//! restarted, and goes on.
//!
//! Logs are captured (`wait_for_log`) to check what the daemon says. Time
//! is paused only around waits that must end by a timeout, and resumed
//! before waiting on a real process.

// A test harness: it spawns processes of its own, and its helpers panic
// on anything unexpected, as the tests do.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::join_all;
use smtpd::config::{Config, LoadOptions};
use smtpd::proc::{self, Spec, StartError, State};
use smtpd::table::{
    self, BuildFailure, BuildOptions, Error, ProcExecTable, Service, Table, Tables,
    TABLE_REQUEST_TIMEOUT,
};

// ------------------------------------------------------------------ paths

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workspace() -> PathBuf {
    crate_dir().parent().unwrap().to_path_buf()
}

/// The misbehaving backends, and `table-shell` for the `shell:` form.
fn children() -> PathBuf {
    crate_dir().join("tests/children")
}

fn fixture() -> PathBuf {
    workspace().join("protocol-spec/vectors/fixtures/standard.table")
}

/// The Rust SDK's `table_static` example of this build's profile, built
/// when missing.
fn rust_example() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // target/PROFILE/deps/proc_tables-HASH
        let exe = std::env::current_exe().unwrap();
        let profile = exe.parent().unwrap().parent().unwrap();
        let example = profile.join("examples/table_static");
        if !example.exists() {
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "smtpd-sdk", "--example", "table_static"]);
            if profile.file_name().is_some_and(|p| p == "release") {
                cargo.arg("--release");
            }
            let status = cargo.current_dir(workspace()).status().unwrap();
            assert!(status.success(), "building the table_static example failed");
        }
        example
    })
}

// ------------------------------------------------------------------- logs

/// Every log line of the test binary, and a counter that moves with them.
struct Logs {
    lines: Mutex<Vec<String>>,
    count: tokio::sync::watch::Sender<usize>,
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    static INSTALL: OnceLock<()> = OnceLock::new();
    let logs = LOGS.get_or_init(|| Logs {
        lines: Mutex::new(Vec::new()),
        count: tokio::sync::watch::channel(0).0,
    });
    INSTALL.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| Capture(Vec::new()))
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    logs
}

/// Collects one event's text and files it when dropped.
struct Capture(Vec<u8>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0).into_owned();
        eprint!("{text}");
        let logs = logs();
        logs.lines
            .lock()
            .unwrap()
            .extend(text.lines().map(str::to_owned));
        logs.count.send_modify(|n| *n += 1);
    }
}

/// Waits for a log line holding every one of `needles`, and returns it.
async fn wait_for_log(needles: &[&str]) -> String {
    let logs = logs();
    let mut changed = logs.count.subscribe();
    let find = || {
        logs.lines
            .lock()
            .unwrap()
            .iter()
            .find(|line| needles.iter().all(|n| line.contains(n)))
            .cloned()
    };
    let wait = async {
        loop {
            if let Some(line) = find() {
                return line;
            }
            changed.changed().await.unwrap();
        }
    };
    // A guard against a hang, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("no log line with {needles:?}"))
}

// ---------------------------------------------------------------- helpers

fn config(text: &str) -> Config {
    let text = format!("{text}\naction a mbox\nmatch for any action a\n");
    let options = LoadOptions {
        backends_dir: children(),
        ..LoadOptions::default()
    };
    Config::parse_str("smtpd.conf", &text, &options)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

fn build_options() -> BuildOptions {
    BuildOptions {
        backends_dir: children(),
        ..BuildOptions::default()
    }
}

async fn build(config: &Config, options: &BuildOptions) -> Tables {
    match table::build(config, options).await {
        Ok(tables) => tables,
        Err(e) => panic!("{e}"),
    }
}

/// A table served by `tests/children/table-quirks.sh`, named `name`.
async fn quirks(name: &str) -> Arc<ProcExecTable> {
    logs();
    let spec = Spec::new(name, "table-quirks.sh", children(), TABLE_REQUEST_TIMEOUT);
    match ProcExecTable::start(name, "proc-exec \"table-quirks.sh\"", spec).await {
        Ok(table) => Arc::new(table),
        Err(e) => panic!("{e}"),
    }
}

fn pid(table: &dyn Table) -> u32 {
    table.proc_stats().unwrap().pid.unwrap()
}

async fn wait_state(table: &ProcExecTable, mut wanted: impl FnMut(&State) -> bool) -> State {
    let mut state = table.supervisor().state();
    let wait = state.wait_for(|s| wanted(s));
    let state = tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the backend never reached the state wanted")
        .unwrap();
    state.clone()
}

async fn lookup(table: &dyn Table, key: &str) -> Option<String> {
    table
        .lookup(Service::Alias, key)
        .await
        .unwrap_or_else(|e| panic!("lookup {key}: {e}"))
}

// ------------------------------------------------------ the standard fixture

/// Checks a table loaded with the standard fixture, for every service.
async fn serves_the_standard_fixture(t: &dyn Table) {
    let name = t.name().to_owned();
    let mut registered = t.registered_services().unwrap();
    registered.sort();
    assert_eq!(registered, Service::ALL, "{name}");
    for service in Service::ALL {
        let found = t.lookup(service, "postmaster").await.unwrap();
        assert_eq!(found.as_deref(), Some("root"), "{name} {service}");
        assert!(t.check(service, "abuse").await.unwrap(), "{name} {service}");
        assert!(
            !t.check(service, "nobody-here").await.unwrap(),
            "{name} {service}"
        );
        assert_eq!(t.lookup(service, "nobody-here").await.unwrap(), None);
    }
    for (key, value) in [
        ("PostMaster", "root"),
        ("pipe", "left|middle|right"),
        ("spaced", "value with  two spaces"),
        ("utf8", "café über ☃"),
        ("[2001:db8::1]", "mx6.example.org"),
        ("carol@example.org", "carol@example.org, @alias.example.org"),
    ] {
        assert_eq!(lookup(t, key).await.as_deref(), Some(value), "{name} {key}");
    }
    assert_eq!(lookup(t, "big").await, Some("a".repeat(65_536)), "{name}");

    // Many requests in flight at once, answered in any order.
    let keys = ["postmaster", "bob", "nobody-here", "192.0.2.1"];
    let answers = join_all((0..200).map(|i| t.lookup(Service::Userinfo, keys[i % 4]))).await;
    for (i, answer) in answers.into_iter().enumerate() {
        let expected = ["root", "1001:1001:/home/bob", "", "mx.example.org"][i % 4];
        assert_eq!(answer.unwrap().unwrap_or_default(), expected, "{name}");
    }

    let fetched = t.fetch(Service::Source).await.unwrap();
    assert_eq!(fetched.as_deref(), Some("root"), "{name}");
    let fetched = t.fetch(Service::Relayhost).await.unwrap();
    assert_eq!(fetched.as_deref(), Some("root, security@example.net"));
    t.update().await.unwrap();

    // Keys that cannot be sent are refused without sending anything.
    let sent = t.proc_stats().unwrap().requests;
    let long = "k".repeat(1024);
    for key in [long.as_str(), "a\r\nb", "a\nb", "a\rb"] {
        let refused = t.check(Service::Mailaddr, key).await;
        assert!(matches!(refused, Err(Error::InvalidKey { .. })), "{key:?}");
    }
    assert_eq!(t.proc_stats().unwrap().requests, sent);
    assert_eq!(lookup(t, &"k".repeat(1023)).await, None, "{name}");

    let stats = t.proc_stats().unwrap();
    assert!(stats.pid.is_some(), "{name}");
    assert_eq!((stats.errors, stats.restarts), (0, 0), "{name}");
    assert!(stats.requests > 250, "{name}: {stats:?}");
    assert!(stats.p99_micros.is_some(), "{name}");
}

#[tokio::test]
async fn sdk_and_shell_backends_serve_every_service() {
    logs();
    let fixture = fixture();
    let fixture = fixture.display();
    let python = workspace().join("sdk-python/src");
    let config = config(&format!(
        r#"
table rust proc-exec "{rust} {fixture}"
table python proc-exec "/usr/bin/env PYTHONPATH={python} python3 -m smtpd_sdk.examples.table_static {fixture}"
table shell shell:{fixture}
"#,
        rust = rust_example().display(),
        python = python.display(),
    ));
    let tables = build(&config, &build_options()).await;
    assert_eq!(tables.iter().count(), config.tables.len());
    for name in ["rust", "python", "shell"] {
        let table = tables.by_name(name).unwrap();
        serves_the_standard_fixture(table.as_ref()).await;
    }
    let shell = tables.by_name("shell").unwrap();
    assert_eq!(shell.backend(), format!("shell:{fixture}"));
    assert!(tables
        .by_name("rust")
        .unwrap()
        .backend()
        .starts_with("proc-exec \""));
    // The builtin tables are there too, served by the daemon itself.
    let localhost = tables.get(smtpd::config::TableId::LOCALHOST);
    assert!(localhost.proc_stats().is_none());

    tables.shutdown().await;
    for name in ["rust", "python", "shell"] {
        wait_for_log(&[&format!("backend {name} stopped (exit status: 0)")]).await;
        let table = tables.by_name(name).unwrap();
        assert_eq!(table.proc_stats().unwrap().pid, None);
        let refused = table.lookup(Service::Alias, "postmaster").await;
        assert!(matches!(refused, Err(Error::Unavailable { .. })), "{name}");
    }
}

// ----------------------------------------------------------- misbehaviour

#[tokio::test]
async fn a_killed_child_fails_its_requests_and_is_restarted() {
    let t = quirks("killed").await;
    assert_eq!(
        lookup(t.as_ref(), "alice").await.as_deref(),
        Some("value-of-alice")
    );
    let first = pid(t.as_ref());

    let held = tokio::spawn({
        let t = Arc::clone(&t);
        async move { t.lookup(Service::Alias, "hold").await }
    });
    wait_for_log(&["killed: table-quirks: holding"]).await;
    // SAFETY: a plain signal to the child this test started.
    unsafe { libc::kill(first as libc::pid_t, libc::SIGKILL) };

    let failed = held.await.unwrap().unwrap_err();
    assert!(
        matches!(&failed, Error::Unavailable { reason, .. } if reason.contains("exited")),
        "{failed}"
    );
    wait_state(&t, |s| matches!(s, State::Down { .. })).await;
    // While it is down, requests fail at once, without waiting for anything.
    tokio::time::pause();
    let refused = t.lookup(Service::Alias, "alice").await;
    tokio::time::resume();
    assert!(
        matches!(refused, Err(Error::Unavailable { .. })),
        "{refused:?}"
    );

    wait_state(&t, |s| matches!(s, State::Running { pid } if *pid != first)).await;
    assert_eq!(
        lookup(t.as_ref(), "alice").await.as_deref(),
        Some("value-of-alice")
    );
    wait_for_log(&["backend killed exited (signal: 9"]).await;
    let stats = t.proc_stats().unwrap();
    assert_eq!(stats.restarts, 1);
    assert_eq!(stats.errors, 2);
    assert_ne!(stats.pid, Some(first));
}

#[tokio::test]
async fn garbage_is_logged_and_fails_only_the_request_it_names() {
    let t = quirks("garbage").await;
    wait_for_log(&[
        "backend garbage: registration of an unknown service",
        "frobnicate",
    ])
    .await;
    let first = pid(t.as_ref());

    let failed = t.lookup(Service::Alias, "garbage").await.unwrap_err();
    assert!(
        matches!(&failed, Error::Backend { message: Some(m), .. } if m.contains("malformed answer")),
        "{failed}"
    );
    wait_for_log(&["bad line from backend garbage: ", "-result|", "|ok"]).await;

    // A line naming no request is logged and dropped.
    assert_eq!(
        lookup(t.as_ref(), "nonsense").await.as_deref(),
        Some("after-nonsense")
    );
    wait_for_log(&["bad line from backend garbage: ", "what is this"]).await;
    // So is a second answer to the same request.
    assert_eq!(lookup(t.as_ref(), "twice").await.as_deref(), Some("first"));
    wait_for_log(&[
        "backend garbage: answer to no request in flight",
        "found|second",
    ])
    .await;
    // And a line over 1 MiB.
    assert_eq!(
        lookup(t.as_ref(), "long").await.as_deref(),
        Some("after-long")
    );
    wait_for_log(&["bad line from backend garbage: a line longer than 1 MiB"]).await;

    assert_eq!(
        lookup(t.as_ref(), "bob").await.as_deref(),
        Some("value-of-bob")
    );
    let stats = t.proc_stats().unwrap();
    assert_eq!(stats.pid, Some(first), "not restarted");
    assert_eq!((stats.restarts, stats.errors), (0, 1));
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_dropped_when_it_comes() {
    let t = quirks("slow").await;
    let first = pid(t.as_ref());
    let mut slow = t.lookup(Service::Alias, "slow");
    // Sent now; the backend answers it a second later, in the background.
    assert!(futures::poll!(&mut slow).is_pending());
    assert_eq!(
        lookup(t.as_ref(), "alice").await.as_deref(),
        Some("value-of-alice")
    );

    tokio::time::pause();
    let late = slow.await;
    tokio::time::resume();
    assert!(
        matches!(late, Err(Error::Timeout { seconds: 30, .. })),
        "{late:?}"
    );
    wait_for_log(&["backend slow: answer to no request in flight", "found|late"]).await;

    assert_eq!(
        lookup(t.as_ref(), "bob").await.as_deref(),
        Some("value-of-bob")
    );
    let stats = t.proc_stats().unwrap();
    assert_eq!(stats.pid, Some(first), "it answered others: not hung");
    assert_eq!((stats.restarts, stats.errors), (0, 1));
}

#[tokio::test]
async fn a_silent_child_is_hung_and_restarted() {
    let t = quirks("hung").await;
    let first = pid(t.as_ref());
    tokio::time::pause();
    let silent = t.lookup(Service::Alias, "hold").await;
    tokio::time::resume();
    assert!(matches!(silent, Err(Error::Timeout { .. })), "{silent:?}");
    wait_for_log(&["backend hung hung: no output for 30 s"]).await;
    wait_state(&t, |s| matches!(s, State::Running { pid } if *pid != first)).await;
    assert_eq!(
        lookup(t.as_ref(), "alice").await.as_deref(),
        Some("value-of-alice")
    );
    assert_eq!(t.proc_stats().unwrap().restarts, 1);
}

#[tokio::test]
async fn a_child_that_does_not_read_gets_bounded_buffering() {
    logs();
    let mut spec = Spec::new("deaf", "table-deaf.sh", children(), TABLE_REQUEST_TIMEOUT);
    spec.max_buffered = 64 * 1024;
    let t = match ProcExecTable::start("deaf", "proc-exec \"table-deaf.sh\"", spec).await {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let key = "k".repeat(1000);
    let lookups: Vec<_> = (0..400).map(|_| t.lookup(Service::Alias, &key)).collect();
    tokio::time::pause();
    let results = join_all(lookups).await;
    tokio::time::resume();
    let overloaded = results
        .iter()
        .filter(|r| {
            matches!(r, Err(Error::Unavailable { reason, .. })
                if reason.contains("65536 bytes of requests already wait"))
        })
        .count();
    let timed_out = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Timeout { .. })))
        .count();
    assert!(overloaded > 0, "nothing refused");
    assert!(timed_out > 0, "nothing accepted");
    assert_eq!(overloaded + timed_out, 400);
    assert_eq!(t.proc_stats().unwrap().errors, 400);
}

// ---------------------------------------------------------------- start-up

#[tokio::test]
async fn an_unsupported_version_is_a_clear_start_up_error() {
    logs();
    let config = config(r#"table future proc-exec "table-future.sh""#);
    let Err(error) = table::build(&config, &build_options()).await else {
        panic!("a backend from the future started");
    };
    assert_eq!(error.failures.len(), 1);
    match &error.failures[0] {
        BuildFailure::Start {
            table,
            error: StartError::UnsupportedVersion { backend, line, .. },
        } => {
            assert_eq!((table.as_str(), backend.as_str()), ("future", "future"));
            assert!(
                line.contains("unsupported protocol version 0.1 (this backend speaks 0.2)"),
                "{line}"
            );
        }
        other => panic!("{other}"),
    }
    let text = error.to_string();
    assert!(text.starts_with("table future: backend future does not speak protocol 0.1"));
    assert!(text.contains("this backend speaks 0.2"), "{text}");
}

#[tokio::test]
async fn a_child_that_never_registers_times_out() {
    logs();
    tokio::time::pause();
    let spec = Spec::new("mute", "table-mute.sh", children(), TABLE_REQUEST_TIMEOUT);
    let error = ProcExecTable::start("mute", "proc-exec \"table-mute.sh\"", spec)
        .await
        .err()
        .expect("a backend that never registers started");
    match &error {
        StartError::HandshakeTimeout { backend, after, .. } => {
            assert_eq!(backend, "mute");
            assert_eq!(*after, proc::HANDSHAKE_TIMEOUT);
        }
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains("no register|ready within 60 s"));
}

#[tokio::test]
async fn an_unknown_user_is_a_start_up_error() {
    logs();
    let mut spec = Spec::new(
        "nouser",
        "table-quirks.sh",
        children(),
        TABLE_REQUEST_TIMEOUT,
    );
    spec.user = Some("no-such-user-for-smtpd".into());
    let error = ProcExecTable::start("nouser", "", spec)
        .await
        .err()
        .expect("started as a user that does not exist");
    assert!(
        matches!(&error, StartError::NoSuchUser { backend, user }
            if backend == "nouser" && user == "no-such-user-for-smtpd"),
        "{error}"
    );
}

/// As root, children run as the user the daemon passes (`_smtpd`, which CI
/// creates); otherwise no change of user is asked for and they run as us.
#[tokio::test]
async fn children_run_as_the_configured_user() {
    logs();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let (user, uid) = if euid == 0 {
        let id = std::process::Command::new("id")
            .args(["-u", "_smtpd"])
            .output()
            .unwrap();
        assert!(
            id.status.success(),
            "no _smtpd user: create it as .ci/run does"
        );
        let uid = String::from_utf8(id.stdout).unwrap().trim().to_owned();
        (Some("_smtpd".to_owned()), uid)
    } else {
        (None, euid.to_string())
    };
    let config = config(r#"table who proc-exec "table-quirks.sh""#);
    let options = BuildOptions {
        user: user.clone(),
        ..build_options()
    };
    let tables = build(&config, &options).await;
    let who = tables.by_name("who").unwrap();
    assert_eq!(
        lookup(who.as_ref(), "uid").await,
        Some(uid.clone()),
        "{user:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid(who.as_ref()))).unwrap();
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(uids, [uid.as_str(); 4], "real, effective, saved and fs uid");
}
