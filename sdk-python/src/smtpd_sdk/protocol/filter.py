"""The filter protocol, version 0.7 (OpenSMTPD 7.8's smtpd-filters(7)).

After the handshake the daemon sends :class:`Report` lines (events, never
answered) and :class:`Request` lines (questions), interleaved; the filter
answers requests with :class:`FilterResult` lines, and data-line requests with
:class:`DataLine` lines (any number, the message ending with a lone ``.``).

::

    > filter|0.7|1731000003.250000|smtp-in|mail-from|a1b2c3d4e5f60718|5d0a000100000001|alice@example.net
    < filter-result|a1b2c3d4e5f60718|5d0a000100000001|proceed

Session ids and tokens are ``int``; they are read leniently (1 to 16 hex
digits of either case, as OpenSMTPD's ``strtoull``) and written as 16
lower-case digits. Phase parameters and data lines are kept as bytes, so
8-bit mail passes unchanged; other text is decoded as UTF-8 with
surrogateescape.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

from ._line import Cursor, Text, decode, encode, put_field, put_keyword, put_last
from .errors import FormatError, Problem
from .handshake import ConfigLine
from .ids import Timestamp, is_u32, is_u64, parse_decimal, parse_hex8, parse_hex16, parse_hex_lenient

VERSION = "0.7"
"""The protocol version this module speaks."""

SUBSYSTEMS = ("smtp-in", "smtp-out")
"""Where events come from: inbound sessions, outbound connections."""

PHASES = (
    "connect",
    "helo",
    "ehlo",
    "starttls",
    "auth",
    "mail-from",
    "rcpt-to",
    "data",
    "data-line",
    "rset",
    "quit",
    "noop",
    "help",
    "wiz",
    "commit",
)
"""Every filter phase, in protocol order."""

DECISIONS = ("proceed", "junk", "reject", "disconnect", "rewrite", "report")
"""Every decision a filter-result may carry."""

_TEXT = "text"  # one field without '|'
_LAST = "last"  # the rest of the line
_MSGID = "msgid"
_EVPID = "evpid"
_SIZE = "size"
_OPT_LAST = "opt-last"  # the rest of the line, if a separator announces it
_FCRDNS = ("pass", "fail", "error")
_AUTH = ("pass", "fail", "error")
_TX = ("ok", "permfail", "tempfail")

EVENTS: Dict[str, Tuple[Tuple[str, Any], ...]] = {
    "link-connect": (("rdns", _TEXT), ("fcrdns", _FCRDNS), ("src", _TEXT), ("dest", _LAST)),
    "link-disconnect": (),
    "link-greeting": (("hostname", _LAST),),
    "link-identify": (("method", _TEXT), ("identity", _LAST)),
    "link-tls": (("info", _LAST),),
    "link-auth": (("result", _AUTH), ("username", _LAST)),
    "tx-reset": (("msgid", _MSGID),),
    "tx-begin": (("msgid", _MSGID),),
    "tx-mail": (("msgid", _MSGID), ("result", _TX), ("address", _LAST)),
    "tx-rcpt": (("msgid", _MSGID), ("result", _TX), ("address", _LAST)),
    "tx-envelope": (("msgid", _MSGID), ("evpid", _EVPID)),
    "tx-data": (("msgid", _MSGID), ("result", _TX)),
    "tx-commit": (("msgid", _MSGID), ("size", _SIZE)),
    "tx-rollback": (("msgid", _MSGID),),
    "protocol-client": (("line", _LAST),),
    "protocol-server": (("line", _LAST),),
    "filter-report": (("kind", _TEXT), ("name", _TEXT), ("message", _LAST)),
    "filter-response": (("phase", _TEXT), ("response", _TEXT), ("param", _OPT_LAST)),
    "timeout": (),
}
"""Every known report event and the shape of its parameters: name, kind."""

UNKNOWN_PARAMS = "params"
"""The one parameter of an unknown event: everything after the session id."""

_SID_FORM = "16 hex digits"
_MSGID_FORM = "8 lower-case hex digits"


class Register(NamedTuple):
    """A handshake line of the filter.

    ``kind`` is ``report`` (``name`` an event or ``*``), ``filter``
    (``subsystem`` ``smtp-in``, ``name`` a phase) or ``ready``.
    """

    kind: str
    subsystem: Optional[str] = None
    name: Optional[str] = None

    @classmethod
    def parse(cls, line: bytes) -> Register:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        c.expect(b"register", "line type", "register")
        what = c.field("registration", "report, filter or ready")
        if what == b"ready":
            c.finish("registration")
            return READY
        if what == b"report":
            sub = decode(c.field("subsystem", "smtp-in or smtp-out"))
            if sub not in SUBSYSTEMS:
                raise c.error(Problem.UNKNOWN, "subsystem", "smtp-in or smtp-out")
            event = decode(c.field("event", "an event name or *"))
            if event != "*" and event not in EVENTS:
                raise c.error(Problem.UNKNOWN, "event", "an event name or *")
            c.finish("registration")
            return cls("report", sub, event)
        if what == b"filter":
            c.expect(b"smtp-in", "subsystem", "smtp-in (only inbound sessions are filtered)")
            phase = decode(c.field("phase", "a phase name"))
            if phase not in PHASES:
                raise c.error(Problem.UNKNOWN, "phase", "a phase name")
            c.finish("registration")
            return cls("filter", "smtp-in", phase)
        raise c.error(Problem.UNKNOWN, "registration", "report, filter or ready")

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if self.kind == "ready":
            return b"register|ready\n"
        if self.kind == "report":
            sub = put_keyword("subsystem", self.subsystem or "", SUBSYSTEMS)
            event = self.name or ""
            if event != "*" and event not in EVENTS:
                raise FormatError("event", "unknown event %r" % (event,))
            return b"register|report|%s|%s\n" % (sub, event.encode())
        if self.kind == "filter":
            if self.subsystem not in (None, "smtp-in"):
                raise FormatError("subsystem", "only smtp-in sessions are filtered")
            return b"register|filter|smtp-in|%s\n" % put_keyword("phase", self.name or "", PHASES)
        raise FormatError("registration", "unknown kind %r" % (self.kind,))


READY = Register("ready")
"""The ``register|ready`` line."""


def _parse_id(c: Cursor, raw: bytes, field: str) -> int:
    value = parse_hex_lenient(raw)
    if value is None:
        raise c.error(Problem.INVALID, field, _SID_FORM)
    return value


def _put_sid(field: str, value: int) -> bytes:
    if not is_u64(value):
        raise FormatError(field, "must be an int of 64 bits")
    return b"%016x" % value


class Report(NamedTuple):
    """``report|0.7|TS|SUBSYSTEM|EVENT|SID[|PARAMS]``: an event.

    ``params`` maps the event's parameter names (see :data:`EVENTS`) to
    values: ``str``, or ``int`` for ``msgid``, ``evpid`` and ``size``; the
    optional ``param`` of ``filter-response`` is None when absent. An unknown
    event has one entry, :data:`UNKNOWN_PARAMS`, when anything follows the
    session id.
    """

    timestamp: Timestamp
    subsystem: str
    event: str
    session: int
    params: Dict[str, Any]

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if not self.timestamp.is_valid():
            raise FormatError("timestamp", "out of range")
        parts = [
            b"report|0.7",
            self.timestamp.to_bytes(),
            put_keyword("subsystem", self.subsystem, SUBSYSTEMS),
            put_field("event", self.event),
            _put_sid("session id", self.session),
        ]
        shape = EVENTS.get(self.event)
        if shape is None:
            rest = self.params.get(UNKNOWN_PARAMS)
            if rest is not None:
                parts.append(put_last("event parameters", rest))
        else:
            _put_params(parts, shape, self.params)
        return b"|".join(parts) + b"\n"


def _put_params(parts: list, shape: Tuple[Tuple[str, Any], ...], params: Dict[str, Any]) -> None:
    for name, kind in shape:
        if name not in params:
            raise FormatError(name, "missing")
        value = params[name]
        if kind == _TEXT:
            parts.append(put_field(name, value))
        elif kind == _LAST:
            parts.append(put_last(name, value))
        elif kind == _OPT_LAST:
            if value is not None:
                parts.append(put_last(name, value))
        elif kind == _MSGID:
            if not is_u32(value):
                raise FormatError(name, "must be an int of 32 bits")
            parts.append(b"%08x" % value)
        elif kind == _EVPID:
            if not is_u64(value):
                raise FormatError(name, "must be an int of 64 bits")
            parts.append(b"%016x" % value)
        elif kind == _SIZE:
            if not is_u64(value):
                raise FormatError(name, "must be an int of 64 bits")
            parts.append(b"%d" % value)
        else:
            parts.append(put_keyword(name, value, kind))


def _parse_params(c: Cursor, event: bytes) -> Dict[str, Any]:
    shape = EVENTS.get(decode(event))
    if shape is None:
        rest = c.opt_last()
        return {} if rest is None else {UNKNOWN_PARAMS: decode(rest)}
    params: Dict[str, Any] = {}
    for name, kind in shape:
        if kind == _TEXT:
            params[name] = decode(c.field(name, name))
        elif kind == _LAST:
            params[name] = decode(c.last(name, name))
        elif kind == _OPT_LAST:
            rest = c.opt_last()
            params[name] = None if rest is None else decode(rest)
        elif kind == _MSGID:
            value = parse_hex8(c.field("message id", _MSGID_FORM))
            if value is None:
                raise c.error(Problem.INVALID, "message id", _MSGID_FORM)
            params[name] = value
        elif kind == _EVPID:
            value = parse_hex16(c.field("envelope id", "16 lower-case hex digits"))
            if value is None:
                raise c.error(Problem.INVALID, "envelope id", "16 lower-case hex digits")
            params[name] = value
        elif kind == _SIZE:
            value = parse_decimal(c.field("size", "a decimal size"))
            if value is None:
                raise c.error(Problem.INVALID, "size", "a decimal size")
            params[name] = value
        else:
            expected = ", ".join(kind[:-1]) + " or " + kind[-1]
            text = decode(c.field(name, expected))
            if text not in kind:
                raise c.error(Problem.INVALID, name, expected)
            params[name] = text
    c.finish("event parameters")
    return params


class Request(NamedTuple):
    """``filter|0.7|TS|smtp-in|PHASE|SID|TOKEN|PARAM``: a question.

    ``param`` is raw bytes, possibly empty; :attr:`text` decodes it.
    """

    timestamp: Timestamp
    phase: str
    session: int
    token: int
    param: bytes = b""

    @property
    def text(self) -> str:
        """The parameter as text (UTF-8, surrogateescape)."""
        return decode(self.param)

    def connect_params(self) -> Optional[Tuple[str, str]]:
        """For ``connect``: the reverse name and the source address."""
        rdns, sep, src = self.text.partition("|")
        return (rdns, src) if sep else None

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if not self.timestamp.is_valid():
            raise FormatError("timestamp", "out of range")
        return b"filter|0.7|%s|smtp-in|%s|%s|%s|%s\n" % (
            self.timestamp.to_bytes(),
            put_keyword("phase", self.phase, PHASES),
            _put_sid("session id", self.session),
            _put_sid("token", self.token),
            put_last("parameter", self.param),
        )


def parse_input(line: bytes) -> Union[Report, Request]:
    """A line from the daemon after the handshake: a report or a request."""
    c = Cursor(line)
    kind = c.field("line type", "report or filter")
    if kind != b"report" and kind != b"filter":
        raise c.error(Problem.UNKNOWN, "line type", "report or filter")
    c.expect(b"0.7", "protocol version", VERSION)
    ts = Timestamp.parse(c.field("timestamp", "SECONDS.MICROSECONDS"))
    if ts is None:
        raise c.error(Problem.INVALID, "timestamp", "SECONDS.MICROSECONDS")
    sub = decode(c.field("subsystem", "smtp-in or smtp-out"))
    if sub not in SUBSYSTEMS:
        raise c.error(Problem.UNKNOWN, "subsystem", "smtp-in or smtp-out")
    if kind == b"report":
        event = c.field("event", "an event name")
        session = _parse_id(c, c.field("session id", _SID_FORM), "session id")
        return Report(ts, sub, decode(event), session, _parse_params(c, event))
    if sub != "smtp-in":
        raise c.error(Problem.INVALID, "subsystem", "smtp-in")
    phase = decode(c.field("phase", "a phase name"))
    if phase not in PHASES:
        raise c.error(Problem.UNKNOWN, "phase", "a phase name")
    session = _parse_id(c, c.field("session id", _SID_FORM), "session id")
    token = _parse_id(c, c.field("token", _SID_FORM), "token")
    param = c.last("parameter", "the phase's parameter, possibly empty")
    return Request(ts, phase, session, token, param)


class Decision(NamedTuple):
    """A verdict: ``proceed``, ``junk``, ``reject|REPLY``,
    ``disconnect|REPLY``, ``rewrite|VALUE`` or ``report|TEXT``."""

    name: str
    param: Optional[str] = None

    def check(self) -> None:
        """Raises :class:`FormatError` unless the decision can be sent."""
        if self.name not in DECISIONS:
            raise FormatError("decision", "unknown decision %r" % (self.name,))
        if self.name in ("proceed", "junk"):
            if self.param is not None:
                raise FormatError("decision parameter", "%s takes none" % self.name)
        elif self.param is None:
            raise FormatError("decision parameter", "%s needs one" % self.name)
        elif self.name in ("reject", "disconnect") and not self.param:
            raise FormatError("SMTP reply", "must not be empty")


class FilterResult(NamedTuple):
    """``filter-result|SID|TOKEN|DECISION[|PARAM]``."""

    session: int
    token: int
    decision: Decision

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        self.decision.check()
        head = b"filter-result|%s|%s|%s" % (
            _put_sid("session id", self.session),
            _put_sid("token", self.token),
            self.decision.name.encode(),
        )
        if self.decision.param is None:
            return head + b"\n"
        return b"%s|%s\n" % (head, put_last("decision parameter", self.decision.param))


class DataLine(NamedTuple):
    """``filter-dataline|SID|TOKEN|LINE``: one message line, still
    dot-stuffed, as raw bytes; a lone ``.`` ends the message."""

    session: int
    token: int
    line: bytes

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        return b"filter-dataline|%s|%s|%s\n" % (
            _put_sid("session id", self.session),
            _put_sid("token", self.token),
            put_last("data line", self.line),
        )


def dataline(session: int, token: int, line: Text) -> bytes:
    """Formats one ``filter-dataline`` line (``line`` str or bytes)."""
    return DataLine(session, token, encode("data line", line)).format()


def parse_output(line: bytes) -> Union[FilterResult, DataLine]:
    """A line from the filter after the handshake."""
    c = Cursor(line)
    kind = c.field("line type", "filter-result or filter-dataline")
    if kind != b"filter-result" and kind != b"filter-dataline":
        raise c.error(Problem.UNKNOWN, "line type", "filter-result or filter-dataline")
    session = _parse_id(c, c.field("session id", _SID_FORM), "session id")
    token = _parse_id(c, c.field("token", _SID_FORM), "token")
    if kind == b"filter-dataline":
        return DataLine(session, token, c.last("data line", "the line, possibly empty"))
    forms = ", ".join(DECISIONS[:-1]) + " or " + DECISIONS[-1]
    name = decode(c.field("decision", forms))
    if name in ("proceed", "junk"):
        c.finish("decision")
        return FilterResult(session, token, Decision(name))
    if name not in DECISIONS:
        raise c.error(Problem.UNKNOWN, "decision", forms)
    param = decode(c.last("decision parameter", "DECISION|PARAMETER"))
    if name in ("reject", "disconnect") and not param:
        raise c.error(Problem.MISSING, "SMTP reply", "a reply such as 550 5.7.1 text")
    return FilterResult(session, token, Decision(name, param))


def parse_daemon_line(line: bytes) -> Union[ConfigLine, Report, Request]:
    """Any line the daemon sends: a handshake line, a report or a request."""
    if line.startswith(b"config|"):
        return ConfigLine.parse(line)
    return parse_input(line)


def parse_backend_line(line: bytes) -> Union[Register, FilterResult, DataLine]:
    """Any line a filter sends: a registration, a result or a data line."""
    if line.startswith(b"register|"):
        return Register.parse(line)
    return parse_output(line)

