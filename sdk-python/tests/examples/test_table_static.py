"""The table(5) file reader and the static table example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smtpd_sdk import BackendError
from smtpd_sdk.examples.table_static import StaticTable, TableFileError, main, parse_table

from ..vectors import FIXTURES


@pytest.mark.parametrize(
    "text,entries",
    [
        (b"", {}),
        (b"# only a comment\n\n", {}),
        (b"postmaster:   root\nAbuse\troot, security@example.net\n",
         {"postmaster": "root", "abuse": "root, security@example.net"}),
        (b"[::1]   localhost.example.net\n[2001:DB8::1]:x\n", {"[::1]": "localhost.example.net", "[2001:db8::1]": "x"}),
        (b"a  value with  two spaces  \n", {"a": "value with  two spaces"}),
        (b"  # indented comment\nk v|w\n", {"k": "v|w"}),
        (b"10.0.0.0/8\nSome Host\n", {"10.0.0.0/8": "10.0.0.0/8", "some host": "Some Host"}),
        (b"# @list\nkey value\n", {"key value": "key value"}),
        (b"k 1\nk 2\n", {"k": "2"}),
        (b"k caf\xc3\xa9\n", {"k": "café"}),
    ],
)
def test_parse_table(text: bytes, entries: dict) -> None:
    assert parse_table(text) == entries


@pytest.mark.parametrize("text", [b"k v\nlonely\n", b"[::1 x\n", b"k v\nk2:\n"])
def test_malformed_files_are_refused(text: bytes) -> None:
    with pytest.raises(TableFileError):
        parse_table(text)


def test_the_standard_fixture() -> None:
    t = StaticTable(str(FIXTURES / "standard.table"))
    assert t.lookup("alias", "postmaster") == "root"
    assert t.check("domain", "[2001:db8::1]")
    assert len(t.lookup("string", "big") or "") == 65536
    values = [t.fetch("source") for _ in range(13)]
    assert values[0] == values[12] == "root"
    assert values[-2] == "a" * 65536


def test_update_rereads_and_keeps_old_data_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("a 1\nb 2\n")
    t = StaticTable(str(path))
    assert t.fetch("source") == "1"
    path.write_text("a 3\n")
    t.update()
    assert (t.lookup("alias", "a"), t.lookup("alias", "b"), t.fetch("source")) == ("3", None, "3")
    path.write_text("a 4\nlonely\n")
    with pytest.raises(BackendError):
        t.update()
    assert t.lookup("alias", "a") == "3"
    path.unlink()
    with pytest.raises(BackendError):
        t.update()


def test_a_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


def test_runs_as_a_module(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("k v\n")
    for flag in ([], ["--asyncio"]):
        proc = subprocess.run(
            [sys.executable, "-m", "smtpd_sdk.examples.table_static", "--services", "alias", *flag, str(path)],
            input=b"config|protocol|0.1\nconfig|ready\ntable|0.1|1.000000|t|lookup|alias|00000001|k\n"
            b"table|0.1|1.000000|t|lookup|domain|00000002|k\n",
            capture_output=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.split(b"\n")
        assert lines[:2] == [b"register|alias", b"register|ready"]
        assert sorted(lines[2:]) == [
            b"",
            b"lookup-result|00000001|found|v",
            b"lookup-result|00000002|error|service domain not served",
        ]


def test_an_unknown_version_exits_1() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smtpd_sdk.examples.table_static", str(FIXTURES / "standard.table")],
        input=b"config|protocol|0.2\nconfig|ready\n", capture_output=True, timeout=30,
    )
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == b"unsupported protocol version 0.2 (this backend speaks 0.1)\n"
