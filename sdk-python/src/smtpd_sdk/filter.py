"""Filters from plain callbacks: one :func:`run` call.

::

    from smtpd_sdk import filter

    def mail_from(session, sender):
        if sender.endswith("@spam.example"):
            return filter.reject("550 5.7.1 Go away")
        return filter.proceed()

    filter.run(phases={"mail-from": mail_from})

:func:`run` registers one ``filter|smtp-in|PHASE`` per phase callback and one
``report|smtp-in|EVENT`` per report callback, then answers every request
until stdin ends. Callbacks get the :class:`Session` (its ``data`` dict is
free for the filter's own per-session state):

- phase callbacks ``fn(session, param: str) -> Decision`` return one of
  :func:`proceed`, :func:`junk`, :func:`reject`, :func:`disconnect`,
  :func:`rewrite` or :func:`report` (None counts as proceed);
- report callbacks ``fn(session, report)`` get a
  :class:`~smtpd_sdk.protocol.filter.Report`; ``"*"`` stands for every event;
- ``data_line(session, line: bytes)`` returns the lines to pass on for one
  message line: a list of zero or more lines (str or bytes), one line, or
  None to pass the line unchanged. Lines are given and taken without
  dot-stuffing; the SDK stuffs them on output and sends the closing ``.``
  after everything, first asking ``data_end(session)`` for lines to append.

OpenSMTPD filters have no temporary failure: a phase callback that raises
answers ``reject|451 4.7.1 Filter error`` (traceback on stderr). A
data-line callback that raises passes the line unchanged and marks the
session, so that its ``commit`` is rejected the same way; ``commit`` is
registered whenever data-line callbacks are given. ``link-disconnect`` is
always registered, to forget the session's state.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ._runtime import BackendError, Channel, describe_failure, log
from .protocol import ParseError
from .protocol._line import Text, encode
from .protocol.filter import (
    EVENTS,
    PHASES,
    VERSION,
    DataLine,
    Decision,
    FilterResult,
    Register,
    Report,
    Request,
    parse_input,
)

FAILURE_REPLY = "451 4.7.1 Filter error"
"""The reply a phase gets when its callback fails."""

_PROCEED = Decision("proceed")
_JUNK = Decision("junk")


def proceed() -> Decision:
    """Go on: next filter, then the command."""
    return _PROCEED


def junk() -> Decision:
    """Mark the transaction as spam and go on (not valid at ``commit``)."""
    return _JUNK


def reject(reply: str) -> Decision:
    """Refuse the command with an SMTP reply such as ``550 5.7.1 No``."""
    return Decision("reject", reply)


def disconnect(reply: str) -> Decision:
    """Send an SMTP reply such as ``421 4.7.0 Bye`` and close the session."""
    return Decision("disconnect", reply)


def rewrite(value: str) -> Decision:
    """Run the command with this parameter instead (e.g. ``<a@b.example>``)."""
    return Decision("rewrite", value)


def report(text: str) -> Decision:
    """Report this text and run the command."""
    return Decision("report", text)


class Session:
    """One SMTP session as the filter sees it."""

    __slots__ = ("id", "data", "failed", "tail")

    def __init__(self, session_id: int) -> None:
        self.id = session_id
        """The session id."""
        self.data: Dict[str, Any] = {}
        """Free for the filter's own per-session state."""
        self.failed = False
        """Set when a data-line callback failed in the current message."""
        self.tail: Any = None
        """Used by the asyncio runner to keep the session's work in order."""

    def __repr__(self) -> str:
        return "Session(%016x)" % self.id


PhaseHandler = Callable[[Session, str], Optional[Decision]]
ReportHandler = Callable[[Session, Report], Any]
DataLineHandler = Callable[[Session, bytes], Union[None, Text, Iterable[Text]]]
DataEndHandler = Callable[[Session], Optional[Iterable[Text]]]


def _stuff(line: bytes) -> bytes:
    return b"." + line if line.startswith(b".") else line


def _unstuff(line: bytes) -> bytes:
    return line[1:] if line.startswith(b".") else line


class FilterCore:
    """The parts of a filter that do not depend on how callbacks run:
    registrations, sessions, and the answers to results and failures.
    Shared by :func:`run` and :func:`smtpd_sdk.aio.run_filter`."""

    def __init__(
        self,
        phases: Optional[Mapping[str, Any]],
        reports: Optional[Mapping[str, Any]],
        out_reports: Optional[Mapping[str, Any]],
        data_line: Any,
        data_end: Any,
    ) -> None:
        self.phases = dict(phases or {})
        self.reports = {"smtp-in": dict(reports or {}), "smtp-out": dict(out_reports or {})}
        self.data_line = data_line
        self.data_end = data_end
        self.sessions: Dict[int, Session] = {}
        for name in self.phases:
            if name == "data-line":
                raise ValueError("give data-line callbacks as data_line=")
            if name not in PHASES:
                raise ValueError("unknown filter phase %r" % (name,))
        for table in self.reports.values():
            for event in table:
                if event != "*" and event not in EVENTS:
                    raise ValueError("unknown report event %r" % (event,))

    @property
    def filters_data(self) -> bool:
        """True when data-lines go through callbacks."""
        return self.data_line is not None or self.data_end is not None

    def registrations(self) -> List[bytes]:
        """The handshake answer."""
        lines = []
        for sub, table in self.reports.items():
            events = list(table)
            if sub == "smtp-in" or events:
                if "*" not in events and "link-disconnect" not in events:
                    events.append("link-disconnect")
            lines += [Register("report", sub, e).format() for e in events]
        phases = [p for p in PHASES if p in self.phases]
        if self.filters_data:
            phases = [p for p in PHASES if p in self.phases or p in ("data-line", "commit")]
        lines += [Register("filter", "smtp-in", p).format() for p in phases]
        return lines + [Register("ready").format()]

    def parse(self, line: bytes) -> Union[None, Report, Request]:
        """A daemon line, or None (logged) when it cannot be parsed."""
        try:
            return parse_input(line)
        except ParseError as e:
            log("bad line from the daemon: %s" % e)
            return None

    def session(self, session_id: int) -> Session:
        """The session with this id, created on first sight."""
        s = self.sessions.get(session_id)
        if s is None:
            s = self.sessions[session_id] = Session(session_id)
        return s

    def report_handler(self, rep: Report) -> Optional[ReportHandler]:
        """The callback for a report, if any."""
        table = self.reports[rep.subsystem]
        return table.get(rep.event) or table.get("*")

    def report_done(self, rep: Report) -> None:
        """Forgets the session after its ``link-disconnect``."""
        if rep.event == "link-disconnect":
            self.sessions.pop(rep.session, None)

    def report_failure(self, rep: Report, exc: BaseException) -> None:
        """Logs a failed report callback."""
        describe_failure("report %s" % rep.event, exc)

    def phase_handler(self, req: Request, session: Session) -> Tuple[Optional[bytes], Optional[PhaseHandler]]:
        """Either the immediate answer to a phase request or its callback."""
        if req.phase == "commit" and session.failed:
            session.failed = False
            return self._result(req, Decision("reject", FAILURE_REPLY)), None
        fn = self.phases.get(req.phase)
        if fn is None:
            return self._result(req, _PROCEED), None
        return None, fn

    def phase_answer(self, req: Request, session: Session, result: Any) -> bytes:
        """The answer to a phase callback's decision."""
        decision = _PROCEED if result is None else result
        try:
            if not isinstance(decision, Decision):
                raise TypeError("a phase callback must return a Decision, not %s" % type(result).__name__)
            if decision.name == "junk" and req.phase == "commit":
                raise ValueError("junk is not allowed at commit")
            return FilterResult(req.session, req.token, decision).format()
        except (TypeError, ValueError) as e:  # FormatError is a ValueError
            return self.phase_failure(req, session, e)

    def phase_failure(self, req: Request, session: Session, exc: BaseException) -> bytes:
        """The answer when a phase callback failed."""
        describe_failure("phase %s" % req.phase, exc)
        return self._result(req, Decision("reject", FAILURE_REPLY))

    def _result(self, req: Request, decision: Decision) -> bytes:
        return FilterResult(req.session, req.token, decision).format()

    def lines_out(self, req: Request, session: Session, result: Any, original: Optional[bytes]) -> List[bytes]:
        """``filter-dataline`` lines for a callback's result (``original``
        passes unchanged when the result is None)."""
        if result is None:
            lines: Iterable[Text] = () if original is None else (original,)
        elif isinstance(result, (str, bytes)):
            lines = (result,)
        else:
            lines = result
        try:
            return [
                DataLine(req.session, req.token, _stuff(encode("data line", line))).format()
                for line in lines
            ]
        except Exception as e:  # a bad line or a failing generator: pass the original
            self.data_failure(session, "data-line", e)
            return [] if original is None else [DataLine(req.session, req.token, _stuff(original)).format()]

    def data_failure(self, session: Session, what: str, exc: BaseException) -> None:
        """Logs a failed data callback and marks the session."""
        describe_failure(what, exc)
        session.failed = True

    def end_line(self, req: Request) -> bytes:
        """The closing ``.`` of a message."""
        return DataLine(req.session, req.token, b".").format()


def run(
    *,
    phases: Optional[Mapping[str, PhaseHandler]] = None,
    reports: Optional[Mapping[str, ReportHandler]] = None,
    out_reports: Optional[Mapping[str, ReportHandler]] = None,
    data_line: Optional[DataLineHandler] = None,
    data_end: Optional[DataEndHandler] = None,
    on_config: Optional[Callable[[Dict[str, str]], Any]] = None,
    infd: int = 0,
    outfd: int = 1,
) -> None:
    """Runs a filter on ``infd``/``outfd`` until the input ends.

    ``phases`` maps phase names (``connect``, ``mail-from``, ...) to phase
    callbacks; ``reports`` and ``out_reports`` map event names (or ``*``) of
    ``smtp-in`` and ``smtp-out`` to report callbacks. ``on_config`` receives
    the daemon's ``config|...`` values after the handshake. Returns at end of
    input; exits with status 1 when the daemon announces another protocol
    version.
    """
    core = FilterCore(phases, reports, out_reports, data_line, data_end)
    channel = Channel(infd, outfd)
    try:
        config = channel.handshake(VERSION, core.registrations())
        if config is None:
            return
        if on_config is not None:
            on_config(config)
        _serve(channel, core)
    except BrokenPipeError:
        log("the daemon closed the output pipe")


def _serve(channel: Channel, core: FilterCore) -> None:
    out = channel.out
    for line in channel.lines:
        item = core.parse(line)
        if item is None:
            continue
        session = core.session(item.session)
        if isinstance(item, Report):
            _report(core, session, item)
        elif item.phase == "data-line":
            out.extend(_data_line(core, session, item))
        else:
            out.append(_phase(core, session, item))
    channel.flush()


def _report(core: FilterCore, session: Session, rep: Report) -> None:
    fn = core.report_handler(rep)
    if fn is not None:
        try:
            fn(session, rep)
        except Exception as e:  # a report is never answered; log and go on
            core.report_failure(rep, e)
    core.report_done(rep)


def _phase(core: FilterCore, session: Session, req: Request) -> bytes:
    immediate, fn = core.phase_handler(req, session)
    if fn is None:
        return immediate or b""
    try:
        result = fn(session, req.text)
    except Exception as e:  # every request is answered, whatever the callback does
        return core.phase_failure(req, session, e)
    return core.phase_answer(req, session, result)


def _data_line(core: FilterCore, session: Session, req: Request) -> List[bytes]:
    if req.param == b".":
        lines: List[bytes] = []
        if core.data_end is not None:
            try:
                lines = core.lines_out(req, session, core.data_end(session), None)
            except Exception as e:  # the message must still end
                core.data_failure(session, "data-end", e)
        return lines + [core.end_line(req)]
    if core.data_line is None:
        return [DataLine(req.session, req.token, req.param).format()]
    original = _unstuff(req.param)
    try:
        result = core.data_line(session, original)
    except Exception as e:  # pass the line on unchanged; commit will be rejected
        core.data_failure(session, "data-line", e)
        result = None
    return core.lines_out(req, session, result, original)


__all__ = [
    "FAILURE_REPLY",
    "BackendError",
    "Decision",
    "Report",
    "Request",
    "Session",
    "disconnect",
    "junk",
    "proceed",
    "reject",
    "report",
    "rewrite",
    "run",
]
