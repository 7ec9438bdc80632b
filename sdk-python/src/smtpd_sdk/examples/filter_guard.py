"""The example filter of the standard filter fixture
(``protocol-spec/vectors/fixtures/standard.filter``).

    python3 -m smtpd_sdk.examples.filter_guard [--asyncio]

Registers the phases connect, helo, ehlo, mail-from, rcpt-to, data,
data-line and commit, and the reports link-connect and link-disconnect:

- helo/ehlo: reject ``550 5.7.1 Go away`` for ``spammer.example``;
- mail-from: reject ``550 5.7.1 Sender rejected`` for spammer@example.com,
  junk for junk@example.com, rewrite to ``<postmaster@example.org>`` for
  rewrite@example.com;
- rcpt-to: disconnect ``421 4.7.0 Too many recipients`` for
  drop@example.org, report ``recipient noted`` for report@example.org;
- data-line: a line that is exactly ``secret`` becomes ``[redacted]``;
- everything else proceeds and passes unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Awaitable, Callable, Optional, Sequence

from smtpd_sdk import aio, filter
from smtpd_sdk.filter import Decision, Report, Session


def on_connect(session: Session, param: str) -> Decision:
    return filter.proceed()


def on_helo(session: Session, name: str) -> Decision:
    if name == "spammer.example":
        return filter.reject("550 5.7.1 Go away")
    return filter.proceed()


def on_mail_from(session: Session, sender: str) -> Decision:
    if sender == "spammer@example.com":
        return filter.reject("550 5.7.1 Sender rejected")
    if sender == "junk@example.com":
        return filter.junk()
    if sender == "rewrite@example.com":
        return filter.rewrite("<postmaster@example.org>")
    return filter.proceed()


def on_rcpt_to(session: Session, recipient: str) -> Decision:
    if recipient == "drop@example.org":
        return filter.disconnect("421 4.7.0 Too many recipients")
    if recipient == "report@example.org":
        return filter.report("recipient noted")
    return filter.proceed()


def on_proceed(session: Session, param: str) -> Decision:
    return filter.proceed()


def on_data_line(session: Session, line: bytes) -> Optional[bytes]:
    if line == b"secret":
        return b"[redacted]"
    return None


def on_link_connect(session: Session, report: Report) -> None:
    session.data["rdns"] = report.params["rdns"]


PHASES = {
    "connect": on_connect,
    "helo": on_helo,
    "ehlo": on_helo,
    "mail-from": on_mail_from,
    "rcpt-to": on_rcpt_to,
    "data": on_proceed,
    "commit": on_proceed,
}

REPORTS = {"link-connect": on_link_connect, "link-disconnect": lambda session, report: None}


def _asynchronous(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses the arguments and filters until stdin ends."""
    parser = argparse.ArgumentParser(prog="filter_guard", description="The standard example filter.")
    parser.add_argument("--asyncio", action="store_true", help="run the asyncio flavour")
    args = parser.parse_args(argv)
    if args.asyncio:
        asyncio.run(
            aio.run_filter(
                phases={k: _asynchronous(v) for k, v in PHASES.items()},
                reports={k: _asynchronous(v) for k, v in REPORTS.items()},
                data_line=_asynchronous(on_data_line),
            )
        )
    else:
        filter.run(phases=PHASES, reports=REPORTS, data_line=on_data_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
