//! Starting and stopping a backend program: the one place where the daemon
//! spawns backends.
//!
//! A backend runs as OpenSMTPD runs it: `/bin/sh -c "exec CMD"`, with a
//! command that does not start with `/` taken from the backends directory
//! (SPEC.md 1.1). The command is the administrator's text from smtpd.conf;
//! nothing from the network reaches this shell. Before the shell starts,
//! the child gets a new session (so that the whole process group can be
//! signalled), default signal dispositions, optionally a new root, and the
//! identity of the configured user: supplementary groups, group, then user.
//! Users and groups are resolved here, in the daemon, before forking: a
//! name that does not exist is a clear start-up error, and nothing that
//! allocates or reads files runs between fork and exec.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use super::{Spec, StartError};

/// How long a backend has to exit after SIGTERM before it gets SIGKILL.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(5);

/// The shell command line for a backend command: `exec CMD`, with a
/// relative command taken from `backends_dir`.
///
/// ```
/// use std::path::Path;
/// use smtpd::proc::shell_command;
///
/// let dir = Path::new("/usr/local/libexec/smtpd");
/// assert_eq!(
///     shell_command("table-sqlite /etc/mail/sqlite.conf", dir),
///     "exec /usr/local/libexec/smtpd/table-sqlite /etc/mail/sqlite.conf"
/// );
/// assert_eq!(shell_command("/opt/bin/filter -v", dir), "exec /opt/bin/filter -v");
/// ```
pub fn shell_command(command: &str, backends_dir: &Path) -> String {
    let command = command.trim_start();
    if command.starts_with('/') {
        format!("exec {command}")
    } else {
        let dir = backends_dir.to_string_lossy();
        format!("exec {}/{command}", quote(dir.trim_end_matches('/')))
    }
}

/// `text` as one shell word: unchanged when it holds only harmless
/// characters, single-quoted otherwise.
pub(crate) fn quote(text: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b);
    if !text.is_empty() && text.bytes().all(plain) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("'{}'", text.replace('\'', r"'\''")))
    }
}

/// A started child and its three pipes.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: ChildStdout,
    pub(crate) stderr: ChildStderr,
}

/// The identity a child takes before its shell starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    /// `None` when only a group was configured.
    uid: Option<libc::uid_t>,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// Starts the backend of `spec`.
pub(crate) fn spawn(spec: &Spec) -> Result<Spawned, StartError> {
    let identity = identity(spec)?;
    let line = shell_command(&spec.command, &spec.backends_dir);
    let spawn_error = |source| StartError::Spawn {
        backend: spec.name.clone(),
        command: line.clone(),
        source,
    };
    let chroot = spec
        .chroot
        .as_ref()
        .map(|dir| CString::new(dir.as_os_str().as_encoded_bytes()))
        .transpose()
        .map_err(|_| spawn_error(invalid("the chroot directory holds a NUL byte")))?;
    // The daemon starts backends here and nowhere else (DESIGN.md: "No
    // shell injection"); the command is the administrator's.
    #[allow(clippy::disallowed_methods)]
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&line)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure runs in the child between fork and exec. It only
    // calls async-signal-safe functions (setsid, signal, chroot, chdir,
    // setgroups, setgid, setuid) on data prepared before the fork, and
    // allocates nothing.
    unsafe {
        command.pre_exec(move || prepare_child(identity.as_ref(), chroot.as_deref()));
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    let pipes = (
        child.id(),
        child.stdin.take(),
        child.stdout.take(),
        child.stderr.take(),
    );
    let (Some(pid), Some(stdin), Some(stdout), Some(stderr)) = pipes else {
        return Err(spawn_error(io::Error::other(
            "the child's pipes are missing",
        )));
    };
    Ok(Spawned {
        child,
        pid,
        stdin,
        stdout,
        stderr,
    })
}

/// Runs in the child after fork: new session, default signals, new root,
/// new identity.
fn prepare_child(identity: Option<&Identity>, chroot: Option<&CStr>) -> io::Result<()> {
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    // SAFETY: plain system calls on valid arguments; see `spawn`.
    unsafe {
        check(libc::setsid())?;
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        if let Some(dir) = chroot {
            check(libc::chroot(dir.as_ptr()))?;
            check(libc::chdir(c"/".as_ptr()))?;
        }
        if let Some(id) = identity {
            check(libc::setgroups(id.groups.len() as _, id.groups.as_ptr()))?;
            check(libc::setgid(id.gid))?;
            if let Some(uid) = id.uid {
                check(libc::setuid(uid))?;
            }
        }
    }
    Ok(())
}

/// Resolves the configured user and group, before forking.
fn identity(spec: &Spec) -> Result<Option<Identity>, StartError> {
    let lookup_error = |e: io::Error| StartError::Spawn {
        backend: spec.name.clone(),
        command: spec.command.clone(),
        source: e,
    };
    let group =
        match &spec.group {
            None => None,
            Some(name) => Some(group_id(name).map_err(lookup_error)?.ok_or_else(|| {
                StartError::NoSuchGroup {
                    backend: spec.name.clone(),
                    group: name.clone(),
                }
            })?),
        };
    let Some(user) = &spec.user else {
        return Ok(group.map(|gid| Identity {
            uid: None,
            gid,
            groups: vec![gid],
        }));
    };
    let (uid, primary) =
        user_ids(user)
            .map_err(lookup_error)?
            .ok_or_else(|| StartError::NoSuchUser {
                backend: spec.name.clone(),
                user: user.clone(),
            })?;
    let gid = group.unwrap_or(primary);
    // A daemon that already dropped to this user (privilege separation)
    // restarts its children as itself: only root may switch identities.
    // SAFETY: geteuid and getegid have no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 && euid == uid && unsafe { libc::getegid() } == gid {
        return Ok(None);
    }
    let name = CString::new(user.as_str()).map_err(|_| lookup_error(invalid("NUL in user")))?;
    Ok(Some(Identity {
        uid: Some(uid),
        gid,
        groups: group_list(&name, gid),
    }))
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// Whether a `get*nam_r` return code means "no such entry".
fn not_found(rc: libc::c_int) -> bool {
    matches!(
        rc,
        0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM
    )
}

/// Calls a `get*nam_r` function with a buffer that grows until it fits.
fn with_buffer<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        match call(&mut buf) {
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (_, Some(found)) => return Ok(Some(found)),
            (rc, None) if not_found(rc) => return Ok(None),
            (rc, None) => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// The uid and primary gid of a user.
fn user_ids(name: &str) -> io::Result<Option<(libc::uid_t, libc::gid_t)>> {
    let name = CString::new(name).map_err(|_| invalid("NUL in user name"))?;
    with_buffer(|buf| {
        // SAFETY: every pointer is valid for the call; `passwd` is plain
        // data that getpwnam_r fills in.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            let found = (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid));
            (rc, found)
        }
    })
}

/// The gid of a group.
fn group_id(name: &str) -> io::Result<Option<libc::gid_t>> {
    let name = CString::new(name).map_err(|_| invalid("NUL in group name"))?;
    with_buffer(|buf| {
        // SAFETY: as in `user_ids`.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            let found = (rc == 0 && !result.is_null()).then_some(grp.gr_gid);
            (rc, found)
        }
    })
}

/// The groups of a user, `gid` included (what initgroups would set).
fn group_list(user: &CStr, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let mut size: libc::c_int = 32;
    while size <= 1 << 16 {
        let mut groups = vec![0 as libc::gid_t; size as usize];
        let mut count = size;
        // SAFETY: `groups` holds `count` entries.
        let rc = unsafe { libc::getgrouplist(user.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        size = if count > size { count } else { size * 2 };
    }
    vec![gid]
}

/// Sends `signal` to the child's process group (it leads its own session)
/// and to the child itself, unless it was already reaped.
pub(crate) fn signal(child: &Child, signal: libc::c_int) {
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill has no memory-safety requirements. The child is not
        // reaped yet, so its pid cannot name another process.
        unsafe {
            libc::kill(-pid, signal);
            libc::kill(pid, signal);
        }
    }
}

/// SIGTERM, then SIGKILL after [`KILL_GRACE`]; returns how the child ended.
pub(crate) async fn terminate(child: &mut Child) -> io::Result<ExitStatus> {
    signal(child, libc::SIGTERM);
    match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal(child, libc::SIGKILL);
            child.wait().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_commands_come_from_the_backends_directory() {
        let dir = Path::new("/usr/local/libexec/smtpd/");
        for (command, line) in [
            (
                "table-x /etc/x.conf",
                "exec /usr/local/libexec/smtpd/table-x /etc/x.conf",
            ),
            ("  /bin/cat", "exec /bin/cat"),
            (
                "filter -a 'b c'",
                "exec /usr/local/libexec/smtpd/filter -a 'b c'",
            ),
        ] {
            assert_eq!(shell_command(command, dir), line);
        }
        assert_eq!(
            shell_command("x", Path::new("/my backends")),
            "exec '/my backends'/x"
        );
    }

    #[test]
    fn quoting() {
        for (text, quoted) in [
            ("/etc/mail/x.conf", "/etc/mail/x.conf"),
            ("", "''"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("$HOME", "'$HOME'"),
        ] {
            assert_eq!(quote(text), quoted);
        }
    }

    #[test]
    fn unknown_users_and_groups_are_start_errors() {
        let mut spec = Spec::new("t", "/bin/cat", "/", Duration::from_secs(1));
        spec.user = Some("no-such-user-here".into());
        assert!(matches!(
            identity(&spec),
            Err(StartError::NoSuchUser { user, .. }) if user == "no-such-user-here"
        ));
        spec.user = None;
        spec.group = Some("no-such-group-here".into());
        assert!(matches!(
            identity(&spec),
            Err(StartError::NoSuchGroup { group, .. }) if group == "no-such-group-here"
        ));
    }

    #[test]
    fn root_resolves_with_its_groups() {
        let mut spec = Spec::new("t", "/bin/cat", "/", Duration::from_secs(1));
        assert_eq!(identity(&spec).unwrap(), None);
        spec.user = Some("root".into());
        let id = identity(&spec).unwrap().unwrap();
        assert_eq!((id.uid, id.gid), (Some(0), 0));
        assert!(id.groups.contains(&0));
    }
}
