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
//! given the standard fixture's keys to look up.
//!
//! Not a criterion benchmark (`harness = false`): the work is in another
//! process, and one long run per backend says more than many short ones.

// Measuring wall-clock time is the point of a benchmark; spawning the
// backend is its input.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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

fn request(id: u32, key: &str) -> String {
    format!("table|0.1|1731000001.000412|standard|lookup|alias|{id:08x}|{key}\n")
}

/// Spawns the backend and performs the handshake.
fn start(cmd: &mut Command) -> Result<(Child, ChildStdin, BufReader<ChildStdout>)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning the backend")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut stdout = BufReader::with_capacity(256 * 1024, stdout);
    stdin.write_all(
        b"config|smtpd-version|7.8.0\nconfig|protocol|0.1\nconfig|tablename|standard\nconfig|ready\n",
    )?;
    stdin.flush()?;
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line)? == 0 {
            bail!("the backend closed its output during the handshake");
        }
        match line.trim_end() {
            "register|ready" => break,
            l if l.starts_with("register|") => {}
            l => bail!("unexpected handshake line {l:?}"),
        }
    }
    Ok((child, stdin, stdout))
}

/// Checks one answer: its id must be in flight and its status must be what
/// the fixture says for the key sent with that id.
fn check(line: &[u8], count: usize) -> Result<()> {
    let text = std::str::from_utf8(line).context("answer not UTF-8")?;
    let rest = text
        .strip_prefix("lookup-result|")
        .with_context(|| format!("unexpected answer {text:?}"))?;
    let (id, status) = rest.split_at_checked(8).context("short answer")?;
    let id = usize::from_str_radix(id, 16).context("bad id")?;
    if id >= count {
        bail!("unknown id in {text:?}");
    }
    let found = KEYS[id % KEYS.len()].1;
    let ok = if found {
        status.starts_with("|found|")
    } else {
        status == "|not-found\n"
    };
    if !ok {
        bail!("wrong answer {text:?}");
    }
    Ok(())
}

fn throughput(cmd: &mut Command, o: &Options) -> Result<f64> {
    let (mut child, mut stdin, mut stdout) = start(cmd)?;
    let requests: Vec<String> = (0..o.count)
        .map(|i| request(i as u32, KEYS[i % KEYS.len()].0))
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
            if stdout.read_until(b'\n', &mut line)? == 0 {
                bail!("the backend closed its output");
            }
            check(&line, count)?;
            if n % step == 0 {
                // The writer may be done already; then nobody listens.
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
        stdin.write_all(&batch)?;
        stdin.flush()?;
        sent += n;
        credit -= n;
    }
    let mut stdout = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let elapsed = began.elapsed();
    finish(&mut child, stdin, &mut stdout)?;
    Ok(count as f64 / elapsed.as_secs_f64())
}

fn latency(cmd: &mut Command, o: &Options) -> Result<(Duration, Duration)> {
    let (mut child, mut stdin, mut stdout) = start(cmd)?;
    let mut times = Vec::with_capacity(o.latency_count);
    let mut line = Vec::with_capacity(256);
    for i in 0..o.latency_count {
        let req = request(i as u32, KEYS[i % KEYS.len()].0);
        let began = Instant::now();
        stdin.write_all(req.as_bytes())?;
        stdin.flush()?;
        line.clear();
        if stdout.read_until(b'\n', &mut line)? == 0 {
            bail!("the backend closed its output");
        }
        times.push(began.elapsed());
        check(&line, o.latency_count)?;
    }
    finish(&mut child, stdin, &mut stdout)?;
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.50), at(0.99)))
}

/// Closes the backend's input and checks that it exits 0 with nothing more
/// to say.
fn finish(child: &mut Child, stdin: ChildStdin, stdout: &mut BufReader<ChildStdout>) -> Result<()> {
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        bail!("{} unexpected bytes after the last answer", rest.len());
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("the backend exited with {status}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let o = options()?;
    for (name, mut cmd) in backends(&o)? {
        let rate = throughput(&mut cmd, &o).with_context(|| format!("{name}: throughput"))?;
        println!(
            "{name}: {} lookups, up to {} in flight: {rate:.0} lookups/s",
            o.count, o.window
        );
        if o.latency_count > 0 {
            let (p50, p99) = latency(&mut cmd, &o).with_context(|| format!("{name}: latency"))?;
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
