//! Daemonising (`smtpd` without `-d`): the process forks, the child
//! becomes a session leader without a terminal (`setsid`), its standard
//! input, output and error go to `/dev/null`, and it serves; the parent
//! waits until the child says it started, then exits: 0 once every
//! listener is bound and the control socket listens, 1 with the child's
//! error on its own standard error when the start failed (a port in use,
//! a table that does not start), so that `smtpd && echo started` means
//! what it says.
//!
//! [`detach`] must run before any thread exists (before the tokio
//! runtime; it checks), as `fork(2)` copies only the calling thread. The
//! daemon does not change directory: relative paths of the command line
//! (the default data directory is `data`) and of smtpd.conf (maildir and
//! mbox paths, `file:` tables, certificates) keep meaning what they mean
//! with `-d`, from the directory it was started in; an rc script starts it
//! from `/`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What [`detach`] made of this process.
#[derive(Debug)]
pub enum Detached {
    /// The process that was started: it exits with this status (the
    /// child's error already printed on standard error).
    Parent(u8),
    /// The daemon, which reports its start through [`Ready`].
    Daemon(Ready),
}

/// The daemon's end of the pipe to the waiting parent. Dropping it
/// without a word tells the parent the start failed.
#[derive(Debug)]
pub struct Ready(File);

impl Ready {
    /// Everything is listening: the parent exits 0.
    pub fn started(mut self) {
        // A parent that is gone has nobody to tell.
        let _ = self.0.write_all(b"ok\n");
    }

    /// The start failed with `error`: the parent prints it and exits 1.
    pub fn failed(mut self, error: &str) {
        let line = error.replace('\n', " ");
        let _ = writeln!(self.0, "fatal: {line}");
    }
}

/// Forks into the background; see the module documentation.
pub fn detach() -> io::Result<Detached> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map(Iterator::count)
        .unwrap_or(1);
    if threads > 1 {
        return Err(io::Error::other(format!(
            "cannot detach: {threads} threads run already"
        )));
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (checked above), so the child is
    // a complete copy and may go on running Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            become_daemon()?;
            Ok(Detached::Daemon(Ready(File::from(write))))
        }
        _ => {
            drop(write);
            Ok(Detached::Parent(wait_for_start(File::from(read))))
        }
    }
}

/// In the child: a new session without a terminal, standard streams on
/// `/dev/null`.
fn become_daemon() -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process
        // owns; `null` stays open until the end of the function.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In the parent: the exit status the child's first line gives (`ok`, or
/// the error, printed here).
fn wait_for_start(pipe: File) -> u8 {
    let mut line = String::new();
    // The first line only: children forked by the daemon may keep the
    // pipe open long after it wrote.
    let _ = BufReader::new(pipe).read_line(&mut line);
    match line.trim_end() {
        "ok" => 0,
        "" => {
            eprintln!("fatal: smtpd exited before it started");
            1
        }
        error => {
            eprintln!("{error}");
            1
        }
    }
}
