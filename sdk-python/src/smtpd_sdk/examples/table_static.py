"""A table backend serving a table(5) file.

    python3 -m smtpd_sdk.examples.table_static [--asyncio] [--services LIST] FILE

The file is read as table(5) describes it: ``#`` starts a comment line,
the first entry decides between a list (keys only) and a mapping (``key
value``, the value being the rest of the line after the separator), keys are
lower-cased and ``[...]`` keys may hold ``:``. ``check`` and ``lookup``
match the exact key for every service, ``fetch`` cycles through the values
in file order, and ``update`` re-reads the file (keeping the old data and
answering ``error`` when it cannot be loaded).

Every service is registered by default, as the standard fixture wants. A
table serving listener authentication should leave ``auth`` out
(``--services credentials``): a table that registers ``auth`` is asked
``check|auth|user:password`` instead of a ``credentials`` lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Dict, List, Optional, Sequence

from smtpd_sdk import BackendError, aio, table
from smtpd_sdk.protocol.table import SERVICES

_BLANKS = b" \t"
_SEPARATORS = b" \t:"


class TableFileError(Exception):
    """A table file that cannot be loaded."""


def _split_key(line: bytes, number: int) -> int:
    """Where the key of a data line ends."""
    start = 0
    if line.startswith(b"["):
        close = line.find(b"]")
        if close < 0:
            raise TableFileError("line %d: '[' without ']'" % number)
        start = close + 1
    for i in range(start, len(line)):
        if line[i] in _SEPARATORS:
            return i
    return len(line)


def parse_table(data: bytes) -> Dict[str, str]:
    """The entries of a table(5) file: key to value (a list maps each key to
    itself). Raises :class:`TableFileError` for a malformed file."""
    entries: Dict[str, str] = {}
    is_list: Optional[bool] = None
    for number, raw in enumerate(data.split(b"\n"), 1):
        line = raw.strip(b" \t\r\f\v")
        if not line:
            continue
        if line.startswith(b"#"):
            if is_list is None and line[1:].strip(_BLANKS) == b"@list":
                is_list = True
            continue
        end = _split_key(line, number)
        value = line[end + 1 :].lstrip(_BLANKS)
        if is_list is None:
            is_list = not value
        key = (line if is_list else line[:end]).lower()
        if is_list:
            entries[key.decode("utf-8", "surrogateescape")] = line.decode("utf-8", "surrogateescape")
            continue
        if not value:
            raise TableFileError("line %d: a mapping entry without a value" % number)
        entries[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return entries


class StaticTable:
    """The table's data and the four operations."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: Dict[str, str] = {}
        self.values: List[str] = []
        self.next = 0
        self.load()

    def load(self) -> None:
        """(Re-)reads the file."""
        try:
            with open(self.path, "rb") as f:
                entries = parse_table(f.read())
        except OSError as e:
            raise TableFileError("%s: %s" % (self.path, e.strerror)) from None
        except TableFileError as e:
            raise TableFileError("%s: %s" % (self.path, e)) from None
        self.entries = entries
        self.values = list(entries.values())
        self.next = 0

    def check(self, service: str, key: str) -> bool:
        """Is the key there?"""
        return key in self.entries

    def lookup(self, service: str, key: str) -> Optional[str]:
        """The key's value."""
        return self.entries.get(key)

    def fetch(self, service: str) -> Optional[str]:
        """The next value, round-robin in file order."""
        if not self.values:
            return None
        value = self.values[self.next % len(self.values)]
        self.next = (self.next + 1) % len(self.values)
        return value

    def update(self) -> None:
        """Re-reads the file; the old data stays when that fails."""
        try:
            self.load()
        except TableFileError as e:
            raise BackendError(str(e)) from None


class AsyncStaticTable:
    """The same operations as coroutines, for :func:`smtpd_sdk.aio.run_table`."""

    def __init__(self, inner: StaticTable) -> None:
        self.inner = inner

    async def check(self, service: str, key: str) -> bool:
        return self.inner.check(service, key)

    async def lookup(self, service: str, key: str) -> Optional[str]:
        return self.inner.lookup(service, key)

    async def fetch(self, service: str) -> Optional[str]:
        return self.inner.fetch(service)

    async def update(self) -> None:
        self.inner.update()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses the arguments and serves the table until stdin ends."""
    parser = argparse.ArgumentParser(prog="table_static", description="Serve a table(5) file.")
    parser.add_argument("file", help="the table(5) file")
    parser.add_argument("--asyncio", action="store_true", help="run the asyncio flavour")
    parser.add_argument(
        "--services",
        default=",".join(SERVICES),
        help="comma-separated services to register (default: all)",
    )
    args = parser.parse_args(argv)
    services = [s for s in args.services.split(",") if s]
    try:
        data = StaticTable(args.file)
    except TableFileError as e:
        print("table_static: %s" % e, file=sys.stderr)
        return 1
    if args.asyncio:
        asyncio.run(aio.run_table(AsyncStaticTable(data), services=services))
    else:
        table.run(data, services=services)
    return 0


if __name__ == "__main__":
    sys.exit(main())
