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
//! - **raw**: the child driven directly over its pipes, as
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

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtpd::proc::Spec;
use smtpd::table::{ProcExecTable, Service, Table, TABLE_REQUEST_TIMEOUT};

type Result<T> = std::result::Result<T, String>;

/// Keys looked up, with whether the fixture has them.
const KEYS: &[(&str, bool)] = &[
    ("postmaster", true),
    ("abuse", true),
    ("alice", true),
    ("bob", true),
    ("example.org", true),
    ("192.0.2.1", true),
    ("[2001:db8::1]", true),
    ("carol@example.org", true),
    ("pipe", true),
    ("spaced", true),
    ("nobody-here", false),
    ("mallory@example.com", false),
];

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
    // Whole tasks' worth of lookups.
    o.count -= o.count % o.window;
    Ok(o)
}

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

fn expected(n: usize) -> (&'static str, bool) {
    KEYS[n % KEYS.len()]
}

// ------------------------------------------------------- the raw round trip

fn request(id: u32, key: &str) -> String {
    format!("table|0.1|1731000001.000412|standard|lookup|alias|{id:08x}|{key}\n")
}

/// Spawns the backend and performs the handshake.
fn start(program: &Path, fixture: &Path) -> Result<(Child, ChildStdin, BufReader<ChildStdout>)> {
    let mut child = Command::new(program)
        .arg(fixture)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning the backend: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdout = BufReader::with_capacity(256 * 1024, stdout);
    stdin
        .write_all(
            b"config|smtpd-version|0.1.0\nconfig|protocol|0.1\nconfig|tablename|standard\nconfig|ready\n",
        )
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the backend closed its output during the handshake".into());
        }
        match line.trim_end() {
            "register|ready" => break,
            l if l.starts_with("register|") => {}
            l => return Err(format!("unexpected handshake line {l:?}")),
        }
    }
    Ok((child, stdin, stdout))
}

/// Checks one raw answer against the key sent with its id.
fn check_raw(line: &[u8], count: usize) -> Result<()> {
    let text = std::str::from_utf8(line).map_err(|_| "answer not UTF-8")?;
    let rest = text
        .strip_prefix("lookup-result|")
        .ok_or_else(|| format!("unexpected answer {text:?}"))?;
    let (id, status) = rest.split_at_checked(8).ok_or("short answer")?;
    let id = usize::from_str_radix(id, 16).map_err(|_| "bad id")?;
    if id >= count {
        return Err(format!("unknown id in {text:?}"));
    }
    let ok = if expected(id).1 {
        status.starts_with("|found|")
    } else {
        status == "|not-found\n"
    };
    if ok {
        Ok(())
    } else {
        Err(format!("wrong answer {text:?}"))
    }
}

fn raw_throughput(program: &Path, fixture: &Path, o: &Options) -> Result<f64> {
    let (mut child, mut stdin, mut stdout) = start(program, fixture)?;
    let requests: Vec<String> = (0..o.count)
        .map(|i| request(i as u32, expected(i).0))
        .collect();
    let (count, window) = (o.count, o.window);
    // The reader hands back credits, a quarter window at a time, so that
    // between three quarters of a window and a full one stay in flight.
    let step = (window / 4).max(1);
    let (credits, credited) = std::sync::mpsc::channel::<usize>();
    let began = Instant::now();
    let reader = std::thread::spawn(move || -> Result<BufReader<ChildStdout>> {
        let mut line = Vec::with_capacity(256);
        for n in 1..=count {
            line.clear();
            if stdout
                .read_until(b'\n', &mut line)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("the backend closed its output".into());
            }
            check_raw(&line, count)?;
            if n % step == 0 {
                credits.send(step).ok();
            }
        }
        Ok(stdout)
    });
    let mut batch = Vec::with_capacity(128 * 1024);
    let (mut sent, mut credit) = (0, window);
    while sent < count {
        while credit < step {
            match credited.recv() {
                Ok(n) => credit += n,
                Err(_) => break,
            }
        }
        while let Ok(n) = credited.try_recv() {
            credit += n;
        }
        if credit == 0 {
            break;
        }
        let n = credit.min(count - sent);
        batch.clear();
        for r in &requests[sent..sent + n] {
            batch.extend_from_slice(r.as_bytes());
        }
        stdin.write_all(&batch).map_err(|e| e.to_string())?;
        sent += n;
        credit -= n;
    }
    let mut stdout = reader.join().map_err(|_| "reader thread panicked")??;
    let elapsed = began.elapsed();
    finish(&mut child, stdin, &mut stdout)?;
    Ok(count as f64 / elapsed.as_secs_f64())
}

fn raw_latency(program: &Path, fixture: &Path, o: &Options) -> Result<Vec<Duration>> {
    let (mut child, mut stdin, mut stdout) = start(program, fixture)?;
    let mut times = Vec::with_capacity(o.latency_count);
    let mut line = Vec::with_capacity(256);
    for i in 0..o.latency_count {
        let req = request(i as u32, expected(i).0);
        let began = Instant::now();
        stdin.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        line.clear();
        if stdout
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("the backend closed its output".into());
        }
        times.push(began.elapsed());
        check_raw(&line, o.latency_count)?;
    }
    finish(&mut child, stdin, &mut stdout)?;
    Ok(times)
}

/// Closes the backend's input and checks that it exits 0 with nothing more
/// to say.
fn finish(child: &mut Child, stdin: ChildStdin, stdout: &mut BufReader<ChildStdout>) -> Result<()> {
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the last answer",
            rest.len()
        ));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the backend exited with {status}"))
    }
}

// ------------------------------------------------------ through the daemon

async fn daemon_table(program: &Path, fixture: &Path) -> Result<Arc<ProcExecTable>> {
    let command = format!("{} {}", program.display(), fixture.display());
    let spec = Spec::new("standard", command.clone(), "/", TABLE_REQUEST_TIMEOUT);
    ProcExecTable::start("standard", format!("proc-exec {command:?}"), spec)
        .await
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

async fn check_daemon(table: &ProcExecTable, n: usize) -> Result<()> {
    let (key, found) = expected(n);
    match table.lookup(Service::Alias, key).await {
        Ok(value) if value.is_some() == found => Ok(()),
        Ok(value) => Err(format!("{key}: wrong answer {value:?}")),
        Err(e) => Err(format!("{key}: {e}")),
    }
}

async fn daemon_throughput(
    program: &Path,
    fixture: &Path,
    o: &Options,
) -> Result<(f64, Option<u64>)> {
    let table = daemon_table(program, fixture).await?;
    let per_task = o.count / o.window;
    let began = Instant::now();
    let tasks: Vec<_> = (0..o.window)
        .map(|w| {
            let table = Arc::clone(&table);
            tokio::spawn(async move {
                for i in 0..per_task {
                    check_daemon(&table, w * per_task + i).await?;
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

async fn daemon_latency(program: &Path, fixture: &Path, o: &Options) -> Result<Vec<Duration>> {
    let table = daemon_table(program, fixture).await?;
    let mut times = Vec::with_capacity(o.latency_count);
    for i in 0..o.latency_count {
        let began = Instant::now();
        check_daemon(&table, i).await?;
        times.push(began.elapsed());
    }
    table.shutdown().await;
    Ok(times)
}

// ------------------------------------------------------------------ report

fn percentile(times: &mut [Duration], q: f64) -> f64 {
    times.sort();
    let at = ((times.len() - 1) as f64 * q).round() as usize;
    times[at].as_secs_f64() * 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

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
    o: &Options,
) -> Result<Measure> {
    let (rate, loaded_p99) = rt.block_on(daemon_throughput(program, fixture, o))?;
    let mut m = Measure {
        rate,
        loaded_p99,
        ..Measure::default()
    };
    if o.latency_count > 0 {
        m.latencies(rt.block_on(daemon_latency(program, fixture, o))?);
    }
    Ok(m)
}

fn round(rts: &Runtimes, program: &Path, fixture: &Path, o: &Options) -> Result<[Measure; 3]> {
    let mut raw = Measure {
        rate: raw_throughput(program, fixture, o)?,
        ..Measure::default()
    };
    if o.latency_count > 0 {
        raw.latencies(raw_latency(program, fixture, o)?);
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
    let o = options()?;
    let (program, fixture) = backend()?;
    let runtimes = Runtimes {
        current: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?,
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
    for n in 1..=o.rounds {
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
    println!("median of {} rounds:", o.rounds);
    for (i, (name, m)) in NAMES.iter().zip(&medians).enumerate() {
        let raw = (i > 0).then_some(&medians[0]);
        println!("  {}", m.show(name, raw));
    }
    println!("goal: the daemon at least 80% of the raw lookups/s");
    Ok(())
}
