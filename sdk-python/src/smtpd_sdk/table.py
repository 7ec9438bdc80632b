"""Table backends from plain callbacks: one :func:`run` call.

::

    from smtpd_sdk import table

    USERS = {"alice": "1000:1000:/home/alice"}

    def lookup(service, key):
        return USERS.get(key)          # None answers not-found

    table.run(services=["userinfo"], lookup=lookup)

:func:`run` performs the handshake (``register|SERVICE`` for each served
service, then ``register|ready``) and answers every request until stdin
ends. The callbacks:

- ``check(service, key) -> bool``: found or not-found;
- ``lookup(service, key) -> str | None``: the value (never empty), or None;
- ``fetch(service) -> str | None``: the next value, or None;
- ``update() -> None``: reload the data.

A request for a service that is not served, for an operation without a
callback, or whose callback raises, is answered ``error`` (a temporary
failure); a raised :class:`~smtpd_sdk.BackendError` gives its message
without a traceback on stderr.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ._runtime import Channel, callbacks, describe_failure, log, parse_request, serve_backend
from .protocol import FormatError
from .protocol.table import SERVICES, VERSION, Register, Request, answer

Job = Tuple[Request, Callable[..., Any], Tuple[Any, ...]]
"""A parsed request, its callback and the callback's arguments."""


def served_services(services: Optional[Iterable[str]]) -> List[str]:
    """The services to register, checked; every service when None."""
    chosen = list(SERVICES if services is None else services)
    for name in chosen:
        if name not in SERVICES:
            raise ValueError("unknown table service %r" % (name,))
    if not chosen:
        raise ValueError("a table must serve at least one service")
    return chosen


class TableCore:
    """The parts of a table backend that do not depend on how callbacks run:
    which callback a line calls, and the answer to its result or failure.
    Shared by :func:`run` and :func:`smtpd_sdk.aio.run_table`."""

    def __init__(self, services: Optional[Iterable[str]], handlers: Dict[str, Any]) -> None:
        self.services = served_services(services)
        self.served = frozenset(self.services)
        self.handlers = handlers

    def registrations(self) -> List[bytes]:
        """The handshake answer."""
        return [Register(s).format() for s in self.services] + [Register().format()]

    def prepare(self, line: bytes) -> Tuple[Optional[bytes], Optional[Job]]:
        """Either an immediate answer (or nothing) or a callback to run."""
        req, refusal = parse_request(Request.parse, line)
        if req is None:
            return refusal, None
        op = req.op
        if op != "update" and req.service not in self.served:
            return answer(op, req.id, "error", "service %s not served" % req.service), None
        fn = self.handlers.get(op)
        if fn is None:
            return answer(op, req.id, "error", "operation %s not supported" % op), None
        if op == "lookup" or op == "check":
            return None, (req, fn, (req.service, req.key))
        if op == "fetch":
            return None, (req, fn, (req.service,))
        return None, (req, fn, ())

    def answer(self, req: Request, result: Any) -> bytes:
        """The answer to a callback's result."""
        op = req.op
        if op == "check":
            return answer(op, req.id, "found" if result else "not-found")
        if op == "update":
            return answer(op, req.id, "ok")
        if result is None:
            return answer(op, req.id, "not-found")
        try:
            return answer(op, req.id, "found", result)
        except FormatError as e:
            log("%s %s: cannot answer %r: %s" % (op, req.service, result, e))
            return answer(op, req.id, "error", "backend returned an invalid value")

    def failure(self, req: Request, exc: BaseException) -> bytes:
        """The answer when the callback raised."""
        what = "%s %s" % (req.op, req.service) if req.service else req.op
        return answer(req.op, req.id, "error", describe_failure(what, exc))


def run(
    backend: object = None,
    *,
    check: Optional[Callable[[str, str], Any]] = None,
    lookup: Optional[Callable[[str, str], Optional[str]]] = None,
    fetch: Optional[Callable[[str], Optional[str]]] = None,
    update: Optional[Callable[[], Any]] = None,
    services: Optional[Iterable[str]] = None,
    on_config: Optional[Callable[[Dict[str, str]], Any]] = None,
    infd: int = 0,
    outfd: int = 1,
) -> None:
    """Runs a table backend on ``infd``/``outfd`` until the input ends.

    Callbacks are taken from the keyword arguments, else from methods of
    ``backend`` with the same names. ``services`` lists the services to
    register and serve (all of them by default). ``on_config`` receives the
    daemon's ``config|...`` values (``tablename``, ...) after the handshake.
    Returns at end of input; exits with status 1 (``SystemExit``) when the
    daemon announces another protocol version.
    """
    handlers = callbacks(backend, ("check", "lookup", "fetch", "update"), {
        "check": check, "lookup": lookup, "fetch": fetch, "update": update,
    })
    core = TableCore(services, handlers)
    channel = Channel(infd, outfd)
    serve_backend(channel, VERSION, core.registrations(), on_config, lambda: _serve(channel, core))


def _serve(channel: Channel, core: TableCore) -> None:
    out = channel.out.append
    prepare = core.prepare
    for line in channel.lines:
        immediate, job = prepare(line)
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
