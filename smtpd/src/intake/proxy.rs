//! The PROXY protocol version 2 header of `listen on ... proxy-v2`
//! listeners: a load balancer in front of the daemon sends it before any
//! SMTP byte, and the client it names becomes the session's source (for
//! the rules, the logs, the `Received:` header and the envelopes).
//!
//! Read as OpenSMTPD 7.8 reads it (`proxy.c`): a 16-byte prefix (the
//! 12-byte signature, version 2 in the high nibble of byte 13 and the
//! command in its low nibble, the family and transport in byte 14, then
//! the length of the rest, big-endian), checked at once; then the rest,
//! whose address block must fit in it; anything past the addresses (TLVs)
//! is skipped. `LOCAL` keeps the connection's own address (a health
//! check), `PROXY` takes the source address and port of the block: TCP
//! over IPv4 or IPv6. A missing or malformed header, or a client that
//! stays silent for [`TIMEOUT`], closes the connection without a word;
//! the log says why, in OpenSMTPD's words. One difference: a `PROXY`
//! header from a Unix socket is refused (OpenSMTPD would give the session
//! the source `local`, which `from local` rules match).
//!
//! The parser is pure ([`parse_prefix`], [`parse_rest`]); [`read_source`]
//! reads exactly the header's bytes from the connection, so nothing of
//! the SMTP dialogue is consumed.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::smtp::conn::Drain;

/// The first 12 bytes of every version 2 header.
pub(super) const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The fixed part: signature, version and command, family, length.
pub(super) const PREFIX_LEN: usize = 16;

/// How long the client has to send the whole header (OpenSMTPD's
/// `PROXY_SESSION_TIMEOUT`).
pub(super) const TIMEOUT: Duration = Duration::from_secs(300);

/// What the header asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    /// The proxy's own connection (a health check): keep its address.
    Local,
    /// A relayed client: take the source address of the block.
    Proxy,
    /// Any other value of the low nibble, refused once the header is read.
    Unknown(u8),
}

/// The address family and transport of the block (byte 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// `AF_UNSPEC`, no transport: no addresses.
    Unspec,
    /// TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
    Inet,
    /// TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
    Inet6,
    /// A Unix stream socket: two 108-byte paths.
    Unix,
}

impl Family {
    /// The size of its address block.
    const fn block_len(self) -> usize {
        match self {
            Self::Unspec => 0,
            Self::Inet => 12,
            Self::Inet6 => 36,
            Self::Unix => 216,
        }
    }
}

/// The checked fixed part of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefix {
    /// What it asks.
    pub(super) command: Command,
    /// The address block's family.
    pub(super) family: Family,
    /// The bytes that follow the prefix (addresses and TLVs).
    pub(super) rest: u16,
}

/// Why a header is refused: OpenSMTPD's reason and detail.
#[derive(Debug)]
pub(super) enum Error {
    /// The first 12 bytes are not the signature.
    Signature,
    /// The version is not 2.
    Version,
    /// A family and transport other than the four above.
    Family,
    /// The length would take the header past 65535 bytes.
    TooLong,
    /// The length leaves no room for the family's addresses.
    AddressTooShort,
    /// The command is neither LOCAL nor PROXY.
    Command,
    /// PROXY with no addresses.
    Unspec,
    /// PROXY from a Unix socket (refused here, see the module text).
    Unix,
    /// The client closed the connection before the end of the header.
    Disconnected,
    /// The header did not arrive within [`TIMEOUT`].
    Timeout,
    /// A read failed.
    Io(io::Error),
}

/// `REASON` or `REASON (DETAIL)`, as OpenSMTPD's `proxy_error` words it.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (reason, detail) = match self {
            Self::Signature => ("protocol error", "invalid signature"),
            Self::Version => ("protocol error", "invalid version"),
            Self::Family => ("protocol error", "unsupported address family"),
            Self::TooLong => ("protocol error", "header too long"),
            Self::AddressTooShort => ("protocol error", "address info too short"),
            Self::Command => ("protocol error", "unknown command"),
            Self::Unspec => (
                "address translation",
                "UNSPEC family not supported for PROXYing",
            ),
            Self::Unix => (
                "address translation",
                "Unix socket sources are not supported",
            ),
            Self::Disconnected => return f.write_str("disconnected"),
            Self::Timeout => return f.write_str("timeout"),
            Self::Io(e) => return write!(f, "IO error ({e})"),
        };
        write!(f, "{reason} ({detail})")
    }
}

/// Checks the fixed part, in OpenSMTPD's order: signature, version,
/// family, length.
pub(super) fn parse_prefix(bytes: &[u8; PREFIX_LEN]) -> Result<Prefix, Error> {
    if bytes[..12] != SIGNATURE {
        return Err(Error::Signature);
    }
    if bytes[12] >> 4 != 2 {
        return Err(Error::Version);
    }
    let command = match bytes[12] & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        other => Command::Unknown(other),
    };
    let family = match bytes[13] {
        0x00 => Family::Unspec,
        0x11 => Family::Inet,
        0x21 => Family::Inet6,
        0x31 => Family::Unix,
        _ => return Err(Error::Family),
    };
    let rest = u16::from_be_bytes([bytes[14], bytes[15]]);
    if usize::from(rest) > usize::from(u16::MAX) - PREFIX_LEN {
        return Err(Error::TooLong);
    }
    if usize::from(rest) < family.block_len() {
        return Err(Error::AddressTooShort);
    }
    Ok(Prefix {
        command,
        family,
        rest,
    })
}

/// The client named by a header whose `rest` bytes (exactly
/// `prefix.rest` of them) followed `prefix`: `None` for LOCAL.
pub(super) fn parse_rest(prefix: &Prefix, rest: &[u8]) -> Result<Option<SocketAddr>, Error> {
    match prefix.command {
        Command::Local => return Ok(None),
        Command::Proxy => {}
        Command::Unknown(_) => return Err(Error::Command),
    }
    let block = rest
        .get(..prefix.family.block_len())
        .ok_or(Error::AddressTooShort)?;
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let source = match prefix.family {
        Family::Unspec => return Err(Error::Unspec),
        Family::Unix => return Err(Error::Unix),
        Family::Inet => {
            let octets: [u8; 4] = block[..4].try_into().map_err(|_| Error::AddressTooShort)?;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port(8))
        }
        Family::Inet6 => {
            let octets: [u8; 16] = block[..16].try_into().map_err(|_| Error::AddressTooShort)?;
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port(32))
        }
    };
    Ok(Some(source))
}

/// Reads one header from `stream`, exactly its bytes: the client it
/// names, `None` for LOCAL.
pub(super) async fn read_source<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, Error> {
    let mut prefix = [0u8; PREFIX_LEN];
    read_all(stream, &mut prefix).await?;
    let prefix = parse_prefix(&prefix)?;
    let mut rest = vec![0u8; usize::from(prefix.rest)];
    read_all(stream, &mut rest).await?;
    parse_rest(&prefix, &rest)
}

async fn read_all<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> Result<(), Error> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::Disconnected),
        Err(e) => Err(Error::Io(e)),
    }
}

/// The source of a connection from `peer` to a `proxy-v2` listener: the
/// header's client, `peer` itself for LOCAL, `None` when the connection
/// is to be closed (a bad header, silence past [`TIMEOUT`], or the daemon
/// stopping meanwhile). Logs OpenSMTPD's `smtp event=proxy` line, and its
/// `event=closed` line on failure.
pub(super) async fn accept<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    drain: &mut watch::Receiver<Drain>,
) -> Option<IpAddr> {
    let id = crate::log::new_session_id();
    let address = LogAddress(peer.ip());
    tracing::info!("{id} smtp event=proxy address={address}");
    let stopping = async {
        // A closed channel means the daemon is gone: stop as well.
        let _ = drain.wait_for(|stage| *stage > Drain::Serve).await;
    };
    let result = tokio::select! {
        read = tokio::time::timeout(TIMEOUT, read_source(stream)) => {
            read.unwrap_or(Err(Error::Timeout))
        }
        () = stopping => return None,
    };
    match result {
        Ok(source) => {
            let ip = source.map_or_else(|| peer.ip(), |s| s.ip()).to_canonical();
            tracing::debug!("proxy {id}: client {} via {}", LogAddress(ip), address);
            Some(ip)
        }
        Err(e) => {
            tracing::info!("proxy {id} event=closed address={address} reason=\"{e}\"");
            None
        }
    }
}

/// An address as OpenSMTPD's `ss_to_text` prints it: `192.0.2.1`,
/// `IPv6:2001:db8::1`.
struct LogAddress(IpAddr);

impl fmt::Display for LogAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.to_canonical() {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "IPv6:{v6}"),
        }
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
