//! The intake gate: whether new SMTP sessions are accepted (`smtpctl
//! pause smtp` / `resume smtp`), and the session counters of `smtpctl show
//! stats` and `monitor`.
//!
//! While the gate is paused the accept loops stop accepting, as
//! OpenSMTPD disables its listeners: new connections wait in the kernel's
//! backlog and get their greeting once intake resumes; sessions in
//! progress go on. The control server refuses local submissions
//! meanwhile. Every session, from a listener or from the control socket,
//! holds a [`SessionCount`] for its lifetime.
//!
//! The gate also bounds the sessions open at once, as OpenSMTPD 7.8 does
//! (`smtp_can_accept`, `smtp_collect`): at most [`session_limit`] of
//! them, from the descriptor limit of the process (`RLIMIT_NOFILE`: half
//! of it, less OpenSMTPD's reserve; smtpd.conf has no setting for it).
//! When that many are open, the accept loops stop accepting
//! ([`Gate::room`]; new clients wait in the backlog, unanswered) and log
//! `warn: Disabling incoming SMTP connections: Client limit reached`;
//! when a session ends they accept again, logging `warn: smtp: fd
//! exhaustion over, re-enabling incoming connections`. Local submissions
//! count but are never refused for it. No 421 is sent: a client that
//! could not be served waits, as with OpenSMTPD.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// OpenSMTPD's `SMTP_FD_RESERVE`: descriptors kept for everything else.
const FD_RESERVE: u64 = 5;

/// The most sessions open at once for a process allowed `nofile`
/// descriptors: OpenSMTPD's `maxsessions` (`nofile / 2 - 5`, each session
/// counted for a socket and a message file) less one, as it stops
/// accepting when one more session would reach `maxsessions`. At least
/// one.
pub(super) fn limit_for(nofile: u64) -> u64 {
    (nofile / 2).saturating_sub(FD_RESERVE + 1).max(1)
}

/// [`limit_for`] the process's soft `RLIMIT_NOFILE` now (as OpenSMTPD's
/// `getdtablesize()`); no limit when it cannot be read or is infinite.
pub(super) fn session_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit_for(limit.rlim_cur)
}

/// The pause switch and the session counters, shared by the accept loops
/// and the control server. Clones share one gate.
#[derive(Debug, Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    paused: watch::Sender<bool>,
    /// Sessions opened and closed, per [`Family`], and over SMTPS.
    opened: [AtomicU64; 4],
    closed: [AtomicU64; 4],
    /// The most sessions open at once before accepting stops.
    limit: u64,
    /// Accepting stopped at the limit (for the log lines).
    full: AtomicBool,
    /// Told whenever a session ends.
    ended: Notify,
}

/// Where a session's client is, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A local submission (`sendmail`).
    Local,
    /// An IPv4 client.
    Inet4,
    /// An IPv6 client.
    Inet6,
}

/// Sessions counted since start: how many opened and how many closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Opened.
    pub opened: u64,
    /// Closed.
    pub closed: u64,
}

impl Sessions {
    /// The sessions open now.
    pub fn current(self) -> u64 {
        self.opened.saturating_sub(self.closed)
    }
}

/// The session counters: all sessions, per family, and SMTPS ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Every session.
    pub all: Sessions,
    /// Local submissions.
    pub local: Sessions,
    /// IPv4 clients.
    pub inet4: Sessions,
    /// IPv6 clients.
    pub inet6: Sessions,
    /// Sessions of `smtps` listeners.
    pub smtps: Sessions,
}

/// Index of the SMTPS counters after the families'.
const SMTPS: usize = 3;

impl Default for Gate {
    fn default() -> Self {
        Self::with_limit(u64::MAX)
    }
}

impl Gate {
    /// An open gate with zero counters and no session limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An open gate that stops accepting at `limit` open sessions.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                paused: watch::Sender::new(false),
                opened: Default::default(),
                closed: Default::default(),
                limit,
                full: AtomicBool::new(false),
                ended: Notify::new(),
            }),
        }
    }

    /// The most sessions open at once.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// The sessions open now.
    fn open_now(&self) -> u64 {
        let sum = |counts: &[AtomicU64; 4]| -> u64 {
            counts[..SMTPS]
                .iter()
                .map(|c| c.load(Ordering::SeqCst))
                .sum()
        };
        sum(&self.inner.opened).saturating_sub(sum(&self.inner.closed))
    }

    /// Resolves once another session may be accepted (at once if one
    /// may): fewer than the limit are open. Logs when accepting stops.
    pub(crate) async fn room(&self) {
        loop {
            let ended = self.inner.ended.notified();
            tokio::pin!(ended);
            // Registered before the check, so an end in between wakes it.
            ended.as_mut().enable();
            if self.open_now() < self.inner.limit {
                return;
            }
            if !self.inner.full.swap(true, Ordering::SeqCst) {
                tracing::warn!("warn: Disabling incoming SMTP connections: Client limit reached");
            }
            ended.await;
        }
    }

    /// Waits, after `accept` failed for want of descriptors, until a
    /// session ends (or a second passed: descriptors may free elsewhere).
    pub(crate) async fn exhausted(&self, error: &std::io::Error) {
        let ended = self.inner.ended.notified();
        if !self.inner.full.swap(true, Ordering::SeqCst) {
            tracing::warn!("warn: Disabling incoming SMTP connections: {error}");
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ended).await;
    }

    /// A session ended: accepting resumes if it had stopped.
    fn ended(&self) {
        if self.open_now() < self.inner.limit && self.inner.full.swap(false, Ordering::SeqCst) {
            tracing::warn!("warn: smtp: fd exhaustion over, re-enabling incoming connections");
        }
        self.inner.ended.notify_waiters();
    }

    /// Stops accepting sessions; `false` when already paused.
    pub fn pause(&self) -> bool {
        self.inner
            .paused
            .send_if_modified(|paused| !std::mem::replace(paused, true))
    }

    /// Accepts sessions again; `false` when not paused.
    pub fn resume(&self) -> bool {
        self.inner
            .paused
            .send_if_modified(|paused| std::mem::replace(paused, false))
    }

    /// Whether sessions are refused now.
    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// Resolves once the gate is open (at once if it is).
    pub(crate) async fn opened(&self) {
        let mut rx = self.inner.paused.subscribe();
        // The sender lives in `self`: the channel cannot close here.
        let _ = rx.wait_for(|paused| !paused).await;
    }

    /// Resolves once the gate is paused (at once if it is).
    pub(crate) async fn paused(&self) {
        let mut rx = self.inner.paused.subscribe();
        let _ = rx.wait_for(|paused| *paused).await;
    }

    /// Counts a session opening; it is counted closed when the returned
    /// value is dropped.
    pub fn session(&self, family: Family, smtps: bool) -> SessionCount {
        let count = SessionCount {
            gate: self.clone(),
            family,
            smtps,
        };
        for i in count.indexes() {
            self.inner.opened[i].fetch_add(1, Ordering::SeqCst);
        }
        count
    }

    /// The counters now.
    pub fn counters(&self) -> SessionCounters {
        let read = |i: usize| Sessions {
            opened: self.inner.opened[i].load(Ordering::Relaxed),
            closed: self.inner.closed[i].load(Ordering::Relaxed),
        };
        let families = [read(0), read(1), read(2)];
        SessionCounters {
            all: Sessions {
                opened: families.iter().map(|s| s.opened).sum(),
                closed: families.iter().map(|s| s.closed).sum(),
            },
            local: families[Family::Local as usize],
            inet4: families[Family::Inet4 as usize],
            inet6: families[Family::Inet6 as usize],
            smtps: read(SMTPS),
        }
    }
}

/// One open session, counted closed when dropped.
#[derive(Debug)]
pub struct SessionCount {
    gate: Gate,
    family: Family,
    smtps: bool,
}

impl SessionCount {
    fn indexes(&self) -> impl Iterator<Item = usize> {
        std::iter::once(self.family as usize).chain(self.smtps.then_some(SMTPS))
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        for i in self.indexes() {
            self.gate.inner.closed[i].fetch_add(1, Ordering::SeqCst);
        }
        self.gate.ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pausing_twice_or_resuming_an_open_gate_changes_nothing() {
        let gate = Gate::new();
        assert!(!gate.is_paused());
        assert!(!gate.resume());
        assert!(gate.pause());
        assert!(gate.is_paused());
        // Clones share the switch.
        let other = gate.clone();
        assert!(!other.pause());
        assert!(other.resume());
        assert!(!gate.is_paused());
        assert!(gate.pause());
        assert!(gate.resume());
        assert!(!gate.is_paused());
    }

    #[tokio::test]
    async fn waiters_see_the_switch() {
        let gate = Gate::new();
        gate.opened().await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.paused().await }
        });
        assert!(gate.pause());
        waiting.await.unwrap();
        let reopened = tokio::spawn({
            let gate = gate.clone();
            async move { gate.opened().await }
        });
        assert!(gate.resume());
        reopened.await.unwrap();
    }

    #[test]
    fn sessions_are_counted_until_dropped() {
        let gate = Gate::new();
        let a = gate.session(Family::Inet4, false);
        let b = gate.session(Family::Inet6, true);
        let c = gate.session(Family::Local, false);
        drop(b);
        let counters = gate.counters();
        assert_eq!(
            counters.all,
            Sessions {
                opened: 3,
                closed: 1
            }
        );
        assert_eq!(counters.all.current(), 2);
        assert_eq!(
            counters.inet4,
            Sessions {
                opened: 1,
                closed: 0
            }
        );
        assert_eq!(
            counters.inet6,
            Sessions {
                opened: 1,
                closed: 1
            }
        );
        assert_eq!(
            counters.local,
            Sessions {
                opened: 1,
                closed: 0
            }
        );
        assert_eq!(
            counters.smtps,
            Sessions {
                opened: 1,
                closed: 1
            }
        );
        drop((a, c));
        assert_eq!(gate.counters().all.current(), 0);
    }

    #[test]
    fn the_limit_follows_the_descriptors() {
        // OpenSMTPD's maxsessions is nofile / 2 - 5; it accepts while one
        // more session stays below it.
        assert_eq!(limit_for(1024), 506);
        assert_eq!(limit_for(128), 58);
        assert_eq!(limit_for(0), 1);
        let limit = session_limit();
        assert!(limit >= 1);
        assert_eq!(Gate::new().limit(), u64::MAX);
    }

    #[tokio::test]
    async fn accepting_waits_for_room() {
        let gate = Gate::with_limit(2);
        gate.room().await;
        let a = gate.session(Family::Inet4, false);
        gate.room().await;
        // A local submission counts too.
        let b = gate.session(Family::Local, false);
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.room().await }
        });
        // Give the waiter every chance to run: it must still wait.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        assert!(gate.inner.full.load(Ordering::SeqCst));
        drop(b);
        waiting.await.unwrap();
        assert!(!gate.inner.full.load(Ordering::SeqCst));
        drop(a);
        gate.room().await;
    }
}
