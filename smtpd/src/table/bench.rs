//! Shared driver for the table-lookup benchmarks that go through the
//! daemon's own proc-exec table client.
//!
//! The daemon's table benchmark (`smtpd/benches/table_lookups.rs`) and the
//! backends' (`backends/table-*/benches/lookups.rs`) measure the same
//! thing: a backend started by [`ProcExecTable::start`] (the supervisor of
//! `crate::proc`), with a window of tasks each calling [`Table::lookup`]
//! in turn, then lookups one at a time. [`DaemonLookups`] does that run,
//! checking every answer against a key list; [`parse_args`], [`Load`],
//! [`parse_rounds`], [`current_thread`], [`percentile`], [`median`],
//! [`latency_summary`] and [`raw_summary`] are the argument parsing,
//! runtime, statistics and printing they share. The raw round trip over
//! the pipes, which they compare with, is `smtpd_conformance::roundtrip`.
//! Nothing in the daemon itself uses this module.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ProcExecTable, Service, Table, TABLE_REQUEST_TIMEOUT};
use crate::proc::Spec;

/// A failed run, described.
pub type Error = String;

/// How many lookups a benchmark makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Lookups with `window` in flight (`--count`).
    pub count: usize,
    /// Lookups in flight (`--window`).
    pub window: usize,
    /// Lookups one at a time (`--latency-count`).
    pub latency_count: usize,
}

impl Load {
    /// `count` lookups with `window` in flight, `latency_count` one at a
    /// time.
    pub const fn new(count: usize, window: usize, latency_count: usize) -> Self {
        Self {
            count,
            window,
            latency_count,
        }
    }

    /// Rounds `count` down to whole windows (every task makes as many
    /// lookups); `window` must be positive and `count` at least `window`.
    pub const fn whole_windows(&mut self) {
        self.count -= self.count % self.window;
    }
}

/// Reads the arguments after the program name into `load`: `--count`,
/// `--window` and `--latency-count` take a number, `--bench` (which
/// `cargo bench` passes to every bench binary) is ignored. Any other
/// argument goes to `other` with a function that reads the next argument
/// as a number; `other` returns whether it knew the argument.
pub fn parse_args<I, F>(args: I, load: &mut Load, mut other: F) -> Result<(), Error>
where
    I: IntoIterator<Item = String>,
    F: FnMut(&str, &mut dyn FnMut(&str) -> Result<usize, Error>) -> Result<bool, Error>,
{
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, Error> {
            let v = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v}: {e}"))
        };
        match arg.as_str() {
            "--bench" => {}
            "--count" => load.count = number("--count")?,
            "--window" => load.window = number("--window")?,
            "--latency-count" => load.latency_count = number("--latency-count")?,
            name => {
                if !other(name, &mut number)? {
                    return Err(format!("unknown argument {name:?}"));
                }
            }
        }
    }
    Ok(())
}

/// The arguments of a benchmark made of rounds: those of [`parse_args`]
/// (defaults in `load`) and `--rounds` (default `rounds`). The window and
/// the rounds must be positive, the count at least the window; the count
/// is rounded down to whole windows.
pub fn parse_rounds<I>(args: I, mut load: Load, mut rounds: usize) -> Result<(Load, usize), Error>
where
    I: IntoIterator<Item = String>,
{
    parse_args(args, &mut load, |arg, number| {
        match arg {
            "--rounds" => rounds = number("--rounds")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if load.window == 0 || load.count < load.window || rounds == 0 {
        return Err("--window and --rounds must be positive, --count at least --window".into());
    }
    load.whole_windows();
    Ok((load, rounds))
}

/// A current-thread tokio runtime with I/O and time, for the daemon's side.
pub fn current_thread() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The `q` quantile (0 to 1) of `times`, in microseconds; sorts `times`,
/// which must not be empty.
pub fn percentile(times: &mut [Duration], q: f64) -> f64 {
    times.sort();
    let at = ((times.len() - 1) as f64 * q).round() as usize;
    times[at].as_secs_f64() * 1e6
}

/// The median of `values` (the upper one of an even count), which must
/// not be empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `one at a time p50 … us, p99 … us` for `times` (sorted on the way).
pub fn latency_summary(times: &mut [Duration]) -> String {
    format!(
        "one at a time p50 {:.1} us, p99 {:.1} us",
        percentile(times, 0.5),
        percentile(times, 0.99)
    )
}

/// `raw round trip: … lookups/s; one at a time …`: the raw figures as the
/// backends' benchmarks print them.
pub fn raw_summary(rate: f64, times: &mut [Duration]) -> String {
    format!(
        "raw round trip: {rate:.0} lookups/s; {}",
        latency_summary(times)
    )
}

/// What [`DaemonLookups::measure`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Lookups per second with the window in flight.
    pub rate: f64,
    /// The supervisor's own p99 under that load, in microseconds.
    pub loaded_p99: Option<u64>,
    /// Each lookup's time, one at a time (empty if none were asked for).
    pub times: Vec<Duration>,
}

impl Measured {
    /// `through the daemon: … lookups/s (…% of raw), p99 … us under load;
    /// one at a time …`, against `raw` lookups per second; sorts
    /// [`Self::times`], which must not be empty.
    pub fn summary(&mut self, raw: f64) -> String {
        format!(
            "through the daemon: {:.0} lookups/s ({:.1}% of raw), p99 {} us under load; {}",
            self.rate,
            100.0 * self.rate / raw,
            self.loaded_p99
                .map_or_else(|| "?".to_owned(), |p| p.to_string()),
            latency_summary(&mut self.times)
        )
    }
}

/// Lookups through the daemon's proc-exec table client, each answer
/// checked against a key list.
#[derive(Debug, Clone)]
pub struct DaemonLookups {
    /// The table's name.
    pub name: String,
    /// The backend's command line, as a `proc-exec` table would give it.
    pub command: String,
    /// The `n`th lookup is of `keys[n % keys.len()]`: the key, and whether
    /// the backend has it. Must not be empty.
    pub keys: &'static [(&'static str, bool)],
    /// Whether to make one lookup before each run, outside of it (for a
    /// backend that connects to its server on its first request).
    pub warm_up: bool,
}

impl DaemonLookups {
    /// Lookups of `keys` in table `name` served by `command`.
    pub fn new(
        name: impl Into<String>,
        command: impl Into<String>,
        keys: &'static [(&'static str, bool)],
    ) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            keys,
            warm_up: false,
        }
    }

    /// Makes one lookup before each run, outside of its measure.
    #[must_use]
    pub const fn warm_up(mut self) -> Self {
        self.warm_up = true;
        self
    }

    /// Starts the backend under the supervisor, and warms it up if asked.
    async fn table(&self) -> Result<Arc<ProcExecTable>, Error> {
        let spec = Spec::new(&self.name, self.command.clone(), "/", TABLE_REQUEST_TIMEOUT);
        let table = ProcExecTable::start(&self.name, format!("proc-exec {:?}", self.command), spec)
            .await
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
        if self.warm_up {
            check(&table, self.keys, 0).await?;
        }
        Ok(table)
    }

    /// [`Self::throughput`] then, if `load.latency_count` is not 0,
    /// [`Self::latencies`], each on a backend of its own started on `rt`.
    pub fn measure(&self, rt: &tokio::runtime::Runtime, load: &Load) -> Result<Measured, Error> {
        let (rate, loaded_p99) = rt.block_on(self.throughput(load.count, load.window))?;
        let times = if load.latency_count > 0 {
            rt.block_on(self.latencies(load.latency_count))?
        } else {
            Vec::new()
        };
        Ok(Measured {
            rate,
            loaded_p99,
            times,
        })
    }

    /// Prints the raw figures (`raw` lookups per second, `raw_times` one at
    /// a time: [`raw_summary`]), then [`Self::measure`]s on `rt` and prints
    /// that against them ([`Measured::summary`]); returns the lookups per
    /// second through the daemon.
    pub fn compare_with_raw(
        &self,
        rt: &tokio::runtime::Runtime,
        load: &Load,
        raw: f64,
        raw_times: &mut [Duration],
    ) -> Result<f64, Error> {
        println!("{}", raw_summary(raw, raw_times));
        let mut through = self.measure(rt, load)?;
        println!("{}", through.summary(raw));
        Ok(through.rate)
    }

    /// Lookups per second with `window` tasks each making `count / window`
    /// lookups in turn, and the supervisor's own p99 (microseconds) under
    /// that load. Fails on a wrong answer, or if the supervisor counted an
    /// error or a restart.
    pub async fn throughput(
        &self,
        count: usize,
        window: usize,
    ) -> Result<(f64, Option<u64>), Error> {
        let table = self.table().await?;
        let per_task = count / window.max(1);
        let keys = self.keys;
        let began = Instant::now();
        let tasks: Vec<_> = (0..window)
            .map(|w| {
                let table = Arc::clone(&table);
                tokio::spawn(async move {
                    for i in 0..per_task {
                        check(&table, keys, w * per_task + i).await?;
                    }
                    Ok::<_, Error>(())
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
        Ok((count as f64 / elapsed.as_secs_f64(), stats.p99_micros))
    }

    /// The time of each of `count` lookups made one at a time.
    pub async fn latencies(&self, count: usize) -> Result<Vec<Duration>, Error> {
        let table = self.table().await?;
        let mut times = Vec::with_capacity(count);
        for i in 0..count {
            let began = Instant::now();
            check(&table, self.keys, i).await?;
            times.push(began.elapsed());
        }
        table.shutdown().await;
        Ok(times)
    }
}

/// The `n`th lookup, its answer checked.
async fn check(
    table: &ProcExecTable,
    keys: &[(&'static str, bool)],
    n: usize,
) -> Result<(), Error> {
    let (key, found) = keys[n % keys.len()];
    match table.lookup(Service::Alias, key).await {
        Ok(value) if value.is_some() == found => Ok(()),
        Ok(value) => Err(format!("{key}: wrong answer {value:?}")),
        Err(e) => Err(format!("{key}: {e}")),
    }
}
