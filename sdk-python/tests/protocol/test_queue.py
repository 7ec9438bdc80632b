"""Queue 0.1 lines: parse, format, refusals."""

from __future__ import annotations

import pytest

from smtpd_sdk.protocol import FormatError, ParseError, Timestamp
from smtpd_sdk.protocol.queue import (
    LEASE_OPERATIONS,
    MAX_INSTANCE_LEN,
    Register,
    Request,
    Response,
    arguments,
    is_instance_id,
    parse_backend_line,
    parse_daemon_line,
)

TS = b"1731000001.000412"


def round_trip(cls, line: bytes):
    parsed = cls.parse(line)
    assert parsed.format() == line + b"\n", parsed
    return parsed


@pytest.mark.parametrize(
    "args",
    [
        b"message-create|0000000000000001",
        b"message-write|0000000000000002|0badcafe|0|aGVsbG8=",
        b"message-write|0000000000000002|0badcafe|32768|aGVsbG8=",
        b"message-commit|0000000000000003|0badcafe|10",
        b"message-read|0000000000000004|0badcafe|0|32768",
        b"message-delete|0000000000000005|0badcafe",
        b"message-corrupt|0000000000000006|0badcafe",
        b"envelope-create|0000000000000007|0badcafe|dmVyc2lvbjogMQ==",
        b"envelope-update|0000000000000008|0badcafe00000001|dmVyc2lvbjogMg==",
        b"envelope-load|0000000000000009|0badcafe00000001",
        b"envelope-delete|000000000000000a|0badcafe00000001",
        b"envelope-walk|000000000000000b|0000000000000000",
        b"envelope-walk|000000000000000b|ffffffffffffffff",
    ],
)
def test_every_request_round_trips(args: bytes) -> None:
    round_trip(Request, b"queue|0.1|%s|%s" % (TS, args))


def test_request_fields() -> None:
    r = Request.parse(b"queue|0.1|%s|message-write|0000000000000002|0badcafe|5|aGVsbG8=" % TS)
    assert (r.op, r.id, r.msgid, r.offset, r.data) == ("message-write", 2, 0x0BADCAFE, 5, b"hello")
    assert arguments(r.op) == ("msgid", "offset", "data")
    r = Request.parse(b"queue|0.1|%s|envelope-walk|000000000000000b|0000000000000000" % TS)
    assert (r.after, r.evpid) == (0, None)


@pytest.mark.parametrize(
    "args",
    [
        b"message-write|0000000000000002|0badcafe|0|",
        b"message-write|0000000000000002|00000000|0|aGVsbG8=",
        b"message-write|0000000000000002|0BADCAFE|0|aGVsbG8=",
        b"message-write|0000000000000002|0badcafe|0|not base64!",
        b"message-write|0000000000000002|0badcafe|0|aGVsbG8",
        b"message-write|0000000000000002|0badcafe|0|aGVsbG9=",
        b"message-write|0000000000000002|0badcafe|-1|aGVsbG8=",
        b"message-commit|0000000000000003|0badcafe|-1",
        b"message-commit|0000000000000003|0badcafe|18446744073709551616",
        b"message-commit|0000000000000003|0badcafe",
        b"message-read|0000000000000004|0badcafe|0",
        b"envelope-load|0000000000000009|0badcafe",
        b"envelope-load|0000000000000009|0badcafe00000000",
        b"envelope-load|0000000000000009|000000000badcafe",
        b"envelope-update|0000000000000008|0badcafe00000001|%%%",
        b"envelope-update|0000000000000008|0badcafe00000001|",
        b"envelope-create|0000000000000007|0badcafe|",
        b"envelope-walk|000000000000000b",
        b"envelope-walk|000000000000000b|0badcafe00000000",
        b"message-create|0000000000000001|x",
        b"message-create|00000001",
        b"message-create",
    ],
)
def test_bad_requests_are_refused(args: bytes) -> None:
    with pytest.raises(ParseError):
        Request.parse(b"queue|0.1|%s|%s" % (TS, args))


def test_failures_after_the_id_can_be_answered() -> None:
    with pytest.raises(ParseError) as info:
        Request.parse(b"queue|0.1|%s|message-frob|00000000000000ff|x" % TS)
    assert info.value.reply_to == ("message-frob", "00000000000000ff")
    assert info.value.reply_to.error_line("no") == b"message-frob-result|00000000000000ff|error|no\n"
    with pytest.raises(ParseError) as info:
        Request.parse(b"queue|0.1|%s|envelope-load|00000000000000ff|zz" % TS)
    assert info.value.reply_to.op == "envelope-load"
    with pytest.raises(ParseError) as info:
        Request.parse(b"queue|0.1|%s|message-frob|ff|x" % TS)
    assert info.value.reply_to is None


@pytest.mark.parametrize(
    "line",
    [
        b"message-create-result|0000000000000001|ok|0badcafe",
        b"message-write-result|0000000000000002|ok",
        b"message-commit-result|0000000000000003|error|size mismatch",
        b"message-read-result|0000000000000004|found|aGVsbG8=",
        b"message-read-result|0000000000000004|found|",
        b"message-read-result|0000000000000004|not-found",
        b"message-delete-result|0000000000000005|ok",
        b"message-corrupt-result|0000000000000006|not-found",
        b"envelope-create-result|0000000000000007|ok|0badcafe00000001",
        b"envelope-update-result|0000000000000008|not-found",
        b"envelope-load-result|0000000000000009|found|dmVyc2lvbjogMQ==",
        b"envelope-delete-result|000000000000000a|ok",
        b"envelope-walk-result|000000000000000b|found|0badcafe00000001|dmVyc2lvbjogMQ==",
        b"envelope-walk-result|000000000000000b|done",
        b"envelope-walk-result|000000000000000b|error",
        b"envelope-walk-result|000000000000000b|error|disk | on fire",
    ],
)
def test_every_answer_round_trips(line: bytes) -> None:
    round_trip(Response, line)


def test_answer_fields() -> None:
    r = Response.parse(b"envelope-walk-result|000000000000000b|found|0badcafe00000001|aGk=")
    assert (r.status, r.evpid, r.data) == ("found", 0x0BADCAFE00000001, b"hi")
    r = Response.parse(b"message-create-result|0000000000000001|ok|0badcafe")
    assert r.msgid == 0x0BADCAFE


@pytest.mark.parametrize(
    "line",
    [
        b"message-create-result|0000000000000001|ok",
        b"message-create-result|0000000000000001|ok|00000000",
        b"message-create-result|0000000000000001|ok|0badcafe|x",
        b"message-write-result|0000000000000002|found|aGVsbG8=",
        b"message-write-result|0000000000000002|not-found",
        b"message-read-result|0000000000000004|found|not base64!",
        b"message-read-result|0000000000000004|found",
        b"envelope-load-result|0000000000000009|found|",
        b"envelope-create-result|0000000000000007|ok|0badcafe00000000",
        b"envelope-create-result|0000000000000007|ok|0badcafe",
        b"envelope-walk-result|000000000000000b|found|0badcafe00000001",
        b"envelope-walk-result|000000000000000b|found|0badcafe00000001|",
        b"envelope-walk-result|000000000000000b|ok",
        b"envelope-walk-result|000000000000000b|done|x",
        b"message-delete-result|0000000000000005|ok|extra",
        b"message-delete-result|0000000000000005|oops",
        b"frob-result|0000000000000005|ok",
        b"message-delete-result|00000005|ok",
    ],
)
def test_bad_answers_are_refused(line: bytes) -> None:
    with pytest.raises(ParseError):
        Response.parse(line)


def test_formatting_refuses_what_the_parser_refuses() -> None:
    ts = Timestamp(1)
    with pytest.raises(FormatError):
        Request(ts, "message-write", 1, msgid=1, offset=0, data=b"").format()
    with pytest.raises(FormatError):
        Request(ts, "message-delete", 1, msgid=0).format()
    with pytest.raises(FormatError):
        Request(ts, "envelope-load", 1, evpid=0x0BADCAFE00000000).format()
    with pytest.raises(FormatError):
        Request(ts, "frob", 1).format()
    with pytest.raises(FormatError):
        Response("message-create", 1, "ok").format()
    with pytest.raises(FormatError):
        Response("envelope-load", 1, "found", data=b"").format()
    with pytest.raises(FormatError):
        Response("message-delete", 1, "not-found").format()
    with pytest.raises(FormatError):
        Response("message-delete", 1, "error", message="a\nb").format()
    assert Request(ts, "envelope-walk", 1, after=0).format().endswith(b"|0000000000000000\n")
    assert Response("message-read", 1, "found", data=b"").format() == b"message-read-result|0000000000000001|found|\n"


def test_registrations() -> None:
    assert round_trip(Register, b"register|some-capability") == Register("some-capability")
    assert round_trip(Register, b"register|ready") == Register()
    for line in [b"register", b"register|", b"register|ready|x", b"register|cap|x", b"registered|ready"]:
        with pytest.raises(ParseError):
            Register.parse(line)


def test_either_side_dispatches() -> None:
    assert parse_daemon_line(b"config|protocol|0.1").key == "protocol"
    assert isinstance(parse_daemon_line(b"queue|0.1|%s|message-create|0000000000000001" % TS), Request)
    assert isinstance(parse_backend_line(b"register|ready"), Register)
    assert isinstance(parse_backend_line(b"message-delete-result|0000000000000005|ok"), Response)


LEASE_REQUESTS = [
    b"envelope-claim|0000000000000001|0badcafe00000001|mx1.example.org:4f2a|60",
    b"envelope-claim|0000000000000001|0badcafe00000001|a|86400",
    b"envelope-release|0000000000000002|0badcafe00000001|mx1.example.org:4f2a",
    b"envelope-walk-free|0000000000000003|0000000000000000|mx1.example.org:4f2a",
]


@pytest.mark.parametrize("args", LEASE_REQUESTS)
def test_lease_requests_round_trip(args: bytes) -> None:
    line = b"queue|0.1|%s|%s" % (TS, args)
    assert Request.parse(line).format() == line + b"\n"


def test_lease_request_fields() -> None:
    r = Request.parse(b"queue|0.1|%s|envelope-claim|0000000000000001|0badcafe00000001|mx-1_a.b|30" % TS)
    assert (r.op, r.evpid, r.instance, r.seconds) == ("envelope-claim", 0x0BADCAFE00000001, "mx-1_a.b", 30)
    assert r.op in LEASE_OPERATIONS
    w = Request.parse(b"queue|0.1|%s|envelope-walk-free|0000000000000003|0000000000000000|mx1" % TS)
    assert (w.after, w.instance) == (0, "mx1")


@pytest.mark.parametrize(
    "args",
    [
        b"envelope-claim|0000000000000001|0badcafe00000001|mx1|0",
        b"envelope-claim|0000000000000001|0badcafe00000001|mx1|86401",
        b"envelope-claim|0000000000000001|0badcafe00000001||60",
        b"envelope-claim|0000000000000001|0badcafe00000001|mx 1|60",
        b"envelope-claim|0000000000000001|0badcafe00000001|mx1",
        b"envelope-release|0000000000000002|0badcafe00000001",
        b"envelope-walk-free|0000000000000003|0000000000000000|m/x",
    ],
)
def test_bad_lease_requests_are_refused_and_answerable(args: bytes) -> None:
    with pytest.raises(ParseError) as e:
        Request.parse(b"queue|0.1|%s|%s" % (TS, args))
    assert e.value.reply_to is not None


@pytest.mark.parametrize(
    "line",
    [
        b"envelope-claim-result|0000000000000001|ok",
        b"envelope-claim-result|0000000000000001|busy",
        b"envelope-claim-result|0000000000000001|not-found",
        b"envelope-release-result|0000000000000002|ok",
        b"envelope-walk-free-result|0000000000000003|found|0badcafe00000001|dmVyc2lvbjogMQ==",
        b"envelope-walk-free-result|0000000000000003|done",
    ],
)
def test_lease_answers_round_trip(line: bytes) -> None:
    assert Response.parse(line).format() == line + b"\n"


@pytest.mark.parametrize(
    "line",
    [
        b"envelope-walk-result|0000000000000001|busy",
        b"envelope-release-result|0000000000000002|busy",
        b"envelope-claim-result|0000000000000001|busy|someone",
        b"envelope-walk-free-result|0000000000000003|ok",
    ],
)
def test_bad_lease_answers_are_refused(line: bytes) -> None:
    with pytest.raises(ParseError):
        Response.parse(line)


def test_lease_formatting_refuses_forged_fields() -> None:
    ts = Request.parse(b"queue|0.1|%s|envelope-walk|000000000000000b|0000000000000000" % TS).timestamp
    with pytest.raises(FormatError):
        Request(ts, "envelope-release", 1, evpid=0x0BADCAFE00000001, instance="a|b").format()
    with pytest.raises(FormatError):
        Request(ts, "envelope-claim", 1, evpid=0x0BADCAFE00000001, instance="a", seconds=0).format()
    assert is_instance_id("x" * MAX_INSTANCE_LEN)
    assert not is_instance_id("x" * (MAX_INSTANCE_LEN + 1))
