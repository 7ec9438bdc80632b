//! SMTP intake: the listening sockets of `listen on` and the sessions they
//! accept, from the first byte to a message committed in the queue.
//!
//! [`start`] binds every address of every listener (`listen.rs`; names are
//! resolved without DNS: `localhost`, interface names and `*` through
//! `getifaddrs(3)`), logs `listening on ADDR:PORT` for each, and spawns one
//! accept loop per socket. Each connection runs [`crate::smtp::conn::run`]
//! with a `handler.rs` [`IntakeHandler`]: recipients are checked with
//! [`crate::rules::decide`], the message is written to the queue in chunks
//! behind its `Received:` header, and 250 is answered only once the
//! queue's commit returned, with one envelope per accepted recipient.
//! `date.rs` formats the header's date.
//! The accept loops wait while the [`Gate`] (`gate.rs`) is paused
//! (`smtpctl pause smtp`) or as many sessions are open as the descriptor
//! limit allows (OpenSMTPD's session limit); it also counts sessions for
//! `smtpctl show stats`.
//!
//! The socket listener (`local.rs`, `listen on socket`) has no socket of
//! its own: its sessions come from the control socket, where `sendmail`
//! asks for one ([`crate::control`]), and from the offline queue, drained
//! at start (`offline.rs`: [`OfflineQueue`]). Their [`Source`] is a local
//! user (`source.rs`: the one client type for rules, envelopes and
//! headers), and their messages get missing `Date:` and `Message-ID:`
//! headers (`headers.rs`).
//!
//! Before the greeting, each session reads the PROXY v2 header on a
//! `proxy-v2` listener (`proxy.rs`), looks up its client's reverse name
//! and FCrDNS once with [`Shared::resolver`] ([`crate::dns`], bounded in
//! time; the name goes into the `Received:` header and each envelope's
//! `hostname:`, `<unknown>` when there is none), then its server name in
//! the listener's `hostnames` table (`hostnames.rs`).
//!
//! The other listener options that act on a session: `senders` checks an
//! authenticated user's MAIL FROM (`senders.rs`) and with `masquerade`
//! rewrites `From:` (`masquerade.rs`). Every message is cut at 100
//! `Received:` headers (`hops.rs`).
//!
//! A listener with `filter NAME` gives each session its filters
//! ([`crate::filter::Filters::session`]): phases, reports and the
//! data-line stream run through the handler (`filtered.rs`); a listener
//! without one pays nothing for them.
//!
//! Not done here yet: AUTH against system accounts (a
//! listener's `auth` without a table refuses every login).

pub(crate) mod date;
mod drain;
mod filtered;
mod gate;
mod handler;
mod headers;
mod hops;
mod hostnames;
mod listen;
mod local;
mod masquerade;
mod message;
mod offline;
mod proxy;
mod senders;
mod source;

use std::io;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::config::Config;
use crate::dns::Resolver;
use crate::queue::QueueBackend;
use crate::smtp::tls;
use crate::table::Tables;

pub use drain::{LiveSessions, CLOSE_GRACE, SESSION_GRACE};
pub use gate::{Family, Gate, SessionCount, SessionCounters, Sessions};
pub use handler::IntakeHandler;
pub use listen::resolve;
pub use local::LocalListener;
pub use offline::OfflineQueue;
pub use source::Source;

/// What every session of the daemon shares.
pub struct Shared {
    /// The configuration.
    pub config: Arc<Config>,
    /// The live tables.
    pub tables: Tables,
    /// The queue messages are committed to.
    pub queue: Arc<dyn QueueBackend>,
    /// The server name, for listeners without `hostname`.
    pub server_name: String,
    /// The resolver for clients' reverse names.
    pub resolver: Resolver,
    /// The scheduler, told about every committed envelope.
    pub scheduler: crate::scheduler::Handle,
    /// How expansion reads `.forward` and include files (through the
    /// privileged helper when the daemon was started as root).
    pub files: Arc<dyn crate::delivery::expand::ExpansionFiles>,
    /// The filter processes and chains.
    pub filters: crate::filter::Filters,
}

/// Why intake could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener's address cannot be resolved.
    #[error("listen on {name}: {reason}")]
    Resolve {
        /// The name in the configuration.
        name: String,
        /// Why.
        reason: String,
    },
    /// A socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address and port.
        addr: std::net::SocketAddr,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A listener's TLS configuration is unusable.
    #[error("listen on port {port}: {source}")]
    Tls {
        /// The listener's port.
        port: u16,
        /// What is wrong.
        #[source]
        source: tls::Error,
    },
}

/// The running intake: its accept loops, and the socket listener.
pub struct Intake {
    loops: JoinSet<()>,
    local: LocalListener,
    gate: Gate,
    sessions: LiveSessions,
}

/// Binds every listener of `shared.config` and starts accepting.
pub async fn start(shared: Arc<Shared>) -> Result<Intake, Error> {
    let sessions = LiveSessions::new();
    let local = LocalListener::new(Arc::clone(&shared), sessions.clone())?;
    let bound = listen::bind_all(&shared).await?;
    let mut loops = JoinSet::new();
    let gate = Gate::with_limit(gate::session_limit());
    tracing::debug!("smtp: will accept at most {} clients", gate.limit());
    for (socket, listener) in bound {
        let shared = Arc::clone(&shared);
        let (gate, sessions) = (gate.clone(), sessions.clone());
        loops.spawn(listen::accept_loop(
            socket, listener, shared, gate, sessions,
        ));
    }
    Ok(Intake {
        loops,
        local,
        gate,
        sessions,
    })
}

impl Intake {
    /// The socket listener, for the sessions `sendmail` asks the control
    /// socket for.
    pub fn local(&self) -> LocalListener {
        self.local.clone()
    }

    /// The switch of `smtpctl pause smtp` and the session counters.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Sends, in the background, the submissions of the offline queue
    /// (opened early, while the daemon could read them).
    pub fn drain_offline(&mut self, offline: OfflineQueue) {
        if !offline.is_empty() {
            self.loops.spawn(offline.drain(self.local()));
        }
    }

    /// Stops accepting connections, then lets the sessions in progress
    /// finish their transaction within [`SESSION_GRACE`] ([`LiveSessions`]:
    /// new commands get 421; the rest are closed).
    pub async fn stop(mut self) {
        self.loops.abort_all();
        while self.loops.join_next().await.is_some() {}
        let running = self.sessions.running();
        if running > 0 {
            tracing::info!("waiting for {running} session(s) to finish");
        }
        let left = self.sessions.drain(SESSION_GRACE, CLOSE_GRACE).await;
        if left > 0 {
            tracing::warn!("{left} session(s) did not end, dropped");
        }
    }
}
