//! Table backends (protocol 0.1): implement [`Table`], call [`run`].
//!
//! ```no_run
//! use smtpd_sdk::table::{self, Error, Service, Table};
//!
//! struct Domains;
//!
//! impl Table for Domains {
//!     fn services(&self) -> Vec<Service> {
//!         vec![Service::Domain]
//!     }
//!
//!     async fn check(&self, _service: Service, key: &str) -> Result<bool, Error> {
//!         Ok(key == "example.org")
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> std::process::ExitCode {
//!     table::run(Domains).await
//! }
//! ```
//!
//! [`run`] answers the handshake with one `register|SERVICE` line per
//! service of [`Table::services`], then serves requests concurrently. A
//! request for a service not in that list, for a service this codec does not
//! know, or for an operation the table leaves at its default is answered
//! `error` (a temporary failure for the daemon), as is any request whose
//! handler returns an [`Error`].

use std::collections::HashSet;
use std::process::ExitCode;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::engine::{self, Ctx, Event};
use super::{handshake, stdio};
use crate::codec::LineCodec;
use crate::proto::table::{Op, Register, Request, Response, TableResult, VERSION};
use crate::proto::Line;

pub use super::{Config, Error, RunError};
pub use crate::proto::table::Service;
pub use crate::proto::TableId;

/// A table: answers check, lookup, fetch and update for the services it
/// declares. Every operation defaults to "unsupported", answered `error`.
///
/// The methods take `&self` and may run concurrently (the futures of many
/// requests are polled at once on one task): keep mutable state behind a
/// `Mutex`, `RwLock` or atomics, and do not hold a lock across an `.await`.
// The run loop polls every future on the caller's task, so the futures need
// no `Send` bound; `async fn` keeps implementations plain.
#[allow(async_fn_in_trait)]
pub trait Table {
    /// The services to register; requests for other services are answered
    /// `error` without calling the table.
    fn services(&self) -> Vec<Service>;

    /// Called once with the daemon's configuration (`tablename`, ...),
    /// before [`Table::services`]. An error stops the backend.
    fn configure(&mut self, config: &Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// Is `key` in the table for `service`? (`check|...`)
    async fn check(&self, service: Service, key: &str) -> Result<bool, Error> {
        let _ = (service, key);
        Err(Error::Unsupported)
    }

    /// The value of `key` for `service`, or `None`. (`lookup|...`) An empty
    /// value cannot be sent and is answered `error`.
    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        let _ = (service, key);
        Err(Error::Unsupported)
    }

    /// The next value for `service`, round-robin, or `None` when there is
    /// none. (`fetch|...`)
    async fn fetch(&self, service: Service) -> Result<Option<String>, Error> {
        let _ = service;
        Err(Error::Unsupported)
    }

    /// Reloads the data. (`update|...`)
    async fn update(&self) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
}

/// Runs `table` on stdin/stdout until end of input. Returns the exit status:
/// success after a clean end of input; failure, with one line on stderr,
/// when the handshake fails (for instance an unsupported protocol version)
/// or stdin/stdout fail.
pub async fn run<T: Table>(table: T) -> ExitCode {
    let result = match stdio::open() {
        Ok((input, output)) => run_with(table, input, output).await,
        Err(e) => Err(e.into()),
    };
    super::exit_code(result)
}

/// Runs `table` on any input and output (a pipe, a socket,
/// `tokio::io::duplex` in tests) until end of input.
pub async fn run_with<T, R, W>(mut table: T, input: R, mut output: W) -> Result<(), RunError>
where
    T: Table,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = FramedRead::with_capacity(input, LineCodec::new(), 64 * 1024);
    let Some(config) = handshake::read_config(&mut input, VERSION).await? else {
        return Ok(());
    };
    table.configure(&config).map_err(RunError::Configure)?;
    let services = table.services();
    let mut lines: Vec<Register> = services.iter().copied().map(Register::Service).collect();
    lines.push(Register::Ready);
    handshake::write_lines(&mut output, &lines).await?;
    tracing::debug!(table = config.tablename().unwrap_or(""), "table ready");

    let served: HashSet<Service> = services.into_iter().collect();
    let table = &table;
    let served = &served;
    engine::serve(input, &mut output, |event, ctx| match event {
        Event::Line(line) => match Request::parse(line) {
            Ok(req) => {
                if let Some(service) = service_of(&req.op).filter(|s| !served.contains(s)) {
                    let error = Error::failed(format!("service {service} not served"));
                    write_answer(ctx, failure(&req, &error));
                } else {
                    ctx.start(answer(table, req));
                }
            }
            Err(e) => engine::refuse(ctx, &e),
        },
        Event::Done(response) => write_answer(ctx, response),
    })
    .await?;
    output.shutdown().await.ok();
    Ok(())
}

fn service_of(op: &Op) -> Option<Service> {
    match op {
        Op::Check { service, .. } | Op::Lookup { service, .. } | Op::Fetch { service } => {
            Some(*service)
        }
        Op::Update => None,
    }
}

/// Calls the table and builds the answer.
async fn answer<T: Table>(table: &T, req: Request) -> Response {
    let result = match &req.op {
        Op::Check { service, key } => table.check(*service, key).await.map(|found| {
            if found {
                TableResult::Found
            } else {
                TableResult::NotFound
            }
        }),
        Op::Lookup { service, key } => table.lookup(*service, key).await.map(value),
        Op::Fetch { service } => table.fetch(*service).await.map(value),
        Op::Update => table.update().await.map(|()| TableResult::Ok),
    };
    match result {
        Ok(result) => Response {
            op: req.op.kind(),
            id: req.id,
            result,
        },
        Err(e) => failure(&req, &e),
    }
}

fn value(v: Option<String>) -> TableResult {
    v.map_or(TableResult::NotFound, TableResult::Value)
}

fn failure(req: &Request, error: &Error) -> Response {
    if *error != Error::Unsupported {
        tracing::warn!(id = %req.id, op = req.op.kind().name(), "request failed: {error}");
    }
    Response {
        op: req.op.kind(),
        id: req.id,
        result: TableResult::Error(Some(error.wire_message())),
    }
}

/// Writes an answer; one that cannot be formatted (an empty value, a
/// newline in a value) becomes an `error` answer.
fn write_answer<Fut>(ctx: &mut Ctx<'_, Fut>, response: Response) {
    if let Err(e) = ctx.write(&response) {
        tracing::warn!(id = %response.id, "cannot send the answer: {e}");
        let fallback = Response {
            result: TableResult::Error(Some(format!("backend answer refused: {e}"))),
            ..response
        };
        // An error answer with a message free of newlines always formats.
        ctx.write(&fallback).ok();
    }
}
