//! Lookups through a proc-exec table from inside the daemon, against the raw
//! SDK round trip to the same backend.
//!
//! ```text
//! cargo build --release -p smtpd-sdk --example table_static
//! cargo bench -p smtpd --bench table_lookups
//! cargo bench -p smtpd --bench table_lookups -- --count 200000 --window 1000 --rounds 3
//! ```
//!
//! The backend is the release build of the Rust SDK's `table_static`
//! example on the standard fixture. Each round measures, one after the
//! other:
//!
//! - **raw**: the child driven directly over its pipes by
//!   `smtpd_conformance::roundtrip`, as
//!   `sdk-rust/benches/roundtrip.rs` does: one thread writes requests in
//!   batches keeping up to `--window` in flight, another reads and checks
//!   the answers;
//! - **daemon**: the same child started by `ProcExecTable::start` (the
//!   supervisor of `smtpd::proc`), with `--window` tasks on a tokio runtime
//!   each calling `Table::lookup` in turn, so that `--window` lookups are in
//!   flight; every answer is checked.
//!
//! then the latency of `--latency-count` lookups one at a time (p50, p99)
//! both ways. It prints each round, the median of the rounds, and the ratio
//! daemon / raw of lookups per second (the goal: at least 80%).
//!
//! Not a criterion benchmark (`harness = false`): the work is in another
//! process, and a few long runs say more than many short ones.

// Measuring wall-clock time is the point of a benchmark; spawning the
// backend is its input.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    clippy::unwrap_used
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use smtpd::table::bench::{self, median, percentile, DaemonLookups, Load};
use smtpd_conformance::roundtrip::{self, STANDARD_KEYS};

type Result<T> = std::result::Result<T, String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The backend: the example binary and the fixture it serves.
fn backend() -> Result<(PathBuf, PathBuf)> {
    let root = workspace();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let program = target.join("release/examples/table_static");
    if !program.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release -p smtpd-sdk --example table_static` first",
            program.display()
        ));
    }
    Ok((
        program,
        root.join("protocol-spec/vectors/fixtures/standard.table"),
    ))
}

/// The raw round trip: the child driven over its pipes by the same driver
/// as the Rust SDK's round-trip benchmark.
fn raw_command(program: &Path, fixture: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg(fixture);
    cmd
}

// ------------------------------------------------------------------ report

/// One way of doing the lookups, measured.
#[derive(Default)]
struct Measure {
    /// Lookups per second, `--window` in flight.
    rate: f64,
    /// One at a time: p50 and p99, in microseconds.
    p50: f64,
    p99: f64,
    /// The supervisor's own p99 while `--window` were in flight.
    loaded_p99: Option<u64>,
}

impl Measure {
    fn latencies(&mut self, mut times: Vec<Duration>) {
        if !times.is_empty() {
            self.p50 = percentile(&mut times, 0.50);
            self.p99 = percentile(&mut times, 0.99);
        }
    }

    fn show(&self, name: &str, raw: Option<&Self>) -> String {
        let ratio = raw.map_or_else(String::new, |raw| {
            format!(" ({:.1}% of raw)", 100.0 * self.rate / raw.rate)
        });
        let loaded = self
            .loaded_p99
            .map_or_else(String::new, |p| format!(", p99 {p} us under load"));
        format!(
            "{name}: {:.0} lookups/s{ratio}{loaded}; one at a time p50 {:.1} us, p99 {:.1} us",
            self.rate, self.p50, self.p99
        )
    }
}

/// The runtimes the daemon's side runs on.
struct Runtimes {
    /// One thread: the daemon's work never competes with the backend for
    /// the CPU beyond one core.
    current: tokio::runtime::Runtime,
    /// What `Runtime::new` gives the daemon: one worker per core.
    multi: tokio::runtime::Runtime,
}

fn through_daemon(
    rt: &tokio::runtime::Runtime,
    program: &Path,
    fixture: &Path,
    o: &Load,
) -> Result<Measure> {
    let daemon = DaemonLookups::new(
        "standard",
        format!("{} {}", program.display(), fixture.display()),
        STANDARD_KEYS,
    );
    let through = daemon.measure(rt, o)?;
    let mut m = Measure {
        rate: through.rate,
        loaded_p99: through.loaded_p99,
        ..Measure::default()
    };
    m.latencies(through.times);
    Ok(m)
}

fn round(rts: &Runtimes, program: &Path, fixture: &Path, o: &Load) -> Result<[Measure; 3]> {
    let mut raw = Measure {
        rate: roundtrip::throughput(&mut raw_command(program, fixture), o.count, o.window)?,
        ..Measure::default()
    };
    if o.latency_count > 0 {
        raw.latencies(roundtrip::latencies(
            &mut raw_command(program, fixture),
            o.latency_count,
        )?);
    }
    let current = through_daemon(&rts.current, program, fixture, o)?;
    let multi = through_daemon(&rts.multi, program, fixture, o)?;
    Ok([raw, current, multi])
}

const NAMES: [&str; 3] = [
    "raw SDK round trip",
    "daemon, current-thread runtime",
    "daemon, multi-thread runtime",
];

fn main() -> Result<()> {
    let (o, round_count) = bench::parse_rounds(
        std::env::args().skip(1),
        Load::new(200_000, 1_000, 10_000),
        3,
    )?;
    let (program, fixture) = backend()?;
    let runtimes = Runtimes {
        current: bench::current_thread()?,
        multi: tokio::runtime::Runtime::new().map_err(|e| e.to_string())?,
    };
    println!(
        "{} lookups with {} in flight, then {} one at a time; backend {}; {} cores",
        o.count,
        o.window,
        o.latency_count,
        program.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let mut rounds = Vec::new();
    for n in 1..=round_count {
        let measures = round(&runtimes, &program, &fixture, &o)?;
        println!("round {n}:");
        for (name, m) in NAMES.iter().zip(&measures) {
            let raw = (!std::ptr::eq(m, &measures[0])).then_some(&measures[0]);
            println!("  {}", m.show(name, raw));
        }
        rounds.push(measures);
    }
    let medians: Vec<Measure> = (0..3)
        .map(|i| Measure {
            rate: median(rounds.iter().map(|r| r[i].rate).collect()),
            p50: median(rounds.iter().map(|r| r[i].p50).collect()),
            p99: median(rounds.iter().map(|r| r[i].p99).collect()),
            loaded_p99: None,
        })
        .collect();
    println!("median of {round_count} rounds:");
    for (i, (name, m)) in NAMES.iter().zip(&medians).enumerate() {
        let raw = (i > 0).then_some(&medians[0]);
        println!("  {}", m.show(name, raw));
    }
    println!("goal: the daemon at least 80% of the raw lookups/s");
    Ok(())
}
