"""smtpd_sdk.filter.run: registrations, decisions, data-lines, failures."""

from __future__ import annotations

from typing import List

import pytest

from smtpd_sdk import BackendError, filter
from smtpd_sdk.filter import FilterCore, Session, stuff, unstuff

from .harness import FILTER_CONFIG, answers, exchange

SID = b"a1b2c3d4e5f60718"
TOK = b"5d0a000100000001"
DTOK = b"5d0a000100000002"


def req(phase: bytes, param: bytes = b"", sid: bytes = SID, token: bytes = TOK) -> bytes:
    return b"filter|0.7|1731000003.250000|smtp-in|%s|%s|%s|%s" % (phase, sid, token, param)


def data(param: bytes, sid: bytes = SID) -> bytes:
    return req(b"data-line", param, sid, DTOK)


def rep(event: bytes, params: bytes = b"", sid: bytes = SID) -> bytes:
    return b"report|0.7|1731000000.100000|smtp-in|%s|%s%s" % (event, sid, params)


def result(decision: bytes, sid: bytes = SID, token: bytes = TOK) -> bytes:
    return b"filter-result|%s|%s|%s" % (sid, token, decision)


def dline(line: bytes, sid: bytes = SID) -> bytes:
    return b"filter-dataline|%s|%s|%s" % (sid, DTOK, line)


def test_registrations_follow_the_callbacks() -> None:
    out = exchange(filter.run, FILTER_CONFIG, phases={"mail-from": filter.proceed, "connect": filter.proceed},
                   reports={"tx-mail": print})
    assert out == [
        b"register|report|smtp-in|tx-mail",
        b"register|report|smtp-in|link-disconnect",
        b"register|filter|smtp-in|connect",
        b"register|filter|smtp-in|mail-from",
        b"register|ready",
    ]
    core = FilterCore(None, {"*": print}, {"tx-mail": print}, lambda session, line: None, None)
    assert core.registrations() == [
        b"register|report|smtp-in|*\n",
        b"register|report|smtp-out|tx-mail\n",
        b"register|report|smtp-out|link-disconnect\n",
        b"register|filter|smtp-in|data-line\n",
        b"register|filter|smtp-in|commit\n",
        b"register|ready\n",
    ]


@pytest.mark.parametrize("phases", [{"data-line": print}, {"frob": print}])
def test_bad_phases_are_refused(phases: dict) -> None:
    with pytest.raises(ValueError):
        FilterCore(phases, None, None, None, None)
    with pytest.raises(ValueError):
        FilterCore(None, {"frob": print}, None, None, None)


def test_every_decision() -> None:
    decisions = {
        b"a": filter.proceed(),
        b"b": filter.junk(),
        b"c": filter.reject("550 5.7.1 No"),
        b"d": filter.disconnect("421 4.7.0 Bye"),
        b"e": filter.rewrite("<x@example.org>"),
        b"f": filter.report("noted"),
        b"g": None,
    }
    out = exchange(filter.run, FILTER_CONFIG + [req(b"mail-from", k) for k in decisions],
                   phases={"mail-from": lambda s, p: decisions[p.encode()]})
    assert answers(out) == [
        result(b"proceed"),
        result(b"junk"),
        result(b"reject|550 5.7.1 No"),
        result(b"disconnect|421 4.7.0 Bye"),
        result(b"rewrite|<x@example.org>"),
        result(b"report|noted"),
        result(b"proceed"),
    ]


def test_unregistered_phases_proceed() -> None:
    out = exchange(filter.run, FILTER_CONFIG + [req(b"rset")], phases={"mail-from": filter.proceed})
    assert answers(out) == [result(b"proceed")]


def test_failures_reject_with_451(capsys: pytest.CaptureFixture) -> None:
    def fail(session: Session, param: str) -> filter.Decision:
        if param == "boom":
            raise RuntimeError("boom")
        if param == "known":
            raise BackendError("known")
        if param == "wrong":
            return "proceed"  # type: ignore[return-value]
        return filter.reject("")

    out = exchange(
        filter.run,
        FILTER_CONFIG + [req(b"mail-from", p) for p in (b"boom", b"known", b"wrong", b"empty")]
        + [req(b"connect", b"host|192.0.2.7"), req(b"commit")],
        phases={"mail-from": fail, "connect": fail, "commit": lambda s, p: filter.junk()},
    )
    assert answers(out) == [result(b"reject|451 4.7.1 Filter error")] * 4 + [
        result(b"disconnect|421 4.7.1 Filter error"),
        result(b"reject|451 4.7.1 Filter error"),
    ]
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "junk is not allowed at commit" in err


def test_data_lines() -> None:
    def data_line(session: Session, line: bytes):
        if line == b"double":
            return [b"one", "two"]
        if line == b"drop":
            return []
        if line == b"dot":
            return b"."
        if line == b"..stuffed":
            return stuff(b"." + unstuff(line)[1:].upper())
        return None

    out = exchange(
        filter.run,
        FILTER_CONFIG + [data(x) for x in (b"double", b"drop", b"keep", b"dot", b"..stuffed", b". odd", b"")]
        + [data(b".")],
        data_line=data_line,
        data_end=lambda session: ["X-Footer: yes"],
    )
    assert answers(out) == [
        dline(b"one"), dline(b"two"), dline(b"keep"), dline(b".."), dline(b"..STUFFED"), dline(b". odd"),
        dline(b""), dline(b"X-Footer: yes"), dline(b"."),
    ]


def test_data_lines_without_callbacks_pass_unchanged() -> None:
    out = exchange(filter.run, FILTER_CONFIG + [data(b"a|b"), data(b"caf\xe9"), data(b".")],
                   phases={"commit": lambda s, p: filter.proceed()})
    assert answers(out) == [dline(b"a|b"), dline(b"caf\xe9"), dline(b".")]


def test_a_failing_data_line_drops_the_message_and_rejects_commit(capsys: pytest.CaptureFixture) -> None:
    seen: List[bytes] = []

    def data_line(session: Session, line: bytes) -> None:
        seen.append(line)
        if line == b"bad":
            raise ValueError("cannot parse")

    lines = [data(b"ok"), data(b"bad"), data(b"after"), data(b"."), req(b"commit", token=b"3"),
             data(b"next"), data(b"."), req(b"commit", token=b"3")]
    out = exchange(filter.run, FILTER_CONFIG + lines, data_line=data_line, data_end=lambda s: ["never"])
    assert answers(out) == [
        dline(b"ok"), dline(b"."), result(b"reject|451 4.7.1 Filter error", token=b"0000000000000003"),
        dline(b"next"), dline(b"never"), dline(b"."), result(b"proceed", token=b"0000000000000003"),
    ]
    assert seen == [b"ok", b"bad", b"next"]
    assert "dropping the rest of the message" in capsys.readouterr().err


def test_sessions_keep_state_until_disconnect() -> None:
    sessions = []

    def on_connect(session: Session, report) -> None:
        session.data["rdns"] = report.params["rdns"]
        sessions.append(session)

    def on_helo(session: Session, name: str) -> filter.Decision:
        return filter.report("%s/%s" % (session.data.get("rdns"), name))

    out = exchange(
        filter.run,
        FILTER_CONFIG + [
            rep(b"link-connect", b"|host.example.net|pass|192.0.2.7:1|198.51.100.2:25"),
            req(b"helo", b"h1"),
            rep(b"link-disconnect"),
            req(b"helo", b"h2"),
        ],
        phases={"helo": on_helo},
        reports={"link-connect": on_connect},
    )
    assert answers(out) == [result(b"report|host.example.net/h1"), result(b"report|None/h2")]
    assert sessions[0].id == 0xA1B2C3D4E5F60718


def test_failing_report_callbacks_are_logged(capsys: pytest.CaptureFixture) -> None:
    def boom(session: Session, report) -> None:
        raise RuntimeError("report failed")

    out = exchange(filter.run, FILTER_CONFIG + [rep(b"timeout"), req(b"quit")],
                   reports={"*": boom}, phases={"quit": lambda s, p: filter.proceed()})
    assert answers(out) == [result(b"proceed")]
    assert "report failed" in capsys.readouterr().err


def test_bad_lines_are_logged_and_skipped(capsys: pytest.CaptureFixture) -> None:
    out = exchange(filter.run, FILTER_CONFIG + [b"filter|0.7|x", req(b"quit")],
                   phases={"quit": lambda s, p: filter.proceed()})
    assert answers(out) == [result(b"proceed")]
    assert "bad line from the daemon" in capsys.readouterr().err


def test_unsupported_version_exits_1() -> None:
    with pytest.raises(SystemExit) as info:
        exchange(filter.run, [b"config|protocol|0.6", b"config|ready"], phases={"quit": lambda s, p: filter.proceed()})
    assert info.value.code == 1
