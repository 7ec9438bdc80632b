//! queue-postgres against a real PostgreSQL 15 started for the test (the
//! server helper of table-postgres's tests, `tests/pg/mod.rs`, shared
//! through `#[path]`).
//!
//! One server serves every step, each in a schema of its own:
//! 1. The conformance runner passes with the lease vectors (the backend
//!    registers `lease`), and with `lease no` (the lease cases skipped).
//!    Each case starts on an empty store: the backend is started by a
//!    shell that drops its schema first.
//! 2. Two backends on one schema: what one commits the other walks; a
//!    claim keeps the other out until it is released or expires (a lease of
//!    one second); deleting the last envelope removes the message for both.
//! 3. Two backends claim the same 200 envelopes at once, pipelined: each
//!    envelope is granted to exactly one of them.
//! 4. A message of 3 MB written in 32 KiB chunks reads back byte for byte
//!    at any offset and length.
//! 5. A configuration error stops the backend before it registers, naming
//!    the file and line.
//! 6. At start, messages left uncommitted for longer than
//!    `uncommitted_expire` are removed, and only those.
//! 7. While the server is down, requests are answered `error` (never
//!    hang); once it is back, the same backend answers again and what was
//!    committed before is still there.

// A test harness: running the built binaries is its whole point, and a
// failed unwrap is a failed test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

#[path = "../../table-postgres/tests/pg/mod.rs"]
mod pg;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use pg::PgServer;

/// How long anything here may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(60);

const TS: &str = "1731000001.000001";

/// A small envelope, base64.
const ENVELOPE: &str = "dmVyc2lvbjogMwpkaXNwYXRjaGVyOiBsb2NhbAo=";

fn workspace() -> PathBuf {
    smtpd_conformance::locate::workspace()
}

/// A world-readable scratch directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("queue-postgres-test-{name}-{}", std::process::id()));
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

fn config(pg: &PgServer, schema: &str, extra: &str) -> String {
    format!("conninfo {}\nschema {schema}\n{extra}", pg.conninfo())
}

/// A running `queue-postgres` spoken to over its pipes.
struct Backend {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u64,
}

impl Backend {
    /// Starts it and performs the handshake; what it registered.
    fn start(config: &Path) -> (Self, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_queue-postgres"))
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
            "config|ready",
        ] {
            writeln!(backend.stdin, "{line}").unwrap();
        }
        let mut registered = Vec::new();
        loop {
            let line = backend.line();
            match line.strip_prefix("register|") {
                Some("ready") => break,
                Some(cap) => registered.push(cap.to_owned()),
                None => panic!("unexpected handshake line {line:?}"),
            }
        }
        (backend, registered)
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .expect("the backend answers in time")
    }

    /// Sends `OP|ID|ARGS` without waiting; the request id.
    fn send(&mut self, op: &str, args: &str) -> String {
        let id = format!("{:016x}", self.next_id);
        self.next_id += 1;
        let sep = if args.is_empty() { "" } else { "|" };
        writeln!(self.stdin, "queue|0.1|{TS}|{op}|{id}{sep}{args}").unwrap();
        id
    }

    /// Sends a request and returns its answer after the id (`ok`,
    /// `found|...`, `busy`, ...).
    fn ask(&mut self, op: &str, args: &str) -> String {
        let id = self.send(op, args);
        let line = self.line();
        let prefix = format!("{op}-result|{id}|");
        line.strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{op}: unexpected answer {line:?}"))
            .to_owned()
    }

    /// The envelope ids `envelope-walk-free` gives `instance`, walking the
    /// whole store.
    fn walk_free(&mut self, instance: &str) -> Vec<String> {
        let mut after = "0000000000000000".to_owned();
        let mut found = Vec::new();
        loop {
            let a = self.ask("envelope-walk-free", &format!("{after}|{instance}"));
            let Some(rest) = a.strip_prefix("found|") else {
                assert_eq!(a, "done");
                return found;
            };
            after = rest.split('|').next().unwrap().to_owned();
            found.push(after.clone());
        }
    }

    /// A committed message with `envelopes` envelopes: its msgid and
    /// evpids.
    fn message(&mut self, envelopes: usize) -> (String, Vec<String>) {
        let msgid = self.ask("message-create", "");
        let msgid = msgid.strip_prefix("ok|").unwrap().to_owned();
        let evpids = (0..envelopes)
            .map(|_| {
                let a = self.ask("envelope-create", &format!("{msgid}|{ENVELOPE}"));
                a.strip_prefix("ok|").unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            self.ask("message-write", &format!("{msgid}|0|aGVsbG8gd29ybGQK")),
            "ok"
        );
        assert_eq!(self.ask("message-commit", &format!("{msgid}|12")), "ok");
        (msgid, evpids)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The built conformance runner, built when missing.
fn runner() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    smtpd_conformance::locate::runner_next_to(exe.parent().unwrap())
}

/// The runner's report over the backend with `config`, each start on an
/// empty `schema` (a shell drops it first).
fn conformance(pg: &PgServer, dir: &Scratch, schema: &str, extra: &str) -> String {
    let config = dir.write(&format!("{schema}.conf"), &config(pg, schema, extra));
    let psql = Path::new(pg::BIN).join("psql");
    let script = dir.write(
        &format!("{schema}.sh"),
        &format!(
            "#!/bin/sh\n\
             {} -X -q -h 127.0.0.1 -p {} -U postgres -d postgres \
             -c 'DROP SCHEMA IF EXISTS {schema} CASCADE' >/dev/null 2>&1 || exit 3\n\
             exec {} {}\n",
            psql.display(),
            pg.port,
            env!("CARGO_BIN_EXE_queue-postgres"),
            config.display()
        ),
    );
    let out = Command::new(runner())
        .args(["queue", "--stress", "2000", "--", "sh"])
        .arg(&script)
        .current_dir(workspace().join("protocol-spec"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn the_conformance_runner_passes_with_and_without_leases(pg: &PgServer, dir: &Scratch) {
    let report = conformance(pg, dir, "conf_lease", "");
    assert!(
        report.contains("PASS handshake: registered lease"),
        "{report}"
    );
    assert!(
        report.contains("PASS queue/lease.txt claim-busy-renew-release"),
        "{report}"
    );
    assert!(report.contains(" 0 failed, 0 skipped"), "{report}");

    let report = conformance(pg, dir, "conf_plain", "lease no\n");
    assert!(
        report.contains("PASS handshake: registered nothing"),
        "{report}"
    );
    assert!(report.contains("PASS queue/walk.txt"), "{report}");
    assert!(report.contains(" 0 failed, "), "{report}");
    let skipped: Vec<&str> = report.lines().filter(|l| l.starts_with("SKIP ")).collect();
    assert!(!skipped.is_empty(), "{report}");
    assert!(
        skipped
            .iter()
            .all(|l| l.starts_with("SKIP queue/lease.txt ")),
        "{report}"
    );
}

fn two_backends_share_one_store(pg: &PgServer, dir: &Scratch) {
    let path = dir.write("shared.conf", &config(pg, "shared", ""));
    let (mut a, registered) = Backend::start(&path);
    assert_eq!(registered, ["lease"]);
    let (mut b, _) = Backend::start(&path);

    let (msgid, evpids) = a.message(2);
    let (first, second) = (&evpids[0], &evpids[1]);
    // B sees what A committed.
    let walked = b.ask("envelope-walk-free", "0000000000000000|mx-b");
    assert!(walked.starts_with("found|"), "{walked}");
    assert_eq!(
        b.ask("message-read", &format!("{msgid}|0|32768")),
        "found|aGVsbG8gd29ybGQK"
    );

    // A one-second lease keeps B out until it expires.
    assert_eq!(a.ask("envelope-claim", &format!("{first}|mx-a|1")), "ok");
    assert_eq!(b.ask("envelope-claim", &format!("{first}|mx-b|60")), "busy");
    assert_eq!(b.walk_free("mx-b"), std::slice::from_ref(second));
    assert_eq!(a.walk_free("mx-a").len(), 2, "a's own lease counts as free");
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(b.walk_free("mx-b").len(), 2, "the lease expired");
    assert_eq!(b.ask("envelope-claim", &format!("{first}|mx-b|60")), "ok");
    assert_eq!(a.ask("envelope-claim", &format!("{first}|mx-a|60")), "busy");

    // A release hands it over at once.
    assert_eq!(a.ask("envelope-claim", &format!("{second}|mx-a|60")), "ok");
    assert_eq!(
        b.ask("envelope-claim", &format!("{second}|mx-b|60")),
        "busy"
    );
    assert_eq!(a.ask("envelope-release", &format!("{second}|mx-a")), "ok");
    assert_eq!(b.ask("envelope-claim", &format!("{second}|mx-b|60")), "ok");

    // The last deletion removes the message, for both.
    assert_eq!(b.ask("envelope-delete", first), "ok");
    assert_eq!(
        a.ask("message-read", &format!("{msgid}|0|5")),
        "found|aGVsbG8="
    );
    assert_eq!(b.ask("envelope-delete", second), "ok");
    assert_eq!(a.ask("message-read", &format!("{msgid}|0|5")), "not-found");
    assert_eq!(
        a.ask("envelope-claim", &format!("{second}|mx-a|60")),
        "not-found"
    );
    let rows = pg.psql("SELECT count(*) FROM shared.messages; SELECT count(*) FROM shared.chunks;");
    assert_eq!(rows.split_whitespace().collect::<Vec<_>>(), ["0", "0"]);
}

fn concurrent_claims_are_granted_once(pg: &PgServer, dir: &Scratch) {
    let path = dir.write("race.conf", &config(pg, "race", "connections 8\n"));
    let (mut a, _) = Backend::start(&path);
    let (mut b, _) = Backend::start(&path);
    let mut evpids = Vec::new();
    for _ in 0..20 {
        evpids.extend(a.message(10).1);
    }
    // Both send every claim without waiting, in opposite orders.
    let mut sent: HashMap<String, (char, String)> = HashMap::new();
    for (i, evpid) in evpids.iter().enumerate() {
        let rev = &evpids[evpids.len() - 1 - i];
        let id = a.send("envelope-claim", &format!("{evpid}|mx-a|60"));
        sent.insert(format!("a{id}"), ('a', evpid.clone()));
        let id = b.send("envelope-claim", &format!("{rev}|mx-b|60"));
        sent.insert(format!("b{id}"), ('b', rev.clone()));
    }
    let mut granted: HashMap<String, Vec<char>> = HashMap::new();
    for (who, backend) in [('a', &a), ('b', &b)] {
        for _ in 0..evpids.len() {
            let line = backend.line();
            let mut fields = line.split('|');
            assert_eq!(fields.next(), Some("envelope-claim-result"), "{line}");
            let id = fields.next().unwrap();
            let status = fields.next().unwrap();
            let (_, evpid) = &sent[&format!("{who}{id}")];
            match status {
                "ok" => granted.entry(evpid.clone()).or_default().push(who),
                "busy" => {}
                other => panic!("claim answered {other}: {line}"),
            }
        }
    }
    for evpid in &evpids {
        let holders = granted.get(evpid).map_or(0, Vec::len);
        assert_eq!(holders, 1, "{evpid} granted to {:?}", granted.get(evpid));
    }
    let a_count = granted.values().filter(|w| w[0] == 'a').count();
    eprintln!(
        "concurrent claims: a got {a_count}, b got {} of {}",
        evpids.len() - a_count,
        evpids.len()
    );
    // Every lease is recorded as granted.
    let owners = pg.psql("SELECT lease_owner, count(*) FROM race.envelopes GROUP BY 1 ORDER BY 1;");
    let total: usize = owners
        .lines()
        .map(|l| l.rsplit('|').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(total, evpids.len(), "{owners}");
    assert!(
        !owners.contains("\n|"),
        "no envelope left unleased: {owners}"
    );
}

fn a_large_message_reads_back(pg: &PgServer, dir: &Scratch) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let path = dir.write("large.conf", &config(pg, "large", ""));
    let (mut q, _) = Backend::start(&path);
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let msgid = q.ask("message-create", "");
    let msgid = msgid.strip_prefix("ok|").unwrap().to_owned();
    let mut offset = 0;
    for chunk in content.chunks(32 * 1024) {
        let args = format!("{msgid}|{offset}|{}", b64.encode(chunk));
        assert_eq!(q.ask("message-write", &args), "ok");
        offset += chunk.len();
    }
    assert_eq!(
        q.ask("message-commit", &format!("{msgid}|{}", content.len())),
        "ok"
    );
    for (off, len) in [
        (0usize, 32768usize),
        (1, 10),
        (32767, 2),
        (100_000, 262_144),
        (2_999_990, 100),
        (3_000_000, 10),
        (3_500_000, 10),
    ] {
        let answer = q.ask("message-read", &format!("{msgid}|{off}|{len}"));
        let data = answer.strip_prefix("found|").unwrap();
        let got = b64.decode(data).unwrap();
        let end = (off + len).min(content.len());
        let want = content.get(off..end).unwrap_or(&[]);
        assert_eq!(got, want, "read {off}+{len}");
    }
    let mut read = Vec::new();
    loop {
        let answer = q.ask("message-read", &format!("{msgid}|{}|32768", read.len()));
        let got = b64.decode(answer.strip_prefix("found|").unwrap()).unwrap();
        if got.is_empty() {
            break;
        }
        read.extend_from_slice(&got);
    }
    assert!(read == content, "the whole message reads back");
    let rows = pg.psql("SELECT count(*) FROM large.chunks;");
    assert_eq!(rows.trim(), content.len().div_ceil(32 * 1024).to_string());
}

fn old_uncommitted_messages_are_removed_at_start(pg: &PgServer, dir: &Scratch) {
    let path = dir.write(
        "expire.conf",
        &config(pg, "expire", "uncommitted_expire 600\n"),
    );
    let (mut q, _) = Backend::start(&path);
    let old = q.ask("message-create", "");
    let old = old.strip_prefix("ok|").unwrap().to_owned();
    let recent = q.ask("message-create", "");
    let recent = recent.strip_prefix("ok|").unwrap().to_owned();
    assert_eq!(q.ask("message-write", &format!("{old}|0|aGVsbG8=")), "ok");
    let (committed, _) = q.message(1);
    drop(q);
    // One uncommitted message an hour old, one just made, one committed
    // long ago.
    pg.psql(&format!(
        "UPDATE expire.messages SET created = now() - interval '1 hour' \
         WHERE msgid IN ({}, {});",
        i64::from_str_radix(&old, 16).unwrap(),
        i64::from_str_radix(&committed, 16).unwrap()
    ));
    let (mut q, _) = Backend::start(&path);
    let left = pg.psql("SELECT to_hex(msgid) FROM expire.messages ORDER BY 1;");
    let mut want = vec![
        recent.trim_start_matches('0'),
        committed.trim_start_matches('0'),
    ];
    want.sort_unstable();
    assert_eq!(left.split_whitespace().collect::<Vec<_>>(), want);
    assert!(q
        .ask("message-write", &format!("{old}|5|aGVsbG8="))
        .starts_with("error|"));
    assert_eq!(
        q.ask("message-write", &format!("{recent}|0|aGVsbG8=")),
        "ok"
    );
}

fn requests_fail_while_the_server_is_down_and_work_after(pg: &PgServer, dir: &Scratch) {
    let path = dir.write("restart.conf", &config(pg, "restart", ""));
    let (mut q, _) = Backend::start(&path);
    let (msgid, evpids) = q.message(1);
    pg.stop();
    let answer = q.ask("envelope-claim", &format!("{}|mx-a|60", evpids[0]));
    assert!(answer.starts_with("error|"), "{answer}");
    assert!(q.ask("message-create", "").starts_with("error|"));
    pg.start_again();
    // The pool connects again; nothing committed was lost.
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let answer = q.ask("envelope-claim", &format!("{}|mx-a|60", evpids[0]));
        if answer == "ok" {
            break;
        }
        assert!(std::time::Instant::now() < end, "{answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        q.ask("message-read", &format!("{msgid}|0|100")),
        "found|aGVsbG8gd29ybGQK"
    );
}

fn configuration_errors_stop_it_before_registering(dir: &Scratch) {
    let path = dir.write("bad.conf", "conninfo host=127.0.0.1\nschema Bad-Name\n");
    let out = Command::new(env!("CARGO_BIN_EXE_queue-postgres"))
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing registered");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: schema: \"Bad-Name\"", path.display())),
        "{stderr}"
    );
}

#[test]
fn queue_postgres_against_a_real_server() {
    let pg = PgServer::start("queue");
    let dir = Scratch::new("server");
    configuration_errors_stop_it_before_registering(&dir);
    two_backends_share_one_store(&pg, &dir);
    concurrent_claims_are_granted_once(&pg, &dir);
    a_large_message_reads_back(&pg, &dir);
    the_conformance_runner_passes_with_and_without_leases(&pg, &dir);
    old_uncommitted_messages_are_removed_at_start(&pg, &dir);
    requests_fail_while_the_server_is_down_and_work_after(&pg, &dir);
}
