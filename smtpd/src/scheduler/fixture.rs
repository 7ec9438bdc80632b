//! Envelopes for the scheduler's tests.

use crate::queue::envelope::MailAddr;
use crate::queue::envelope::{Envelope, Flags, Kind, Mda, Notify, Source};
use crate::queue::{EvpId, MsgId};

/// A mail address from `user@domain` (or the null sender from `""`).
pub(crate) fn addr(text: &str) -> MailAddr {
    match text.rsplit_once('@') {
        Some((user, domain)) => MailAddr {
            user: user.to_owned(),
            domain: domain.to_owned(),
        },
        None => MailAddr::default(),
    }
}

/// An envelope of message `msgid`, created at `ctime`, of the given kind,
/// from alice@example.org to bob@example.com.
pub(crate) fn envelope(msgid: u32, low: u32, kind: Kind, ctime: u64) -> Envelope {
    Envelope {
        id: Some(EvpId::new(MsgId(msgid), low)),
        dispatcher: "deliver".to_owned(),
        tag: String::new(),
        kind,
        smtpname: "mx.example.org".to_owned(),
        helo: "laptop.example.net".to_owned(),
        hostname: "laptop.example.net".to_owned(),
        username: String::new(),
        errorline: String::new(),
        source: Source::Local,
        sender: addr("alice@example.org"),
        rcpt: addr("bob@example.com"),
        dest: addr("bob@example.com"),
        ctime,
        last_try: 0,
        last_bounce: 0,
        ttl: 0,
        retry: 0,
        flags: Flags::default(),
        dsn_notify: Notify::default(),
        dsn_ret: None,
        dsn_envid: String::new(),
        dsn_orcpt: String::new(),
        status: None,
    }
}

/// A local delivery envelope.
pub(crate) fn mda(ctime: u64) -> Envelope {
    envelope(0x1234_5678, 1, Kind::Mda(Mda::default()), ctime)
}

/// A relay envelope.
pub(crate) fn mta(ctime: u64) -> Envelope {
    envelope(0x1234_5678, 2, Kind::Mta, ctime)
}
