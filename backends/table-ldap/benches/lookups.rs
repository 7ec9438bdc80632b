//! Pipelined lookups through table-ldap, beside slapd's own rate for the
//! same searches from a plain LDAP client, on a server the benchmark starts.
//!
//! ```text
//! cargo bench -p table-ldap --bench lookups
//! cargo bench -p table-ldap --bench lookups -- --count 80000 --window 200 --no-perf
//! ```
//!
//! The server is a throwaway slapd (`tests/slapd`, mdb, `cn` indexed for
//! equality) holding the ten keys of the benchmark's list that should be
//! found plus `--entries` more, each a `nisMailAlias` with one
//! `rfc822MailMember`; the backend (built by `cargo bench` with the bench
//! profile) looks aliases up with `(&(objectClass=nisMailAlias)(cn=%u))`.
//! It measures:
//!
//! - **raw**: the backend driven over its pipes by
//!   `smtpd_conformance::roundtrip`, `--window` lookups in flight; then one
//!   at a time (p50, p99);
//! - **daemon**: the backend started by `ProcExecTable::start` (the
//!   daemon's supervisor and table client) on a current-thread runtime,
//!   `--window` tasks each calling `Table::lookup` in turn, and the
//!   supervisor's p99 under that load; then lookups one at a time;
//! - **server**: the same searches sent straight to slapd by an `ldap3`
//!   client (no backend in between), `--window` searches in flight: on one
//!   bound connection (as the backend has), then spread over
//!   `--connections`; then one connection, one search at a time;
//! - **profile** (when `/usr/bin/perf` exists and `--no-perf` is not
//!   given): the raw throughput run again under `perf record -a`, and the
//!   share of CPU samples per command (slapd, table-ldap, this benchmark,
//!   anything else on the machine), with the top symbols of the two that
//!   matter.
//!
//! slapd runs with `-d 0` (nothing logged); `--slapd-log` keeps the test
//! harness's `-d stats` (a log line per operation, which costs slapd
//! about a fifth of its rate), for the backend and the plain client alike.
//!
//! Not a criterion benchmark: the work is in other processes.

// Measuring wall-clock time is the point of a benchmark; spawning the
// backend, the server and perf is its input.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    clippy::unwrap_used
)]

#[path = "../tests/slapd/mod.rs"]
mod slapd;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, Scope};
use slapd::{ldif_line, Slapd, ROOT_DN, ROOT_PW, SUFFIX};
use smtpd::table::bench::{self, latency_summary, DaemonLookups, Load};
use smtpd_conformance::roundtrip::{self, expected, STANDARD_KEYS};

type Result<T> = std::result::Result<T, String>;

const PERF: &str = "/usr/bin/perf";
const FILTER_CLASS: &str = "nisMailAlias";
const MEMBER: &str = "rfc822MailMember";

struct Options {
    load: Load,
    connections: usize,
    entries: usize,
    perf: bool,
    slapd_log: bool,
}

fn options() -> Result<Options> {
    let mut load = Load {
        count: 40_000,
        window: 100,
        latency_count: 1_000,
    };
    let mut o = Options {
        load,
        connections: 3,
        entries: 1_000,
        perf: Path::new(PERF).exists(),
        slapd_log: false,
    };
    bench::parse_args(std::env::args().skip(1), &mut load, |arg, number| {
        match arg {
            "--connections" => o.connections = number("--connections")?,
            "--entries" => o.entries = number("--entries")?,
            "--no-perf" => o.perf = false,
            "--slapd-log" => o.slapd_log = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if load.window == 0 || load.count < load.window || load.latency_count == 0 || o.connections == 0
    {
        return Err(
            "--window, --latency-count, --connections must be positive, --count at least --window"
                .into(),
        );
    }
    load.whole_windows();
    o.load = load;
    Ok(o)
}

// ------------------------------------------------------------------ server

/// Starts slapd with `cn` indexed and loads the benchmark's entries.
fn server(o: &Options) -> Slapd {
    let mut slapd = Slapd::start();
    // The index must exist before the entries do (no slapindex run).
    slapd.stop();
    if !o.slapd_log {
        slapd.set_debug_level("0");
    }
    let conf = slapd.dir().join("slapd.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .expect("slapd.conf");
    file.write_all(b"index cn eq\n").expect("slapd.conf");
    drop(file);
    slapd.resume();

    let base = format!("ou=aliases,{SUFFIX}");
    let mut ldif = format!("dn: {base}\nobjectClass: organizationalUnit\nou: aliases\n\n");
    let found = STANDARD_KEYS
        .iter()
        .filter(|(_, found)| *found)
        .map(|(key, _)| (*key).to_owned());
    let filler = (0..o.entries).map(|i| format!("user{i:05}"));
    for key in found.chain(filler) {
        ldif.push_str(&ldif_line("dn", &format!("cn={key},{base}")));
        let _ = writeln!(ldif, "objectClass: {FILTER_CLASS}");
        ldif.push_str(&ldif_line("cn", &key));
        let _ = writeln!(ldif, "{MEMBER}: {}@example.net\n", key.len());
    }
    slapd.add(&ldif);
    slapd
}

fn filter(key: &str) -> String {
    assert!(!key.contains(['*', '(', ')', '\\', '\0']), "{key}");
    format!("(&(objectClass={FILTER_CLASS})(cn={key}))")
}

// ---------------------------------------------------- straight to slapd

async fn connect(url: &str) -> Result<Ldap> {
    let (conn, mut ldap) = LdapConnAsync::new(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            eprintln!("LDAP connection ended: {e}");
        }
    });
    ldap.simple_bind(ROOT_DN, ROOT_PW)
        .await
        .and_then(ldap3::LdapResult::success)
        .map_err(|e| format!("bind: {e}"))?;
    Ok(ldap)
}

async fn check_search(ldap: &mut Ldap, n: usize) -> Result<()> {
    let (key, found) = expected(n);
    let (entries, _) = ldap
        .search(SUFFIX, Scope::Subtree, &filter(key), vec![MEMBER])
        .await
        .and_then(ldap3::SearchResult::success)
        .map_err(|e| format!("search {key}: {e}"))?;
    if entries.len() == usize::from(found) {
        Ok(())
    } else {
        Err(format!("{key}: {} entries", entries.len()))
    }
}

async fn server_throughput(url: &str, connections: usize, o: &Load) -> Result<f64> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(connect(url).await?);
    }
    let per_task = o.count / o.window;
    let began = Instant::now();
    let tasks: Vec<_> = (0..o.window)
        .map(|w| {
            let mut ldap = conns[w % conns.len()].clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    check_search(&mut ldap, w * per_task + i).await?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let elapsed = began.elapsed();
    for mut ldap in conns {
        let _ = ldap.unbind().await;
    }
    Ok(o.count as f64 / elapsed.as_secs_f64())
}

async fn server_latency(url: &str, o: &Load) -> Result<Vec<Duration>> {
    let mut ldap = connect(url).await?;
    let mut times = Vec::with_capacity(o.latency_count);
    for i in 0..o.latency_count {
        let began = Instant::now();
        check_search(&mut ldap, i).await?;
        times.push(began.elapsed());
    }
    let _ = ldap.unbind().await;
    Ok(times)
}

// ------------------------------------------------------------------ perf

/// `perf record -a` into `data`, until [`perf_stop`].
fn perf_start(data: &Path) -> Result<Child> {
    let child = Command::new(PERF)
        .args(["record", "-a", "-q", "-o"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{PERF}: {e}"))?;
    // Let it set up its buffers before the work starts.
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

fn perf_stop(mut child: Child) -> Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    // SAFETY: kill has no memory preconditions; the pid is our child's,
    // not yet waited for.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().map_err(|e| e.to_string())?;
    // perf exits 0 or with the signal's status after writing its file.
    if status.success() || status.code() == Some(130) || status.code().is_none() {
        Ok(())
    } else {
        Err(format!("perf record: {status}"))
    }
}

/// One row of `perf report`: percent of all samples, command, the rest
/// (object or symbol).
struct Row {
    percent: f64,
    comm: String,
    what: String,
}

/// `perf report` sorted by command then `by` (`dso` or `sym`).
fn perf_report(data: &Path, by: &str) -> Result<Vec<Row>> {
    let out = Command::new(PERF)
        .args([
            "report",
            "--stdio",
            "-q",
            "--sort",
            &format!("comm,{by}"),
            "-i",
        ])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("perf report: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (percent, rest) = l.trim().split_once('%')?;
            let mut words = rest.split_whitespace();
            let comm = words.next()?.to_owned();
            Some(Row {
                percent: percent.trim().parse().ok()?,
                comm,
                what: words.collect::<Vec<_>>().join(" "),
            })
        })
        .collect())
}

/// The first `n` rows of `comm`, as percentages of its own samples.
fn top(rows: &[Row], comm: &str, n: usize) -> String {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.comm == comm).collect();
    let total: f64 = mine.iter().map(|r| r.percent).sum();
    mine.iter()
        .take(n)
        .map(|r| {
            format!(
                "{:.0}% {}",
                100.0 * r.percent / total.max(f64::MIN_POSITIVE),
                r.what
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn profile(raw_cmd: &mut Command, dir: &Path, o: &Load) -> Result<()> {
    let data = dir.join("perf.data");
    let perf = perf_start(&data)?;
    let run = roundtrip::throughput(raw_cmd, o.count, o.window);
    perf_stop(perf)?;
    let rate = run?;
    let objects = perf_report(&data, "dso")?;
    let share = |prefix: &str| -> f64 {
        objects
            .iter()
            .filter(|r| r.comm.starts_with(prefix))
            .map(|r| r.percent)
            .sum()
    };
    let idle = share("swapper");
    let (slapd, backend) = (share("slapd"), share("table-ldap"));
    let bench = share("lookups");
    let other = (100.0 - idle - slapd - backend - bench).max(0.0);
    println!(
        "profile (raw run again under perf record -a, {rate:.0} lookups/s), CPU samples \
         of both cores: slapd {slapd:.1}%, table-ldap {backend:.1}%, this driver {bench:.1}%, \
         other processes {other:.1}%, idle {idle:.1}%"
    );
    let symbols = perf_report(&data, "sym")?;
    for comm in ["slapd", "table-ldap"] {
        println!("  {comm} by object: {}", top(&objects, comm, 5));
        println!("  {comm} top symbols: {}", top(&symbols, comm, 5));
    }
    let _ = std::fs::remove_file(&data);
    Ok(())
}

fn main() -> Result<()> {
    let o = options()?;
    let program = Path::new(env!("CARGO_BIN_EXE_table-ldap"));
    let slapd = server(&o);
    let config = slapd.config(
        "bench.conf",
        &format!(
            "alias_filter (&(objectClass={FILTER_CLASS})(cn=%u))\nalias_attributes {MEMBER}\n"
        ),
    );
    let raw_cmd = || {
        let mut cmd = Command::new(program);
        cmd.arg(&config).env("RUST_LOG", "warn");
        cmd
    };
    // The backend connects on its first request: not part of the runs.
    let daemon = DaemonLookups::new(
        "ldap",
        format!("{} {}", program.display(), config.display()),
        STANDARD_KEYS,
    )
    .warm_up();
    let load = o.load;
    println!(
        "{} lookups with {} in flight, {} one at a time; {} + 10 entries; {} cores",
        load.count,
        load.window,
        load.latency_count,
        o.entries,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let raw = roundtrip::throughput(&mut raw_cmd(), load.count, load.window)?;
    let mut raw_times = roundtrip::latencies(&mut raw_cmd(), load.latency_count)?;
    let rt = bench::current_thread()?;
    let rate = daemon.compare_with_raw(&rt, &load, raw, &mut raw_times)?;

    let url = slapd.url();
    let single = rt.block_on(server_throughput(&url, 1, &load))?;
    let server = rt.block_on(server_throughput(&url, o.connections, &load))?;
    let mut server_times = rt.block_on(server_latency(&url, &load))?;
    println!(
        "server (ldap3 client, {} searches in flight): one connection {single:.0} searches/s, \
         {} connections {server:.0} searches/s; {}",
        load.window,
        o.connections,
        latency_summary(&mut server_times)
    );
    println!(
        "raw / server on one connection: {:.1}%, on {}: {:.1}%; through the daemon / server \
         on {}: {:.1}%",
        100.0 * raw / single,
        o.connections,
        100.0 * raw / server,
        o.connections,
        100.0 * rate / server
    );

    if o.perf {
        profile(&mut raw_cmd(), slapd.dir(), &load)?;
    }
    Ok(())
}
