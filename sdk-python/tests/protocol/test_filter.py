"""Filter 0.7 lines: parse, format, refusals."""

from __future__ import annotations

import pytest

from smtpd_sdk.protocol import FormatError, ParseError, Timestamp
from smtpd_sdk.protocol.filter import (
    EVENTS,
    PHASES,
    UNKNOWN_PARAMS,
    DataLine,
    Decision,
    FilterResult,
    Register,
    Report,
    Request,
    dataline,
    parse_backend_line,
    parse_daemon_line,
    parse_input,
    parse_output,
)

SID = b"a1b2c3d4e5f60718"

REPORTS = [
    b"link-connect|a1b2c3d4e5f60718|host.example.net|pass|192.0.2.7:50123|198.51.100.2:25",
    b"link-connect|a1b2c3d4e5f60718|<unknown>|error|unix:/var/run/smtpd.sock|unix:/var/run/smtpd.sock",
    b"link-disconnect|a1b2c3d4e5f60718",
    b"link-greeting|a1b2c3d4e5f60718|mx.example.org",
    b"link-identify|a1b2c3d4e5f60718|EHLO|helo.example.net",
    b"link-tls|a1b2c3d4e5f60718|TLSv1.3:TLS_AES_256_GCM_SHA384:256",
    b"link-auth|a1b2c3d4e5f60718|pass|alice",
    b"tx-reset|a1b2c3d4e5f60718|0badcafe",
    b"tx-begin|a1b2c3d4e5f60718|0badcafe",
    b"tx-mail|a1b2c3d4e5f60718|0badcafe|ok|alice@example.net",
    b"tx-rcpt|a1b2c3d4e5f60718|0badcafe|permfail|nobody@example.org",
    b"tx-envelope|a1b2c3d4e5f60718|0badcafe|0badcafe00000001",
    b"tx-data|a1b2c3d4e5f60718|0badcafe|tempfail",
    b"tx-commit|a1b2c3d4e5f60718|0badcafe|4096",
    b"tx-rollback|a1b2c3d4e5f60718|0badcafe",
    b"protocol-client|a1b2c3d4e5f60718|MAIL FROM:<a@b> SIZE=10",
    b"protocol-server|a1b2c3d4e5f60718|250 2.0.0 Ok",
    b"filter-report|a1b2c3d4e5f60718|proc|guard|note with | pipe",
    b"filter-response|a1b2c3d4e5f60718|mail-from|reject|550 5.7.1 no",
    b"filter-response|a1b2c3d4e5f60718|connected|proceed",
    b"timeout|a1b2c3d4e5f60718",
    b"some-future-event|a1b2c3d4e5f60718|x|y",
    b"another-future-event|a1b2c3d4e5f60718",
]


def round_trip(parse, line: bytes):
    parsed = parse(line)
    assert parsed.format() == line + b"\n", parsed
    return parsed


@pytest.mark.parametrize("params", REPORTS)
@pytest.mark.parametrize("subsystem", [b"smtp-in", b"smtp-out"])
def test_every_report_round_trips(params: bytes, subsystem: bytes) -> None:
    parsed = round_trip(parse_input, b"report|0.7|1731000000.100000|%s|%s" % (subsystem, params))
    assert isinstance(parsed, Report)
    assert parsed.session == 0xA1B2C3D4E5F60718


def test_every_known_event_is_covered() -> None:
    covered = {line.split(b"|")[0].decode() for line in REPORTS}
    assert set(EVENTS) <= covered


def test_report_parameters_are_typed() -> None:
    r = parse_input(b"report|0.7|1.000000|smtp-in|tx-envelope|" + SID + b"|0badcafe|0badcafe00000001")
    assert r.params == {"msgid": 0x0BADCAFE, "evpid": 0x0BADCAFE00000001}
    r = parse_input(b"report|0.7|1.000000|smtp-in|tx-commit|" + SID + b"|0badcafe|4096")
    assert r.params["size"] == 4096
    r = parse_input(b"report|0.7|1.000000|smtp-in|filter-response|" + SID + b"|helo|proceed")
    assert r.params == {"phase": "helo", "response": "proceed", "param": None}
    r = parse_input(b"report|0.7|1.000000|smtp-in|filter-response|" + SID + b"|helo|reject|550 a|b")
    assert r.params["param"] == "550 a|b"
    r = parse_input(b"report|0.7|1.000000|smtp-in|some-future-event|" + SID + b"|x|y")
    assert (r.event, r.params) == ("some-future-event", {UNKNOWN_PARAMS: "x|y"})


@pytest.mark.parametrize("phase", PHASES)
def test_every_phase_round_trips(phase: str) -> None:
    line = b"filter|0.7|1731000003.250000|smtp-in|%s|%s|5d0a000100000001|" % (phase.encode(), SID)
    parsed = round_trip(parse_input, line)
    assert isinstance(parsed, Request) and parsed.phase == phase and parsed.param == b""


def test_request_parameters() -> None:
    line = b"filter|0.7|1.000000|smtp-in|connect|" + SID + b"|0000000000000001|host.example.net|192.0.2.7"
    r = round_trip(parse_input, line)
    assert r.connect_params() == ("host.example.net", "192.0.2.7")
    r = round_trip(parse_input, b"filter|0.7|1.000000|smtp-in|data-line|" + SID + b"|0000000000000001|caf\xe9 8-bit")
    assert r.param == b"caf\xe9 8-bit" and r.text == "caf\udce9 8-bit"


def test_ids_are_read_like_strtoull_and_written_in_full() -> None:
    out = parse_output(b"filter-result|A1B2|1|proceed")
    assert out == FilterResult(0xA1B2, 1, Decision("proceed"))
    assert out.format() == b"filter-result|000000000000a1b2|0000000000000001|proceed\n"
    r = parse_input(b"report|0.7|1.000000|smtp-in|link-disconnect|ABC")
    assert r.session == 0xABC


@pytest.mark.parametrize(
    "line",
    [
        b"filter|0.7|1.000000|smtp-out|connect|" + SID + b"|0000000000000004|h|1.2.3.4",
        b"filter|0.7|1.000000|smtp-in|no-such-phase|" + SID + b"|0000000000000004|",
        b"filter|0.6|1.000000|smtp-in|data|" + SID + b"|0000000000000008|",
        b"filter|0.7|1|smtp-in|data|" + SID + b"|0000000000000008|",
        b"filter|0.7|1.000000|smtp-in|data|" + SID + b"|0000000000000008",
        b"filter|0.7|1.000000|smtp-in|data|zz|0000000000000008|",
        b"filter|0.7|1.000000|smtp-in|data|11112222333344445|0000000000000008|",
        b"report|0.7|1.000000|smtp-mid|link-disconnect|" + SID,
        b"report|0.7|1.000000|smtp-in|link-disconnect|" + SID + b"|x",
        b"report|0.7|1.000000|smtp-in|link-connect|" + SID + b"|h|maybe|a:1|b:2",
        b"report|0.7|1.000000|smtp-in|link-connect|" + SID + b"|h|pass|a:1",
        b"report|0.7|1.000000|smtp-in|link-auth|" + SID + b"|ok|alice",
        b"report|0.7|1.000000|smtp-in|tx-begin|" + SID + b"|0BADCAFE",
        b"report|0.7|1.000000|smtp-in|tx-mail|" + SID + b"|0badcafe|ok",
        b"report|0.7|1.000000|smtp-in|tx-envelope|" + SID + b"|0badcafe|0badcafe0001",
        b"report|0.7|1.000000|smtp-in|tx-commit|" + SID + b"|0badcafe|-1",
        b"report|0.7|1.000000|smtp-in|link-greeting",
        b"report|1.000000|smtp-in|link-disconnect|" + SID,
        b"filter|0.7|1.000000|smtp-in|data-line|" + SID + b"|0000000000000002|a\rb",
        b"config|ready",
    ],
)
def test_bad_inputs_are_refused(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_input(line)


def test_every_decision_round_trips() -> None:
    for d in [b"proceed", b"junk", b"reject|550 5.7.1 Sender not allowed", b"disconnect|421 4.7.0 Try later",
              b"rewrite|<postmaster@example.net>", b"report|a note", b"rewrite|", b"report|a|b"]:
        round_trip(parse_output, b"filter-result|%s|5d0a000100000001|%s" % (SID, d))
    for text in [b"", b".", b"..dotted", b"a|b", b"caf\xe9"]:
        parsed = round_trip(parse_output, b"filter-dataline|%s|5d0a000100000002|%s" % (SID, text))
        assert parsed == DataLine(0xA1B2C3D4E5F60718, 0x5D0A000100000002, text)


@pytest.mark.parametrize(
    "line",
    [
        b"filter-result|" + SID + b"|5d0a000100000001|proceed|x",
        b"filter-result|" + SID + b"|5d0a000100000001|junk|x",
        b"filter-result|" + SID + b"|5d0a000100000001|reject",
        b"filter-result|" + SID + b"|5d0a000100000001|reject|",
        b"filter-result|" + SID + b"|5d0a000100000001|disconnect|",
        b"filter-result|" + SID + b"|5d0a000100000001|rewrite",
        b"filter-result|" + SID + b"|5d0a000100000001|maybe",
        b"filter-result|zzzz|5d0a000100000001|proceed",
        b"filter-result|" + SID + b"|proceed",
        b"filter-result||5d0a000100000001|proceed",
        b"filter-dataline|" + SID + b"|5d0a000100000002",
        b"filter-verdict|" + SID + b"|5d0a000100000001|proceed",
        b"report|1731000000.100000|smtp-in|" + SID + b"|note",
    ],
)
def test_bad_outputs_are_refused(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_output(line)


def test_formatting_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(FormatError):
        FilterResult(1, 1, Decision("reject", "")).format()
    with pytest.raises(FormatError):
        FilterResult(1, 1, Decision("reject")).format()
    with pytest.raises(FormatError):
        FilterResult(1, 1, Decision("proceed", "x")).format()
    with pytest.raises(FormatError):
        FilterResult(1, 1, Decision("maybe")).format()
    with pytest.raises(FormatError):
        FilterResult(1, 1, Decision("rewrite", "a\nb")).format()
    with pytest.raises(FormatError):
        FilterResult(1 << 64, 1, Decision("proceed")).format()
    with pytest.raises(FormatError):
        dataline(1, 1, b"a\nb")
    with pytest.raises(FormatError):
        Request(Timestamp(1), "nosuch", 1, 1, b"").format()
    with pytest.raises(FormatError):
        Report(Timestamp(1), "smtp-in", "link-greeting", 1, {}).format()
    with pytest.raises(FormatError):
        Report(Timestamp(1), "smtp-in", "link-identify", 1, {"method": "a|b", "identity": "x"}).format()
    assert dataline(1, 2, "é") == "filter-dataline|0000000000000001|0000000000000002|é\n".encode()


def test_registrations() -> None:
    for line in [b"register|report|smtp-in|link-connect", b"register|report|smtp-out|*",
                 b"register|filter|smtp-in|data-line", b"register|ready"]:
        round_trip(Register.parse, line)
    for line in [b"register|filter|smtp-out|connect", b"register|report|smtp-in|no-such-event",
                 b"register|filter|smtp-in|no-such-phase", b"register|ready|x", b"register|filter|connect",
                 b"register|report|smtp-in", b"register"]:
        with pytest.raises(ParseError):
            Register.parse(line)
    with pytest.raises(FormatError):
        Register("filter", "smtp-out", "connect").format()


def test_either_side_dispatches() -> None:
    assert parse_daemon_line(b"config|protocol|0.7").value == "0.7"
    assert isinstance(parse_daemon_line(b"report|0.7|1.000000|smtp-in|timeout|1"), Report)
    assert isinstance(parse_backend_line(b"register|ready"), Register)
    assert isinstance(parse_backend_line(b"filter-dataline|1|2|x"), DataLine)
