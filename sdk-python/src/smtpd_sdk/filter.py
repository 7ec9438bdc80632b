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
- ``data_line(session, line: bytes)`` gets one message line exactly as the
  daemon sends it (still dot-stuffed: a content line ``.x`` arrives as
  ``..x``; :func:`unstuff` removes it) and returns the lines to pass on: None
  for the line unchanged, one line (str or bytes), or a list of zero or more.
  Returned lines are sent as they are, so they must be dot-stuffed too
  (:func:`stuff`); a lone ``.`` is sent as ``..``, so a filter cannot end a
  message early. The SDK sends the closing ``.`` itself, after the lines
  returned by ``data_end(session)`` if given.

OpenSMTPD filters have no temporary failure: a phase callback that raises
(or returns something that cannot be sent) answers
``reject|451 4.7.1 Filter error``, or ``disconnect|421 4.7.1 Filter error``
at ``connect``, with the traceback on stderr. When a data-line callback
fails, the rest of the message is dropped, the closing ``.`` is still sent
and the session's ``commit`` is rejected with the 451 reply, so nothing is
lost silently; ``commit`` is registered whenever data-line callbacks are
given. ``link-disconnect`` is always registered, to forget the session's
state.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ._runtime import BackendError, Channel, describe_failure, log, serve_backend
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

CONNECT_FAILURE_REPLY = "421 4.7.1 Filter error"
"""The reply (with a disconnect) when the ``connect`` callback fails."""

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


def stuff(line: bytes) -> bytes:
    """Adds the dot-stuffing to a content line: ``.x`` becomes ``..x``."""
    return b"." + line if line.startswith(b".") else line


def unstuff(line: bytes) -> bytes:
    """Removes the dot-stuffing of a message line: ``..x`` becomes ``.x``."""
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
        if req.phase == "connect":
            return self._result(req, Decision("disconnect", CONNECT_FAILURE_REPLY))
        return self._result(req, Decision("reject", FAILURE_REPLY))

    def _result(self, req: Request, decision: Decision) -> bytes:
        return FilterResult(req.session, req.token, decision).format()

    def data_output(self, req: Request, result: Any, unchanged: Tuple[bytes, ...]) -> List[bytes]:
        """``filter-dataline`` lines for a data callback's result (None:
        ``unchanged``); raises when a line cannot be sent."""
        if result is None:
            lines: Iterable[Text] = unchanged
        elif isinstance(result, (str, bytes)):
            lines = (result,)
        else:
            lines = result
        out = []
        for line in lines:
            raw = encode("data line", line)
            out.append(DataLine(req.session, req.token, b".." if raw == b"." else raw).format())
        return out

    def data_failure(self, session: Session, what: str, exc: BaseException) -> None:
        """Logs a failed data callback; the rest of the message is dropped
        and its commit rejected."""
        describe_failure("%s (dropping the rest of the message)" % what, exc)
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
    serve_backend(channel, VERSION, core.registrations(), on_config, lambda: _serve(channel, core))


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
        if core.data_end is not None and not session.failed:
            try:
                lines = core.data_output(req, core.data_end(session), ())
            except Exception as e:  # the message must still end
                core.data_failure(session, "data-end", e)
        return lines + [core.end_line(req)]
    if session.failed:
        return []
    if core.data_line is None:
        return [DataLine(req.session, req.token, req.param).format()]
    try:
        return core.data_output(req, core.data_line(session, req.param), (req.param,))
    except Exception as e:  # drop the rest of the message; commit will be rejected
        core.data_failure(session, "data-line", e)
        return []


__all__ = [
    "CONNECT_FAILURE_REPLY",
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
    "stuff",
    "unstuff",
]
