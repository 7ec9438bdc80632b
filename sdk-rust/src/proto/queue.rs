//! The queue protocol, version 0.1: the queue as a store of opaque blobs.
//!
//! ```text
//! > queue|0.1|1731000001.000412|message-create|0000000000000001
//! < message-create-result|0000000000000001|ok|0badcafe
//! ```
//!
//! Binary data (message chunks, envelopes) travels as standard base64 with
//! padding. An `ok` to any state-changing request means the change is
//! durable.
//!
//! A backend whose store is shared by several daemons registers the
//! optional [`LEASE_CAPABILITY`]; the daemon then claims each envelope
//! (`envelope-claim`) before delivering it, releases it after a temporary
//! failure (`envelope-release`) and walks only the envelopes no other
//! daemon holds (`envelope-walk-free`). Backends without it never see
//! those operations.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{BufMut, BytesMut};

use super::ids::{parse_decimal, parse_hex_exact};
use super::keyword::keywords;
use super::line::{Cursor, Writer};
use super::{EvpId, FormatError, Line, MsgId, ParseError, Problem, QueueId, Timestamp};

/// The protocol version this module speaks.
pub const VERSION: &str = "0.1";

/// The largest chunk the daemon writes or asks for by default, in bytes.
pub const DEFAULT_CHUNK_SIZE: usize = 32 * 1024;

/// The capability (`register|lease`) of a backend whose store several
/// daemons share: it serves the lease operations (SPEC.md 4.12).
pub const LEASE_CAPABILITY: &str = "lease";

/// The longest lease a claim may ask for, in seconds (one day).
pub const MAX_LEASE_SECONDS: u64 = 86_400;

/// The longest daemon instance id, in bytes.
pub const MAX_INSTANCE_LEN: usize = 64;

/// True when `id` is a valid daemon instance id: 1 to
/// [`MAX_INSTANCE_LEN`] ASCII letters, digits, `.`, `_`, `-` or `:`.
pub fn is_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_INSTANCE_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

keywords!(
    /// The operation of a request, without its arguments.
    OpKind {
        /// Allocate a new message id.
        MessageCreate = "message-create",
        /// Store a chunk of an uncommitted message.
        MessageWrite = "message-write",
        /// Make a message durable and visible.
        MessageCommit = "message-commit",
        /// Read a chunk of a committed message.
        MessageRead = "message-read",
        /// Remove a message and its envelopes.
        MessageDelete = "message-delete",
        /// Move a message and its envelopes aside.
        MessageCorrupt = "message-corrupt",
        /// Store a new envelope for a message.
        EnvelopeCreate = "envelope-create",
        /// Replace an envelope.
        EnvelopeUpdate = "envelope-update",
        /// Read an envelope.
        EnvelopeLoad = "envelope-load",
        /// Remove an envelope.
        EnvelopeDelete = "envelope-delete",
        /// The next committed envelope after a given id.
        EnvelopeWalk = "envelope-walk",
        /// Lease an envelope to a daemon instance, or extend its lease
        /// (capability `lease`).
        EnvelopeClaim = "envelope-claim",
        /// Give a lease back (capability `lease`).
        EnvelopeRelease = "envelope-release",
        /// The next committed envelope after a given id that no other
        /// instance holds (capability `lease`).
        EnvelopeWalkFree = "envelope-walk-free",
    }
);

impl OpKind {
    /// True for the operations of the `lease` capability, which only a
    /// backend that registered it is sent.
    pub fn needs_lease(self) -> bool {
        matches!(
            self,
            Self::EnvelopeClaim | Self::EnvelopeRelease | Self::EnvelopeWalkFree
        )
    }

    /// The first field of the answer, e.g. `message-create-result`.
    pub fn result_name(self) -> String {
        format!("{}-result", self.name())
    }
}

/// A backend's handshake answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Register {
    /// `register|CAPABILITY`: none is defined in 0.1; the daemon ignores
    /// unknown ones.
    Capability(String),
    /// `register|ready`.
    Ready,
}

impl Line for Register {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        c.expect(b"register", "line type", "register")?;
        let what = c.text("capability", "a capability or ready")?;
        c.finish("registration")?;
        match what {
            "ready" => Ok(Self::Ready),
            "" => Err(c.error(Problem::Missing, "capability", "a capability or ready")),
            cap => Ok(Self::Capability(cap.to_owned())),
        }
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        let mut w = Writer::new(out);
        w.raw(b"register");
        match self {
            Self::Ready => {
                w.raw(b"ready");
            }
            Self::Capability(cap) if cap.is_empty() || cap == "ready" => {
                return Err(FormatError {
                    field: "capability",
                    reason: "must be a name other than ready",
                })
            }
            Self::Capability(cap) => {
                w.field("capability", cap.as_bytes())?;
            }
        }
        w.end();
        Ok(())
    }
}

/// An operation with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `message-create`.
    MessageCreate,
    /// `message-write|MSGID|OFFSET|DATA`.
    MessageWrite {
        /// The message.
        msgid: MsgId,
        /// Where the chunk goes.
        offset: u64,
        /// The chunk (1 to chunk-size bytes).
        data: Vec<u8>,
    },
    /// `message-commit|MSGID|SIZE`.
    MessageCommit {
        /// The message.
        msgid: MsgId,
        /// Its total size; the backend refuses a mismatch.
        size: u64,
    },
    /// `message-read|MSGID|OFFSET|LENGTH`.
    MessageRead {
        /// The message.
        msgid: MsgId,
        /// Where to read from.
        offset: u64,
        /// At most this many bytes.
        length: u64,
    },
    /// `message-delete|MSGID`.
    MessageDelete {
        /// The message.
        msgid: MsgId,
    },
    /// `message-corrupt|MSGID`.
    MessageCorrupt {
        /// The message.
        msgid: MsgId,
    },
    /// `envelope-create|MSGID|DATA`.
    EnvelopeCreate {
        /// The message the envelope belongs to.
        msgid: MsgId,
        /// The serialized envelope.
        data: Vec<u8>,
    },
    /// `envelope-update|EVPID|DATA`.
    EnvelopeUpdate {
        /// The envelope.
        evpid: EvpId,
        /// Its new content.
        data: Vec<u8>,
    },
    /// `envelope-load|EVPID`.
    EnvelopeLoad {
        /// The envelope.
        evpid: EvpId,
    },
    /// `envelope-delete|EVPID`.
    EnvelopeDelete {
        /// The envelope.
        evpid: EvpId,
    },
    /// `envelope-walk|AFTER`.
    EnvelopeWalk {
        /// Answer with the smallest committed envelope id above this one.
        after: EvpId,
    },
    /// `envelope-claim|EVPID|INSTANCE|SECONDS`.
    EnvelopeClaim {
        /// The envelope.
        evpid: EvpId,
        /// The daemon instance asking ([`is_instance_id`]).
        instance: String,
        /// How long the lease lasts from now, 1 to [`MAX_LEASE_SECONDS`].
        seconds: u64,
    },
    /// `envelope-release|EVPID|INSTANCE`.
    EnvelopeRelease {
        /// The envelope.
        evpid: EvpId,
        /// The daemon instance giving its lease back.
        instance: String,
    },
    /// `envelope-walk-free|AFTER|INSTANCE`.
    EnvelopeWalkFree {
        /// Answer with the smallest free envelope id above this one.
        after: EvpId,
        /// The daemon instance walking: its own leases count as free.
        instance: String,
    },
}

impl Op {
    /// The operation without arguments.
    pub fn kind(&self) -> OpKind {
        match self {
            Self::MessageCreate => OpKind::MessageCreate,
            Self::MessageWrite { .. } => OpKind::MessageWrite,
            Self::MessageCommit { .. } => OpKind::MessageCommit,
            Self::MessageRead { .. } => OpKind::MessageRead,
            Self::MessageDelete { .. } => OpKind::MessageDelete,
            Self::MessageCorrupt { .. } => OpKind::MessageCorrupt,
            Self::EnvelopeCreate { .. } => OpKind::EnvelopeCreate,
            Self::EnvelopeUpdate { .. } => OpKind::EnvelopeUpdate,
            Self::EnvelopeLoad { .. } => OpKind::EnvelopeLoad,
            Self::EnvelopeDelete { .. } => OpKind::EnvelopeDelete,
            Self::EnvelopeWalk { .. } => OpKind::EnvelopeWalk,
            Self::EnvelopeClaim { .. } => OpKind::EnvelopeClaim,
            Self::EnvelopeRelease { .. } => OpKind::EnvelopeRelease,
            Self::EnvelopeWalkFree { .. } => OpKind::EnvelopeWalkFree,
        }
    }
}

/// A request from the daemon: `queue|0.1|TS|OP|ID[|ARGS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// When the daemon sent it.
    pub timestamp: Timestamp,
    /// The id the answer must carry.
    pub id: QueueId,
    /// What is asked.
    pub op: Op,
}

const QID_FORM: &str = "16 lower-case hex digits";

fn parse_qid(c: &Cursor<'_>, raw: &[u8]) -> Result<QueueId, ParseError> {
    parse_hex_exact(raw, QueueId::WIDTH)
        .map(QueueId)
        .ok_or_else(|| c.error(Problem::Invalid, "request id", QID_FORM))
}

fn msgid(c: &mut Cursor<'_>) -> Result<MsgId, ParseError> {
    const FORM: &str = "8 lower-case hex digits, not all zero";
    let raw = c.field("message id", FORM)?;
    match parse_hex_exact(raw, MsgId::WIDTH) {
        Some(v) if v != 0 => Ok(MsgId(v as u32)),
        _ => Err(c.error(Problem::Invalid, "message id", FORM)),
    }
}

fn evpid(c: &mut Cursor<'_>, allow_zero: bool) -> Result<EvpId, ParseError> {
    const FORM: &str = "16 lower-case hex digits, both halves non-zero";
    let raw = c.field("envelope id", FORM)?;
    match parse_hex_exact(raw, EvpId::WIDTH) {
        Some(0) if allow_zero => Ok(EvpId(0)),
        Some(v) if v >> 32 != 0 && v & 0xffff_ffff != 0 => Ok(EvpId(v)),
        _ => Err(c.error(Problem::Invalid, "envelope id", FORM)),
    }
}

fn instance(c: &mut Cursor<'_>) -> Result<String, ParseError> {
    const FORM: &str = "1 to 64 letters, digits, '.', '_', '-' or ':'";
    let raw = c.text("instance id", FORM)?;
    if is_instance_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(c.error(Problem::Invalid, "instance id", FORM))
    }
}

fn lease_seconds(c: &mut Cursor<'_>) -> Result<u64, ParseError> {
    const FORM: &str = "a number of seconds from 1 to 86400";
    match number(c, "lease seconds")? {
        s @ 1..=MAX_LEASE_SECONDS => Ok(s),
        _ => Err(c.error(Problem::Invalid, "lease seconds", FORM)),
    }
}

fn number(c: &mut Cursor<'_>, field: &'static str) -> Result<u64, ParseError> {
    let raw = c.field(field, "a decimal number")?;
    parse_decimal(raw).ok_or_else(|| c.error(Problem::Invalid, field, "a decimal number"))
}

fn base64(c: &mut Cursor<'_>, field: &'static str) -> Result<Vec<u8>, ParseError> {
    let raw = c.field(field, "standard base64 with padding")?;
    BASE64
        .decode(raw)
        .map_err(|_| c.error(Problem::Invalid, field, "standard base64 with padding"))
}

/// Message chunks and envelopes are never empty.
fn nonempty_base64(c: &mut Cursor<'_>, field: &'static str) -> Result<Vec<u8>, ParseError> {
    let data = base64(c, field)?;
    if data.is_empty() {
        return Err(c.error(Problem::Invalid, field, "at least one byte"));
    }
    Ok(data)
}

fn put_base64(w: &mut Writer<'_>, data: &[u8]) {
    w.separator_then(|out| {
        let start = out.len();
        let len = base64::encoded_len(data.len(), true).unwrap_or(0);
        out.put_bytes(0, len);
        let written = BASE64.encode_slice(data, &mut out[start..]).unwrap_or(0);
        out.truncate(start + written);
    });
}

impl Line for Request {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        c.expect(b"queue", "line type", "queue")?;
        c.expect(VERSION.as_bytes(), "protocol version", "0.1")?;
        let ts = c.field("timestamp", "SECONDS.MICROSECONDS")?;
        let timestamp = Timestamp::parse(ts)
            .ok_or_else(|| c.error(Problem::Invalid, "timestamp", "SECONDS.MICROSECONDS"))?;
        let op_name = c.field("operation", "a queue operation")?;
        let raw_id = c.field("request id", QID_FORM)?;
        let id = parse_qid(&c, raw_id)?;
        let Some(kind) = OpKind::from_name(op_name) else {
            return Err(c
                .error(Problem::Unknown, "operation", "a queue operation")
                .with_reply_to(op_name, raw_id));
        };
        let op = parse_op(&mut c, kind).map_err(|e| e.with_reply_to(op_name, raw_id))?;
        c.finish("arguments")
            .map_err(|e| e.with_reply_to(op_name, raw_id))?;
        Ok(Self { timestamp, id, op })
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        if let Op::MessageWrite { data, .. }
        | Op::EnvelopeCreate { data, .. }
        | Op::EnvelopeUpdate { data, .. } = &self.op
        {
            if data.is_empty() {
                return Err(FormatError {
                    field: "data",
                    reason: "must hold at least one byte",
                });
            }
        }
        if let Op::EnvelopeClaim { instance, .. }
        | Op::EnvelopeRelease { instance, .. }
        | Op::EnvelopeWalkFree { instance, .. } = &self.op
        {
            if !is_instance_id(instance) {
                return Err(FormatError {
                    field: "instance id",
                    reason: "must be 1 to 64 letters, digits, '.', '_', '-' or ':'",
                });
            }
        }
        if let Op::EnvelopeClaim { seconds, .. } = &self.op {
            if !(1..=MAX_LEASE_SECONDS).contains(seconds) {
                return Err(FormatError {
                    field: "lease seconds",
                    reason: "must be from 1 to 86400",
                });
            }
        }
        let mut w = Writer::new(out);
        w.raw(b"queue").raw(VERSION.as_bytes());
        w.separator_then(|out| self.timestamp.write(out));
        w.raw(self.op.kind().name().as_bytes())
            .hex(self.id.0, QueueId::WIDTH);
        let m = |w: &mut Writer<'_>, id: MsgId| {
            w.hex(u64::from(id.0), MsgId::WIDTH);
        };
        match &self.op {
            Op::MessageCreate => {}
            Op::MessageWrite {
                msgid,
                offset,
                data,
            } => {
                m(&mut w, *msgid);
                w.decimal(*offset);
                put_base64(&mut w, data);
            }
            Op::MessageCommit { msgid, size } => {
                m(&mut w, *msgid);
                w.decimal(*size);
            }
            Op::MessageRead {
                msgid,
                offset,
                length,
            } => {
                m(&mut w, *msgid);
                w.decimal(*offset).decimal(*length);
            }
            Op::MessageDelete { msgid } | Op::MessageCorrupt { msgid } => m(&mut w, *msgid),
            Op::EnvelopeCreate { msgid, data } => {
                m(&mut w, *msgid);
                put_base64(&mut w, data);
            }
            Op::EnvelopeUpdate { evpid, data } => {
                w.hex(evpid.0, EvpId::WIDTH);
                put_base64(&mut w, data);
            }
            Op::EnvelopeLoad { evpid } | Op::EnvelopeDelete { evpid } => {
                w.hex(evpid.0, EvpId::WIDTH);
            }
            Op::EnvelopeWalk { after } => {
                w.hex(after.0, EvpId::WIDTH);
            }
            Op::EnvelopeClaim {
                evpid,
                instance,
                seconds,
            } => {
                w.hex(evpid.0, EvpId::WIDTH)
                    .raw(instance.as_bytes())
                    .decimal(*seconds);
            }
            Op::EnvelopeRelease { evpid, instance } => {
                w.hex(evpid.0, EvpId::WIDTH).raw(instance.as_bytes());
            }
            Op::EnvelopeWalkFree { after, instance } => {
                w.hex(after.0, EvpId::WIDTH).raw(instance.as_bytes());
            }
        }
        w.end();
        Ok(())
    }
}

fn parse_op(c: &mut Cursor<'_>, kind: OpKind) -> Result<Op, ParseError> {
    Ok(match kind {
        OpKind::MessageCreate => Op::MessageCreate,
        OpKind::MessageWrite => {
            let msgid = msgid(c)?;
            let offset = number(c, "offset")?;
            let data = nonempty_base64(c, "data")?;
            Op::MessageWrite {
                msgid,
                offset,
                data,
            }
        }
        OpKind::MessageCommit => Op::MessageCommit {
            msgid: msgid(c)?,
            size: number(c, "size")?,
        },
        OpKind::MessageRead => Op::MessageRead {
            msgid: msgid(c)?,
            offset: number(c, "offset")?,
            length: number(c, "length")?,
        },
        OpKind::MessageDelete => Op::MessageDelete { msgid: msgid(c)? },
        OpKind::MessageCorrupt => Op::MessageCorrupt { msgid: msgid(c)? },
        OpKind::EnvelopeCreate => Op::EnvelopeCreate {
            msgid: msgid(c)?,
            data: nonempty_base64(c, "data")?,
        },
        OpKind::EnvelopeUpdate => Op::EnvelopeUpdate {
            evpid: evpid(c, false)?,
            data: nonempty_base64(c, "data")?,
        },
        OpKind::EnvelopeLoad => Op::EnvelopeLoad {
            evpid: evpid(c, false)?,
        },
        OpKind::EnvelopeDelete => Op::EnvelopeDelete {
            evpid: evpid(c, false)?,
        },
        OpKind::EnvelopeWalk => Op::EnvelopeWalk {
            after: evpid(c, true)?,
        },
        OpKind::EnvelopeClaim => Op::EnvelopeClaim {
            evpid: evpid(c, false)?,
            instance: instance(c)?,
            seconds: lease_seconds(c)?,
        },
        OpKind::EnvelopeRelease => Op::EnvelopeRelease {
            evpid: evpid(c, false)?,
            instance: instance(c)?,
        },
        OpKind::EnvelopeWalkFree => Op::EnvelopeWalkFree {
            after: evpid(c, true)?,
            instance: instance(c)?,
        },
    })
}

/// What a backend answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueResult {
    /// `ok`.
    Ok,
    /// `ok|MSGID`, to message-create.
    Created(MsgId),
    /// `ok|EVPID`, to envelope-create.
    EnvelopeCreated(EvpId),
    /// `found|DATA`, to message-read (empty at the end) and envelope-load.
    Data(Vec<u8>),
    /// `found|EVPID|DATA`, to envelope-walk.
    Walked(EvpId, Vec<u8>),
    /// `not-found`.
    NotFound,
    /// `done`, to envelope-walk and envelope-walk-free: no envelope left.
    Done,
    /// `busy`, to envelope-claim: another instance holds an unexpired
    /// lease on the envelope.
    Busy,
    /// `error[|MESSAGE]`: a temporary failure.
    Error(Option<String>),
}

/// A backend's answer: `OP-result|ID|STATUS[|...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The operation answered.
    pub op: OpKind,
    /// The request's id.
    pub id: QueueId,
    /// The answer.
    pub result: QueueResult,
}

impl Response {
    /// True when `result` is a legal answer to `op`.
    pub fn is_valid_for(op: OpKind, result: &QueueResult) -> bool {
        use OpKind as K;
        match result {
            QueueResult::Error(_) => true,
            QueueResult::Created(_) => op == K::MessageCreate,
            QueueResult::EnvelopeCreated(_) => op == K::EnvelopeCreate,
            QueueResult::Ok => matches!(
                op,
                K::MessageWrite
                    | K::MessageCommit
                    | K::MessageDelete
                    | K::MessageCorrupt
                    | K::EnvelopeUpdate
                    | K::EnvelopeDelete
                    | K::EnvelopeClaim
                    | K::EnvelopeRelease
            ),
            QueueResult::Data(d) => {
                op == K::MessageRead || (op == K::EnvelopeLoad && !d.is_empty())
            }
            QueueResult::Walked(_, d) => {
                matches!(op, K::EnvelopeWalk | K::EnvelopeWalkFree) && !d.is_empty()
            }
            QueueResult::Done => matches!(op, K::EnvelopeWalk | K::EnvelopeWalkFree),
            QueueResult::Busy => op == K::EnvelopeClaim,
            QueueResult::NotFound => {
                matches!(
                    op,
                    K::MessageRead
                        | K::MessageCorrupt
                        | K::EnvelopeUpdate
                        | K::EnvelopeLoad
                        | K::EnvelopeClaim
                )
            }
        }
    }
}

impl Line for Response {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        const TYPE: &str = "OPERATION-result";
        let kind = c.field("result type", TYPE)?;
        let op = kind
            .strip_suffix(b"-result")
            .and_then(OpKind::from_name)
            .ok_or_else(|| c.error(Problem::Unknown, "result type", TYPE))?;
        let raw = c.field("request id", QID_FORM)?;
        let id = parse_qid(&c, raw)?;
        const STATUSES: &str = "ok, found, not-found, done, busy or error";
        let status = c.field("status", STATUSES)?;
        let result = match status {
            b"ok" => match op {
                OpKind::MessageCreate => QueueResult::Created(msgid(&mut c)?),
                OpKind::EnvelopeCreate => QueueResult::EnvelopeCreated(evpid(&mut c, false)?),
                _ => QueueResult::Ok,
            },
            b"found" if matches!(op, OpKind::EnvelopeWalk | OpKind::EnvelopeWalkFree) => {
                let id = evpid(&mut c, false)?;
                QueueResult::Walked(id, nonempty_base64(&mut c, "data")?)
            }
            b"found" => QueueResult::Data(base64(&mut c, "data")?),
            b"not-found" => QueueResult::NotFound,
            b"done" => QueueResult::Done,
            b"busy" => QueueResult::Busy,
            b"error" => {
                let message = c
                    .opt_last()
                    .map(|m| c.utf8(m, "error message"))
                    .transpose()?;
                QueueResult::Error(message.map(str::to_owned))
            }
            _ => return Err(c.error(Problem::Invalid, "status", STATUSES)),
        };
        c.finish("status")?;
        if !Self::is_valid_for(op, &result) {
            return Err(c.error(
                Problem::Invalid,
                "status",
                "a status allowed for this result type",
            ));
        }
        Ok(Self { op, id, result })
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        if !Self::is_valid_for(self.op, &self.result) {
            return Err(FormatError {
                field: "status",
                reason: "not a legal answer to this operation",
            });
        }
        let mut w = Writer::new(out);
        w.separator_then(|out| {
            out.put_slice(self.op.name().as_bytes());
            out.put_slice(b"-result");
        });
        w.hex(self.id.0, QueueId::WIDTH);
        match &self.result {
            QueueResult::Ok => {
                w.raw(b"ok");
            }
            QueueResult::Created(m) => {
                w.raw(b"ok").hex(u64::from(m.0), MsgId::WIDTH);
            }
            QueueResult::EnvelopeCreated(e) => {
                w.raw(b"ok").hex(e.0, EvpId::WIDTH);
            }
            QueueResult::Data(d) => {
                w.raw(b"found");
                put_base64(&mut w, d);
            }
            QueueResult::Walked(e, d) => {
                w.raw(b"found").hex(e.0, EvpId::WIDTH);
                put_base64(&mut w, d);
            }
            QueueResult::NotFound => {
                w.raw(b"not-found");
            }
            QueueResult::Done => {
                w.raw(b"done");
            }
            QueueResult::Busy => {
                w.raw(b"busy");
            }
            QueueResult::Error(None) => {
                w.raw(b"error");
            }
            QueueResult::Error(Some(m)) => {
                w.raw(b"error").last("error message", m.as_bytes())?;
            }
        }
        w.end();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
