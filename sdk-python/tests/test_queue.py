"""smtpd_sdk.queue.run: each operation's answers, failures."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest

from smtpd_sdk import BackendError, queue

from .harness import QUEUE_CONFIG, answers, exchange

Q = b"queue|0.1|1731000001.000412|"
MSG = b"0badcafe"
EVP = b"0badcafe00000001"


class Store:
    def message_create(self) -> int:
        return 0x0BADCAFE

    def message_write(self, msgid: int, offset: int, data: bytes) -> None:
        assert (msgid, offset, data) == (0x0BADCAFE, 0, b"hello")

    def message_commit(self, msgid: int, size: int) -> None:
        if size != 5:
            raise BackendError("size mismatch")

    def message_read(self, msgid: int, offset: int, length: int) -> Optional[bytes]:
        return b"hello"[offset : offset + length] if msgid == 0x0BADCAFE else None

    def message_delete(self, msgid: int) -> None:
        pass

    def message_corrupt(self, msgid: int) -> bool:
        return msgid == 0x0BADCAFE

    def envelope_create(self, msgid: int, data: bytes) -> int:
        return msgid << 32 | 1

    def envelope_update(self, evpid: int, data: bytes) -> bool:
        return evpid == 0x0BADCAFE00000001

    def envelope_load(self, evpid: int) -> Optional[bytes]:
        return b"envelope" if evpid == 0x0BADCAFE00000001 else None

    def envelope_delete(self, evpid: int) -> None:
        pass

    def envelope_walk(self, after: int) -> Optional[Tuple[int, bytes]]:
        return (0x0BADCAFE00000001, b"envelope") if after < 0x0BADCAFE00000001 else None


def test_every_operation() -> None:
    lines = [
        b"message-create|0000000000000001",
        b"message-write|0000000000000002|%s|0|aGVsbG8=" % MSG,
        b"message-commit|0000000000000003|%s|5" % MSG,
        b"message-commit|0000000000000004|%s|6" % MSG,
        b"message-read|0000000000000005|%s|1|3" % MSG,
        b"message-read|0000000000000006|00000001|0|3",
        b"message-delete|0000000000000007|%s" % MSG,
        b"message-corrupt|0000000000000008|%s" % MSG,
        b"message-corrupt|0000000000000009|00000001",
        b"envelope-create|000000000000000a|%s|ZW52ZWxvcGU=" % MSG,
        b"envelope-update|000000000000000b|%s|eA==" % EVP,
        b"envelope-update|000000000000000c|0000000100000001|eA==",
        b"envelope-load|000000000000000d|%s" % EVP,
        b"envelope-load|000000000000000e|0000000100000001",
        b"envelope-delete|000000000000000f|%s" % EVP,
        b"envelope-walk|0000000000000010|0000000000000000",
        b"envelope-walk|0000000000000011|%s" % EVP,
    ]
    out = exchange(queue.run, QUEUE_CONFIG + [Q + line for line in lines], backend=Store())
    assert out[0] == b"register|ready"
    assert answers(out) == [
        b"message-create-result|0000000000000001|ok|0badcafe",
        b"message-write-result|0000000000000002|ok",
        b"message-commit-result|0000000000000003|ok",
        b"message-commit-result|0000000000000004|error|size mismatch",
        b"message-read-result|0000000000000005|found|ZWxs",
        b"message-read-result|0000000000000006|not-found",
        b"message-delete-result|0000000000000007|ok",
        b"message-corrupt-result|0000000000000008|ok",
        b"message-corrupt-result|0000000000000009|not-found",
        b"envelope-create-result|000000000000000a|ok|0badcafe00000001",
        b"envelope-update-result|000000000000000b|ok",
        b"envelope-update-result|000000000000000c|not-found",
        b"envelope-load-result|000000000000000d|found|ZW52ZWxvcGU=",
        b"envelope-load-result|000000000000000e|not-found",
        b"envelope-delete-result|000000000000000f|ok",
        b"envelope-walk-result|0000000000000010|found|0badcafe00000001|ZW52ZWxvcGU=",
        b"envelope-walk-result|0000000000000011|done",
    ]


def test_missing_unknown_and_invalid(capsys: pytest.CaptureFixture) -> None:
    out = exchange(
        queue.run,
        QUEUE_CONFIG + [
            Q + b"message-create|0000000000000001",
            Q + b"message-delete|0000000000000002|%s" % MSG,
            Q + b"message-frob|0000000000000003|x",
            Q + b"envelope-load|0000000000000004|%s" % EVP,
            Q + b"envelope-create|0000000000000005|%s|eA==" % MSG,
        ],
        message_create=lambda: 0,
        envelope_load=lambda evpid: b"",
        envelope_create=lambda msgid, data: 1 / 0,
        capabilities=["future"],
    )
    assert out[:2] == [b"register|future", b"register|ready"]
    assert answers(out) == [
        b"message-create-result|0000000000000001|error|backend returned an invalid result",
        b"message-delete-result|0000000000000002|error|operation message-delete not supported",
        b"message-frob-result|0000000000000003|error|unknown operation",
        b"envelope-load-result|0000000000000004|error|backend returned an invalid result",
        b"envelope-create-result|0000000000000005|error|ZeroDivisionError: division by zero",
    ]
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_unknown_callback_names_are_refused() -> None:
    with pytest.raises(TypeError):
        exchange(queue.run, QUEUE_CONFIG, message_frob=lambda: None)


def test_unsupported_version_exits_1() -> None:
    with pytest.raises(SystemExit) as info:
        exchange(queue.run, [b"config|protocol|1.0", b"config|ready"], backend=Store())
    assert info.value.code == 1
