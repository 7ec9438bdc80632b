"""Reading the shared test vectors (``protocol-spec/vectors``, format in its
README.md) and replaying them against a backend process.

:func:`load_cases` parses every ``FAMILY/*.txt`` file into :class:`Case`
objects; :class:`BackendProcess` runs a backend as a subprocess, performs the
handshake and replays a case's exchanges, matching answers to requests as
the README says (by id for tables and queues; by session and token for
filter results, in listed order per session for data-lines), with the
``{*}`` and ``{NAME}`` placeholders.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

VECTORS = Path(__file__).resolve().parent.parent.parent / "protocol-spec" / "vectors"
FIXTURES = VECTORS / "fixtures"
FAMILIES = ("table", "filter", "queue")
PLACEHOLDER = re.compile(rb"\{(\*\??|[a-z0-9-]+)\}")
# `|{*?}` ending a line: the rest of the line may be absent, or `|` and any text.
OPTIONAL_TAIL = b"|{*?}"
TIMEOUT = 20.0

HANDSHAKES = {
    "table": [b"config|smtpd-version|0.1.0", b"config|protocol|0.1", b"config|tablename|standard"],
    "filter": [
        b"config|smtpd-version|0.1.0",
        b"config|protocol|0.7",
        b"config|smtp-session-timeout|300",
        b"config|subsystem|smtp-in",
        b"config|admd|mx.example.org",
    ],
    "queue": [b"config|smtpd-version|0.1.0", b"config|protocol|0.1"],
}


@dataclass
class Step:
    """One directive of a case: its kind (``>``, ``<``, ``~>``, ``!>``,
    ``!<``), the line and where it is."""

    kind: str
    line: bytes
    where: str


@dataclass
class Case:
    """One ``=== NAME`` case of a vector file."""

    family: str
    file: str
    name: str
    fixture: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    steps: List[Step] = field(default_factory=list)

    @property
    def id(self) -> str:
        return "%s/%s::%s" % (self.family, self.file, self.name)

    def captured_names(self) -> set:
        """Names that ``<`` lines capture (``{NAME}``, not ``{*}``)."""
        names = set()
        for step in self.steps:
            if step.kind == "<":
                names.update(m.group(1) for m in PLACEHOLDER.finditer(step.line) if m.group(1) != b"*")
        return names

    def exchanges(self) -> List[Tuple[List[Step], List[Step]]]:
        """Runs of sent lines (``>``/``~>``) with the answers that follow."""
        runs: List[Tuple[List[Step], List[Step]]] = []
        sends: List[Step] = []
        expects: List[Step] = []
        for step in self.steps:
            if step.kind in (">", "~>"):
                if expects:
                    runs.append((sends, expects))
                    sends, expects = [], []
                sends.append(step)
            elif step.kind == "<":
                expects.append(step)
        if sends or expects:
            runs.append((sends, expects))
        return runs


def parse_file(family: str, path: Path) -> List[Case]:
    """The cases of one vector file."""
    cases: List[Case] = []
    current: Optional[Case] = None
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        where = "%s:%d" % (path.name, number)
        if not raw or raw.startswith(b"#"):
            continue
        if raw.startswith(b"=== "):
            current = Case(family, path.name, raw[4:].decode())
            cases.append(current)
            continue
        if current is None:
            raise ValueError("%s: directive outside a case" % where)
        if raw.startswith(b"fixture: "):
            current.fixture = raw[len(b"fixture: ") :].decode()
        elif raw.startswith(b"note: "):
            current.notes.append(raw[len(b"note: ") :].decode("utf-8", "replace"))
        else:
            kind, sep, line = raw.partition(b" ")
            if not sep or kind not in (b">", b"<", b"~>", b"!>", b"!<"):
                raise ValueError("%s: unknown directive %r" % (where, raw[:20]))
            current.steps.append(Step(kind.decode(), line, where))
    return cases


def load_cases(family: Optional[str] = None) -> List[Case]:
    """Every case of every family (or of one), in file order."""
    cases: List[Case] = []
    for fam in FAMILIES if family is None else (family,):
        for path in sorted((VECTORS / fam).glob("*.txt")):
            cases.extend(parse_file(fam, path))
    return cases


def has_placeholder(line: bytes, names: Optional[set] = None) -> bool:
    """True when ``line`` holds ``{*}`` or ``{NAME}`` (among ``names`` when
    given: for ``>`` lines only captured names count)."""
    for m in PLACEHOLDER.finditer(line):
        if names is None or m.group(1) in names:
            return True
    return False


class Matcher:
    """Expected ``<`` lines turned into patterns, with the captures of a case."""

    def __init__(self) -> None:
        self.captures: Dict[bytes, bytes] = {}

    def substitute(self, line: bytes) -> bytes:
        """A ``>`` line with the captured values put in."""
        return PLACEHOLDER.sub(lambda m: self.captures.get(m.group(1), m.group(0)), line)

    def match(self, expected: bytes, got: bytes) -> bool:
        """Matches one answer, capturing new ``{NAME}`` fields on success."""
        parts: List[bytes] = []
        new: List[bytes] = []
        pos = 0
        optional_tail = expected.endswith(OPTIONAL_TAIL)
        if optional_tail:
            expected = expected[: -len(OPTIONAL_TAIL)]
        for m in PLACEHOLDER.finditer(expected):
            parts.append(re.escape(expected[pos : m.start()]))
            name = m.group(1)
            at_end = m.end() == len(expected)
            if name == b"*":
                parts.append(b".+" if at_end else b"[^|]+")
            elif name in self.captures:
                parts.append(re.escape(self.captures[name]))
            elif name in new:
                parts.append(b"(?P=%s)" % _group(name))
            else:
                new.append(name)
                parts.append(b"(?P<%s>[^|]*)" % _group(name))
            pos = m.end()
        parts.append(re.escape(expected[pos:]))
        if optional_tail:
            parts.append(rb"(?:\|.*)?")
        found = re.fullmatch(b"".join(parts), got, re.DOTALL)
        if found is None:
            return False
        for name in new:
            self.captures[name] = found.group(_group(name).decode())
        return True


def _group(name: bytes) -> bytes:
    return b"g_" + name.replace(b"-", b"_")


def _fields(line: bytes, n: int) -> Tuple[bytes, ...]:
    return tuple(line.split(b"|", n)[:n])


class BackendProcess:
    """A backend under test: a subprocess fed and read line by line."""

    def __init__(self, argv: Sequence[str], family: str) -> None:
        self.family = family
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self.stderr: List[bytes] = []
        self.registrations: List[bytes] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def diagnostics(self) -> str:
        return b"".join(self.stderr).decode("utf-8", "replace")

    def send(self, lines: Sequence[bytes]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(line + b"\n" for line in lines))
        self.proc.stdin.flush()

    def read(self) -> bytes:
        """The next line (without ``\\n``); fails at end of output or after a timeout."""
        try:
            line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no answer within %ss; stderr: %s" % (TIMEOUT, self.diagnostics())) from None
        if line is None:
            raise AssertionError("the backend closed its output; stderr: %s" % self.diagnostics())
        if not line.endswith(b"\n"):
            raise AssertionError("unterminated output line %r" % line[:200])
        return line[:-1]

    def handshake(self) -> List[bytes]:
        """Sends the family's config lines; returns the registrations."""
        self.send(HANDSHAKES[self.family] + [b"config|ready"])
        while True:
            line = self.read()
            if line == b"register|ready":
                return self.registrations
            self.registrations.append(line)

    def close(self) -> Tuple[int, List[bytes]]:
        """Ends the input; the exit status and any output left."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        status = self.proc.wait(timeout=TIMEOUT)
        rest: List[bytes] = []
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            if line is None:
                return status, rest
            rest.append(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def filter_applies(case: Case, registrations: Sequence[bytes]) -> bool:
    """False when a case's filter requests use a phase the backend did not register."""
    phases = {r.split(b"|")[3] for r in registrations if r.startswith(b"register|filter|")}
    for step in case.steps:
        if step.kind in (">", "~>") and step.line.startswith(b"filter|"):
            if _fields(step.line, 5)[4] not in phases:
                return False
    return True


def report_registered(line: bytes, registrations: Sequence[bytes]) -> bool:
    """True when the backend registered the event of a report line."""
    _, _, _, sub, event = _fields(line, 5)
    return (
        b"register|report|%s|%s" % (sub, event) in registrations
        or b"register|report|%s|*" % sub in registrations
    )


def replay(backend: BackendProcess, case: Case) -> None:
    """Runs every exchange of ``case`` and checks the answers."""
    matcher = Matcher()
    for sends, expects in case.exchanges():
        lines = [matcher.substitute(s.line) for s in sends]
        if case.family == "filter":
            lines = [
                line
                for line in lines
                if not line.startswith(b"report|") or report_registered(line, backend.registrations)
            ]
        backend.send(lines)
        got = [backend.read() for _ in expects]
        if case.family == "filter":
            _check_filter(matcher, expects, got)
        else:
            _check_by_id(matcher, expects, got)
    status, rest = backend.close()
    assert rest == [], "unexpected output after the last exchange: %r" % rest[:3]
    assert status == 0, "exit status %d at end of input; stderr: %s" % (status, backend.diagnostics())


def _check_by_id(matcher: Matcher, expects: List[Step], got: List[bytes]) -> None:
    by_key: Dict[Tuple[bytes, ...], List[bytes]] = {}
    for line in got:
        by_key.setdefault(_fields(line, 2), []).append(line)
    for step in expects:
        candidates = by_key.get(_fields(step.line, 2), [])
        assert candidates, "%s: no answer with the id of %r; got %r" % (
            step.where, step.line[:120], [g[:120] for g in got]
        )
        line = candidates.pop(0)
        assert matcher.match(step.line, line), "%s: expected %r, got %r" % (step.where, step.line[:200], line[:200])


def _check_filter(matcher: Matcher, expects: List[Step], got: List[bytes]) -> None:
    results: Dict[Tuple[bytes, ...], List[bytes]] = {}
    datalines: Dict[bytes, List[bytes]] = {}
    for line in got:
        kind, sid, token = _fields(line, 3)
        if kind == b"filter-dataline":
            datalines.setdefault(sid, []).append(line)
        else:
            results.setdefault((kind, sid, token), []).append(line)
    for step in expects:
        kind, sid, token = _fields(step.line, 3)
        if kind == b"filter-dataline":
            queue_ = datalines.get(sid, [])
        else:
            queue_ = results.get((kind, sid, token), [])
        assert queue_, "%s: no answer for %r; got %r" % (step.where, step.line[:120], [g[:120] for g in got])
        line = queue_.pop(0)
        assert matcher.match(step.line, line), "%s: expected %r, got %r" % (step.where, step.line[:200], line[:200])
