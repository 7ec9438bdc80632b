//! The scheduler's driver: the task that owns the clock, the queue handle
//! and the [`Ramqueue`], and turns due envelopes into deliveries, retries,
//! bounces and deletions.
//!
//! At start it walks every envelope of the queue (`envelope walk`), so
//! that whatever was acknowledged before a restart or a `kill -9` is
//! tried again; a message without envelopes left is deleted. It walks
//! again, adding only what it does not know, when a walk failed (after
//! [`REWALK_DELAY`]) and whenever the queue reports that it came back
//! ([`QueueBackend::recoveries`]: a proc-exec backend restarted); the
//! envelopes delivered while their deletion failed are deleted again
//! first, and never scheduled twice. Then it
//! waits for the earliest of: envelopes committed by intake
//! ([`Handle::committed`]), a control request, a delivery that ended, or
//! the next time something is due. Due envelopes are handed out by
//! [`Ramqueue::due`]:
//!
//! - local ones (`mda`) go to [`LocalAgent`], at most `mda limit
//!   max-session` at a time; delivered means deleted from the queue (the
//!   writers fsync first); a temporary failure updates the envelope (retry
//!   counter, last try, error line) and schedules the next attempt, with a
//!   delay warning when a `bounce warn-interval` threshold is crossed; a
//!   permanent failure or a loop turns the envelope into a bounce;
//! - bounces are written (RFC 3464, [`super::bounce`]) and injected as a
//!   new message from the null sender to the original sender, its
//!   recipients expanded as a local submission;
//! - expired envelopes are bounced, removed ones deleted;
//! - relayed ones (`mta`) wait: relaying is not built yet, so each attempt
//!   is a temporary failure until the envelope expires and bounces.
//!
//! Administrative commands ([`Control`], from `smtpctl` through
//! [`Handle::control`]) act on the [`Ramqueue`] between two turns of the
//! loop: schedule, remove, suspend or resume envelopes, pause local
//! deliveries or relaying, list the envelopes with their states, read
//! the counters ([`Stats`]), or discover an envelope copied into the
//! queue by hand.
//!
//! Nothing is delivered twice within one run: an envelope is in flight at
//! most once, and deleted before its delivery is reported. After a crash
//! between a delivery and the deletion, the envelope is delivered again
//! after restart (at least once, as in every MTA).
//!
//! A queue shared with other daemons ([`QueueBackend::shared`], SPEC.md
//! 4.12) changes four things, with the [`Sharing`] settings
//! ([`super::lease`]): every job claims its envelope first (one another
//! daemon holds or already delivered is forgotten, not deleted); a
//! delivery's lease is renewed until the driver is done with it (deleted,
//! or updated and released); a temporary failure releases
//! the envelope after updating it; the store is walked with
//! `envelope-walk-free` every [`Sharing::rewalk`], and messages are
//! removed by the backend with their last envelope, never by
//! `message-delete`.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use super::bounce::{self, bounce_envelope, mark_expired, mark_loop};
use super::lease::{self, Sharing};
use super::retry::{DeliveryType, RetryPolicy};
use super::state::{EnvelopeState, Job, Outcome, Ramqueue, Target, Task};
use crate::config::Config;
use crate::delivery::expand::MdaExec;
use crate::delivery::expand::{Delivery, Expander, ExpansionFiles, SystemFiles};
use crate::delivery::local::{self, LocalAgent, LocalResult, MBOXFILE_EXEC};
use crate::log::{self, Attempt};
use crate::queue::envelope::{
    Bounce, Envelope, Flags, Kind, MailAddr, Mda, Notify, Source, Status,
};
use crate::queue::{self, unix_now, Claim, EvpId, MsgId, QueueBackend, MAX_READ_LENGTH};
use crate::rules::{self, Address};
use crate::table::Tables;

/// How long a stopping driver waits for deliveries in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after a failed walk of the queue the next one starts.
pub const REWALK_DELAY: Duration = Duration::from_secs(5);

/// The error line of relayed envelopes until relaying exists.
const NO_RELAY: &str = "451 4.3.0 Relaying is not available on this server";

/// A request to the driver.
enum Request {
    /// Intake committed these envelopes.
    Committed(Vec<(EvpId, Envelope)>),
    /// An administrative command.
    Control(Control, oneshot::Sender<Answer>),
}

/// An administrative command (`smtpctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Try these envelopes now.
    Schedule(Target),
    /// Delete these envelopes without a bounce.
    Remove(Target),
    /// Hold these envelopes (`pause envelope`).
    Suspend(Target),
    /// Release held envelopes (`resume envelope`).
    Resume(Target),
    /// Stop starting deliveries of a kind (`pause mda`, `pause mta`).
    Pause(DeliveryType),
    /// Start them again.
    Unpause(DeliveryType),
    /// Every envelope the scheduler knows, with its state.
    Show,
    /// The counters.
    Stats,
    /// Which kinds of delivery are paused.
    Status,
    /// Load an envelope the scheduler does not know from the queue
    /// (`smtpctl discover`, after copying files into the spool by hand).
    Discover(EvpId),
}

/// The answer to a [`Control`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// How many envelopes the command applied to.
    Count(usize),
    /// Whether a pause or unpause changed anything (`false`: it was
    /// already in that state).
    Changed(bool),
    /// The envelopes and their states, by id.
    Envelopes(Vec<Listed>),
    /// The counters.
    Stats(Stats),
    /// The kinds of delivery paused.
    Paused {
        /// Local deliveries.
        mda: bool,
        /// Relaying.
        mta: bool,
    },
}

/// An envelope as [`Control::Show`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The envelope.
    pub evpid: EvpId,
    /// What the scheduler knows of it.
    pub state: EnvelopeState,
    /// When its attempt in flight started, Unix seconds.
    pub inflight_since: Option<u64>,
}

/// The driver's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Envelopes known now.
    pub queued: usize,
    /// Messages with envelopes known now.
    pub messages: usize,
    /// Deliveries in flight now.
    pub inflight: usize,
    /// Envelopes added since start (loaded, committed, bounces).
    pub enqueued: u64,
    /// Deliveries handed out since start.
    pub started: u64,
    /// Local deliveries in flight now (running or waiting for a slot).
    pub mda_inflight: usize,
    /// Local deliveries holding one of the `mda limit max-session` slots.
    pub mda_running: usize,
    /// Local deliveries handed out since start.
    pub mda_started: u64,
    /// Bounce envelopes created.
    pub bounces: u64,
    /// Delivered.
    pub delivered: u64,
    /// Temporary failures.
    pub tempfail: u64,
    /// Permanent failures (bounced).
    pub permfail: u64,
    /// Loops cut.
    pub loops: u64,
    /// Expired.
    pub expired: u64,
    /// Bounces injected.
    pub bounced: u64,
    /// Removed by an administrator.
    pub removed: u64,
}

/// The way to the driver task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Request>,
}

impl Handle {
    /// A handle and the receiving end a [`Driver`] runs on.
    pub fn channel() -> (Self, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, Inbox(rx))
    }

    /// Tells the scheduler that intake committed `envelopes`.
    pub fn committed(&self, envelopes: Vec<(EvpId, Envelope)>) {
        // A stopped scheduler finds them at the next start.
        let _ = self.tx.send(Request::Committed(envelopes));
    }

    /// Runs an administrative command; `None` when the scheduler stopped.
    pub async fn control(&self, control: Control) -> Option<Answer> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Control(control, tx)).ok()?;
        rx.await.ok()
    }
}

/// The receiving end of a [`Handle`].
pub struct Inbox(mpsc::UnboundedReceiver<Request>);

/// What a finished delivery reports.
struct Finished {
    envelope: Envelope,
    result: LocalResult,
    /// The agent logged the attempt itself (the MTA, which knows the
    /// relay and source address).
    logged: bool,
    /// The next hop took the DSN request (it offers DSN): a success
    /// notification is its to send, not ours.
    dsn_passed: bool,
    /// The delivery task deleted the envelope already (a relayed one,
    /// deleted as soon as the next hop took it rather than when the
    /// driver gets to it): only its message is left to release.
    deleted: bool,
}

/// The outcome of a relayed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// Delivered (the next hop said 250), or why not.
    pub result: LocalResult,
    /// The next hop offers DSN, so the envelope's NOTIFY went with it.
    pub dsn_passed: bool,
}

/// The relay agent the driver hands due `mta` envelopes to
/// ([`crate::mta::Mta`]).
pub trait Relayer: Send + Sync {
    /// Takes a due envelope; the receiver gets its outcome, the attempt
    /// already logged. It may wait for the next [`Relayer::flush`].
    fn submit(&self, envelope: Envelope) -> oneshot::Receiver<Relayed>;

    /// Everything due in this turn was submitted: start the deliveries
    /// (envelopes of one message to one destination share a transaction).
    fn flush(&self);
}

/// The driver task's state.
pub struct Driver {
    config: Arc<Config>,
    tables: Tables,
    queue: Arc<dyn QueueBackend>,
    agent: Arc<LocalAgent>,
    ramqueue: Ramqueue,
    policy: RetryPolicy,
    /// Envelopes per message, so that the last deletion deletes it.
    refs: HashMap<MsgId, usize>,
    deliveries: JoinSet<(EvpId, Finished)>,
    /// Deletions of messages whose last envelope is gone, running beside
    /// the driver (awaited at shutdown): one at a time in the driver, they
    /// would hold up everything else after a burst of deliveries.
    purges: JoinSet<()>,
    slots: Arc<Semaphore>,
    sessions: usize,
    /// When each attempt in flight started.
    inflight_since: HashMap<EvpId, u64>,
    stats: Stats,
    /// How `.forward` and include files are read for bounce recipients.
    files: Arc<dyn ExpansionFiles>,
    /// Envelopes done with whose deletion failed: deleted again before
    /// the next walk, never scheduled again.
    undeleted: HashSet<EvpId>,
    /// When to walk the queue again after a failed walk.
    rewalk_at: Option<tokio::time::Instant>,
    /// Where relayed envelopes go; without one, each attempt fails
    /// temporarily.
    relayer: Option<Arc<dyn Relayer>>,
    /// The settings for a shared queue; used only when the queue is.
    sharing: Arc<Sharing>,
    /// Set at start when the queue is shared.
    shared: Option<Arc<Sharing>>,
    /// The lease renewals of the envelopes in flight (shared queue).
    keepers: HashMap<EvpId, tokio::task::AbortHandle>,
}

impl Driver {
    /// A driver over `queue`, delivering with `agent`.
    pub fn new(
        config: Arc<Config>,
        tables: Tables,
        queue: Arc<dyn QueueBackend>,
        agent: LocalAgent,
    ) -> Self {
        let sessions = usize::try_from(config.mda.max_session).unwrap_or(50).max(1);
        Self {
            ramqueue: Ramqueue::from_config(&config),
            policy: RetryPolicy::from_config(&config),
            config,
            tables,
            queue,
            agent: Arc::new(agent),
            refs: HashMap::new(),
            deliveries: JoinSet::new(),
            purges: JoinSet::new(),
            slots: Arc::new(Semaphore::new(sessions)),
            sessions,
            inflight_since: HashMap::new(),
            stats: Stats::default(),
            files: Arc::new(SystemFiles),
            undeleted: HashSet::new(),
            rewalk_at: None,
            relayer: None,
            sharing: Arc::new(Sharing::default()),
            shared: None,
            keepers: HashMap::new(),
        }
    }

    /// The instance id, lease and walk period used when the queue turns
    /// out to be shared with other daemons.
    pub fn sharing(mut self, sharing: Sharing) -> Self {
        self.sharing = Arc::new(sharing);
        self
    }

    /// Relays `mta` envelopes through `relayer`.
    pub fn relayer(mut self, relayer: Arc<dyn Relayer>) -> Self {
        self.relayer = Some(relayer);
        self
    }

    /// Reads `.forward` and include files with `files` (the privileged
    /// helper as root) instead of directly.
    pub fn expansion_files(mut self, files: Arc<dyn ExpansionFiles>) -> Self {
        self.files = files;
        self
    }

    /// Loads the queue, then runs until `stop` resolves; deliveries in
    /// flight get [`DRAIN_TIMEOUT`] to end.
    pub async fn run(mut self, inbox: Inbox, stop: impl std::future::Future<Output = ()>) {
        let Inbox(mut rx) = inbox;
        let mut recoveries = self.queue.recoveries();
        if self.queue.shared() {
            tracing::info!(
                "scheduler: queue {} is shared: instance {}, leases of {} s, walked every {} s",
                self.queue.name(),
                self.sharing.instance,
                self.sharing.lease_seconds(),
                self.sharing.rewalk.as_secs()
            );
            self.shared = Some(Arc::clone(&self.sharing));
        }
        self.load().await;
        tokio::pin!(stop);
        loop {
            let now = unix_now();
            for job in self.ramqueue.due(now) {
                self.start(job, now).await;
            }
            if let Some(relayer) = &self.relayer {
                relayer.flush();
            }
            let wakeup = self.ramqueue.next_wakeup(now);
            let sleep = wakeup.map(until);
            tokio::select! {
                () = &mut stop => break,
                request = rx.recv() => match request {
                    Some(request) => self.request(request).await,
                    None => break,
                },
                Some(done) = self.deliveries.join_next(), if !self.deliveries.is_empty() => {
                    match done {
                        Ok((evpid, finished)) => self.finish(evpid, finished).await,
                        Err(e) => tracing::warn!("delivery task failed: {e}"),
                    }
                }
                () = sleep_for(sleep) => {}
                () = recovered(recoveries.as_mut()) => self.load().await,
                () = sleep_until(self.rewalk_at) => self.load().await,
            }
        }
        let drain = async {
            while let Some(done) = self.deliveries.join_next().await {
                if let Ok((evpid, finished)) = done {
                    self.finish(evpid, finished).await;
                }
            }
            while self.purges.join_next().await.is_some() {}
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!(
                "scheduler: deliveries still running at shutdown, retried at next start"
            );
        }
        // Leases not renewed run out: another daemon takes those over.
        for (_, keeper) in self.keepers.drain() {
            keeper.abort();
        }
    }

    /// Schedules every envelope of the queue it does not know yet; on
    /// failure, walks again after [`REWALK_DELAY`].
    async fn load(&mut self) {
        self.rewalk_at = None;
        for evpid in std::mem::take(&mut self.undeleted) {
            self.delete(evpid).await;
        }
        let mut after = EvpId::new(MsgId(0), 0);
        let mut loaded = 0usize;
        loop {
            let walked = match &self.shared {
                Some(sharing) => {
                    self.queue
                        .envelope_walk_free(after, &sharing.instance)
                        .await
                }
                None => self.queue.envelope_walk(after).await,
            };
            if self.shared.is_some() {
                // A long walk of a shared queue does not hold up the
                // deliveries that ended: their envelopes are deleted now,
                // which keeps the redelivery window of SPEC.md 4.12 short.
                while let Some(done) = self.deliveries.try_join_next() {
                    match done {
                        Ok((evpid, finished)) => self.finish(evpid, finished).await,
                        Err(e) => tracing::warn!("delivery task failed: {e}"),
                    }
                }
            }
            match walked {
                Ok(Some((evpid, _))) if self.is_known(evpid) => after = evpid,
                Ok(Some((evpid, bytes))) => {
                    after = evpid;
                    match Envelope::parse(&bytes, Some(evpid)) {
                        Ok(envelope) => {
                            self.insert(evpid, &envelope);
                            loaded += 1;
                        }
                        Err(e) => {
                            tracing::warn!("evp:{evpid}: unreadable envelope left in queue: {e}");
                        }
                    }
                }
                Ok(None) => {
                    if let Some(sharing) = &self.shared {
                        self.rewalk_at = Some(tokio::time::Instant::now() + sharing.rewalk);
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!("scheduler: envelope walk: {e}");
                    self.rewalk_at = Some(tokio::time::Instant::now() + REWALK_DELAY);
                    break;
                }
            }
        }
        if loaded > 0 {
            tracing::info!("scheduler: {loaded} envelope(s) loaded from the queue");
        }
    }

    /// Whether a walk must skip the envelope: scheduled already, or done
    /// with and waiting for its deletion.
    fn is_known(&self, evpid: EvpId) -> bool {
        self.ramqueue.get(evpid).is_some() || self.undeleted.contains(&evpid)
    }

    /// Adds an envelope to the scheduler.
    fn insert(&mut self, evpid: EvpId, envelope: &Envelope) {
        let action_ttl = RetryPolicy::action_ttl(&self.config, &envelope.dispatcher);
        let sched = match self.policy.first_attempt(envelope, action_ttl) {
            super::Next::Retry(at) | super::Next::Expire(at) => at,
        };
        let expire = self.policy.expiry(envelope, action_ttl);
        match self
            .ramqueue
            .insert(evpid, DeliveryType::of(envelope), sched, expire)
        {
            Ok(()) => {
                self.stats.enqueued += 1;
                *self.refs.entry(evpid.msgid()).or_default() += 1;
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    async fn request(&mut self, request: Request) {
        match request {
            Request::Committed(envelopes) => {
                for (evpid, envelope) in envelopes {
                    // A walk after the queue came back may have found it
                    // first.
                    if !self.is_known(evpid) {
                        self.insert(evpid, &envelope);
                    }
                }
            }
            Request::Control(Control::Discover(evpid), reply) => {
                let _ = reply.send(Answer::Count(self.discover(evpid).await));
            }
            Request::Control(control, reply) => {
                let _ = reply.send(self.control(control));
            }
        }
    }

    fn control(&mut self, control: Control) -> Answer {
        let q = &mut self.ramqueue;
        match control {
            Control::Schedule(target) => Answer::Count(q.schedule(target)),
            Control::Remove(target) => Answer::Count(q.remove(target)),
            Control::Suspend(target) => Answer::Count(q.suspend(target)),
            Control::Resume(target) => Answer::Count(q.resume(target)),
            Control::Pause(kind) => {
                let changed = !q.is_paused(kind);
                q.pause(kind);
                Answer::Changed(changed)
            }
            Control::Unpause(kind) => {
                let changed = q.is_paused(kind);
                q.unpause(kind);
                Answer::Changed(changed)
            }
            Control::Show => Answer::Envelopes(
                q.list()
                    .into_iter()
                    .map(|(evpid, state)| Listed {
                        evpid,
                        state,
                        inflight_since: self.inflight_since.get(&evpid).copied(),
                    })
                    .collect(),
            ),
            Control::Stats => {
                let mda_running = self.sessions.saturating_sub(self.slots.available_permits());
                Answer::Stats(Stats {
                    queued: q.len(),
                    messages: self.refs.len(),
                    inflight: q.inflight(),
                    mda_running: mda_running.min(self.stats.mda_inflight),
                    ..self.stats
                })
            }
            Control::Status => Answer::Paused {
                mda: q.is_paused(DeliveryType::Mda),
                mta: q.is_paused(DeliveryType::Mta),
            },
            // Answered by `request`, which may wait for the queue.
            Control::Discover(_) => Answer::Count(0),
        }
    }

    /// Schedules an envelope of the queue that the scheduler does not
    /// know; 1 if it was found and valid, else 0.
    async fn discover(&mut self, evpid: EvpId) -> usize {
        if self.ramqueue.get(evpid).is_some() {
            return 0;
        }
        match self.load_envelope(evpid).await {
            Ok(Some(envelope)) => {
                let before = self.stats.enqueued;
                self.insert(evpid, &envelope);
                let found = usize::from(self.stats.enqueued > before);
                if found == 1 {
                    tracing::info!("evp:{evpid}: discovered in the queue");
                }
                found
            }
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!("evp:{evpid}: not discovered: {e}");
                0
            }
        }
    }

    /// Loads an envelope for a job; `None` (logged) when it is gone.
    async fn load_envelope(&self, evpid: EvpId) -> Result<Option<Envelope>, String> {
        match self.queue.envelope_load(evpid).await {
            Ok(Some(bytes)) => Envelope::parse(&bytes, Some(evpid))
                .map(Some)
                .map_err(|e| format!("unreadable envelope: {e}")),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// On a shared queue, claims the envelope of `job`; false (and the
    /// envelope forgotten or put back) when this daemon must not act on it.
    async fn claim(&mut self, job: &Job, now: u64) -> bool {
        let Some(sharing) = self.shared.clone() else {
            return true;
        };
        let evpid = job.evpid;
        let claimed = self
            .queue
            .envelope_claim(evpid, &sharing.instance, sharing.lease_seconds())
            .await;
        match claimed {
            Ok(Claim::Granted) => true,
            Ok(other) => {
                // Another daemon holds it or delivered it: forgotten here,
                // found again by a later walk if it is still there and free.
                tracing::debug!("evp:{evpid}: not claimed ({other:?})");
                if let Task::Deliver(_) = job.task {
                    let _ = self.ramqueue.outcome(evpid, Outcome::Ok);
                }
                self.release(evpid.msgid()).await;
                false
            }
            Err(e) => {
                tracing::warn!("evp:{evpid}: cannot claim: {e}");
                if let Task::Deliver(kind) = job.task {
                    self.retry_later(evpid, kind, now);
                }
                false
            }
        }
    }

    async fn start(&mut self, job: Job, now: u64) {
        let evpid = job.evpid;
        if !self.claim(&job, now).await {
            return;
        }
        let envelope = match self.load_envelope(evpid).await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => {
                tracing::warn!("evp:{evpid}: envelope vanished from the queue");
                if let Task::Deliver(_) = job.task {
                    let _ = self.ramqueue.outcome(evpid, Outcome::Ok);
                }
                self.release(evpid.msgid()).await;
                return;
            }
            Err(e) => {
                tracing::warn!("evp:{evpid}: {e}");
                if let Task::Deliver(kind) = job.task {
                    self.retry_later(evpid, kind, now);
                }
                return;
            }
        };
        if let (Some(sharing), Task::Deliver(_)) = (self.shared.clone(), job.task) {
            // Another daemon may have tried it since this one walked it:
            // its retry time is the stored envelope's.
            let action_ttl = RetryPolicy::action_ttl(&self.config, &envelope.dispatcher);
            let next = self.policy.first_attempt(&envelope, action_ttl);
            if let super::Next::Retry(at) = next {
                if at > now {
                    if let Err(e) = self.queue.envelope_release(evpid, &sharing.instance).await {
                        tracing::warn!("evp:{evpid}: cannot release: {e}");
                    }
                    let _ = self.ramqueue.outcome(evpid, Outcome::Tempfail(next));
                    return;
                }
            }
        }
        match job.task {
            Task::Remove => {
                self.stats.removed += 1;
                self.delete(evpid).await;
                log::removed(&envelope, now);
            }
            Task::Expire => {
                self.stats.expired += 1;
                let mut envelope = envelope;
                mark_expired(&mut envelope);
                log::expired(&envelope, now);
                self.bounce(&envelope, Bounce::Failed, now).await;
                self.delete(evpid).await;
            }
            Task::Deliver(DeliveryType::Mda) => {
                self.stats.started += 1;
                self.stats.mda_started += 1;
                self.stats.mda_inflight += 1;
                self.inflight_since.insert(evpid, now);
                let agent = Arc::clone(&self.agent);
                let slots = Arc::clone(&self.slots);
                self.keep_leased(evpid);
                self.deliveries.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let result = agent.deliver(&envelope).await;
                    let logged = false;
                    (
                        evpid,
                        Finished {
                            envelope,
                            result,
                            logged,
                            dsn_passed: false,
                            deleted: false,
                        },
                    )
                });
            }
            Task::Deliver(DeliveryType::Mta) => {
                self.stats.started += 1;
                self.inflight_since.insert(evpid, now);
                let Some(relayer) = &self.relayer else {
                    self.deliveries.spawn(async move {
                        let result = LocalResult::Temporary(NO_RELAY.to_owned());
                        let logged = false;
                        (
                            evpid,
                            Finished {
                                envelope,
                                result,
                                logged,
                                dsn_passed: false,
                                deleted: false,
                            },
                        )
                    });
                    return;
                };
                let outcome = relayer.submit(envelope.clone());
                self.keep_leased(evpid);
                // A relayed envelope is deleted by its task once the next
                // hop took it: many end at once, and the driver, finishing
                // them one at a time, would leave them queued seconds
                // after their 250. Not on a shared queue (the lease is
                // the driver's to end), nor when a success notification
                // of ours is due (it is queued before the deletion).
                let queue = (self.shared.is_none()).then(|| Arc::clone(&self.queue));
                self.deliveries.spawn(async move {
                    let (result, logged, dsn_passed) = match outcome.await {
                        Ok(relayed) => (relayed.result, true, relayed.dsn_passed),
                        Err(_) => (LocalResult::Temporary(NO_RELAY.to_owned()), false, false),
                    };
                    let notify = envelope.dsn_notify.0 & Notify::SUCCESS != 0 && !dsn_passed;
                    let deleted = match queue {
                        Some(queue) if matches!(result, LocalResult::Delivered) && !notify => {
                            queue.envelope_delete(evpid).await.is_ok()
                        }
                        _ => false,
                    };
                    (
                        evpid,
                        Finished {
                            envelope,
                            result,
                            logged,
                            dsn_passed,
                            deleted,
                        },
                    )
                });
            }
            Task::Deliver(DeliveryType::Bounce) => {
                self.stats.started += 1;
                let outcome = match self.inject_bounce(&envelope, now).await {
                    Ok(()) => {
                        self.stats.bounced += 1;
                        self.delete(evpid).await;
                        Outcome::Ok
                    }
                    Err(Injection::Drop(reason)) => {
                        tracing::warn!(
                            "evp:{evpid}: bounce to <{}> dropped: {reason}",
                            envelope.sender
                        );
                        self.delete(evpid).await;
                        Outcome::Permfail
                    }
                    Err(Injection::Retry(reason)) => {
                        tracing::warn!(
                            "evp:{evpid}: bounce to <{}> delayed: {reason}",
                            envelope.sender
                        );
                        self.tempfail(evpid, envelope, &reason, now).await;
                        return;
                    }
                };
                let _ = self.ramqueue.outcome(evpid, outcome);
            }
        }
    }

    /// Puts an envelope that could not be started back for later.
    fn retry_later(&mut self, evpid: EvpId, kind: DeliveryType, now: u64) {
        let at = now + kind.backoff_base();
        let _ = self
            .ramqueue
            .outcome(evpid, Outcome::Tempfail(super::Next::Retry(at)));
    }

    /// On a shared queue, renews the lease of `evpid` until
    /// [`Driver::finish`]: while the delivery waits for a slot, runs, and
    /// waits for the driver (busy walking the store, perhaps).
    fn keep_leased(&mut self, evpid: EvpId) {
        if let Some(sharing) = &self.shared {
            let keeper = lease::keep(Arc::clone(&self.queue), Arc::clone(sharing), evpid);
            if let Some(old) = self.keepers.insert(evpid, keeper) {
                old.abort();
            }
        }
    }

    async fn finish(&mut self, evpid: EvpId, finished: Finished) {
        // What is left (a deletion, or an update and a release) takes
        // far less than a lease; a renewal after the release would keep
        // the envelope from the other daemons.
        if let Some(keeper) = self.keepers.remove(&evpid) {
            keeper.abort();
        }
        let Finished {
            mut envelope,
            result,
            logged,
            dsn_passed,
            deleted,
        } = finished;
        let log = |envelope: &Envelope, attempt: Attempt<'_>, now: u64| {
            if !logged {
                log::delivery(envelope, attempt, now);
            }
        };
        self.inflight_since.remove(&evpid);
        if let Kind::Mda(_) = envelope.kind {
            self.stats.mda_inflight = self.stats.mda_inflight.saturating_sub(1);
        }
        let now = unix_now();
        match result {
            LocalResult::Delivered => {
                self.stats.delivered += 1;
                log(&envelope, Attempt::Delivered, now);
                envelope.set_errorline("Delivered");
                envelope.status = Some(Status { class: 2, code: 0 });
                if envelope.dsn_notify.0 & Notify::SUCCESS != 0 && !dsn_passed {
                    self.bounce(&envelope, Bounce::Delivered, now).await;
                }
                if deleted {
                    self.release(evpid.msgid()).await;
                } else {
                    self.delete(evpid).await;
                }
                let _ = self.ramqueue.outcome(evpid, Outcome::Ok);
            }
            LocalResult::Temporary(reason) => {
                log(&envelope, Attempt::TempFail(&reason), now);
                self.tempfail(evpid, envelope, &reason, now).await;
            }
            LocalResult::Permanent(reason) => {
                self.stats.permfail += 1;
                log(&envelope, Attempt::PermFail(&reason), now);
                envelope.set_errorline(&reason);
                envelope.status = Some(Status { class: 5, code: 0 });
                self.bounce(&envelope, Bounce::Failed, now).await;
                self.delete(evpid).await;
                let _ = self.ramqueue.outcome(evpid, Outcome::Permfail);
            }
            LocalResult::Loop => {
                self.stats.loops += 1;
                log(&envelope, Attempt::Loop, now);
                mark_loop(&mut envelope);
                self.bounce(&envelope, Bounce::Failed, now).await;
                self.delete(evpid).await;
                let _ = self.ramqueue.outcome(evpid, Outcome::Loop);
            }
        }
    }

    /// Records a temporary failure and schedules the next attempt.
    async fn tempfail(&mut self, evpid: EvpId, mut envelope: Envelope, reason: &str, now: u64) {
        self.stats.tempfail += 1;
        envelope.retry = envelope.retry.saturating_add(1);
        envelope.last_try = now;
        envelope.set_errorline(reason);
        envelope.status = Some(Status { class: 4, code: 0 });
        let action_ttl = RetryPolicy::action_ttl(&self.config, &envelope.dispatcher);
        let attempt = self.policy.next_attempt(&envelope, action_ttl, now);
        if let Some(warning) = attempt.warning {
            envelope.last_bounce = warning.last_bounce;
            let report = Bounce::Delayed {
                ttl: warning.ttl,
                delay: warning.delay,
            };
            self.bounce(&envelope, report, now).await;
        }
        match envelope.to_bytes() {
            Ok(bytes) => {
                if let Err(e) = self.queue.envelope_update(evpid, &bytes).await {
                    tracing::warn!("evp:{evpid}: cannot update envelope: {e}");
                }
                if let Some(sharing) = &self.shared {
                    // Any daemon may try it at its next retry time.
                    if let Err(e) = self.queue.envelope_release(evpid, &sharing.instance).await {
                        tracing::warn!("evp:{evpid}: cannot release: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("evp:{evpid}: cannot write envelope: {e}"),
        }
        let _ = self
            .ramqueue
            .outcome(evpid, Outcome::Tempfail(attempt.next));
    }

    /// Queues a bounce envelope reporting `report` about `envelope`, on
    /// the same message, when one is due at all.
    async fn bounce(&mut self, envelope: &Envelope, report: Bounce, now: u64) {
        let Ok(bounce) = bounce_envelope(envelope, report, now) else {
            return;
        };
        let Some(msgid) = envelope.msgid() else {
            return;
        };
        let bytes = match bounce.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!("bounce envelope: {e}");
                return;
            }
        };
        match self.queue.envelope_create(msgid, &bytes).await {
            Ok(evpid) => {
                self.stats.bounces += 1;
                self.insert(evpid, &bounce);
            }
            Err(e) => tracing::warn!("msg:{msgid}: cannot queue bounce: {e}"),
        }
    }

    /// Writes the notification of a bounce envelope and queues it as a
    /// new message to the original sender.
    async fn inject_bounce(&mut self, envelope: &Envelope, now: u64) -> Result<(), Injection> {
        let msgid = envelope
            .msgid()
            .ok_or_else(|| Injection::Drop("envelope without id".to_owned()))?;
        let groups = bounce::group([envelope]);
        let Some(group) = groups.first() else {
            return Err(Injection::Drop("nothing to report".to_owned()));
        };
        let original = self
            .read_original(msgid, group.returns_full_message())
            .await?;
        let notification = group
            .build(Cursor::new(original), now, rand_u64())
            .map_err(|e| Injection::Retry(e.to_string()))?;
        let recipient = local::address(&notification.recipient);
        let deliveries = self.expand_local(&recipient).await?;
        let new = self
            .queue
            .message_create()
            .await
            .map_err(|e| Injection::Retry(e.to_string()))?;
        let result = self
            .write_bounce(
                new,
                &notification.data,
                envelope,
                &notification.recipient,
                &deliveries,
                now,
            )
            .await;
        match result {
            Ok(created) => {
                tracing::debug!(
                    "evp:{}: bounced as msg:{new}",
                    envelope.id.map(|id| id.to_string()).unwrap_or_default()
                );
                let size = notification.data.len() as u64;
                log::bounce_injected(&envelope.smtpname, new, size, &created);
                for (evpid, bounce) in created {
                    self.insert(evpid, &bounce);
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.queue.message_delete(new).await;
                Err(Injection::Retry(e.to_string()))
            }
        }
    }

    async fn write_bounce(
        &self,
        msgid: MsgId,
        data: &[u8],
        original: &Envelope,
        to: &MailAddr,
        deliveries: &[Delivery],
        now: u64,
    ) -> Result<Vec<(EvpId, Envelope)>, queue::Error> {
        let mut offset = 0u64;
        for chunk in data.chunks(64 * 1024) {
            self.queue.message_write(msgid, offset, chunk).await?;
            offset += chunk.len() as u64;
        }
        let mut created = Vec::new();
        for delivery in deliveries {
            let mut envelope = self.delivery_envelope(delivery, original, to, now);
            let bytes = envelope.to_bytes().map_err(|e| queue::Error::Task {
                reason: format!("envelope: {e}"),
            })?;
            let evpid = self.queue.envelope_create(msgid, &bytes).await?;
            envelope.id = Some(evpid);
            created.push((evpid, envelope));
        }
        self.queue.message_commit(msgid, offset).await?;
        Ok(created)
    }

    /// The envelope of a bounce message for one of its deliveries.
    fn delivery_envelope(
        &self,
        delivery: &Delivery,
        original: &Envelope,
        to: &MailAddr,
        now: u64,
    ) -> Envelope {
        let (action, dest, kind) = delivery_parts(delivery);
        Envelope {
            id: None,
            dispatcher: self.config[action].name.clone(),
            tag: String::new(),
            kind,
            smtpname: original.smtpname.clone(),
            helo: original.smtpname.clone(),
            hostname: "localhost".to_owned(),
            username: String::new(),
            errorline: String::new(),
            source: Source::Local,
            sender: MailAddr::default(),
            rcpt: to.clone(),
            dest: MailAddr {
                user: dest.user,
                domain: dest.domain,
            },
            ctime: now,
            last_try: 0,
            last_bounce: 0,
            ttl: 0,
            retry: 0,
            flags: Flags {
                authenticated: false,
                bounce: true,
                internal: true,
            },
            dsn_notify: Notify(0),
            dsn_ret: None,
            dsn_envid: String::new(),
            dsn_orcpt: String::new(),
            status: None,
        }
    }

    /// The recipients a local submission to `recipient` expands to.
    async fn expand_local(&self, recipient: &Address) -> Result<Vec<Delivery>, Injection> {
        let envelope =
            rules::Envelope::new(rules::Source::Socket, Address::null(), recipient.clone());
        let expander = Expander::new(&self.config, &self.tables, self.files.as_ref());
        expander.expand(&envelope).await.map_err(|failure| {
            let reply = failure.reply(recipient);
            if failure.temporary {
                Injection::Retry(reply)
            } else {
                Injection::Drop(reply)
            }
        })
    }

    /// The original message, or its header block only.
    async fn read_original(&self, msgid: MsgId, full: bool) -> Result<Vec<u8>, Injection> {
        let mut data = Vec::new();
        loop {
            let chunk = self
                .queue
                .message_read(msgid, data.len() as u64, MAX_READ_LENGTH)
                .await
                .map_err(|e| Injection::Retry(e.to_string()))?
                .ok_or_else(|| Injection::Drop(format!("message {msgid} is gone")))?;
            if chunk.is_empty() {
                return Ok(data);
            }
            data.extend_from_slice(&chunk);
            if !full && data.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(data);
            }
        }
    }

    /// Deletes an envelope, and its message when it was the last.
    async fn delete(&mut self, evpid: EvpId) {
        if let Err(e) = self.queue.envelope_delete(evpid).await {
            tracing::warn!("evp:{evpid}: cannot delete envelope: {e}");
            self.undeleted.insert(evpid);
            if self.rewalk_at.is_none() {
                self.rewalk_at = Some(tokio::time::Instant::now() + REWALK_DELAY);
            }
            return;
        }
        self.release(evpid.msgid()).await;
    }

    /// One envelope of `msgid` is gone; deletes the message after its last
    /// (a shared queue's backend does that itself: another daemon may hold
    /// an envelope of the message this one does not know).
    async fn release(&mut self, msgid: MsgId) {
        let Some(count) = self.refs.get_mut(&msgid) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.refs.remove(&msgid);
            if self.shared.is_some() {
                return;
            }
            while self.purges.try_join_next().is_some() {}
            let queue = Arc::clone(&self.queue);
            self.purges.spawn(async move {
                if let Err(e) = queue.message_delete(msgid).await {
                    tracing::warn!("msg:{msgid}: cannot delete message: {e}");
                }
            });
        }
    }
}

/// Why a bounce could not be injected.
enum Injection {
    /// Try again later.
    Retry(String),
    /// Give up (nobody to send it to).
    Drop(String),
}

/// The action, final address and envelope kind of an expanded delivery.
pub fn delivery_parts(delivery: &Delivery) -> (crate::config::ActionId, Address, Kind) {
    match delivery {
        Delivery::Relay { action, dest, .. } => (*action, dest.clone(), Kind::Mta),
        Delivery::Local {
            action,
            dest,
            user,
            subaddress,
            exec,
            ..
        } => (
            *action,
            dest.clone(),
            Kind::Mda(Mda {
                exec: match exec {
                    None => String::new(),
                    Some(MdaExec::Command(command)) => command.clone(),
                    Some(MdaExec::File(path)) => format!("{MBOXFILE_EXEC}{path}"),
                },
                subaddress: subaddress.clone(),
                user: user.clone(),
            }),
        ),
    }
}

/// The time left until the Unix second `at` begins.
fn until(at: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(at).saturating_sub(now)
}

/// Resolves when the queue came back, never when it cannot go away.
async fn recovered(recoveries: Option<&mut tokio::sync::watch::Receiver<u64>>) {
    if let Some(rx) = recoveries {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// A random number for MIME boundaries.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_now());
    hasher.finish()
}
