//! The sessions' side of the daemon's shutdown.
//!
//! Every session, from a listener or from the control socket
//! (`sendmail`), holds a receiver of [`LiveSessions`] for its lifetime and runs
//! with [`crate::smtp::conn::run_draining`]. [`LiveSessions::drain`] (called
//! by [`super::Intake::stop`] once the accept loops stopped) moves them to
//! [`Drain::Finish`]: idle sessions get 421 at once, sessions in a
//! transaction may finish it; it waits until every session ended, at most
//! [`SESSION_GRACE`], then moves the rest to [`Drain::Close`] (421, the
//! message in progress dropped, so never acknowledged) and waits
//! [`CLOSE_GRACE`] more for them to end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::smtp::conn::Drain;

/// How long sessions may go on finishing their transaction after SIGTERM.
pub const SESSION_GRACE: Duration = Duration::from_secs(10);

/// How long sessions told to close may take to do it.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The shutdown signal of the sessions; clones share it.
#[derive(Debug, Clone)]
pub struct LiveSessions {
    tx: Arc<watch::Sender<Drain>>,
}

impl Default for LiveSessions {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Drain::Serve)),
        }
    }
}

impl LiveSessions {
    /// No session yet, serving.
    pub fn new() -> Self {
        Self::default()
    }

    /// What one session follows (and holds while it runs).
    pub fn follow(&self) -> watch::Receiver<Drain> {
        self.tx.subscribe()
    }

    /// The sessions running now.
    pub fn running(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Tells the sessions to finish, and waits until they ended: see the
    /// module documentation. Returns how many were still running in the
    /// end (abandoned with the runtime).
    pub async fn drain(&self, grace: Duration, close_grace: Duration) -> usize {
        self.tx.send_replace(Drain::Finish);
        if tokio::time::timeout(grace, self.tx.closed()).await.is_ok() {
            return 0;
        }
        tracing::info!(
            "{} session(s) still running after {} s, closing them",
            self.running(),
            grace.as_secs()
        );
        self.tx.send_replace(Drain::Close);
        let _ = tokio::time::timeout(close_grace, self.tx.closed()).await;
        self.running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn finishing_sessions_are_waited_for_and_stragglers_closed() {
        let sessions = LiveSessions::new();
        // One session ends as soon as it is told to finish, one only when
        // told to close, one never.
        let mut quick = sessions.follow();
        tokio::spawn(async move {
            let _ = quick.wait_for(|d| *d == Drain::Finish).await;
        });
        let mut slow = sessions.follow();
        let closed = tokio::spawn(async move {
            let _ = slow.wait_for(|d| *d == Drain::Close).await;
            tokio::time::Instant::now()
        });
        assert_eq!(sessions.running(), 2);
        let start = tokio::time::Instant::now();
        assert_eq!(
            sessions
                .drain(Duration::from_secs(10), Duration::from_secs(5))
                .await,
            0
        );
        assert_eq!(closed.await.unwrap() - start, Duration::from_secs(10));

        let stuck = sessions.follow();
        let start = tokio::time::Instant::now();
        let left = sessions
            .drain(Duration::from_secs(10), Duration::from_secs(5))
            .await;
        assert_eq!(left, 1);
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(15));
        drop(stuck);
    }

    #[tokio::test]
    async fn without_sessions_nothing_is_waited_for() {
        let sessions = LiveSessions::new();
        let drained = sessions.drain(Duration::from_secs(3600), Duration::from_secs(3600));
        assert_eq!(drained.await, 0);
    }
}
