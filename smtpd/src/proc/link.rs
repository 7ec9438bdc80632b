//! The link between callers and whichever child runs: one per supervised
//! backend, outliving the children.
//!
//! A caller checks that the link is open, registers its request in the
//! [`Inflight`] map and formats the request into the outbox; the running
//! child's writer task takes the whole outbox at each turn (`child.rs`).
//! Nothing on that path touches a lock or counter shared by every request
//! but the outbox's, and requests for different keys rarely meet on the
//! map's shards: many threads can send at once.
//!
//! The supervisor opens the link when a child passed its handshake,
//! withdraws it when the child is lost (new requests then fail at once) and
//! closes it once what the child wrote was read (the requests left in
//! flight fail). [`Link::prepare`] empties it for the next child.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::BytesMut;
use smtpd_sdk::proto::Line;
use tokio::sync::Notify;

use super::child::quoted;
use super::inflight::Inflight;
use super::padded::Padded;
use super::{Family, Spec};

/// The outbox's initial capacity.
pub(crate) const BATCH: usize = 64 * 1024;

/// Why a request could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Too many bytes already wait for the child.
    Overloaded,
    /// No child takes requests.
    Closed,
    /// The request cannot be put on the wire.
    Format(String),
}

/// Requests waiting for the writer.
struct Outbox {
    lines: BytesMut,
    /// Bytes the writer took and is writing now.
    writing: usize,
    /// No more requests: the writer writes what is left, then closes the
    /// child's stdin.
    closing: bool,
}

/// The link to a backend's running child.
pub(crate) struct Link<F: Family> {
    name: String,
    /// The requests in flight.
    pub(crate) inflight: Inflight<F::Key, F::Answer>,
    outbox: Padded<Mutex<Outbox>>,
    /// Wakes the writer.
    pub(crate) wake_writer: Notify,
    /// Wakes paced senders: the writer wrote a batch, or the link closed.
    room: Notify,
    max_buffered: usize,
    open: AtomicBool,
    epoch: AtomicU64,
    /// Written by the reader at every line: on a cache line of its own,
    /// away from what callers read.
    lines_read: Padded<AtomicU64>,
    registration: RwLock<Option<Arc<F::Registration>>>,
}

impl<F: Family> Link<F> {
    /// A closed link for the backend of `spec`.
    pub(crate) fn new(spec: &Spec) -> Self {
        Self {
            name: spec.name.clone(),
            inflight: Inflight::new(),
            outbox: Padded(Mutex::new(Outbox {
                lines: BytesMut::with_capacity(BATCH),
                writing: 0,
                closing: true,
            })),
            wake_writer: Notify::new(),
            room: Notify::new(),
            max_buffered: spec.max_buffered,
            open: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            lines_read: Padded::default(),
            registration: RwLock::new(None),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Empties the link for a new child, before its tasks start: nothing
    /// meant for the last child reaches it.
    pub(crate) fn prepare(&self) {
        let mut outbox = self.outbox();
        outbox.lines.clear();
        outbox.writing = 0;
        outbox.closing = false;
        drop(outbox);
        self.inflight.reopen();
    }

    /// Lets callers in: a child with this registration serves them.
    pub(crate) fn open(&self, registration: F::Registration) {
        *self
            .registration
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(registration));
        self.open.store(true, Ordering::Release);
    }

    /// Turns new callers away; the requests in flight may still be
    /// answered.
    pub(crate) fn withdraw(&self) {
        self.open.store(false, Ordering::Release);
        *self
            .registration
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Fails the requests left in flight and drops what waits to be
    /// written.
    pub(crate) fn close(&self, reason: &str) {
        self.withdraw();
        let mut outbox = self.outbox();
        outbox.lines.clear();
        outbox.closing = true;
        drop(outbox);
        self.inflight.close(reason);
        self.room.notify_waiters();
    }

    /// Whether a child takes requests.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// What the running child registered.
    pub(crate) fn registration(&self) -> Option<Arc<F::Registration>> {
        self.registration
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Formats a request into the outbox, for the writer.
    pub(crate) fn send<L: Line>(&self, line: &L) -> Result<(), SendError> {
        // Formatted outside the lock, into this thread's scratch buffer.
        thread_local! {
            static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(1024));
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            line.format(scratch)
                .map_err(|e| SendError::Format(e.to_string()))?;
            tracing::debug!(backend = %self.name, "> {}", quoted(scratch.trim_ascii_end()));
            let mut outbox = self.outbox();
            if outbox.closing {
                return Err(SendError::Closed);
            }
            let before = outbox.lines.len();
            if before + scratch.len() + outbox.writing > self.max_buffered {
                return Err(SendError::Overloaded);
            }
            outbox.lines.extend_from_slice(scratch);
            drop(outbox);
            // A writer that has lines waiting was woken already, and takes
            // these with them.
            if before == 0 {
                self.wake_writer.notify_one();
            }
            Ok(())
        })
    }

    /// Asks the writer to write what is waiting, then close the child's
    /// stdin.
    pub(crate) fn close_input(&self) {
        self.outbox().closing = true;
        self.wake_writer.notify_one();
    }

    /// For the writer: swaps the outbox with `batch` (which must be empty)
    /// and says whether the input is to be closed once that is written.
    pub(crate) fn take(&self, batch: &mut BytesMut) -> bool {
        let mut outbox = self.outbox();
        std::mem::swap(&mut outbox.lines, batch);
        outbox.writing = batch.len();
        outbox.closing
    }

    /// For the writer: how many bytes wait.
    pub(crate) fn waiting(&self) -> usize {
        self.outbox().lines.len()
    }

    /// For the writer: what it took is written.
    pub(crate) fn written(&self) {
        self.outbox().writing = 0;
        self.room.notify_waiters();
    }

    /// Waits until at most half the buffer limit waits for the child (or
    /// the link closed), so that a stream of lines goes no faster than the
    /// child reads it.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Whether at most half the buffer limit waits for the child (or the
    /// link closed): [`Link::room`] would not wait.
    pub(crate) fn has_room(&self) -> bool {
        let outbox = self.outbox();
        outbox.closing || outbox.lines.len() + outbox.writing <= self.max_buffered / 2
    }

    /// For the reader: the child wrote one more line.
    pub(crate) fn line_read(&self) {
        self.lines_read.0.fetch_add(1, Ordering::AcqRel);
    }

    /// How many lines the children wrote after their handshakes.
    pub(crate) fn lines_read(&self) -> u64 {
        self.lines_read.0.load(Ordering::Acquire)
    }

    /// The sweeper's current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// For the sweeper: one more tick; returns the new epoch.
    pub(crate) fn tick(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }
}
