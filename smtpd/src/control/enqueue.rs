//! Local submission over the control socket, both ends: how `sendmail`
//! gets an SMTP session of the socket listener (`listen on socket`).
//!
//! OpenSMTPD's smtpctl asks the control process for a session
//! (`IMSG_CTL_SMTP_SESSION`) and receives a socket to speak SMTP on. Here
//! the control connection itself becomes that socket: the client sends
//! [`Request::SmtpSession`]; the daemon answers `succeeded` and from then
//! on runs an SMTP session on the connection, with the source `local` and
//! the user of the socket's peer credentials (`SO_PEERCRED`), named by the
//! password database ([`crate::enqueue::account`]). Anyone may ask. The
//! client must wait for the answer: bytes sent before it are refused (they
//! would be read as SMTP commands nobody saw a greeting for).

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::client::{Client, ClientError};
use super::protocol::{self, Answer, Request};
use super::server::Context;
use crate::enqueue::account::Account;

/// How long the client waits for each SMTP reply (OpenSMTPD's session
/// timeout).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(300);

/// Why no session was opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The control connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon said no.
    #[error("server disallowed submission request: {0}")]
    Refused(String),
}

/// The client's end of an SMTP session on the control connection.
#[derive(Debug)]
pub struct SmtpStream {
    /// Replies (bytes the daemon sent after its answer are kept here).
    pub reader: BufReader<UnixStream>,
    /// Commands.
    pub writer: UnixStream,
}

/// Asks the daemon on `client`'s connection for an SMTP session.
pub fn open_session(mut client: Client) -> Result<SmtpStream, SessionError> {
    let answers = client.request(&Request::SmtpSession)?;
    match answers.last() {
        Some(Answer::Succeeded) => {}
        Some(Answer::Failed { reason }) => return Err(SessionError::Refused(reason.clone())),
        _ => return Err(SessionError::Refused("denied".to_owned())),
    }
    let (reader, writer) = client.into_parts();
    reader
        .get_ref()
        .set_read_timeout(Some(SMTP_TIMEOUT))
        .map_err(ClientError::Io)?;
    Ok(SmtpStream { reader, writer })
}

/// The daemon's end: turns the connection into a local SMTP session, or
/// answers why not.
pub(super) async fn serve_session(
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    mut out: OwnedWriteHalf,
    peer_uid: Option<u32>,
    context: &Context,
) {
    let parts = lines.into_parts();
    let checked = match (&context.local, peer_uid) {
        (None, _) => Err("local submissions are not accepted"),
        (Some(_), None) => Err("no peer credentials"),
        (Some(_), Some(_)) if !parts.read_buf.is_empty() => Err("data sent before the answer"),
        (Some(local), Some(uid)) => Ok((local, uid)),
    };
    let (local, uid) = match checked {
        Ok(found) => found,
        Err(reason) => {
            tracing::warn!("control: local submission refused: {reason}");
            let answer = Answer::Failed {
                reason: reason.to_owned(),
            };
            let _ = out.write_all(protocol::encode(&answer).as_bytes()).await;
            return;
        }
    };
    let mut stream = match parts.io.reunite(out) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!("control: local submission: {e}");
            return;
        }
    };
    let user = tokio::task::spawn_blocking(move || Account::name_of(uid))
        .await
        .unwrap_or_else(|_| uid.to_string());
    let answer = protocol::encode(&Answer::Succeeded);
    if let Err(e) = stream.write_all(answer.as_bytes()).await {
        tracing::debug!("control: local submission by {user}: {e}");
        return;
    }
    local.serve(Box::new(stream), user).await;
}
