"""Ids, numbers and time stamps."""

from __future__ import annotations

from smtpd_sdk.protocol.ids import (
    Timestamp,
    evpid_msgid,
    is_evpid,
    is_msgid,
    parse_decimal,
    parse_hex8,
    parse_hex16,
    parse_hex_lenient,
)


def test_hex_parsers() -> None:
    assert parse_hex8(b"0000a00f") == 0xA00F
    assert parse_hex8(b"0000A00F") is None
    assert parse_hex8(b"a00f") is None
    assert parse_hex8(b"0000a00f\n") is None
    assert parse_hex16(b"0badcafe00000001") == 0x0BADCAFE00000001
    assert parse_hex_lenient(b"A00F") == 0xA00F
    assert parse_hex_lenient(b"") is None
    assert parse_hex_lenient(b"11112222333344445") is None
    assert parse_hex_lenient(b"+1") is None


def test_decimal() -> None:
    assert parse_decimal(b"0") == 0
    assert parse_decimal(b"18446744073709551615") == (1 << 64) - 1
    assert parse_decimal(b"18446744073709551616") is None
    assert parse_decimal(b"-1") is None
    assert parse_decimal(b"") is None
    assert parse_decimal(b"\xd9\xa1") is None


def test_timestamps() -> None:
    ts = Timestamp.parse(b"1731000001.000412")
    assert ts == Timestamp(1731000001, 412)
    assert str(ts) == "1731000001.000412" and ts.to_bytes() == b"1731000001.000412"
    assert Timestamp.parse(b"1731000001.412") is None
    assert Timestamp.parse(b"1731000001") is None
    assert Timestamp.parse(b".000001") is None
    now = Timestamp.now()
    assert now.is_valid() and now.secs > 1_700_000_000
    assert not Timestamp(1, 1_000_000).is_valid()


def test_message_and_envelope_ids() -> None:
    assert is_msgid(1) and not is_msgid(0) and not is_msgid(1 << 32) and not is_msgid(True)
    assert is_evpid(0x0BADCAFE00000001)
    assert not is_evpid(0x0BADCAFE00000000) and not is_evpid(0x0000000000000001)
    assert evpid_msgid(0x0BADCAFE00000001) == 0x0BADCAFE
