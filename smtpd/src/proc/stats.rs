//! Counters of one backend, for `smtpctl show tables`: requests, errors,
//! restarts, the running child's pid, and the 99th percentile of the
//! latency of recent answers (kept in a ring of the last
//! [`LATENCY_WINDOW`] answers measured; the supervisor measures one request
//! in eight, which keeps clock reads off the common path).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::Duration;

use super::padded::Padded;

/// How many recent answers the latency percentile is computed over.
pub(crate) const LATENCY_WINDOW: usize = 1024;

/// A snapshot of a backend's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The running child's pid, if one runs.
    pub pid: Option<u32>,
    /// Requests made since start-up.
    pub requests: u64,
    /// Requests that failed: error answers, malformed answers, timeouts,
    /// lost children, unavailable or overloaded backend.
    pub errors: u64,
    /// Times the child was restarted.
    pub restarts: u64,
    /// Requests in flight now.
    pub in_flight: usize,
    /// 99th percentile of the latency of recent answers, in microseconds.
    pub p99_micros: Option<u64>,
}

/// How many slots the request counter is spread over.
const SLOTS: usize = 16;

/// The slot of the calling thread.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|slot| *slot)
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pid: AtomicU32,
    /// Requests, counted per thread.
    requests: [Padded<AtomicU64>; SLOTS],
    errors: AtomicU64,
    restarts: AtomicU64,
    latencies: Mutex<Ring>,
}

impl Counters {
    pub(crate) fn set_pid(&self, pid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Ordering::Relaxed);
    }

    /// Counts a request; returns how many this thread counted before.
    pub(crate) fn request(&self) -> u64 {
        self.requests[slot()].0.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a latency, unless another thread is recording one (the
    /// ring holds samples anyway).
    pub(crate) fn answered_in(&self, latency: Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        match self.latencies.try_lock() {
            Ok(mut ring) => ring.push(micros),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().push(micros),
            Err(TryLockError::WouldBlock) => {}
        }
    }

    pub(crate) fn snapshot(&self, in_flight: usize) -> Stats {
        let pid = self.pid.load(Ordering::Relaxed);
        Stats {
            pid: (pid != 0).then_some(pid),
            requests: self
                .requests
                .iter()
                .map(|slot| slot.0.load(Ordering::Relaxed))
                .sum(),
            errors: self.errors.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            in_flight,
            p99_micros: self
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .percentile(99),
        }
    }
}

/// The latencies of the last answers, in microseconds.
#[derive(Debug, Default)]
struct Ring {
    values: Vec<u32>,
    next: usize,
}

impl Ring {
    fn push(&mut self, value: u32) {
        if self.values.len() < LATENCY_WINDOW {
            self.values.push(value);
        } else {
            self.values[self.next] = value;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
    }

    /// The smallest value that `percent` percent of the values do not
    /// exceed (nearest rank).
    fn percentile(&self, percent: usize) -> Option<u64> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        let rank = (sorted.len() * percent).div_ceil(100).max(1);
        let (_, value, _) = sorted.select_nth_unstable(rank - 1);
        Some(u64::from(*value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_by_nearest_rank_over_a_moving_window() {
        let mut ring = Ring::default();
        assert_eq!(ring.percentile(99), None);
        ring.push(5);
        assert_eq!(ring.percentile(99), Some(5));
        let mut ring = Ring::default();
        for v in 1..=100 {
            ring.push(v);
        }
        assert_eq!(ring.percentile(99), Some(99));
        assert_eq!(ring.percentile(50), Some(50));
        // Old values leave the window.
        for _ in 0..LATENCY_WINDOW {
            ring.push(7);
        }
        assert_eq!(ring.percentile(99), Some(7));
    }

    #[test]
    fn counters_snapshot() {
        let c = Counters::default();
        c.set_pid(Some(42));
        c.request();
        c.request();
        c.error();
        c.restart();
        c.answered_in(Duration::from_micros(1500));
        assert_eq!(
            c.snapshot(1),
            Stats {
                pid: Some(42),
                requests: 2,
                errors: 1,
                restarts: 1,
                in_flight: 1,
                p99_micros: Some(1500),
            }
        );
        c.set_pid(None);
        assert_eq!(c.snapshot(0).pid, None);
    }
}
