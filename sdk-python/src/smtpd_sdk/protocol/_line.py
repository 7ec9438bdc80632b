"""Field splitting and field writing, the two primitives every line type is
built from.

:class:`Cursor` walks a line's ``|``-separated fields left to right; only
the last field may hold ``|``. The ``put_*`` functions encode one field for
writing and refuse values that would forge a line.
"""

from __future__ import annotations

from typing import Optional, Union

from .errors import FormatError, ParseError, Problem

Text = Union[str, bytes]
"""A field value given to a formatter: text (UTF-8, surrogateescape) or bytes."""


def decode(raw: bytes) -> str:
    """Bytes from the wire as text; undecodable bytes survive a round trip."""
    return raw.decode("utf-8", "surrogateescape")


class Cursor:
    """Splits one line (without its ``\\n``) into fields."""

    __slots__ = ("line", "pos")

    def __init__(self, line: bytes) -> None:
        if b"\n" in line or b"\r" in line:
            raise ParseError(
                Problem.CONTROL_CHAR, "line", "a single line without CR or LF", line
            )
        self.line = line
        self.pos: Optional[int] = 0
        """Start of the next field; ``None`` once the last one was taken."""

    def error(self, problem: Problem, field: str, expected: str) -> ParseError:
        """An error about ``field`` in this line."""
        return ParseError(problem, field, expected, self.line)

    def field(self, field: str, expected: str) -> bytes:
        """The next field, up to the next ``|`` or the end of the line."""
        pos = self.pos
        if pos is None:
            raise self.error(Problem.MISSING, field, expected)
        end = self.line.find(b"|", pos)
        if end < 0:
            self.pos = None
            return self.line[pos:]
        self.pos = end + 1
        return self.line[pos:end]

    def text(self, field: str, expected: str) -> str:
        """The next field as text."""
        return decode(self.field(field, expected))

    def last(self, field: str, expected: str) -> bytes:
        """The rest of the line as one field, ``|`` included."""
        pos = self.pos
        if pos is None:
            raise self.error(Problem.MISSING, field, expected)
        self.pos = None
        return self.line[pos:]

    def last_text(self, field: str, expected: str) -> str:
        """The rest of the line as text."""
        return decode(self.last(field, expected))

    def opt_last(self) -> Optional[bytes]:
        """The rest of the line if a separator announced one more field."""
        pos = self.pos
        if pos is None:
            return None
        self.pos = None
        return self.line[pos:]

    def expect(self, word: bytes, field: str, expected: str) -> None:
        """Requires the next field to be exactly ``word``."""
        if self.field(field, expected) != word:
            raise self.error(Problem.INVALID, field, expected)

    def finish(self, after: str) -> None:
        """Fails when fields remain."""
        if self.pos is not None:
            raise self.error(Problem.TRAILING, after, "the end of the line")


def encode(name: str, value: Text) -> bytes:
    """A value as bytes; text is UTF-8 with surrogateescape."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise FormatError(name, "must be str or bytes, not %s" % type(value).__name__)
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise FormatError(name, "is not encodable text") from None


def put_last(name: str, value: Text) -> bytes:
    """The last field of a line: anything but ``\\r`` and ``\\n``."""
    raw = encode(name, value)
    if b"\n" in raw or b"\r" in raw:
        raise FormatError(name, "contains a carriage return or newline")
    return raw


def put_field(name: str, value: Text) -> bytes:
    """A field that is not the last one: no ``|``, ``\\r`` or ``\\n``."""
    raw = put_last(name, value)
    if b"|" in raw:
        raise FormatError(name, "a '|' is only allowed in the last field")
    return raw


def put_keyword(name: str, value: str, allowed: object) -> bytes:
    """A keyword that must belong to ``allowed``."""
    if value not in allowed:  # type: ignore[operator]
        raise FormatError(name, "unknown value %r" % (value,))
    return value.encode("ascii")
