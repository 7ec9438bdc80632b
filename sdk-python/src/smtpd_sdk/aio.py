"""The three backends in asyncio style: async callbacks, many requests in
flight at once, answers written in completion order.

::

    import asyncio
    from smtpd_sdk import aio

    async def lookup(service, key):
        return await database.get(key)      # None answers not-found

    asyncio.run(aio.run_table(services=["alias"], lookup=lookup))

:func:`run_table`, :func:`run_filter` and :func:`run_queue` take the same
callbacks as :func:`smtpd_sdk.table.run`, :func:`smtpd_sdk.filter.run` and
:func:`smtpd_sdk.queue.run`, as coroutine functions (plain functions work
too). Every table or queue request runs as its own task; answers are
buffered and written together once the ready tasks have run. A filter runs
the work of one session in arrival order (so data-lines keep their order)
and different sessions concurrently. At end of input the backend waits for
the requests in flight, writes their answers and returns.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Set

from ._runtime import CHUNK, Handshake, LineSplitter, callbacks, log, write_all
from .filter import FilterCore, Session
from .protocol import filter as filter_proto
from .protocol import queue as queue_proto
from .protocol import table as table_proto
from .protocol.filter import Report, Request
from .queue import QueueCore, _handlers
from .table import TableCore

DEFAULT_MAX_IN_FLIGHT = 1024
"""How many requests may run at once before reading pauses."""


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class AsyncChannel:
    """stdin as lines, stdout as a buffer written once per loop iteration,
    and the set of tasks in flight."""

    def __init__(self, infd: int, outfd: int, max_in_flight: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.infd = infd
        self.outfd = outfd
        self.max_in_flight = max(1, max_in_flight)
        self.splitter = LineSplitter()
        self.out: List[bytes] = []
        self.flush_scheduled = False
        self.broken = False
        self.tasks: Set["asyncio.Task[Any]"] = set()
        self.room = asyncio.Event()
        self.selectable: Optional[bool] = None

    def send(self, data: bytes) -> None:
        """Buffers an answer; it is written after the ready tasks ran."""
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def send_all(self, lines: List[bytes]) -> None:
        """Buffers several answers, in order."""
        for line in lines:
            self.send(line)

    def flush(self) -> None:
        """Writes the buffered answers."""
        self.flush_scheduled = False
        if not self.out or self.broken:
            self.out.clear()
            return
        data = b"".join(self.out)
        self.out.clear()
        try:
            write_all(self.outfd, data)
        except OSError as e:
            log("cannot write to the daemon: %s" % e)
            self.broken = True

    def spawn(self, coro: Awaitable[Any]) -> "asyncio.Task[Any]":
        """Runs ``coro`` as a task in flight."""
        task: "asyncio.Task[Any]" = self.loop.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: "asyncio.Task[Any]") -> None:
        self.tasks.discard(task)
        if len(self.tasks) < self.max_in_flight:
            self.room.set()

    async def _read(self) -> bytes:
        if self.selectable is None:
            mode = os.fstat(self.infd).st_mode
            self.selectable = not (stat.S_ISREG(mode) or stat.S_ISBLK(mode))
        if not self.selectable:
            return await self.loop.run_in_executor(None, os.read, self.infd, CHUNK)
        while True:
            ready = self.loop.create_future()

            def wake(ready: "asyncio.Future[None]" = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            self.loop.add_reader(self.infd, wake)
            try:
                await ready
            finally:
                self.loop.remove_reader(self.infd)
            try:
                return os.read(self.infd, CHUNK)
            except BlockingIOError:  # a non-blocking descriptor woke us early
                continue

    async def lines(self) -> AsyncIterator[bytes]:
        """Every input line, pausing while too many tasks are in flight."""
        while not self.broken:
            data = await self._read()
            lines = self.splitter.feed(data) if data else self.splitter.finish()
            for line in lines:
                while len(self.tasks) >= self.max_in_flight:
                    self.room.clear()
                    await self.room.wait()
                yield line
            if not data:
                return

    async def handshake(
        self, version: str, registrations: List[bytes], lines: AsyncIterator[bytes]
    ) -> Optional[Dict[str, str]]:
        """Reads the config lines, answers with ``registrations``."""
        state = Handshake(version)
        async for line in lines:
            if state.feed(line):
                self.out.extend(registrations)
                self.flush()
                return state.config
        return None

    async def drain(self) -> None:
        """Waits for every task in flight, then writes their answers."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))
        self.flush()


async def _start(
    channel: AsyncChannel, version: str, registrations: List[bytes], on_config: Optional[Callable[..., Any]]
) -> Optional[AsyncIterator[bytes]]:
    lines = channel.lines()
    config = await channel.handshake(version, registrations, lines)
    if config is None:
        return None
    if on_config is not None:
        await _call(on_config, config)
    return lines


async def _job(channel: AsyncChannel, core: Any, req: Any, fn: Callable[..., Any], args: tuple) -> None:
    try:
        result = await _call(fn, *args)
    except Exception as e:  # every request is answered, whatever the callback does
        channel.send(core.failure(req, e))
    else:
        channel.send(core.answer(req, result))


async def _serve_requests(channel: AsyncChannel, core: Any, lines: AsyncIterator[bytes]) -> None:
    prepare = core.prepare
    async for line in lines:
        immediate, job = prepare(line)
        if job is None:
            if immediate is not None:
                channel.send(immediate)
            continue
        req, fn, args = job
        channel.spawn(_job(channel, core, req, fn, args))
    await channel.drain()


async def run_table(
    backend: object = None,
    *,
    check: Optional[Callable[..., Any]] = None,
    lookup: Optional[Callable[..., Any]] = None,
    fetch: Optional[Callable[..., Any]] = None,
    update: Optional[Callable[..., Any]] = None,
    services: Optional[Iterable[str]] = None,
    on_config: Optional[Callable[[Dict[str, str]], Any]] = None,
    infd: int = 0,
    outfd: int = 1,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Runs a table backend with async callbacks; see :func:`smtpd_sdk.table.run`."""
    handlers = callbacks(backend, ("check", "lookup", "fetch", "update"), {
        "check": check, "lookup": lookup, "fetch": fetch, "update": update,
    })
    core = TableCore(services, handlers)
    channel = AsyncChannel(infd, outfd, max_in_flight)
    lines = await _start(channel, table_proto.VERSION, core.registrations(), on_config)
    if lines is not None:
        await _serve_requests(channel, core, lines)


async def run_queue(
    backend: object = None,
    *,
    capabilities: Optional[List[str]] = None,
    on_config: Optional[Callable[[Dict[str, str]], Any]] = None,
    infd: int = 0,
    outfd: int = 1,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    **handlers: Optional[Callable[..., Any]],
) -> None:
    """Runs a queue backend with async callbacks; see :func:`smtpd_sdk.queue.run`."""
    core = QueueCore(_handlers(backend, handlers), capabilities)
    channel = AsyncChannel(infd, outfd, max_in_flight)
    lines = await _start(channel, queue_proto.VERSION, core.registrations(), on_config)
    if lines is not None:
        await _serve_requests(channel, core, lines)


async def run_filter(
    *,
    phases: Optional[Mapping[str, Callable[..., Any]]] = None,
    reports: Optional[Mapping[str, Callable[..., Any]]] = None,
    out_reports: Optional[Mapping[str, Callable[..., Any]]] = None,
    data_line: Optional[Callable[..., Any]] = None,
    data_end: Optional[Callable[..., Any]] = None,
    on_config: Optional[Callable[[Dict[str, str]], Any]] = None,
    infd: int = 0,
    outfd: int = 1,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Runs a filter with async callbacks; see :func:`smtpd_sdk.filter.run`."""
    core = FilterCore(phases, reports, out_reports, data_line, data_end)
    channel = AsyncChannel(infd, outfd, max_in_flight)
    lines = await _start(channel, filter_proto.VERSION, core.registrations(), on_config)
    if lines is None:
        return
    async for line in lines:
        item = core.parse(line)
        if item is None:
            continue
        session = core.session(item.session)
        if isinstance(item, Report):
            work: Callable[..., Awaitable[None]] = _report
        elif item.phase == "data-line":
            work = _data_line
        else:
            work = _phase
        idle = session.tail is None or session.tail.done()
        if work is _report and idle and core.report_handler(item) is None:  # type: ignore[arg-type]
            core.report_done(item)  # type: ignore[arg-type]
            continue
        session.tail = channel.spawn(_in_order(session.tail, work(channel, core, session, item)))
    await channel.drain()


async def _in_order(previous: Optional["asyncio.Task[Any]"], work: Awaitable[None]) -> None:
    if previous is not None and not previous.done():
        await asyncio.wait((previous,))
    await work


async def _report(channel: AsyncChannel, core: FilterCore, session: Session, rep: Report) -> None:
    fn = core.report_handler(rep)
    if fn is not None:
        try:
            await _call(fn, session, rep)
        except Exception as e:  # a report is never answered; log and go on
            core.report_failure(rep, e)
    core.report_done(rep)


async def _phase(channel: AsyncChannel, core: FilterCore, session: Session, req: Request) -> None:
    immediate, fn = core.phase_handler(req, session)
    if fn is None:
        channel.send(immediate or b"")
        return
    try:
        result = await _call(fn, session, req.text)
    except Exception as e:  # every request is answered, whatever the callback does
        channel.send(core.phase_failure(req, session, e))
        return
    channel.send(core.phase_answer(req, session, result))


async def _data_line(channel: AsyncChannel, core: FilterCore, session: Session, req: Request) -> None:
    if req.param == b".":
        if core.data_end is not None and not session.failed:
            try:
                channel.send_all(core.data_output(req, await _call(core.data_end, session), ()))
            except Exception as e:  # the message must still end
                core.data_failure(session, "data-end", e)
        channel.send(core.end_line(req))
        return
    if session.failed:
        return
    if core.data_line is None:
        channel.send(filter_proto.DataLine(req.session, req.token, req.param).format())
        return
    try:
        lines = core.data_output(req, await _call(core.data_line, session, req.param), (req.param,))
    except Exception as e:  # drop the rest of the message; commit will be rejected
        core.data_failure(session, "data-line", e)
        return
    channel.send_all(lines)
