"""The table protocol, version 0.1 (OpenSMTPD 7.8's smtpd-tables(7)).

::

    > table|0.1|1731000001.000412|aliases|lookup|alias|5e3a91c0|postmaster
    < lookup-result|5e3a91c0|found|root

:class:`Request` is what the daemon sends, :class:`Response` what a backend
answers, :class:`Register` its handshake lines. Request ids are 8 lower-case
hex digits, kept as ``int``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

from ._line import Cursor, Text, decode, put_field, put_keyword, put_last
from .errors import FormatError, ParseError, Problem
from .handshake import ConfigLine
from .ids import Timestamp, is_u32, parse_hex8

VERSION = "0.1"
"""The protocol version this module speaks."""

SERVICES = (
    "alias",
    "domain",
    "credentials",
    "netaddr",
    "userinfo",
    "source",
    "mailaddr",
    "addrname",
    "mailaddrmap",
    "relayhost",
    "string",
    "regex",
    "auth",
)
"""Every lookup service, in protocol order."""

OPERATIONS = ("check", "lookup", "fetch", "update")
"""Every operation."""

STATUSES = ("found", "not-found", "ok", "error")
"""Every answer status."""

_SERVICES = frozenset(SERVICES)
_RESULT_OPS = {(op + "-result").encode(): op for op in OPERATIONS}
_ID_FORM = "8 lower-case hex digits"
_OPS_FORM = "check, lookup, fetch or update"
_STATUS_FORM = "found, not-found, ok or error"


class Register(NamedTuple):
    """``register|SERVICE``, or ``register|ready`` when ``service`` is None."""

    service: Optional[str] = None

    @classmethod
    def parse(cls, line: bytes) -> Register:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        c.expect(b"register", "line type", "register")
        what = c.field("service", "a service name or ready")
        c.finish("registration")
        if what == b"ready":
            return cls(None)
        name = decode(what)
        if name not in _SERVICES:
            raise c.error(Problem.UNKNOWN, "service", "a service name or ready")
        return cls(name)

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if self.service is None:
            return b"register|ready\n"
        return b"register|%s\n" % put_keyword("service", self.service, _SERVICES)


class Request(NamedTuple):
    """A request: ``table|0.1|TS|NAME|OP|...``.

    ``service`` is None for ``update``; ``key`` is set for ``check`` and
    ``lookup`` only (it may hold ``|``).
    """

    timestamp: Timestamp
    table: str
    op: str
    id: int
    service: Optional[str] = None
    key: Optional[str] = None

    @classmethod
    def parse(cls, line: bytes) -> Request:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        c.expect(b"table", "line type", "table")
        c.expect(b"0.1", "protocol version", VERSION)
        ts = Timestamp.parse(c.field("timestamp", "SECONDS.MICROSECONDS"))
        if ts is None:
            raise c.error(Problem.INVALID, "timestamp", "SECONDS.MICROSECONDS")
        table = decode(c.field("table name", "the table's name"))
        op = c.field("operation", _OPS_FORM)
        if op == b"update":
            raw_id = c.field("request id", _ID_FORM)
            c.finish("request id")
            return cls(ts, table, "update", _parse_id(c, raw_id))
        if op not in (b"check", b"lookup", b"fetch"):
            raise c.error(Problem.UNKNOWN, "operation", _OPS_FORM)
        raw_service = c.field("service", "a service name")
        raw_id = c.field("request id", _ID_FORM)
        request_id = _parse_id(c, raw_id)
        service = decode(raw_service)
        try:
            if service not in _SERVICES:
                raise c.error(Problem.UNKNOWN, "service", "a service name")
            if op == b"fetch":
                c.finish("request id")
                return cls(ts, table, "fetch", request_id, service)
            key = decode(c.last("key", "the key to look up"))
        except ParseError as e:
            raise e.with_reply_to(op, raw_id) from None
        return cls(ts, table, decode(op), request_id, service, key)

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if not self.timestamp.is_valid():
            raise FormatError("timestamp", "out of range")
        head = b"table|0.1|%s|%s|%s" % (
            self.timestamp.to_bytes(),
            put_field("table name", self.table),
            put_keyword("operation", self.op, OPERATIONS),
        )
        rid = _put_id(self.id)
        if self.op == "update":
            return b"%s|%s\n" % (head, rid)
        service = put_keyword("service", self.service or "", _SERVICES)
        if self.op == "fetch":
            return b"%s|%s|%s\n" % (head, service, rid)
        if self.key is None:
            raise FormatError("key", "check and lookup need a key")
        return b"%s|%s|%s|%s\n" % (head, service, rid, put_last("key", self.key))


def _parse_id(c: Cursor, raw: bytes) -> int:
    value = parse_hex8(raw)
    if value is None:
        raise c.error(Problem.INVALID, "request id", _ID_FORM)
    return value


def _put_id(value: int) -> bytes:
    if not is_u32(value):
        raise FormatError("request id", "must be an int of 32 bits")
    return b"%08x" % value


def is_valid_answer(op: str, status: str, value: Optional[str]) -> bool:
    """True when ``status`` (with ``value``) is a legal answer to ``op``."""
    if status == "error":
        return True
    if status == "found":
        if op == "check":
            return value is None
        return op in ("lookup", "fetch") and bool(value)
    if value is not None:
        return False
    if status == "not-found":
        return op in ("check", "lookup", "fetch")
    return status == "ok" and op == "update"


class Response(NamedTuple):
    """An answer: ``OP-result|ID|STATUS[|VALUE]``.

    ``value`` is the found value of a lookup or fetch (never empty), or the
    optional message of an ``error``; otherwise None.
    """

    op: str
    id: int
    status: str
    value: Optional[str] = None

    @classmethod
    def parse(cls, line: bytes) -> Response:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        types = "check-result, lookup-result, fetch-result or update-result"
        op = _RESULT_OPS.get(c.field("result type", types))
        if op is None:
            raise c.error(Problem.UNKNOWN, "result type", types)
        request_id = _parse_id(c, c.field("request id", _ID_FORM))
        status = c.field("status", _STATUS_FORM)
        value: Optional[str] = None
        if status == b"found" and op != "check":
            value = decode(c.last("value", "found|VALUE"))
        elif status == b"error":
            rest = c.opt_last()
            value = None if rest is None else decode(rest)
        elif status not in (b"found", b"not-found", b"ok"):
            raise c.error(Problem.INVALID, "status", _STATUS_FORM)
        c.finish("status")
        text = decode(status)
        if not is_valid_answer(op, text, value):
            raise c.error(Problem.INVALID, "status", "a status allowed for this result type")
        return cls(op, request_id, text, value)

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if self.op not in OPERATIONS:
            raise FormatError("result type", "unknown operation %r" % (self.op,))
        if not is_valid_answer(self.op, self.status, self.value):
            raise FormatError("status", "not a legal answer to this operation")
        head = b"%s-result|%s|%s" % (self.op.encode(), _put_id(self.id), self.status.encode())
        if self.value is None:
            return head + b"\n"
        name = "error message" if self.status == "error" else "value"
        return b"%s|%s\n" % (head, put_last(name, self.value))


def answer(op: str, request_id: int, status: str, value: Optional[Text] = None) -> bytes:
    """Formats an answer in one call (``value`` may be str or bytes)."""
    text = value if value is None or isinstance(value, str) else decode(value)
    return Response(op, request_id, status, text).format()


def parse_daemon_line(line: bytes) -> Union[ConfigLine, Request]:
    """Any line the daemon sends: a handshake line or a request."""
    if line.startswith(b"config|"):
        return ConfigLine.parse(line)
    return Request.parse(line)


def parse_backend_line(line: bytes) -> Union[Register, Response]:
    """Any line a backend sends: a registration or an answer."""
    if line.startswith(b"register|"):
        return Register.parse(line)
    return Response.parse(line)
