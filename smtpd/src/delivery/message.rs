//! The queued message as a local delivery sees it (delivery.md section
//! 5.1): `Return-Path:` and `Delivered-To:` first, then the stored message
//! with LF line endings, read from the queue in chunks so that a large
//! message never sits in memory whole.
//!
//! [`header_loop`] is the loop check made before a delivery: a header
//! block already holding `Delivered-To: DEST` means the message has been
//! here before.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use crate::queue::{MsgId, QueueBackend, MAX_READ_LENGTH};

/// The bytes of the header block the loop check looks at, at most.
const LOOP_CHECK_LIMIT: u64 = MAX_READ_LENGTH;

/// The prepended header lines of a delivery: `Return-Path` when the sender
/// has both user and domain, and `Delivered-To` (the original recipient).
pub fn delivery_headers(sender: &str, rcpt: &str) -> String {
    let mut lines = String::new();
    if sender.contains('@') && !sender.starts_with('@') && !sender.ends_with('@') {
        lines.push_str(&format!("Return-Path: <{sender}>\n"));
    }
    lines.push_str(&format!("Delivered-To: {rcpt}\n"));
    lines
}

/// Whether the header block at the start of `msgid` holds a
/// `Delivered-To: DEST` line (case-insensitive): the message loops.
pub async fn header_loop(
    queue: &dyn QueueBackend,
    msgid: MsgId,
    dest: &str,
) -> Result<bool, crate::queue::Error> {
    let Some(start) = queue.message_read(msgid, 0, LOOP_CHECK_LIMIT).await? else {
        return Err(crate::queue::Error::UnknownMessage {
            msgid,
            expected: "known",
        });
    };
    Ok(holds_delivered_to(&start, dest))
}

/// Whether the header block of `message` has `Delivered-To: dest`.
fn holds_delivered_to(message: &[u8], dest: &str) -> bool {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"delivered-to")
            && value.trim_ascii().eq_ignore_ascii_case(dest.as_bytes())
        {
            return true;
        }
    }
    false
}

/// The message `msgid` as a reader: `prefix`, then the stored bytes with
/// CRLF turned into LF, fetched [`MAX_READ_LENGTH`] bytes at a time.
pub fn reader(
    queue: Arc<dyn QueueBackend>,
    msgid: MsgId,
    prefix: String,
) -> impl AsyncRead + Send + Unpin + 'static {
    StreamReader::new(Box::pin(lf_chunks(queue, msgid, prefix)))
}

/// The chunks of [`reader`].
fn lf_chunks(
    queue: Arc<dyn QueueBackend>,
    msgid: MsgId,
    prefix: String,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    struct State {
        queue: Arc<dyn QueueBackend>,
        offset: u64,
        pending_cr: bool,
        done: bool,
    }
    let state = State {
        queue,
        offset: 0,
        pending_cr: false,
        done: false,
    };
    let body = stream::unfold(state, move |mut state| async move {
        if state.done {
            return None;
        }
        let chunk = match state
            .queue
            .message_read(msgid, state.offset, MAX_READ_LENGTH)
            .await
        {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                state.done = true;
                let e = io::Error::new(io::ErrorKind::NotFound, format!("message {msgid} gone"));
                return Some((Err(e), state));
            }
            Err(e) => {
                state.done = true;
                return Some((Err(io::Error::other(e.to_string())), state));
            }
        };
        if chunk.is_empty() {
            state.done = true;
            let tail = if state.pending_cr {
                vec![b'\r']
            } else {
                Vec::new()
            };
            return Some((Ok(Bytes::from(tail)), state));
        }
        state.offset += chunk.len() as u64;
        let out = crlf_to_lf(&chunk, &mut state.pending_cr);
        Some((Ok(Bytes::from(out)), state))
    });
    stream::once(async move { Ok(Bytes::from(prefix)) }).chain(body)
}

/// Turns CRLF into LF in `chunk`; a CR at the end is held in `pending_cr`
/// until the next chunk shows whether an LF follows.
fn crlf_to_lf(chunk: &[u8], pending_cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len() + 1);
    let mut rest = chunk;
    if std::mem::take(pending_cr) && rest.first() != Some(&b'\n') {
        out.push(b'\r');
    }
    while let Some(pos) = rest.iter().position(|&b| b == b'\r') {
        out.extend_from_slice(&rest[..pos]);
        match rest.get(pos + 1) {
            Some(b'\n') => {}
            Some(_) => out.push(b'\r'),
            None => *pending_cr = true,
        }
        rest = &rest[pos + 1..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_becomes_lf_across_chunks() {
        let mut cr = false;
        let mut out = crlf_to_lf(b"a\r\nb\r", &mut cr);
        assert!(cr);
        out.extend(crlf_to_lf(b"\nc\rd\r\n", &mut cr));
        assert_eq!(out, b"a\nb\nc\rd\n");
        let mut cr = false;
        let mut out = crlf_to_lf(b"x\r", &mut cr);
        out.extend(crlf_to_lf(b"y", &mut cr));
        assert_eq!(out, b"x\ry");
    }

    #[test]
    fn delivered_to_in_the_header_block_is_a_loop() {
        let message = b"Received: x\r\nDelivered-To: Bob@Example.org \r\n\r\nbody\r\n";
        assert!(holds_delivered_to(message, "bob@example.org"));
        assert!(!holds_delivered_to(message, "alice@example.org"));
        let in_body = b"Subject: x\r\n\r\nDelivered-To: bob@example.org\r\n";
        assert!(!holds_delivered_to(in_body, "bob@example.org"));
    }

    #[test]
    fn return_path_only_for_full_addresses() {
        assert_eq!(
            delivery_headers("a@b.org", "c@d.org"),
            "Return-Path: <a@b.org>\nDelivered-To: c@d.org\n"
        );
        assert_eq!(delivery_headers("", "c@d.org"), "Delivered-To: c@d.org\n");
    }
}
