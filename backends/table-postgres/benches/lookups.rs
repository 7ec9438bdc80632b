//! Pipelined lookups through table-postgres, beside PostgreSQL's own rate
//! for the same SELECT (pgbench), on a server the benchmark starts.
//!
//! ```text
//! cargo build --release -p table-postgres
//! cargo bench -p table-postgres --bench lookups
//! cargo bench -p table-postgres --bench lookups -- --count 100000 --window 1000 --seconds 10
//! ```
//!
//! The server is PostgreSQL 15 in a temporary directory (`tests/pg`), the
//! standard fixture loaded into one table, the backend (the release build)
//! configured with one `SELECT value FROM fixture WHERE key = $1` per
//! service and 3 connections. It measures:
//!
//! - **raw**: the backend driven over its pipes by
//!   `smtpd_conformance::roundtrip`, `--window` lookups in flight;
//! - **daemon**: the backend started by `ProcExecTable::start` (the
//!   daemon's supervisor and table client), `--window` tasks each calling
//!   `Table::lookup` in turn, and the supervisor's p99 under that load;
//!   then lookups one at a time (p50, p99);
//! - **server**: pgbench with the same 3 connections, each sending the
//!   twelve lookups of the benchmark's key list as one pipeline of prepared
//!   statements (`\startpipeline`), for `--seconds`; then one connection,
//!   one SELECT at a time (its average latency).
//!
//! Not a criterion benchmark: the work is in other processes.

// Measuring wall-clock time is the point of a benchmark; spawning the
// backend, the server and pgbench is its input.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    clippy::unwrap_used
)]

#[path = "../tests/pg/mod.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pg::{fixture_config, load_fixture, PgServer};
use smtpd::table::bench::{self, DaemonLookups, Load};
use smtpd_conformance::roundtrip::{self, STANDARD_KEYS};

type Result<T> = std::result::Result<T, String>;

struct Options {
    load: Load,
    seconds: u32,
}

fn options() -> Result<Options> {
    let mut load = Load {
        count: 100_000,
        window: 1_000,
        latency_count: 5_000,
    };
    let mut seconds = 10;
    bench::parse_args(std::env::args().skip(1), &mut load, |arg, number| {
        match arg {
            "--seconds" => {
                seconds = u32::try_from(number("--seconds")?).map_err(|e| e.to_string())?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if load.window == 0 || load.count < load.window || load.latency_count == 0 || seconds == 0 {
        return Err(
            "--window, --latency-count, --seconds must be positive, --count at least --window"
                .into(),
        );
    }
    load.whole_windows();
    Ok(Options { load, seconds })
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn program() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let program = target.join("release/table-postgres");
    if program.exists() {
        Ok(program)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --release -p table-postgres` first",
            program.display()
        ))
    }
}

// ---------------------------------------------------------------- pgbench

/// Runs pgbench with `script` on `clients` connections; its `tps` and
/// `latency average` (ms).
fn pgbench(pg: &PgServer, script: &str, clients: u32, seconds: u32) -> Result<(f64, f64)> {
    let file = pg.dir.join("bench.sql");
    std::fs::write(&file, script).map_err(|e| e.to_string())?;
    let out = Command::new(Path::new(pg::BIN).join("pgbench"))
        .args(["-n", "-M", "prepared", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &pg.port.to_string()])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(["-T", &seconds.to_string(), "-f"])
        .arg(&file)
        .arg("postgres")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let field = |prefix: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {prefix:?} in pgbench's output:\n{text}"))
    };
    Ok((field("tps = ")?, field("latency average = ")?))
}

/// One SELECT per key of the benchmark's list. Colons are escaped
/// (`E'\x3a'`): pgbench would take `:db8` in `[2001:db8::1]` for one of
/// its variables.
fn selects() -> Vec<String> {
    STANDARD_KEYS
        .iter()
        .map(|(key, _)| {
            assert!(!key.contains(['\'', '\\']), "{key}");
            let key = key.replace(':', "\\x3a");
            format!("SELECT value FROM fixture WHERE key = E'{key}';\n")
        })
        .collect()
}

fn main() -> Result<()> {
    let o = options()?;
    let program = program()?;
    let pg = PgServer::start("bench");
    load_fixture(&pg, &workspace());
    let config = pg.dir.join("bench.conf");
    std::fs::write(&config, fixture_config(&pg)).map_err(|e| e.to_string())?;
    let raw_cmd = || {
        let mut cmd = Command::new(&program);
        cmd.arg(&config);
        cmd
    };
    let daemon = DaemonLookups::new(
        "pg",
        format!("{} {}", program.display(), config.display()),
        STANDARD_KEYS,
    );
    let load = o.load;
    println!(
        "{} lookups with {} in flight, {} one at a time; pgbench {} s; {} cores",
        load.count,
        load.window,
        load.latency_count,
        o.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let raw = roundtrip::throughput(&mut raw_cmd(), load.count, load.window)?;
    let mut raw_times = roundtrip::latencies(&mut raw_cmd(), load.latency_count)?;
    let rt = bench::current_thread()?;
    let rate = daemon.compare_with_raw(&rt, &load, raw, &mut raw_times)?;

    let lines = selects();
    let script = format!("\\startpipeline\n{}\\endpipeline\n", lines.concat());
    let (tps, _) = pgbench(&pg, &script, 3, o.seconds)?;
    let server = tps * lines.len() as f64;
    let (_, latency_ms) = pgbench(&pg, &lines[0], 1, o.seconds)?;
    println!(
        "server (pgbench, 3 connections, pipelined prepared SELECTs): {server:.0} selects/s; \
         one connection, one at a time: {:.1} us average",
        latency_ms * 1000.0
    );
    println!("through the daemon / server: {:.1}%", 100.0 * rate / server);
    Ok(())
}
