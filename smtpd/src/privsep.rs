//! Privilege separation, when the daemon is started as root.
//!
//! OpenSMTPD keeps a small privileged parent and runs everything that
//! talks to the network unprivileged. Here the split is in two processes:
//!
//! - [`start`], called by the `smtpd` binary before its runtime starts (no
//!   thread exists yet), binds a Unix socket in the abstract namespace and
//!   forks. The child is the **privileged helper**: it stays root, serves
//!   only the requests below, accepts connections only from the daemon's
//!   unprivileged user (checked with `SO_PEERCRED`), and dies with the
//!   daemon, once the requests under way have ended (a delivery whose
//!   message the daemon's death cut is killed, never given an end of
//!   input).
//! - The original process goes on as the daemon: it binds its listeners
//!   and the control socket, starts the table children (as the
//!   unprivileged user), hands the spool to that user, then calls
//!   [`drop_privileges`] before it opens the queue and starts delivering;
//!   SMTP sessions, the queue and the scheduler never run as root.
//!
//! What the daemon asks the helper ([`Client`]), one connection each:
//! running a delivery command as a mailbox's owner (a JSON request line,
//! then the message in frames, each a 4-byte big-endian length and that
//! many bytes, ended by a zero length; a JSON outcome line back: a message
//! cut short, because the daemon could not read it from the queue, never
//! reaches the command's end of input, so it is never delivered in part),
//! creating a system mailbox for its owner, and reading a user's
//! `.forward` or an `:include:` file, which only root may open. The
//! helper refuses to run anything as root (as [`crate::delivery::mda::run`]
//! does) and never parses mail.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{SocketAddr, UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::delivery::expand::{open_forward, ExpansionFiles, ForwardFile, UserInfo};
use crate::delivery::helper;
use crate::delivery::mda::{self, Account, MdaCommand, MdaEnvironment, MdaOutcome};

/// The longest request line the helper reads.
const MAX_REQUEST: usize = 64 * 1024;

/// An account, as the system knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl Identity {
    /// The system account `name`, from the password database.
    pub fn lookup(name: &str) -> io::Result<Self> {
        let value = crate::table::static_getpwnam::userinfo(name)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("user {name:?} does not exist (create it, or name another with --user)"),
            )
        })?;
        let mut parts = value.splitn(3, ':');
        let mut number = || parts.next().and_then(|n| n.parse::<u32>().ok());
        match (number(), number()) {
            (Some(uid), Some(gid)) => Ok(Self { uid, gid }),
            _ => Err(io::Error::other(format!("bad password entry for {name:?}"))),
        }
    }
}

/// What the daemon asks the helper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Request {
    /// Run a delivery command; the message follows the request line, in
    /// frames ([`send_frames`], [`unframe`]).
    Mda {
        command: String,
        env: Box<MdaEnvironment>,
        account: Account,
        directory: PathBuf,
        timeout_secs: u64,
    },
    /// Create the system mailbox `path` for `account` if it is missing.
    Mailbox { path: PathBuf, account: Account },
    /// Read `DIRECTORY/.forward` for the account `uid`.
    Forward { directory: PathBuf, uid: u32 },
    /// Read an include file.
    Include { path: PathBuf },
    /// Remove the socket or file `path` (as it is now) when the daemon is
    /// gone.
    RemoveAtExit { path: PathBuf },
}

/// What the helper answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
enum Response {
    Delivered,
    Temporary { reason: String },
    Permanent { reason: String },
    Done,
    Failed { reason: String },
    Missing,
    Content { text: String },
    Refused { reason: String },
}

/// The daemon's end: how to reach the privileged helper.
#[derive(Debug, Clone)]
pub struct Client {
    name: Vec<u8>,
}

/// Binds the helper's socket and forks the helper; returns the daemon's
/// [`Client`]. Must be called before any thread is started. `daemon` is
/// the unprivileged identity the daemon will take, the only one whose
/// connections the helper accepts.
pub fn start(daemon: Identity) -> io::Result<Client> {
    let name = format!("smtpd-privsep-{}-{:016x}", std::process::id(), random()).into_bytes();
    let addr = SocketAddr::from_abstract_name(&name)?;
    let listener = StdListener::bind_addr(&addr)?;
    // The helper learns that the daemon is gone when this pipe's write
    // end, which only the daemon holds, closes. (PR_SET_PDEATHSIG is not
    // enough: the kernel does not deliver it to a root helper once the
    // daemon has switched to another uid.)
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (watch, alive) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (the caller's contract), so the
    // child may go on running ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(alive);
            let status = serve_forever(listener, daemon, watch);
            std::process::exit(status);
        }
        _ => {
            drop(watch);
            // Held open for the daemon's whole life.
            std::mem::forget(alive);
            Ok(Client { name })
        }
    }
}

/// How long the helper, once the daemon is gone, waits for the requests
/// under way to end.
const DRAIN: Duration = Duration::from_secs(5);

/// The helper's main loop, on its own runtime; the exit status.
fn serve_forever(listener: StdListener, daemon: Identity, watch: OwnedFd) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("privileged helper: {e}");
            return 1;
        }
    };
    // One clone per request being served.
    let in_flight = std::sync::Arc::new(());
    runtime.block_on(async move {
        match tokio::net::unix::pipe::Receiver::from_owned_fd(watch) {
            Ok(mut watch) => {
                let serving = std::sync::Arc::downgrade(&in_flight);
                tokio::spawn(async move {
                    let mut byte = [0u8; 1];
                    // Nothing is ever written: this returns when the
                    // daemon is gone.
                    let _ = watch.read(&mut byte).await;
                    remove_sockets();
                    // The requests under way end first. A delivery whose
                    // message was cut by the daemon's death has its
                    // command killed before it sees an end of input;
                    // exiting now would close the command's input and
                    // have it deliver the part it got.
                    let end = std::time::Instant::now() + DRAIN;
                    while serving.strong_count() > 1 && std::time::Instant::now() < end {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    std::process::exit(0);
                });
            }
            Err(e) => {
                tracing::error!("privileged helper: {e}");
                return 1;
            }
        }
        if let Err(e) = listener.set_nonblocking(true) {
            tracing::error!("privileged helper: {e}");
            return 1;
        }
        let listener = match UnixListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!("privileged helper: {e}");
                return 1;
            }
        };
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("privileged helper: accept: {e}");
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == daemon.uid || cred.uid() == 0 => {
                    let request = std::sync::Arc::clone(&in_flight);
                    tokio::spawn(async move {
                        serve(stream).await;
                        drop(request);
                    });
                }
                Ok(cred) => {
                    tracing::warn!(
                        "privileged helper: refused a connection from uid {}",
                        cred.uid()
                    );
                }
                Err(e) => tracing::warn!("privileged helper: peer credentials: {e}"),
            }
        }
    })
}

/// Serves one request.
async fn serve(stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let read = (&mut reader)
        .take(MAX_REQUEST as u64)
        .read_until(b'\n', &mut line)
        .await;
    let response = match read
        .ok()
        .and_then(|_| serde_json::from_slice::<Request>(&line).ok())
    {
        Some(request) => answer(request, reader).await,
        None => Response::Failed {
            reason: "malformed request".to_owned(),
        },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&response) {
        bytes.push(b'\n');
        let _ = write.write_all(&bytes).await;
        let _ = write.shutdown().await;
    }
}

/// The largest frame of a message.
const MAX_FRAME: usize = 64 * 1024;

/// Sends `body` in frames, then the zero length that ends it. A read error
/// stops it before the end mark: the helper then abandons the delivery.
async fn send_frames(
    body: &mut (dyn AsyncRead + Unpin + Send),
    write: &mut (impl AsyncWriteExt + Unpin),
) -> io::Result<()> {
    let mut buffer = vec![0u8; 4 + MAX_FRAME];
    loop {
        let n = body.read(&mut buffer[4..]).await?;
        let len = u32::try_from(n).map_err(io::Error::other)?;
        buffer[..4].copy_from_slice(&len.to_be_bytes());
        write.write_all(&buffer[..4 + n]).await?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// The message of a delivery request, read from its frames; an end of
/// input before the zero length (or a frame above [`MAX_FRAME`]) is an
/// error, never an end of file.
fn unframe<R: AsyncRead + Unpin>(reader: R) -> impl AsyncRead + Unpin {
    let frames = futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut len = [0u8; 4];
        if let Err(e) = reader.read_exact(&mut len).await {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("message cut short: {e}"),
            );
            return Some((Err(e), None));
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return None;
        }
        if len > MAX_FRAME {
            let e = io::Error::new(io::ErrorKind::InvalidData, "message frame too large");
            return Some((Err(e), None));
        }
        let mut frame = vec![0u8; len];
        match reader.read_exact(&mut frame).await {
            Ok(_) => Some((Ok(bytes::Bytes::from(frame)), Some(reader))),
            Err(e) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("message cut short: {e}"),
                );
                Some((Err(e), None))
            }
        }
    });
    tokio_util::io::StreamReader::new(Box::pin(frames))
}

async fn answer(request: Request, message: impl AsyncRead + Unpin) -> Response {
    match request {
        Request::Mda {
            command,
            env,
            account,
            directory,
            timeout_secs,
        } => {
            let mda = MdaCommand {
                command,
                env: *env,
                account: Some(account),
                directory,
                timeout: Duration::from_secs(timeout_secs),
            };
            match mda::run(&mda, unframe(message)).await {
                MdaOutcome::Delivered => Response::Delivered,
                MdaOutcome::Temporary(reason) => Response::Temporary { reason },
                MdaOutcome::Permanent(reason) => Response::Permanent { reason },
            }
        }
        Request::Mailbox { path, account } => {
            if account.uid == 0 {
                return Response::Failed {
                    reason: "no mailbox is made for root".to_owned(),
                };
            }
            blocking(move || match helper::prepare_mailbox(&path, account) {
                Ok(()) => Response::Done,
                Err(e) => Response::Failed {
                    reason: format!("{}: {e}", path.display()),
                },
            })
            .await
        }
        Request::Forward { directory, uid } => {
            blocking(move || match open_forward(&directory, uid) {
                ForwardFile::Missing => Response::Missing,
                ForwardFile::Content(text) => Response::Content { text },
                ForwardFile::Temporary(reason) => Response::Temporary { reason },
                ForwardFile::Refused(reason) => Response::Refused { reason },
            })
            .await
        }
        Request::RemoveAtExit { path } => match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() || meta.is_file() => {
                let mut sockets = SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
                sockets.push((path, meta.dev(), meta.ino()));
                Response::Done
            }
            Ok(_) => Response::Failed {
                reason: format!("{} is neither a socket nor a file", path.display()),
            },
            Err(e) => Response::Failed {
                reason: format!("{}: {e}", path.display()),
            },
        },
        Request::Include { path } => {
            blocking(move || match std::fs::read(&path) {
                Ok(bytes) => Response::Content {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                },
                Err(e) => Response::Failed {
                    reason: e.to_string(),
                },
            })
            .await
        }
    }
}

/// The sockets and files to remove when the daemon is gone, as they were
/// when it asked: one made since by another daemon stays.
static SOCKETS: std::sync::Mutex<Vec<(PathBuf, u64, u64)>> = std::sync::Mutex::new(Vec::new());

fn remove_sockets() {
    let sockets = SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
    for (path, dev, ino) in sockets.iter() {
        let same =
            std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino);
        if same {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Response::Failed {
            reason: e.to_string(),
        })
}

impl Client {
    async fn connect(&self) -> io::Result<UnixStream> {
        let addr = SocketAddr::from_abstract_name(&self.name)?;
        let stream = StdStream::connect_addr(&addr)?;
        stream.set_nonblocking(true)?;
        UnixStream::from_std(stream)
    }

    /// Sends `request`, then `body` if any; the response.
    async fn call(
        &self,
        request: &Request,
        body: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    ) -> io::Result<Response> {
        let stream = self.connect().await?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
        line.push(b'\n');
        let send = async {
            write.write_all(&line).await?;
            if let Some(body) = body {
                // A command that stops reading early closes the pipe: the
                // outcome line still comes.
                if let Err(e) = send_frames(body, &mut write).await {
                    tracing::warn!("privileged helper: delivery abandoned: {e}");
                }
            }
            write.shutdown().await
        };
        let receive = async {
            let mut answer = Vec::new();
            BufReader::new(read)
                .take(MAX_REQUEST as u64)
                .read_until(b'\n', &mut answer)
                .await?;
            serde_json::from_slice::<Response>(&answer).map_err(io::Error::other)
        };
        let (sent, response) = tokio::join!(send, receive);
        let response = response?;
        if let Err(e) = sent {
            tracing::debug!("privileged helper: request body: {e}");
        }
        Ok(response)
    }

    /// Runs a delivery command as its account, through the helper.
    pub async fn run_mda(
        &self,
        mda: &MdaCommand,
        mut message: impl AsyncRead + Unpin + Send,
    ) -> MdaOutcome {
        let Some(account) = mda.account else {
            return MdaOutcome::Permanent("no account to deliver as".to_owned());
        };
        let request = Request::Mda {
            command: mda.command.clone(),
            env: Box::new(mda.env.clone()),
            account,
            directory: mda.directory.clone(),
            timeout_secs: mda.timeout.as_secs(),
        };
        match self.call(&request, Some(&mut message)).await {
            Ok(Response::Delivered) => MdaOutcome::Delivered,
            Ok(Response::Temporary { reason }) => MdaOutcome::Temporary(reason),
            Ok(Response::Permanent { reason }) => MdaOutcome::Permanent(reason),
            Ok(other) => MdaOutcome::Temporary(format!("privileged helper: {other:?}")),
            Err(e) => MdaOutcome::Temporary(format!("privileged helper: {e}")),
        }
    }

    /// Creates the system mailbox `path` for `account` if missing.
    pub async fn prepare_mailbox(&self, path: &Path, account: Account) -> io::Result<()> {
        let request = Request::Mailbox {
            path: path.to_owned(),
            account,
        };
        match self.call(&request, None).await? {
            Response::Done => Ok(()),
            Response::Failed { reason } => Err(io::Error::other(reason)),
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    /// Reads `directory/.forward` for the account `uid`.
    pub async fn forward(&self, directory: &Path, uid: u32) -> ForwardFile {
        let request = Request::Forward {
            directory: directory.to_owned(),
            uid,
        };
        match self.call(&request, None).await {
            Ok(Response::Missing) => ForwardFile::Missing,
            Ok(Response::Content { text }) => ForwardFile::Content(text),
            Ok(Response::Refused { reason }) => ForwardFile::Refused(reason),
            Ok(Response::Temporary { reason }) => ForwardFile::Temporary(reason),
            Ok(other) => ForwardFile::Temporary(format!("privileged helper: {other:?}")),
            Err(e) => ForwardFile::Temporary(format!("privileged helper: {e}")),
        }
    }

    /// Has the helper remove the socket or file `path` (this one, not one
    /// made later in its place) once the daemon is gone: the daemon
    /// created it as root and cannot remove it once unprivileged (its
    /// control socket, its pid file).
    pub async fn remove_at_exit(&self, path: &Path) -> io::Result<()> {
        let request = Request::RemoveAtExit {
            path: path.to_owned(),
        };
        match self.call(&request, None).await? {
            Response::Done => Ok(()),
            Response::Failed { reason } => Err(io::Error::other(reason)),
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    /// Reads an include file; `None` when it cannot be read.
    pub async fn include(&self, path: &Path) -> Option<String> {
        let request = Request::Include {
            path: path.to_owned(),
        };
        match self.call(&request, None).await {
            Ok(Response::Content { text }) => Some(text),
            _ => None,
        }
    }
}

/// The files expansion reads, opened by the helper, which may read every
/// user's `.forward` (OpenSMTPD's parent opens them too).
#[async_trait::async_trait]
impl ExpansionFiles for Client {
    async fn forward(&self, user: &UserInfo) -> ForwardFile {
        Self::forward(self, Path::new(&user.directory), user.uid).await
    }

    async fn include(&self, path: &str) -> Option<String> {
        Self::include(self, Path::new(path)).await
    }
}

/// Becomes `identity` for good: supplementary groups, gid, then uid
/// (glibc applies each to every thread of the process).
pub fn drop_privileges(identity: Identity) -> io::Result<()> {
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    let groups = [identity.gid];
    // SAFETY: plain system calls on valid arguments.
    unsafe {
        check(libc::setgroups(1, groups.as_ptr()))?;
        check(libc::setresgid(identity.gid, identity.gid, identity.gid))?;
        check(libc::setresuid(identity.uid, identity.uid, identity.uid))?;
        // Regaining root must be impossible now.
        if libc::setuid(0) == 0 {
            return Err(io::Error::other("privileges could be regained"));
        }
    }
    Ok(())
}

/// Gives `path` and everything below it to `identity` (the spool, before
/// the daemon drops to that user).
pub fn give_tree(path: &Path, identity: Identity) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(identity.uid), Some(identity.gid))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give_tree(&entry?.path(), identity)?;
        }
    }
    Ok(())
}

/// A random number for the socket's name.
fn random() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most the buffer's length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(bytes)
    } else {
        u64::from(std::process::id()) << 32 ^ 0x5eed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_carry_the_message_and_its_end() {
        let message: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut body = &message[..];
        send_frames(&mut body, &mut client).await.expect("send");
        drop(client);
        let mut read = Vec::new();
        unframe(server).read_to_end(&mut read).await.expect("whole");
        assert_eq!(read, message);
    }

    #[tokio::test]
    async fn a_message_cut_short_is_an_error_not_an_end_of_file() {
        let chunks = futures::stream::iter([
            Ok(bytes::Bytes::from_static(b"first part\n")),
            Err(io::Error::other("queue failed")),
        ]);
        let mut body = tokio_util::io::StreamReader::new(chunks);
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let sent = send_frames(&mut body, &mut client).await;
        assert_eq!(sent.expect_err("read error").to_string(), "queue failed");
        drop(client);
        let mut read = Vec::new();
        let e = unframe(server)
            .read_to_end(&mut read)
            .await
            .expect_err("cut short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read, b"first part\n");

        // A frame longer than allowed is refused too.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client
            .write_all(&u32::MAX.to_be_bytes())
            .await
            .expect("write");
        drop(client);
        let e = unframe(server)
            .read_to_end(&mut Vec::new())
            .await
            .expect_err("too large");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
