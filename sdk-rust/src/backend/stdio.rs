//! stdin and stdout as non-blocking async streams.
//!
//! tokio's `stdin()`/`stdout()` hand every read and write to a blocking
//! thread, which costs a thread switch per call. The daemon gives a backend a
//! pipe or a Unix socket (OpenSMTPD uses one socket for both), which can be
//! registered with the reactor directly; anything else (a terminal, a file)
//! falls back to tokio's blocking adapters. The descriptors are duplicated,
//! so the process's own fd 0 and fd 1 stay open.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// The backend's input stream.
pub(crate) type Input = Box<dyn AsyncRead + Unpin + Send>;
/// The backend's output stream.
pub(crate) type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// stdin and stdout, ready for the run loop.
pub(crate) fn open() -> io::Result<(Input, Output)> {
    Ok((input()?, output()?))
}

#[cfg(unix)]
fn input() -> io::Result<Input> {
    use std::os::fd::AsFd;
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    Ok(match kind(&fd)? {
        Kind::Pipe => Box::new(tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?),
        Kind::Socket => Box::new(socket(fd)?),
        Kind::Other => Box::new(tokio::io::stdin()),
    })
}

#[cfg(unix)]
fn output() -> io::Result<Output> {
    use std::os::fd::AsFd;
    let fd = io::stdout().as_fd().try_clone_to_owned()?;
    Ok(match kind(&fd)? {
        Kind::Pipe => Box::new(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?),
        Kind::Socket => Box::new(socket(fd)?),
        Kind::Other => Box::new(tokio::io::stdout()),
    })
}

#[cfg(not(unix))]
fn input() -> io::Result<Input> {
    Ok(Box::new(tokio::io::stdin()))
}

#[cfg(not(unix))]
fn output() -> io::Result<Output> {
    Ok(Box::new(tokio::io::stdout()))
}

#[cfg(unix)]
enum Kind {
    Pipe,
    Socket,
    Other,
}

#[cfg(unix)]
fn kind(fd: &std::os::fd::OwnedFd) -> io::Result<Kind> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::from(fd.try_clone()?);
    let ty = file.metadata()?.file_type();
    Ok(if ty.is_fifo() {
        Kind::Pipe
    } else if ty.is_socket() {
        Kind::Socket
    } else {
        Kind::Other
    })
}

/// A Unix stream socket; a socket of another family is used the same way,
/// since only read and write are needed.
#[cfg(unix)]
fn socket(fd: std::os::fd::OwnedFd) -> io::Result<tokio::net::UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(std)
}
