//! What the lease capability costs, measured against a real PostgreSQL 15
//! (table-postgres's test helper) through the built `queue-postgres`,
//! with ratios from the same run:
//!
//! - `envelope-claim` against `envelope-load` of the same envelopes, each
//!   set pipelined (a claim is an `UPDATE` committed to the WAL, a load a
//!   `SELECT`);
//! - `envelope-walk-free` against `envelope-walk` over the whole store
//!   (one request per envelope, as the daemon walks);
//! - two backends claiming the same envelopes at once against one backend
//!   claiming them alone (`FOR UPDATE SKIP LOCKED`: the loser answers
//!   `busy` at once instead of waiting).
//!
//! `cargo build --release -p queue-postgres && cargo bench -p
//! queue-postgres --bench leases` (ENVELOPES=N to change the 2,000). The
//! test server runs with `fsync=off`, so a claim's commit costs no disk
//! flush here; on a durable server it costs one WAL flush, as every `ok`
//! to a state change does.

// A benchmark harness: running the built binaries is its whole point, and
// a failed unwrap is a failed run.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

#[path = "../../table-postgres/tests/pg/mod.rs"]
mod pg;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use pg::PgServer;

const TS: &str = "1731000001.000001";
const ENVELOPE: &str = "dmVyc2lvbjogMwpkaXNwYXRjaGVyOiBsb2NhbAo=";

/// The backend binary, the release build when there is one.
fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    for profile in ["release", "debug"] {
        let bin = root.join(profile).join("queue-postgres");
        if bin.exists() {
            return bin;
        }
    }
    panic!("build queue-postgres first: cargo build --release -p queue-postgres");
}

struct Backend {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u64,
}

impl Backend {
    fn start(bin: &Path, config: &Path) -> Self {
        let mut child = Command::new(bin)
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
        let mut b = Self {
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
            writeln!(b.stdin, "{line}").unwrap();
        }
        while b.line() != "register|ready" {}
        b
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(60)).unwrap()
    }

    fn send(&mut self, op: &str, args: &str) {
        let id = self.next_id;
        self.next_id += 1;
        let sep = if args.is_empty() { "" } else { "|" };
        writeln!(self.stdin, "queue|0.1|{TS}|{op}|{id:016x}{sep}{args}").unwrap();
    }

    /// The answer's fields after the id.
    fn answer(&self) -> String {
        let line = self.line();
        line.splitn(3, '|').nth(2).unwrap().to_owned()
    }

    fn ask(&mut self, op: &str, args: &str) -> String {
        self.send(op, args);
        self.answer()
    }

    /// Sends every request of `args` at once, then reads the answers;
    /// the time taken and the answers.
    fn pipelined(&mut self, op: &str, args: &[String]) -> (Duration, Vec<String>) {
        let start = Instant::now();
        for a in args {
            self.send(op, a);
        }
        self.stdin.flush().unwrap();
        let answers = args.iter().map(|_| self.answer()).collect();
        (start.elapsed(), answers)
    }

    /// Walks the whole store with `op` (`suffix` after the cursor); the
    /// time taken and the number of envelopes.
    fn walk(&mut self, op: &str, suffix: &str) -> (Duration, usize) {
        let start = Instant::now();
        let mut after = "0000000000000000".to_owned();
        let mut n = 0;
        loop {
            let a = self.ask(op, &format!("{after}{suffix}"));
            let Some(rest) = a.strip_prefix("found|") else {
                break;
            };
            after = rest.split('|').next().unwrap().to_owned();
            n += 1;
        }
        (start.elapsed(), n)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` asks for a list: nothing to run there.
        return;
    }
    let n: usize = std::env::var("ENVELOPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let bin = binary();
    let pg = PgServer::start("queue-bench");
    let dir = std::env::temp_dir().join(format!("queue-postgres-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("queue.conf");
    std::fs::write(
        &config,
        format!("conninfo {}\nschema bench\nconnections 8\n", pg.conninfo()),
    )
    .unwrap();
    let mut a = Backend::start(&bin, &config);
    let mut b = Backend::start(&bin, &config);
    println!(
        "queue-postgres leases: {}, {n} envelopes (the test server runs with fsync=off: \
         commits cost no disk flush here)",
        bin.display()
    );

    // n envelopes, 10 per message.
    let mut evpids = Vec::with_capacity(n);
    while evpids.len() < n {
        let msgid = a.ask("message-create", "");
        let msgid = msgid.strip_prefix("ok|").unwrap().to_owned();
        for _ in 0..10 {
            let e = a.ask("envelope-create", &format!("{msgid}|{ENVELOPE}"));
            evpids.push(e.strip_prefix("ok|").unwrap().to_owned());
        }
        a.ask("message-write", &format!("{msgid}|0|aGVsbG8K"));
        a.ask("message-commit", &format!("{msgid}|6"));
    }
    let walked_total = evpids.len();
    evpids.truncate(n);

    let claims: Vec<String> = evpids.iter().map(|e| format!("{e}|bench-a|300")).collect();
    // Warm-up: the rows and indexes in the server's cache.
    a.pipelined("envelope-load", &evpids);
    a.walk("envelope-walk", "");
    let (t_load, _) = a.pipelined("envelope-load", &evpids);
    let (t_claim, answers) = a.pipelined("envelope-claim", &claims);
    assert!(answers.iter().all(|x| x == "ok"));
    println!(
        "envelope-load  {:>8.0}/s\nenvelope-claim {:>8.0}/s  (a claim takes {:.2}x a load)",
        rate(n, t_load),
        rate(n, t_claim),
        t_claim.as_secs_f64() / t_load.as_secs_f64()
    );

    let (t_walk, walked) = a.walk("envelope-walk", "");
    let (t_own, own) = a.walk("envelope-walk-free", "|bench-a");
    let (t_other, other) = b.walk("envelope-walk-free", "|bench-b");
    assert_eq!(
        (walked, own, other),
        (walked_total, walked_total, walked_total - n)
    );
    println!(
        "envelope-walk      {:>8.0} steps/s\nenvelope-walk-free {:>8.0} steps/s  \
         ({:.2}x the walk's time per step; another instance's walk, skipping the {n} \
         leased envelopes, took {:.1} ms for {other})",
        rate(walked, t_walk),
        rate(own, t_own),
        (t_own.as_secs_f64() / own as f64) / (t_walk.as_secs_f64() / walked as f64),
        t_other.as_secs_f64() * 1000.0
    );

    // Released, then claimed by one backend alone; released again, then
    // claimed by two backends at once, in opposite orders.
    let releases: Vec<String> = evpids.iter().map(|e| format!("{e}|bench-a")).collect();
    a.pipelined("envelope-release", &releases);
    let (t_alone, _) = a.pipelined("envelope-claim", &claims);
    a.pipelined("envelope-release", &releases);
    let claims_b: Vec<String> = evpids
        .iter()
        .rev()
        .map(|e| format!("{e}|bench-b|300"))
        .collect();
    let start = Instant::now();
    for (x, y) in claims.iter().zip(&claims_b) {
        a.send("envelope-claim", x);
        b.send("envelope-claim", y);
    }
    let got_a = (0..n).filter(|_| a.answer() == "ok").count();
    let got_b = (0..n).filter(|_| b.answer() == "ok").count();
    let t_both = start.elapsed();
    assert_eq!(got_a + got_b, n, "each envelope granted once");
    println!(
        "claims by one backend alone {:>8.0}/s; by two racing for the same {n}: \
         {:>8.0} answers/s ({got_a} + {got_b} granted; {:.2}x the time of one alone \
         for twice the requests)",
        rate(n, t_alone),
        rate(2 * n, t_both),
        t_both.as_secs_f64() / t_alone.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
