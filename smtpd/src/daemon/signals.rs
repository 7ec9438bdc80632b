//! The signals that end the daemon: SIGTERM and SIGINT, caught from the
//! start so that one arriving while tables start still drains cleanly.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT, caught.
pub(super) struct Termination {
    term: Signal,
    int: Signal,
}

impl Termination {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub(super) fn catch() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal and says which came.
    pub(super) async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
