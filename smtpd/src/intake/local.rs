//! The socket listener (`listen on socket`): SMTP sessions of local users,
//! started by `sendmail` through the control socket
//! ([`crate::control::enqueue`]) and by the offline queue's drain at
//! start (`offline.rs`).
//!
//! Its sessions run the same handler as the network listeners', with the
//! source `local` and the submitting user's name: `from local` and `from
//! socket` rules match them, they count as authenticated (as that user),
//! their envelopes say `source: local`, and messages lacking `Date:` or
//! `Message-ID:` get them (`headers.rs`). The listener's options are
//! `listen on socket`'s: `mask-src`, `no-dsn`, `tag` and `filter` (its
//! reports' `link-connect` names both ends `unix:/var/run/smtpd.sock`).
//! Its host name is the server name.

use std::sync::Arc;

use super::handler::{IntakeHandler, ListenerContext};
use super::source::Source;
use super::{Error, LiveSessions, Shared};
use crate::config::{ListenAddress, Listener};
use crate::dns::{Fcrdns, PeerName};
use crate::smtp::conn::{self, BoxStream, ConnConfig, Handler};
use crate::smtp::Session;

/// The socket listener; cloning shares it.
#[derive(Clone)]
pub struct LocalListener {
    shared: Arc<Shared>,
    context: Arc<ListenerContext>,
    sessions: LiveSessions,
}

impl LocalListener {
    /// The listener of `shared.config.socket`, its sessions following
    /// `sessions` for the daemon's shutdown.
    pub(super) fn new(shared: Arc<Shared>, sessions: LiveSessions) -> Result<Self, Error> {
        let socket = &shared.config.socket;
        let listener = Listener {
            filter: socket.filter,
            mask_src: socket.mask_src,
            no_dsn: socket.no_dsn,
            tag: socket.tag.clone(),
            ..Listener::new(ListenAddress::Name("socket".to_owned()))
        };
        let context = ListenerContext::new(&shared, &listener)?.into_local();
        Ok(Self {
            shared,
            context: Arc::new(context),
            sessions,
        })
    }

    /// The listener's host name (the server name): bare addresses of
    /// offline submissions get it.
    pub(super) fn host_name(&self) -> String {
        self.context.session_config().hostname.clone()
    }

    /// Runs one session of local user `user` over `stream`, until it ends.
    pub async fn serve(&self, stream: BoxStream, user: String) {
        let source = Source::Local { user };
        tracing::debug!("connection from {source} on the local socket");
        let drain = self.sessions.follow();
        // As OpenSMTPD names a local client: the server, confirmed.
        let name = PeerName {
            rdns: Some(self.host_name()),
            fcrdns: Fcrdns::Pass,
        };
        let mut handler = IntakeHandler::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.context),
            source.clone(),
            name,
        );
        if let Some(filters) = (self.context.filter()).and_then(|f| self.shared.filters.session(f))
        {
            let socket = "unix:/var/run/smtpd.sock".to_owned();
            handler = handler.with_filters(filters, socket.clone(), socket);
        }
        let log = handler.log();
        log.connected(None, &self.host_name());
        let session = Session::new(self.context.session_config(), &source.peer().to_string());
        let config = ConnConfig::default();
        let outcome = conn::run_draining(stream, session, &mut handler, config, drain).await;
        // Whatever ended the session, a message not committed is dropped.
        handler.abort_message().await;
        handler.session_ended();
        log.disconnected(&outcome);
    }
}
