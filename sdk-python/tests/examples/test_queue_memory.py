"""The in-memory queue example."""

from __future__ import annotations

import pytest

from smtpd_sdk import BackendError
from smtpd_sdk.examples.queue_memory import MemoryQueue


def committed(q: MemoryQueue, data: bytes = b"hello") -> int:
    msgid = q.message_create()
    q.message_write(msgid, 0, data)
    q.message_commit(msgid, len(data))
    return msgid


def test_messages() -> None:
    q = MemoryQueue()
    msgid = q.message_create()
    assert 0 < msgid < 1 << 32
    q.message_write(msgid, 0, b"hel")
    q.message_write(msgid, 3, b"lo")
    for offset in (3, 9):
        with pytest.raises(BackendError):
            q.message_write(msgid, offset, b"lo")
    assert q.message_read(msgid, 0, 10) is None
    with pytest.raises(BackendError):
        q.message_commit(msgid, 4)
    q.message_commit(msgid, 5)
    with pytest.raises(BackendError):
        q.message_write(msgid, 5, b"!")
    with pytest.raises(BackendError):
        q.message_commit(msgid, 5)
    assert q.message_read(msgid, 1, 3) == b"ell"
    assert q.message_read(msgid, 5, 3) == b""
    assert q.message_read(msgid, 50, 3) == b""
    q.message_delete(msgid)
    q.message_delete(msgid)
    assert q.message_read(msgid, 0, 5) is None
    with pytest.raises(BackendError):
        q.message_commit(msgid, 5)


def test_envelopes_and_walk() -> None:
    q = MemoryQueue()
    pending = q.message_create()
    hidden = q.envelope_create(pending, b"e0")
    msgid = committed(q)
    a = q.envelope_create(msgid, b"e1")
    b = q.envelope_create(msgid, b"e2")
    assert a >> 32 == msgid and a & 0xFFFFFFFF
    assert q.envelope_load(hidden) is None and not q.envelope_update(hidden, b"x")
    first, second = sorted([a, b])
    assert q.envelope_walk(0) == (first, q.envelope_load(first))
    assert q.envelope_walk(first) == (second, q.envelope_load(second))
    assert q.envelope_walk(second) is None
    assert q.envelope_update(a, b"new") and q.envelope_load(a) == b"new"
    q.envelope_delete(a)
    q.envelope_delete(a)
    assert q.envelope_load(a) is None and not q.envelope_update(a, b"x")
    assert q.envelope_walk(0) == (b, b"e2")
    with pytest.raises(BackendError):
        q.envelope_create(0x1234, b"x")
    with pytest.raises(BackendError):
        q.envelope_create(msgid, b"")
    q.message_delete(msgid)
    assert q.envelope_load(b) is None and q.envelope_walk(0) is None


def test_corrupt_moves_aside() -> None:
    q = MemoryQueue()
    msgid = committed(q)
    evpid = q.envelope_create(msgid, b"e")
    assert q.message_corrupt(msgid)
    assert q.message_read(msgid, 0, 5) is None and q.envelope_load(evpid) is None
    assert q.envelope_walk(0) is None
    assert not q.message_corrupt(msgid)
    assert msgid in q.corrupt
