//! The [`Handler`] of intake sessions: the rules for each recipient, the
//! queue for the message, the listener's TLS configuration and
//! credentials table.
//!
//! The message is created in the queue at DATA (at MAIL FROM when the
//! listener's filters include processes, whose reports carry its id) and
//! written in chunks of [`CHUNK`](super::message::CHUNK) bytes
//! (`message.rs`), the `Received:` header first. At the end of DATA the
//! remainder is written, one envelope is created per accepted recipient
//! (`type: mda` for a local action, `mta` for a relay), and the message is
//! committed; only then does the session answer 250. Any queue failure
//! drops the message and answers the queue's 4xx (452 for a full disk).
//!
//! On a listener with `filter NAME` the session's filters
//! ([`crate::filter::SessionFilters`], state in `filtered.rs`) are asked
//! at each phase; when some of them filter `data-line`, the message (the
//! `Received:` header first, `X-Spam: Yes` before it for junk) goes
//! through them line by line and what comes back is what is written, as
//! if the client had sent it, by a task that writes it as it comes
//! (`filtered.rs`); the `commit` phase runs once the message came back
//! whole, before the queue's commit.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::filtered::{FilterState, Filtering};
use super::headers::MissingHeaders;
use super::masquerade::Masquerade;
use super::message::Message;
use super::source::Source;
use super::{date, hostnames, senders, Error, Shared};
use crate::config::{Listener, ListenerTls};
use crate::delivery::expand::{Delivery, Expander, Failure};
use crate::dns::{Fcrdns, PeerName};
use crate::filter::builtin::Facts as FilterFacts;
use crate::filter::{SessionFilters, Verdict};
use crate::log::SessionLog;
use crate::queue::envelope::{self as qenv, Flags, MailAddr};
use crate::queue::{self, unix_now, MsgId};
use crate::rules::{self, Address};
use crate::scheduler::driver;
use crate::smtp::conn::{BoxStream, Handler, Notice};
use crate::smtp::tls::ServerTls;
use crate::smtp::{
    credentials, AuthMode, Credentials, Enhanced, Limits, MailFrom, Mailbox, Notify, RcptTo,
    Received, Reply, Ret, ReversePath, Session, SessionConfig, TlsInfo, TlsMode, Transaction,
};
use crate::table::Service;
use smtpd_sdk::proto::filter::Phase;

/// How long a client has to finish a TLS handshake.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a listener's sessions share beyond the [`SessionConfig`].
pub struct ListenerContext {
    listener: Listener,
    session: Arc<SessionConfig>,
    tls: Option<ServerTls>,
    /// Messages get missing `Date:` and `Message-ID:` headers: on the
    /// socket listener, on loopback listeners and on port 587, as in
    /// OpenSMTPD (smtpd-conf.md section 5.2).
    local: bool,
}

impl ListenerContext {
    /// The context of `listener`: its session settings and TLS acceptor.
    pub(super) fn new(shared: &Shared, listener: &Listener) -> Result<Self, Error> {
        let config = &shared.config;
        let tls = match listener.tls {
            ListenerTls::None => None,
            _ => Some(
                ServerTls::for_listener(config, listener).map_err(|source| Error::Tls {
                    port: listener.port,
                    source,
                })?,
            ),
        };
        let mut session = SessionConfig::new(
            listener
                .hostname
                .as_deref()
                .unwrap_or(shared.server_name.as_str()),
        );
        session.limits = Limits {
            max_message_size: config.smtp.max_message_size,
            max_recipients: usize::try_from(config.smtp.max_rcpt).unwrap_or(usize::MAX),
            max_mails: usize::try_from(config.smtp.max_mails).unwrap_or(usize::MAX),
        };
        session.tls = match listener.tls {
            ListenerTls::None => TlsMode::None,
            ListenerTls::StartTls => TlsMode::StartTls,
            ListenerTls::StartTlsRequired => TlsMode::Required,
            ListenerTls::Smtps => TlsMode::Smtps,
        };
        session.auth = match listener.auth {
            None => AuthMode::None,
            Some(auth) if auth.required => AuthMode::Required,
            Some(_) => AuthMode::Optional,
        };
        session.dsn = !listener.no_dsn;
        Ok(Self {
            listener: listener.clone(),
            session: Arc::new(session),
            tls,
            local: listener.port == 587
                || super::resolve(listener).is_ok_and(|ips| {
                    !ips.is_empty() && ips.iter().all(std::net::IpAddr::is_loopback)
                }),
        })
    }

    /// This context as the socket listener's: sessions count as
    /// authenticated, messages get missing `Date:` and `Message-ID:`.
    pub(super) fn into_local(mut self) -> Self {
        Arc::make_mut(&mut self.session).local = true;
        self.local = true;
        self
    }

    /// The settings of every session of this listener.
    pub(super) fn session_config(&self) -> Arc<SessionConfig> {
        Arc::clone(&self.session)
    }

    /// The settings of a session whose client connected to the local
    /// address `local`: the listener's, named by its `hostnames` table
    /// when that has a name for the address (`hostnames.rs`).
    pub(super) async fn session_config_for(
        &self,
        shared: &Shared,
        local: std::net::IpAddr,
    ) -> Arc<SessionConfig> {
        let Some(table) = self.listener.hostnames else {
            return self.session_config();
        };
        match hostnames::lookup(&shared.tables, table, local).await {
            Some(name) => {
                let mut config = (*self.session).clone();
                config.hostname = name;
                Arc::new(config)
            }
            None => self.session_config(),
        }
    }

    /// The listener's filter, if it has one.
    pub(super) fn filter(&self) -> Option<crate::config::FilterId> {
        self.listener.filter
    }

    /// The listener's port.
    pub(super) fn port(&self) -> u16 {
        self.listener.port
    }

    /// Whether connections start with a PROXY protocol v2 header.
    pub(super) fn proxy_v2(&self) -> bool {
        self.listener.proxy_v2
    }

    /// Whether sessions start with a TLS handshake.
    pub(super) fn smtps(&self) -> bool {
        self.listener.tls == ListenerTls::Smtps
    }
}

/// The facts of the session a transaction began in (they cannot change
/// within it: STARTTLS and a new HELO end the transaction).
#[derive(Debug, Clone, Default)]
struct Facts {
    helo: String,
    esmtp: bool,
    user: Option<String>,
    tls: bool,
}

/// One session's link to the rules, the queue, TLS and credentials.
pub struct IntakeHandler {
    shared: Arc<Shared>,
    context: Arc<ListenerContext>,
    /// The session's settings: the listener's, or with the server name
    /// its `hostnames` table gives.
    session: Arc<SessionConfig>,
    source: Source,
    /// The client's reverse name, looked up at connection.
    peer_name: PeerName,
    tls: Option<TlsInfo>,
    facts: Facts,
    /// What each accepted recipient expanded to, in the transaction's
    /// order.
    deliveries: Vec<Vec<Delivery>>,
    message: Option<Message>,
    /// The session's event lines.
    log: SessionLog,
    /// The listener's filters, if it has any.
    filters: Option<FilterState>,
}

impl IntakeHandler {
    /// A handler for a session from `peer` (an address or a local user),
    /// named `peer_name` in DNS, on the listener of `context`.
    pub fn new(
        shared: Arc<Shared>,
        context: Arc<ListenerContext>,
        peer: impl Into<Source>,
        peer_name: PeerName,
    ) -> Self {
        Self {
            shared,
            session: context.session_config(),
            context,
            source: peer.into(),
            peer_name,
            tls: None,
            facts: Facts::default(),
            deliveries: Vec::new(),
            message: None,
            log: SessionLog::new(),
            filters: None,
        }
    }

    /// This handler with the session's filters (`src` and `dest` as
    /// `link-connect` reports them); its `link-connect` is sent.
    pub(super) fn with_filters(
        mut self,
        filters: SessionFilters,
        src: String,
        dest: String,
    ) -> Self {
        let queue = Arc::clone(&self.shared.queue);
        self.filters = Some(FilterState::new(filters, queue, &self.peer_name, src, dest));
        self
    }

    /// The session ended: its filters hear of it (`link-disconnect`).
    pub fn session_ended(&mut self) {
        if let Some(filters) = &mut self.filters {
            filters.ended();
        }
    }

    /// One line of the message as the client sent it, unstuffed.
    async fn take_line(&mut self, line: &[u8]) -> Result<(), Reply> {
        let Some(message) = self.message.as_mut() else {
            return Ok(());
        };
        message.take_line(self.shared.queue.as_ref(), line).await
    }

    /// Ends the message's way through the data-line filters: sends `.`
    /// and waits until what comes back, up to the filters' own `.`, is
    /// written; the message is the handler's again.
    async fn finish_stream(&mut self) -> Result<(), Reply> {
        let Some(stream) = self.filters.as_mut().and_then(|f| f.stream.take()) else {
            return Ok(());
        };
        let (message, outcome) = stream.finish().await;
        self.message = message;
        if self.message.is_none() {
            return Err(Reply::bare(451, "4.7.0 Filter failed, try again later"));
        }
        outcome
    }

    /// With filter processes, creates the transaction's queue message at
    /// MAIL FROM, so that every `tx-*` report carries its id (as in 7.8);
    /// a queue failure refuses MAIL FROM (4xx).
    async fn reserve_message(&mut self) -> Result<(), Reply> {
        let Some(state) = self.filters.as_mut().filter(|s| s.reserves()) else {
            return Ok(());
        };
        let msgid = self
            .shared
            .queue
            .message_create()
            .await
            .map_err(|e| queue_reply(&e))?;
        state.reserve(msgid);
        Ok(())
    }

    /// The `commit` phase, once the message came back whole.
    async fn filter_commit(&mut self, session_facts: &Facts, sender: &str) -> Result<(), Reply> {
        let Some(state) = self.filters.as_mut() else {
            return Ok(());
        };
        let src = self.source.rules();
        let facts = FilterFacts {
            src,
            rdns: self.peer_name.rdns.as_deref(),
            fcrdns: self.peer_name.fcrdns == Fcrdns::Pass,
            helo: Some(session_facts.helo.as_str()),
            auth_user: session_facts.user.as_deref(),
            mail_from: Some(sender),
            rcpt_to: None,
        };
        match state.filters.phase(Phase::Commit, "", &facts).await {
            Verdict::Proceed => Ok(()),
            Verdict::Reject(reply) => Err(reply),
            Verdict::Disconnect(reply) => {
                state.closing = true;
                Err(reply)
            }
            Verdict::Rewrite(_) => Err(Reply::bare(501, "5.5.4 Invalid command arguments")),
        }
    }

    /// This handler for a session with the settings `session` (a server
    /// name from the listener's `hostnames` table).
    pub(super) fn with_session_config(mut self, session: Arc<SessionConfig>) -> Self {
        self.session = session;
        self
    }

    /// The TLS handshake of `stream` with the listener's configuration,
    /// within [`HANDSHAKE_TIMEOUT`] (`smtps` and STARTTLS).
    pub async fn accept_tls(&mut self, stream: BoxStream) -> io::Result<BoxStream> {
        let Some(tls) = &self.context.tls else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no TLS configured",
            ));
        };
        let established = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            }
        };
        self.log.tls(&established.info);
        self.tls = Some(established.info);
        Ok(Box::new(established.stream))
    }

    /// The session's event log (its id, `smtp connected` and `smtp
    /// disconnected` lines).
    pub fn log(&self) -> SessionLog {
        self.log
    }

    /// The rules' envelope for `rcpt` in this session.
    fn rules_envelope(
        &self,
        session: &Session,
        mail: &MailFrom,
        rcpt: &Mailbox,
    ) -> rules::Envelope {
        let mut envelope = rules::Envelope::new(
            self.source.rules(),
            match &mail.sender {
                ReversePath::Null => Address::null(),
                ReversePath::Mailbox(m) => mailbox_address(m),
            },
            mailbox_address(rcpt),
        );
        envelope.helo = session.helo().map(ToString::to_string).unwrap_or_default();
        envelope.auth_user = self.facts.user.clone();
        envelope.tls = session.is_tls();
        envelope.tag.clone_from(&self.context.listener.tag);
        envelope
    }

    /// Writes the buffered bytes to the queue.
    async fn flush(&mut self) -> Result<(), queue::Error> {
        match &mut self.message {
            Some(message) => message.flush(self.shared.queue.as_ref()).await,
            None => Ok(()),
        }
    }

    /// Appends one line, CRLF added, flushing full chunks.
    async fn push_line(&mut self, line: &[u8]) -> Result<(), queue::Error> {
        match &mut self.message {
            Some(message) => message.push_line(self.shared.queue.as_ref(), line).await,
            None => Ok(()),
        }
    }

    /// The queue envelope of one delivery of an accepted recipient.
    fn queue_envelope(
        &self,
        tx: &Transaction,
        rcpt: &RcptTo,
        delivery: &Delivery,
        now: u64,
    ) -> qenv::Envelope {
        let config = &self.shared.config;
        let (action, dest, kind) = driver::delivery_parts(delivery);
        let internal = match delivery {
            Delivery::Relay { internal, .. } | Delivery::Local { internal, .. } => *internal,
        };
        let action = &config[action];
        let sender = match &tx.mail.sender {
            ReversePath::Null => MailAddr::default(),
            ReversePath::Mailbox(m) => mail_addr(m),
        };
        let rcpt_addr = mail_addr(&rcpt.recipient);
        let source = self.source.queue();
        qenv::Envelope {
            id: None,
            dispatcher: action.name.clone(),
            tag: self.context.listener.tag.clone().unwrap_or_default(),
            kind,
            smtpname: self.session.hostname.clone(),
            helo: self.facts.helo.clone(),
            hostname: self.peer_name.rdns_or_unknown().to_owned(),
            username: self.facts.user.clone().unwrap_or_default(),
            errorline: String::new(),
            source,
            sender,
            dest: MailAddr {
                user: dest.user,
                domain: dest.domain,
            },
            rcpt: rcpt_addr,
            ctime: now,
            last_try: 0,
            last_bounce: 0,
            ttl: 0,
            retry: 0,
            flags: Flags {
                authenticated: self.facts.user.is_some(),
                bounce: false,
                internal,
            },
            dsn_notify: dsn_notify(rcpt.notify),
            dsn_ret: tx.mail.ret.map(|ret| match ret {
                Ret::Full => qenv::DsnRet::Full,
                Ret::Headers => qenv::DsnRet::Hdrs,
            }),
            dsn_envid: tx.mail.envid.clone().unwrap_or_default(),
            dsn_orcpt: rcpt.orcpt.clone().unwrap_or_default(),
            status: None,
        }
    }

    /// One line of the message as it goes to the queue: after the headers
    /// a local submission lacks, if this line ends the header section.
    async fn write_line(&mut self, line: &[u8]) -> Result<(), Reply> {
        match &mut self.message {
            Some(message) => message.write_line(self.shared.queue.as_ref(), line).await,
            None => Ok(()),
        }
    }

    /// The `From:` rewriter of a new message, when the listener masquerades
    /// and the session authenticated (`senders ... masquerade`).
    fn masquerade(&self, tx: &Transaction) -> Option<Masquerade> {
        let senders = self.context.listener.senders?;
        let sender = senders::sender_text(&tx.mail.sender);
        let wanted =
            senders.masquerade && self.source.local_user().is_none() && self.facts.user.is_some();
        // The null sender has no address to show (OpenSMTPD would write
        // `@`).
        (wanted && !sender.is_empty()).then(|| Masquerade::new(&sender))
    }

    /// AUTH against the listener's credentials table.
    async fn check_credentials(&self, credentials: &Credentials) -> Result<bool, Reply> {
        let Some(table) = self.context.listener.auth.and_then(|auth| auth.table) else {
            tracing::warn!(
                "AUTH for {}: system accounts are not supported, refused",
                credentials.user
            );
            return Ok(false);
        };
        let table = self.shared.tables.get(table);
        match table.lookup(Service::Credentials, &credentials.user).await {
            Ok(Some(value)) => match credentials::check(&value, credentials) {
                Ok(ok) => Ok(ok),
                // A value that is no usable hash fails, as crypt_checkpass
                // makes it fail in OpenSMTPD; the log tells the admin why.
                Err(e) => {
                    tracing::warn!("AUTH for {}: {e}", credentials.user);
                    Ok(false)
                }
            },
            Ok(None) => Ok(false),
            Err(e) => {
                tracing::warn!("AUTH for {}: {e}", credentials.user);
                Err(Reply::auth_temporary_failure())
            }
        }
    }

    /// Writes the rest, creates the envelopes and commits.
    async fn finish(&mut self, tx: &Transaction) -> Result<MsgId, queue::Error> {
        self.flush().await?;
        let Some(message) = &self.message else {
            return Err(queue::Error::Task {
                reason: "no message open".to_owned(),
            });
        };
        let (msgid, size) = (message.msgid, message.written);
        if self.deliveries.len() != tx.recipients.len() {
            return Err(queue::Error::Task {
                reason: "recipients and decisions differ".to_owned(),
            });
        }
        let now = unix_now();
        let mut created = Vec::new();
        for (rcpt, deliveries) in tx.recipients.iter().zip(&self.deliveries) {
            for delivery in deliveries {
                let mut envelope = self.queue_envelope(tx, rcpt, delivery, now);
                let bytes = envelope.to_bytes().map_err(|e| queue::Error::Task {
                    reason: format!("envelope: {e}"),
                })?;
                let evpid = self.shared.queue.envelope_create(msgid, &bytes).await?;
                envelope.id = Some(evpid);
                created.push((evpid, envelope));
            }
        }
        self.shared.queue.message_commit(msgid, size).await?;
        if let Some(filters) = &self.filters {
            filters.envelopes(created.iter().map(|(evpid, _)| *evpid));
        }
        let per_recipient = self.deliveries.iter().map(Vec::len);
        (self.log).message(msgid, size, self.facts.esmtp, &created, per_recipient);
        self.shared.scheduler.committed(created);
        Ok(msgid)
    }
}

#[async_trait]
impl Handler for IntakeHandler {
    async fn check_sender(&mut self, session: &Session, mail: &MailFrom) -> Result<(), Reply> {
        // The rules are applied per recipient; a new transaction starts.
        self.deliveries.clear();
        self.facts = Facts {
            helo: session.helo().map(ToString::to_string).unwrap_or_default(),
            esmtp: session.is_esmtp(),
            // A local session is its user's, not `local`.
            user: (self.source.local_user())
                .or_else(|| session.user())
                .map(str::to_owned),
            tls: session.is_tls(),
        };
        // Only authenticated network sessions are held to `senders` (the
        // socket listener has no such option).
        match (self.context.listener.senders, session.user()) {
            (Some(table), Some(user)) if self.source.local_user().is_none() => {
                let delim = self.shared.config.smtp.sub_addr_delim;
                senders::check(&self.shared.tables, &table, user, &mail.sender, delim).await?;
            }
            _ => {}
        }
        self.reserve_message().await
    }

    async fn check_recipient(&mut self, session: &Session, rcpt: &RcptTo) -> Result<(), Reply> {
        let Some(tx) = session.transaction() else {
            return Err(Reply::bad_sequence());
        };
        let envelope = self.rules_envelope(session, &tx.mail, &rcpt.recipient);
        let expander = Expander::new(
            &self.shared.config,
            &self.shared.tables,
            self.shared.files.as_ref(),
        );
        match expander.expand(&envelope).await {
            Ok(deliveries) => {
                self.deliveries.push(deliveries);
                Ok(())
            }
            Err(failure) => Err(expansion_reply(&failure, &rcpt.recipient.to_string())),
        }
    }

    async fn open_message(&mut self, tx: &Transaction) -> Result<(), Reply> {
        self.abort_message().await;
        let reserved = self.filters.as_mut().and_then(FilterState::take_reserved);
        let msgid = match reserved {
            Some(msgid) => msgid,
            None => self
                .shared
                .queue
                .message_create()
                .await
                .map_err(|e| queue_reply(&e))?,
        };
        self.message = Some(Message::new(
            msgid,
            (self.context.local).then(|| {
                MissingHeaders::new(&self.context.session.hostname, date::rfc5322(unix_now()))
            }),
            self.masquerade(tx),
        ));
        let received = Received {
            helo: self.facts.helo.clone(),
            rdns: self.peer_name.rdns_or_unknown().to_owned(),
            peer: self.source.peer(),
            hostname: self.session.hostname.clone(),
            mask_source: self.context.listener.mask_src,
            esmtp: self.facts.esmtp,
            tls: self.tls.clone().filter(|_| self.facts.tls),
            user: self.facts.user.clone(),
            received_auth: self.context.listener.received_auth,
            msgid: msgid.0,
            single_recipient: match tx.recipients.as_slice() {
                [only] => Some(only.recipient.to_string()),
                _ => None,
            },
            date: date::rfc5322(unix_now()),
        };
        let mut lines = received.lines();
        if let Some(state) = self.filters.as_mut() {
            state.settle().await;
            let halves = match state.filters.start_data() {
                Ok(halves) => halves,
                Err(reply) => {
                    self.abort_message().await;
                    return Err(reply);
                }
            };
            if state.filters.is_junk() {
                // 7.8's spelling (smtp_session.c), ahead of `Received:`.
                lines.insert(0, "X-Spam: Yes".to_owned());
            }
            let message = match halves {
                Some(_) => self.message.take(),
                None => None,
            };
            if let (Some((input, output)), Some(message)) = (halves, message) {
                // The message goes to the writer of what comes back.
                let queue = Arc::clone(&self.shared.queue);
                let stream = state
                    .stream
                    .insert(Filtering::start(input, output, message, queue));
                for line in &lines {
                    if let Err(reply) = stream.input.send(line.as_bytes()).await {
                        self.abort_message().await;
                        return Err(reply);
                    }
                }
                return Ok(());
            }
        }
        for line in lines {
            if let Err(e) = self.push_line(line.as_bytes()).await {
                self.abort_message().await;
                return Err(queue_reply(&e));
            }
        }
        Ok(())
    }

    async fn data_line(&mut self, line: &[u8]) -> Result<(), Reply> {
        let Some(stream) = self.filters.as_mut().and_then(|f| f.stream.as_mut()) else {
            return self.take_line(line).await;
        };
        if stream.writer_done() {
            // The filters' `.` came back before the client's.
            return Err(Reply::bare(451, "4.7.0 Filter ended the message early"));
        }
        // The line as the client sent it: dot-stuffed.
        let stuffed;
        let line = match line.first() {
            Some(b'.') => {
                stuffed = [b".", line].concat();
                &stuffed
            }
            _ => line,
        };
        stream.input.send(line).await
    }

    async fn abort_message(&mut self) {
        if let Some(state) = self.filters.as_mut() {
            state.abandon_stream();
        }
        if let Some(message) = self.message.take() {
            if let Err(e) = self.shared.queue.message_delete(message.msgid).await {
                tracing::warn!("cannot drop message {}: {e}", message.msgid);
            }
        }
    }

    async fn commit(&mut self, tx: &Transaction, _size: u64) -> Result<String, Reply> {
        if self.filters.is_some() {
            let facts = self.facts.clone();
            let sender = senders::sender_text(&tx.mail.sender);
            let filtered = match self.finish_stream().await {
                Ok(()) => self.filter_commit(&facts, &sender).await,
                Err(reply) => Err(reply),
            };
            if let Err(reply) = filtered {
                self.abort_message().await;
                return Err(reply);
            }
        }
        let held = match self.message.as_mut().and_then(|m| m.masquerade.as_mut()) {
            Some(masquerade) => masquerade.finish(),
            None => Vec::new(),
        };
        for line in held {
            if let Err(reply) = self.write_line(&line).await {
                self.abort_message().await;
                return Err(reply);
            }
        }
        let added = match self.message.as_mut().and_then(|m| m.headers.as_mut()) {
            Some(headers) => headers.at_end(),
            None => Vec::new(),
        };
        for header in added {
            if let Err(e) = self.push_line(header.as_bytes()).await {
                self.abort_message().await;
                return Err(queue_reply(&e));
            }
        }
        let size = self.message.as_ref().map_or(0, Message::size);
        match self.finish(tx).await {
            Ok(msgid) => {
                self.message = None;
                if let Some(state) = self.filters.as_mut() {
                    state.committing = Some(size);
                }
                tracing::debug!(
                    "message {msgid} accepted from {} for {} recipient(s)",
                    self.source,
                    tx.recipients.len()
                );
                Ok(msgid.to_string())
            }
            Err(e) => {
                tracing::warn!("message from {}: {e}", self.source);
                self.abort_message().await;
                Err(queue_reply(&e))
            }
        }
    }

    async fn authenticate(&mut self, credentials: &Credentials) -> Result<bool, Reply> {
        let verdict = self.check_credentials(credentials).await;
        self.log.authentication(&credentials.user, &verdict);
        if let Some(filters) = &self.filters {
            filters.authenticated(&credentials.user, &verdict);
        }
        verdict
    }

    async fn start_tls(&mut self, stream: BoxStream) -> io::Result<BoxStream> {
        self.accept_tls(stream).await
    }

    fn replied(&mut self, command: Option<&[u8]>, reply: &Reply) {
        self.log.replied(command, reply);
    }

    fn filtered(&self) -> bool {
        self.filters.is_some()
    }

    async fn filter(&mut self, session: &Session, phase: Phase, param: &str) -> Verdict {
        let Some(state) = self.filters.as_mut() else {
            return Verdict::Proceed;
        };
        let helo = session.helo().map(ToString::to_string);
        let mail_from = session
            .transaction()
            .map(|tx| senders::sender_text(&tx.mail.sender));
        let param = match phase {
            // `RDNS|SRC`, the address bare (`192.0.2.7`, `[2001:db8::7]`).
            Phase::Connect => format!(
                "{}|{}",
                self.peer_name.rdns_or_unknown(),
                match &self.source {
                    Source::Ip(std::net::IpAddr::V4(ip)) => ip.to_string(),
                    Source::Ip(ip) => format!("[{ip}]"),
                    Source::Local { .. } => "local".to_owned(),
                }
            ),
            _ => param.to_owned(),
        };
        let facts = FilterFacts {
            src: self.source.rules(),
            rdns: self.peer_name.rdns.as_deref(),
            fcrdns: self.peer_name.fcrdns == Fcrdns::Pass,
            helo: match phase {
                Phase::Helo | Phase::Ehlo => Some(param.as_str()),
                _ => helo.as_deref(),
            },
            auth_user: session.user(),
            mail_from: match phase {
                Phase::MailFrom => Some(param.as_str()),
                _ => mail_from.as_deref(),
            },
            rcpt_to: (phase == Phase::RcptTo).then_some(param.as_str()),
        };
        state.filters.phase(phase, &param, &facts).await
    }

    fn notice(&mut self, session: &Session, notice: Notice<'_>) {
        if let Some(filters) = &mut self.filters {
            filters.notice(session, notice, self.tls.as_ref());
        }
    }

    fn closing(&self) -> bool {
        self.filters.as_ref().is_some_and(|f| f.closing)
    }
}

/// The reply for a recipient that expansion refused (delivery.md 1.4):
/// `550 Invalid recipient: <RCPT>` and `451 Temporary failure` by
/// default, else the failure's own `NNN [X.Y.Z] text`.
fn expansion_reply(failure: &Failure, rcpt: &str) -> Reply {
    let Some(text) = &failure.message else {
        return if failure.temporary {
            Reply::temporary_failure()
        } else {
            Reply::invalid_recipient(rcpt)
        };
    };
    let (code, rest) = text.split_at(text.find(' ').unwrap_or(text.len()));
    let code = code
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c))
        .unwrap_or(if failure.temporary { 451 } else { 550 });
    let rest = rest.trim_start();
    let (enhanced, text) = match rest.split_once(' ') {
        Some((status, text)) if parse_enhanced(status).is_some() => (parse_enhanced(status), text),
        _ => (None, rest),
    };
    let class = u8::try_from(code / 100).unwrap_or(5);
    let enhanced = enhanced.unwrap_or_else(|| Enhanced::new(class, 0, 0));
    Reply::new(code, enhanced, &format!("{text}: <{rcpt}>"))
}

/// An enhanced status code `X.Y.Z`.
fn parse_enhanced(text: &str) -> Option<Enhanced> {
    let mut parts = text.split('.');
    let class = parts
        .next()?
        .parse::<u8>()
        .ok()
        .filter(|c| (2..=5).contains(c))?;
    let subject = parts.next()?.parse::<u16>().ok()?;
    let detail = parts.next()?.parse::<u16>().ok()?;
    parts
        .next()
        .is_none()
        .then(|| Enhanced::new(class, subject, detail))
}

/// The reply for a queue failure: 452 for a full disk, else 451.
pub(super) fn queue_reply(error: &queue::Error) -> Reply {
    let status = error.smtp_status();
    let mut numbers = status
        .enhanced
        .split('.')
        .map(|n| n.parse::<u16>().unwrap_or(0));
    let (class, subject, detail) = (
        numbers.next().unwrap_or(4),
        numbers.next().unwrap_or(3),
        numbers.next().unwrap_or(0),
    );
    let class = u8::try_from(class).unwrap_or(4);
    Reply::new(
        status.code,
        Enhanced::new(class, subject, detail),
        status.text,
    )
}

/// The envelope's NOTIFY bits for RCPT TO's NOTIFY parameter.
fn dsn_notify(notify: Option<Notify>) -> qenv::Notify {
    let bits = match notify {
        None => 0,
        Some(Notify::Never) => qenv::Notify::NEVER,
        Some(Notify::On {
            success,
            failure,
            delay,
        }) => [
            (success, qenv::Notify::SUCCESS),
            (failure, qenv::Notify::FAILURE),
            (delay, qenv::Notify::DELAY),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit),
    };
    qenv::Notify(bits)
}

fn mailbox_address(mailbox: &Mailbox) -> Address {
    Address::new(
        mailbox.local.clone(),
        mailbox
            .domain
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    )
}

fn mail_addr(mailbox: &Mailbox) -> MailAddr {
    MailAddr {
        user: mailbox.local.clone(),
        domain: mailbox
            .domain
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn queue_failures_are_451_or_452() {
        let full = queue::Error::io("write", "/x", io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(
            queue_reply(&full).to_string(),
            "452 4.3.1 Insufficient system storage"
        );
        let eio = queue::Error::io("fsync", "/x", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(queue_reply(&eio).to_string(), "451 4.3.0 Temporary failure");
    }

    #[test]
    fn notify_bits() {
        assert_eq!(dsn_notify(None), qenv::Notify(0));
        assert_eq!(
            dsn_notify(Some(Notify::Never)),
            qenv::Notify(qenv::Notify::NEVER)
        );
        let on = Notify::On {
            success: true,
            failure: false,
            delay: true,
        };
        assert_eq!(
            dsn_notify(Some(on)),
            qenv::Notify(qenv::Notify::SUCCESS | qenv::Notify::DELAY)
        );
    }
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod session_tests;
