//! The requests in flight on one child: request key → the caller waiting
//! for the answer.
//!
//! A caller registers its key before writing the request, then waits on a
//! [`Ticket`] (with its deadline, in `supervisor.rs`). The reader task
//! completes a ticket by key when the answer comes; when the child is lost,
//! every ticket fails at once and later registrations are refused. A
//! ticket dropped unanswered (timeout, cancelled caller) removes its key,
//! so that a late answer is recognised as such and dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Why a request got no answer from its child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The child wrote a malformed line naming the request.
    Malformed(String),
    /// The child is gone (exited, closed its output, hung, stopped).
    Lost(String),
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
}

struct Pending<K, A> {
    entries: HashMap<K, Entry<A>>,
    closed: Option<String>,
}

/// The requests in flight on one child.
pub(crate) struct Inflight<K, A> {
    pending: Mutex<Pending<K, A>>,
    serial: AtomicU64,
}

/// A registered request, waiting for its answer.
pub(crate) struct Ticket<'a, K: Eq + Hash, A> {
    inflight: &'a Inflight<K, A>,
    key: K,
    serial: u64,
    /// Receives the answer, or why there is none.
    pub(crate) answer: oneshot::Receiver<Result<A, Failure>>,
}

impl<K: Eq + Hash, A> Inflight<K, A> {
    pub(crate) fn new() -> Self {
        Self {
            pending: Mutex::new(Pending {
                entries: HashMap::new(),
                closed: None,
            }),
            serial: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending<K, A>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a request under `key`.
    pub(crate) fn register(&self, key: K) -> Result<Ticket<'_, K, A>, Refused>
    where
        K: Clone,
    {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut pending = self.lock();
        if let Some(reason) = &pending.closed {
            return Err(Refused::Closed(reason.clone()));
        }
        if pending.entries.contains_key(&key) {
            return Err(Refused::InUse);
        }
        pending
            .entries
            .insert(key.clone(), Entry { serial, answer: tx });
        Ok(Ticket {
            inflight: self,
            key,
            serial,
            answer: rx,
        })
    }

    /// Hands the answer to the request with this key. False when no such
    /// request is in flight (an unknown, late or duplicate answer).
    pub(crate) fn complete(&self, key: &K, answer: Result<A, Failure>) -> bool {
        let entry = self.lock().entries.remove(key);
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
        let entries = {
            let mut pending = self.lock();
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

    /// How many requests are in flight.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl<K: Eq + Hash, A> Drop for Ticket<'_, K, A> {
    fn drop(&mut self) {
        let mut pending = self.inflight.lock();
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
        let mut a = inflight.register(1).unwrap();
        let mut b = inflight.register(2).unwrap();
        assert_eq!(inflight.register(1).err(), Some(Refused::InUse));
        assert!(inflight.complete(&2, Ok("two")));
        assert!(inflight.complete(&1, Ok("one")));
        assert!(!inflight.complete(&1, Ok("again")), "a duplicate answer");
        assert_eq!((&mut a.answer).await.unwrap(), Ok("one"));
        assert_eq!((&mut b.answer).await.unwrap(), Ok("two"));
        assert_eq!(inflight.len(), 0);
    }

    #[test]
    fn a_dropped_ticket_makes_its_answer_late() {
        let inflight = Inflight::<u32, &str>::new();
        drop(inflight.register(7).unwrap());
        assert!(!inflight.complete(&7, Ok("late")));
        // A new request may reuse the key; the old ticket's drop does not
        // remove it.
        let old = inflight.register(8).unwrap();
        assert!(inflight.complete(&8, Ok("x")));
        let _new = inflight.register(8).unwrap();
        drop(old);
        assert_eq!(inflight.len(), 1);
    }

    #[tokio::test]
    async fn closing_fails_everything_and_refuses_more() {
        let inflight = Inflight::<u32, &str>::new();
        let mut a = inflight.register(1).unwrap();
        inflight.close("backend exited");
        assert_eq!(
            (&mut a.answer).await.unwrap(),
            Err(Failure::Lost("backend exited".into()))
        );
        assert_eq!(
            inflight.register(2).err(),
            Some(Refused::Closed("backend exited".into()))
        );
    }
}
