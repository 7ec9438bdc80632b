"""Identifiers, numbers and time stamps as the protocols write them.

Table request ids are 8 lower-case hex digits, queue request ids 16; message
ids 8 (never zero) and envelope ids 16 (the upper half is the message id, the
lower half is never zero). Filter session ids and tokens are written as 16
lower-case digits but read as OpenSMTPD's ``strtoull`` reads them: 1 to 16 hex
digits of either case. Time stamps are ``SECONDS.MICROSECONDS`` with exactly
six digits of microseconds. Ids are plain ``int`` values in this package.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple, Optional

_HEX8 = re.compile(rb"[0-9a-f]{8}\Z").match
_HEX16 = re.compile(rb"[0-9a-f]{16}\Z").match
_HEX_LENIENT = re.compile(rb"[0-9a-fA-F]{1,16}\Z").match
_DECIMAL = re.compile(rb"[0-9]{1,20}\Z").match
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1


def parse_hex8(raw: bytes) -> Optional[int]:
    """Exactly 8 lower-case hex digits, or ``None``."""
    return int(raw, 16) if _HEX8(raw) else None


def parse_hex16(raw: bytes) -> Optional[int]:
    """Exactly 16 lower-case hex digits, or ``None``."""
    return int(raw, 16) if _HEX16(raw) else None


def parse_hex_lenient(raw: bytes) -> Optional[int]:
    """1 to 16 hex digits of either case (``strtoull``), or ``None``."""
    return int(raw, 16) if _HEX_LENIENT(raw) else None


def parse_decimal(raw: bytes) -> Optional[int]:
    """An unsigned decimal number that fits 64 bits, or ``None``."""
    if not _DECIMAL(raw):
        return None
    value = int(raw)
    return value if value <= _U64_MAX else None


def is_u32(value: object) -> bool:
    """True for an ``int`` that fits 32 bits unsigned."""
    return type(value) is int and 0 <= value <= _U32_MAX  # noqa: E721


def is_u64(value: object) -> bool:
    """True for an ``int`` that fits 64 bits unsigned."""
    return type(value) is int and 0 <= value <= _U64_MAX  # noqa: E721


def is_msgid(value: object) -> bool:
    """True for a valid message id: 32 bits, not zero."""
    return is_u32(value) and value != 0


def is_evpid(value: object) -> bool:
    """True for a valid envelope id: 64 bits, both halves non-zero."""
    return is_u64(value) and value >> 32 != 0 and value & _U32_MAX != 0  # type: ignore[operator]


def evpid_msgid(evpid: int) -> int:
    """The message an envelope id belongs to (its upper half)."""
    return evpid >> 32


class Timestamp(NamedTuple):
    """A wall-clock time stamp: seconds since the epoch and microseconds."""

    secs: int
    micros: int = 0

    @classmethod
    def now(cls) -> Timestamp:
        """The current time."""
        ns = time.time_ns()
        return cls(ns // 1_000_000_000, (ns // 1000) % 1_000_000)

    @classmethod
    def parse(cls, raw: bytes) -> Optional[Timestamp]:
        """``SECONDS.MICROSECONDS`` with six digits of micros, or ``None``."""
        secs, dot, micros = raw.partition(b".")
        if not dot or len(micros) != 6:
            return None
        s = parse_decimal(secs)
        m = parse_decimal(micros)
        if s is None or m is None:
            return None
        return cls(s, m)

    def is_valid(self) -> bool:
        """True when both parts are in range."""
        return is_u64(self.secs) and type(self.micros) is int and 0 <= self.micros < 1_000_000  # noqa: E721

    def __str__(self) -> str:
        return "%d.%06d" % (self.secs, self.micros)

    def to_bytes(self) -> bytes:
        """The wire form."""
        return b"%d.%06d" % (self.secs, self.micros)
