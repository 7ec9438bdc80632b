//! The SMTP server's protocol core, pure: bytes to lines, lines to
//! commands, commands to replies, with no I/O.
//!
//! - `codec.rs`: [`LineCodec`], the tokio-util framing of command lines
//!   and of DATA (dot-unstuffing, size accounting, end of data only on
//!   CRLF.CRLF);
//! - `command.rs`: [`Command::parse`], one line to a [`Command`] or a
//!   [`SyntaxError`] saying what was expected;
//! - `address.rs`: [`Mailbox`] and [`Domain`], validated as strictly as
//!   OpenSMTPD validates them (the check that closed CVE-2020-7247);
//! - `reply.rs`: [`Reply`] with enhanced status codes and the reply texts;
//! - `auth.rs`: SASL base64 and the PLAIN message;
//! - `received.rs`: the `Received:` header, in OpenSMTPD's shape;
//! - `settings.rs`: [`SessionConfig`], what a listener's sessions share;
//! - `session.rs`: [`Session`], the state machine: it answers each
//!   command with a [`Step`], and asks its driver (the connection task)
//!   for every decision it cannot make alone (sender and recipient checks,
//!   credentials, queue commit).
//! - `conn.rs`: [`conn::run`] drives a session over any byte stream
//!   (timeouts, pipelined replies, STARTTLS through the [`conn::Handler`]);
//!   the rules, tables and queue are reached only through the handler;
//! - `tls.rs`: the rustls server side of STARTTLS and smtps, from the
//!   listener's `pki` entries (SNI as libtls picks certificates);
//! - `credentials.rs`: AUTH passwords checked against `credentials` table
//!   values (bcrypt and SHA-crypt hashes), and the hashes `smtpctl encrypt`
//!   makes.

mod address;
mod auth;
mod codec;
mod command;
pub mod conn;
pub mod credentials;
mod received;
mod reply;
mod session;
mod settings;
pub mod tls;

pub use address::{Domain, Mailbox, ReversePath, MAX_DOMAIN, MAX_LOCAL_PART};
pub use auth::{decode_base64, encode_base64, parse_plain, Credentials};
pub use codec::{DataEnd, Frame, LineCodec, LineError};
pub use command::{
    Auth, Body, Command, ErrorKind, MailFrom, Mechanism, Notify, RcptTo, Ret, SyntaxError,
};
pub use received::{Peer, Received, TlsInfo};
pub use reply::{Enhanced, Reply};
pub use session::{AuthStage, Session, Step, Transaction};
pub use settings::{AuthMode, Limits, SessionConfig, TlsMode};
