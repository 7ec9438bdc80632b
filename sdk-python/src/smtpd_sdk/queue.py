"""Queue backends from plain callbacks: one :func:`run` call.

The queue protocol (0.1) stores opaque blobs: messages written in chunks and
envelopes, below the daemon's compression and encryption. :func:`run` takes
an object whose methods are named after the operations (or the same
callbacks as keyword arguments):

=====================================  =========================================
``message_create() -> int``            a new message id (non-zero, 32 bits)
``message_write(msgid, offset, data)`` store a chunk of an uncommitted message
``message_commit(msgid, size)``        make it durable; refuse a size mismatch
``message_read(msgid, offset, length)`` ``bytes`` (empty past the end), or None
                                       when the message does not exist
``message_delete(msgid)``              remove the message and its envelopes
``message_corrupt(msgid) -> bool``     move them aside; False when unknown
``envelope_create(msgid, data) -> int`` a new envelope id (``msgid << 32 | n``)
``envelope_update(evpid, data) -> bool`` replace; False when unknown
``envelope_load(evpid)``               ``bytes``, or None when unknown
``envelope_delete(evpid)``             remove the envelope
``envelope_walk(after)``               ``(evpid, data)`` of the smallest
                                       committed envelope id above ``after``,
                                       or None when there is none
=====================================  =========================================

A backend whose store several daemons share registers ``capabilities=["lease"]``
and adds the lease operations (SPEC.md 4.12):

============================================  ==================================
``envelope_claim(evpid, instance, seconds)``  ``"ok"``, ``"busy"`` (another
                                              instance holds a live lease) or
                                              ``"not-found"``
``envelope_release(evpid, instance)``         end ``instance``'s lease
``envelope_walk_free(after, instance)``       like ``envelope_walk``, skipping
                                              envelopes others hold
============================================  ==================================

An operation without a callback, a callback that raises and a result that
cannot be sent are answered ``error`` (a temporary failure); a raised
:class:`~smtpd_sdk.BackendError` gives its message without a traceback.
Returning from a state-changing callback means the change is durable.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from ._runtime import Channel, callbacks, describe_failure, log, parse_request, serve_backend
from .protocol import FormatError
from .protocol.queue import OPERATIONS, VERSION, Register, Request, Response, arguments

Job = Tuple[Request, Callable[..., Any], Tuple[Any, ...]]
"""A parsed request, its callback and the callback's arguments."""


class QueueCore:
    """The parts of a queue backend that do not depend on how callbacks run.
    Shared by :func:`run` and :func:`smtpd_sdk.aio.run_queue`."""

    def __init__(self, handlers: Dict[str, Any], capabilities: Optional[List[str]] = None) -> None:
        self.handlers = handlers
        self.capabilities = list(capabilities or [])

    def registrations(self) -> List[bytes]:
        """The handshake answer."""
        return [Register(c).format() for c in self.capabilities] + [Register().format()]

    def prepare(self, line: bytes) -> Tuple[Optional[bytes], Optional[Job]]:
        """Either an immediate answer (or nothing) or a callback to run."""
        req, refusal = parse_request(Request.parse, line)
        if req is None:
            return refusal, None
        fn = self.handlers.get(req.op)
        if fn is None:
            return Response(req.op, req.id, "error", message="operation %s not supported" % req.op).format(), None
        args = tuple(getattr(req, name) for name in arguments(req.op))
        return None, (req, fn, args)

    def answer(self, req: Request, result: Any) -> bytes:
        """The answer to a callback's result."""
        try:
            return _response(req, result).format()
        except (FormatError, TypeError, ValueError) as e:
            log("%s: cannot answer %r: %s" % (req.op, _short(result), e))
            return Response(req.op, req.id, "error", message="backend returned an invalid result").format()

    def failure(self, req: Request, exc: BaseException) -> bytes:
        """The answer when the callback raised."""
        return Response(req.op, req.id, "error", message=describe_failure(req.op, exc)).format()


def _short(result: Any) -> str:
    text = repr(result)
    return text if len(text) <= 80 else text[:77] + "..."


def _response(req: Request, result: Any) -> Response:
    op, rid = req.op, req.id
    if op == "message-create":
        return Response(op, rid, "ok", msgid=result)
    if op == "envelope-create":
        return Response(op, rid, "ok", evpid=result)
    if op in ("message-read", "envelope-load"):
        if result is None:
            return Response(op, rid, "not-found")
        return Response(op, rid, "found", data=bytes(result))
    if op == "envelope-claim":
        if result not in ("ok", "busy", "not-found"):
            raise ValueError("envelope_claim must return 'ok', 'busy' or 'not-found'")
        return Response(op, rid, result)
    if op in ("envelope-walk", "envelope-walk-free"):
        if result is None:
            return Response(op, rid, "done")
        evpid, data = result
        return Response(op, rid, "found", evpid=evpid, data=bytes(data))
    if op in ("message-corrupt", "envelope-update") and result is False:
        return Response(op, rid, "not-found")
    return Response(op, rid, "ok")


def run(
    backend: object = None,
    *,
    capabilities: Optional[List[str]] = None,
    on_config: Optional[Callable[[Dict[str, str]], Any]] = None,
    infd: int = 0,
    outfd: int = 1,
    **handlers: Optional[Callable[..., Any]],
) -> None:
    """Runs a queue backend on ``infd``/``outfd`` until the input ends.

    Callbacks are the keyword arguments named after operations
    (``message_create=...``), else ``backend``'s methods of those names.
    ``capabilities`` are registered before ``register|ready`` (``"lease"``
    with the lease operations). Returns at end of input; exits with status 1 when the
    daemon announces another protocol version.
    """
    core = QueueCore(_handlers(backend, handlers), capabilities)
    channel = Channel(infd, outfd)
    serve_backend(channel, VERSION, core.registrations(), on_config, lambda: _serve(channel, core))


def _handlers(backend: object, overrides: Dict[str, Any]) -> Dict[str, Any]:
    names = {op.replace("-", "_") for op in OPERATIONS}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError("unknown queue operations: %s" % ", ".join(sorted(unknown)))
    return callbacks(backend, OPERATIONS, overrides)


def _serve(channel: Channel, core: QueueCore) -> None:
    out = channel.out.append
    for line in channel.lines:
        immediate, job = core.prepare(line)
        if job is None:
            if immediate is not None:
                out(immediate)
            continue
        req, fn, args = job
        try:
            result = fn(*args)
        except Exception as e:  # every request is answered, whatever the callback does
            out(core.failure(req, e))
        else:
            out(core.answer(req, result))
    channel.flush()
