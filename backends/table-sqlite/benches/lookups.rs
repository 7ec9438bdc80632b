//! Pipelined lookups through the daemon's proc-exec table client, for
//! `table-static` and `table-sqlite` serving the standard fixture.
//!
//! ```text
//! cargo build --release -p table-static -p table-sqlite
//! cargo bench -p table-sqlite --bench lookups
//! cargo bench -p table-sqlite --bench lookups -- --count 200000 --window 1000 --rounds 3
//! ```
//!
//! For each backend (the release builds, found in `target/release`), each
//! round measures:
//!
//! - **raw**: the backend driven over its pipes by
//!   `smtpd_conformance::roundtrip`, `--window` requests in flight;
//! - **daemon**: the backend started by `ProcExecTable::start` (the daemon's
//!   supervisor and table client), `--window` tasks on a current-thread
//!   runtime each calling `Table::lookup` in turn; lookups per second and
//!   the supervisor's own p99 under that load;
//! - then `--latency-count` lookups one at a time through the daemon (p50,
//!   p99).
//!
//! `table-sqlite` reads a database made from the fixture in a temporary
//! directory (one `kv` table, one query per service), as its conformance
//! test does. Not a criterion benchmark: the work is in another process.

// Measuring wall-clock time is the point of a benchmark; spawning the
// backends is its input.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    clippy::unwrap_used
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use smtpd::table::bench::{self, median, percentile, DaemonLookups, Load};
use smtpd_conformance::roundtrip::{self, STANDARD_KEYS};
use smtpd_sdk::tablefile::TableFile;

type Result<T> = std::result::Result<T, String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> PathBuf {
    workspace().join("protocol-spec/vectors/fixtures/standard.table")
}

/// A release binary of the workspace.
fn release(name: &str) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let program = target.join("release").join(name);
    if program.exists() {
        Ok(program)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --release -p table-static -p table-sqlite` first",
            program.display()
        ))
    }
}

/// The fixture as an SQLite database and its table-sqlite configuration.
fn sqlite_config(dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read(fixture()).map_err(|e| e.to_string())?;
    let table = TableFile::parse(&text).map_err(|e| e.to_string())?;
    let db = dir.join("fixture.sqlite");
    let mut conn = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    tx.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)", [])
        .map_err(|e| e.to_string())?;
    for entry in table.entries() {
        let value = entry.value.clone().unwrap_or_else(|| entry.key.clone());
        tx.execute(
            "INSERT INTO kv (k, v) VALUES (?1, ?2)",
            [&entry.key, &value],
        )
        .map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())?;
    let config = dir.join("sqlite.conf");
    let text = format!(
        "dbpath {}\nquery_alias SELECT v FROM kv WHERE k = ?\n\
         query_domain SELECT v FROM kv WHERE k = ?\n",
        db.display()
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    Ok(config)
}

/// One round for one backend: raw rate, daemon rate, daemon p99 under load,
/// one-at-a-time p50 and p99 through the daemon.
fn round(rt: &tokio::runtime::Runtime, program: &Path, arg: &Path, o: &Load) -> Result<[f64; 5]> {
    let mut raw_cmd = Command::new(program);
    raw_cmd.arg(arg);
    let raw = roundtrip::throughput(&mut raw_cmd, o.count, o.window)?;
    let daemon = DaemonLookups::new(
        "standard",
        format!("{} {}", program.display(), arg.display()),
        STANDARD_KEYS,
    );
    let mut m = daemon.measure(rt, o)?;
    let (p50, p99) = if m.times.is_empty() {
        (0.0, 0.0)
    } else {
        (
            percentile(&mut m.times, 0.50),
            percentile(&mut m.times, 0.99),
        )
    };
    Ok([
        raw,
        m.rate,
        m.loaded_p99.map_or(f64::NAN, |p| p as f64),
        p50,
        p99,
    ])
}

fn show(name: &str, m: &[f64; 5]) -> String {
    format!(
        "{name}: raw {:.0} lookups/s; through the daemon {:.0} lookups/s ({:.1}% of raw), \
         p99 {:.0} us under load; one at a time p50 {:.1} us, p99 {:.1} us",
        m[0],
        m[1],
        100.0 * m[1] / m[0],
        m[2],
        m[3],
        m[4]
    )
}

fn main() -> Result<()> {
    let (o, round_count) = bench::parse_rounds(
        std::env::args().skip(1),
        Load::new(200_000, 1_000, 10_000),
        3,
    )?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let backends = [
        ("table-static", release("table-static")?, fixture()),
        (
            "table-sqlite",
            release("table-sqlite")?,
            sqlite_config(dir.path())?,
        ),
    ];
    let rt = bench::current_thread()?;
    println!(
        "{} lookups with {} in flight, then {} one at a time; {} cores",
        o.count,
        o.window,
        o.latency_count,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    for (name, program, arg) in &backends {
        let mut rounds = Vec::new();
        for n in 1..=round_count {
            let m = round(&rt, program, arg, &o)?;
            println!("  round {n}: {}", show(name, &m));
            rounds.push(m);
        }
        let medians: Vec<f64> = (0..5)
            .map(|i| median(rounds.iter().map(|r| r[i]).collect()))
            .collect();
        let medians: [f64; 5] = medians.try_into().map_err(|_| "five measures")?;
        println!("median of {round_count} rounds: {}", show(name, &medians));
    }
    Ok(())
}
