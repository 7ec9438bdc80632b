//! The daemon process: from a checked configuration to a running server,
//! and back down on SIGTERM or SIGINT.
//!
//! [`run`] is called by the `smtpd` binary once the configuration has
//! loaded. It prepares the data directory (`paths.rs`), catches the
//! termination signals (`signals.rs`), binds the control socket
//! (`crate::control`) before starting anything, so a second daemon stops
//! there, starts every table with [`crate::table::build`] (which spawns
//! the proc-exec children), logs `listening on control socket PATH` and
//! serves control requests until a signal comes. Then it drains: the
//! control socket is closed and removed, and every table is shut down
//! (children see their stdin close and exit) before [`run`] returns.
//!
//! After the tables, it opens the queue: a `queue proc-exec` program is
//! started like the table programs (as `_smtpd` when root) and stopped
//! last, after intake and the scheduler; otherwise the fs queue
//! (`DATA/spool` in the data directory; [`ROOT_SPOOL`] as root unless
//! `--data-dir` named another data directory than the default, so that
//! test daemons run as root keep apart), behind `queue compression` and
//! `queue encryption` ([`queue::layers::open`], which refuses a queue
//! written with another key or other layers). Then it starts SMTP intake
//! ([`crate::intake`]):
//! every `listen on` address is bound and logged as `listening on
//! ADDR:PORT`. At shutdown intake stops accepting before the tables stop.
//! The control socket also hands local submissions (`sendmail`) to
//! intake's socket listener, and the submissions left in the spool's
//! `offline/` directory while no daemon ran are sent in the background
//! once intake runs.
//! The DNS resolver ([`crate::dns`]) is configured first, from
//! `--resolv-conf` and `--nameserver` ([`Options`]), so that an unreadable
//! resolv.conf stops the start before anything runs; intake looks up the
//! reverse name of every client with it.
//!
//! Once the control socket is bound, the pid file is written when
//! [`Options::pidfile`] names one (`pidfile.rs`, removed at exit), and
//! once everything listens, [`run`]'s `ready` is called: the detached
//! daemon (`detach.rs`, [`detach`]) tells the process that started it.
//!
//! SIGTERM drains: the accept loops stop, sessions may finish the
//! transaction in progress for [`intake::SESSION_GRACE`] (new commands get
//! 421), and deliveries in flight end at the same time (the scheduler
//! waits for them, bounded too); then the tables stop and [`run`] returns
//! `Ok`, status 0.

mod detach;
mod paths;
mod pidfile;
mod signals;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, Config};
use crate::control::{self, BindError, ControlSocket};
use crate::delivery::expand::{ExpansionFiles, SystemFiles};
use crate::delivery::local::{self, LocalAgent, LocalSettings};
use crate::dns;
use crate::enqueue::offline::OFFLINE_DIR;
use crate::intake;
use crate::privsep;
use crate::proc::{self, Spec};
use crate::queue::proc_exec::{ProcExecQueue, QUEUE_REQUEST_TIMEOUT};
use crate::queue::{self, fs::FsQueue, QueueBackend};
use crate::scheduler;
use crate::table::{self, BuildError, BuildOptions};

pub use detach::{detach, Detached, Ready};
pub use paths::{prepare_data_dir, DataDirError, DATA_DIR_MODE};
pub use pidfile::{pidfile_path, PidFile, PidFileError, PIDFILE_NAME, ROOT_PIDFILE};

/// The user that table and filter children run as when the daemon runs as
/// root.
pub const CHILD_USER: &str = "_smtpd";

/// The spool of the fs queue when the daemon runs as root.
pub const ROOT_SPOOL: &str = "/var/spool/smtpd";

/// How to run, beyond the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The data directory, used when not run by root (created with mode
    /// 0700 if missing).
    pub data_dir: PathBuf,
    /// The control socket, instead of the default place
    /// ([`control::socket_path`]).
    pub control_socket: Option<PathBuf>,
    /// The user children run as, instead of [`CHILD_USER`] (as root) or
    /// the daemon's own user.
    pub user: Option<String>,
    /// Where relative backend commands are found.
    pub backends_dir: PathBuf,
    /// The resolv.conf to read instead of [`dns::DEFAULT_RESOLV_CONF`].
    pub resolv_conf: Option<PathBuf>,
    /// The nameservers to ask instead of resolv.conf's.
    pub nameservers: Vec<std::net::SocketAddr>,
    /// The port relaying connects to on MX hosts (25).
    pub mx_port: u16,
    /// Every wait of a relay session instead of 7.8's 300 s
    /// (`--mta-timeout`, for tests).
    pub mta_timeout: Option<std::time::Duration>,
    /// Where `mbox` deliveries go ([`local::DEFAULT_MAILBOX_DIR`]).
    pub mailbox_dir: PathBuf,
    /// As root: the privileged helper and the identity to drop to
    /// ([`crate::privsep`]); `None` when not root.
    pub privsep: Option<Privsep>,
    /// The pid file to write, if any ([`pidfile_path`] is the default of a
    /// detached daemon).
    pub pidfile: Option<PathBuf>,
    /// How long a filter process may take to answer
    /// ([`crate::filter::DEFAULT_TIMEOUT`] by default).
    pub filter_timeout: std::time::Duration,
    /// The queue encryption key, resolved before detaching
    /// ([`queue::layers::resolve`]); required when the configuration has
    /// `queue encryption`.
    pub queue_key: Option<queue::layers::Key>,
    /// The instance id, lease and walk period used when the queue is
    /// shared with other daemons (a backend that registered `lease`).
    pub sharing: scheduler::Sharing,
}

/// Why the daemon could not start, or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resolver's configuration cannot be read.
    #[error(transparent)]
    Dns(#[from] dns::ResolvConfError),
    /// The data directory cannot be created or is not usable.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The termination signals cannot be caught.
    #[error("cannot catch signals: {0}")]
    Signals(std::io::Error),
    /// The control socket cannot be created.
    #[error(transparent)]
    Control(#[from] BindError),
    /// A table cannot be started.
    #[error(transparent)]
    Tables(#[from] BuildError),
    /// A filter process cannot be started.
    #[error(transparent)]
    Filters(#[from] proc::StartError),
    /// The queue cannot be opened.
    #[error(transparent)]
    Queue(#[from] queue::Error),
    /// The `queue proc-exec` program cannot be started.
    #[error("cannot start the queue: {0}")]
    QueueStart(proc::StartError),
    /// A listener cannot be started.
    #[error(transparent)]
    Intake(#[from] intake::Error),
    /// The pid file cannot be written.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// The spool cannot be handed to the unprivileged user, or privileges
    /// cannot be dropped.
    #[error("cannot drop privileges: {0}")]
    Privileges(std::io::Error),
}

/// The privilege separation of a daemon started as root: the privileged
/// helper to ask, and the identity to become once everything is bound.
#[derive(Debug, Clone)]
pub struct Privsep {
    /// The privileged helper.
    pub client: privsep::Client,
    /// The unprivileged identity.
    pub identity: privsep::Identity,
}

impl PartialEq for Privsep {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}

impl Eq for Privsep {}

/// Runs the daemon until SIGTERM or SIGINT, calling `ready` once it
/// listens; returns once everything it started has stopped.
pub async fn run(config: &Config, options: &Options, ready: impl FnOnce()) -> Result<(), Error> {
    let resolver = dns::Resolver::new(&dns::Settings::load(
        options.resolv_conf.as_deref(),
        &options.nameservers,
    )?);
    let root = control::effective_uid() == 0;
    if !root {
        prepare_data_dir(&options.data_dir)?;
    }
    let terminated = signals::Termination::catch().map_err(Error::Signals)?;
    let socket_path = options
        .control_socket
        .clone()
        .unwrap_or_else(|| control::socket_path(&options.data_dir));
    let socket = ControlSocket::bind(&socket_path)?;
    let pidfile = options
        .pidfile
        .as_deref()
        .map(PidFile::create)
        .transpose()?;
    let build = BuildOptions {
        backends_dir: options.backends_dir.clone(),
        user: options
            .user
            .clone()
            .or_else(|| root.then(|| CHILD_USER.to_owned())),
        ..BuildOptions::default()
    };
    let tables = table::build(config, &build).await?;
    // After the tables, as OpenSMTPD; dropped (so stopped) on any early
    // return below.
    let filters = match start_filters(config, &tables, options, &build).await {
        Ok(filters) => filters,
        Err(e) => {
            tables.shutdown().await;
            return Err(e.into());
        }
    };
    let spool = match spool_path(root, options) {
        Some(spool) => spool,
        None => {
            prepare_data_dir(&options.data_dir)?;
            options.data_dir.join("spool")
        }
    };
    let offline = spool.join(OFFLINE_DIR);
    let queue = match open_queue(config, &build, spool.clone(), options.queue_key.as_ref()).await {
        Ok(queue) => queue,
        Err(e) => {
            tables.shutdown().await;
            return Err(e);
        }
    };
    // Before the spool is handed to another user: the files are theirs.
    let offline = intake::OfflineQueue::open(offline, config.smtp.max_message_size).await;
    // As root, the spool belongs to the unprivileged user the daemon is
    // about to become.
    if let Some(privsep) = &options.privsep {
        let give = || -> std::io::Result<()> {
            if spool.starts_with(&options.data_dir) {
                std::os::unix::fs::lchown(
                    &options.data_dir,
                    Some(privsep.identity.uid),
                    Some(privsep.identity.gid),
                )?;
            }
            give_spool(&spool, privsep.identity)
        };
        if let Err(e) = give() {
            queue.shutdown().await;
            tables.shutdown().await;
            return Err(Error::Privileges(e));
        }
    }
    let config = Arc::new(config.clone());
    let server_name = table::static_table::LocalHost::detect()
        .map(|host| host.server_name)
        .unwrap_or_else(|_| "localhost".to_owned());
    let (scheduler, inbox) = scheduler::Handle::channel();
    let agent = LocalAgent::new(
        Arc::clone(&config),
        tables.clone(),
        Arc::clone(&queue),
        LocalSettings {
            base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            mailbox_dir: options.mailbox_dir.clone(),
            executable: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("smtpd")),
            root,
            hostname: server_name.clone(),
            timeout: local::DELIVERY_TIMEOUT,
            privsep: options.privsep.as_ref().map(|p| p.client.clone()),
        },
    );
    let files: Arc<dyn ExpansionFiles> = match &options.privsep {
        Some(privsep) => Arc::new(privsep.client.clone()),
        None => Arc::new(SystemFiles),
    };
    // Before privileges are dropped: it reads the relays' CA and pki files.
    let mta = crate::mta::Mta::start(
        Arc::clone(&config),
        tables.clone(),
        Arc::clone(&queue),
        crate::mta::Settings {
            server_name: server_name.clone(),
            resolver: resolver.clone(),
            timeouts: options
                .mta_timeout
                .map_or_else(crate::mta::client::Timeouts::default, |limit| {
                    crate::mta::client::Timeouts::all(limit)
                }),
            mx_port: options.mx_port,
            filters: Some(filters.clone()),
        },
    );
    let driver = scheduler::Driver::new(
        Arc::clone(&config),
        tables.clone(),
        Arc::clone(&queue),
        agent,
    )
    .expansion_files(Arc::clone(&files))
    .relayer(Arc::new(mta.clone()))
    .sharing(options.sharing.clone());
    let shared = intake::Shared {
        config,
        tables: tables.clone(),
        queue: Arc::clone(&queue),
        server_name,
        resolver,
        scheduler: scheduler.clone(),
        files,
        filters: filters.clone(),
    };
    let mut intake = match intake::start(Arc::new(shared)).await {
        Ok(intake) => intake,
        Err(e) => {
            queue.shutdown().await;
            tables.shutdown().await;
            return Err(e.into());
        }
    };
    // Everything that needed root is bound or open: the sessions, the
    // queue and the scheduler run unprivileged from here on. The helper
    // removes the control socket and the pid file at the end, which the
    // daemon no longer may.
    if let Some(privsep) = &options.privsep {
        let made = std::iter::once(socket.path()).chain(options.pidfile.as_deref());
        for path in made {
            if let Err(e) = privsep.client.remove_at_exit(path).await {
                tracing::warn!("{}: {e}", path.display());
            }
        }
        if let Err(e) = privsep::drop_privileges(privsep.identity) {
            intake.stop().await;
            queue.shutdown().await;
            tables.shutdown().await;
            return Err(Error::Privileges(e));
        }
        tracing::info!(
            "running as uid {} gid {}",
            privsep.identity.uid,
            privsep.identity.gid
        );
    }
    let (stop_scheduler, scheduler_stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler_task = tokio::spawn(driver.run(inbox, async {
        let _ = scheduler_stopped.await;
    }));
    tracing::info!("listening on control socket {}", socket.path().display());
    ready();
    intake.drain_offline(offline);
    let context = control::Context {
        tables: tables.clone(),
        daemon_uid: control::effective_uid(),
        local: Some(intake.local()),
        scheduler,
        queue: Arc::clone(&queue),
        gate: intake.gate(),
        started: std::time::SystemTime::now(),
        mta: Some(mta),
        filters: Some(filters.clone()),
    };
    control::run(socket, context, async {
        let signal = terminated.wait().await;
        tracing::info!("received {signal}, shutting down");
    })
    .await;
    // Sessions finish their transactions while the deliveries in flight
    // end, each bounded in time; the tables serve both until then.
    let _ = stop_scheduler.send(());
    let ((), scheduler) = tokio::join!(intake.stop(), scheduler_task);
    if let Err(e) = scheduler {
        tracing::warn!("scheduler: {e}");
    }
    queue.shutdown().await;
    filters.shutdown().await;
    tables.shutdown().await;
    drop(pidfile);
    tracing::info!("smtpd exiting");
    Ok(())
}

/// Starts the filter processes of `config`, as the tables' user.
async fn start_filters(
    config: &Config,
    tables: &table::Tables,
    options: &Options,
    build: &BuildOptions,
) -> Result<crate::filter::Filters, proc::StartError> {
    let admd = config.admd.clone().unwrap_or_else(|| {
        table::static_table::LocalHost::detect()
            .map(|host| host.server_name)
            .unwrap_or_else(|_| "localhost".to_owned())
    });
    let start = crate::filter::StartOptions {
        backends_dir: options.backends_dir.clone(),
        user: build.user.clone(),
        timeout: options.filter_timeout,
        admd,
    };
    crate::filter::Filters::start(config, tables.clone(), &start).await
}

/// Gives the spool to `identity`: everything in it, but the files of the
/// offline queue, which stay their submitters' (their owner is who they
/// are sent as).
fn give_spool(spool: &std::path::Path, identity: privsep::Identity) -> std::io::Result<()> {
    std::os::unix::fs::lchown(spool, Some(identity.uid), Some(identity.gid))?;
    for entry in std::fs::read_dir(spool)? {
        let path = entry?.path();
        let offline_dir = path.file_name() == Some(std::ffi::OsStr::new(OFFLINE_DIR))
            && std::fs::symlink_metadata(&path)?.is_dir();
        if offline_dir {
            std::os::unix::fs::lchown(&path, Some(identity.uid), Some(identity.gid))?;
        } else {
            privsep::give_tree(&path, identity)?;
        }
    }
    Ok(())
}

/// Opens the queue ([`open_backend`]) behind the compression and
/// encryption layers the configuration asks for, which first check that
/// the queue was written with them ([`queue::layers::open`]).
async fn open_queue(
    config: &Config,
    build: &BuildOptions,
    spool: PathBuf,
    key: Option<&queue::layers::Key>,
) -> Result<Arc<dyn QueueBackend>, Error> {
    let backend = open_backend(config, build, spool).await?;
    let key = match (&config.queue.encryption, key) {
        (None, _) => None,
        (Some(_), Some(key)) => Some(key),
        (Some(_), None) => {
            backend.shutdown().await;
            return Err(queue::Error::Layers {
                backend: backend.name().to_owned(),
                reason: "queue encryption is on but no key was given".to_owned(),
            }
            .into());
        }
    };
    let layered = queue::layers::open(Arc::clone(&backend), config.queue.compression, key).await;
    if layered.is_err() {
        backend.shutdown().await;
    }
    Ok(layered?)
}

/// Opens the queue's store: the fs queue at `spool`, or starts the `queue
/// proc-exec` program (as the tables' user) and waits for its handshake.
async fn open_backend(
    config: &Config,
    build: &BuildOptions,
    spool: PathBuf,
) -> Result<Arc<dyn QueueBackend>, Error> {
    if let config::QueueBackend::ProcExec(command) = &config.queue.backend {
        // The spool directory still holds the offline queue of local
        // submissions made while no daemon ran.
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&spool)
            .map_err(|e| queue::Error::io("create", &spool, e))?;
        let mut spec = Spec::new(
            "queue",
            command.command.clone(),
            &build.backends_dir,
            QUEUE_REQUEST_TIMEOUT,
        );
        spec.user = command.user.clone().or_else(|| build.user.clone());
        spec.group.clone_from(&command.group);
        spec.chroot.clone_from(&command.chroot);
        spec.handshake_timeout = build.handshake_timeout;
        let queue = ProcExecQueue::start(spec)
            .await
            .map_err(Error::QueueStart)?;
        return Ok(Arc::new(queue));
    }
    let queue = tokio::task::spawn_blocking(move || FsQueue::open(spool))
        .await
        .map_err(|e| queue::Error::Task {
            reason: e.to_string(),
        })??;
    Ok(Arc::new(queue))
}

/// The spool outside the data directory, if that is where it lives: as
/// root with the default data directory.
fn spool_path(root: bool, options: &Options) -> Option<PathBuf> {
    (root && options.data_dir == std::path::Path::new(control::DEFAULT_DATA_DIR))
        .then(|| PathBuf::from(ROOT_SPOOL))
}
