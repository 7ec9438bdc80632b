//! The in-memory scheduler state, OpenSMTPD's ramqueue (queue.md 6.1):
//! every envelope the scheduler knows, by state, with its next attempt
//! and expiry times.
//!
//! An envelope is *pending* (waiting for its time), *scheduled* (in a
//! ready list: removed, expired, bounce, mda or mta), *in flight* (handed
//! to an agent, waiting for its [`Outcome`]) or *held* (parked by the
//! relay agent on a hold queue while its route is busy, until
//! [`Ramqueue::release`]; at most [`HOLDQ_MAX`] per queue). A *suspended*
//! envelope (`smtpctl pause envelope`) keeps its state but stays out of
//! the ready lists until resumed. [`Ramqueue::due`] moves pending
//! envelopes whose time has come to the ready lists and hands out jobs,
//! one from each list in turn (removed, expired, bounce, mda, mta), with
//! the mda and mta lists skipped while paused and deliveries limited to
//! `max_inflight`. Times are Unix seconds passed in; the retry times come
//! from [`super::retry`]. Pure data: the driver does the queue I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use super::retry::{DeliveryType, Next};
use crate::config::Config;
use crate::queue::{EvpId, MsgId};

/// The default limit of envelopes in flight (OpenSMTPD's `max-inflight`).
pub const MAX_INFLIGHT: usize = 5000;

/// The most envelopes one hold queue keeps; past it a held envelope is
/// retried after [`HOLDQ_OVERFLOW_DELAY`].
pub const HOLDQ_MAX: usize = 1000;

/// Seconds before an envelope that did not fit its hold queue is tried
/// again (OpenSMTPD's overflow backoff base).
pub const HOLDQ_OVERFLOW_DELAY: u64 = 3;

/// Which envelopes an administrative command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One envelope.
    Envelope(EvpId),
    /// Every envelope of a message.
    Message(MsgId),
    /// Every envelope.
    All,
}

/// What the driver must do with a due envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Deliver it (local, relay or bounce injection); it is now in flight
    /// until its [`Outcome`] is reported.
    Deliver(DeliveryType),
    /// Its lifetime is over: mark it expired, bounce it, delete it. The
    /// scheduler has forgotten it.
    Expire,
    /// An administrator removed it: delete it without a bounce. The
    /// scheduler has forgotten it.
    Remove,
}

/// An envelope handed out by [`Ramqueue::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The envelope.
    pub evpid: EvpId,
    /// What to do.
    pub task: Task,
}

/// The result of a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: forgotten.
    Ok,
    /// Temporary failure: pending again until the given time (from
    /// [`super::RetryPolicy::next_attempt`]).
    Tempfail(Next),
    /// Permanent failure (bounced by the driver): forgotten.
    Permfail,
    /// Loop detected (bounced by the driver): forgotten.
    Loop,
}

/// Where an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its next attempt.
    Pending,
    /// In a ready list.
    Scheduled,
    /// Handed to an agent.
    Inflight,
    /// Parked on a hold queue (the id the relay agent gave).
    Held(u64),
}

/// What the scheduler knows of one envelope (for `smtpctl show queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeState {
    /// Its delivery type.
    pub kind: DeliveryType,
    /// Where it is.
    pub phase: Phase,
    /// Next attempt time.
    pub sched: u64,
    /// Expiry time.
    pub expire: u64,
    /// Suspended by an administrator.
    pub suspended: bool,
    /// Removed while in flight: it goes once its attempt ends.
    pub removed: bool,
}

/// A misuse of the state by the driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The envelope is not known.
    #[error("scheduler: unknown envelope {0}")]
    Unknown(EvpId),
    /// The envelope is already known.
    #[error("scheduler: envelope {0} is already scheduled")]
    Duplicate(EvpId),
    /// An outcome (or a hold) for an envelope that is not in flight.
    #[error("scheduler: envelope {0} is not in flight")]
    NotInflight(EvpId),
}

/// The ready lists, in the order jobs are taken from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Removed,
    Expired,
    Bounce,
    Mda,
    Mta,
}

const LISTS: [List; 5] = [
    List::Removed,
    List::Expired,
    List::Bounce,
    List::Mda,
    List::Mta,
];

impl List {
    /// The deliveries a list hands out; `None` for removals and expiries.
    fn delivery(self) -> Option<DeliveryType> {
        match self {
            Self::Removed | Self::Expired => None,
            Self::Bounce => Some(DeliveryType::Bounce),
            Self::Mda => Some(DeliveryType::Mda),
            Self::Mta => Some(DeliveryType::Mta),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    state: EnvelopeState,
    expired: bool,
}

impl Entry {
    /// The key of the pending set: the earlier of next attempt and expiry.
    fn key(&self, evpid: EvpId) -> (u64, EvpId) {
        (self.state.sched.min(self.state.expire), evpid)
    }

    fn list(&self) -> List {
        if self.state.removed {
            List::Removed
        } else if self.expired {
            List::Expired
        } else {
            match self.state.kind {
                DeliveryType::Bounce => List::Bounce,
                DeliveryType::Mda => List::Mda,
                DeliveryType::Mta => List::Mta,
            }
        }
    }
}

/// The scheduler's state.
#[derive(Debug, Clone)]
pub struct Ramqueue {
    entries: BTreeMap<EvpId, Entry>,
    pending: BTreeSet<(u64, EvpId)>,
    ready: [VecDeque<EvpId>; 5],
    held: HashMap<(DeliveryType, u64), VecDeque<EvpId>>,
    paused: HashSet<DeliveryType>,
    inflight: usize,
    max_inflight: usize,
}

impl Default for Ramqueue {
    fn default() -> Self {
        Self::new(MAX_INFLIGHT)
    }
}

impl Ramqueue {
    /// An empty state handing out at most `max_inflight` deliveries at a
    /// time.
    pub fn new(max_inflight: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            pending: BTreeSet::new(),
            ready: Default::default(),
            held: HashMap::new(),
            paused: HashSet::new(),
            inflight: 0,
            max_inflight,
        }
    }

    /// An empty state with the configuration's `scheduler limit
    /// max-inflight`.
    pub fn from_config(config: &Config) -> Self {
        let max = config.scheduler.max_inflight;
        Self::new(usize::try_from(max).unwrap_or(usize::MAX))
    }

    /// Adds an envelope, pending until `sched` (from
    /// [`super::RetryPolicy::first_attempt`]), expiring at `expire`.
    pub fn insert(
        &mut self,
        evpid: EvpId,
        kind: DeliveryType,
        sched: u64,
        expire: u64,
    ) -> Result<(), StateError> {
        if self.entries.contains_key(&evpid) {
            return Err(StateError::Duplicate(evpid));
        }
        let entry = Entry {
            state: EnvelopeState {
                kind,
                phase: Phase::Pending,
                sched,
                expire,
                suspended: false,
                removed: false,
            },
            expired: false,
        };
        self.pending.insert(entry.key(evpid));
        self.entries.insert(evpid, entry);
        Ok(())
    }

    /// What the scheduler knows of an envelope.
    pub fn get(&self, evpid: EvpId) -> Option<EnvelopeState> {
        self.entries.get(&evpid).map(|e| e.state)
    }

    /// The number of envelopes known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no envelope is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of envelopes in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Hands out the jobs due at `now`: pending envelopes whose attempt or
    /// expiry time has come join the ready lists, then one job is taken
    /// from each list in turn until none is left (paused lists skipped,
    /// deliveries stopped at the in-flight limit).
    pub fn due(&mut self, now: u64) -> Vec<Job> {
        while let Some(&(key, evpid)) = self.pending.first() {
            if key > now {
                break;
            }
            self.pending.pop_first();
            if let Some(entry) = self.entries.get_mut(&evpid) {
                entry.expired = entry.state.expire <= now;
                entry.state.phase = Phase::Scheduled;
                let list = entry.list();
                self.ready[list as usize].push_back(evpid);
            }
        }
        let mut jobs = Vec::new();
        loop {
            let before = jobs.len();
            for list in LISTS {
                if let Some(job) = self.take(list) {
                    jobs.push(job);
                }
            }
            if jobs.len() == before {
                return jobs;
            }
        }
    }

    /// Whether a list's jobs cannot be handed out now.
    fn blocked(&self, list: List) -> bool {
        list.delivery()
            .is_some_and(|k| self.paused.contains(&k) || self.inflight >= self.max_inflight)
    }

    fn take(&mut self, list: List) -> Option<Job> {
        if self.blocked(list) {
            return None;
        }
        let kind = list.delivery();
        let evpid = self.ready[list as usize].pop_front()?;
        let task = match kind {
            None => {
                self.entries.remove(&evpid);
                if list == List::Removed {
                    Task::Remove
                } else {
                    Task::Expire
                }
            }
            Some(kind) => {
                if let Some(entry) = self.entries.get_mut(&evpid) {
                    entry.state.phase = Phase::Inflight;
                }
                self.inflight += 1;
                Task::Deliver(kind)
            }
        };
        Some(Job { evpid, task })
    }

    /// When [`Ramqueue::due`] has something to hand out: `now` if a job
    /// is ready, else the earliest attempt or expiry of a pending
    /// envelope; `None` when there is nothing to wait for.
    pub fn next_wakeup(&self, now: u64) -> Option<u64> {
        let ready = LISTS
            .iter()
            .any(|&list| !self.blocked(list) && !self.ready[list as usize].is_empty());
        if ready {
            return Some(now);
        }
        self.pending.first().map(|&(key, _)| key.max(now))
    }

    /// Reports the outcome of an in-flight envelope.
    pub fn outcome(&mut self, evpid: EvpId, outcome: Outcome) -> Result<(), StateError> {
        let entry = self
            .entries
            .get_mut(&evpid)
            .ok_or(StateError::Unknown(evpid))?;
        if entry.state.phase != Phase::Inflight {
            return Err(StateError::NotInflight(evpid));
        }
        self.inflight -= 1;
        let Outcome::Tempfail(next) = outcome else {
            self.entries.remove(&evpid);
            return Ok(());
        };
        if entry.state.removed {
            entry.state.phase = Phase::Scheduled;
            self.ready[List::Removed as usize].push_back(evpid);
            return Ok(());
        }
        entry.state.sched = match next {
            Next::Retry(at) | Next::Expire(at) => at,
        };
        entry.state.phase = Phase::Pending;
        if !entry.state.suspended {
            self.pending.insert(entry.key(evpid));
        }
        Ok(())
    }

    /// The envelopes a target names, in id order.
    fn targets(&self, target: Target) -> Vec<EvpId> {
        match target {
            Target::Envelope(evpid) => self
                .entries
                .contains_key(&evpid)
                .then_some(evpid)
                .into_iter()
                .collect(),
            Target::Message(msgid) => self
                .entries
                .range(EvpId::new(msgid, 0)..=EvpId::new(msgid, u32::MAX))
                .map(|(id, _)| *id)
                .collect(),
            Target::All => self.entries.keys().copied().collect(),
        }
    }

    /// Takes an envelope out of the pending set or its ready list.
    fn unlink(&mut self, evpid: EvpId) {
        let Some(entry) = self.entries.get(&evpid) else {
            return;
        };
        if entry.state.suspended {
            return;
        }
        match entry.state.phase {
            Phase::Pending => {
                self.pending.remove(&entry.key(evpid));
            }
            Phase::Scheduled => {
                let list = &mut self.ready[entry.list() as usize];
                list.retain(|id| *id != evpid);
            }
            Phase::Held(holdq) => {
                let key = (entry.state.kind, holdq);
                if let Some(queue) = self.held.get_mut(&key) {
                    queue.retain(|id| *id != evpid);
                    if queue.is_empty() {
                        self.held.remove(&key);
                    }
                }
            }
            Phase::Inflight => {}
        }
    }

    /// Parks an in-flight envelope on hold queue `holdq` of its type (the
    /// relay agent's answer when a route has too many tasks). A suspended
    /// envelope goes back to pending instead; one that does not fit the
    /// full queue is pending again, due [`HOLDQ_OVERFLOW_DELAY`] seconds
    /// after `now`.
    pub fn hold(&mut self, evpid: EvpId, holdq: u64, now: u64) -> Result<(), StateError> {
        let entry = self
            .entries
            .get_mut(&evpid)
            .ok_or(StateError::Unknown(evpid))?;
        if entry.state.phase != Phase::Inflight {
            return Err(StateError::NotInflight(evpid));
        }
        self.inflight -= 1;
        if entry.state.removed {
            entry.state.phase = Phase::Scheduled;
            self.ready[List::Removed as usize].push_back(evpid);
            return Ok(());
        }
        entry.state.phase = Phase::Pending;
        if entry.state.suspended {
            return Ok(());
        }
        let queue = self.held.entry((entry.state.kind, holdq)).or_default();
        if queue.len() >= HOLDQ_MAX {
            entry.state.sched = now.saturating_add(HOLDQ_OVERFLOW_DELAY);
            self.pending.insert(entry.key(evpid));
        } else {
            entry.state.phase = Phase::Held(holdq);
            queue.push_back(evpid);
        }
        Ok(())
    }

    /// Releases up to `count` envelopes (all with `None`) from hold queue
    /// `holdq` of type `kind`, oldest first: they are pending again, due
    /// at their attempt time. Returns how many were released.
    pub fn release(&mut self, kind: DeliveryType, holdq: u64, count: Option<usize>) -> usize {
        let Some(queue) = self.held.get_mut(&(kind, holdq)) else {
            return 0;
        };
        let n = count.unwrap_or(queue.len()).min(queue.len());
        let released: Vec<EvpId> = queue.drain(..n).collect();
        if queue.is_empty() {
            self.held.remove(&(kind, holdq));
        }
        for evpid in &released {
            if let Some(entry) = self.entries.get_mut(evpid) {
                entry.state.phase = Phase::Pending;
                self.pending.insert(entry.key(*evpid));
            }
        }
        released.len()
    }

    /// `smtpctl schedule`: makes the named pending or held envelopes ready
    /// now (those in flight, suspended or already leaving are left alone).
    /// Returns how many were made ready.
    pub fn schedule(&mut self, target: Target) -> usize {
        let mut count = 0;
        for evpid in self.targets(target) {
            let Some(entry) = self.entries.get(&evpid) else {
                continue;
            };
            let s = entry.state;
            let waiting = matches!(s.phase, Phase::Pending | Phase::Held(_));
            if !waiting || s.suspended || s.removed || entry.expired {
                continue;
            }
            self.unlink(evpid);
            if let Some(entry) = self.entries.get_mut(&evpid) {
                entry.state.phase = Phase::Scheduled;
                let list = entry.list();
                self.ready[list as usize].push_back(evpid);
                count += 1;
            }
        }
        count
    }

    /// `smtpctl remove`: the named envelopes are handed out as
    /// [`Task::Remove`]; one in flight goes once its attempt ends. Returns
    /// how many were removed.
    pub fn remove(&mut self, target: Target) -> usize {
        let mut count = 0;
        for evpid in self.targets(target) {
            let Some(entry) = self.entries.get(&evpid) else {
                continue;
            };
            if entry.state.removed || entry.expired {
                continue;
            }
            count += 1;
            if entry.state.phase == Phase::Inflight {
                if let Some(entry) = self.entries.get_mut(&evpid) {
                    entry.state.removed = true;
                }
                continue;
            }
            self.unlink(evpid);
            if let Some(entry) = self.entries.get_mut(&evpid) {
                entry.state.removed = true;
                entry.state.suspended = false;
                entry.state.phase = Phase::Scheduled;
            }
            self.ready[List::Removed as usize].push_back(evpid);
        }
        count
    }

    /// `smtpctl pause envelope`: the named envelopes stay out of the
    /// ready lists until resumed. Returns how many were suspended.
    pub fn suspend(&mut self, target: Target) -> usize {
        let mut count = 0;
        for evpid in self.targets(target) {
            if self.entries.get(&evpid).is_some_and(|e| !e.state.suspended) {
                self.unlink(evpid);
                if let Some(entry) = self.entries.get_mut(&evpid) {
                    if matches!(entry.state.phase, Phase::Held(_)) {
                        entry.state.phase = Phase::Pending;
                    }
                    entry.state.suspended = true;
                    count += 1;
                }
            }
        }
        count
    }

    /// `smtpctl resume envelope`. Returns how many were resumed.
    pub fn resume(&mut self, target: Target) -> usize {
        let mut count = 0;
        for evpid in self.targets(target) {
            let Some(entry) = self.entries.get_mut(&evpid) else {
                continue;
            };
            if !entry.state.suspended {
                continue;
            }
            entry.state.suspended = false;
            count += 1;
            match entry.state.phase {
                Phase::Pending => {
                    self.pending.insert(entry.key(evpid));
                }
                Phase::Scheduled => self.ready[entry.list() as usize].push_back(evpid),
                Phase::Inflight | Phase::Held(_) => {}
            }
        }
        count
    }

    /// `smtpctl pause mda|mta`: envelopes of this type are no longer
    /// handed out (those in flight finish).
    pub fn pause(&mut self, kind: DeliveryType) {
        self.paused.insert(kind);
    }

    /// `smtpctl resume mda|mta`.
    pub fn unpause(&mut self, kind: DeliveryType) {
        self.paused.remove(&kind);
    }

    /// Every envelope known, by id, with its state.
    pub fn list(&self) -> Vec<(EvpId, EnvelopeState)> {
        self.entries.iter().map(|(id, e)| (*id, e.state)).collect()
    }

    /// Whether deliveries of `kind` are paused.
    pub fn is_paused(&self, kind: DeliveryType) -> bool {
        self.paused.contains(&kind)
    }
}

#[cfg(test)]
mod tests;
