//! What a session on a listener with `filter NAME` adds to its handler:
//! the facts the chain's built-in filters test, and the smtp-in report
//! events in OpenSMTPD 7.8's order and format (protocols.md section 2.4),
//! derived from what the connection tells the handler (client lines,
//! replies, TLS, timeouts).
//!
//! The transaction's id in `tx-*` events is the queue message's, as in
//! 7.8: when the chain has filter processes, the handler creates the
//! message at MAIL FROM ([`FilterState::reserve`]) rather than at DATA, so
//! that `tx-begin` to `tx-commit` and the envelope ids of `tx-envelope`
//! share it; a transaction that ends before DATA deletes it. A chain of
//! built-in filters only keeps the message created at DATA and a drawn
//! id.
//!
//! With data-line filters, [`Filtering`] is the message between DATA and
//! its end: the stream the handler sends the client's lines into, and the
//! task ([`write_filtered`]) that owns the queue message meanwhile and
//! writes what the filters give back as it comes, so that nothing of the
//! message piles up in memory whatever the filters hold back.

use std::sync::Arc;

use smtpd_sdk::proto::filter::{AuthResult, Event, EventKind, Fcrdns, TxResult};
use smtpd_sdk::proto::{EvpId, MsgId, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::message::Message;
use crate::dns::{self, PeerName};
use crate::filter::{DataOutput, DataStream, SessionFilters};
use crate::queue::QueueBackend;
use crate::smtp::conn::Notice;
use crate::smtp::{Reply, Session, TlsInfo};

/// What the writer of a filtered message does with what comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writes it to the queue message.
    Write,
    /// Drops it up to the filters' `.` (the message was given up).
    Discard,
    /// Stops at once (the filters failed; nothing more will come).
    Stop,
}

/// The writer's result: the message (`None` if the task was lost), and
/// whether all of it was written.
pub(super) type Written = (Option<Message>, Result<(), Reply>);

fn filter_failed() -> Reply {
    Reply::bare(451, "4.7.0 Filter failed, try again later")
}

/// A message on its way through the data-line filters.
pub(super) struct Filtering {
    /// Where the client's lines go.
    pub(super) input: DataStream,
    /// The task writing what comes back.
    writer: JoinHandle<(Message, Result<(), Reply>)>,
    mode: watch::Sender<Mode>,
}

impl Filtering {
    /// Starts writing what `output` gives back into `message`.
    pub(super) fn start(
        input: DataStream,
        output: DataOutput,
        message: Message,
        queue: Arc<dyn QueueBackend>,
    ) -> Self {
        let (mode, watched) = watch::channel(Mode::Write);
        let writer = tokio::spawn(write_filtered(message, queue, output, watched));
        Self {
            input,
            writer,
            mode,
        }
    }

    /// Whether the writer ended: the filters gave back the whole message
    /// (their `.`), or it failed.
    pub(super) fn writer_done(&self) -> bool {
        self.writer.is_finished()
    }

    /// Sends the final `.` and waits for the rest to be written.
    pub(super) async fn finish(mut self) -> Written {
        if let Err(reply) = self.input.send(b".").await {
            self.mode.send_replace(Mode::Stop);
            let (message, _) = join(self.writer).await;
            return (message, Err(reply));
        }
        join(self.writer).await
    }

    /// Gives the message up: drops what still comes back up to the
    /// filters' `.` (sent now if it was not), then deletes the queue
    /// message; in the background, bounded by the filter timeout.
    fn abandon(self, queue: Arc<dyn QueueBackend>) -> JoinHandle<()> {
        let Self {
            mut input,
            writer,
            mode,
        } = self;
        mode.send_replace(Mode::Discard);
        tokio::spawn(async move {
            input.end().await;
            if !input.dot_sent() {
                // The filters failed: no `.` will come back.
                mode.send_replace(Mode::Stop);
            }
            if let (Some(message), _) = join(writer).await {
                if let Err(e) = queue.message_delete(message.msgid).await {
                    tracing::warn!("cannot drop message {}: {e}", message.msgid);
                }
            }
            drop(input);
        })
    }
}

/// Waits for the writer.
async fn join(writer: JoinHandle<(Message, Result<(), Reply>)>) -> Written {
    match writer.await {
        Ok((message, outcome)) => (Some(message), outcome),
        Err(e) => {
            tracing::error!("the writer of a filtered message failed: {e}");
            (None, Err(filter_failed()))
        }
    }
}

/// Writes what the data-line filters give back into `message`, unstuffed,
/// as it comes, up to their `.`; after a failure (of the filters or the
/// queue) drops the rest, up to that `.`.
async fn write_filtered(
    mut message: Message,
    queue: Arc<dyn QueueBackend>,
    mut output: DataOutput,
    mut mode: watch::Receiver<Mode>,
) -> (Message, Result<(), Reply>) {
    let mut outcome = Ok(());
    loop {
        let line = tokio::select! {
            biased;
            stop = mode.wait_for(|m| *m == Mode::Stop) => {
                drop(stop);
                if outcome.is_ok() {
                    outcome = Err(filter_failed());
                }
                break;
            }
            line = output.next() => line,
        };
        let line = match line {
            Ok(line) => line,
            Err(reply) => {
                if outcome.is_ok() {
                    outcome = Err(reply);
                }
                break;
            }
        };
        if line == b"." {
            break;
        }
        if outcome.is_err() || *mode.borrow() != Mode::Write {
            continue;
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if let Err(reply) = message.take_line(queue.as_ref(), line).await {
            outcome = Err(reply);
        }
    }
    (message, outcome)
}

/// A filtered session's filter state.
pub(super) struct FilterState {
    pub(super) filters: SessionFilters,
    /// The message's way through the data-line filters, between DATA and
    /// its end.
    pub(super) stream: Option<Filtering>,
    /// An abandoned message's stream, finishing in the background.
    draining: Option<JoinHandle<()>>,
    queue: Arc<dyn QueueBackend>,
    /// The transaction's id in reports, from MAIL FROM to its end.
    msgid: Option<MsgId>,
    /// The queue message created at MAIL FROM, until DATA takes it.
    reserved: Option<MsgId>,
    /// The size of the message being committed, until the reply.
    pub(super) committing: Option<u64>,
    /// A filter said `disconnect` at commit.
    pub(super) closing: bool,
}

/// The text between `<` and `>` of a command, as 7.8 reports addresses.
fn bracketed(command: &[u8]) -> String {
    let text = String::from_utf8_lossy(command);
    match (text.find('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => text[open + 1..close].to_owned(),
        _ => String::new(),
    }
}

fn tx_result(reply: &Reply) -> TxResult {
    match reply.code() {
        0..=399 => TxResult::Ok,
        400..=499 => TxResult::Tempfail,
        _ => TxResult::Permfail,
    }
}

/// A fresh transaction id: 8 hex digits, never zero.
fn fresh_msgid() -> MsgId {
    let now = Timestamp::now();
    let mixed = (now.secs as u32 ^ now.micros.rotate_left(12)).wrapping_mul(2_654_435_761);
    MsgId(mixed.max(1))
}

/// A user name as 7.8 reports it: vis(3)-like, whitespace and
/// non-printable characters escaped.
fn visible(user: &str) -> String {
    user.bytes()
        .flat_map(|b| match b {
            b'!'..=b'~' if b != b'\\' => vec![b as char],
            _ => format!("\\{b:03o}").chars().collect(),
        })
        .collect()
}

impl FilterState {
    /// The state of a new session, its `link-connect` sent: `src` and
    /// `dest` are `ADDR:PORT` (`unix:...` on the local socket).
    pub(super) fn new(
        filters: SessionFilters,
        queue: Arc<dyn QueueBackend>,
        name: &PeerName,
        src: String,
        dest: String,
    ) -> Self {
        filters.report(Event::LinkConnect {
            rdns: name.rdns_or_unknown().to_owned(),
            fcrdns: match name.fcrdns {
                dns::Fcrdns::Pass => Fcrdns::Pass,
                dns::Fcrdns::Fail => Fcrdns::Fail,
                dns::Fcrdns::Error => Fcrdns::Error,
            },
            src,
            dest,
        });
        Self {
            filters,
            stream: None,
            draining: None,
            queue,
            msgid: None,
            reserved: None,
            committing: None,
            closing: false,
        }
    }

    /// Gives up the message's stream, if one is open
    /// ([`DataStream::abandon`]).
    pub(super) fn abandon_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            // A previous one still draining goes on by itself (it deletes
            // its message at the end).
            self.draining = Some(stream.abandon(Arc::clone(&self.queue)));
        }
    }

    /// Whether the transaction's queue message is created at MAIL FROM.
    pub(super) fn reserves(&self) -> bool {
        self.filters.has_procs()
    }

    /// Keeps `msgid`, created at MAIL FROM, as the transaction's message
    /// and id.
    pub(super) fn reserve(&mut self, msgid: MsgId) {
        self.release();
        self.reserved = Some(msgid);
    }

    /// The message created at MAIL FROM, for DATA to write.
    pub(super) fn take_reserved(&mut self) -> Option<MsgId> {
        self.reserved.take()
    }

    /// Deletes the message created at MAIL FROM, if DATA did not take it
    /// (in the background).
    fn release(&mut self) {
        if let Some(msgid) = self.reserved.take() {
            let queue = Arc::clone(&self.queue);
            tokio::spawn(async move {
                if let Err(e) = queue.message_delete(msgid).await {
                    tracing::warn!("cannot drop message {msgid}: {e}");
                }
            });
        }
    }

    /// Waits until an abandoned message has left the filters.
    pub(super) async fn settle(&mut self) {
        if let Some(draining) = self.draining.take() {
            draining.await.ok();
        }
    }

    /// What the connection told the handler.
    pub(super) fn notice(&mut self, session: &Session, notice: Notice<'_>, tls: Option<&TlsInfo>) {
        match notice {
            Notice::Greeting(reply) => {
                self.protocol_server(reply);
                self.filters.report(Event::LinkGreeting {
                    hostname: session.hostname().to_owned(),
                });
            }
            Notice::Command(line) => {
                if self.filters.wants(EventKind::ProtocolClient) {
                    self.filters.report(Event::ProtocolClient {
                        line: String::from_utf8_lossy(line).into_owned(),
                    });
                }
            }
            Notice::Tls => {
                if let Some(tls) = tls {
                    self.filters.report(Event::LinkTls {
                        info: format!("{}:{}:{}", tls.version, tls.cipher, tls.bits),
                    });
                }
            }
            Notice::Timeout => self.filters.report(Event::Timeout),
            Notice::Replied { command, reply } => self.replied(session, command, reply),
        }
    }

    fn protocol_server(&self, reply: &Reply) {
        if !self.filters.wants(EventKind::ProtocolServer) {
            return;
        }
        for line in reply.to_string().split("\r\n") {
            self.filters.report(Event::ProtocolServer {
                line: line.to_owned(),
            });
        }
    }

    /// A reply went out for `command` (as logs show it).
    fn replied(&mut self, session: &Session, command: Option<&[u8]>, reply: &Reply) {
        self.protocol_server(reply);
        if let Some(size) = self.committing.take() {
            self.end_transaction(reply.code() == 250, Some(size));
            return;
        }
        let Some(command) = command else {
            return;
        };
        let verb = command
            .split(|&b| b == b' ' || b == b':')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let ok = reply.is_positive();
        match verb.as_slice() {
            b"HELO" | b"EHLO" if ok => self.filters.report(Event::LinkIdentify {
                method: String::from_utf8_lossy(&verb).into_owned(),
                identity: session.helo().map(ToString::to_string).unwrap_or_default(),
            }),
            b"MAIL" if ok => {
                let msgid = self.reserved.unwrap_or_else(fresh_msgid);
                self.msgid = Some(msgid);
                self.filters.report(Event::TxBegin { msgid });
                self.filters.report(Event::TxMail {
                    msgid,
                    result: TxResult::Ok,
                    address: bracketed(command),
                });
            }
            b"RCPT" => {
                if let Some(msgid) = self.msgid {
                    self.filters.report(Event::TxRcpt {
                        msgid,
                        result: tx_result(reply),
                        address: bracketed(command),
                    });
                }
            }
            b"DATA" => {
                if let Some(msgid) = self.msgid {
                    self.filters.report(Event::TxData {
                        msgid,
                        result: tx_result(reply),
                    });
                    if !ok && session.transaction().is_none() {
                        self.end_transaction(false, None);
                    }
                }
            }
            b"MAIL" => self.release(),
            b"RSET" if ok => self.end_transaction(false, None),
            _ => {}
        }
    }

    /// The queued envelopes of the message being committed.
    pub(super) fn envelopes(&self, ids: impl Iterator<Item = EvpId>) {
        let Some(msgid) = self.msgid else {
            return;
        };
        for id in ids {
            self.filters.report(Event::TxEnvelope { msgid, evpid: id });
        }
    }

    /// AUTH ended.
    pub(super) fn authenticated(&self, user: &str, verdict: &Result<bool, Reply>) {
        self.filters.report(Event::LinkAuth {
            result: match verdict {
                Ok(true) => AuthResult::Pass,
                Ok(false) => AuthResult::Fail,
                Err(_) => AuthResult::Error,
            },
            username: visible(user),
        });
    }

    /// Ends the open transaction, if any: committed (`tx-commit` with its
    /// size) or rolled back; then `tx-reset`.
    fn end_transaction(&mut self, committed: bool, size: Option<u64>) {
        self.abandon_stream();
        self.release();
        self.filters.reset_junk();
        let Some(msgid) = self.msgid.take() else {
            return;
        };
        match (committed, size) {
            (true, Some(size)) => self.filters.report(Event::TxCommit { msgid, size }),
            _ => self.filters.report(Event::TxRollback { msgid }),
        }
        self.filters.report(Event::TxReset { msgid });
    }

    /// The session ended.
    pub(super) fn ended(&mut self) {
        self.end_transaction(false, None);
        self.filters.report(Event::LinkDisconnect);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_the_bracketed_text() {
        assert_eq!(bracketed(b"MAIL FROM:<a@b.c> SIZE=10"), "a@b.c");
        assert_eq!(bracketed(b"RCPT TO:<>"), "");
        assert_eq!(bracketed(b"MAIL FROM:a@b"), "");
    }

    #[test]
    fn user_names_are_escaped() {
        assert_eq!(visible("alice"), "alice");
        assert_eq!(visible("a b\n"), "a\\040b\\012");
    }

    #[test]
    fn results_follow_the_reply_class() {
        assert_eq!(tx_result(&Reply::ok()), TxResult::Ok);
        assert_eq!(tx_result(&Reply::temporary_failure()), TxResult::Tempfail);
        assert_eq!(tx_result(&Reply::bad_sequence()), TxResult::Permfail);
    }
}
