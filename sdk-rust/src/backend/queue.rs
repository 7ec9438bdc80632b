//! Queue backends (protocol 0.1): implement [`Queue`], call [`run`].
//!
//! The queue is a store of opaque blobs: message content, written in chunks
//! and then committed, and envelopes, each belonging to a message. The
//! daemon's compression and encryption layers sit above the backend, so a
//! backend never looks inside a blob. An answer of success to a
//! state-changing operation promises that the change is durable.
//!
//! [`run`] answers the handshake with one `register|CAPABILITY` line per
//! capability of [`Queue::capabilities`] (`lease`, [`LEASE_CAPABILITY`],
//! for a store several daemons share: SPEC.md 4.12), then
//! serves requests concurrently. Operations left at their default, unknown
//! operations, requests with bad arguments and handlers that return an
//! [`Error`] are answered `error` (a temporary failure for the daemon).

use std::process::ExitCode;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::engine::{self, Ctx, Event};
use super::{handshake, stdio};
use crate::codec::LineCodec;
pub use crate::proto::queue::LEASE_CAPABILITY;
use crate::proto::queue::{Op, QueueResult, Register, Request, Response, VERSION};
use crate::proto::Line;

pub use super::{Config, Error, RunError};
pub use crate::proto::{EvpId, MsgId, QueueId};

/// The outcome of [`Queue::envelope_claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The lease is the caller's until the asked time (`ok`).
    Granted,
    /// Another instance holds an unexpired lease (`busy`).
    Busy,
    /// No such committed envelope (`not-found`).
    NotFound,
}

/// A queue backend. Every operation defaults to "unsupported", answered
/// `error`.
///
/// The methods take `&self` and may run concurrently (many requests are in
/// flight at once on one task): keep mutable state behind a `Mutex` or
/// `RwLock`, and do not hold a lock across an `.await`.
// The run loop polls every future on the caller's task, so the futures need
// no `Send` bound; `async fn` keeps implementations plain.
#[allow(async_fn_in_trait)]
pub trait Queue {
    /// Capabilities to register (`register|NAME`): [`LEASE_CAPABILITY`]
    /// when the lease operations below are implemented; the daemon ignores
    /// names it does not know.
    fn capabilities(&self) -> Vec<String> {
        Vec::new()
    }

    /// Called once with the daemon's configuration, before
    /// [`Queue::capabilities`]. An error stops the backend.
    fn configure(&mut self, config: &Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// Allocates a new, empty, uncommitted message and returns its id (never
    /// zero, not in use).
    async fn message_create(&self) -> Result<MsgId, Error> {
        Err(Error::Unsupported)
    }

    /// Appends `data` to an uncommitted message; `offset` must be the number
    /// of bytes already stored (anything else is an error).
    async fn message_write(&self, msgid: MsgId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let _ = (msgid, offset, data);
        Err(Error::Unsupported)
    }

    /// Makes an uncommitted message durable and visible, with the envelopes
    /// created for it so far, after checking that its content is exactly
    /// `size` bytes long (a mismatch, an unknown or an already committed
    /// message is an error).
    async fn message_commit(&self, msgid: MsgId, size: u64) -> Result<(), Error> {
        let _ = (msgid, size);
        Err(Error::Unsupported)
    }

    /// Up to `length` bytes of a committed message from `offset`; an empty
    /// chunk at or past the end; `None` when there is no such message.
    async fn message_read(
        &self,
        msgid: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        let _ = (msgid, offset, length);
        Err(Error::Unsupported)
    }

    /// Removes a message and all its envelopes (success when already gone).
    async fn message_delete(&self, msgid: MsgId) -> Result<(), Error> {
        let _ = msgid;
        Err(Error::Unsupported)
    }

    /// Moves a message and its envelopes aside: they are no longer walked
    /// or loaded. `false` when there is no such message (`not-found`).
    async fn message_corrupt(&self, msgid: MsgId) -> Result<bool, Error> {
        let _ = msgid;
        Err(Error::Unsupported)
    }

    /// Stores a new envelope for an existing message and returns its id:
    /// the message's id in the upper half, a non-zero lower half. On an
    /// uncommitted message it becomes visible with the commit.
    async fn envelope_create(&self, msgid: MsgId, data: &[u8]) -> Result<EvpId, Error> {
        let _ = (msgid, data);
        Err(Error::Unsupported)
    }

    /// Replaces an envelope, atomically; `false` when there is no such
    /// visible envelope (`not-found`).
    async fn envelope_update(&self, evpid: EvpId, data: &[u8]) -> Result<bool, Error> {
        let _ = (evpid, data);
        Err(Error::Unsupported)
    }

    /// An envelope's content, or `None` when there is no such envelope or
    /// its message is not committed or was moved aside.
    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        let _ = evpid;
        Err(Error::Unsupported)
    }

    /// Removes an envelope (success when already gone).
    async fn envelope_delete(&self, evpid: EvpId) -> Result<(), Error> {
        let _ = evpid;
        Err(Error::Unsupported)
    }

    /// The committed envelope with the smallest id above `after` (`after`
    /// is zero to start), or `None` when there is none left (`done`).
    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        let _ = after;
        Err(Error::Unsupported)
    }

    /// Capability `lease`: leases a committed envelope to `instance` for
    /// `seconds` from now when nobody else holds an unexpired lease on it
    /// (a claim by the holder extends its lease). Durable when granted.
    async fn envelope_claim(
        &self,
        evpid: EvpId,
        instance: &str,
        seconds: u64,
    ) -> Result<Claim, Error> {
        let _ = (evpid, instance, seconds);
        Err(Error::Unsupported)
    }

    /// Capability `lease`: ends `instance`'s lease on an envelope; nothing
    /// when another instance or nobody holds it, or it is gone.
    async fn envelope_release(&self, evpid: EvpId, instance: &str) -> Result<(), Error> {
        let _ = (evpid, instance);
        Err(Error::Unsupported)
    }

    /// Capability `lease`: like [`Queue::envelope_walk`], skipping the
    /// envelopes another instance holds an unexpired lease on.
    async fn envelope_walk_free(
        &self,
        after: EvpId,
        instance: &str,
    ) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        let _ = (after, instance);
        Err(Error::Unsupported)
    }
}

/// Runs `queue` on stdin/stdout until end of input. Returns the exit status:
/// success after a clean end of input; failure, with one line on stderr,
/// when the handshake fails or stdin/stdout fail.
pub async fn run<Q: Queue>(queue: Q) -> ExitCode {
    let result = match stdio::open() {
        Ok((input, output)) => run_with(queue, input, output).await,
        Err(e) => Err(e.into()),
    };
    super::exit_code(result)
}

/// Runs `queue` on any input and output until end of input.
pub async fn run_with<Q, R, W>(mut queue: Q, input: R, mut output: W) -> Result<(), RunError>
where
    Q: Queue,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = FramedRead::with_capacity(input, LineCodec::new(), 64 * 1024);
    let Some(config) = handshake::read_config(&mut input, VERSION).await? else {
        return Ok(());
    };
    queue.configure(&config).map_err(RunError::Configure)?;
    let mut lines: Vec<Register> = queue
        .capabilities()
        .into_iter()
        .map(Register::Capability)
        .collect();
    lines.push(Register::Ready);
    handshake::write_lines(&mut output, &lines).await?;

    let queue = &queue;
    engine::serve(input, &mut output, |event, ctx| match event {
        Event::Line(line) => match Request::parse(line) {
            Ok(req) => ctx.start(answer(queue, req)),
            Err(e) => engine::refuse(ctx, &e),
        },
        Event::Done(response) => write_answer(ctx, response),
    })
    .await?;
    output.shutdown().await.ok();
    Ok(())
}

/// Calls the queue and builds the answer.
async fn answer<Q: Queue>(queue: &Q, req: Request) -> Response {
    let found = |yes: bool| {
        if yes {
            QueueResult::Ok
        } else {
            QueueResult::NotFound
        }
    };
    let result = match &req.op {
        Op::MessageCreate => queue.message_create().await.map(QueueResult::Created),
        Op::MessageWrite {
            msgid,
            offset,
            data,
        } => queue
            .message_write(*msgid, *offset, data)
            .await
            .map(|()| QueueResult::Ok),
        Op::MessageCommit { msgid, size } => queue
            .message_commit(*msgid, *size)
            .await
            .map(|()| QueueResult::Ok),
        Op::MessageRead {
            msgid,
            offset,
            length,
        } => queue
            .message_read(*msgid, *offset, *length)
            .await
            .map(|d| d.map_or(QueueResult::NotFound, QueueResult::Data)),
        Op::MessageDelete { msgid } => queue.message_delete(*msgid).await.map(|()| QueueResult::Ok),
        Op::MessageCorrupt { msgid } => queue.message_corrupt(*msgid).await.map(found),
        Op::EnvelopeCreate { msgid, data } => queue
            .envelope_create(*msgid, data)
            .await
            .map(QueueResult::EnvelopeCreated),
        Op::EnvelopeUpdate { evpid, data } => queue.envelope_update(*evpid, data).await.map(found),
        Op::EnvelopeLoad { evpid } => queue
            .envelope_load(*evpid)
            .await
            .map(|d| d.map_or(QueueResult::NotFound, QueueResult::Data)),
        Op::EnvelopeDelete { evpid } => queue
            .envelope_delete(*evpid)
            .await
            .map(|()| QueueResult::Ok),
        Op::EnvelopeWalk { after } => queue.envelope_walk(*after).await.map(|next| {
            next.map_or(QueueResult::Done, |(id, data)| {
                QueueResult::Walked(id, data)
            })
        }),
        Op::EnvelopeClaim {
            evpid,
            instance,
            seconds,
        } => queue
            .envelope_claim(*evpid, instance, *seconds)
            .await
            .map(|claim| match claim {
                Claim::Granted => QueueResult::Ok,
                Claim::Busy => QueueResult::Busy,
                Claim::NotFound => QueueResult::NotFound,
            }),
        Op::EnvelopeRelease { evpid, instance } => queue
            .envelope_release(*evpid, instance)
            .await
            .map(|()| QueueResult::Ok),
        Op::EnvelopeWalkFree { after, instance } => queue
            .envelope_walk_free(*after, instance)
            .await
            .map(|next| {
                next.map_or(QueueResult::Done, |(id, data)| {
                    QueueResult::Walked(id, data)
                })
            }),
    };
    let result = result.unwrap_or_else(|e| {
        if e != Error::Unsupported {
            tracing::warn!(id = %req.id, op = req.op.kind().name(), "request failed: {e}");
        }
        QueueResult::Error(Some(e.wire_message()))
    });
    Response {
        op: req.op.kind(),
        id: req.id,
        result,
    }
}

/// Writes an answer; one that cannot be formatted (an empty envelope, an
/// envelope id of another message) becomes an `error` answer.
fn write_answer<Fut>(ctx: &mut Ctx<'_, Fut>, response: Response) {
    let valid_id = match &response.result {
        QueueResult::EnvelopeCreated(id) | QueueResult::Walked(id, _) => {
            id.0 >> 32 != 0 && id.0 & 0xffff_ffff != 0
        }
        QueueResult::Created(id) => id.0 != 0,
        _ => true,
    };
    let refused = if valid_id {
        ctx.write(&response).err().map(|e| e.to_string())
    } else {
        Some("invalid id".to_owned())
    };
    if let Some(e) = refused {
        tracing::warn!(id = %response.id, "cannot send the answer: {e}");
        let fallback = Response {
            result: QueueResult::Error(Some(format!("backend answer refused: {e}"))),
            ..response
        };
        // An error answer with a message free of newlines always formats.
        ctx.write(&fallback).ok();
    }
}
