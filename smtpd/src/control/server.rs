//! The daemon's end of the control socket.
//!
//! [`ControlSocket::bind`] creates the Unix socket (mode 0666, as
//! OpenSMTPD's: anyone may connect, and requests that change state or
//! reveal table content are refused unless the peer runs as root or as the
//! daemon's own user, by `SO_PEERCRED`). [`run`] accepts connections until
//! shutdown; each connection is served by its own task, one request line
//! at a time, answered through the live [`Tables`] (table requests, here)
//! or by `admin.rs` (queue, scheduler, status and log requests). Dropping
//! the socket removes its file.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::protocol::{self, Answer, FilterStatus, ProcCounters, Request, TableStatus, MAX_LINE};
use super::{admin, enqueue};
use crate::intake::{Family, Gate, LocalListener};
use crate::queue::QueueBackend;
use crate::scheduler;
use crate::table::Tables;

/// How long a connection may stay silent before the daemon closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the control socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on it.
    #[error("control socket {} already in use by a running smtpd", .0.display())]
    InUse(PathBuf),
    /// Something other than a socket is in the way.
    #[error("control socket {}: exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// The system refused.
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// A bound control socket; its file is removed when it is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Creates the socket at `path`, replacing a stale one left by a daemon
    /// that died; refuses when a live daemon still answers there. Must run
    /// inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, BindError> {
        let io_error = |source| BindError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(BindError::NotASocket(path.to_owned()));
            }
            Ok(_) => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(BindError::InUse(path.to_owned()));
                }
                std::fs::remove_file(path).map_err(io_error)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        let listener = UnixListener::bind(path).map_err(io_error)?;
        let socket = Self {
            listener,
            path: path.to_owned(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(io_error)?;
        Ok(socket)
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Privileges dropped: the privileged helper removes it once
            // the daemon is gone (crate::privsep).
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::debug!("control socket {}: {e}", self.path.display());
            }
            Err(e) => {
                tracing::warn!("cannot remove control socket {}: {e}", self.path.display());
            }
        }
    }
}

/// What requests are answered from.
#[derive(Clone)]
pub struct Context {
    /// The live tables.
    pub tables: Tables,
    /// The daemon's effective uid: peers running as it (or as root) may
    /// send privileged requests.
    pub daemon_uid: u32,
    /// The socket listener, which runs the sessions `sendmail` asks for
    /// (`None`: submissions are refused).
    pub local: Option<LocalListener>,
    /// The scheduler, for `show queue`, `schedule`, `pause mda`...
    pub scheduler: scheduler::Handle,
    /// The queue, for the envelopes and messages `show` prints.
    pub queue: Arc<dyn QueueBackend>,
    /// Intake's switch (`pause smtp`) and session counters.
    pub gate: Gate,
    /// When the daemon started (`uptime` of `show stats`).
    pub started: SystemTime,
    /// The MTA engine, for `show hosts|relays|routes` (`None`: not
    /// running).
    pub mta: Option<crate::mta::Mta>,
    /// The filter processes, for `show filters` (`None`: none runs).
    pub filters: Option<crate::filter::Filters>,
}

/// Serves the socket until `shutdown` completes, then closes it (removing
/// its file) and drops the connections still open.
pub async fn run(socket: ControlSocket, context: Context, shutdown: impl Future<Output = ()>) {
    let context = Arc::new(context);
    let open = Arc::new(AtomicU64::new(0));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let open = Arc::clone(&open);
                    open.fetch_add(1, Ordering::Relaxed);
                    let context = Arc::clone(&context);
                    connections.spawn(async move {
                        serve(stream, context, &open).await;
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => tracing::warn!("control socket: accept failed: {e}"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(socket);
    connections.shutdown().await;
}

/// Serves one connection: requests in, answers out, until the peer closes
/// or stays silent for [`IDLE_TIMEOUT`]. `open` counts the connections
/// open now (`control.session` of `show stats`).
async fn serve(stream: UnixStream, context: Arc<Context>, open: &AtomicU64) {
    let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
    let privileged = is_privileged(peer_uid, context.daemon_uid);
    let (read, mut out) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, lines.next()).await {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(e))) => {
                let reason = format!("invalid control line: {e}");
                let _ = send(&mut out, &[Answer::Failed { reason }]).await;
                return;
            }
            Ok(None) | Err(_) => return,
        };
        let answers = match protocol::decode::<Request>(&line) {
            // While SMTP is paused, as OpenSMTPD, local submissions too.
            Ok(Request::SmtpSession) if context.gate.is_paused() => vec![Answer::Failed {
                reason: "smtp is paused".to_owned(),
            }],
            Ok(Request::SmtpSession) => {
                let _session = context.gate.session(Family::Local, false);
                return enqueue::serve_session(lines, out, peer_uid, &context).await;
            }
            Ok(request) if request.is_privileged() && !privileged => {
                tracing::warn!(uid = ?peer_uid, "control: {request:?} refused: not root");
                vec![Answer::Denied]
            }
            Ok(Request::ShowMessage { msgid }) => {
                if admin::send_message(&context, msgid, &mut out)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Ok(request) => answer(&context, request, open.load(Ordering::Relaxed)).await,
            Err(e) => vec![Answer::Failed {
                reason: e.to_string(),
            }],
        };
        if send(&mut out, &answers).await.is_err() {
            return;
        }
    }
}

async fn send(out: &mut OwnedWriteHalf, answers: &[Answer]) -> io::Result<()> {
    let text: String = answers.iter().map(protocol::encode).collect();
    out.write_all(text.as_bytes()).await
}

/// Whether a peer may send privileged requests: root, or the daemon's own
/// user (a daemon run by an ordinary user is that user's to steer).
fn is_privileged(peer_uid: Option<u32>, daemon_uid: u32) -> bool {
    peer_uid.is_some_and(|uid| uid == 0 || uid == daemon_uid)
}

/// Carries out one request; `open` control connections are open now.
async fn answer(context: &Context, request: Request, open: u64) -> Vec<Answer> {
    let tables = &context.tables;
    let name = match &request {
        Request::ShowTables => return show_tables(tables),
        Request::ShowFilters => return show_filters(context.filters.as_ref()),
        Request::UpdateTable { name }
        | Request::CheckTable { name, .. }
        | Request::LookupTable { name, .. } => name,
        Request::SmtpSession => return no_session(),
        _ => return admin::answer(context, open, request).await,
    };
    let Some(table) = tables.by_name(name) else {
        tracing::warn!("control: no table named \"{name}\"");
        return vec![Answer::Failed {
            reason: format!("no table named \"{name}\""),
        }];
    };
    let result = match &request {
        Request::UpdateTable { name } => match table.update().await {
            Ok(()) => {
                tracing::info!("table \"{name}\" successfully updated");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!("table \"{name}\" not updated: {e}");
                Err(e)
            }
        },
        Request::CheckTable { service, key, .. } => table
            .check(*service, key)
            .await
            .map(|found| Some(Answer::Check { found })),
        Request::LookupTable { service, key, .. } => table
            .lookup(*service, key)
            .await
            .map(|value| Some(Answer::Lookup { value })),
        // The others were answered above.
        _ => return admin::answer(context, open, request).await,
    };
    match result {
        Ok(data) => data.into_iter().chain([Answer::Succeeded]).collect(),
        Err(e) => vec![Answer::Failed {
            reason: e.to_string(),
        }],
    }
}

/// `serve` hands sessions over before requests are answered.
fn no_session() -> Vec<Answer> {
    vec![Answer::Failed {
        reason: "an SMTP session is not a request to answer".to_owned(),
    }]
}

fn show_filters(filters: Option<&crate::filter::Filters>) -> Vec<Answer> {
    let procs = filters
        .map(crate::filter::Filters::status)
        .unwrap_or_default();
    procs
        .into_iter()
        .map(|p| {
            Answer::Filter(FilterStatus {
                name: p.name,
                command: format!("proc-exec \"{}\"", p.command),
                state: match p.state {
                    crate::proc::State::Running { .. } => "running".to_owned(),
                    crate::proc::State::Down { reason } => format!("down ({reason})"),
                    crate::proc::State::Stopped => "stopped".to_owned(),
                },
                proc: ProcCounters {
                    pid: p.stats.pid,
                    requests: p.stats.requests,
                    errors: p.stats.errors + p.flow.data_errors,
                    restarts: p.stats.restarts,
                    p99_micros: p.stats.p99_micros,
                },
                reports: p.flow.reports,
                data_lines: p.flow.data_lines,
            })
        })
        .chain([Answer::Succeeded])
        .collect()
}

fn show_tables(tables: &Tables) -> Vec<Answer> {
    tables
        .iter()
        .map(|t| {
            Answer::Table(TableStatus {
                name: t.name().to_owned(),
                backend: t.backend(),
                proc: t.proc_stats().map(Into::into),
            })
        })
        .chain([Answer::Succeeded])
        .collect()
}

#[cfg(test)]
mod tests;
