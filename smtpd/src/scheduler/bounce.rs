//! Bounces: delivery status notifications to the sender (queue.md 6.5,
//! delivery.md 6).
//!
//! Three steps, all pure:
//! 1. [`bounce_envelope`] turns a failed (or delayed, or delivered with
//!    NOTIFY=SUCCESS) envelope into a `bounce` envelope on the same
//!    message, or refuses: never to the null sender, never for an envelope
//!    that is itself a bounce (no bounce loops), never against the
//!    sender's NOTIFY. A refusal is logged and returned.
//! 2. [`group`] gathers the bounce envelopes of one message that report
//!    the same thing (OpenSMTPD's key: message, server name, report type,
//!    delay, lifetime, RET) into one [`BounceGroup`], one notification
//!    for all their recipients.
//! 3. [`BounceGroup::build`] writes the notification: an RFC 3464
//!    `multipart/report` with OpenSMTPD's human-readable notice, the
//!    `message/delivery-status` part and the original message (failures)
//!    or its headers, from a reader of the original; the result says whom
//!    to send it to, from the null sender, through a local SMTP session.

use std::fmt;
use std::io::{self, BufRead};

use crate::queue::envelope::{Bounce, DsnRet, Envelope, Kind, MailAddr, Notify, Status};
use crate::queue::{EvpId, MsgId};

/// The informational lifetime stored in bounce envelopes: 7 days.
pub const BOUNCE_TTL: u64 = 7 * 24 * 3600;

/// Why a failed envelope gets no bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBounce {
    /// The sender is the null sender `<>`: nobody to tell.
    NoReturnPath,
    /// The envelope is itself a bounce: bouncing it could loop.
    DoubleBounce,
    /// The sender asked for no notification (NOTIFY=NEVER).
    NotifyNever,
    /// The sender's NOTIFY does not include this kind of report (a success
    /// is only reported when asked for).
    NotRequested,
}

impl fmt::Display for NoBounce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoReturnPath => "no return path",
            Self::DoubleBounce => "double bounce",
            Self::NotifyNever => "NOTIFY=NEVER",
            Self::NotRequested => "not requested by NOTIFY",
        })
    }
}

/// Marks an envelope as expired: "Envelope expired", status 5.4.7.
pub fn mark_expired(envelope: &mut Envelope) {
    envelope.set_errorline("Envelope expired");
    envelope.status = Some(Status { class: 5, code: 47 });
}

/// Marks an envelope as looping: "Loop detected", status 4.4.6 (the class
/// is 4, so its notification is worded as a delay, as in OpenSMTPD 7.8).
pub fn mark_loop(envelope: &mut Envelope) {
    envelope.set_errorline("Loop detected");
    envelope.status = Some(Status { class: 4, code: 46 });
}

/// The bounce envelope reporting `report` about `envelope`: a copy of it
/// of type `bounce` on the same message (the queue gives it an id there),
/// created at `now` with retry 0 and the 7-day informational ttl, keeping
/// the error line and status it reports. Refused, and logged, when the
/// sender is `<>`, when the envelope is itself a bounce, or when the
/// sender's DSN NOTIFY excludes this report (NEVER; without NOTIFY,
/// failures and delays are reported and successes are not).
pub fn bounce_envelope(
    envelope: &Envelope,
    report: Bounce,
    now: u64,
) -> Result<Envelope, NoBounce> {
    let refusal = refusal(envelope, report);
    if let Some(reason) = refusal {
        let evp = envelope.id.map(|id| id.to_string()).unwrap_or_default();
        tracing::info!("evp:{evp}: no bounce to <{}>: {reason}", envelope.sender);
        return Err(reason);
    }
    let mut bounce = envelope.clone();
    bounce.id = None;
    bounce.kind = Kind::Bounce(report);
    bounce.ctime = now;
    bounce.last_try = 0;
    bounce.last_bounce = 0;
    bounce.retry = 0;
    bounce.ttl = BOUNCE_TTL;
    Ok(bounce)
}

fn refusal(envelope: &Envelope, report: Bounce) -> Option<NoBounce> {
    let sender = &envelope.sender;
    if sender.user.is_empty() && sender.domain.is_empty() {
        return Some(NoBounce::NoReturnPath);
    }
    if envelope.flags.bounce || matches!(envelope.kind, Kind::Bounce(_)) {
        return Some(NoBounce::DoubleBounce);
    }
    let notify = envelope.dsn_notify.0;
    if notify & Notify::NEVER != 0 {
        return Some(NoBounce::NotifyNever);
    }
    let wanted = match report {
        Bounce::Failed => notify == 0 || notify & Notify::FAILURE != 0,
        Bounce::Delayed { .. } => notify == 0 || notify & Notify::DELAY != 0,
        Bounce::Delivered => notify & Notify::SUCCESS != 0,
    };
    (!wanted).then_some(NoBounce::NotRequested)
}

/// What a notification reports (the DSN `Action` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Permanent failure.
    Failed,
    /// Still trying.
    Delayed,
    /// Delivered.
    Delivered,
    /// Relayed to a server without DSN support.
    Relayed,
}

impl Action {
    /// The DSN action word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Delayed => "delayed",
            Self::Delivered => "delivered",
            Self::Relayed => "relayed",
        }
    }

    /// The action of a bounce envelope: from its stored status class as
    /// OpenSMTPD 7.8 derives it (2 delivered, 4 delayed, else failed), or
    /// from its bounce type when it has no status.
    pub fn of(envelope: &Envelope) -> Self {
        match (envelope.status, &envelope.kind) {
            (Some(Status { class: 2, .. }), _) => Self::Delivered,
            (Some(Status { class: 4, .. }), _) => Self::Delayed,
            (Some(_), _) => Self::Failed,
            (None, Kind::Bounce(Bounce::Delayed { .. })) => Self::Delayed,
            (None, Kind::Bounce(Bounce::Delivered)) => Self::Delivered,
            (None, _) => Self::Failed,
        }
    }
}

/// One recipient's report in a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The bounce envelope it comes from.
    pub evpid: Option<EvpId>,
    /// The recipient after expansion (`Final-Recipient`).
    pub dest: MailAddr,
    /// The recipient as the client gave it.
    pub rcpt: MailAddr,
    /// The DSN ORCPT (`addr-type;xtext`), empty if none.
    pub orcpt: String,
    /// The last error line.
    pub errorline: String,
    /// The enhanced status.
    pub status: Status,
    /// The remote server that answered, for relayed envelopes, if known
    /// (`Remote-MTA`).
    pub remote_mta: Option<String>,
}

/// The bounce envelopes of one message that one notification answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceGroup {
    /// The original message.
    pub msgid: Option<MsgId>,
    /// The server name (`Reporting-MTA`, `MAILER-DAEMON@...`).
    pub smtpname: String,
    /// The original sender, who gets the notification.
    pub to: MailAddr,
    /// What is reported.
    pub action: Action,
    /// For delays: the threshold reached, seconds.
    pub delay: u64,
    /// For delays: the lifetime announced, seconds.
    pub ttl: u64,
    /// The sender's DSN RET.
    pub ret: Option<DsnRet>,
    /// The sender's DSN ENVID, empty if none.
    pub envid: String,
    /// One report per recipient, in the order the envelopes came.
    pub reports: Vec<Report>,
}

/// Groups bounce envelopes into notifications, as OpenSMTPD does: one per
/// (message, server name, sender, action, delay, lifetime, RET), the
/// recipients in the order the envelopes came.
pub fn group<'a>(envelopes: impl IntoIterator<Item = &'a Envelope>) -> Vec<BounceGroup> {
    let mut groups: Vec<BounceGroup> = Vec::new();
    for envelope in envelopes {
        let action = Action::of(envelope);
        let (delay, ttl) = match envelope.kind {
            Kind::Bounce(Bounce::Delayed { ttl, delay }) => (delay, ttl),
            _ => (0, 0),
        };
        let report = Report {
            evpid: envelope.id,
            dest: envelope.dest.clone(),
            rcpt: envelope.rcpt.clone(),
            orcpt: envelope.dsn_orcpt.clone(),
            errorline: envelope.errorline.clone(),
            status: envelope.status.unwrap_or(match action {
                Action::Failed => Status { class: 5, code: 0 },
                Action::Delayed => Status { class: 4, code: 0 },
                Action::Delivered | Action::Relayed => Status { class: 2, code: 0 },
            }),
            remote_mta: None,
        };
        let msgid = envelope.msgid();
        let found = groups.iter_mut().find(|g| {
            g.msgid == msgid
                && g.smtpname == envelope.smtpname
                && g.to == envelope.sender
                && g.action == action
                && g.delay == delay
                && g.ttl == ttl
                && g.ret == envelope.dsn_ret
        });
        match found {
            Some(g) => g.reports.push(report),
            None => groups.push(BounceGroup {
                msgid,
                smtpname: envelope.smtpname.clone(),
                to: envelope.sender.clone(),
                action,
                delay,
                ttl,
                ret: envelope.dsn_ret,
                envid: envelope.dsn_envid.clone(),
                reports: vec![report],
            }),
        }
    }
    groups
}

/// A notification ready to inject: `MAIL FROM:<>`, `RCPT TO:<recipient>`,
/// then `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceMessage {
    /// The null sender (empty user and domain).
    pub sender: MailAddr,
    /// The original sender.
    pub recipient: MailAddr,
    /// The name to greet with (`EHLO`).
    pub smtpname: String,
    /// The message, CRLF line endings, not dot-stuffed.
    pub data: Vec<u8>,
    /// The bounce envelopes it answers, to delete once it is accepted.
    pub envelopes: Vec<EvpId>,
}

mod message;

impl BounceGroup {
    /// Writes the notification. `original` reads the original message
    /// (CRLF or LF line endings); `now` (Unix seconds) is its `Date`;
    /// `boundary` is a random number that makes the MIME boundary. A
    /// failure includes the whole original unless the sender asked for
    /// headers only (RET=HDRS); delays and successes include its headers.
    /// Fails only when reading the original fails.
    pub fn build(
        &self,
        original: impl BufRead,
        now: u64,
        boundary: u64,
    ) -> io::Result<BounceMessage> {
        let data = message::write(self, original, now, boundary)?;
        Ok(BounceMessage {
            sender: MailAddr::default(),
            recipient: self.to.clone(),
            smtpname: self.smtpname.clone(),
            data,
            envelopes: self.reports.iter().filter_map(|r| r.evpid).collect(),
        })
    }

    /// Whether the whole original message is returned, not only headers.
    pub fn returns_full_message(&self) -> bool {
        self.action == Action::Failed && self.ret != Some(DsnRet::Hdrs)
    }
}

#[cfg(test)]
mod tests;
