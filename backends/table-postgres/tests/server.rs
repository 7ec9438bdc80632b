//! table-postgres against a real PostgreSQL server started by the test
//! (`pg/mod.rs`): one server for this test binary, so the steps run in
//! order inside one test that owns it, and the server is stopped when the
//! test ends or panics.
//!
//! 1. Statements are checked at start-up: a query returning the wrong
//!    number of columns or refused by the server stops the backend before
//!    it registers, with `FILE:LINE: message`.
//! 2. The conformance runner passes, every answer-level case included,
//!    with the standard fixture loaded into a table.
//! 3. The server is stopped and started again while requests flow: they
//!    are answered `error` while it is down (never hang), and found again
//!    once it is back, by the same backend process.
//! 4. `update` reads the configuration again.

// A test harness: running the built binaries is its whole point, and a
// failed unwrap is a failed test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod pg;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use pg::{fixture_config, load_fixture, PgServer};

/// How long anything here may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A world-readable scratch directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("table-postgres-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The built conformance runner, built when missing.
fn runner() -> PathBuf {
    // target/PROFILE/deps/server-HASH: the runner is in target/PROFILE.
    let exe = std::env::current_exe().unwrap();
    smtpd_conformance::locate::runner_next_to(exe.parent().unwrap())
}

// ------------------------------------------------------------ the backend

/// A running `table-postgres` spoken to over its pipes.
struct Backend {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u32,
}

impl Backend {
    /// Starts it and performs the handshake; the services it registered.
    fn start(config: &Path) -> (Self, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_table-postgres"))
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut backend = Self {
            child,
            stdin,
            lines,
            next_id: 1,
        };
        for line in [
            "config|smtpd-version|7.8.0",
            "config|protocol|0.1",
            "config|tablename|pg",
            "config|ready",
        ] {
            writeln!(backend.stdin, "{line}").unwrap();
        }
        let mut services = Vec::new();
        loop {
            let line = backend.line();
            match line.strip_prefix("register|") {
                Some("ready") => break,
                Some(service) => services.push(service.to_owned()),
                None => panic!("unexpected handshake line {line:?}"),
            }
        }
        (backend, services)
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .expect("the backend answers in time")
    }

    /// Sends `OP|...` and returns the answer after its id
    /// (`found|VALUE`, `not-found`, `error|...`, `ok`).
    fn request(&mut self, op: &str, rest: &str) -> String {
        let id = format!("{:08x}", self.next_id);
        self.next_id += 1;
        let mut line = format!("table|0.1|1731000000.000000|pg|{op}|{id}");
        if !rest.is_empty() {
            // check|SERVICE|ID|KEY: the service goes before the id.
            let (service, key) = rest.split_once('|').unwrap_or((rest, ""));
            line = format!("table|0.1|1731000000.000000|pg|{op}|{service}|{id}");
            if op != "fetch" {
                line.push('|');
                line.push_str(key);
            }
        }
        writeln!(self.stdin, "{line}").unwrap();
        let answer = self.line();
        let prefix = format!("{op}-result|{id}|");
        answer
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{answer:?} does not answer {line:?}"))
            .to_owned()
    }

    fn lookup(&mut self, service: &str, key: &str) -> String {
        self.request("lookup", &format!("{service}|{key}"))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ steps

fn bad_statements_stop_the_backend_before_it_registers(pg: &PgServer, dir: &Scratch) {
    let config = dir.write(
        "bad.conf",
        &format!(
            "conninfo {}\n\
             query_alias SELECT value FROM fixture WHERE key = $1\n\
             query_userinfo SELECT 1, 2 FROM fixture WHERE key = $1\n\
             query_domain SELECT value FROM no_such_table WHERE key = $1\n\
             fetch_source SELECT value FROM fixture WHERE key = $1\n",
            pg.conninfo()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_table-postgres"))
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let at = |line: usize| format!("{}:{line}: ", config.display());
    assert!(
        stderr.contains(&format!("{}returns 2 columns, 3 or 1 wanted", at(3))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}ERROR: relation \"no_such_table\" does not exist",
            at(4)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}takes 1 parameters, a fetch list takes none",
            at(5)
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&at(2)), "{stderr}");
}

fn the_conformance_runner_passes(pg: &PgServer, dir: &Scratch) {
    let config = dir.write("fixture.conf", &fixture_config(pg));
    let out = Command::new(runner())
        .args(["table", "--fixture", "standard.table", "--"])
        .arg(env!("CARGO_BIN_EXE_table-postgres"))
        .arg(&config)
        .current_dir(workspace().join("protocol-spec"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "{stdout}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{report}");
    for line in [
        "PASS table/lookup.txt lookup-credentials",
        "PASS table/lookup.txt lookup-userinfo",
        "PASS table/fetch.txt fetch-cycles-in-file-order",
        "PASS table/services.txt auth-check-and-lookup",
        "PASS table/edge.txt big-value",
        "PASS stress: ",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{report}");
    }
    assert!(stdout.contains(" 0 failed, 0 skipped"), "{report}");
    let passed = stdout
        .lines()
        .filter(|l| l.starts_with("PASS table/"))
        .count();
    assert!(passed > 50, "{report}");
}

fn lookups_recover_after_the_server_restarts(pg: &PgServer, dir: &Scratch) {
    let config = dir.write("restart.conf", &fixture_config(pg));
    let (mut backend, services) = Backend::start(&config);
    assert!(services.contains(&"alias".to_owned()), "{services:?}");
    assert!(services.contains(&"relayhost".to_owned()), "{services:?}");
    // Every connection of the pool is in use before the restart.
    for _ in 0..6 {
        assert_eq!(backend.lookup("alias", "postmaster"), "found|root");
    }
    assert_eq!(
        backend.lookup("userinfo", "bob"),
        "found|1001:1001:/home/bob"
    );

    pg.stop();
    for _ in 0..6 {
        let answer = backend.lookup("alias", "postmaster");
        assert!(answer.starts_with("error|"), "{answer}");
    }
    let answer = backend.request("check", "domain|example.org");
    assert!(answer.starts_with("error|"), "{answer}");

    pg.start_again();
    // Back within a few retry periods, on every connection.
    let end = Instant::now() + DEADLINE;
    let mut answers = Vec::new();
    loop {
        let answer = backend.lookup("alias", "postmaster");
        let ok = answer == "found|root";
        answers.push(answer);
        if ok {
            break;
        }
        assert!(Instant::now() < end, "never recovered: {answers:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..6 {
        assert_eq!(backend.lookup("alias", "postmaster"), "found|root");
        assert_eq!(backend.request("check", "domain|example.org"), "found");
    }
    assert!(
        answers
            .iter()
            .all(|a| a == "found|root" || a.starts_with("error|")),
        "{answers:?}"
    );
}

fn update_reads_the_configuration_again(pg: &PgServer, dir: &Scratch) {
    let path = dir.write(
        "update.conf",
        &format!(
            "conninfo {}\nquery_alias SELECT value FROM fixture WHERE key = $1\n",
            pg.conninfo()
        ),
    );
    let (mut backend, _) = Backend::start(&path);
    assert_eq!(backend.lookup("alias", "postmaster"), "found|root");
    std::fs::write(
        &path,
        format!(
            "conninfo {}\nquery_alias SELECT upper(value) FROM fixture WHERE key = $1\n",
            pg.conninfo()
        ),
    )
    .unwrap();
    assert_eq!(backend.request("update", ""), "ok");
    assert_eq!(backend.lookup("alias", "postmaster"), "found|ROOT");
    // A broken file is refused; the old configuration stays.
    std::fs::write(&path, "query_alias SELECT 1\n").unwrap();
    let answer = backend.request("update", "");
    assert!(answer.starts_with("error|"), "{answer}");
    assert!(answer.contains("conninfo: missing"), "{answer}");
    assert_eq!(backend.lookup("alias", "postmaster"), "found|ROOT");
}

#[test]
fn against_a_real_postgresql_server() {
    let pg = PgServer::start("backend");
    let dir = Scratch::new("backend");
    load_fixture(&pg, &workspace());
    bad_statements_stop_the_backend_before_it_registers(&pg, &dir);
    the_conformance_runner_passes(&pg, &dir);
    update_reads_the_configuration_again(&pg, &dir);
    lookups_recover_after_the_server_restarts(&pg, &dir);
}
