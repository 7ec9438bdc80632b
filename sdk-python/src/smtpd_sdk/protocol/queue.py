"""The queue protocol, version 0.1: the queue as a store of opaque blobs.

::

    > queue|0.1|1731000001.000412|message-create|0000000000000001
    < message-create-result|0000000000000001|ok|0badcafe

Binary data (message chunks, envelopes) travels as standard base64 with
padding; :class:`Request` and :class:`Response` hold it decoded, as bytes.
An ``ok`` to a state-changing request means the change is durable. Request
ids are 16 lower-case hex digits, message ids 8 (never zero), envelope ids
16 (upper half the message id, lower half never zero); all kept as ``int``.

A backend whose store several daemons share registers :data:`LEASE_CAPABILITY`
and serves ``envelope-claim`` (answered ``ok``, ``busy`` or ``not-found``),
``envelope-release`` and ``envelope-walk-free`` (SPEC.md 4.12).
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple, Optional, Union, cast

from ._line import Cursor, decode, put_field, put_keyword, put_last
from .errors import FormatError, ParseError, Problem
from .handshake import ConfigLine
from .ids import Timestamp, is_evpid, is_msgid, is_u64, parse_decimal, parse_hex8, parse_hex16

VERSION = "0.1"
"""The protocol version this module speaks."""

DEFAULT_CHUNK_SIZE = 32 * 1024
"""The largest chunk the daemon writes or asks for by default, in bytes."""

LEASE_CAPABILITY = "lease"
"""The capability of a backend whose store several daemons share."""

MAX_LEASE_SECONDS = 86400
"""The longest lease a claim may ask for, in seconds."""

MAX_INSTANCE_LEN = 64
"""The longest daemon instance id, in bytes."""

LEASE_OPERATIONS = ("envelope-claim", "envelope-release", "envelope-walk-free")
"""The operations sent only to a backend that registered ``lease``."""

_INSTANCE_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:")


def is_instance_id(value: object) -> bool:
    """True for a valid daemon instance id: 1 to 64 ASCII letters, digits,
    ``.``, ``_``, ``-`` or ``:``."""
    if not isinstance(value, str):
        return False
    raw = value.encode("utf-8")
    return 0 < len(raw) <= MAX_INSTANCE_LEN and all(b in _INSTANCE_CHARS for b in raw)

OPERATIONS = (
    "message-create",
    "message-write",
    "message-commit",
    "message-read",
    "message-delete",
    "message-corrupt",
    "envelope-create",
    "envelope-update",
    "envelope-load",
    "envelope-delete",
    "envelope-walk",
    "envelope-claim",
    "envelope-release",
    "envelope-walk-free",
)
"""Every operation, in protocol order."""

STATUSES = ("ok", "found", "not-found", "done", "busy", "error")
"""Every answer status."""

# The arguments of each operation, in wire order.
_ARGS = {
    "message-create": (),
    "message-write": ("msgid", "offset", "data"),
    "message-commit": ("msgid", "size"),
    "message-read": ("msgid", "offset", "length"),
    "message-delete": ("msgid",),
    "message-corrupt": ("msgid",),
    "envelope-create": ("msgid", "data"),
    "envelope-update": ("evpid", "data"),
    "envelope-load": ("evpid",),
    "envelope-delete": ("evpid",),
    "envelope-walk": ("after",),
    "envelope-claim": ("evpid", "instance", "seconds"),
    "envelope-release": ("evpid", "instance"),
    "envelope-walk-free": ("after", "instance"),
}
_RESULT_OPS = {(op + "-result").encode(): op for op in OPERATIONS}
_QID_FORM = "16 lower-case hex digits"
_MSGID_FORM = "8 lower-case hex digits, not all zero"
_EVPID_FORM = "16 lower-case hex digits, both halves non-zero"
_B64_FORM = "standard base64 with padding"
_STATUS_FORM = "ok, found, not-found, done, busy or error"
_INSTANCE_FORM = "1 to 64 letters, digits, '.', '_', '-' or ':'"
_SECONDS_FORM = "a number of seconds from 1 to 86400"


class Register(NamedTuple):
    """``register|CAPABILITY``, or ``register|ready`` when ``capability`` is
    None. 0.1 defines one capability, :data:`LEASE_CAPABILITY`; the daemon
    ignores unknown ones."""

    capability: Optional[str] = None

    @classmethod
    def parse(cls, line: bytes) -> Register:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        c.expect(b"register", "line type", "register")
        what = c.field("capability", "a capability or ready")
        c.finish("registration")
        if what == b"ready":
            return cls(None)
        if not what:
            raise c.error(Problem.MISSING, "capability", "a capability or ready")
        return cls(decode(what))

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if self.capability is None:
            return b"register|ready\n"
        if self.capability in ("", "ready"):
            raise FormatError("capability", "must be a name other than ready")
        return b"register|%s\n" % put_field("capability", self.capability)


def _b64decode(c: Cursor, field: str) -> bytes:
    raw = c.field(field, _B64_FORM)
    try:
        data = binascii.a2b_base64(raw)
    except binascii.Error:
        raise c.error(Problem.INVALID, field, _B64_FORM) from None
    # a2b_base64 skips stray characters; only the canonical form is accepted.
    if binascii.b2a_base64(data, newline=False) != raw:
        raise c.error(Problem.INVALID, field, _B64_FORM)
    return data


def _msgid(c: Cursor) -> int:
    value = parse_hex8(c.field("message id", _MSGID_FORM))
    if not value:
        raise c.error(Problem.INVALID, "message id", _MSGID_FORM)
    return value


def _evpid(c: Cursor, allow_zero: bool = False) -> int:
    value = parse_hex16(c.field("envelope id", _EVPID_FORM))
    if value is None or not (is_evpid(value) or (allow_zero and value == 0)):
        raise c.error(Problem.INVALID, "envelope id", _EVPID_FORM)
    return value


def _number(c: Cursor, field: str) -> int:
    value = parse_decimal(c.field(field, "a decimal number"))
    if value is None:
        raise c.error(Problem.INVALID, field, "a decimal number")
    return value


class Request(NamedTuple):
    """A request: ``queue|0.1|TS|OP|ID[|ARGS]``.

    Only the arguments of ``op`` are set (see :func:`arguments`):
    ``msgid``, ``evpid`` (``envelope-update``/``load``/``delete``), ``after``
    (``envelope-walk``, 0 for the start), ``offset``, ``size`` (commit),
    ``length`` (read) and ``data`` (write, envelope create and update);
    ``instance`` (the daemon instance id) and ``seconds`` (the lease) for
    the lease operations.
    """

    timestamp: Timestamp
    op: str
    id: int
    msgid: Optional[int] = None
    evpid: Optional[int] = None
    after: Optional[int] = None
    offset: Optional[int] = None
    size: Optional[int] = None
    length: Optional[int] = None
    data: Optional[bytes] = None
    instance: Optional[str] = None
    seconds: Optional[int] = None

    @classmethod
    def parse(cls, line: bytes) -> Request:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        c.expect(b"queue", "line type", "queue")
        c.expect(b"0.1", "protocol version", VERSION)
        ts = Timestamp.parse(c.field("timestamp", "SECONDS.MICROSECONDS"))
        if ts is None:
            raise c.error(Problem.INVALID, "timestamp", "SECONDS.MICROSECONDS")
        raw_op = c.field("operation", "a queue operation")
        raw_id = c.field("request id", _QID_FORM)
        request_id = parse_hex16(raw_id)
        if request_id is None:
            raise c.error(Problem.INVALID, "request id", _QID_FORM)
        op = decode(raw_op)
        try:
            if op not in _ARGS:
                raise c.error(Problem.UNKNOWN, "operation", "a queue operation")
            args = _parse_args(c, op)
            c.finish("arguments")
        except ParseError as e:
            raise e.with_reply_to(raw_op, raw_id) from None
        return cls(ts, op, request_id, **args)

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if not self.timestamp.is_valid():
            raise FormatError("timestamp", "out of range")
        names = _ARGS.get(self.op)
        if names is None:
            raise FormatError("operation", "unknown operation %r" % (self.op,))
        if not is_u64(self.id):
            raise FormatError("request id", "must be an int of 64 bits")
        parts = [b"queue|0.1", self.timestamp.to_bytes(), self.op.encode(), b"%016x" % self.id]
        for name in names:
            parts.append(_put_arg(self.op, name, getattr(self, name)))
        return b"|".join(parts) + b"\n"


def arguments(op: str) -> tuple:
    """The names of the arguments of ``op``, in wire order."""
    return _ARGS[op]


# Requests whose data is never empty: message chunks and envelopes.
_NONEMPTY_DATA = ("message-write", "envelope-create", "envelope-update")


def _parse_args(c: Cursor, op: str) -> dict:
    args: dict = {}
    for name in _ARGS[op]:
        if name == "msgid":
            args[name] = _msgid(c)
        elif name == "evpid":
            args[name] = _evpid(c)
        elif name == "after":
            args[name] = _evpid(c, allow_zero=True)
        elif name == "data":
            args[name] = _b64decode(c, "data")
        elif name == "instance":
            raw = c.field("instance id", _INSTANCE_FORM)
            text = raw.decode("utf-8", "replace")
            if not is_instance_id(text):
                raise c.error(Problem.INVALID, "instance id", _INSTANCE_FORM)
            args[name] = text
        elif name == "seconds":
            value = parse_decimal(c.field("lease seconds", _SECONDS_FORM))
            if value is None or not 1 <= value <= MAX_LEASE_SECONDS:
                raise c.error(Problem.INVALID, "lease seconds", _SECONDS_FORM)
            args[name] = value
        else:
            args[name] = _number(c, name)
    if op in _NONEMPTY_DATA and not args["data"]:
        raise c.error(Problem.INVALID, "data", "at least one byte")
    return args


def _put_arg(op: str, name: str, value: object) -> bytes:
    if name == "msgid":
        if not is_msgid(value):
            raise FormatError("message id", "must be a non-zero int of 32 bits")
        return b"%08x" % cast(int, value)
    if name in ("evpid", "after"):
        if not (is_evpid(value) or (name == "after" and value == 0 and isinstance(value, int))):
            raise FormatError("envelope id", "must be an int of 64 bits, both halves non-zero")
        return b"%016x" % cast(int, value)
    if name == "data":
        if not isinstance(value, (bytes, bytearray)):
            raise FormatError("data", "must be bytes")
        if op in _NONEMPTY_DATA and not value:
            raise FormatError("data", "must hold at least one byte")
        return base64.b64encode(value)
    if name == "instance":
        if not is_instance_id(value):
            raise FormatError("instance id", "must be " + _INSTANCE_FORM)
        return cast(str, value).encode("ascii")
    if name == "seconds":
        if not (isinstance(value, int) and 1 <= value <= MAX_LEASE_SECONDS):
            raise FormatError("lease seconds", "must be from 1 to 86400")
        return b"%d" % value
    if not is_u64(value):
        raise FormatError(name, "must be an int of 64 bits")
    return b"%d" % cast(int, value)


def is_valid_answer(op: str, status: str, response: Response) -> bool:
    """True when ``status`` with the fields of ``response`` answers ``op``."""
    r = response
    if status == "error":
        return r.msgid is None and r.evpid is None and r.data is None
    if r.message is not None:
        return False
    if status == "ok":
        if op == "message-create":
            return r.msgid is not None and r.evpid is None and r.data is None
        if op == "envelope-create":
            return r.evpid is not None and r.msgid is None and r.data is None
        return r.msgid is None and r.evpid is None and r.data is None and op in (
            "message-write",
            "message-commit",
            "message-delete",
            "message-corrupt",
            "envelope-update",
            "envelope-delete",
            "envelope-claim",
            "envelope-release",
        )
    if status == "found":
        if r.data is None or r.msgid is not None:
            return False
        if op in ("envelope-walk", "envelope-walk-free"):
            return r.evpid is not None and len(r.data) > 0
        if r.evpid is not None:
            return False
        return op == "message-read" or (op == "envelope-load" and len(r.data) > 0)
    if r.msgid is not None or r.evpid is not None or r.data is not None:
        return False
    if status == "not-found":
        return op in ("message-read", "message-corrupt", "envelope-update", "envelope-load", "envelope-claim")
    if status == "busy":
        return op == "envelope-claim"
    return status == "done" and op in ("envelope-walk", "envelope-walk-free")


class Response(NamedTuple):
    """An answer: ``OP-result|ID|STATUS[|...]``.

    - ``ok``: ``msgid`` set for message-create, ``evpid`` for envelope-create;
    - ``found``: ``data`` (message-read, empty at the end; envelope-load),
      plus ``evpid`` for envelope-walk;
    - ``not-found``, ``done`` (envelope-walk and envelope-walk-free: nothing
      left), ``busy`` (envelope-claim: another instance holds the lease);
    - ``error``: ``message`` optional.
    """

    op: str
    id: int
    status: str
    msgid: Optional[int] = None
    evpid: Optional[int] = None
    data: Optional[bytes] = None
    message: Optional[str] = None

    @classmethod
    def parse(cls, line: bytes) -> Response:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        op = _RESULT_OPS.get(c.field("result type", "OPERATION-result"))
        if op is None:
            raise c.error(Problem.UNKNOWN, "result type", "OPERATION-result")
        request_id = parse_hex16(c.field("request id", _QID_FORM))
        if request_id is None:
            raise c.error(Problem.INVALID, "request id", _QID_FORM)
        status = decode(c.field("status", _STATUS_FORM))
        fields: dict = {}
        if status == "ok":
            if op == "message-create":
                fields["msgid"] = _msgid(c)
            elif op == "envelope-create":
                fields["evpid"] = _evpid(c)
        elif status == "found":
            if op in ("envelope-walk", "envelope-walk-free"):
                fields["evpid"] = _evpid(c)
            fields["data"] = _b64decode(c, "data")
        elif status == "error":
            rest = c.opt_last()
            if rest is not None:
                fields["message"] = decode(rest)
        elif status not in ("not-found", "done", "busy"):
            raise c.error(Problem.INVALID, "status", _STATUS_FORM)
        c.finish("status")
        response = cls(op, request_id, status, **fields)
        if not is_valid_answer(op, status, response):
            raise c.error(Problem.INVALID, "status", "a status allowed for this result type")
        return response

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if self.op not in _ARGS:
            raise FormatError("result type", "unknown operation %r" % (self.op,))
        if not is_u64(self.id):
            raise FormatError("request id", "must be an int of 64 bits")
        if not is_valid_answer(self.op, self.status, self):
            raise FormatError("status", "not a legal answer to this operation")
        parts = [b"%s-result" % self.op.encode(), b"%016x" % self.id, put_keyword("status", self.status, STATUSES)]
        if self.msgid is not None:
            parts.append(_put_arg(self.op, "msgid", self.msgid))
        if self.evpid is not None:
            parts.append(_put_arg(self.op, "evpid", self.evpid))
        if self.data is not None:
            parts.append(_put_arg(self.op, "data", self.data))
        if self.message is not None:
            parts.append(put_last("error message", self.message))
        return b"|".join(parts) + b"\n"


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
