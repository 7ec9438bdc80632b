//! The table protocol, version 0.1 (OpenSMTPD 7.8's smtpd-tables(7)).
//!
//! ```text
//! > table|0.1|1731000001.000412|aliases|lookup|alias|5e3a91c0|postmaster
//! < lookup-result|5e3a91c0|found|root
//! ```

use bytes::BytesMut;

use super::ids::parse_hex_exact;
use super::line::{Cursor, Writer};
use super::{FormatError, Line, ParseError, Problem, TableId, Timestamp};

/// The protocol version this module speaks.
pub const VERSION: &str = "0.1";

/// A lookup service: what kind of answer the daemon wants for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Alias and virtual expansion: a comma-separated list of targets.
    Alias,
    /// Domain names (`for domain`, `helo`, `rdns`).
    Domain,
    /// `user:password-hash` or a password.
    Credentials,
    /// Network addresses and CIDR blocks.
    Netaddr,
    /// `uid:gid:home` of a user.
    Userinfo,
    /// Source addresses for relaying (fetched round-robin).
    Source,
    /// Mail address patterns.
    Mailaddr,
    /// A host name for a local address.
    Addrname,
    /// The addresses an authenticated user may send as.
    Mailaddrmap,
    /// A relay URL.
    Relayhost,
    /// Plain strings (tags, user names).
    String,
    /// Regular expressions.
    Regex,
    /// `user:password` checked by the backend itself.
    Auth,
}

impl Service {
    /// Every service, in protocol order.
    pub const ALL: [Self; 13] = [
        Self::Alias,
        Self::Domain,
        Self::Credentials,
        Self::Netaddr,
        Self::Userinfo,
        Self::Source,
        Self::Mailaddr,
        Self::Addrname,
        Self::Mailaddrmap,
        Self::Relayhost,
        Self::String,
        Self::Regex,
        Self::Auth,
    ];

    /// The name used on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Alias => "alias",
            Self::Domain => "domain",
            Self::Credentials => "credentials",
            Self::Netaddr => "netaddr",
            Self::Userinfo => "userinfo",
            Self::Source => "source",
            Self::Mailaddr => "mailaddr",
            Self::Addrname => "addrname",
            Self::Mailaddrmap => "mailaddrmap",
            Self::Relayhost => "relayhost",
            Self::String => "string",
            Self::Regex => "regex",
            Self::Auth => "auth",
        }
    }

    /// The service with this wire name.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name().as_bytes() == name)
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend's handshake answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// `register|SERVICE`.
    Service(Service),
    /// `register|ready`: the handshake is over.
    Ready,
}

impl Line for Register {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        c.expect(b"register", "line type", "register")?;
        let what = c.field("service", "a service name or ready")?;
        c.finish("registration")?;
        if what == b"ready" {
            return Ok(Self::Ready);
        }
        Service::from_name(what)
            .map(Self::Service)
            .ok_or_else(|| c.error(Problem::Unknown, "service", "a service name or ready"))
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        let mut w = Writer::new(out);
        w.raw(b"register");
        match self {
            Self::Service(s) => w.raw(s.name().as_bytes()),
            Self::Ready => w.raw(b"ready"),
        };
        w.end();
        Ok(())
    }
}

/// The operation of a request, without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Is the key there?
    Check,
    /// The key's value.
    Lookup,
    /// The next value, round-robin, without a key.
    Fetch,
    /// Reload the data.
    Update,
}

impl OpKind {
    /// The operation name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Lookup => "lookup",
            Self::Fetch => "fetch",
            Self::Update => "update",
        }
    }

    /// The first field of the answer, e.g. `lookup-result`.
    pub fn result_name(self) -> &'static str {
        match self {
            Self::Check => "check-result",
            Self::Lookup => "lookup-result",
            Self::Fetch => "fetch-result",
            Self::Update => "update-result",
        }
    }

    fn from_result_name(name: &[u8]) -> Option<Self> {
        [Self::Check, Self::Lookup, Self::Fetch, Self::Update]
            .into_iter()
            .find(|k| k.result_name().as_bytes() == name)
    }
}

/// An operation with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `check|SERVICE|ID|KEY`.
    Check {
        /// The service.
        service: Service,
        /// The key (lower-cased by the daemon; may hold `|`).
        key: String,
    },
    /// `lookup|SERVICE|ID|KEY`.
    Lookup {
        /// The service.
        service: Service,
        /// The key (lower-cased by the daemon; may hold `|`).
        key: String,
    },
    /// `fetch|SERVICE|ID`.
    Fetch {
        /// The service.
        service: Service,
    },
    /// `update|ID`.
    Update,
}

impl Op {
    /// The operation without arguments.
    pub fn kind(&self) -> OpKind {
        match self {
            Self::Check { .. } => OpKind::Check,
            Self::Lookup { .. } => OpKind::Lookup,
            Self::Fetch { .. } => OpKind::Fetch,
            Self::Update => OpKind::Update,
        }
    }
}

/// A request from the daemon: `table|0.1|TS|NAME|OP|...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// When the daemon sent it.
    pub timestamp: Timestamp,
    /// The table's name in smtpd.conf.
    pub table: String,
    /// The id the answer must carry.
    pub id: TableId,
    /// What is asked.
    pub op: Op,
}

const ID_FORM: &str = "8 lower-case hex digits";

fn parse_id(c: &Cursor<'_>, raw: &[u8]) -> Result<TableId, ParseError> {
    parse_hex_exact(raw, TableId::WIDTH)
        .map(|v| TableId(v as u32))
        .ok_or_else(|| c.error(Problem::Invalid, "request id", ID_FORM))
}

impl Line for Request {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        c.expect(b"table", "line type", "table")?;
        c.expect(VERSION.as_bytes(), "protocol version", "0.1")?;
        let ts = c.field("timestamp", "SECONDS.MICROSECONDS")?;
        let timestamp = Timestamp::parse(ts)
            .ok_or_else(|| c.error(Problem::Invalid, "timestamp", "SECONDS.MICROSECONDS"))?;
        let table = c.text("table name", "the table's name")?.to_owned();
        let op = c.field("operation", "check, lookup, fetch or update")?;
        let (id, op) = match op {
            b"update" => {
                let raw = c.field("request id", ID_FORM)?;
                c.finish("request id")?;
                (parse_id(&c, raw)?, Op::Update)
            }
            b"check" | b"lookup" | b"fetch" => {
                let service = c.field("service", "a service name")?;
                let raw_id = c.field("request id", ID_FORM)?;
                let id = parse_id(&c, raw_id)?;
                let Some(service) = Service::from_name(service) else {
                    return Err(c
                        .error(Problem::Unknown, "service", "a service name")
                        .with_reply_to(op, raw_id));
                };
                let op = if op == b"fetch" {
                    c.finish("request id")?;
                    Op::Fetch { service }
                } else {
                    let key = c.last_text("key", "the key to look up")?.to_owned();
                    if op == b"check" {
                        Op::Check { service, key }
                    } else {
                        Op::Lookup { service, key }
                    }
                };
                (id, op)
            }
            _ => {
                return Err(c.error(
                    Problem::Unknown,
                    "operation",
                    "check, lookup, fetch or update",
                ))
            }
        };
        Ok(Self {
            timestamp,
            table,
            id,
            op,
        })
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        let mut w = Writer::new(out);
        w.raw(b"table").raw(VERSION.as_bytes());
        w.separator_then(|out| self.timestamp.write(out));
        w.field("table name", self.table.as_bytes())?
            .raw(self.op.kind().name().as_bytes());
        match &self.op {
            Op::Check { service, key } | Op::Lookup { service, key } => {
                w.raw(service.name().as_bytes())
                    .hex(u64::from(self.id.0), TableId::WIDTH)
                    .last("key", key.as_bytes())?;
            }
            Op::Fetch { service } => {
                w.raw(service.name().as_bytes())
                    .hex(u64::from(self.id.0), TableId::WIDTH);
            }
            Op::Update => {
                w.hex(u64::from(self.id.0), TableId::WIDTH);
            }
        }
        w.end();
        Ok(())
    }
}

/// What a backend answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableResult {
    /// `found`, to a check.
    Found,
    /// `found|VALUE`, to a lookup or fetch; the value is never empty.
    Value(String),
    /// `not-found`, to a check, lookup or fetch.
    NotFound,
    /// `ok`, to an update.
    Ok,
    /// `error[|MESSAGE]`, to anything: a temporary failure.
    Error(Option<String>),
}

/// A backend's answer: `OP-result|ID|...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The operation answered.
    pub op: OpKind,
    /// The request's id.
    pub id: TableId,
    /// The answer.
    pub result: TableResult,
}

impl Response {
    /// True when `result` is a legal answer to `op`.
    pub fn is_valid_for(op: OpKind, result: &TableResult) -> bool {
        match result {
            TableResult::Error(_) => true,
            TableResult::Found => op == OpKind::Check,
            TableResult::Value(v) => matches!(op, OpKind::Lookup | OpKind::Fetch) && !v.is_empty(),
            TableResult::NotFound => op != OpKind::Update,
            TableResult::Ok => op == OpKind::Update,
        }
    }
}

impl Line for Response {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line)?;
        const TYPES: &str = "check-result, lookup-result, fetch-result or update-result";
        let kind = c.field("result type", TYPES)?;
        let op = OpKind::from_result_name(kind)
            .ok_or_else(|| c.error(Problem::Unknown, "result type", TYPES))?;
        let raw = c.field("request id", ID_FORM)?;
        let id = parse_id(&c, raw)?;
        let status = c.field("status", "found, not-found, ok or error")?;
        let result = match status {
            b"found" if op == OpKind::Check => TableResult::Found,
            b"found" => {
                let value = c.last_text("value", "found|VALUE")?;
                TableResult::Value(value.to_owned())
            }
            b"not-found" => TableResult::NotFound,
            b"ok" => TableResult::Ok,
            b"error" => {
                let message = c
                    .opt_last()
                    .map(|m| c.utf8(m, "error message"))
                    .transpose()?;
                TableResult::Error(message.map(str::to_owned))
            }
            _ => return Err(c.error(Problem::Invalid, "status", "found, not-found, ok or error")),
        };
        c.finish("status")?;
        if !Self::is_valid_for(op, &result) {
            return Err(c.error(
                Problem::Invalid,
                "status",
                "a status allowed for this result type",
            ));
        }
        Ok(Self { op, id, result })
    }

    fn format(&self, out: &mut BytesMut) -> Result<(), FormatError> {
        if !Self::is_valid_for(self.op, &self.result) {
            return Err(FormatError {
                field: "status",
                reason: "not a legal answer to this operation",
            });
        }
        let mut w = Writer::new(out);
        w.raw(self.op.result_name().as_bytes())
            .hex(u64::from(self.id.0), TableId::WIDTH);
        match &self.result {
            TableResult::Found => w.raw(b"found"),
            TableResult::Value(v) => w.raw(b"found").last("value", v.as_bytes())?,
            TableResult::NotFound => w.raw(b"not-found"),
            TableResult::Ok => w.raw(b"ok"),
            TableResult::Error(None) => w.raw(b"error"),
            TableResult::Error(Some(m)) => w.raw(b"error").last("error message", m.as_bytes())?,
        };
        w.end();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
