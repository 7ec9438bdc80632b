"""The standard example filter's callbacks."""

from __future__ import annotations

from smtpd_sdk.examples import filter_guard
from smtpd_sdk.filter import Decision, Session


def test_decisions() -> None:
    s = Session(1)
    assert filter_guard.on_helo(s, "spammer.example") == Decision("reject", "550 5.7.1 Go away")
    assert filter_guard.on_helo(s, "Spammer.example") == Decision("proceed")
    assert filter_guard.on_mail_from(s, "junk@example.com") == Decision("junk")
    assert filter_guard.on_mail_from(s, "rewrite@example.com") == Decision("rewrite", "<postmaster@example.org>")
    assert filter_guard.on_rcpt_to(s, "drop@example.org") == Decision("disconnect", "421 4.7.0 Too many recipients")
    assert filter_guard.on_rcpt_to(s, "report@example.org") == Decision("report", "recipient noted")
    assert filter_guard.on_data_line(s, b"secret") == b"[redacted]"
    assert filter_guard.on_data_line(s, b"secret ") is None
