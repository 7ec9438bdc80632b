//! The requests in flight on one child: request key → the caller waiting
//! for the answer.
//!
//! A caller registers its key before writing the request, then waits on a
//! [`Ticket`]. The reader task completes a ticket by key when the answer
//! comes; when the child is lost, every ticket fails at once and later
//! registrations are refused.
//!
//! Deadlines are counted in the sweeper's ticks rather than with one timer
//! per request: each entry notes the tick (epoch) it was registered in, and
//! [`Inflight::expire`] fails the entries registered before a given epoch.
//! A ticket dropped unanswered (cancelled caller) removes its key; an
//! expired one is gone too, so that a late answer is recognised as such and
//! dropped.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::padded::Padded;

/// Why a request got no answer from its child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The child wrote a malformed line naming the request.
    Malformed(String),
    /// The child is gone (exited, closed its output, hung, stopped).
    Lost(String),
    /// No answer within the request timeout.
    TimedOut,
}

/// Why a key could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key is already in flight.
    InUse,
    /// The child is gone.
    Closed(String),
}

struct Entry<A> {
    serial: u64,
    answer: oneshot::Sender<Result<A, Failure>>,
    /// The sweeper's epoch when the request was registered.
    epoch: u64,
}

/// A fast hash for request keys (FxHash's mix). The keys are ids the
/// daemon chooses, so there is no flooding to defend against.
#[derive(Debug, Clone, Copy, Default)]
struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One shard of the map.
struct Pending<K, A> {
    entries: HashMap<K, Entry<A>, KeyHash>,
    closed: Option<String>,
    /// The next entry's serial number.
    serial: u64,
}

/// How many shards the map is cut into, so that callers and the reader
/// on different threads seldom wait for each other.
const SHARDS: usize = 16;

/// One shard, locked on its own cache line.
type Shard<K, A> = Padded<Mutex<Pending<K, A>>>;

/// The requests in flight on one child.
pub(crate) struct Inflight<K, A> {
    shards: Box<[Shard<K, A>]>,
}

/// A registered request, waiting for its answer.
pub(crate) struct Ticket<'a, K: Eq + Hash, A> {
    inflight: &'a Inflight<K, A>,
    key: K,
    serial: u64,
    answer: oneshot::Receiver<Result<A, Failure>>,
    /// Set once the answer came: its entry is gone already.
    done: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Eq + Hash, A> Inflight<K, A> {
    pub(crate) fn new() -> Self {
        let shard = || {
            Padded(Mutex::new(Pending {
                entries: HashMap::with_hasher(KeyHash),
                closed: None,
                serial: 0,
            }))
        };
        Self {
            shards: (0..SHARDS).map(|_| shard()).collect(),
        }
    }

    /// The shard holding `key`.
    fn lock(&self, key: &K) -> MutexGuard<'_, Pending<K, A>> {
        let index = (KeyHash.hash_one(key) >> 32) as usize % SHARDS;
        lock(&self.shards[index])
    }

    /// Registers a request under `key`, in sweeper epoch `epoch`.
    pub(crate) fn register(&self, key: K, epoch: u64) -> Result<Ticket<'_, K, A>, Refused>
    where
        K: Clone,
    {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.lock(&key);
        if let Some(reason) = &pending.closed {
            return Err(Refused::Closed(reason.clone()));
        }
        if pending.entries.contains_key(&key) {
            return Err(Refused::InUse);
        }
        let serial = pending.serial;
        pending.serial += 1;
        pending.entries.insert(
            key.clone(),
            Entry {
                serial,
                answer: tx,
                epoch,
            },
        );
        Ok(Ticket {
            inflight: self,
            key,
            serial,
            answer: rx,
            done: false,
        })
    }

    /// Hands the answer to the request with this key. False when no such
    /// request is in flight (an unknown, late or duplicate answer).
    pub(crate) fn complete(&self, key: &K, answer: Result<A, Failure>) -> bool {
        let entry = self.lock(key).entries.remove(key);
        match entry {
            Some(entry) => {
                // The caller may have given up just now; then nobody listens.
                entry.answer.send(answer).ok();
                true
            }
            None => false,
        }
    }

    /// Fails every request in flight and refuses new ones.
    pub(crate) fn close(&self, reason: &str) {
        for shard in self.shards.iter() {
            let entries = {
                let mut pending = lock(shard);
                pending.closed.get_or_insert_with(|| reason.to_owned());
                std::mem::take(&mut pending.entries)
            };
            for entry in entries.into_values() {
                entry
                    .answer
                    .send(Err(Failure::Lost(reason.to_owned())))
                    .ok();
            }
        }
    }

    /// Takes registrations again, after [`Inflight::close`].
    pub(crate) fn reopen(&self) {
        for shard in self.shards.iter() {
            lock(shard).closed = None;
        }
    }

    /// Fails the requests registered before epoch `before` with
    /// [`Failure::TimedOut`], and returns the epochs they were registered
    /// in.
    pub(crate) fn expire(&self, before: u64) -> Vec<u64>
    where
        K: Clone,
    {
        let mut epochs = Vec::new();
        for shard in self.shards.iter() {
            let expired: Vec<Entry<A>> = {
                let mut pending = lock(shard);
                let keys: Vec<K> = pending
                    .entries
                    .iter()
                    .filter(|(_, e)| e.epoch < before)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.iter()
                    .filter_map(|k| pending.entries.remove(k))
                    .collect()
            };
            for entry in expired {
                entry.answer.send(Err(Failure::TimedOut)).ok();
                epochs.push(entry.epoch);
            }
        }
        epochs
    }

    /// How many requests are in flight.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }
}

impl<K: Eq + Hash, A> Ticket<'_, K, A> {
    /// Waits for the answer, or why there is none.
    pub(crate) async fn answer(&mut self) -> Result<A, Failure> {
        let answer = (&mut self.answer).await;
        // Whatever came, the entry was removed before it was sent; and
        // when the sender is gone without a word, so is the entry.
        self.done = true;
        answer.unwrap_or_else(|_| Err(Failure::Lost("the backend is gone".to_owned())))
    }
}

impl<K: Eq + Hash, A> Drop for Ticket<'_, K, A> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut pending = self.inflight.lock(&self.key);
        if pending
            .entries
            .get(&self.key)
            .is_some_and(|e| e.serial == self.serial)
        {
            pending.entries.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_find_their_request_by_key() {
        let inflight = Inflight::<u32, &str>::new();
        let mut a = inflight.register(1, 0).unwrap();
        let mut b = inflight.register(2, 0).unwrap();
        assert_eq!(inflight.register(1, 0).err(), Some(Refused::InUse));
        assert!(inflight.complete(&2, Ok("two")));
        assert!(inflight.complete(&1, Ok("one")));
        assert!(!inflight.complete(&1, Ok("again")), "a duplicate answer");
        assert_eq!(a.answer().await, Ok("one"));
        assert_eq!(b.answer().await, Ok("two"));
        assert_eq!(inflight.len(), 0);
    }

    #[test]
    fn a_dropped_ticket_makes_its_answer_late() {
        let inflight = Inflight::<u32, &str>::new();
        drop(inflight.register(7, 0).unwrap());
        assert!(!inflight.complete(&7, Ok("late")));
        // A new request may reuse the key; the old ticket's drop does not
        // remove it.
        let old = inflight.register(8, 0).unwrap();
        assert!(inflight.complete(&8, Ok("x")));
        let _new = inflight.register(8, 0).unwrap();
        drop(old);
        assert_eq!(inflight.len(), 1);
    }

    #[test]
    fn keys_hash_apart() {
        let hash = |k: (u8, u32)| KeyHash.hash_one(k);
        assert_ne!(hash((1, 1)), hash((1, 2)));
        assert_ne!(hash((1, 1)), hash((2, 1)));
        assert_eq!(hash((3, 7)), hash((3, 7)));
        assert_ne!(KeyHash.hash_one("ab"), KeyHash.hash_one("ba"));
    }

    #[tokio::test]
    async fn requests_expire_by_epoch() {
        let inflight = Inflight::<u32, &str>::new();
        let mut old = inflight.register(1, 3).unwrap();
        let mut young = inflight.register(2, 4).unwrap();
        assert_eq!(inflight.expire(3), Vec::<u64>::new());
        assert_eq!(inflight.expire(4), [3]);
        assert_eq!(old.answer().await, Err(Failure::TimedOut));
        assert!(!inflight.complete(&1, Ok("late")));
        assert!(inflight.complete(&2, Ok("in time")));
        assert_eq!(young.answer().await, Ok("in time"));
    }

    #[tokio::test]
    async fn closing_fails_everything_and_refuses_more() {
        let inflight = Inflight::<u32, &str>::new();
        let mut a = inflight.register(1, 0).unwrap();
        inflight.close("backend exited");
        assert_eq!(
            a.answer().await,
            Err(Failure::Lost("backend exited".into()))
        );
        assert_eq!(
            inflight.register(2, 0).err(),
            Some(Refused::Closed("backend exited".into()))
        );
    }
}
