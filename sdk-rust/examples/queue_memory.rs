//! `queue_memory`: a queue backend that keeps everything in memory.
//!
//! It starts empty and forgets everything when it exits, so it only suits
//! tests and demonstrations, but its answers are those of a correct
//! backend:
//! - a message is written in chunks, each at the offset where the previous
//!   one ended, then committed once, with its exact size; only committed
//!   messages can be read, a read at or past the end is `found` with empty
//!   data;
//! - envelopes may be created before their message is committed and become
//!   visible with the commit: only envelopes of committed messages are
//!   loaded, updated and walked; walking returns the envelope with the
//!   smallest id above the given one, then `done`;
//! - deleting a message deletes its envelopes; `message-corrupt` moves a
//!   message and its envelopes aside, where nothing loads or walks them;
//!   deleting the last envelope of a committed message deletes it;
//! - it registers `lease` (SPEC.md 4.12), as a store several daemons share
//!   would: an envelope claimed by one instance is `busy` for the others
//!   until the lease expires or is released, and `envelope-walk-free`
//!   skips it.
//!
//! ```text
//! queue proc-exec "queue_memory"
//! ```

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smtpd_sdk::queue::{self, Claim, Error, EvpId, MsgId, Queue, LEASE_CAPABILITY};

/// One message's content.
#[derive(Default)]
struct Message {
    data: Vec<u8>,
    committed: bool,
}

/// Envelopes taken out of the store, with their ids.
type Envelopes = Vec<(EvpId, Vec<u8>)>;

/// Everything the queue holds.
#[derive(Default)]
struct Store {
    messages: HashMap<MsgId, Message>,
    envelopes: BTreeMap<EvpId, Vec<u8>>,
    /// Messages and envelopes moved aside by `message-corrupt`.
    corrupt: HashMap<MsgId, (Message, Envelopes)>,
    /// Leases: the holder and when the lease ends.
    leases: HashMap<EvpId, (String, Instant)>,
}

impl Store {
    fn uncommitted(&mut self, msgid: MsgId) -> Result<&mut Message, Error> {
        match self.messages.get_mut(&msgid) {
            Some(m) if !m.committed => Ok(m),
            Some(_) => Err(Error::failed(format!("message {msgid} is committed"))),
            None => Err(Error::failed(format!("no message {msgid}"))),
        }
    }

    fn take_envelopes(&mut self, msgid: MsgId) -> Envelopes {
        let ids: Vec<EvpId> = self
            .envelopes
            .range(envelopes_of(msgid))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.envelopes.remove(&id).map(|data| (id, data)))
            .collect()
    }
}

impl Store {
    /// True when the envelope's message is committed (and not moved aside).
    fn visible(&self, evpid: EvpId) -> bool {
        self.messages
            .get(&evpid.msgid())
            .is_some_and(|m| m.committed)
    }

    /// True when an instance other than `instance` holds a live lease.
    fn held_by_other(&self, evpid: EvpId, instance: &str) -> bool {
        self.leases
            .get(&evpid)
            .is_some_and(|(holder, until)| holder != instance && *until > Instant::now())
    }
}

fn envelopes_of(msgid: MsgId) -> RangeInclusive<EvpId> {
    EvpId::new(msgid, 1)..=EvpId::new(msgid, u32::MAX)
}

/// The in-memory queue.
pub(crate) struct MemoryQueue {
    store: Mutex<Store>,
    seed: RandomState,
    counter: AtomicU64,
}

impl MemoryQueue {
    pub(crate) fn new() -> Self {
        Self {
            store: Mutex::new(Store::default()),
            seed: RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // Every operation leaves the store consistent before it can panic.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A random 32-bit number, never zero.
    fn random(&self) -> u32 {
        loop {
            let mut h = self.seed.build_hasher();
            h.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
            let n = h.finish() as u32;
            if n != 0 {
                return n;
            }
        }
    }
}

fn no_empty_envelope(data: &[u8]) -> Result<(), Error> {
    if data.is_empty() {
        Err(Error::failed("an envelope cannot be empty"))
    } else {
        Ok(())
    }
}

impl Queue for MemoryQueue {
    fn capabilities(&self) -> Vec<String> {
        vec![LEASE_CAPABILITY.to_owned()]
    }

    async fn message_create(&self) -> Result<MsgId, Error> {
        let mut store = self.store();
        let msgid = loop {
            let id = MsgId(self.random());
            if !store.messages.contains_key(&id) && !store.corrupt.contains_key(&id) {
                break id;
            }
        };
        store.messages.insert(msgid, Message::default());
        Ok(msgid)
    }

    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let mut store = self.store();
        let message = store.uncommitted(msgid)?;
        let len = message.data.len() as u64;
        if offset != len {
            return Err(Error::failed(format!(
                "write at offset {offset} of {msgid}, which holds {len} bytes"
            )));
        }
        message.data.extend_from_slice(data);
        Ok(())
    }

    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        let mut store = self.store();
        let message = store.uncommitted(msgid)?;
        let len = message.data.len() as u64;
        if len != size {
            return Err(Error::failed(format!(
                "size mismatch: {len} bytes written, {size} announced"
            )));
        }
        message.committed = true;
        Ok(())
    }

    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        let store = self.store();
        let Some(message) = store.messages.get(&msgid).filter(|m| m.committed) else {
            return Ok(None);
        };
        let len = message.data.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = usize::try_from(length)
            .unwrap_or(usize::MAX)
            .saturating_add(start)
            .min(len);
        Ok(Some(message.data[start..end].to_vec()))
    }

    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        let mut store = self.store();
        store.messages.remove(&msgid);
        store.take_envelopes(msgid);
        Ok(())
    }

    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        let mut store = self.store();
        let Some(message) = store.messages.remove(&msgid) else {
            return Ok(false);
        };
        let envelopes = store.take_envelopes(msgid);
        tracing::warn!(%msgid, envelopes = envelopes.len(), "message moved aside as corrupt");
        store.corrupt.insert(msgid, (message, envelopes));
        Ok(true)
    }

    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        no_empty_envelope(data)?;
        let mut store = self.store();
        if !store.messages.contains_key(&msgid) {
            return Err(Error::failed(format!("no message {msgid}")));
        }
        let evpid = loop {
            let id = EvpId::new(msgid, self.random());
            if !store.envelopes.contains_key(&id) {
                break id;
            }
        };
        store.envelopes.insert(evpid, data.to_vec());
        Ok(evpid)
    }

    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        no_empty_envelope(data)?;
        let mut store = self.store();
        if !store.visible(evpid) {
            return Ok(false);
        }
        match store.envelopes.get_mut(&evpid) {
            Some(envelope) => {
                *envelope = data.to_vec();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        let store = self.store();
        if !store.visible(evpid) {
            return Ok(None);
        }
        Ok(store.envelopes.get(&evpid).cloned())
    }

    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        let mut store = self.store();
        store.leases.remove(&evpid);
        if store.envelopes.remove(&evpid).is_some() {
            let msgid = evpid.msgid();
            let last = store.envelopes.range(envelopes_of(msgid)).next().is_none();
            if last && store.messages.get(&msgid).is_some_and(|m| m.committed) {
                store.messages.remove(&msgid);
            }
        }
        Ok(())
    }

    async fn envelope_claim(
        &self,
        evpid: EvpId,
        instance: &str,
        seconds: u64,
    ) -> Result<Claim, Error> {
        let mut store = self.store();
        if !store.visible(evpid) || !store.envelopes.contains_key(&evpid) {
            return Ok(Claim::NotFound);
        }
        if store.held_by_other(evpid, instance) {
            return Ok(Claim::Busy);
        }
        let until = Instant::now() + Duration::from_secs(seconds);
        store.leases.insert(evpid, (instance.to_owned(), until));
        Ok(Claim::Granted)
    }

    async fn envelope_release(&self, evpid: EvpId, instance: &str) -> Result<(), Error> {
        let mut store = self.store();
        if store
            .leases
            .get(&evpid)
            .is_some_and(|(holder, _)| holder == instance)
        {
            store.leases.remove(&evpid);
        }
        Ok(())
    }

    async fn envelope_walk_free(
        &self,
        after: EvpId,
        instance: &str,
    ) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        let store = self.store();
        let next = store
            .envelopes
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .find(|(id, _)| store.visible(**id) && !store.held_by_other(**id, instance));
        Ok(next.map(|(id, data)| (*id, data.clone())))
    }

    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        let store = self.store();
        let next = store
            .envelopes
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .find(|(id, _)| store.messages.get(&id.msgid()).is_some_and(|m| m.committed));
        Ok(next.map(|(id, data)| (*id, data.clone())))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    queue::run(MemoryQueue::new()).await
}
