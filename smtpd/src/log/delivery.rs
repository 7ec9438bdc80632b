//! The event lines of the scheduler's driver: the end of each delivery
//! attempt (`mda delivery`, `mta delivery`), envelopes that expire or that
//! an administrator removes, and bounces injected into the queue (logged
//! as the local SMTP session OpenSMTPD runs to inject them).

use super::event::{Delivery, DeliveryResult, Event, QueueAction, Reason};
use super::SessionLog;
use crate::queue::envelope::{Envelope, Kind};
use crate::queue::{EvpId, MsgId};

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<'a> {
    /// Delivered.
    Delivered,
    /// A temporary failure: the reason.
    TempFail(&'a str),
    /// A permanent failure: the reason.
    PermFail(&'a str),
    /// The message looped (a permanent failure).
    Loop,
    /// Relayed: the next hop accepted it with this reply.
    Relayed(&'a str),
}

/// Logs the end of a delivery attempt of `envelope` at the Unix second
/// `now`: `mda delivery` for a local delivery, `mta delivery` else.
pub fn delivery(envelope: &Envelope, attempt: Attempt<'_>, now: u64) {
    delivery_via(envelope, attempt, now, None, "-");
}

/// Logs the end of a relay attempt of `envelope` at `now`, made from the
/// local address `source` (if one was chosen) to `relay` (`NAME [ADDR]`,
/// or `-` when no connection was made): 7.8's `mta delivery` line.
pub fn relay_delivery(
    envelope: &Envelope,
    attempt: Attempt<'_>,
    now: u64,
    source: Option<&str>,
    relay: &str,
) {
    delivery_via(envelope, attempt, now, source, relay);
}

fn delivery_via(
    envelope: &Envelope,
    attempt: Attempt<'_>,
    now: u64,
    source: Option<&str>,
    relay: &str,
) {
    let evpid = envelope.id.unwrap_or(EvpId(0));
    let local = matches!(envelope.kind, Kind::Mda(_));
    // mda.c says `Error (reason)` for a failed delivery agent; mta.c the
    // reason as the relay gave it.
    let (result, stat) = match attempt {
        Attempt::Delivered => (DeliveryResult::Ok, "Delivered".to_owned()),
        Attempt::Relayed(reply) => (DeliveryResult::Ok, reply.to_owned()),
        Attempt::TempFail(reason) if local => {
            (DeliveryResult::TempFail, format!("Error ({reason})"))
        }
        Attempt::PermFail(reason) if local => {
            (DeliveryResult::PermFail, format!("Error ({reason})"))
        }
        Attempt::TempFail(reason) => (DeliveryResult::TempFail, reason.to_owned()),
        Attempt::PermFail(reason) => (DeliveryResult::PermFail, reason.to_owned()),
        Attempt::Loop => (DeliveryResult::PermFail, "Loop detected".to_owned()),
    };
    let delivery = Delivery {
        evpid,
        from: &envelope.sender,
        to: &envelope.dest,
        rcpt: &envelope.rcpt,
        delay: now.saturating_sub(envelope.ctime),
        result,
        stat: &stat,
    };
    let session = super::new_session_id();
    super::emit(&match &envelope.kind {
        Kind::Mda(mda) => Event::MdaDelivery {
            session,
            delivery,
            user: if mda.user.is_empty() {
                &envelope.dest.user
            } else {
                &mda.user
            },
        },
        Kind::Mta | Kind::Bounce(_) => Event::MtaDelivery {
            session,
            delivery,
            source,
            relay,
        },
    });
}

/// Logs that `envelope` expired (`Envelope expired`) at `now`.
pub fn expired(envelope: &Envelope, now: u64) {
    queue(QueueAction::Expire, envelope, now, "Envelope expired");
}

/// Logs that an administrator removed `envelope` at `now`.
pub fn removed(envelope: &Envelope, now: u64) {
    queue(
        QueueAction::Remove,
        envelope,
        now,
        "Removed by administrator",
    );
}

fn queue(action: QueueAction, envelope: &Envelope, now: u64, stat: &str) {
    super::emit(&Event::Queue {
        action,
        evpid: envelope.id.unwrap_or(EvpId(0)),
        local: matches!(envelope.kind, Kind::Mda(_)),
        from: &envelope.sender,
        to: &envelope.dest,
        rcpt: &envelope.rcpt,
        delay: now.saturating_sub(envelope.ctime),
        stat,
    });
}

/// Logs a bounce injected as message `msgid` of `size` bytes, with the
/// envelopes `created` for its one recipient (the original sender), as
/// the local session (`address=local host=HOST`) that OpenSMTPD runs to
/// inject one.
pub fn bounce_injected(host: &str, msgid: MsgId, size: u64, created: &[(EvpId, Envelope)]) {
    let session = SessionLog::new();
    session.connected(None, host);
    session.message(msgid, size, true, created, [created.len()]);
    session.disconnected_for(Reason::Quit);
}
