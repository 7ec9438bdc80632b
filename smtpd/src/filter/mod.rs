//! Filters: built-in filters (`filter NAME phase PHASE match ...`),
//! proc-exec filters speaking filter protocol 0.7, chains of both, and the
//! report stream that tells filter processes what happens in sessions.
//!
//! [`Filters::start`] starts one process per `proc` / `filter NAME
//! proc-exec` declaration (`proc_exec.rs`, through the supervisor of
//! `crate::proc`: restarted with backoff when it dies, a request failing
//! after the filter timeout), shared by every session, and builds each
//! filter's [`Chain`] (`chain.rs`). A session on a listener with `filter
//! NAME` gets its [`SessionFilters`] from [`Filters::session`]
//! (`session.rs`): the chain walked at each phase, the smtp-in report
//! events, and the message's data-line [`DataStream`] (`stream.rs`). A
//! listener without a filter costs nothing: intake asks for no
//! `SessionFilters` and none of this runs. [`builtin`] evaluates one
//! built-in filter.
//!
//! # Outbound reports (smtp-out)
//!
//! Relay actions with `filter NAME` report their outbound connections,
//! as OpenSMTPD does (report events only; filtering exists only inbound).
//! The MTA asks [`Filters::outbound`] for the action's filter once per
//! connection, gets an [`Outbound`] with a fresh session id (or `None`
//! when no process of the chain wants smtp-out events), and calls
//! [`Outbound::report`] with each event in 7.8's order (`link-connect`
//! with the MX's name, `fcrdns` `pass`, source and destination
//! `ADDR:PORT`; `link-identify` with `EHLO`, `HELO` or `LHLO`;
//! `protocol-client` / `protocol-server` per line; `tx-*` per message;
//! `link-disconnect` last). Sending never waits and never fails the
//! caller: a process that is down misses the events.

pub mod builtin;
mod chain;
mod proc_exec;
mod session;
mod stream;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smtpd_sdk::proto::filter::{Event, EventKind, Subsystem};
use smtpd_sdk::proto::{SessionId, Timestamp};

use crate::config::{Config, FilterId};
use crate::proc::{Spec, StartError, State, Stats};
use crate::table::Tables;

pub use chain::{Chain, Member, MemberKind};
pub use proc_exec::{
    FilterProc, FilterProtocol, Flow, FlowStats, Registration, SESSION_TIMEOUT_SECS, STREAM_LINES,
};
pub use session::{filter_reply, SessionFilters, Verdict};
pub use stream::{DataOutput, DataStream};

/// How long a filter process may take to answer, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How filter processes are started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// Where relative commands are found.
    pub backends_dir: PathBuf,
    /// The user processes run as when the declaration names none.
    pub user: Option<String>,
    /// How long a process may take to answer a request.
    pub timeout: Duration,
    /// The authserv-id announced (`admd`, else the server name).
    pub admd: String,
}

/// What the processes and sessions share.
pub(crate) struct Inner {
    pub(crate) procs: Vec<FilterProc>,
    pub(crate) tables: Tables,
}

/// The daemon's filter processes and chains.
#[derive(Clone)]
pub struct Filters {
    inner: Arc<Inner>,
    /// Each filter's chain, by [`FilterId`] index.
    chains: Arc<Vec<Arc<Chain>>>,
    next_session: Arc<AtomicU64>,
}

/// A filter process as `smtpctl show filters` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// The process's name.
    pub name: String,
    /// The command it runs.
    pub command: String,
    /// Where it is in its life.
    pub state: State,
    /// Its request counters.
    pub stats: Stats,
    /// Its report and data-line counters.
    pub flow: FlowStats,
}

impl Filters {
    /// No filters: for configurations without any, and tests.
    pub fn none(tables: Tables) -> Self {
        Self {
            inner: Arc::new(Inner {
                procs: Vec::new(),
                tables,
            }),
            chains: Arc::new(Vec::new()),
            next_session: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Starts every filter process of `config` (each waits for its
    /// handshake; the first that fails stops the others and is returned)
    /// and builds every chain.
    pub async fn start(
        config: &Config,
        tables: Tables,
        options: &StartOptions,
    ) -> Result<Self, StartError> {
        let mut procs: Vec<FilterProc> = Vec::new();
        for proc in &config.procs {
            let mut spec = Spec::new(
                proc.name.clone(),
                proc.command.command.clone(),
                options.backends_dir.clone(),
                options.timeout,
            );
            spec.user = proc.command.user.clone().or_else(|| options.user.clone());
            spec.group.clone_from(&proc.command.group);
            spec.chroot.clone_from(&proc.command.chroot);
            let subsystems = proc
                .subsystems
                .iter()
                .map(|s| match s {
                    crate::config::Subsystem::SmtpIn => Subsystem::SmtpIn,
                    crate::config::Subsystem::SmtpOut => Subsystem::SmtpOut,
                })
                .collect();
            let protocol = FilterProtocol::new(proc.name.clone(), subsystems, options.admd.clone())
                .with_timeout(options.timeout);
            match FilterProc::start(protocol, spec).await {
                Ok(started) => procs.push(started),
                Err(e) => {
                    for started in &procs {
                        started.supervisor().stop().await;
                    }
                    return Err(e);
                }
            }
        }
        let chains = (0..config.filters.len())
            .map(|index| {
                let id = FilterId::from_index(index);
                Arc::new(Chain::build(config, id).unwrap_or_else(|| Chain::empty(index)))
            })
            .collect();
        // Session ids start at a random-looking place, so that a restarted
        // daemon does not reuse the last run's.
        let seed = u64::from(Timestamp::now().micros).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Ok(Self {
            inner: Arc::new(Inner { procs, tables }),
            chains: Arc::new(chains),
            next_session: Arc::new(AtomicU64::new(seed)),
        })
    }

    fn session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// The filters of a new inbound session on a listener with `filter`.
    pub fn session(&self, filter: FilterId) -> Option<SessionFilters> {
        let chain = Arc::clone(self.chains.get(filter.index())?);
        Some(SessionFilters::new(
            Arc::clone(&self.inner),
            chain,
            self.session_id(),
        ))
    }

    /// The report stream of a new outbound connection of a relay action
    /// with `filter`; `None` when no process of its chain wants smtp-out
    /// events.
    pub fn outbound(&self, filter: FilterId) -> Option<Outbound> {
        let chain = self.chains.get(filter.index())?;
        let procs: Vec<FilterProc> = chain
            .procs
            .iter()
            .map(|&p| self.inner.procs[p].clone())
            .filter(|p| {
                p.registration()
                    .is_some_and(|r| r.reports_any(Subsystem::SmtpOut))
            })
            .collect();
        (!procs.is_empty()).then(|| Outbound {
            procs,
            session: self.session_id(),
        })
    }

    /// Every process, for `smtpctl show filters`.
    pub fn status(&self) -> Vec<ProcStatus> {
        self.inner
            .procs
            .iter()
            .map(|p| ProcStatus {
                name: p.name().to_owned(),
                command: p.supervisor().spec().command.clone(),
                state: p.supervisor().state().borrow().clone(),
                stats: p.supervisor().stats(),
                flow: p.flow().snapshot(),
            })
            .collect()
    }

    /// Stops every process (each closes its input and gets time to end).
    pub async fn shutdown(&self) {
        let stops = self.inner.procs.iter().map(|p| p.supervisor().stop());
        futures::future::join_all(stops).await;
    }
}

/// The smtp-out report stream of one outbound connection.
#[derive(Clone)]
pub struct Outbound {
    procs: Vec<FilterProc>,
    session: SessionId,
}

impl Outbound {
    /// The connection's session id on the filter wire.
    pub fn id(&self) -> SessionId {
        self.session
    }

    /// Sends `event` to the processes that registered for it.
    pub fn report(&self, event: Event) {
        let Some(kind) = event.kind() else {
            return;
        };
        self.send(kind, event);
    }

    fn send(&self, kind: EventKind, event: Event) {
        let line = session::report_line(Subsystem::SmtpOut, self.session, event, Timestamp::now());
        for proc in &self.procs {
            if proc
                .registration()
                .is_some_and(|r| r.reports(Subsystem::SmtpOut, kind))
            {
                match proc.supervisor().send(&line) {
                    Ok(()) => proc.flow().report(),
                    Err(e) => {
                        tracing::debug!("report {} to filter {}: {e}", kind.name(), proc.name());
                    }
                }
            }
        }
    }
}
