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
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtpd::proc::Spec;
use smtpd::table::{ProcExecTable, Service, Table, TABLE_REQUEST_TIMEOUT};
use smtpd_conformance::roundtrip::{self, expected};
use smtpd_sdk::tablefile::TableFile;

type Result<T> = std::result::Result<T, String>;

struct Options {
    count: usize,
    window: usize,
    latency_count: usize,
    rounds: usize,
}

fn options() -> Result<Options> {
    let mut o = Options {
        count: 200_000,
        window: 1_000,
        latency_count: 10_000,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize> {
            let v = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        };
        match arg.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--count" => o.count = number("--count")?,
            "--window" => o.window = number("--window")?,
            "--latency-count" => o.latency_count = number("--latency-count")?,
            "--rounds" => o.rounds = number("--rounds")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.window == 0 || o.count < o.window || o.rounds == 0 {
        return Err("--window and --rounds must be positive, --count at least --window".into());
    }
    o.count -= o.count % o.window;
    Ok(o)
}

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

async fn daemon_table(command: &str) -> Result<Arc<ProcExecTable>> {
    let spec = Spec::new("standard", command.to_owned(), "/", TABLE_REQUEST_TIMEOUT);
    ProcExecTable::start("standard", format!("proc-exec {command:?}"), spec)
        .await
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

async fn lookup(table: &ProcExecTable, n: usize) -> Result<()> {
    let (key, found) = expected(n);
    match table.lookup(Service::Alias, key).await {
        Ok(value) if value.is_some() == found => Ok(()),
        Ok(value) => Err(format!("{key}: wrong answer {value:?}")),
        Err(e) => Err(format!("{key}: {e}")),
    }
}

/// Lookups per second with `--window` in flight, and the supervisor's p99.
async fn daemon_throughput(command: &str, o: &Options) -> Result<(f64, Option<u64>)> {
    let table = daemon_table(command).await?;
    let per_task = o.count / o.window;
    let began = Instant::now();
    let tasks: Vec<_> = (0..o.window)
        .map(|w| {
            let table = Arc::clone(&table);
            tokio::spawn(async move {
                for i in 0..per_task {
                    lookup(&table, w * per_task + i).await?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let elapsed = began.elapsed();
    let stats = table.proc_stats().ok_or("no counters")?;
    if stats.errors != 0 || stats.restarts != 0 {
        return Err(format!("failures through the supervisor: {stats:?}"));
    }
    table.shutdown().await;
    Ok((o.count as f64 / elapsed.as_secs_f64(), stats.p99_micros))
}

async fn daemon_latency(command: &str, o: &Options) -> Result<Vec<Duration>> {
    let table = daemon_table(command).await?;
    let mut times = Vec::with_capacity(o.latency_count);
    for i in 0..o.latency_count {
        let began = Instant::now();
        lookup(&table, i).await?;
        times.push(began.elapsed());
    }
    table.shutdown().await;
    Ok(times)
}

fn percentile(times: &mut [Duration], q: f64) -> f64 {
    times.sort();
    let at = ((times.len() - 1) as f64 * q).round() as usize;
    times[at].as_secs_f64() * 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One round for one backend: raw rate, daemon rate, daemon p99 under load,
/// one-at-a-time p50 and p99 through the daemon.
fn round(
    rt: &tokio::runtime::Runtime,
    program: &Path,
    arg: &Path,
    o: &Options,
) -> Result<[f64; 5]> {
    let mut raw_cmd = Command::new(program);
    raw_cmd.arg(arg);
    let raw = roundtrip::throughput(&mut raw_cmd, o.count, o.window)?;
    let command = format!("{} {}", program.display(), arg.display());
    let (rate, loaded) = rt.block_on(daemon_throughput(&command, o))?;
    let mut times = rt.block_on(daemon_latency(&command, o))?;
    let (p50, p99) = if times.is_empty() {
        (0.0, 0.0)
    } else {
        (percentile(&mut times, 0.50), percentile(&mut times, 0.99))
    };
    Ok([raw, rate, loaded.map_or(f64::NAN, |p| p as f64), p50, p99])
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
    let o = options()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let backends = [
        ("table-static", release("table-static")?, fixture()),
        (
            "table-sqlite",
            release("table-sqlite")?,
            sqlite_config(dir.path())?,
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "{} lookups with {} in flight, then {} one at a time; {} cores",
        o.count,
        o.window,
        o.latency_count,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    for (name, program, arg) in &backends {
        let mut rounds = Vec::new();
        for n in 1..=o.rounds {
            let m = round(&rt, program, arg, &o)?;
            println!("  round {n}: {}", show(name, &m));
            rounds.push(m);
        }
        let medians: Vec<f64> = (0..5)
            .map(|i| median(rounds.iter().map(|r| r[i]).collect()))
            .collect();
        let medians: [f64; 5] = medians.try_into().map_err(|_| "five measures")?;
        println!("median of {} rounds: {}", o.rounds, show(name, &medians));
    }
    Ok(())
}
