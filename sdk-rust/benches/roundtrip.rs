//! Round trips through a real table backend process, with pipelining.
//!
//! ```text
//! cargo build --release -p smtpd-sdk --example table_static
//! cargo bench -p smtpd-sdk --bench roundtrip
//! cargo bench -p smtpd-sdk --bench roundtrip -- --count 200000 --window 1000 -- CMD ARGS...
//! ```
//!
//! For each backend it spawns the command, performs the table handshake,
//! then measures:
//! - throughput: `--count` lookups (default 200,000) with up to `--window`
//!   (default 1,000) in flight, written in batches by one thread while
//!   another reads the answers; every answer is checked (id, found or
//!   not-found as the fixture says);
//! - latency: `--latency-count` lookups (default 10,000) one at a time,
//!   reporting the median and the 99th percentile.
//!
//! Backends: the command after `--` if one is given; otherwise the release
//! build of examples/table_static on the standard fixture, and the Python
//! SDK's example (`python3 -m smtpd_sdk.examples.table_static FILE` with
//! PYTHONPATH=sdk-python/src) when it can be imported. Every command is
//! given the standard fixture's keys to look up, through
//! `smtpd_conformance::roundtrip`, the driver the daemon's own table-lookup
//! benchmark uses for its raw figures.
//!
//! Not a criterion benchmark (`harness = false`): the work is in another
//! process, and one long run per backend says more than many short ones.

// Measuring wall-clock time is the point of a benchmark; spawning the
// backend is its input.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use smtpd_conformance::roundtrip;

struct Options {
    count: usize,
    window: usize,
    latency_count: usize,
    command: Vec<String>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        count: 200_000,
        window: 1_000,
        latency_count: 10_000,
        command: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize> {
            let v = args
                .next()
                .with_context(|| format!("{name} needs a value"))?;
            v.parse().with_context(|| format!("{name} {v}"))
        };
        match arg.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--count" => o.count = number("--count")?,
            "--window" => o.window = number("--window")?,
            "--latency-count" => o.latency_count = number("--latency-count")?,
            "--" => {
                o.command = args.by_ref().collect();
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.window == 0 || o.count == 0 {
        bail!("--count and --window must be positive");
    }
    Ok(o)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The backends to measure: (name, command, extra environment).
fn backends(o: &Options) -> Result<Vec<(String, Command)>> {
    if let Some((program, args)) = o.command.split_first() {
        let mut cmd = Command::new(program);
        cmd.args(args);
        return Ok(vec![(o.command.join(" "), cmd)]);
    }
    let root = workspace();
    let fixture = root.join("protocol-spec/vectors/fixtures/standard.table");
    let rust = root.join("target/release/examples/table_static");
    if !rust.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p smtpd-sdk --example table_static` first",
            rust.display()
        );
    }
    let mut list = Vec::new();
    let mut cmd = Command::new(&rust);
    cmd.arg(&fixture);
    list.push(("rust examples/table_static".to_owned(), cmd));
    let python_path = root.join("sdk-python/src");
    let importable = Command::new("python3")
        .args(["-c", "import smtpd_sdk.examples.table_static"])
        .env("PYTHONPATH", &python_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if importable {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "smtpd_sdk.examples.table_static"])
            .arg(&fixture)
            .env("PYTHONPATH", &python_path);
        list.push(("python smtpd_sdk.examples.table_static".to_owned(), cmd));
    } else {
        println!(
            "python example not importable from {}: skipped",
            python_path.display()
        );
    }
    Ok(list)
}

fn main() -> Result<()> {
    let o = options()?;
    for (name, mut cmd) in backends(&o)? {
        let rate = roundtrip::throughput(&mut cmd, o.count, o.window)
            .map_err(|e| anyhow!("{name}: throughput: {e}"))?;
        println!(
            "{name}: {} lookups, up to {} in flight: {rate:.0} lookups/s",
            o.count, o.window
        );
        if o.latency_count > 0 {
            let mut times = roundtrip::latencies(&mut cmd, o.latency_count)
                .map_err(|e| anyhow!("{name}: latency: {e}"))?;
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
            let (p50, p99) = (at(0.50), at(0.99));
            println!(
                "{name}: {} lookups one at a time: p50 {:.1} us, p99 {:.1} us",
                o.latency_count,
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
    Ok(())
}
