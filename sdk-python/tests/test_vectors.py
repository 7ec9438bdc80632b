"""The shared test vectors (``protocol-spec/vectors``) against this SDK.

(a) Codec: every ``>``/``<`` line without placeholders parses and formats
back to itself; every ``!>``/``!<`` line is refused; every ``~>`` line fails
to parse but can still be answered, with an answer of the right shape.

(b) Backends: each example runs as a subprocess, once per case (a fresh
process, as the README asks), through every case of its family whose
fixture it was loaded with and every case without a fixture; handshake
cases are for codecs only. Both the plain and the ``--asyncio`` flavours
run.
"""

from __future__ import annotations

import sys
from typing import Callable, Dict, List

import pytest

from smtpd_sdk.examples import filter_guard
from smtpd_sdk.filter import FilterCore
from smtpd_sdk.protocol import ParseError, ProtocolError
from smtpd_sdk.protocol import filter as filter_proto
from smtpd_sdk.protocol import queue as queue_proto
from smtpd_sdk.protocol import table as table_proto

from .vectors import FIXTURES, BackendProcess, Case, filter_applies, has_placeholder, load_cases, replay

CASES = load_cases()
FAMILY_MODULES = {"table": table_proto, "filter": filter_proto, "queue": queue_proto}


def test_vectors_are_there() -> None:
    families = {case.family for case in CASES}
    assert families == {"table", "filter", "queue"}, families
    assert len(CASES) > 50


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_codec(case: Case) -> None:
    module = FAMILY_MODULES[case.family]
    captured = case.captured_names()
    checked = 0
    for step in case.steps:
        line = step.line
        if step.kind == ">" and not has_placeholder(line, captured):
            _round_trip(module.parse_daemon_line, line, step.where)
        elif step.kind == "<" and not has_placeholder(line):
            _round_trip(module.parse_backend_line, line, step.where)
        elif step.kind in ("!>", "!<"):
            parse = module.parse_daemon_line if step.kind == "!>" else module.parse_backend_line
            with pytest.raises(ProtocolError):
                parse(line)
                pytest.fail("%s: accepted %r" % (step.where, line[:200]))
        elif step.kind == "~>":
            _answerable(module, line, step.where)
        else:
            continue
        checked += 1
    assert checked or all(has_placeholder(s.line) for s in case.steps), case.id


def _round_trip(parse: Callable[[bytes], object], line: bytes, where: str) -> None:
    try:
        parsed = parse(line)
    except ProtocolError as e:
        pytest.fail("%s: %s" % (where, e))
    assert parsed.format() == line + b"\n", "%s: %r" % (where, parsed)  # type: ignore[attr-defined]


def _answerable(module: object, line: bytes, where: str) -> None:
    with pytest.raises(ParseError) as info:
        module.parse_daemon_line(line)  # type: ignore[attr-defined]
    reply_to = info.value.reply_to
    assert reply_to is not None, "%s: %s" % (where, info.value)
    answer = reply_to.error_line("unknown")
    assert answer.endswith(b"\n")
    assert answer.startswith(b"%s-result|%s|error|" % (reply_to.op.encode(), reply_to.id.encode()))
    if module is table_proto:
        parsed = module.parse_backend_line(answer[:-1])  # type: ignore[attr-defined]
        assert parsed.status == "error"


# (b) the example backends, one fresh process per case.

def _argv(module: str, *args: str) -> List[str]:
    return [sys.executable, "-m", "smtpd_sdk.examples." + module, *args]


BACKENDS: Dict[str, Dict[str, object]] = {
    "table_static": {
        "family": "table",
        "fixture": "standard.table",
        "argv": _argv("table_static", str(FIXTURES / "standard.table")),
    },
    "filter_guard": {"family": "filter", "fixture": "standard.filter", "argv": _argv("filter_guard")},
    "queue_memory": {"family": "queue", "fixture": None, "argv": _argv("queue_memory")},
}

GUARD_REGISTRATIONS = [
    line[:-1]
    for line in FilterCore(
        filter_guard.PHASES, filter_guard.REPORTS, None, filter_guard.on_data_line, None
    ).registrations()
    if line != b"register|ready\n"
]


def _runs() -> list:
    runs = []
    for name, spec in BACKENDS.items():
        for case in CASES:
            if case.family != spec["family"] or case.file == "handshake.txt":
                continue
            if case.fixture not in (None, spec["fixture"]):
                continue
            if case.family == "filter" and not filter_applies(case, GUARD_REGISTRATIONS):
                continue
            for flavour in ("plain", "asyncio"):
                runs.append(pytest.param(name, flavour, case, id="%s-%s-%s" % (name, flavour, case.id)))
    return runs


RUNS = _runs()


def test_every_family_has_backend_runs() -> None:
    assert {run.values[0] for run in RUNS} == set(BACKENDS)


@pytest.mark.parametrize("backend,flavour,case", RUNS)
def test_backend(backend: str, flavour: str, case: Case) -> None:
    spec = BACKENDS[backend]
    argv = list(spec["argv"])  # type: ignore[call-overload]
    if flavour == "asyncio":
        argv.append("--asyncio")
    process = BackendProcess(argv, case.family)
    try:
        registrations = process.handshake()
        if case.family == "filter":
            assert registrations == GUARD_REGISTRATIONS
        replay(process, case)
    finally:
        process.kill()
