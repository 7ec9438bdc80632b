"""What the three synchronous backends share: line input, buffered output,
the handshake, and the reporting of failed callbacks.

Input is read with ``os.read`` into a buffer and split into lines; every
complete line is handled before the next read, and the answers collected in
the meantime are written in one go just before a read that may block (never
once per line). stdout carries protocol lines only; diagnostics go to
stderr, where the daemon logs them.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .protocol import MAX_LINE, ConfigLine, ParseError

CHUNK = 1 << 16
"""How many bytes one ``os.read`` asks for."""


class BackendError(Exception):
    """Raise from a callback to fail one request with this message.

    Tables and queues answer ``error|MESSAGE`` (a temporary failure for the
    daemon); filters reject with ``451``. The message is logged on stderr
    without a traceback, unlike other exceptions.
    """


def log(message: str) -> None:
    """Writes one diagnostic line on stderr."""
    try:
        sys.stderr.write(message.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def describe_failure(what: str, exc: BaseException) -> str:
    """Logs a failed callback and returns a one-line message for the answer.

    A :class:`BackendError` is logged as one line; anything else with its
    traceback.
    """
    text = str(exc) if isinstance(exc, BackendError) else "%s: %s" % (type(exc).__name__, exc)
    if isinstance(exc, BackendError):
        log("%s failed: %s" % (what, text))
    else:
        log("%s failed:" % what)
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        try:
            sys.stderr.write("".join(lines))
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    return " ".join(text.split())[:200] or type(exc).__name__


def callbacks(
    backend: object, names: Iterable[str], overrides: Mapping[str, Optional[Callable[..., Any]]]
) -> Dict[str, Optional[Callable[..., Any]]]:
    """The callback for each name: an explicit override, else ``backend``'s
    attribute of that name (``-`` spelled ``_``), else None."""
    found: Dict[str, Optional[Callable[..., Any]]] = {}
    for name in names:
        attr = name.replace("-", "_")
        fn = overrides.get(attr)
        if fn is None and backend is not None:
            fn = getattr(backend, attr, None)
        if fn is not None and not callable(fn):
            raise TypeError("%s must be callable" % attr)
        found[name] = fn
    return found


class Handshake:
    """Collects the daemon's ``config|...`` lines up to ``config|ready``.

    A protocol version other than the backend's ends the process with status
    1 after one diagnostic line, before anything is registered.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self.config: Dict[str, str] = {}

    def feed(self, line: bytes) -> bool:
        """Takes one line; True once ``config|ready`` was seen."""
        try:
            entry = ConfigLine.parse(line)
        except ParseError as e:
            log("bad handshake line: %s" % e)
            raise SystemExit(1) from None
        if entry.is_ready:
            return True
        if entry.key == "protocol" and entry.value != self.version:
            log("unsupported protocol version %s (this backend speaks %s)" % (entry.value, self.version))
            raise SystemExit(1)
        self.config[entry.key] = entry.value or ""
        return False


class LineSplitter:
    """Turns chunks of bytes into complete lines (without ``\\n``).

    A line longer than ``max_line`` is reported once on stderr and skipped up
    to its ``\\n``, so one bad line never ends the stream.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.pending: List[bytes] = []
        self.pending_len = 0
        self.discarding = False

    def feed(self, data: bytes) -> List[bytes]:
        """The complete lines that ``data`` ends; keeps the rest."""
        if data.find(b"\n") < 0:
            self._keep(data)
            return []
        if self.pending:
            data = b"".join(self.pending) + data
            self.pending = []
            self.pending_len = 0
        lines = data.split(b"\n")
        rest = lines.pop()
        if self.discarding:
            del lines[0]
            self.discarding = False
        if rest:
            self._keep(rest)
        if len(data) > self.max_line:
            for line in lines:
                if len(line) > self.max_line:
                    log("line of %d bytes is too long, discarded" % len(line))
            lines = [line for line in lines if len(line) <= self.max_line]
        return lines

    def _keep(self, data: bytes) -> None:
        if self.discarding:
            return
        self.pending.append(data)
        self.pending_len += len(data)
        if self.pending_len > self.max_line:
            log("line of more than %d bytes is too long, discarded" % self.max_line)
            self.pending = []
            self.pending_len = 0
            self.discarding = True

    def finish(self) -> List[bytes]:
        """At end of input: the unterminated last line, if any."""
        rest = b"".join(self.pending)
        self.pending = []
        return [rest] if rest and not self.discarding else []


def write_all(fd: int, data: bytes) -> None:
    """Writes every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Channel:
    """The backend's stdin and stdout as lines in and buffered answers out."""

    def __init__(self, infd: int = 0, outfd: int = 1, max_line: int = MAX_LINE) -> None:
        self.infd = infd
        self.outfd = outfd
        self.splitter = LineSplitter(max_line)
        self.out: List[bytes] = []
        self.lines = self._lines()

    def flush(self) -> None:
        """Writes the buffered answers."""
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            write_all(self.outfd, data)

    def _lines(self) -> Iterator[bytes]:
        read, fd, feed = os.read, self.infd, self.splitter.feed
        while True:
            self.flush()
            data = read(fd, CHUNK)
            if not data:
                yield from self.splitter.finish()
                return
            yield from feed(data)

    def handshake(self, version: str, registrations: Sequence[bytes]) -> Optional[Dict[str, str]]:
        """Reads the config lines, answers with ``registrations``; the config,
        or None when the input ended first."""
        state = Handshake(version)
        for line in self.lines:
            if state.feed(line):
                self.out.extend(registrations)
                self.flush()
                return state.config
        return None


def parse_request(parse: Callable[[bytes], Any], line: bytes) -> Tuple[Any, Optional[bytes]]:
    """Parses a request line: the request, or None and the ``error`` answer
    owed for it (None as well when the line names no request to answer)."""
    try:
        return parse(line), None
    except ParseError as e:
        log("bad request: %s" % e)
        if e.reply_to is None:
            return None, None
        return None, e.reply_to.error_line("%s %s" % (e.problem.value, e.field))


def serve_backend(
    channel: Channel,
    version: str,
    registrations: Sequence[bytes],
    on_config: Optional[Callable[[Dict[str, str]], None]],
    serve: Callable[[], None],
) -> None:
    """The life of a plain-callback backend: the handshake, ``on_config``
    with the daemon's values, then ``serve`` until the end of input."""
    try:
        config = channel.handshake(version, registrations)
        if config is None:
            return
        if on_config is not None:
            on_config(config)
        serve()
    except BrokenPipeError:
        log("the daemon closed the output pipe")
