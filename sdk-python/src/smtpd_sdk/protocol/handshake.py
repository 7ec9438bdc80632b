"""``config|...`` lines: what the daemon says before ``config|ready``.

Shared by the three families; the ``register|...`` answers are in each
family's module. Backends ignore keys they do not know.

>>> ConfigLine.parse(b"config|protocol|0.1")
ConfigLine(key='protocol', value='0.1')
>>> ConfigLine.parse(b"config|ready").is_ready
True
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ._line import Cursor, Text, decode, put_field, put_last
from .errors import FormatError, Problem


class ConfigLine(NamedTuple):
    """``config|KEY|VALUE``, or ``config|ready`` (key ``ready``, no value)."""

    key: str
    value: Optional[str] = None

    @property
    def is_ready(self) -> bool:
        """True for ``config|ready``: the daemon now waits for registrations."""
        return self.value is None

    @classmethod
    def parse(cls, line: bytes) -> ConfigLine:
        """Parses one line, given without its ``\\n``."""
        c = Cursor(line)
        c.expect(b"config", "line type", "config")
        key = c.field("config key", "a key such as protocol or ready")
        if not key:
            raise c.error(Problem.INVALID, "config key", "a non-empty key")
        if key == b"ready":
            c.finish("config|ready")
            return READY
        value = c.last("config value", "config|KEY|VALUE")
        return cls(decode(key), decode(value))

    def format(self) -> bytes:
        """The line with its ``\\n``."""
        if self.value is None:
            if self.key != "ready":
                raise FormatError("config value", "only config|ready has no value")
            return b"config|ready\n"
        if self.key in ("", "ready"):
            raise FormatError("config key", "must be non-empty and not 'ready'")
        return b"config|%s|%s\n" % (
            put_field("config key", self.key),
            put_last("config value", self.value),
        )


READY = ConfigLine("ready")
"""The ``config|ready`` line."""


def entry(key: str, value: Text) -> ConfigLine:
    """A ``config|KEY|VALUE`` line."""
    return ConfigLine(key, value if isinstance(value, str) else decode(value))
