"""Errors raised by the parsers and formatters of the three families.

Every parse failure is a :class:`ParseError` naming the field concerned, what
was expected there and the offending line. When the line was a request whose
operation and id could be read, the error also carries a :class:`ReplyTo`, so
that the backend can still answer it with an ``error`` result. Formatters
raise :class:`FormatError` instead of writing a line that would forge another
one (a newline in a value, a ``|`` in a field that is not the last).
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Optional

QUOTED_LINE_MAX = 200
"""How many bytes of an offending line an error message quotes."""


class Problem(enum.Enum):
    """What was wrong with a field or a line."""

    MISSING = "missing"
    """The line ended before this field."""
    INVALID = "invalid"
    """The field is present but not of the expected form."""
    UNKNOWN = "unknown"
    """The field names something this codec does not know."""
    TRAILING = "unexpected data after"
    """More fields follow where the line should have ended."""
    CONTROL_CHAR = "carriage return or newline in"
    """The line holds a ``\\r`` or ``\\n``."""
    TOO_LONG = "too long:"
    """The line is longer than the limit."""


class ReplyTo(NamedTuple):
    """Enough of a request that failed to parse to answer it with ``error``.

    The answer is ``{op}-result|{id}|error|MESSAGE``.
    """

    op: str
    """The operation name as sent (``lookup``, ``message-create``, ...)."""
    id: str
    """The request id exactly as sent."""

    def error_line(self, message: str = "") -> bytes:
        """The ``error`` answer to the request, with its ``\\n``."""
        text = _sanitize(message)
        tail = b"|" + text.encode("utf-8", "surrogateescape") if text else b""
        return b"%s-result|%s|error%s\n" % (
            self.op.encode("utf-8", "surrogateescape"),
            self.id.encode("ascii"),
            tail,
        )


def _sanitize(message: str) -> str:
    """Makes free text safe as a last field: no CR or LF, bounded length."""
    text = message.replace("\r", " ").replace("\n", " ")
    return text[:QUOTED_LINE_MAX]


def quote_line(line: bytes) -> str:
    """The offending line as error messages show it: decoded, cut, quoted."""
    cut = line[:QUOTED_LINE_MAX]
    text = cut.decode("utf-8", "replace")
    if len(cut) < len(line):
        text += "..."
    return text


class ProtocolError(ValueError):
    """Base class of every error of the protocol codec."""


class ParseError(ProtocolError):
    """A line that could not be parsed.

    Attributes: ``problem`` (a :class:`Problem`), ``field`` (``"request id"``,
    ``"service"``, ``"line"``...), ``expected`` (what the field should have
    looked like), ``line`` (the offending line, decoded and cut to 200 bytes)
    and ``reply_to`` (set when the request can still be answered).
    """

    def __init__(
        self,
        problem: Problem,
        field: str,
        expected: str,
        line: bytes,
        reply_to: Optional[ReplyTo] = None,
    ) -> None:
        self.problem = problem
        self.field = field
        self.expected = expected
        self.line = quote_line(line)
        self.reply_to = reply_to
        super().__init__(str(self))

    def __str__(self) -> str:
        return "%s %s (expected %s) in line %r" % (
            self.problem.value,
            self.field,
            self.expected,
            self.line,
        )

    def with_reply_to(self, op: bytes, request_id: bytes) -> ParseError:
        """Marks the error as answerable and returns it."""
        self.reply_to = ReplyTo(
            op.decode("utf-8", "surrogateescape"), request_id.decode("ascii")
        )
        return self


class FormatError(ProtocolError):
    """A value that cannot be put on the wire.

    Attributes: ``field`` (the field concerned) and ``reason`` (why it was
    refused).
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__("cannot send %s: %s" % (field, reason))
