//! The client side of one SMTP or LMTP connection to a next hop, as
//! OpenSMTPD 7.8's `mta_session.c` speaks it (and RFC 5321 where that is
//! silent), over any byte stream the caller connected.
//!
//! # Use
//! ```no_run
//! # async fn relay(
//! #     stream: tokio::net::TcpStream,
//! #     params: &smtpd::mta::client::Params,
//! #     tx: &smtpd::mta::client::Outgoing,
//! #     message: &[u8],
//! # ) -> Result<(), smtpd::mta::client::Failure> {
//! use smtpd::mta::client::Client;
//! let mut client = Client::open(stream, params).await?; // greeted, EHLO'd, TLS, AUTH
//! let results = client.send(tx, message).await?; // one result per recipient
//! for (rcpt, result) in tx.recipients.iter().zip(&results) {
//!     match result {
//!         Ok(reply) => println!("{}: delivered ({reply})", rcpt.address),
//!         Err(failure) if failure.is_temporary() => println!("{}: retry", rcpt.address),
//!         Err(failure) => println!("{}: bounce ({})", rcpt.address, failure.errorline()),
//!     }
//! }
//! if client.is_usable() {
//!     // the next message for the same route: client.send(...) again
//! }
//! client.quit().await;
//! # Ok(())
//! # }
//! ```
//! [`connect`] opens the TCP connection from a chosen source address,
//! with `TCP_NODELAY` (no Nagle delay after the final dot); a caller that
//! connects by itself sets it too.
//!
//! # Behaviour
//! - [`Client::open`]: the TLS handshake first for [`TlsPolicy::Implicit`]
//!   (smtps), the greeting (anything but 2xx fails), `EHLO` (`LHLO` for
//!   LMTP) then `HELO` when `EHLO` is refused (not when TLS or AUTH is
//!   required, as 7.8), `STARTTLS` by [`TlsPolicy`]: never a silent
//!   downgrade (`Required` and no STARTTLS offered, a refused STARTTLS or a
//!   failed handshake is a failure; `Opportunistic` goes on in clear only
//!   when STARTTLS is not offered or refused; whether to reconnect without
//!   TLS after a failed handshake is the engine's call), `EHLO` again,
//!   then `AUTH PLAIN` (or `LOGIN`) only over TLS.
//! - [`Client::send`]: one transaction. `MAIL FROM` with `SIZE=` when the
//!   peer offers SIZE (a message larger than the peer's limit is refused
//!   here, permanently, 5.3.4), `BODY=8BITMIME` when offered (8-bit content
//!   to a peer without 8BITMIME fails permanently, 5.6.3; when the caller
//!   cannot tell in advance, it is found while streaming and the session is
//!   dropped before the final dot), `SMTPUTF8` (required for non-ASCII
//!   addresses: 5.6.7 without it), DSN's `RET`/`ENVID`/`NOTIFY`/`ORCPT`
//!   when the peer offers DSN. With PIPELINING, `MAIL`, every `RCPT` and
//!   `DATA` leave in one write and the replies are read in order. The
//!   message streams from the reader in bounded memory (CRLF line ends,
//!   dot-stuffing, `CRLF.CRLF`), its last block and the final dot in one
//!   write.
//! - Every wait is bounded ([`Timeouts`]; 7.8 uses 300 s for each) and the
//!   whole message transfer too.
//! - Every failure is a [`Failure`]: its [`Stage`], whether it is
//!   temporary (4xx, network, timeout, TLS) or permanent (5xx, local
//!   refusals), and the peer's reply ([`PeerReply`]).
//!
//! Files: `reply.rs` (reply parsing), `failure.rs`, `wire.rs` (buffers
//! and timeouts over the stream), `body.rs` (the DATA encoding), `tls.rs`
//! (rustls client configurations), `session.rs` (the dialogue),
//! `connect.rs` (TCP).

mod body;
mod connect;
mod failure;
mod reply;
mod session;
mod tls;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use body::Encoder;
pub use connect::connect;
pub use failure::{Failure, Kind, Stage};
pub use reply::{BadReply, PeerReply, ReplyParser, MAX_REPLY_LINES};
pub use session::Client;
pub use tls::{ClientTls, TlsError, TlsSettings};
pub use wire::{BoxIo, Io, MAX_LINE};

pub use crate::queue::envelope::{DsnRet, Notify};
pub use crate::smtp::TlsInfo;

/// How a session uses TLS (from the relay URL's scheme and `tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// No TLS (`smtp+notls://`, `lmtp://`).
    Off,
    /// STARTTLS when the peer offers it, else clear text (`smtp://`).
    Opportunistic,
    /// STARTTLS or fail (`smtp+tls://`, `tls` on the action).
    Required,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// `AUTH` credentials (the `auth` table's entry for the URL's label).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The time limits of a session, each for one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection ([`connect`]).
    pub connect: Duration,
    /// The greeting.
    pub greeting: Duration,
    /// The reply to any command (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA,
    /// RSET), and sending commands.
    pub command: Duration,
    /// A TLS handshake.
    pub tls: Duration,
    /// Sending one block of the message.
    pub data_block: Duration,
    /// The reply to the final dot (each one, for LMTP).
    pub data_end: Duration,
    /// The whole message transfer, from the 354 to the last reply.
    pub data_total: Duration,
}

impl Default for Timeouts {
    /// OpenSMTPD 7.8's 300 s for every wait; the whole transfer of one
    /// message within an hour.
    fn default() -> Self {
        let five_minutes = Duration::from_secs(300);
        Self {
            connect: five_minutes,
            greeting: five_minutes,
            command: five_minutes,
            tls: five_minutes,
            data_block: five_minutes,
            data_end: five_minutes,
            data_total: Duration::from_secs(3600),
        }
    }
}

impl Timeouts {
    /// `limit` for every wait, and twelve times it for the whole transfer
    /// of one message (as 300 s and an hour).
    pub fn all(limit: Duration) -> Self {
        Self {
            connect: limit,
            greeting: limit,
            command: limit,
            tls: limit,
            data_block: limit,
            data_end: limit,
            data_total: limit * 12,
        }
    }
}

/// Everything a session needs besides the stream.
#[derive(Debug, Clone)]
pub struct Params {
    /// The EHLO/HELO/LHLO name.
    pub helo: String,
    /// How TLS is used.
    pub tls: TlsPolicy,
    /// Verify the server certificate against the CAs and
    /// [`Params::server_name`] (`smtp+tls://`, `smtps://`, `tls`; not
    /// `tls no-verify`, not opportunistic STARTTLS).
    pub verify: bool,
    /// The name the certificate must carry (the MX or relay host name; an
    /// address for `[ip]` relays), also sent as SNI.
    pub server_name: String,
    /// The TLS configurations; needed unless `tls` is [`TlsPolicy::Off`].
    pub tls_config: Option<ClientTls>,
    /// Authenticate with these credentials (over TLS only).
    pub auth: Option<Login>,
    /// Speak LMTP (`LHLO`, one reply per recipient after the data).
    pub lmtp: bool,
    /// The time limits.
    pub timeouts: Timeouts,
    /// Told each line sent and received.
    pub transcript: Option<Transcript>,
}

/// One line of a session's dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said<'a> {
    /// A line the client sent: a command (AUTH credentials masked as
    /// `AUTH PLAIN ********` and `********`), or the `.` ending the
    /// message (message lines are not told).
    Client(&'a str),
    /// A reply line the server sent, without its CRLF.
    Server(&'a str),
}

/// What a session tells each line of its dialogue to (the smtp-out
/// `protocol-client` and `protocol-server` reports); cheap to clone.
#[derive(Clone)]
pub struct Transcript(Arc<dyn Fn(Said<'_>) + Send + Sync>);

impl Transcript {
    /// A transcript calling `tell` for each line, in order.
    pub fn new(tell: impl Fn(Said<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(tell))
    }

    fn say(&self, said: Said<'_>) {
        (self.0)(said);
    }
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transcript")
    }
}

/// The body type of a message, for `BODY=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// Known to be 7-bit.
    SevenBit,
    /// Known to hold 8-bit bytes.
    EightBit,
    /// Not known: found out while streaming.
    #[default]
    Unknown,
}

/// One recipient of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address (`user@domain`).
    pub address: String,
    /// DSN NOTIFY bits (0: not given).
    pub notify: Notify,
    /// DSN ORCPT, as stored (`rfc822;user@domain`, xtext).
    pub orcpt: Option<String>,
}

impl Recipient {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            notify: Notify::default(),
            orcpt: None,
        }
    }
}

/// One message to send: its envelope and what `MAIL FROM` declares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outgoing {
    /// The reverse path (`user@domain`, empty for the null sender).
    pub sender: String,
    /// The recipients, in order; results come back in the same order.
    pub recipients: Vec<Recipient>,
    /// The message size in bytes with CRLF line ends, when known.
    pub size: Option<u64>,
    /// 7-bit, 8-bit or not known.
    pub body: BodyType,
    /// The message was received with `SMTPUTF8`.
    pub smtputf8: bool,
    /// DSN RET.
    pub dsn_ret: Option<DsnRet>,
    /// DSN ENVID (xtext), empty when not given.
    pub dsn_envid: String,
}

/// The outcome for one recipient: the peer's success reply (250 after the
/// data), or why it failed.
pub type RcptResult = Result<PeerReply, Failure>;

/// The SMTP service extensions a peer announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870): `Some(0)` means no fixed limit.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// AUTH mechanisms (RFC 4954), upper-case.
    pub auth: Vec<String>,
}

impl Extensions {
    /// The extensions of an EHLO reply (its first line is the greeting).
    pub fn parse(reply: &PeerReply) -> Self {
        let mut ext = Self::default();
        for line in reply.lines().iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                "STARTTLS" => ext.starttls = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "AUTH" => ext.auth.extend(words.map(str::to_ascii_uppercase)),
                _ => {
                    // The old `AUTH=MECH ...` form.
                    if let Some(first) = keyword.strip_prefix("AUTH=") {
                        ext.auth.push(first.to_owned());
                        ext.auth.extend(words.map(str::to_ascii_uppercase));
                    }
                }
            }
        }
        let mut unique: Vec<String> = Vec::with_capacity(ext.auth.len());
        for mechanism in std::mem::take(&mut ext.auth) {
            if !unique.contains(&mechanism) {
                unique.push(mechanism);
            }
        }
        ext.auth = unique;
        ext
    }
}

/// What the session learnt about its peer, for logs and the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The greeting.
    pub greeting: PeerReply,
    /// The greeting verb that worked: `EHLO`, `HELO` or `LHLO`.
    pub hello: &'static str,
    /// The extensions (after TLS, the second EHLO's).
    pub extensions: Extensions,
    /// The TLS parameters, when the session is encrypted.
    pub tls: Option<TlsInfo>,
    /// The session authenticated.
    pub authenticated: bool,
}

#[cfg(test)]
mod tests;
