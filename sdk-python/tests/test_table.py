"""smtpd_sdk.table.run: handshake, dispatch, every request answered."""

from __future__ import annotations

import os

import pytest

from smtpd_sdk import BackendError, table
from smtpd_sdk.protocol.table import SERVICES

from .harness import TABLE_CONFIG, answers, exchange

REQ = b"table|0.1|1731000001.000412|t|"


def test_registrations_follow_the_services() -> None:
    out = exchange(table.run, TABLE_CONFIG, lookup=lambda s, k: None, services=["alias", "userinfo"])
    assert out == [b"register|alias", b"register|userinfo", b"register|ready"]
    out = exchange(table.run, TABLE_CONFIG, lookup=lambda s, k: None)
    assert out == [b"register|%s" % s.encode() for s in SERVICES] + [b"register|ready"]


def test_bad_service_lists_are_refused() -> None:
    with pytest.raises(ValueError):
        exchange(table.run, TABLE_CONFIG, services=["frob"])
    with pytest.raises(ValueError):
        exchange(table.run, TABLE_CONFIG, services=[])


def test_every_operation() -> None:
    data = {"postmaster": "root"}
    updates = []
    out = exchange(
        table.run,
        TABLE_CONFIG
        + [
            REQ + b"lookup|alias|00000001|postmaster",
            REQ + b"lookup|alias|00000002|nobody",
            REQ + b"check|alias|00000003|postmaster",
            REQ + b"check|alias|00000004|nobody",
            REQ + b"fetch|source|00000005",
            REQ + b"update|00000006",
        ],
        lookup=lambda s, k: data.get(k),
        check=lambda s, k: k in data,
        fetch=lambda s: "192.0.2.1",
        update=lambda: updates.append(1),
    )
    assert answers(out) == [
        b"lookup-result|00000001|found|root",
        b"lookup-result|00000002|not-found",
        b"check-result|00000003|found",
        b"check-result|00000004|not-found",
        b"fetch-result|00000005|found|192.0.2.1",
        b"update-result|00000006|ok",
    ]
    assert updates == [1]


def test_callbacks_can_come_from_an_object() -> None:
    class Backend:
        def lookup(self, service: str, key: str) -> str:
            return "%s:%s" % (service, key)

    out = exchange(table.run, TABLE_CONFIG + [REQ + b"lookup|alias|00000001|x"], backend=Backend())
    assert answers(out) == [b"lookup-result|00000001|found|alias:x"]


def test_requests_without_an_answer_are_answered_error(capsys: pytest.CaptureFixture) -> None:
    out = exchange(
        table.run,
        TABLE_CONFIG
        + [
            REQ + b"lookup|userinfo|00000001|x",
            REQ + b"check|alias|00000002|x",
            REQ + b"lookup|frobnicate|00000003|x",
            REQ + b"garbage",
            REQ + b"lookup|alias|00000004|x",
        ],
        lookup=lambda s, k: "v",
        services=["alias"],
    )
    assert answers(out) == [
        b"lookup-result|00000001|error|service userinfo not served",
        b"check-result|00000002|error|operation check not supported",
        b"lookup-result|00000003|error|unknown service",
        b"lookup-result|00000004|found|v",
    ]
    err = capsys.readouterr().err
    assert "unknown service" in err and "garbage" in err


def test_failing_callbacks_give_error(capsys: pytest.CaptureFixture) -> None:
    def lookup(service: str, key: str) -> str:
        if key == "boom":
            raise RuntimeError("database\nunavailable")
        if key == "known":
            raise BackendError("no connection")
        if key == "empty":
            return ""
        if key == "newline":
            return "a\nb"
        return "fine"

    out = exchange(
        table.run,
        TABLE_CONFIG + [REQ + b"lookup|alias|0000000%d|%s" % (i, k) for i, k in enumerate(
            [b"boom", b"known", b"empty", b"newline", b"other"])],
        lookup=lookup,
    )
    assert answers(out) == [
        b"lookup-result|00000000|error|RuntimeError: database unavailable",
        b"lookup-result|00000001|error|no connection",
        b"lookup-result|00000002|error|backend returned an invalid value",
        b"lookup-result|00000003|error|backend returned an invalid value",
        b"lookup-result|00000004|found|fine",
    ]
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError" in err
    assert "no connection" in err and err.count("Traceback") == 1


def test_eight_bit_values_pass() -> None:
    out = exchange(table.run, TABLE_CONFIG + [REQ + b"lookup|alias|00000001|caf\xe9"], lookup=lambda s, k: k)
    assert answers(out) == [b"lookup-result|00000001|found|caf\xe9"]


def test_on_config_gets_the_config() -> None:
    seen = {}
    exchange(table.run, TABLE_CONFIG[:-1] + [b"config|future|a|b", b"config|ready"],
             lookup=lambda s, k: None, on_config=seen.update)
    assert seen == {"smtpd-version": "0.1.0", "protocol": "0.1", "tablename": "t", "future": "a|b"}


def test_unsupported_version_exits_1_without_registering(capfd: pytest.CaptureFixture) -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, b"config|smtpd-version|0.1.0\nconfig|protocol|0.2\nconfig|ready\n")
    os.close(in_w)
    with pytest.raises(SystemExit) as info:
        table.run(lookup=lambda s, k: None, infd=in_r, outfd=out_w)
    assert info.value.code == 1
    os.close(out_w)
    assert os.read(out_r, 100) == b""
    assert "unsupported protocol version 0.2 (this backend speaks 0.1)" in capfd.readouterr().err
    os.close(in_r)
    os.close(out_r)


def test_end_of_input_during_the_handshake_returns() -> None:
    assert exchange(table.run, [b"config|protocol|0.1"], lookup=lambda s, k: None) == []


def test_a_bad_handshake_line_exits_1() -> None:
    with pytest.raises(SystemExit):
        exchange(table.run, [b"hello"], lookup=lambda s, k: None)


def test_many_answers_are_written_together(monkeypatch: pytest.MonkeyPatch) -> None:
    from smtpd_sdk import _runtime

    writes = []
    real = _runtime.write_all

    def counting(fd: int, data: bytes) -> None:
        writes.append(data.count(b"\n"))
        real(fd, data)

    monkeypatch.setattr(_runtime, "write_all", counting)
    lines = TABLE_CONFIG + [REQ + b"lookup|alias|%08x|k" % i for i in range(500)]
    out = exchange(table.run, lines, lookup=lambda s, k: "v")
    assert len(answers(out)) == 500
    assert sum(writes) == len(out)
    assert len(writes) < 50, writes
