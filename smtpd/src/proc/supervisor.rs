//! The supervisor: the handle callers use, and the task that keeps a child
//! running (SPEC.md 1.9).
//!
//! [`Supervisor::start`] launches the first child and returns its start-up
//! error, if any, to the caller (the daemon then refuses to start). From
//! then on a task watches the child. When it exits, closes its output, or
//! hangs (a request timed out without the child writing anything since the
//! request was sent), its link is withdrawn at once, so that new requests
//! fail temporarily without waiting; the answers it wrote before dying are
//! still delivered, then every request left in flight fails; the exit is
//! logged (`backend NAME exited (STATUS)`), and the child is started again
//! after a backoff of 1 s doubling up to 60 s, reset once a child has run
//! for 60 s. A failed restart is logged and retried the same way; nothing
//! here ever ends the daemon.
//!
//! [`Supervisor::stop`] (and dropping the last handle) closes the child's
//! stdin, lets it finish the requests in flight, and sends SIGTERM after
//! 10 s and SIGKILL 5 s later (SPEC.md 1.1).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use smtpd_sdk::proto::Line;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::child::{self, Running};
use super::inflight::{Failure, Refused};
use super::link::{Link, SendError};
use super::spawn::{self, KILL_GRACE};
use super::stats::{Counters, Stats};
use super::{Error, Family, Spec, StartError};

/// The first restart delay.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A child that ran this long resets the delay.
const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// One request in this many has its latency measured.
const LATENCY_SAMPLE: u64 = 8;
/// How long a stopping child has after its stdin closed before SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where a backend is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A child passed its handshake and serves requests.
    Running {
        /// Its pid.
        pid: u32,
    },
    /// No child serves requests; one will be started after the backoff.
    Down {
        /// What happened to the last one.
        reason: String,
    },
    /// Stopped for good.
    Stopped,
}

/// A handle on one supervised backend. Cloning it is cheap; when the last
/// clone is dropped, the backend is stopped.
pub struct Supervisor<F: Family> {
    handle: Arc<Handle<F>>,
}

impl<F: Family> Clone for Supervisor<F> {
    fn clone(&self) -> Self {
        Self {
            handle: Arc::clone(&self.handle),
        }
    }
}

struct Handle<F: Family> {
    shared: Arc<Shared<F>>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

struct Shared<F: Family> {
    family: Arc<F>,
    spec: Spec,
    link: Arc<Link<F>>,
    counters: Counters,
    state: watch::Sender<State>,
}

impl<F: Family> Supervisor<F> {
    /// Starts the backend and performs its handshake.
    pub async fn start(family: F, spec: Spec) -> Result<Self, StartError> {
        let family = Arc::new(family);
        let link = Arc::new(Link::new(&spec));
        let mut running = child::launch(&family, &spec, &link).await?;
        let shared = Arc::new(Shared {
            family,
            spec,
            link,
            counters: Counters::default(),
            state: watch::channel(State::Down {
                reason: "starting".into(),
            })
            .0,
        });
        shared.install(&mut running);
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(supervise(Arc::clone(&shared), running, stopped));
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                stop: Mutex::new(Some(stop)),
            }),
        })
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.handle.shared.spec.name
    }

    /// What it runs and how.
    pub fn spec(&self) -> &Spec {
        &self.handle.shared.spec
    }

    /// Sends a request registered under `key`, and waits for its answer:
    /// at most the request timeout, give or take the sweeper's tick (a
    /// thirtieth of it). Every error is temporary.
    pub async fn call<L: Line + Sync>(&self, key: F::Key, request: &L) -> Result<F::Answer, Error> {
        let shared = &self.handle.shared;
        let sample = shared.counters.request() % LATENCY_SAMPLE == 0;
        let result = shared.call(key, request, sample).await;
        match &result {
            Ok(answer) if !shared.family.is_failure(answer) => {}
            _ => shared.counters.error(),
        }
        result
    }

    /// Sends a line that has no answer (a filter's report event, a
    /// data-line whose output comes back on its own). Every error is
    /// temporary.
    pub fn send<L: Line>(&self, line: &L) -> Result<(), Error> {
        let shared = &self.handle.shared;
        if !shared.link.is_open() {
            return Err(shared.unavailable());
        }
        shared.link.send(line).map_err(|e| shared.send_error(e))
    }

    /// [`Supervisor::send`], once the child has read enough of what waits
    /// for it: at most half the buffer limit is left waiting, so a long
    /// stream of lines keeps the memory it uses bounded.
    pub async fn send_paced<L: Line>(&self, line: &L) -> Result<(), Error> {
        self.handle.shared.link.room().await;
        self.send(line)
    }

    /// Whether [`Supervisor::send_paced`] would send at once, without
    /// waiting for the child to read.
    pub fn has_room(&self) -> bool {
        self.handle.shared.link.has_room()
    }

    /// Counts a request made with [`Supervisor::send`] and answered on its
    /// own, with its latency when measured, for `smtpctl show filters`.
    pub fn count(&self, latency: Option<Duration>, failed: bool) {
        let counters = &self.handle.shared.counters;
        counters.request();
        if let Some(latency) = latency {
            counters.answered_in(latency);
        }
        if failed {
            counters.error();
        }
    }

    /// What the running child registered, if a child runs.
    pub fn registration(&self) -> Option<Arc<F::Registration>> {
        self.handle.shared.link.registration()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let shared = &self.handle.shared;
        shared.counters.snapshot(shared.link.inflight.len())
    }

    /// Where the backend is in its life, now and as it changes.
    pub fn state(&self) -> watch::Receiver<State> {
        self.handle.shared.state.subscribe()
    }

    /// Closes the child's stdin, lets it answer what is in flight, and
    /// returns once it has exited (SIGTERM after 10 s, SIGKILL 5 s later).
    pub async fn stop(&self) {
        let stop = self
            .handle
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            stop.send(()).ok();
        }
        let mut state = self.state();
        // The sender lives as long as `self`.
        state.wait_for(|s| *s == State::Stopped).await.ok();
    }
}

impl<F: Family> Shared<F> {
    /// Opens the link for a child that passed its handshake.
    fn install(&self, running: &mut Running<F>) {
        self.counters.set_pid(Some(running.pid));
        self.link
            .open(running.registration.take().unwrap_or_default());
        self.state.send_replace(State::Running { pid: running.pid });
    }

    /// Withdraws the link: new requests fail at once.
    fn withdraw(&self, reason: &str) {
        self.link.withdraw();
        self.counters.set_pid(None);
        self.state.send_replace(State::Down {
            reason: reason.to_owned(),
        });
    }

    fn send_error(&self, e: SendError) -> Error {
        let backend = self.spec.name.clone();
        match e {
            SendError::Overloaded => Error::Overloaded {
                backend,
                limit: self.spec.max_buffered,
            },
            SendError::Closed => self.unavailable(),
            SendError::Format(reason) => Error::Unsendable { backend, reason },
        }
    }

    fn unavailable(&self) -> Error {
        let reason = match &*self.state.borrow() {
            State::Down { reason } => format!("{reason}; waiting for a restart"),
            State::Stopped => "stopped".to_owned(),
            State::Running { .. } => "restarting".to_owned(),
        };
        Error::Unavailable {
            backend: self.spec.name.clone(),
            reason,
        }
    }

    async fn call<L: Line + Sync>(
        &self,
        key: F::Key,
        request: &L,
        sample: bool,
    ) -> Result<F::Answer, Error> {
        let backend = || self.spec.name.clone();
        let link = &self.link;
        if !link.is_open() {
            return Err(self.unavailable());
        }
        let mut ticket =
            link.inflight
                .register(key, link.epoch())
                .map_err(|refused| match refused {
                    Refused::InUse => Error::KeyInUse { backend: backend() },
                    Refused::Closed(reason) => Error::Unavailable {
                        backend: backend(),
                        reason,
                    },
                })?;
        let sent = sample.then(Instant::now);
        link.send(request).map_err(|e| self.send_error(e))?;
        // The sweeper fails the request when its time is up.
        match ticket.answer().await {
            Ok(answer) => {
                if let Some(sent) = sent {
                    self.counters.answered_in(sent.elapsed());
                }
                Ok(answer)
            }
            Err(Failure::Malformed(reason)) => Err(Error::Malformed {
                backend: backend(),
                reason,
            }),
            Err(Failure::Lost(reason)) => Err(Error::Lost {
                backend: backend(),
                reason,
            }),
            Err(Failure::TimedOut) => Err(Error::Timeout {
                backend: backend(),
                after: self.spec.request_timeout,
            }),
        }
    }
}

/// How a child's service ended, when it was not told to stop.
enum Death {
    Exited(std::io::Result<std::process::ExitStatus>),
    OutputClosed,
    Hung,
}

/// Restart delays: 1 s, doubling up to 60 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_INITIAL,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    fn reset(&mut self) {
        self.next = BACKOFF_INITIAL;
    }
}

async fn supervise<F: Family>(
    shared: Arc<Shared<F>>,
    mut running: Running<F>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = Backoff::new();
    loop {
        let death = tokio::select! {
            status = running.child.wait() => Some(Death::Exited(status)),
            _ = &mut running.reader => Some(Death::OutputClosed),
            () = running.hung.notified() => Some(Death::Hung),
            _ = &mut stop => None,
        };
        let Some(death) = death else {
            stop_child(&shared, running).await;
            break;
        };
        let ran = running.started.elapsed();
        bury(&shared, running, death).await;
        if ran >= BACKOFF_RESET {
            backoff.reset();
        }
        match restart(&shared, &mut backoff, &mut stop).await {
            Some(next) => running = next,
            None => break,
        }
    }
    shared.link.close("the backend was stopped");
    shared.counters.set_pid(None);
    shared.state.send_replace(State::Stopped);
}

/// Withdraws a child that died, exited or hung, fails what it left in
/// flight, and logs how it ended.
async fn bury<F: Family>(shared: &Shared<F>, mut running: Running<F>, death: Death) {
    let name = &shared.spec.name;
    let (reason, status) = match death {
        Death::Exited(status) => {
            shared.withdraw("the backend exited");
            // Deliver what it wrote before it died.
            tokio::time::timeout(KILL_GRACE, &mut running.reader)
                .await
                .ok();
            ("the backend exited", status)
        }
        Death::OutputClosed => {
            // Usually it is exiting; nothing more can be answered anyway.
            shared.withdraw("the backend closed its output");
            match tokio::time::timeout(KILL_GRACE, running.child.wait()).await {
                Ok(status) => ("the backend exited", status),
                Err(_) => {
                    let reason = "the backend closed its output";
                    shared.link.inflight.close(reason);
                    (reason, spawn::terminate(&mut running.child).await)
                }
            }
        }
        Death::Hung => {
            tracing::warn!(
                backend = %name,
                "backend {name} hung: no output for {} s with requests in flight; killing it",
                shared.spec.request_timeout.as_secs()
            );
            shared.withdraw("the backend hung");
            shared.link.inflight.close("the backend hung");
            let status = spawn::terminate(&mut running.child).await;
            ("the backend hung", status)
        }
    };
    shared.link.close(reason);
    running.reader.abort();
    running.writer.abort();
    running.sweeper.abort();
    match status {
        Ok(status) => tracing::warn!(backend = %name, "backend {name} exited ({status})"),
        Err(e) => tracing::warn!(backend = %name, "backend {name} exited (status unknown: {e})"),
    }
}

/// Starts a new child after the backoff; `None` when told to stop first.
async fn restart<F: Family>(
    shared: &Shared<F>,
    backoff: &mut Backoff,
    stop: &mut oneshot::Receiver<()>,
) -> Option<Running<F>> {
    let name = &shared.spec.name;
    loop {
        let delay = backoff.next();
        tracing::info!(backend = %name, "backend {name}: restarting in {} s", delay.as_secs());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut *stop => return None,
        }
        let launched = tokio::select! {
            launched = child::launch(&shared.family, &shared.spec, &shared.link) => launched,
            _ = &mut *stop => return None,
        };
        match launched {
            Ok(mut running) => {
                shared.counters.restart();
                shared.install(&mut running);
                tracing::info!(backend = %name, "backend {name} restarted, pid {}", running.pid);
                return Some(running);
            }
            Err(e) => {
                tracing::error!(backend = %name, "backend {name}: restart failed: {e}");
                shared.withdraw(&format!("restart failed: {e}"));
            }
        }
    }
}

/// Closes the child's stdin, lets it finish, and makes sure it ends.
async fn stop_child<F: Family>(shared: &Shared<F>, mut running: Running<F>) {
    let name = &shared.spec.name;
    shared.withdraw("stopping");
    shared.link.close_input();
    let status = match tokio::time::timeout(STOP_GRACE, running.child.wait()).await {
        Ok(status) => status,
        Err(_) => spawn::terminate(&mut running.child).await,
    };
    tokio::time::timeout(KILL_GRACE, &mut running.reader)
        .await
        .ok();
    shared.link.close("the backend was stopped");
    running.reader.abort();
    running.writer.abort();
    running.sweeper.abort();
    match status {
        Ok(status) => tracing::info!(backend = %name, "backend {name} stopped ({status})"),
        Err(e) => tracing::info!(backend = %name, "backend {name} stopped (status unknown: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..9).map(|_| b.next().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
    }
}
