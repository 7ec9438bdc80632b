//! The built `smtpd-conformance` binary against real backend processes: the
//! shell table backend and the SDK examples must pass; each deliberately
//! broken backend of `tests/bad/` must fail, quickly, with its diagnosis.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// A run of the runner: exit status and what it printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts that stdout holds `text`, showing the output if not.
    fn says(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "expected {text:?} in the output:\n{}\n--- stderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn lines_starting(&self, prefix: &str) -> usize {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Longest a run may take before the test calls it hung; every run here is
/// expected to take a few seconds at most.
const HANG: Duration = Duration::from_secs(300);

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

fn wait_or_kill(mut child: Child) -> ExitStatus {
    let mut waited = Duration::ZERO;
    let step = Duration::from_millis(20);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the runner") {
            return status;
        }
        if waited >= HANG {
            let _ = child.kill();
            panic!("smtpd-conformance still running after {HANG:?}");
        }
        thread::sleep(step);
        waited += step;
    }
}

/// Runs the runner with `args` in the crate directory.
fn run(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtpd-conformance"))
        .args(args)
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting smtpd-conformance");
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_or_kill(child);
    Run {
        status,
        stdout: stdout.join().expect("reading stdout"),
        stderr: stderr.join().expect("reading stderr"),
    }
}

fn table_fixture() -> String {
    manifest_dir()
        .join("vectors/fixtures/standard.table")
        .display()
        .to_string()
}

#[test]
fn the_shell_table_backend_passes_with_the_standard_fixture() {
    let fixture = table_fixture();
    let r = run(&[
        "table",
        "--fixture",
        "standard.table",
        "--",
        "sh",
        "examples/table-shell.sh",
        &fixture,
    ]);
    r.says("PASS handshake: registered alias, domain")
        .says("PASS table/lookup.txt lookup-alias-found")
        .says("PASS table/fetch.txt fetch-cycles-in-file-order")
        .says("PASS stress: 10000 requests pipelined")
        .says("PASS exit at end of input")
        .says("PASS unknown protocol version: exited (status 1) without registering")
        .says(" 0 failed, 0 skipped");
    assert_eq!(r.code(), Some(0));
    assert!(r.lines_starting("PASS table/") > 50, "{}", r.stdout);
}

#[test]
fn without_the_fixture_its_cases_are_skipped_with_the_reason() {
    let fixture = table_fixture();
    let r = run(&[
        "table",
        "--stress",
        "100",
        "--",
        "sh",
        "examples/table-shell.sh",
        &fixture,
    ]);
    r.says("SKIP table/lookup.txt lookup-alias-found: needs a backend loaded with fixtures/standard.table (--fixture standard.table)")
        .says("PASS table/errors.txt unknown-service")
        .says(" 0 failed, ");
    assert_eq!(r.code(), Some(0));
    assert_eq!(r.lines_starting("FAIL"), 0);
}

#[test]
fn a_backend_answering_garbage_fails_the_handshake() {
    let r = run(&[
        "table",
        "--timeout",
        "1",
        "--",
        "sh",
        "tests/bad/garbage.sh",
    ]);
    r.says("FAIL handshake: answered garbage: hello, I am not a table")
        .says("parse error: invalid line type (expected register)")
        .says("0 passed, 1 failed, 0 skipped");
    assert_eq!(r.code(), Some(1));
}

#[test]
fn a_backend_that_never_registers_times_out() {
    let r = run(&[
        "table",
        "--timeout",
        "1",
        "--",
        "sh",
        "tests/bad/never-registers.sh",
    ]);
    r.says("FAIL handshake: never registered: no register|ready within 1 s")
        .says("never-registers: waiting forever");
    assert_eq!(r.code(), Some(1));
}

#[test]
fn a_backend_that_exits_during_the_handshake_shows_its_status_and_stderr() {
    let r = run(&[
        "queue",
        "--timeout",
        "1",
        "--",
        "sh",
        "-c",
        "echo 'cannot open the store' >&2; exit 4",
    ]);
    r.says("FAIL handshake: exited during handshake (status 4)")
        .says("cannot open the store");
    assert_eq!(r.code(), Some(1));
}

#[test]
fn a_backend_that_dies_after_the_handshake_is_diagnosed() {
    let r = run(&[
        "table",
        "--timeout",
        "1",
        "--stress",
        "100",
        "--",
        "sh",
        "tests/bad/dies-after-handshake.sh",
    ]);
    r.says("PASS handshake: registered alias")
        .says("FAIL table/errors.txt unknown-service: the backend exited (status 3)")
        .says("dies-after-handshake: giving up on purpose")
        .says("FAIL stress: the backend exited (status 3)")
        .says("FAIL exit at end of input: exited (status 3) after its stdin was closed")
        .says("FAIL unknown protocol version: registered anyway after config|protocol|9.9");
    assert_eq!(r.code(), Some(1));
}

#[test]
fn a_backend_answering_with_wrong_ids_fails_every_exchange() {
    let r = run(&[
        "table",
        "--timeout",
        "1",
        "--stress",
        "100",
        "--",
        "sh",
        "tests/bad/wrong-ids.sh",
    ]);
    r.says("FAIL table/errors.txt unknown-service: the exchange of line 6: unsolicited answer, no such request outstanding: lookup-result|ffffffff|not-found")
        .says("no answer to lookup request 0000abcd")
        .says("FAIL stress: ")
        .says("PASS unknown protocol version");
    assert_eq!(r.code(), Some(1));
    assert_eq!(r.lines_starting("PASS table/"), 0, "{}", r.stdout);
}

#[test]
fn a_missing_program_cannot_start() {
    let r = run(&["table", "--", "/nonexistent/table-backend"]);
    r.says("FAIL handshake: cannot start /nonexistent/table-backend");
    assert_eq!(r.code(), Some(1));
}

#[test]
fn bad_vectors_and_unknown_fixtures_stop_the_runner() {
    let dir = std::env::temp_dir().join(format!("conformance-bad-vectors-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("table")).unwrap();
    std::fs::write(dir.join("table/x.txt"), "=== a\n>table\n").unwrap();
    let vectors = dir.display().to_string();
    let r = run(&[
        "table",
        "--vectors",
        &vectors,
        "--",
        "sh",
        "tests/bad/garbage.sh",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(r.code(), Some(2));
    assert!(
        r.stderr
            .contains("x.txt:2: `>` must be followed by a space"),
        "{}",
        r.stderr
    );

    let r = run(&[
        "table",
        "--fixture",
        "nope",
        "--",
        "sh",
        "tests/bad/garbage.sh",
    ]);
    assert_eq!(r.code(), Some(2));
    assert!(
        r.stderr.contains("unknown fixture \"nope\""),
        "{}",
        r.stderr
    );
}

/// An example backend of the Rust SDK, built when missing, from the target
/// directory this test runs in.
fn sdk_example(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // target/<profile>/deps/runner-HASH -> target/<profile>/examples
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is in target/<profile>/deps")
            .to_path_buf();
        let examples = profile_dir.join("examples");
        let wanted = ["table_static", "filter_guard", "queue_memory"];
        if wanted.iter().any(|n| !examples.join(n).is_file()) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "smtpd-sdk", "--examples", "--target-dir"]);
            build.arg(profile_dir.parent().expect("the target directory"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build
                .current_dir(manifest_dir())
                .status()
                .expect("running cargo");
            assert!(status.success(), "building the smtpd-sdk examples failed");
        }
        examples
    });
    dir.join(name)
}

#[test]
fn the_rust_sdk_table_example_passes() {
    let example = sdk_example("table_static").display().to_string();
    let fixture = table_fixture();
    let r = run(&[
        "table",
        "--fixture",
        "standard.table",
        "--",
        &example,
        &fixture,
    ]);
    r.says("PASS stress: 10000 requests")
        .says(" 0 failed, 0 skipped");
    assert_eq!(r.code(), Some(0));
}

#[test]
fn the_rust_sdk_filter_example_passes() {
    let example = sdk_example("filter_guard").display().to_string();
    let r = run(&["filter", "--fixture", "standard.filter", "--", &example]);
    r.says("PASS filter/decisions.txt")
        .says("PASS stress: 10000 requests")
        .says(" 0 failed, ");
    assert_eq!(r.code(), Some(0));
}

#[test]
fn the_rust_sdk_queue_example_passes() {
    let example = sdk_example("queue_memory").display().to_string();
    let r = run(&["queue", "--", &example]);
    // The example registers `lease`: the lease cases run too.
    r.says("PASS handshake: registered lease")
        .says("PASS queue/message.txt")
        .says("PASS queue/lease.txt claim-busy-renew-release")
        .says("PASS stress: 10000 requests")
        .says(" 0 failed, 0 skipped");
    assert_eq!(r.code(), Some(0));
}
