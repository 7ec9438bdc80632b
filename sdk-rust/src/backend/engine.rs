//! The request loop shared by the three families.
//!
//! Two futures run joined on the caller's task (no spawning, so handler
//! futures need not be `Send` or `'static`):
//!
//! - the dispatcher reads lines, hands each one to the family's dispatch
//!   function, which may write an answer at once or start a future, and
//!   polls the futures in flight, handing each result back to the dispatch
//!   function as soon as it is ready; answers therefore leave in completion
//!   order, not request order;
//! - the writer owns the output stream. The dispatcher appends answers to a
//!   shared buffer and runs until nothing more is ready (no complete line in
//!   the input buffer, no finished future), then the writer takes the whole
//!   buffer at once (swapping two buffers, no copy) and writes and flushes
//!   it. Under load a single write carries hundreds of answers; at low load
//!   each answer is flushed as soon as it exists.
//!
//! Reading goes on while the writer waits on a slow reader of our output, so
//! a daemon that writes many requests before reading any answer cannot
//! deadlock with us. At most [`MAX_IN_FLIGHT`] futures run at once; beyond
//! that, input is read only as futures complete.
//!
//! At end of input the dispatcher waits for the futures in flight, the writer
//! flushes what is left, and [`serve`] returns `Ok`.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};

use bytes::BytesMut;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::RunError;
use crate::codec::{Frame, LineCodec};
use crate::proto::{FormatError, Line, ParseError};

/// The most requests handled at once.
pub(crate) const MAX_IN_FLIGHT: usize = 16 * 1024;

/// Lines or results handled in one poll before yielding to the writer and to
/// other tasks.
const POLL_BUDGET: usize = 512;

/// What the dispatch function is given.
pub(crate) enum Event<'a, O> {
    /// A line from the daemon, without its `\n`.
    Line(&'a [u8]),
    /// A future started earlier has finished.
    Done(O),
}

/// What the dispatch function can do: write answers and start futures.
pub(crate) struct Ctx<'a, Fut> {
    out: &'a mut BytesMut,
    in_flight: &'a mut FuturesUnordered<Fut>,
}

impl<Fut> Ctx<'_, Fut> {
    /// Appends one line to the output.
    pub(crate) fn write<L: Line>(&mut self, line: &L) -> Result<(), FormatError> {
        line.format(self.out)
    }

    /// Appends bytes that are known to form complete, valid lines.
    pub(crate) fn write_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Starts a future; its output comes back as [`Event::Done`].
    pub(crate) fn start(&mut self, fut: Fut) {
        self.in_flight.push(fut);
    }
}

#[derive(Default)]
struct Shared {
    /// Answers not yet taken by the writer.
    out: BytesMut,
    /// Set once the dispatcher is done: the writer flushes and ends.
    closed: bool,
    /// The writer, waiting for output.
    writer: Option<Waker>,
}

impl Shared {
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// Runs the loop until end of input and the last answer is flushed.
pub(crate) async fn serve<R, W, Fut, D>(
    input: FramedRead<R, LineCodec>,
    output: W,
    dispatch: D,
) -> Result<(), RunError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    Fut: Future,
    D: FnMut(Event<'_, Fut::Output>, &mut Ctx<'_, Fut>),
{
    let shared = RefCell::new(Shared {
        out: BytesMut::with_capacity(64 * 1024),
        ..Shared::default()
    });
    let reading = async {
        let result = read_loop(input, &shared, dispatch).await;
        let mut s = shared.borrow_mut();
        s.closed = true;
        s.wake_writer();
        result
    };
    let writing = async { write_loop(output, &shared).await.map_err(RunError::from) };
    futures::future::try_join(reading, writing).await?;
    Ok(())
}

async fn read_loop<R, Fut, D>(
    mut input: FramedRead<R, LineCodec>,
    shared: &RefCell<Shared>,
    mut dispatch: D,
) -> Result<(), RunError>
where
    R: AsyncRead + Unpin,
    Fut: Future,
    D: FnMut(Event<'_, Fut::Output>, &mut Ctx<'_, Fut>),
{
    let mut in_flight = FuturesUnordered::new();
    let mut eof = false;
    poll_fn(|cx| {
        let mut guard = shared.borrow_mut();
        let s = &mut *guard;
        let mut budget = POLL_BUDGET;
        let result = loop {
            let mut progress = false;
            while let Poll::Ready(Some(done)) = in_flight.poll_next_unpin(cx) {
                let mut ctx = Ctx {
                    out: &mut s.out,
                    in_flight: &mut in_flight,
                };
                dispatch(Event::Done(done), &mut ctx);
                progress = true;
            }
            if !eof && in_flight.len() < MAX_IN_FLIGHT {
                match input.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(Frame::Line(line)))) => {
                        let mut ctx = Ctx {
                            out: &mut s.out,
                            in_flight: &mut in_flight,
                        };
                        dispatch(Event::Line(&line), &mut ctx);
                        progress = true;
                    }
                    Poll::Ready(Some(Ok(Frame::TooLong(len)))) => {
                        tracing::warn!("dropped a line of {len} bytes: too long");
                        progress = true;
                    }
                    Poll::Ready(Some(Err(e))) => break Poll::Ready(Err(RunError::Io(e))),
                    Poll::Ready(None) => {
                        tracing::debug!("end of input");
                        eof = true;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            if eof && in_flight.is_empty() {
                break Poll::Ready(Ok(()));
            }
            if !progress {
                break Poll::Pending;
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                break Poll::Pending;
            }
        };
        if !s.out.is_empty() {
            s.wake_writer();
        }
        result
    })
    .await
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut output: W,
    shared: &RefCell<Shared>,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let closed = poll_fn(|cx| {
            let mut s = shared.borrow_mut();
            if !s.out.is_empty() {
                std::mem::swap(&mut s.out, &mut buf);
                Poll::Ready(false)
            } else if s.closed {
                Poll::Ready(true)
            } else {
                match &s.writer {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.writer = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        })
        .await;
        if closed {
            return output.flush().await;
        }
        output.write_all(&buf).await?;
        output.flush().await?;
        buf.clear();
    }
}

/// Handles a request that failed to parse: answered `error` when its
/// operation and id could be read (an unknown service or operation, bad
/// arguments), logged and dropped otherwise.
pub(crate) fn refuse<Fut>(ctx: &mut Ctx<'_, Fut>, e: &ParseError) {
    let Some(to) = &e.reply_to else {
        tracing::warn!("dropped a line that cannot be answered: {e}");
        return;
    };
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !safe(&to.op) || !safe(&to.id) {
        tracing::warn!("dropped a line that cannot be answered: {e}");
        return;
    }
    tracing::warn!("answering error: {e}");
    let answer = format!(
        "{}-result|{}|error|{} {}\n",
        to.op, to.id, e.problem, e.field
    );
    ctx.write_raw(answer.as_bytes());
}
