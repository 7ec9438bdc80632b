"""What the synchronous backends share: line splitting and the handshake."""

from __future__ import annotations

import pytest

from smtpd_sdk import BackendError
from smtpd_sdk._runtime import Handshake, LineSplitter, callbacks, describe_failure


def test_lines_are_split_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"ab") == []
    assert s.feed(b"c\nde") == [b"abc"]
    assert s.feed(b"f\n\ng\nh") == [b"def", b"", b"g"]
    assert s.finish() == [b"h"]
    assert s.finish() == []


def test_too_long_lines_are_skipped_once(capsys: pytest.CaptureFixture) -> None:
    s = LineSplitter(max_line=10)
    assert s.feed(b"0123456789") == []
    assert s.feed(b"0123456789") == []
    assert s.feed(b"xyz\nok\n") == [b"ok"]
    assert s.feed(b"short\n" + b"x" * 20 + b"\nlast\n") == [b"short", b"last"]
    assert s.feed(b"a" * 11) == []
    assert s.finish() == []
    err = capsys.readouterr().err
    assert err.count("too long") == 3


def test_handshake_collects_config_and_checks_the_version(capsys: pytest.CaptureFixture) -> None:
    h = Handshake("0.1")
    assert not h.feed(b"config|smtpd-version|7.8.0")
    assert not h.feed(b"config|protocol|0.1")
    assert not h.feed(b"config|future|x|y")
    assert h.feed(b"config|ready")
    assert h.config == {"smtpd-version": "7.8.0", "protocol": "0.1", "future": "x|y"}
    with pytest.raises(SystemExit) as info:
        Handshake("0.1").feed(b"config|protocol|0.2")
    assert info.value.code == 1
    assert capsys.readouterr().err == "unsupported protocol version 0.2 (this backend speaks 0.1)\n"
    with pytest.raises(SystemExit):
        Handshake("0.1").feed(b"table|0.1|x")


def test_failures_are_described_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert describe_failure("lookup", BackendError("db\ndown")) == "db down"
    assert "Traceback" not in capsys.readouterr().err
    try:
        raise KeyError("k")
    except KeyError as e:
        assert describe_failure("lookup", e) == "KeyError: 'k'"
    assert "Traceback" in capsys.readouterr().err
    assert describe_failure("x", BackendError()) == "BackendError"


def test_callbacks_are_found_on_objects_and_overridden() -> None:
    class B:
        def lookup(self) -> None:
            pass

        message_create = 3

    b = B()
    found = callbacks(b, ["lookup", "check"], {"check": print})
    assert found == {"lookup": b.lookup, "check": print}
    with pytest.raises(TypeError):
        callbacks(b, ["message-create"], {})
