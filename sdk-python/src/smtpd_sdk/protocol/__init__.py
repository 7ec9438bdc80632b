"""Pure parsing and formatting of every protocol line: no I/O.

One module per family: :mod:`.table` (0.1), :mod:`.filter` (0.7) and
:mod:`.queue` (0.1); :mod:`.handshake` holds the ``config|...`` lines they
share. Each line type has a ``parse(line)`` class method taking one line as
bytes *without* its ``\\n``, and a ``format()`` method returning the line
*with* its ``\\n``; each family also has ``parse_daemon_line`` and
``parse_backend_line`` for any line of either side.

Parsing is strict, like the Rust codec (``sdk-rust/src/proto``): missing or
trailing fields, bad ids, bad time stamps and ``\\r``/``\\n`` are refused with
a :class:`ParseError` that names the field, what was expected and the line.
Formatting refuses values that would forge a line (:class:`FormatError`).
"""

from __future__ import annotations

from . import filter, handshake, queue, table
from .errors import FormatError, ParseError, Problem, ProtocolError, ReplyTo
from .handshake import ConfigLine
from .ids import Timestamp

MAX_LINE = 1 << 20
"""The longest line (without its ``\\n``) the backends accept: 1 MiB."""

__all__ = [
    "MAX_LINE",
    "ConfigLine",
    "FormatError",
    "ParseError",
    "Problem",
    "ProtocolError",
    "ReplyTo",
    "Timestamp",
    "filter",
    "handshake",
    "queue",
    "table",
]
