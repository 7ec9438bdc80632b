//! The event lines of one SMTP session, under its random 64-bit id.
//!
//! Intake creates a [`SessionLog`] per session (as OpenSMTPD draws
//! `s->id` with `generate_uid()`) and calls it at each event: connected,
//! TLS established, AUTH verdict, failed command, message committed,
//! disconnected. [`shown_command`] is the one place that decides how a
//! client's command may appear in the log (AUTH credentials never do).

use std::io;
use std::net::IpAddr;

use super::event::{AuthResult, Event, Reason, SessionId};
use crate::queue::envelope::Envelope;
use crate::queue::{EvpId, MsgId};
use crate::smtp::conn::Outcome;
use crate::smtp::{AuthStage, Reply, TlsInfo};

/// The logger of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLog {
    id: SessionId,
}

impl Default for SessionLog {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionLog {
    /// A session with a fresh random id.
    pub fn new() -> Self {
        Self {
            id: super::new_session_id(),
        }
    }

    /// The session's id (also its id in the filter protocol).
    pub const fn id(&self) -> SessionId {
        self.id
    }

    /// `smtp connected`: `address` is `None` for a local submission.
    pub fn connected(&self, address: Option<IpAddr>, host: &str) {
        super::emit(&Event::Connected {
            session: self.id,
            address,
            host,
        });
    }

    /// `smtp tls`: the handshake completed.
    pub fn tls(&self, info: &TlsInfo) {
        super::emit(&Event::Tls {
            session: self.id,
            version: &info.version,
            cipher: &info.cipher,
            bits: info.bits,
        });
    }

    /// `smtp authentication`: the verdict on `user`'s credentials, as the
    /// handler gives it to the session (`Err` when they could not be
    /// checked).
    pub fn authentication(&self, user: &str, verdict: &Result<bool, Reply>) {
        let result = match verdict {
            Ok(true) => AuthResult::Ok,
            Ok(false) => AuthResult::Permfail,
            Err(_) => AuthResult::Tempfail,
        };
        super::emit(&Event::Authentication {
            session: self.id,
            user,
            result,
        });
    }

    /// `smtp failed-command` for a 4xx or 5xx reply to `command` (as
    /// [`shown_command`] shows it), or `smtp bad-input` when the refused
    /// line was no command (`None`). Other replies are not logged.
    pub fn replied(&self, command: Option<&[u8]>, reply: &Reply) {
        if reply.is_positive() {
            return;
        }
        let session = self.id;
        super::emit(&match command {
            Some(command) => Event::FailedCommand {
                session,
                command,
                result: reply,
            },
            None => Event::BadInput {
                session,
                result: reply,
            },
        });
    }

    /// `smtp message`, then one `smtp envelope` per accepted recipient:
    /// `created` holds the envelopes in the order of the recipients, and
    /// `per_recipient` how many each recipient expanded to; each recipient
    /// shows its last envelope, as OpenSMTPD does.
    pub fn message(
        &self,
        msgid: MsgId,
        size: u64,
        esmtp: bool,
        created: &[(EvpId, Envelope)],
        per_recipient: impl IntoIterator<Item = usize>,
    ) {
        let mut last = Vec::new();
        let mut end = 0;
        for count in per_recipient {
            end += count;
            if count > 0 {
                if let Some(envelope) = created.get(end - 1) {
                    last.push(envelope);
                }
            }
        }
        let session = self.id;
        super::emit(&Event::Message {
            session,
            msgid,
            size,
            nrcpt: last.len(),
            esmtp,
        });
        for (evpid, envelope) in last {
            super::emit(&Event::Envelope {
                session,
                evpid: *evpid,
                from: &envelope.sender,
                to: &envelope.rcpt,
            });
        }
    }

    /// `smtp disconnected`, with the reason `outcome` gives.
    pub fn disconnected(&self, outcome: &io::Result<Outcome>) {
        let error;
        let reason = match outcome {
            Ok(Outcome::Closed) => Reason::Quit,
            Ok(Outcome::PeerGone) => Reason::Disconnect,
            Ok(Outcome::Timeout) => Reason::Timeout,
            Ok(Outcome::Shutdown) => Reason::Shutdown,
            Ok(Outcome::TlsInjection) => Reason::Injection,
            Err(e) => {
                error = e.to_string();
                Reason::IoError(&error)
            }
        };
        self.disconnected_for(reason);
    }

    /// `smtp disconnected` with `reason`.
    pub fn disconnected_for(&self, reason: Reason<'_>) {
        super::emit(&Event::Disconnected {
            session: self.id,
            reason,
        });
    }
}

/// How a client's line may appear in the log, given the AUTH exchange it
/// answers (`stage`, [`crate::smtp::Session::auth_stage`] before the line
/// is handled). AUTH credentials never appear: an exchange line is named
/// as OpenSMTPD names it (`AUTH PLAIN (...)`, `AUTH LOGIN (username)`,
/// `AUTH LOGIN (password)`), and an AUTH command's initial response is
/// replaced the same way. Other lines are shown whole (escaped when
/// logged).
pub fn shown_command(line: &[u8], stage: Option<AuthStage>) -> Vec<u8> {
    match stage {
        Some(AuthStage::Plain) => return b"AUTH PLAIN (...)".to_vec(),
        Some(AuthStage::Username) => return b"AUTH LOGIN (username)".to_vec(),
        Some(AuthStage::Password) => return b"AUTH LOGIN (password)".to_vec(),
        None => {}
    }
    let mut words = line.splitn(3, |&b| b == b' ');
    match (words.next(), words.next(), words.next()) {
        (Some(verb), Some(mechanism), Some(_)) if verb.eq_ignore_ascii_case(b"AUTH") => {
            let hidden: &[u8] = if mechanism.eq_ignore_ascii_case(b"LOGIN") {
                b" (username)"
            } else {
                b" (...)"
            };
            [verb, b" ", mechanism, hidden].concat()
        }
        _ => line.to_vec(),
    }
}
