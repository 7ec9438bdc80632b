//! `smtpctl show queue`: an envelope as a [`QueueEntry`], from its file's
//! fields and the scheduler's state, and the line OpenSMTPD's smtpctl
//! prints for it (smtpctl.md section 3):
//!
//! ```text
//! EVPID|FAMILY|TYPE|FLAGS|SENDER|RCPT|DEST|CTIME|EXPIRE|LASTTRY|RETRY|RUNSTATE|DELAY|ERROR
//! ```
//!
//! The daemon builds the entries ([`entry`]); smtpctl prints them
//! ([`line`]). When no daemon runs, smtpctl reads the fs spool itself
//! ([`offline`]) and every envelope's runstate is `offline`.

use std::io;
use std::path::Path;

use super::protocol::{HexId, QueueEntry, RunState};
use crate::queue::envelope::{Envelope, Kind, Source};
use crate::queue::{EvpId, MsgId};

/// What the scheduler adds to an envelope's own flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerFlags {
    /// Suspended by `pause envelope`.
    pub suspended: bool,
    /// Parked on a hold queue.
    pub held: bool,
}

/// The entry of envelope `evpid`, read from its file, in `runstate`.
pub fn entry(
    evpid: EvpId,
    envelope: &Envelope,
    runstate: RunState,
    scheduler: SchedulerFlags,
) -> QueueEntry {
    let flags = [
        (envelope.flags.bounce, "bounce"),
        (envelope.flags.authenticated, "auth"),
        (envelope.flags.internal, "internal"),
        (scheduler.suspended, "suspend"),
        (scheduler.held, "hold"),
    ];
    QueueEntry {
        evpid,
        family: match envelope.source {
            Source::Local => "local",
            Source::V4(_) => "inet4",
            Source::V6(_) => "inet6",
        }
        .to_owned(),
        kind: match envelope.kind {
            Kind::Mda(_) => "mda",
            Kind::Mta => "mta",
            Kind::Bounce(_) => "bounce",
        }
        .to_owned(),
        flags: flags
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| (*name).to_owned())
            .collect(),
        sender: envelope.sender.to_string(),
        rcpt: envelope.rcpt.to_string(),
        dest: envelope.dest.to_string(),
        ctime: envelope.ctime,
        expire: envelope.ctime.saturating_add(envelope.ttl),
        last_try: envelope.last_try,
        retry: envelope.retry,
        runstate,
        error: envelope.errorline.clone(),
    }
}

/// The `show queue` line of an entry, newline included.
pub fn line(entry: &QueueEntry) -> String {
    let runstate = match entry.runstate {
        RunState::Pending { delay } => format!("pending|{delay}"),
        RunState::Inflight { delay } => format!("inflight|{delay}"),
        RunState::Invalid => "invalid|".to_owned(),
        RunState::Offline => "offline|".to_owned(),
    };
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}\n",
        entry.evpid,
        entry.family,
        entry.kind,
        entry.flags.join(","),
        entry.sender,
        entry.rcpt,
        entry.dest,
        entry.ctime,
        entry.expire,
        entry.last_try,
        entry.retry,
        runstate,
        vis(&entry.error),
    )
}

/// `text` with what a terminal should not receive escaped as vis(3) does
/// in C style: `\\`, `\t`, `\r`, `\n` and the like, other control
/// characters and bytes past ASCII as three octal digits (`\303\251`).
pub fn vis(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            b' '..=b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03o}")),
        }
    }
    out
}

/// Every envelope in the fs spool `spool` (`queue/BB/MSGID/EVPID`), by
/// id, with runstate `offline`; files that are no envelope are skipped.
pub fn offline(spool: &Path) -> io::Result<Vec<QueueEntry>> {
    let mut entries = Vec::new();
    for bucket in read_dir_sorted(&spool.join("queue"))? {
        if !is_named(&bucket, 2) {
            continue;
        }
        for message in read_dir_sorted(&bucket)? {
            let Some(msgid) = name_of(&message).and_then(MsgId::from_hex) else {
                continue;
            };
            for file in read_dir_sorted(&message)? {
                let Some(evpid) = name_of(&file).and_then(EvpId::from_hex) else {
                    continue;
                };
                if evpid.msgid() != msgid {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&file) else {
                    continue;
                };
                if let Ok(envelope) = Envelope::parse(&bytes, Some(evpid)) {
                    let flags = SchedulerFlags::default();
                    entries.push(entry(evpid, &envelope, RunState::Offline, flags));
                }
            }
        }
    }
    Ok(entries)
}

/// The paths in directory `dir`, sorted; nothing if it is missing.
fn read_dir_sorted(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

fn name_of(path: &Path) -> Option<&str> {
    path.file_name().and_then(|name| name.to_str())
}

fn is_named(path: &Path, len: usize) -> bool {
    name_of(path).is_some_and(|name| name.len() == len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE: &str = "version: 3\n\
        dispatcher: local\n\
        type: mda\n\
        smtpname: mx.example.org\n\
        helo: laptop.example.net\n\
        hostname: laptop.example.net\n\
        errorline: 421 mx.example.com: Connection refused\n\
        sockaddr: 192.0.2.44\n\
        sender: alice@example.org\n\
        rcpt: bob@example.com\n\
        dest: bob@example.com\n\
        ctime: 1731000000\n\
        last-try: 1731000401\n\
        last-bounce: 0\n\
        ttl: 0\n\
        retry: 1\n\
        flags: authenticated\n\
        dsn-notify: 0\n\
        mda-user: bob\n";

    fn envelope(text: &str) -> Envelope {
        Envelope::parse(text.as_bytes(), None).unwrap()
    }

    #[test]
    fn lines_as_openbsd_smtpctl_prints_them() {
        let evpid = EvpId(0xa7c3_e01b_5d2f_9c40);
        let e = envelope(ENVELOPE);
        let pending = RunState::Pending { delay: 1187 };
        let cases = [
            (
                entry(evpid, &e, pending, SchedulerFlags::default()),
                "a7c3e01b5d2f9c40|inet4|mda|auth|alice@example.org|bob@example.com|\
                 bob@example.com|1731000000|1731000000|1731000401|1|pending|1187|\
                 421 mx.example.com: Connection refused\n",
            ),
            (
                entry(
                    evpid,
                    &e,
                    RunState::Inflight { delay: 3 },
                    SchedulerFlags {
                        suspended: true,
                        held: true,
                    },
                ),
                "a7c3e01b5d2f9c40|inet4|mda|auth,suspend,hold|alice@example.org|\
                 bob@example.com|bob@example.com|1731000000|1731000000|1731000401|1|\
                 inflight|3|421 mx.example.com: Connection refused\n",
            ),
            (
                entry(evpid, &e, RunState::Offline, SchedulerFlags::default()),
                "a7c3e01b5d2f9c40|inet4|mda|auth|alice@example.org|bob@example.com|\
                 bob@example.com|1731000000|1731000000|1731000401|1|offline||\
                 421 mx.example.com: Connection refused\n",
            ),
            (
                entry(evpid, &e, RunState::Invalid, SchedulerFlags::default()),
                "a7c3e01b5d2f9c40|inet4|mda|auth|alice@example.org|bob@example.com|\
                 bob@example.com|1731000000|1731000000|1731000401|1|invalid||\
                 421 mx.example.com: Connection refused\n",
            ),
        ];
        for (entry, expected) in cases {
            assert_eq!(line(&entry), expected);
        }
    }

    #[test]
    fn bounces_local_senders_and_the_null_sender() {
        let text = ENVELOPE
            .replace("type: mda\n", "type: bounce\n")
            .replace("mda-user: bob\n", "bounce-type: failed\n")
            .replace("sockaddr: 192.0.2.44", "sockaddr: local")
            .replace("sender: alice@example.org", "sender: @")
            .replace("ttl: 0", "ttl: 604800")
            .replace("flags: authenticated", "flags: bounce internal")
            .replace("errorline: 421 mx.example.com: Connection refused\n", "")
            .replace("retry: 1", "retry: 0")
            .replace("last-try: 1731000401", "last-try: 0");
        let e = envelope(&text);
        let got = line(&entry(
            EvpId(0x0000_0001_0000_0002),
            &e,
            RunState::Pending { delay: -4 },
            SchedulerFlags::default(),
        ));
        assert_eq!(
            got,
            "0000000100000002|local|bounce|bounce,internal|@|bob@example.com|\
             bob@example.com|1731000000|1731604800|0|0|pending|-4|\n"
        );
        let v6 = envelope(&ENVELOPE.replace("192.0.2.44", "[2001:db8::1]"));
        let got = entry(EvpId(1), &v6, RunState::Offline, SchedulerFlags::default());
        assert_eq!(got.family, "inet6");
    }

    #[test]
    fn error_lines_are_escaped() {
        let cases = [
            ("plain text: 4.2.0 ok", "plain text: 4.2.0 ok"),
            ("tab\there", "tab\\there"),
            ("back\\slash", "back\\\\slash"),
            ("bell\x07 nul\0", "bell\\a nul\\000"),
            ("del\x7f esc\x1b", "del\\177 esc\\033"),
            ("caf\u{e9}", "caf\\303\\251"),
        ];
        for (text, expected) in cases {
            assert_eq!(vis(text), expected, "{text:?}");
        }
    }

    #[test]
    fn the_offline_walk_reads_the_spool_in_id_order() {
        let spool =
            std::env::temp_dir().join(format!("smtpd-envelopes-offline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&spool);
        assert!(offline(&spool).unwrap().is_empty());
        let write = |msgid: &str, name: &str, text: &str| {
            let dir = spool.join("queue").join(&msgid[..2]).join(msgid);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), text).unwrap();
        };
        write("beef0001", "beef000100000002", ENVELOPE);
        write("beef0001", "beef000100000001", ENVELOPE);
        write("beef0001", "message", "Subject: hi\r\n\r\nhello\r\n");
        write("0a000001", "0a00000100000009", ENVELOPE);
        // Not envelopes: another message's id, a bad file, a bad name.
        write("0a000001", "beef000100000003", ENVELOPE);
        write("0a000001", "0a00000100000008", "garbage\n");
        write("0a000001", "0a0000010000000", ENVELOPE);
        let ids: Vec<String> = offline(&spool)
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e.runstate, RunState::Offline);
                e.evpid.to_string()
            })
            .collect();
        assert_eq!(
            ids,
            ["0a00000100000009", "beef000100000001", "beef000100000002"]
        );
        std::fs::remove_dir_all(&spool).unwrap();
    }
}
