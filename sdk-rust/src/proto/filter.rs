//! The filter protocol, version 0.7 (OpenSMTPD 7.8's smtpd-filters(7)).
//!
//! After the handshake the daemon sends [`Input`] lines (reports and filter
//! requests, interleaved) and the filter answers with [`Output`] lines
//! (decisions and data-lines).
//!
//! ```text
//! > filter|0.7|1731000003.250000|smtp-in|mail-from|a1b2c3d4e5f60718|5d0a000100000001|alice@example.net
//! < filter-result|a1b2c3d4e5f60718|5d0a000100000001|proceed
//! ```

use bytes::BytesMut;

use super::ids::{parse_decimal, parse_hex_exact, parse_hex_lenient};
use super::keyword::keywords;
use super::line::{Cursor, Writer};
use super::{EvpId, FormatError, Line, MsgId, ParseError, Problem, SessionId, Timestamp, Token};

/// The protocol version this module speaks.
pub const VERSION: &str = "0.7";

keywords!(
    /// Which side of the daemon an event comes from.
    Subsystem {
        /// Inbound SMTP sessions.
        SmtpIn = "smtp-in",
        /// Outbound SMTP connections (relaying).
        SmtpOut = "smtp-out",
    }
);

keywords!(
    /// A point of an inbound session where filters are asked.
    Phase {
        /// Connection accepted, before the banner.
        Connect = "connect",
        /// HELO.
        Helo = "helo",
        /// EHLO.
        Ehlo = "ehlo",
        /// STARTTLS.
        StartTls = "starttls",
        /// AUTH.
        Auth = "auth",
        /// MAIL FROM.
        MailFrom = "mail-from",
        /// RCPT TO.
        RcptTo = "rcpt-to",
        /// DATA.
        Data = "data",
        /// One line of the message.
        DataLine = "data-line",
        /// RSET.
        Rset = "rset",
        /// QUIT.
        Quit = "quit",
        /// NOOP.
        Noop = "noop",
        /// HELP (accepted, never asked).
        Help = "help",
        /// WIZ (accepted, never asked).
        Wiz = "wiz",
        /// After the message came back through the data-line filters.
        Commit = "commit",
    }
);

keywords!(
    /// The name of a report event.
    EventKind {
        /// A connection was accepted.
        LinkConnect = "link-connect",
        /// The connection ended.
        LinkDisconnect = "link-disconnect",
        /// The banner was sent.
        LinkGreeting = "link-greeting",
        /// HELO/EHLO was accepted.
        LinkIdentify = "link-identify",
        /// TLS was established.
        LinkTls = "link-tls",
        /// An authentication attempt ended.
        LinkAuth = "link-auth",
        /// A transaction ended.
        TxReset = "tx-reset",
        /// A transaction began.
        TxBegin = "tx-begin",
        /// MAIL FROM was answered.
        TxMail = "tx-mail",
        /// RCPT TO was answered.
        TxRcpt = "tx-rcpt",
        /// An envelope was queued.
        TxEnvelope = "tx-envelope",
        /// DATA was answered.
        TxData = "tx-data",
        /// The message was committed.
        TxCommit = "tx-commit",
        /// The transaction was abandoned.
        TxRollback = "tx-rollback",
        /// A command line from the client.
        ProtocolClient = "protocol-client",
        /// A reply line from the server.
        ProtocolServer = "protocol-server",
        /// A note from a filter.
        FilterReport = "filter-report",
        /// The final outcome of a filter chain.
        FilterResponse = "filter-response",
        /// The session timed out.
        Timeout = "timeout",
    }
);

keywords!(
    /// Forward-confirmed reverse DNS outcome.
    Fcrdns {
        /// The reverse name resolves back to the address.
        Pass = "pass",
        /// It does not.
        Fail = "fail",
        /// The lookup failed.
        Error = "error",
    }
);

keywords!(
    /// Outcome of an authentication attempt.
    AuthResult {
        /// Accepted.
        Pass = "pass",
        /// Refused.
        Fail = "fail",
        /// A temporary failure.
        Error = "error",
    }
);

keywords!(
    /// Outcome of a transaction command.
    TxResult {
        /// Accepted.
        Ok = "ok",
        /// Refused for good (5xx).
        Permfail = "permfail",
        /// Refused for now (4xx).
        Tempfail = "tempfail",
    }
);

/// A report event with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `link-connect|RDNS|FCRDNS|SRC|DEST`.
    LinkConnect {
        /// Reverse name, or `<unknown>`.
        rdns: String,
        /// Forward-confirmation outcome.
        fcrdns: Fcrdns,
        /// Client `ADDR:PORT` or `unix:PATH`.
        src: String,
        /// Server `ADDR:PORT` or `unix:PATH`.
        dest: String,
    },
    /// `link-disconnect`.
    LinkDisconnect,
    /// `link-greeting|HOSTNAME`.
    LinkGreeting {
        /// The name in the banner.
        hostname: String,
    },
    /// `link-identify|METHOD|IDENTITY`.
    LinkIdentify {
        /// `HELO`, `EHLO` (or `LHLO` outbound).
        method: String,
        /// The name given.
        identity: String,
    },
    /// `link-tls|VERSION:CIPHER:BITS`.
    LinkTls {
        /// TLS details.
        info: String,
    },
    /// `link-auth|RESULT|USERNAME`.
    LinkAuth {
        /// The outcome.
        result: AuthResult,
        /// The user name (vis(3)-escaped).
        username: String,
    },
    /// `tx-reset|MSGID`.
    TxReset {
        /// The transaction.
        msgid: MsgId,
    },
    /// `tx-begin|MSGID`.
    TxBegin {
        /// The transaction.
        msgid: MsgId,
    },
    /// `tx-mail|MSGID|RESULT|ADDRESS`.
    TxMail {
        /// The transaction.
        msgid: MsgId,
        /// The outcome.
        result: TxResult,
        /// The sender as the client wrote it.
        address: String,
    },
    /// `tx-rcpt|MSGID|RESULT|ADDRESS`.
    TxRcpt {
        /// The transaction.
        msgid: MsgId,
        /// The outcome.
        result: TxResult,
        /// The recipient as the client wrote it.
        address: String,
    },
    /// `tx-envelope|MSGID|EVPID`.
    TxEnvelope {
        /// The transaction.
        msgid: MsgId,
        /// The queued envelope.
        evpid: EvpId,
    },
    /// `tx-data|MSGID|RESULT`.
    TxData {
        /// The transaction.
        msgid: MsgId,
        /// The outcome.
        result: TxResult,
    },
    /// `tx-commit|MSGID|SIZE`.
    TxCommit {
        /// The transaction.
        msgid: MsgId,
        /// Bytes written to the queue.
        size: u64,
    },
    /// `tx-rollback|MSGID`.
    TxRollback {
        /// The transaction.
        msgid: MsgId,
    },
    /// `protocol-client|LINE`.
    ProtocolClient {
        /// The command (credentials masked).
        line: String,
    },
    /// `protocol-server|LINE`.
    ProtocolServer {
        /// The reply line.
        line: String,
    },
    /// `filter-report|KIND|NAME|MESSAGE`.
    FilterReport {
        /// `builtin` or `proc`.
        kind: String,
        /// The filter's name.
        name: String,
        /// The note.
        message: String,
    },
    /// `filter-response|PHASE|RESPONSE[|PARAM]`.
    FilterResponse {
        /// The phase as reported (`connected`, `tls`, `mail-from`, ...).
        phase: String,
        /// `proceed`, `junk`, `reject`, ...
        response: String,
        /// The decision's parameter, if any.
        param: Option<String>,
    },
    /// `timeout`.
    Timeout,
    /// An event this codec does not know, kept whole for forward
    /// compatibility.
    Unknown {
        /// The event name.
        name: String,
        /// Everything after the session id, if anything.
        params: Option<String>,
    },
}

impl Event {
    /// The event's name on the wire.
    pub fn name(&self) -> &str {
        match self.kind() {
            Some(kind) => kind.name(),
            None => match self {
                Self::Unknown { name, .. } => name,
                _ => "",
            },
        }
    }

    /// The event's kind; `None` for [`Event::Unknown`].
    pub fn kind(&self) -> Option<EventKind> {
        Some(match self {
            Self::LinkConnect { .. } => EventKind::LinkConnect,
            Self::LinkDisconnect => EventKind::LinkDisconnect,
            Self::LinkGreeting { .. } => EventKind::LinkGreeting,
            Self::LinkIdentify { .. } => EventKind::LinkIdentify,
            Self::LinkTls { .. } => EventKind::LinkTls,
            Self::LinkAuth { .. } => EventKind::LinkAuth,
            Self::TxReset { .. } => EventKind::TxReset,
            Self::TxBegin { .. } => EventKind::TxBegin,
            Self::TxMail { .. } => EventKind::TxMail,
            Self::TxRcpt { .. } => EventKind::TxRcpt,
            Self::TxEnvelope { .. } => EventKind::TxEnvelope,
            Self::TxData { .. } => EventKind::TxData,
            Self::TxCommit { .. } => EventKind::TxCommit,
            Self::TxRollback { .. } => EventKind::TxRollback,
            Self::ProtocolClient { .. } => EventKind::ProtocolClient,
            Self::ProtocolServer { .. } => EventKind::ProtocolServer,
            Self::FilterReport { .. } => EventKind::FilterReport,
            Self::FilterResponse { .. } => EventKind::FilterResponse,
            Self::Timeout => EventKind::Timeout,
            Self::Unknown { .. } => return None,
        })
    }
}

/// A filter's handshake answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// `register|report|SUBSYSTEM|EVENT`; `event: None` is `*` (all events).
    Report {
        /// Inbound or outbound.
        subsystem: Subsystem,
        /// The event, or every event.
        event: Option<EventKind>,
    },
    /// `register|filter|smtp-in|PHASE`.
    Filter {
        /// The phase.
        phase: Phase,
    },
    /// `register|ready`.
    Ready,
}

impl Line for Register {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        c.expect(b"register", "line type", "register")?;
        let what = c.field("registration", "report, filter or ready")?;
        let parsed = match what {
            b"ready" => Self::Ready,
            b"report" => {
                let sub = c.field("subsystem", "smtp-in or smtp-out")?;
                let subsystem = Subsystem::from_name(sub)
                    .ok_or_else(|| c.error(Problem::Unknown, "subsystem", "smtp-in or smtp-out"))?;
                let event = c.field("event", "an event name or *")?;
                let event =
                    match event {
                        b"*" => None,
                        name => Some(EventKind::from_name(name).ok_or_else(|| {
                            c.error(Problem::Unknown, "event", "an event name or *")
                        })?),
                    };
                Self::Report { subsystem, event }
            }
            b"filter" => {
                c.expect(
                    b"smtp-in",
                    "subsystem",
                    "smtp-in (only inbound sessions are filtered)",
                )?;
                let phase = c.field("phase", "a phase name")?;
                let phase = Phase::from_name(phase)
                    .ok_or_else(|| c.error(Problem::Unknown, "phase", "a phase name"))?;
                Self::Filter { phase }
            }
            _ => return Err(c.error(Problem::Unknown, "registration", "report, filter or ready")),
        };
        c.finish("registration")?;
        Ok(parsed)
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        let mut w = Writer::new(out);
        w.raw(b"register");
        match self {
            Self::Ready => w.raw(b"ready"),
            Self::Report { subsystem, event } => w
                .raw(b"report")
                .raw(subsystem.name().as_bytes())
                .raw(event.map_or("*", EventKind::name).as_bytes()),
            Self::Filter { phase } => w
                .raw(b"filter")
                .raw(b"smtp-in")
                .raw(phase.name().as_bytes()),
        };
        w.end();
        Ok(())
    }
}

/// `report|0.7|TS|SUBSYSTEM|EVENT|SID[|PARAMS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// When it happened.
    pub timestamp: Timestamp,
    /// Inbound or outbound.
    pub subsystem: Subsystem,
    /// The session.
    pub session: SessionId,
    /// What happened.
    pub event: Event,
}

/// `filter|0.7|TS|smtp-in|PHASE|SID|TOKEN|PARAM`: a question that needs an
/// answer (a `filter-result`, or `filter-dataline` lines for data-line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// When it was asked.
    pub timestamp: Timestamp,
    /// The phase.
    pub phase: Phase,
    /// The session.
    pub session: SessionId,
    /// The filter's place in the chain; echo it back.
    pub token: Token,
    /// The phase's parameter, possibly empty; raw bytes (data-lines are
    /// 8-bit).
    pub param: Vec<u8>,
}

impl Request {
    /// The parameter as text (lossy for non UTF-8 bytes).
    pub fn param_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.param)
    }

    /// For `connect`: the reverse name and the source address.
    pub fn connect_params(&self) -> Option<(&str, &str)> {
        let text = std::str::from_utf8(&self.param).ok()?;
        text.split_once('|')
    }
}

/// A line from the daemon after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An event, to note; never answered.
    Report(Report),
    /// A question, to answer.
    Filter(Request),
}

const SID_FORM: &str = "16 hex digits";

fn parse_sid(c: &Cursor<'_>, raw: &[u8]) -> Result<SessionId, ParseError> {
    parse_hex_lenient(raw)
        .map(SessionId)
        .ok_or_else(|| c.error(Problem::Invalid, "session id", SID_FORM))
}

fn parse_token(c: &Cursor<'_>, raw: &[u8]) -> Result<Token, ParseError> {
    parse_hex_lenient(raw)
        .map(Token)
        .ok_or_else(|| c.error(Problem::Invalid, "token", SID_FORM))
}

fn parse_msgid(c: &Cursor<'_>, raw: &[u8]) -> Result<MsgId, ParseError> {
    parse_hex_exact(raw, MsgId::WIDTH)
        .map(|v| MsgId(v as u32))
        .ok_or_else(|| c.error(Problem::Invalid, "message id", "8 lower-case hex digits"))
}

fn keyword<T>(
    c: &Cursor<'_>,
    raw: &[u8],
    from: fn(&[u8]) -> Option<T>,
    field: &'static str,
    expected: &'static str,
) -> Result<T, ParseError> {
    from(raw).ok_or_else(|| c.error(Problem::Invalid, field, expected))
}

fn parse_event(c: &mut Cursor<'_>, name: &[u8]) -> Result<Event, ParseError> {
    let Some(kind) = EventKind::from_name(name) else {
        let name = c.utf8(name, "event")?.to_owned();
        let params = c
            .opt_last()
            .map(|p| c.utf8(p, "event parameters"))
            .transpose()?;
        return Ok(Event::Unknown {
            name,
            params: params.map(str::to_owned),
        });
    };
    let text = |c: &mut Cursor<'_>, f: &'static str| c.text(f, f).map(str::to_owned);
    let last = |c: &mut Cursor<'_>, f: &'static str| c.last_text(f, f).map(str::to_owned);
    let event = match kind {
        EventKind::LinkConnect => {
            let rdns = text(c, "rdns")?;
            let fc = c.field("fcrdns", "pass, fail or error")?;
            let fcrdns = keyword(c, fc, Fcrdns::from_name, "fcrdns", "pass, fail or error")?;
            let src = text(c, "source address")?;
            let dest = last(c, "destination address")?;
            Event::LinkConnect {
                rdns,
                fcrdns,
                src,
                dest,
            }
        }
        EventKind::LinkDisconnect => Event::LinkDisconnect,
        EventKind::Timeout => Event::Timeout,
        EventKind::LinkGreeting => Event::LinkGreeting {
            hostname: last(c, "hostname")?,
        },
        EventKind::LinkIdentify => Event::LinkIdentify {
            method: text(c, "method")?,
            identity: last(c, "identity")?,
        },
        EventKind::LinkTls => Event::LinkTls {
            info: last(c, "tls info")?,
        },
        EventKind::LinkAuth => {
            let raw = c.field("auth result", "pass, fail or error")?;
            let result = keyword(
                c,
                raw,
                AuthResult::from_name,
                "auth result",
                "pass, fail or error",
            )?;
            Event::LinkAuth {
                result,
                username: last(c, "username")?,
            }
        }
        EventKind::TxReset | EventKind::TxBegin | EventKind::TxRollback => {
            let raw = c.field("message id", "8 lower-case hex digits")?;
            let msgid = parse_msgid(c, raw)?;
            match kind {
                EventKind::TxReset => Event::TxReset { msgid },
                EventKind::TxBegin => Event::TxBegin { msgid },
                _ => Event::TxRollback { msgid },
            }
        }
        EventKind::TxMail | EventKind::TxRcpt => {
            let raw = c.field("message id", "8 lower-case hex digits")?;
            let msgid = parse_msgid(c, raw)?;
            let raw = c.field("result", "ok, permfail or tempfail")?;
            let result = keyword(
                c,
                raw,
                TxResult::from_name,
                "result",
                "ok, permfail or tempfail",
            )?;
            let address = last(c, "address")?;
            if kind == EventKind::TxMail {
                Event::TxMail {
                    msgid,
                    result,
                    address,
                }
            } else {
                Event::TxRcpt {
                    msgid,
                    result,
                    address,
                }
            }
        }
        EventKind::TxEnvelope => {
            let raw = c.field("message id", "8 lower-case hex digits")?;
            let msgid = parse_msgid(c, raw)?;
            let raw = c.field("envelope id", "16 lower-case hex digits")?;
            let evpid = parse_hex_exact(raw, EvpId::WIDTH)
                .map(EvpId)
                .ok_or_else(|| {
                    c.error(Problem::Invalid, "envelope id", "16 lower-case hex digits")
                })?;
            Event::TxEnvelope { msgid, evpid }
        }
        EventKind::TxData => {
            let raw = c.field("message id", "8 lower-case hex digits")?;
            let msgid = parse_msgid(c, raw)?;
            let raw = c.field("result", "ok, permfail or tempfail")?;
            let result = keyword(
                c,
                raw,
                TxResult::from_name,
                "result",
                "ok, permfail or tempfail",
            )?;
            Event::TxData { msgid, result }
        }
        EventKind::TxCommit => {
            let raw = c.field("message id", "8 lower-case hex digits")?;
            let msgid = parse_msgid(c, raw)?;
            let raw = c.field("size", "a decimal size")?;
            let size = parse_decimal(raw)
                .ok_or_else(|| c.error(Problem::Invalid, "size", "a decimal size"))?;
            Event::TxCommit { msgid, size }
        }
        EventKind::ProtocolClient => Event::ProtocolClient {
            line: last(c, "line")?,
        },
        EventKind::ProtocolServer => Event::ProtocolServer {
            line: last(c, "line")?,
        },
        EventKind::FilterReport => Event::FilterReport {
            kind: text(c, "kind")?,
            name: text(c, "filter name")?,
            message: last(c, "message")?,
        },
        EventKind::FilterResponse => {
            let phase = text(c, "phase")?;
            let response = c.text("response", "response")?.to_owned();
            let param = c.opt_last().map(|p| c.utf8(p, "parameter")).transpose()?;
            Event::FilterResponse {
                phase,
                response,
                param: param.map(str::to_owned),
            }
        }
    };
    c.finish("event parameters")?;
    Ok(event)
}

fn write_event(w: &mut Writer<'_>, event: &Event) -> Result<(), FormatError> {
    match event {
        Event::LinkConnect {
            rdns,
            fcrdns,
            src,
            dest,
        } => {
            w.field("rdns", rdns.as_bytes())?
                .raw(fcrdns.name().as_bytes())
                .field("source address", src.as_bytes())?
                .last("destination address", dest.as_bytes())?;
        }
        Event::LinkDisconnect | Event::Timeout => {}
        Event::LinkGreeting { hostname } => {
            w.last("hostname", hostname.as_bytes())?;
        }
        Event::LinkIdentify { method, identity } => {
            w.field("method", method.as_bytes())?
                .last("identity", identity.as_bytes())?;
        }
        Event::LinkTls { info } => {
            w.last("tls info", info.as_bytes())?;
        }
        Event::LinkAuth { result, username } => {
            w.raw(result.name().as_bytes())
                .last("username", username.as_bytes())?;
        }
        Event::TxReset { msgid } | Event::TxBegin { msgid } | Event::TxRollback { msgid } => {
            w.hex(u64::from(msgid.0), MsgId::WIDTH);
        }
        Event::TxMail {
            msgid,
            result,
            address,
        }
        | Event::TxRcpt {
            msgid,
            result,
            address,
        } => {
            w.hex(u64::from(msgid.0), MsgId::WIDTH)
                .raw(result.name().as_bytes())
                .last("address", address.as_bytes())?;
        }
        Event::TxEnvelope { msgid, evpid } => {
            w.hex(u64::from(msgid.0), MsgId::WIDTH)
                .hex(evpid.0, EvpId::WIDTH);
        }
        Event::TxData { msgid, result } => {
            w.hex(u64::from(msgid.0), MsgId::WIDTH)
                .raw(result.name().as_bytes());
        }
        Event::TxCommit { msgid, size } => {
            w.hex(u64::from(msgid.0), MsgId::WIDTH).decimal(*size);
        }
        Event::ProtocolClient { line } | Event::ProtocolServer { line } => {
            w.last("line", line.as_bytes())?;
        }
        Event::FilterReport {
            kind,
            name,
            message,
        } => {
            w.field("kind", kind.as_bytes())?
                .field("filter name", name.as_bytes())?
                .last("message", message.as_bytes())?;
        }
        Event::FilterResponse {
            phase,
            response,
            param,
        } => {
            w.field("phase", phase.as_bytes())?;
            match param {
                None => w.last("response", response.as_bytes())?,
                Some(p) => w
                    .field("response", response.as_bytes())?
                    .last("parameter", p.as_bytes())?,
            };
        }
        Event::Unknown { params, .. } => {
            if let Some(p) = params {
                w.last("event parameters", p.as_bytes())?;
            }
        }
    }
    Ok(())
}

impl Line for Input {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        let kind = c.field("line type", "report or filter")?;
        if kind != b"report" && kind != b"filter" {
            return Err(c.error(Problem::Unknown, "line type", "report or filter"));
        }
        c.expect(VERSION.as_bytes(), "protocol version", "0.7")?;
        let ts = c.field("timestamp", "SECONDS.MICROSECONDS")?;
        let timestamp = Timestamp::parse(ts)
            .ok_or_else(|| c.error(Problem::Invalid, "timestamp", "SECONDS.MICROSECONDS"))?;
        let sub = c.field("subsystem", "smtp-in or smtp-out")?;
        let subsystem = Subsystem::from_name(sub)
            .ok_or_else(|| c.error(Problem::Unknown, "subsystem", "smtp-in or smtp-out"))?;
        if kind == b"report" {
            let name = c.field("event", "an event name")?;
            let raw = c.field("session id", SID_FORM)?;
            let session = parse_sid(&c, raw)?;
            let event = parse_event(&mut c, name)?;
            return Ok(Self::Report(Report {
                timestamp,
                subsystem,
                session,
                event,
            }));
        }
        if subsystem != Subsystem::SmtpIn {
            return Err(c.error(Problem::Invalid, "subsystem", "smtp-in"));
        }
        let phase = c.field("phase", "a phase name")?;
        let phase = Phase::from_name(phase)
            .ok_or_else(|| c.error(Problem::Unknown, "phase", "a phase name"))?;
        let raw = c.field("session id", SID_FORM)?;
        let session = parse_sid(&c, raw)?;
        let raw = c.field("token", SID_FORM)?;
        let token = parse_token(&c, raw)?;
        let param = c
            .last("parameter", "the phase's parameter, possibly empty")?
            .to_vec();
        Ok(Self::Filter(Request {
            timestamp,
            phase,
            session,
            token,
            param,
        }))
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        let mut w = Writer::new(out);
        match self {
            Self::Report(r) => {
                w.raw(b"report").raw(VERSION.as_bytes());
                w.separator_then(|out| r.timestamp.write(out));
                w.raw(r.subsystem.name().as_bytes());
                w.field("event", r.event.name().as_bytes())?;
                w.hex(r.session.0, SessionId::WIDTH);
                write_event(&mut w, &r.event)?;
            }
            Self::Filter(q) => {
                w.raw(b"filter").raw(VERSION.as_bytes());
                w.separator_then(|out| q.timestamp.write(out));
                w.raw(b"smtp-in")
                    .raw(q.phase.name().as_bytes())
                    .hex(q.session.0, SessionId::WIDTH)
                    .hex(q.token.0, Token::WIDTH)
                    .last("parameter", &q.param)?;
            }
        }
        w.end();
        Ok(())
    }
}

/// A filter's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on to the next filter, then run the command.
    Proceed,
    /// Mark the transaction as spam and run the command.
    Junk,
    /// Refuse the command with this SMTP reply (e.g. `550 5.7.1 No`).
    Reject(String),
    /// Send this SMTP reply and close the session.
    Disconnect(String),
    /// Run the command with this parameter instead.
    Rewrite(String),
    /// Report this text and run the command.
    Report(String),
}

impl Decision {
    fn name(&self) -> &'static str {
        match self {
            Self::Proceed => "proceed",
            Self::Junk => "junk",
            Self::Reject(_) => "reject",
            Self::Disconnect(_) => "disconnect",
            Self::Rewrite(_) => "rewrite",
            Self::Report(_) => "report",
        }
    }
}

/// A line from the filter after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `filter-result|SID|TOKEN|DECISION[|PARAM]`.
    Result {
        /// The session asked about.
        session: SessionId,
        /// The token of the request.
        token: Token,
        /// The verdict.
        decision: Decision,
    },
    /// `filter-dataline|SID|TOKEN|LINE`: one line of the (possibly changed)
    /// message; a lone `.` ends it.
    DataLine {
        /// The session.
        session: SessionId,
        /// The token of the data-line requests.
        token: Token,
        /// The line, still dot-stuffed; raw bytes.
        line: Vec<u8>,
    },
}

const DECISIONS: &str = "proceed, junk, reject, disconnect, rewrite or report";

impl Line for Output {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        let kind = c.field("line type", "filter-result or filter-dataline")?;
        let is_result = match kind {
            b"filter-result" => true,
            b"filter-dataline" => false,
            _ => {
                return Err(c.error(
                    Problem::Unknown,
                    "line type",
                    "filter-result or filter-dataline",
                ))
            }
        };
        let raw = c.field("session id", SID_FORM)?;
        let session = parse_sid(&c, raw)?;
        let raw = c.field("token", SID_FORM)?;
        let token = parse_token(&c, raw)?;
        if !is_result {
            let line = c.last("data line", "the line, possibly empty")?.to_vec();
            return Ok(Self::DataLine {
                session,
                token,
                line,
            });
        }
        let name = c.field("decision", DECISIONS)?;
        let decision = match name {
            b"proceed" => Decision::Proceed,
            b"junk" => Decision::Junk,
            b"reject" | b"disconnect" | b"rewrite" | b"report" => {
                let param = c
                    .last_text("decision parameter", "DECISION|PARAMETER")?
                    .to_owned();
                match name {
                    b"reject" | b"disconnect" if param.is_empty() => {
                        return Err(c.error(
                            Problem::Missing,
                            "SMTP reply",
                            "a reply such as 550 5.7.1 text",
                        ))
                    }
                    b"reject" => Decision::Reject(param),
                    b"disconnect" => Decision::Disconnect(param),
                    b"rewrite" => Decision::Rewrite(param),
                    _ => Decision::Report(param),
                }
            }
            _ => return Err(c.error(Problem::Unknown, "decision", DECISIONS)),
        };
        c.finish("decision")?;
        Ok(Self::Result {
            session,
            token,
            decision,
        })
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        if let Self::Result {
            decision: Decision::Reject(reply) | Decision::Disconnect(reply),
            ..
        } = self
        {
            if reply.is_empty() {
                return Err(FormatError {
                    field: "SMTP reply",
                    reason: "must not be empty",
                });
            }
        }
        let mut w = Writer::new(out);
        match self {
            Self::DataLine {
                session,
                token,
                line,
            } => {
                w.raw(b"filter-dataline")
                    .hex(session.0, SessionId::WIDTH)
                    .hex(token.0, Token::WIDTH)
                    .last("data line", line)?;
            }
            Self::Result {
                session,
                token,
                decision,
            } => {
                w.raw(b"filter-result")
                    .hex(session.0, SessionId::WIDTH)
                    .hex(token.0, Token::WIDTH)
                    .raw(decision.name().as_bytes());
                match decision {
                    Decision::Proceed | Decision::Junk => {}
                    Decision::Reject(p)
                    | Decision::Disconnect(p)
                    | Decision::Rewrite(p)
                    | Decision::Report(p) => {
                        w.last("decision parameter", p.as_bytes())?;
                    }
                }
            }
        }
        w.end();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
