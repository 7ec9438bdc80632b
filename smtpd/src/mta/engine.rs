//! The MTA engine: the task the scheduler hands due relay envelopes to.
//!
//! The driver [`Mta::submit`]s each due `mta` envelope and, once it has
//! started everything due in that turn, calls [`Mta::flush`]: the engine
//! then groups the envelopes of one message for one destination domain
//! and action into one transaction (up to [`MAX_BATCH`] recipients) and
//! delivers the groups concurrently (`deliver.rs`). Each envelope's
//! outcome comes back on its own channel as a [`Relayed`]: delivered
//! only after the next hop said 250 for it, a 4xx or any failure of DNS,
//! a table, the network or TLS is temporary (the scheduler's backoff), a
//! 5xx is permanent (the scheduler bounces it).
//!
//! The engine also owns what outlives one delivery: the idle connections
//! and connection limits ([`Pool`]), the state of every next-hop address
//! ([`Hosts`]), the destinations seen, and the TLS configurations of the
//! relay actions (read at start, before privileges are dropped). Every
//! second, connections idle longer than `session-keepalive` are closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::client::{ClientTls, Timeouts, TlsSettings};
use super::hosts::Hosts;
use super::pool::{Pool, Pooled};
use super::route::Destination;
use crate::config::{ActionId, ActionKind, Config, MtaLimits};
use crate::delivery::local::LocalResult;
use crate::dns::Resolver;
use crate::queue::envelope::Envelope;
use crate::queue::{MsgId, QueueBackend};
use crate::scheduler::Relayed;
use crate::table::Tables;

/// The most recipients in one transaction.
pub const MAX_BATCH: usize = 100;

/// What the engine needs besides the configuration.
pub struct Settings {
    /// The server's name: the default HELO name, and what `backup`
    /// compares MX names with.
    pub server_name: String,
    /// The resolver for MX and address lookups.
    pub resolver: Resolver,
    /// Session time limits.
    pub timeouts: Timeouts,
    /// The port of MX hosts (25; `smtpd --mx-port` for tests whose MX
    /// hosts listen elsewhere).
    pub mx_port: u16,
    /// The filter processes, for the smtp-out reports of relay actions
    /// with `filter NAME`.
    pub filters: Option<crate::filter::Filters>,
}

/// A request to the engine task.
enum Request {
    Submit(Box<Envelope>, oneshot::Sender<Relayed>),
    Flush,
}

/// The way to the engine, cheap to clone.
#[derive(Clone)]
pub struct Mta {
    tx: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
}

/// A destination's counters, for `smtpctl show relays`.
#[derive(Debug, Clone, Default)]
pub struct RelayState {
    /// Deliveries in progress.
    pub refcount: usize,
    /// Envelopes in those deliveries.
    pub ntask: usize,
    /// Connections opened for it.
    pub nconn: u64,
    /// The last connection opened.
    pub lastconn: Option<Instant>,
}

/// What the delivery tasks share.
pub(super) struct Shared {
    pub(super) config: Arc<Config>,
    pub(super) tables: Tables,
    pub(super) queue: Arc<dyn QueueBackend>,
    pub(super) settings: Settings,
    pub(super) pool: Pool,
    pub(super) hosts: Mutex<Hosts>,
    pub(super) relays: Mutex<HashMap<Destination, RelayState>>,
    /// The TLS configuration of each relay action, or why it has none.
    pub(super) tls: HashMap<ActionId, Result<ClientTls, String>>,
}

impl Shared {
    /// The per-address state.
    pub(super) fn hosts(&self) -> std::sync::MutexGuard<'_, Hosts> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The per-destination state.
    pub(super) fn relays(&self) -> std::sync::MutexGuard<'_, HashMap<Destination, RelayState>> {
        self.relays.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Mta {
    /// Starts the engine task. The TLS files of the relay actions (`ca`,
    /// `pki`) are read now: a file that cannot be used fails the actions
    /// that need it (temporarily, logged), not the daemon.
    pub fn start(
        config: Arc<Config>,
        tables: Tables,
        queue: Arc<dyn QueueBackend>,
        settings: Settings,
    ) -> Self {
        let keepalive = config.mta.limits.values.session_keepalive;
        let pool = Pool::new(Duration::from_secs(keepalive));
        let tls = tls_configs(&config);
        let shared = Arc::new(Shared {
            config,
            tables,
            queue,
            settings,
            pool,
            hosts: Mutex::new(Hosts::new()),
            relays: Mutex::default(),
            tls,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::clone(&shared), rx));
        Self { tx, shared }
    }

    /// Hands a due envelope to the engine; the receiver gets its outcome.
    /// It waits for the next [`Mta::flush`].
    pub fn submit(&self, envelope: Envelope) -> oneshot::Receiver<Relayed> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Request::Submit(_, tx))) =
            self.tx.send(Request::Submit(Box::new(envelope), tx))
        {
            let _ = tx.send(Relayed {
                result: LocalResult::Temporary("421 4.3.0 Relaying is stopping".to_owned()),
                dsn_passed: false,
            });
        }
        rx
    }

    /// Starts the deliveries of everything submitted so far.
    pub fn flush(&self) {
        let _ = self.tx.send(Request::Flush);
    }

    /// The engine's state, for `smtpctl show hosts|relays|routes`.
    pub fn show(&self, what: super::show::Listing) -> Vec<String> {
        super::show::lines(&self.shared, what)
    }
}

impl crate::scheduler::Relayer for Mta {
    fn submit(&self, envelope: Envelope) -> oneshot::Receiver<Relayed> {
        Self::submit(self, envelope)
    }

    fn flush(&self) {
        Self::flush(self);
    }
}

/// The TLS configuration of each relay action.
fn tls_configs(config: &Config) -> HashMap<ActionId, Result<ClientTls, String>> {
    let mut out = HashMap::new();
    for (index, action) in config.actions.iter().enumerate() {
        let ActionKind::Relay(relay) = &action.kind else {
            continue;
        };
        let ca = relay
            .ca
            .as_deref()
            .map(|name| {
                config
                    .cas
                    .iter()
                    .find(|ca| ca.name.eq_ignore_ascii_case(name))
                    .map(|ca| ca.cert.as_path())
                    .ok_or_else(|| format!("unknown ca {name}"))
            })
            .transpose();
        let pki = relay
            .pki
            .as_deref()
            .map(|name| {
                config
                    .pkis
                    .iter()
                    .find(|pki| pki.name.eq_ignore_ascii_case(name))
                    .map(|pki| (pki.cert.as_path(), pki.key.as_path()))
                    .ok_or_else(|| format!("unknown pki {name}"))
            })
            .transpose();
        // The relay's `ciphers`, else `smtp ciphers`, as 7.8.
        let ciphers = relay.ciphers.as_deref().or(config.smtp.ciphers.as_deref());
        let made = match (ca, pki) {
            (Ok(ca_file), Ok(client_cert)) => {
                build_tls(ca_file, client_cert, relay.protocols.as_deref(), ciphers)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if let Err(e) = &made {
            tracing::warn!("relay action {}: TLS unavailable: {e}", action.name);
        }
        out.insert(ActionId::from_index(index), made);
    }
    out
}

fn build_tls(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
    protocols: Option<&str>,
    ciphers: Option<&str>,
) -> Result<ClientTls, String> {
    let settings = TlsSettings {
        ca_file,
        client_cert,
        protocols,
    };
    ClientTls::with_ciphers(&settings, ciphers).map_err(|e| e.to_string())
}

/// The engine task: collects submissions, starts batches at each flush,
/// closes idle connections past their keepalive.
async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut pending: Batch = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = rx.recv() => match request {
                Some(Request::Submit(envelope, reply)) => pending.push((*envelope, reply)),
                Some(Request::Flush) => {
                    for batch in batches(std::mem::take(&mut pending)) {
                        tokio::spawn(super::deliver::batch(Arc::clone(&shared), batch));
                    }
                }
                None => break,
            },
            _ = tick.tick() => close_expired(&shared).await,
        }
    }
    for (key, pooled) in shared.pool.drain() {
        close(&shared, key.addr, pooled).await;
    }
}

/// Closes the connections idle past their keepalive.
async fn close_expired(shared: &Shared) {
    for (key, pooled) in shared.pool.expired() {
        close(shared, key.addr, pooled).await;
    }
}

/// Closes a connection to `addr` (QUIT when it still works).
pub(super) async fn close(shared: &Shared, addr: IpAddr, pooled: Pooled) {
    pooled.client.quit().await;
    pooled.reports.disconnected();
    shared.hosts().closed(addr);
}

/// One transaction's envelopes with their reply channels.
pub(super) type Batch = Vec<(Envelope, oneshot::Sender<Relayed>)>;

/// What envelopes of one batch share: message, action, domain.
type BatchKey = (Option<MsgId>, String, String, String);

/// Groups envelopes by message, action and destination domain, in the
/// order submitted, at most [`MAX_BATCH`] per group.
fn batches(pending: Batch) -> Vec<Batch> {
    let mut groups: Vec<(BatchKey, Batch)> = Vec::new();
    for (envelope, reply) in pending {
        let key = (
            envelope.msgid(),
            envelope.dispatcher.clone(),
            envelope.dest.domain.to_ascii_lowercase(),
            // SRS signs with the original recipient's domain: forwarded
            // envelopes batch by it.
            forwarded_from(&envelope),
        );
        match groups
            .iter_mut()
            .find(|(k, batch)| *k == key && batch.len() < MAX_BATCH)
        {
            Some((_, batch)) => batch.push((envelope, reply)),
            None => groups.push((key, vec![(envelope, reply)])),
        }
    }
    groups.into_iter().map(|(_, batch)| batch).collect()
}

/// The original recipient's domain of a forwarded envelope (empty for
/// one that was not forwarded).
fn forwarded_from(envelope: &Envelope) -> String {
    let (rcpt, dest) = (&envelope.rcpt, &envelope.dest);
    if rcpt.user == dest.user && rcpt.domain.eq_ignore_ascii_case(&dest.domain) {
        String::new()
    } else {
        rcpt.domain.to_ascii_lowercase()
    }
}

/// The `mta limit` block of a destination: `limit for domain NAME` when
/// one names it (the MX domain, or the relay host; case-insensitive), else
/// the defaults.
pub(super) fn limits_for<'a>(config: &'a Config, domain: &str) -> &'a MtaLimits {
    config
        .mta
        .domain_limits
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(domain))
        .map_or(&config.mta.limits, |(_, limits)| limits)
}

/// An address's family allowed by `mta limit [for domain] inet4|inet6`.
pub(super) fn family_allowed(limits: &MtaLimits, addr: IpAddr) -> bool {
    use crate::config::AddressFamily;
    match limits.family {
        None => true,
        Some(AddressFamily::Inet4) => addr.is_ipv4(),
        Some(AddressFamily::Inet6) => addr.is_ipv6(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::envelope::{Flags, Kind, MailAddr, Notify, Source};
    use crate::queue::EvpId;

    fn envelope(evpid: u64, dispatcher: &str, domain: &str) -> Envelope {
        let addr = |user: &str, domain: &str| MailAddr {
            user: user.to_owned(),
            domain: domain.to_owned(),
        };
        Envelope {
            id: Some(EvpId(evpid)),
            dispatcher: dispatcher.to_owned(),
            tag: String::new(),
            kind: Kind::Mta,
            smtpname: "mx.example.org".to_owned(),
            helo: "c".to_owned(),
            hostname: "c".to_owned(),
            username: String::new(),
            errorline: String::new(),
            source: Source::Local,
            sender: addr("a", "example.net"),
            rcpt: addr("b", domain),
            dest: addr("b", domain),
            ctime: 1,
            last_try: 0,
            last_bounce: 0,
            ttl: 0,
            retry: 0,
            flags: Flags::default(),
            dsn_notify: Notify::default(),
            dsn_ret: None,
            dsn_envid: String::new(),
            dsn_orcpt: String::new(),
            status: None,
        }
    }

    fn ids(batch: &Batch) -> Vec<u64> {
        batch.iter().map(|(e, _)| e.id.unwrap().0).collect()
    }

    #[test]
    fn batches_group_one_message_per_domain_and_action() {
        let msg1 = 0x1111_1111_0000_0000;
        let msg2 = 0x2222_2222_0000_0000;
        let list = [
            envelope(msg1 | 1, "relay", "example.com"),
            envelope(msg1 | 2, "relay", "EXAMPLE.com"),
            envelope(msg1 | 3, "relay", "example.net"),
            envelope(msg2 | 1, "relay", "example.com"),
            envelope(msg1 | 4, "other", "example.com"),
            envelope(msg1 | 5, "relay", "example.com"),
        ];
        let pending = list
            .into_iter()
            .map(|e| (e, oneshot::channel().0))
            .collect();
        let groups: Vec<Vec<u64>> = batches(pending).iter().map(ids).collect();
        assert_eq!(
            groups,
            [
                vec![msg1 | 1, msg1 | 2, msg1 | 5],
                vec![msg1 | 3],
                vec![msg2 | 1],
                vec![msg1 | 4],
            ]
        );
    }

    #[test]
    fn batches_are_bounded() {
        let pending = (1..=(MAX_BATCH as u64 + 1))
            .map(|n| {
                (
                    envelope(0x1000_0000_0000_0000 | n, "relay", "x"),
                    oneshot::channel().0,
                )
            })
            .collect();
        let sizes: Vec<usize> = batches(pending).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BATCH, 1]);
    }
}
