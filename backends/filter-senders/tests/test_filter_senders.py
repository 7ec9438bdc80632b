"""filter-senders: the policy file, the decisions, and the whole filter
over a pipe the way smtpd drives it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import filter_senders as fs  # noqa: E402

POLICY = """
# a comment
allow example.org
allow *.example.org      # subdomains
deny  *.sub.example.org
deny  spam.example
deny  <>
default deny
"""


def test_most_specific_rule_wins():
    p = fs.parse_policy(POLICY)
    assert p.decide("a@example.org")[0] == "allow"
    assert p.decide("a@EXAMPLE.ORG")[0] == "allow"
    assert p.decide("a@mx.example.org") == ("allow", fs.Rule("allow", "*.example.org"), "mx.example.org")
    assert p.decide("a@x.sub.example.org")[0] == "deny"
    assert p.decide("a@spam.example")[0] == "deny"
    assert p.decide("a@other.example") == ("deny", None, "other.example")
    assert p.decide("") == ("deny", fs.Rule("deny", "<>"), "<>")
    # A wildcard does not cover the domain itself.
    assert fs.parse_policy("allow *.example.org\ndefault deny").decide("a@example.org")[0] == "deny"


def test_defaults():
    p = fs.parse_policy("deny spam.example")
    assert p.decide("a@ok.example") == ("allow", None, "ok.example")
    assert p.decide("") == ("allow", None, "<>")
    # The null sender stays allowed under `default deny` unless `deny <>`.
    assert fs.parse_policy("default deny").decide("")[0] == "allow"


@pytest.mark.parametrize(
    "text, message",
    [
        ("allow", "policy:1: expected"),
        ("\n\npermit example.org", "policy:3: unknown keyword 'permit'"),
        ("allow exa mple.org", "policy:1: expected"),
        ("allow exa_mple.org", "policy:1: 'exa_mple.org' is not a domain"),
        ("allow *.", "policy:1: '*.' is not a domain"),
        ("default maybe", "policy:1: default must be allow or deny"),
        ("allow a.example\ndeny A.example", "policy:2: a.example is already given a rule (allow a.example)"),
    ],
)
def test_bad_files_name_the_line(text, message):
    with pytest.raises(fs.PolicyError) as e:
        fs.parse_policy(text)
    assert str(e.value).startswith(message), str(e.value)


def test_callbacks_reject_and_stamp(tmp_path):
    path = tmp_path / "senders"
    path.write_text(POLICY)
    f = fs.SenderFilter(fs.PolicyFile(str(path)))
    session = fs.Session(1)
    assert f.mail_from(session, "bad@spam.example").name == "reject"
    assert f.mail_from(session, "bad@spam.example").param == fs.REJECT_REPLY
    assert f.data_line(session, b"Subject: x") == [b"Subject: x"]
    assert f.mail_from(session, "ok@mx.example.org").name == "proceed"
    assert f.data_line(session, b"Received: from x") == [
        b'X-Sender-Policy: allow; domain=mx.example.org; rule="allow *.example.org"',
        b"Received: from x",
    ]
    assert f.data_line(session, b"Subject: x") == [b"Subject: x"]


def test_the_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "senders"
    path.write_text("deny spam.example\n")
    policy = fs.PolicyFile(str(path))
    assert policy.current().decide("a@spam.example")[0] == "deny"
    path.write_text("allow spam.example\n")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert policy.current().decide("a@spam.example")[0] == "allow"
    # An invalid file keeps the previous policy.
    path.write_text("bogus line here\n")
    os.utime(path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    assert policy.current().decide("a@spam.example")[0] == "allow"


def _run(args, stdin: str):
    env = dict(os.environ)
    sdk = HERE.parent.parent.parent / "sdk-python" / "src"
    env["PYTHONPATH"] = str(sdk) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(HERE.parent / "filter_senders.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


HANDSHAKE = "config|smtpd-version|7.8.0\nconfig|protocol|0.7\nconfig|subsystem|smtp-in\nconfig|ready\n"
SID = "a1b2c3d4e5f60718"


def test_over_a_pipe(tmp_path):
    path = tmp_path / "senders"
    path.write_text(POLICY)
    stdin = HANDSHAKE + "".join(
        "filter|0.7|1731000000.000000|smtp-in|%s|%s|%s|%s\n" % (phase, SID, token, param)
        for phase, token, param in [
            ("mail-from", "0000000000000001", "bad@spam.example"),
            ("mail-from", "0000000000000002", "ok@example.org"),
            ("data-line", "0000000000000003", "Received: from x"),
            ("data-line", "0000000000000003", "..dot"),
            ("data-line", "0000000000000003", "."),
            ("commit", "0000000000000004", ""),
        ]
    )
    out = _run([str(path)], stdin)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[: lines.index("register|ready") + 1] == [
        "register|report|smtp-in|link-disconnect",
        "register|filter|smtp-in|mail-from",
        "register|filter|smtp-in|data-line",
        "register|filter|smtp-in|commit",
        "register|ready",
    ]
    assert lines[lines.index("register|ready") + 1 :] == [
        "filter-result|%s|0000000000000001|reject|550 5.7.1 Sender domain not allowed" % SID,
        "filter-result|%s|0000000000000002|proceed" % SID,
        'filter-dataline|%s|0000000000000003|X-Sender-Policy: allow; domain=example.org; rule="allow example.org"' % SID,
        "filter-dataline|%s|0000000000000003|Received: from x" % SID,
        "filter-dataline|%s|0000000000000003|..dot" % SID,
        "filter-dataline|%s|0000000000000003|." % SID,
        "filter-result|%s|0000000000000004|proceed" % SID,
    ]


def test_start_up_refusals(tmp_path):
    out = _run([], "")
    assert out.returncode == 1 and "usage:" in out.stderr
    out = _run([str(tmp_path / "missing")], "")
    assert out.returncode == 1 and "filter-senders:" in out.stderr
    bad = tmp_path / "bad"
    bad.write_text("allow ok.example\nnope\n")
    out = _run([str(bad)], HANDSHAKE)
    assert out.returncode == 1
    assert "%s:2: expected" % bad in out.stderr
    assert "register" not in out.stdout
