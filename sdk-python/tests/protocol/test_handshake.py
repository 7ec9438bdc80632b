"""config lines, shared by the three families."""

from __future__ import annotations

import pytest

from smtpd_sdk.protocol import ConfigLine, FormatError, ParseError
from smtpd_sdk.protocol.handshake import READY, entry


@pytest.mark.parametrize(
    "line", [b"config|protocol|0.1", b"config|ready", b"config|admd|mx|example", b"config|empty|"]
)
def test_config_lines_round_trip(line: bytes) -> None:
    assert ConfigLine.parse(line).format() == line + b"\n"


def test_values() -> None:
    assert ConfigLine.parse(b"config|admd|mx|example") == ConfigLine("admd", "mx|example")
    assert ConfigLine.parse(b"config|ready") == READY
    assert READY.is_ready and not entry("protocol", "0.1").is_ready
    assert entry("k", b"caf\xe9").format() == b"config|k|caf\xe9\n"


@pytest.mark.parametrize(
    "line", [b"config", b"config|ready|x", b"config|protocol", b"conf|a|b", b"config||x", b"config|a|b\r"]
)
def test_bad_config_lines(line: bytes) -> None:
    with pytest.raises(ParseError):
        ConfigLine.parse(line)


def test_formatting_refuses_bad_keys() -> None:
    for bad in [ConfigLine("ready", "x"), ConfigLine("", "x"), ConfigLine("a|b", "x"), ConfigLine("k", "a\nb"),
                ConfigLine("k")]:
        with pytest.raises(FormatError):
            bad.format()
