"""Table 0.1 lines: parse, format, refusals."""

from __future__ import annotations

import pytest

from smtpd_sdk.protocol import FormatError, ParseError, Problem, Timestamp
from smtpd_sdk.protocol.table import (
    SERVICES,
    Register,
    Request,
    Response,
    answer,
    is_valid_answer,
    parse_backend_line,
    parse_daemon_line,
)


def round_trip(cls, line: bytes):
    parsed = cls.parse(line)
    assert parsed.format() == line + b"\n"
    return parsed


def test_requests_round_trip() -> None:
    r = round_trip(Request, b"table|0.1|1731000001.000412|vusers|lookup|credentials|5e3a91c0|alice")
    assert r == Request(Timestamp(1731000001, 412), "vusers", "lookup", 0x5E3A91C0, "credentials", "alice")
    r = round_trip(Request, b"table|0.1|1731000002.010101|vusers|check|mailaddr|77aa00ff|bob@example.org")
    assert (r.op, r.key) == ("check", "bob@example.org")
    r = round_trip(Request, b"table|0.1|1731000200.120000|egress|fetch|source|11aa22bb")
    assert (r.op, r.service, r.key) == ("fetch", "source", None)
    r = round_trip(Request, b"table|0.1|1731000100.000001|vusers|update|4d3c2b1a")
    assert (r.op, r.service, r.id) == ("update", None, 0x4D3C2B1A)


def test_the_key_is_the_rest_of_the_line() -> None:
    r = round_trip(Request, b"table|0.1|1.000000|t|lookup|alias|00000001|a|b|c")
    assert r.key == "a|b|c"
    r = round_trip(Request, b"table|0.1|1.000000|t|lookup|alias|00000001|")
    assert r.key == ""


def test_eight_bit_keys_survive() -> None:
    r = round_trip(Request, b"table|0.1|1.000000|t|lookup|alias|00000001|caf\xe9")
    assert r.key == "caf\udce9"


def test_every_service_parses() -> None:
    for service in SERVICES:
        r = round_trip(Request, b"table|0.1|1.000000|t|check|%s|00000001|k" % service.encode())
        assert r.service == service


@pytest.mark.parametrize(
    "line",
    [
        b"table|0.2|1.000000|t|update|00000001",
        b"table|0.1|1|t|update|00000001",
        b"table|0.1|1.00000|t|update|00000001",
        b"table|0.1|-1.000000|t|update|00000001",
        b"table|0.1|1.000000|t|update|00000001|x",
        b"table|0.1|1.000000|t|update",
        b"table|0.1|1.000000|t|fetch|source|00000001|x",
        b"table|0.1|1.000000|t|lookup|alias|00000001",
        b"table|0.1|1.000000|t|check|alias|00000001",
        b"table|0.1|1.000000|t|lookup|alias|0000000G|k",
        b"table|0.1|1.000000|t|lookup|alias|0000ABCD|k",
        b"table|0.1|1.000000|t|lookup|alias|abcd|k",
        b"table|0.1|1.000000|t|frob|00000001",
        b"table|0.1|1.000000|t|lookup|alias|00000001|k\r",
        b"lookup|0.1|1.000000|t|lookup|alias|00000001|k",
        b"",
    ],
)
def test_bad_requests_are_refused(line: bytes) -> None:
    with pytest.raises(ParseError):
        Request.parse(line)


def test_errors_name_field_expectation_and_line() -> None:
    with pytest.raises(ParseError) as info:
        Request.parse(b"table|0.1|1.000000|t|lookup|alias|0000ABCD|key")
    e = info.value
    assert (e.problem, e.field) == (Problem.INVALID, "request id")
    assert "8 lower-case hex digits" in str(e)
    assert "0000ABCD" in str(e)
    assert e.reply_to is None


def test_long_lines_are_cut_in_errors() -> None:
    with pytest.raises(ParseError) as info:
        Request.parse(b"table|0.1|x|" + b"a" * 1000)
    assert info.value.line.endswith("...")
    assert len(info.value.line) == 203


@pytest.mark.parametrize(
    "line,op",
    [
        (b"table|0.1|1.000000|t|lookup|nosuch|0000abcd|key", "lookup"),
        (b"table|0.1|1.000000|t|check|nosuch|0000abcd|key", "check"),
        (b"table|0.1|1.000000|t|fetch|nosuch|0000abcd", "fetch"),
        (b"table|0.1|1.000000|t|lookup|alias|0000abcd", "lookup"),
    ],
)
def test_answerable_failures_carry_reply_to(line: bytes, op: str) -> None:
    with pytest.raises(ParseError) as info:
        Request.parse(line)
    reply_to = info.value.reply_to
    assert reply_to is not None and (reply_to.op, reply_to.id) == (op, "0000abcd")
    answer_line = reply_to.error_line("unknown service\nnope")
    assert answer_line == b"%s-result|0000abcd|error|unknown service nope\n" % op.encode()
    assert Response.parse(answer_line[:-1]).status == "error"


def test_responses_round_trip() -> None:
    for line in [
        b"lookup-result|5e3a91c0|found|alice:$2b$09$abc",
        b"check-result|77aa00ff|not-found",
        b"check-result|77aa00ff|found",
        b"lookup-result|9b9b0001|error|database unavailable",
        b"lookup-result|9b9b0001|error",
        b"lookup-result|9b9b0001|error|",
        b"update-result|4d3c2b1a|ok",
        b"update-result|4d3c2b1a|error|x|y",
        b"fetch-result|11aa22bb|found|[2001:db8::10]",
        b"fetch-result|11aa22bb|not-found",
    ]:
        round_trip(Response, line)
    r = round_trip(Response, b"lookup-result|00000001|found|left|middle|right")
    assert r == Response("lookup", 1, "found", "left|middle|right")
    assert Response.parse(b"lookup-result|00000001|error").value is None
    assert Response.parse(b"lookup-result|00000001|error|").value == ""


@pytest.mark.parametrize(
    "line",
    [
        b"lookup-result|5e3a91c0|found|",
        b"lookup-result|5e3a91c0|found",
        b"lookup-result|5E3A91C0|not-found",
        b"lookup-result|5e3a91c|not-found",
        b"lookup-result|5e3a91c0|errors",
        b"lookup-result|5e3a91c0|ok",
        b"update-result|4d3c2b1a|ok|x",
        b"update-result|4d3c2b1a|found",
        b"check-result|77aa00ff|not-found|x",
        b"check-result|77aa00ff|found|x",
        b"frob-result|4d3c2b1a|ok",
        b"lookup-result|00000001|found|a\r",
        b"lookup-result",
    ],
)
def test_bad_responses_are_refused(line: bytes) -> None:
    with pytest.raises(ParseError):
        Response.parse(line)


def test_formatting_refuses_forged_lines() -> None:
    ts = Timestamp(1, 0)
    with pytest.raises(FormatError):
        Request(ts, "t", "lookup", 1, "alias", "a\nb").format()
    with pytest.raises(FormatError):
        Request(ts, "a|b", "update", 1).format()
    with pytest.raises(FormatError):
        Request(ts, "t", "lookup", 1, "nosuch", "k").format()
    with pytest.raises(FormatError):
        Request(ts, "t", "lookup", 1 << 32, "alias", "k").format()
    with pytest.raises(FormatError):
        Request(ts, "t", "lookup", 1, "alias").format()
    with pytest.raises(FormatError):
        Response("lookup", 1, "found", "").format()
    with pytest.raises(FormatError):
        Response("lookup", 1, "found", "a\rb").format()
    with pytest.raises(FormatError):
        Response("update", 1, "found", "x").format()
    with pytest.raises(FormatError):
        Response("frob", 1, "ok").format()
    with pytest.raises(FormatError):
        answer("lookup", -1, "not-found")


def test_answer_helper_takes_bytes() -> None:
    assert answer("lookup", 0xAB, "found", b"caf\xc3\xa9") == "lookup-result|000000ab|found|café\n".encode()


def test_validity_table() -> None:
    assert is_valid_answer("check", "found", None)
    assert not is_valid_answer("check", "found", "x")
    assert is_valid_answer("fetch", "found", "x")
    assert not is_valid_answer("update", "not-found", None)
    assert is_valid_answer("update", "error", "x")


def test_registrations() -> None:
    assert round_trip(Register, b"register|credentials") == Register("credentials")
    assert round_trip(Register, b"register|ready") == Register()
    for line in [b"register|none", b"register|alias|x", b"register|", b"register", b"registered|ready"]:
        with pytest.raises(ParseError):
            Register.parse(line)
    with pytest.raises(FormatError):
        Register("nosuch").format()


def test_either_side_dispatches() -> None:
    assert parse_daemon_line(b"config|ready").is_ready
    assert isinstance(parse_daemon_line(b"table|0.1|1.000000|t|update|00000001"), Request)
    assert isinstance(parse_backend_line(b"register|ready"), Register)
    assert isinstance(parse_backend_line(b"update-result|00000001|ok"), Response)
