//! Running a delivery command (delivery.md section 5.1): the one place
//! besides `crate::proc` where the daemon starts `/bin/sh -c`.
//!
//! [`run`] executes an already expanded command line (every `%{...}`
//! value sanitised by `format.rs`) the way OpenSMTPD's `forkmda` does: as
//! the delivery account (never uid 0), in a new session, from the
//! account's home directory (or `/`), with exactly the environment of
//! [`MdaEnvironment`], the message on stdin and stdout and stderr captured
//! in anonymous files, under a time limit (300 s by default; the whole
//! process group is killed when it expires). The message is staged whole
//! in a file with no name before the command starts, so a daemon that dies
//! mid-delivery cannot hand the command a truncated message followed by an
//! end of input; whether the command read all of it is told by the
//! offset it left on that file. [`MdaOutcome`] maps the
//! result as OpenSMTPD does: exit 0 with all input read is delivered, exit
//! 71 (`EX_OSERR`) or 75 (`EX_TEMPFAIL`), a signal or the time limit are
//! temporary, any other status is permanent; the last line the command
//! printed becomes the error text.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// OpenSMTPD's time limit for a delivery command.
pub const MDA_TIMEOUT: Duration = Duration::from_secs(300);
/// The `PATH` delivery commands get (`_PATH_DEFPATH`).
pub const DEFAULT_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin:/usr/local/sbin";
/// How much of the command's output is kept for the error text.
const OUTPUT_TAIL: u64 = 4096;

/// The environment of a delivery command: exactly these variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MdaEnvironment {
    /// `DOMAIN`: the original recipient's domain.
    pub domain: String,
    /// `HOME`: the delivery account's home.
    pub home: String,
    /// `ORIGINAL_RECIPIENT`: the original recipient address.
    pub original_recipient: String,
    /// `RECIPIENT`: the final recipient address (dest).
    pub recipient: String,
    /// `LOCAL`: the original recipient's local part, tag included.
    pub local: String,
    /// `LOGNAME` and `USER`: the userbase account name.
    pub user: String,
    /// `SENDER`: the sender address, empty for the null sender.
    pub sender: String,
    /// `EXTENSION`: the sub-address, only set when not empty.
    pub extension: String,
}

impl MdaEnvironment {
    /// The variables, in OpenSMTPD's order.
    pub fn vars(&self) -> Vec<(&'static str, &str)> {
        let mut vars = vec![
            ("PATH", DEFAULT_PATH),
            ("DOMAIN", self.domain.as_str()),
            ("HOME", self.home.as_str()),
            ("ORIGINAL_RECIPIENT", self.original_recipient.as_str()),
            ("RECIPIENT", self.recipient.as_str()),
            ("SHELL", "/bin/sh"),
            ("LOCAL", self.local.as_str()),
            ("LOGNAME", self.user.as_str()),
            ("USER", self.user.as_str()),
            ("SENDER", self.sender.as_str()),
        ];
        if !self.extension.is_empty() {
            vars.push(("EXTENSION", self.extension.as_str()));
        }
        vars
    }
}

/// The account a command runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// Its uid (0 is refused).
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

/// One delivery command to run.
#[derive(Debug, Clone)]
pub struct MdaCommand {
    /// The expanded command line, given to `/bin/sh -c`.
    pub command: String,
    /// Its environment.
    pub env: MdaEnvironment,
    /// The account to switch to; `None` keeps the daemon's own (when it
    /// does not run as root).
    pub account: Option<Account>,
    /// The directory it starts in (`/` when missing).
    pub directory: PathBuf,
    /// The time limit.
    pub timeout: Duration,
}

/// How a delivery command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MdaOutcome {
    /// The message was delivered.
    Delivered,
    /// Try again later, for this reason.
    Temporary(String),
    /// The delivery failed for good, for this reason.
    Permanent(String),
}

/// Runs `mda` with `message` on its stdin (delivery.md section 5.1).
pub async fn run(mda: &MdaCommand, message: impl AsyncRead + Unpin) -> MdaOutcome {
    let uid = match mda.account {
        Some(account) => account.uid,
        // SAFETY: geteuid has no preconditions and cannot fail.
        None => unsafe { libc::geteuid() },
    };
    if uid == 0 {
        return MdaOutcome::Permanent(format!("MDA not allowed to deliver to: {}", mda.env.user));
    }
    match execute(mda, message).await {
        Ok(outcome) => outcome,
        Err(error) => MdaOutcome::Temporary(format!("mda failed to start: {error}")),
    }
}

async fn execute(mda: &MdaCommand, message: impl AsyncRead + Unpin) -> io::Result<MdaOutcome> {
    // The whole message is staged before the command starts, so nothing
    // that happens to the daemon afterwards (a crash, a kill -9) can give
    // the command an early end of input and a message delivered in part.
    let (staged, size) = match stage(message).await {
        Ok(staged) => staged,
        Err(Staging::Read(e)) => {
            return Ok(MdaOutcome::Temporary(format!(
                "message could not be read: {e}"
            )))
        }
        Err(Staging::Write(e)) => return Err(e),
    };
    let mut output = anonymous_file()?;
    let directory = if mda.directory.is_dir() {
        mda.directory.as_path()
    } else {
        Path::new("/")
    };
    // Delivery commands start here and nowhere else; the command line is
    // the administrator's, with every expanded value sanitised.
    #[allow(clippy::disallowed_methods)]
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&mda.command)
        .env_clear()
        .envs(mda.env.vars())
        .current_dir(directory)
        .stdin(staged.try_clone()?)
        .stdout(output.try_clone()?)
        .stderr(output.try_clone()?)
        .kill_on_drop(true);
    let account = mda.account;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls async-signal-safe functions (setsid, setgroups, setgid,
    // setuid) on values copied before the fork.
    unsafe {
        command.pre_exec(move || become_account(account));
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let Ok(status) = tokio::time::timeout(mda.timeout, child.wait()).await else {
        kill_group(pid);
        let _ = child.wait().await;
        return Ok(MdaOutcome::Temporary("mda timeout".to_owned()));
    };
    let status = status?;
    // The command's stdin shares its offset with `staged`: where it
    // stopped reading tells whether it read the whole message.
    let mut staged = staged;
    let consumed = staged.stream_position()? >= size;
    let last = last_line(&mut output);
    let reason = |default: String| last.clone().unwrap_or(default);
    Ok(match (status.code(), status.signal()) {
        (Some(0), _) if consumed => MdaOutcome::Delivered,
        (Some(0), _) => MdaOutcome::Temporary("mda exited prematurely".to_owned()),
        (Some(code @ (71 | 75)), _) => {
            MdaOutcome::Temporary(reason(format!("mda exited with status {code}")))
        }
        (Some(code), _) => MdaOutcome::Permanent(reason(format!("mda exited with status {code}"))),
        (None, Some(signal)) => {
            MdaOutcome::Temporary(reason(format!("mda terminated by signal {signal}")))
        }
        (None, None) => MdaOutcome::Temporary("mda exited abnormally".to_owned()),
    })
}

/// Why the message could not be staged.
enum Staging {
    /// Reading the message failed (the queue).
    Read(io::Error),
    /// Writing the staging file failed.
    Write(io::Error),
}

/// Copies the whole message into a file with no name and returns it,
/// rewound, with its size.
async fn stage(mut message: impl AsyncRead + Unpin) -> Result<(File, u64), Staging> {
    let file = anonymous_file().map_err(Staging::Write)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = message.read(&mut buffer).await.map_err(Staging::Read)?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n]).await.map_err(Staging::Write)?;
        size += n as u64;
    }
    file.flush().await.map_err(Staging::Write)?;
    let mut file = file.into_std().await;
    file.seek(SeekFrom::Start(0)).map_err(Staging::Write)?;
    Ok((file, size))
}

/// Kills the process group the delivery command leads (it called setsid).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kills the process group the child leads (setsid).
        unsafe { libc::killpg(pid, libc::SIGKILL) };
    }
}

/// In the child: new session, then the account's identity (as root; a
/// daemon that is not root can only run commands as itself).
fn become_account(account: Option<Account>) -> io::Result<()> {
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    // SAFETY: plain system calls on valid arguments; see `execute`.
    unsafe {
        check(libc::setsid())?;
        match account {
            Some(account) if libc::geteuid() == 0 => {
                let groups = [account.gid];
                check(libc::setgroups(1, groups.as_ptr()))?;
                check(libc::setgid(account.gid))?;
                check(libc::setuid(account.uid))?;
            }
            // Not root: only the daemon's own account can be used.
            Some(account) if account.uid != libc::geteuid() => {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A file with no name, for the command's output.
fn anonymous_file() -> io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "smtpd-mda-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// The last non-empty line of the command's output, if any.
fn last_line(output: &mut File) -> Option<String> {
    let len = output.seek(SeekFrom::End(0)).ok()?;
    output
        .seek(SeekFrom::Start(len.saturating_sub(OUTPUT_TAIL)))
        .ok()?;
    let mut tail = Vec::new();
    output.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
