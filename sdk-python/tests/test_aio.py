"""smtpd_sdk.aio: concurrency, completion order, per-session order."""

from __future__ import annotations

import asyncio
import random
from typing import List

import pytest

from smtpd_sdk import BackendError, aio, filter
from smtpd_sdk.filter import Session

from .harness import FILTER_CONFIG, QUEUE_CONFIG, TABLE_CONFIG, answers, exchange
from .test_filter import SID, data, dline, rep, req, result
from .test_queue import EVP, MSG, Q, Store

T = b"table|0.1|1731000001.000412|t|"


def test_table_answers_in_completion_order() -> None:
    async def lookup(service: str, key: str) -> str:
        await asyncio.sleep(float(key))
        return key

    out = exchange(aio.run_table, TABLE_CONFIG + [T + b"lookup|alias|00000001|0.3", T + b"lookup|alias|00000002|0"],
                   lookup=lookup)
    assert answers(out) == [b"lookup-result|00000002|found|0", b"lookup-result|00000001|found|0.3"]


def test_table_requests_run_concurrently() -> None:
    running = {"now": 0, "most": 0}

    async def check(service: str, key: str) -> bool:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.05)
        running["now"] -= 1
        return True

    out = exchange(aio.run_table, TABLE_CONFIG + [T + b"check|alias|%08x|k" % i for i in range(50)], check=check)
    assert len(answers(out)) == 50
    assert running["most"] == 50


def test_in_flight_work_is_bounded() -> None:
    running = {"now": 0, "most": 0}

    async def check(service: str, key: str) -> bool:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1
        return False

    out = exchange(aio.run_table, TABLE_CONFIG + [T + b"check|alias|%08x|k" % i for i in range(40)], check=check,
                   max_in_flight=4)
    assert sorted(answers(out)) == [b"check-result|%08x|not-found" % i for i in range(40)]
    assert running["most"] == 4


def test_table_failures_and_plain_callbacks(capsys: pytest.CaptureFixture) -> None:
    async def lookup(service: str, key: str) -> str:
        raise BackendError("down")

    out = exchange(aio.run_table, TABLE_CONFIG + [T + b"lookup|alias|00000001|k", T + b"fetch|source|00000002",
                                                 T + b"lookup|frob|00000003|k"],
                   lookup=lookup, fetch=lambda service: "192.0.2.1")
    assert sorted(answers(out)) == [
        b"fetch-result|00000002|found|192.0.2.1",
        b"lookup-result|00000001|error|down",
        b"lookup-result|00000003|error|unknown service",
    ]


def test_the_end_of_input_waits_for_work_in_flight() -> None:
    async def lookup(service: str, key: str) -> str:
        await asyncio.sleep(0.2)
        return "late"

    out = exchange(aio.run_table, TABLE_CONFIG + [T + b"lookup|alias|00000001|k"], lookup=lookup)
    assert answers(out) == [b"lookup-result|00000001|found|late"]


def test_queue() -> None:
    store = Store()

    class AsyncStore:
        async def message_create(self) -> int:
            await asyncio.sleep(0.01)
            return store.message_create()

        async def envelope_walk(self, after: int):
            return store.envelope_walk(after)

    out = exchange(aio.run_queue, QUEUE_CONFIG + [
        Q + b"message-create|0000000000000001",
        Q + b"envelope-walk|0000000000000002|%s" % EVP,
        Q + b"message-delete|0000000000000003|%s" % MSG,
    ], backend=AsyncStore())
    assert sorted(answers(out)) == [
        b"envelope-walk-result|0000000000000002|done",
        b"message-create-result|0000000000000001|ok|0badcafe",
        b"message-delete-result|0000000000000003|error|operation message-delete not supported",
    ]


def test_filter_keeps_each_sessions_order_and_runs_sessions_concurrently() -> None:
    other = b"c1c2c3c4c5c6c7c8"
    order: List[bytes] = []

    async def data_line(session: Session, line: bytes) -> bytes:
        await asyncio.sleep(random.random() / 50)
        order.append(line)
        return line.upper()

    async def mail_from(session: Session, sender: str) -> filter.Decision:
        await asyncio.sleep(0.2 if sender == "slow@example.org" else 0)
        return filter.proceed()

    lines = [req(b"mail-from", b"slow@example.org"), req(b"mail-from", b"fast@example.org", sid=other)]
    for i in range(20):
        lines += [data(b"a%d" % i), data(b"b%d" % i, sid=other)]
    lines += [data(b"."), data(b".", sid=other)]
    out = exchange(aio.run_filter, FILTER_CONFIG + lines, phases={"mail-from": mail_from}, data_line=data_line)
    got = answers(out)
    assert got.index(result(b"proceed", sid=other)) < got.index(result(b"proceed"))
    mine = [line for line in got if line.startswith(b"filter-dataline|" + SID)]
    theirs = [line for line in got if line.startswith(b"filter-dataline|" + other)]
    assert mine == [dline(b"A%d" % i) for i in range(20)] + [dline(b".")]
    assert theirs == [dline(b"B%d" % i, sid=other) for i in range(20)] + [dline(b".", sid=other)]
    assert order != sorted(order, key=lambda line: (line[:1], int(line[1:])))


def test_filter_failures_and_reports(capsys: pytest.CaptureFixture) -> None:
    seen = []

    async def on_report(session: Session, report) -> None:
        seen.append(report.event)

    async def data_line(session: Session, line: bytes) -> None:
        if line == b"bad":
            raise RuntimeError("bad line")

    async def connect(session: Session, param: str) -> filter.Decision:
        raise RuntimeError("no")

    out = exchange(aio.run_filter, FILTER_CONFIG + [
        rep(b"link-connect", b"|h|pass|192.0.2.7:1|198.51.100.2:25"),
        req(b"connect", b"h|192.0.2.7"),
        data(b"bad"), data(b"after"), data(b"."), req(b"commit", token=b"3"),
        rep(b"link-disconnect"),
    ], phases={"connect": connect}, reports={"link-connect": on_report, "link-disconnect": on_report},
        data_line=data_line, data_end=lambda s: [b"end"])
    assert answers(out) == [
        result(b"disconnect|421 4.7.1 Filter error"),
        dline(b"."),
        result(b"reject|451 4.7.1 Filter error", token=b"0000000000000003"),
    ]
    assert seen == ["link-connect", "link-disconnect"]


def test_unsupported_version_exits_1() -> None:
    with pytest.raises(SystemExit) as info:
        exchange(aio.run_table, [b"config|protocol|0.9", b"config|ready"], lookup=lambda s, k: None)
    assert info.value.code == 1
