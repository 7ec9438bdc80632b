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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

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
        Self {
            inner: Arc::new(Inner {
                paused: watch::Sender::new(false),
                opened: Default::default(),
                closed: Default::default(),
            }),
        }
    }
}

impl Gate {
    /// An open gate with zero counters.
    pub fn new() -> Self {
        Self::default()
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
            self.inner.opened[i].fetch_add(1, Ordering::Relaxed);
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
            self.gate.inner.closed[i].fetch_add(1, Ordering::Relaxed);
        }
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
}
