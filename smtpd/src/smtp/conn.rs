//! Drives a [`Session`] over any byte stream: reads frames with the
//! [`LineCodec`], carries the session's requests to a [`Handler`] (rules,
//! tables, queue, credentials: the rest of the daemon), writes replies,
//! and enforces the command and data timeouts.
//!
//! Replies are flushed only when no complete line is waiting in the read
//! buffer, so a pipelining client (RFC 2920) gets its replies in one write;
//! a client waiting for an answer always gets it. At STARTTLS, input
//! already buffered is plaintext injected before the handshake
//! (CVE-2011-0411 style): the connection is closed instead. The TLS
//! handshake itself is the handler's ([`Handler::start_tls`]), so this
//! module needs no TLS library and tests run on `tokio::io::duplex`.
//!
//! Each reply goes to [`Handler::replied`] with the line it answers, as
//! logs may show it ([`crate::log::shown_command`]), for the `smtp
//! failed-command` lines. [`run_draining`] also follows the daemon's
//! shutdown ([`Drain`]): once it begins, a session outside a transaction
//! gets `421` and ends, one inside a transaction may finish it (the next
//! command but QUIT gets `421`), and at [`Drain::Close`] every session
//! gets `421` and ends, a message in progress dropped.
//!
//! Filters: when [`Handler::filtered`] says the session has some, each
//! command that parses is put to [`Handler::filter`] at its phase before
//! the session runs it (the connection before the greeting), and the
//! handler hears of each client line and of TLS and timeouts
//! ([`Handler::notice`]) for the report stream. A rewrite re-parses the
//! command with the new parameter, so it is validated again. Without
//! filters none of this runs.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::codec::Framed;

use smtpd_sdk::proto::filter::Phase;

use super::address::ReversePath;
use super::auth::Credentials;
use super::codec::{DataEnd, Frame, LineCodec};
use super::command::{Command, MailFrom, RcptTo};
use super::reply::Reply;
use super::session::{Session, Step, Transaction};
use crate::filter::Verdict;
use crate::log;

/// What the connection tells a filtered session's handler, for the
/// filters' report stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// The greeting went out.
    Greeting(&'a Reply),
    /// A client line, as logs may show it (credentials masked); `.` for
    /// the end of a message.
    Command(&'a [u8]),
    /// TLS is established.
    Tls,
    /// The client was silent too long.
    Timeout,
    /// A reply went out; `command` as for [`Handler::replied`].
    Replied {
        /// The client's line it answers, as logs may show it.
        command: Option<&'a [u8]>,
        /// The reply.
        reply: &'a Reply,
    },
}

/// A byte stream a session can run on (TCP, TLS, unix socket, duplex).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A stream behind a box, so STARTTLS can swap it for a TLS one.
pub type BoxStream = Box<dyn Stream>;

/// What the connection needs from the rest of the daemon. Failures come
/// back as the reply to send (4xx for anything temporary).
#[async_trait]
pub trait Handler: Send {
    /// MAIL FROM: may this sender send?
    async fn check_sender(&mut self, session: &Session, mail: &MailFrom) -> Result<(), Reply>;

    /// RCPT TO: is this recipient accepted (and how it will be delivered
    /// is the handler's to remember)?
    async fn check_recipient(&mut self, session: &Session, rcpt: &RcptTo) -> Result<(), Reply>;

    /// DATA: open a message in the queue.
    async fn open_message(&mut self, transaction: &Transaction) -> Result<(), Reply>;

    /// One line of the message, unstuffed, without CRLF. After an error,
    /// no more lines come and the message is aborted at its end.
    async fn data_line(&mut self, line: &[u8]) -> Result<(), Reply>;

    /// The message is abandoned (too large, bad data, error, peer gone).
    async fn abort_message(&mut self);

    /// The message is complete: commit it durably, return its id.
    async fn commit(&mut self, transaction: &Transaction, size: u64) -> Result<String, Reply>;

    /// AUTH: are these credentials good? `Err` carries the 4xx reply when
    /// they could not be checked (a table error).
    async fn authenticate(&mut self, credentials: &Credentials) -> Result<bool, Reply>;

    /// STARTTLS: the handshake over `stream`, returning the TLS stream.
    /// The default refuses (the listener offers no TLS).
    async fn start_tls(&mut self, stream: BoxStream) -> io::Result<BoxStream> {
        drop(stream);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no TLS configured",
        ))
    }

    /// A reply went out: `command` is the client's line it answers, as
    /// logs may show it ([`log::shown_command`]), `None` for input that
    /// was no command (a line too long, a bare CR or LF). The default does
    /// nothing; intake logs the 4xx and 5xx ones.
    fn replied(&mut self, command: Option<&[u8]>, reply: &Reply) {
        let _ = (command, reply);
    }

    /// Whether filters watch this session; when false (the default) none
    /// of the filter hooks is called.
    fn filtered(&self) -> bool {
        false
    }

    /// A filter phase: the chain's verdict on the command about to run,
    /// whose parameter is `param`.
    async fn filter(&mut self, session: &Session, phase: Phase, param: &str) -> Verdict {
        let _ = (session, phase, param);
        Verdict::Proceed
    }

    /// Something the filters' report stream tells of.
    fn notice(&mut self, session: &Session, notice: Notice<'_>) {
        let _ = (session, notice);
    }

    /// Whether the session is to end after the reply just made (a filter
    /// said `disconnect` where the session could not).
    fn closing(&self) -> bool {
        false
    }
}

/// Where the daemon's shutdown stands, as sessions see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drain {
    /// Serving.
    #[default]
    Serve,
    /// Stopping: finish the transaction in progress, start no other.
    Finish,
    /// Stopped: end now.
    Close,
}

/// Connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnConfig {
    /// The longest command or data line, CRLF excluded.
    pub max_line: usize,
    /// How long to wait for a command.
    pub command_timeout: Duration,
    /// How long to wait for the next bytes of a message.
    pub data_timeout: Duration,
}

impl Default for ConnConfig {
    /// OpenSMTPD's: 65535-byte lines, 5 minutes.
    fn default() -> Self {
        Self {
            max_line: 65_535,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The session closed it (QUIT, or a fatal reply).
    Closed,
    /// The client went away.
    PeerGone,
    /// The client was silent too long (421 sent).
    Timeout,
    /// Input was buffered before a TLS handshake; closed unanswered.
    TlsInjection,
    /// The daemon is stopping (421 sent).
    Shutdown,
}

/// The connection's state around the session.
struct Conn<'h, H: Handler> {
    session: Session,
    handler: &'h mut H,
    config: ConnConfig,
    /// The first failure while writing the message, answered at its end.
    data_error: Option<Reply>,
    /// The last client line as logs may show it; `None` after input that
    /// was no command.
    command: Option<Vec<u8>>,
    /// The daemon's shutdown, if it is followed.
    drain: Option<watch::Receiver<Drain>>,
    /// The stage of the shutdown seen last.
    stage: Drain,
    /// Whether filters watch the session.
    filtered: bool,
    /// A filter rejected the connection: HELO and EHLO get 503.
    refused: bool,
}

/// What ended a wait for input.
enum Wake<T> {
    Read(T),
    Drain(Drain),
}

/// Runs `session` over `stream` until it ends.
pub async fn run<H: Handler>(
    stream: BoxStream,
    session: Session,
    handler: &mut H,
    config: ConnConfig,
) -> io::Result<Outcome> {
    Conn::new(session, handler, config, None)
        .serve(stream)
        .await
}

/// [`run`], following the daemon's shutdown through `drain`.
pub async fn run_draining<H: Handler>(
    stream: BoxStream,
    session: Session,
    handler: &mut H,
    config: ConnConfig,
    drain: watch::Receiver<Drain>,
) -> io::Result<Outcome> {
    Conn::new(session, handler, config, Some(drain))
        .serve(stream)
        .await
}

/// Waits until the shutdown is past `seen`; never when it is not followed
/// or its sender is gone.
async fn next_stage(drain: &mut Option<watch::Receiver<Drain>>, seen: Drain) -> Drain {
    if let Some(rx) = drain {
        if let Ok(stage) = rx.wait_for(|stage| *stage > seen).await {
            return *stage;
        }
    }
    std::future::pending().await
}

impl<'h, H: Handler> Conn<'h, H> {
    fn new(
        session: Session,
        handler: &'h mut H,
        config: ConnConfig,
        drain: Option<watch::Receiver<Drain>>,
    ) -> Self {
        let stage = drain.as_ref().map_or(Drain::Serve, |rx| *rx.borrow());
        let filtered = handler.filtered();
        Self {
            filtered,
            refused: false,
            session,
            handler,
            config,
            data_error: None,
            command: None,
            drain,
            stage,
        }
    }

    async fn serve(&mut self, stream: BoxStream) -> io::Result<Outcome> {
        let mut framed = Framed::new(stream, LineCodec::new(self.config.max_line));
        if self.stage > Drain::Serve {
            framed
                .send(&Reply::shutting_down(self.session.hostname()))
                .await?;
            return Ok(Outcome::Shutdown);
        }
        let mut greeting = Some(self.session.greeting());
        if self.filtered {
            match self.handler.filter(&self.session, Phase::Connect, "").await {
                Verdict::Proceed | Verdict::Rewrite(_) => {}
                // As 7.8: the reply instead of the banner; the session
                // stays open, and HELO and EHLO get 503.
                Verdict::Reject(reply) => {
                    self.handler.replied(None, &reply);
                    framed.send(&reply).await?;
                    self.refused = true;
                    greeting = None;
                }
                Verdict::Disconnect(reply) => {
                    self.handler.replied(None, &reply);
                    framed.send(&reply).await?;
                    return Ok(Outcome::Closed);
                }
            }
        }
        if let Some(greeting) = greeting {
            framed.send(&greeting).await?;
            if self.filtered {
                self.handler
                    .notice(&self.session, Notice::Greeting(&greeting));
            }
        }
        loop {
            let in_data = framed.codec().in_data();
            let limit = match in_data {
                true => self.config.data_timeout,
                false => self.config.command_timeout,
            };
            // The shutdown first: a session learns of it before it reads on.
            let wake = tokio::select! {
                biased;
                stage = next_stage(&mut self.drain, self.stage) => Wake::Drain(stage),
                read = tokio::time::timeout(limit, framed.next()) => Wake::Read(read),
            };
            let read = match wake {
                Wake::Read(read) => read,
                Wake::Drain(stage) => {
                    self.stage = stage;
                    let idle = !in_data && self.session.transaction().is_none();
                    if stage == Drain::Close || idle {
                        if in_data {
                            self.handler.abort_message().await;
                        }
                        framed
                            .send(&Reply::shutting_down(self.session.hostname()))
                            .await?;
                        return Ok(Outcome::Shutdown);
                    }
                    continue;
                }
            };
            let frame = match read {
                Err(_) => {
                    if in_data {
                        self.handler.abort_message().await;
                    }
                    if self.filtered {
                        self.handler.notice(&self.session, Notice::Timeout);
                    }
                    framed
                        .send(&Reply::timeout(self.session.hostname()))
                        .await?;
                    return Ok(Outcome::Timeout);
                }
                Ok(None) => {
                    if in_data {
                        self.handler.abort_message().await;
                    }
                    return Ok(Outcome::PeerGone);
                }
                Ok(Some(Err(error))) => {
                    if in_data {
                        self.handler.abort_message().await;
                    }
                    return Err(error);
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if self.refuses(&frame) {
                let reply = Reply::shutting_down(self.session.hostname());
                if let Frame::Line(line) = &frame {
                    let shown = log::shown_command(line, self.session.auth_stage());
                    self.handler.replied(Some(&shown), &reply);
                }
                framed.send(&reply).await?;
                return Ok(Outcome::Shutdown);
            }
            let Some(step) = self.on_frame(frame).await else {
                continue;
            };
            let mut step = self.resolve(step).await;
            if self.filtered && self.handler.closing() {
                if let Step::Reply(reply) = step {
                    step = Step::Close(reply);
                }
            }
            tracing::debug!(">>> {}", step_reply(&step));
            if let Step::Reply(reply)
            | Step::Close(reply)
            | Step::StartTls(reply)
            | Step::StartData(reply) = &step
            {
                self.handler.replied(self.command.as_deref(), reply);
                if self.filtered {
                    let command = self.command.as_deref();
                    let notice = Notice::Replied { command, reply };
                    self.handler.notice(&self.session, notice);
                }
            }
            match step {
                Step::Reply(reply) => {
                    framed.feed(&reply).await?;
                    if !framed.read_buffer().contains(&b'\n') {
                        framed.flush().await?;
                    }
                }
                Step::Close(reply) => {
                    framed.send(&reply).await?;
                    return Ok(Outcome::Closed);
                }
                Step::StartData(reply) => {
                    framed.send(&reply).await?;
                    let max = self.session.max_message_size();
                    framed.codec_mut().start_data(max);
                    self.data_error = None;
                }
                Step::StartTls(reply) => {
                    framed.send(&reply).await?;
                    if !framed.read_buffer().is_empty() {
                        return Ok(Outcome::TlsInjection);
                    }
                    let stream = self.handler.start_tls(framed.into_parts().io).await?;
                    self.session.tls_established();
                    if self.filtered {
                        self.handler.notice(&self.session, Notice::Tls);
                    }
                    framed = Framed::new(stream, LineCodec::new(self.config.max_line));
                }
                // `resolve` answers every request.
                request => {
                    return Err(io::Error::other(format!("unanswered request {request:?}")));
                }
            }
        }
    }

    /// Whether `frame` is refused because the daemon is stopping: a
    /// command line other than QUIT outside a transaction.
    fn refuses(&self, frame: &Frame) -> bool {
        self.stage > Drain::Serve
            && self.session.transaction().is_none()
            && matches!(frame, Frame::Line(line) if !line.eq_ignore_ascii_case(b"QUIT"))
    }

    /// The session's step for one frame; data lines go to the handler.
    async fn on_frame(&mut self, frame: Frame) -> Option<Step> {
        match frame {
            Frame::Line(line) => {
                tracing::debug!("<<< {}", loggable(&line, self.session.in_auth_exchange()));
                let shown = log::shown_command(&line, self.session.auth_stage());
                if self.filtered {
                    self.handler.notice(&self.session, Notice::Command(&shown));
                }
                self.command = Some(shown);
                if self.filtered && !self.session.in_auth_exchange() {
                    return Some(self.filter_line(&line).await);
                }
                Some(self.session.on_line(&line))
            }
            Frame::Invalid(error) => {
                self.command = None;
                Some(self.session.on_invalid(error))
            }
            Frame::Data(line) => {
                if self.data_error.is_none() {
                    if let Err(reply) = self.handler.data_line(&line).await {
                        self.data_error = Some(reply);
                    }
                }
                None
            }
            Frame::DataEnd(end) => {
                if self.filtered {
                    self.handler.notice(&self.session, Notice::Command(b"."));
                }
                if !matches!(end, DataEnd::Complete { .. }) {
                    self.handler.abort_message().await;
                }
                Some(self.session.on_data_end(end))
            }
        }
    }

    /// The session's step for a command line, once the filters had their
    /// say.
    async fn filter_line(&mut self, line: &[u8]) -> Step {
        let command = match Command::parse(line) {
            Ok(command) => command,
            Err(error) => return Step::Reply(Reply::from(&error)),
        };
        if self.refused && matches!(command, Command::Helo(_) | Command::Ehlo(_)) {
            return Step::Reply(Reply::bad_sequence());
        }
        let point = match self.session.would_run(&command) {
            true => filter_point(&command, line),
            false => None,
        };
        let Some((phase, param)) = point else {
            return self.session.on_command(command);
        };
        match self.handler.filter(&self.session, phase, &param).await {
            Verdict::Proceed => self.session.on_command(command),
            Verdict::Reject(reply) => Step::Reply(reply),
            Verdict::Disconnect(reply) => Step::Close(reply),
            Verdict::Rewrite(value) => match Command::parse(&rewritten(phase, &value)) {
                Ok(command) => self.session.on_command(command),
                Err(error) => Step::Reply(Reply::from(&error)),
            },
        }
    }

    /// Answers the session's requests until it has a reply.
    async fn resolve(&mut self, mut step: Step) -> Step {
        loop {
            step = match step {
                Step::CheckSender(mail) => {
                    let verdict = self.handler.check_sender(&self.session, &mail).await;
                    self.session.sender_checked(verdict)
                }
                Step::CheckRecipient(rcpt) => {
                    let verdict = self.handler.check_recipient(&self.session, &rcpt).await;
                    self.session.recipient_checked(verdict)
                }
                Step::OpenMessage => {
                    let result = match self.session.transaction() {
                        Some(tx) => self.handler.open_message(tx).await,
                        None => Err(Reply::temporary_failure()),
                    };
                    self.session.message_opened(result)
                }
                Step::Authenticate(credentials) => {
                    let verdict = self.handler.authenticate(&credentials).await;
                    self.session.authenticated(verdict)
                }
                Step::Commit { size } => {
                    let result = match (self.data_error.take(), self.session.transaction()) {
                        (None, Some(tx)) => self.handler.commit(tx, size).await,
                        (error, _) => {
                            self.handler.abort_message().await;
                            Err(error.unwrap_or_else(Reply::temporary_failure))
                        }
                    };
                    self.session.committed(result)
                }
                other => return other,
            }
        }
    }
}

/// The filter phase of a command and its parameter as filters get it
/// (protocols.md section 2.5); `None` for commands never filtered.
fn filter_point(command: &Command, line: &[u8]) -> Option<(Phase, String)> {
    Some(match command {
        Command::Helo(domain) => (Phase::Helo, domain.to_string()),
        Command::Ehlo(domain) => (Phase::Ehlo, domain.to_string()),
        Command::Mail(mail) => (
            Phase::MailFrom,
            match &mail.sender {
                ReversePath::Null => String::new(),
                ReversePath::Mailbox(mailbox) => mailbox.to_string(),
            },
        ),
        Command::Rcpt(rcpt) => (Phase::RcptTo, rcpt.recipient.to_string()),
        Command::Auth(_) => {
            let args = line.get(5..).unwrap_or_default();
            (Phase::Auth, String::from_utf8_lossy(args).trim().to_owned())
        }
        Command::StartTls => (Phase::StartTls, String::new()),
        Command::Data => (Phase::Data, String::new()),
        Command::Rset => (Phase::Rset, String::new()),
        Command::Quit => (Phase::Quit, String::new()),
        Command::Noop => (Phase::Noop, String::new()),
        Command::Help | Command::Vrfy(_) | Command::Expn(_) => return None,
    })
}

/// The command line a filter's rewrite makes: the command with the new
/// parameter (commands without one then fail their syntax check, as in
/// OpenSMTPD).
fn rewritten(phase: Phase, value: &str) -> Vec<u8> {
    let head = match phase {
        Phase::MailFrom => "MAIL FROM:".to_owned(),
        Phase::RcptTo => "RCPT TO:".to_owned(),
        other => format!("{} ", other.name().to_ascii_uppercase()),
    };
    format!("{head}{value}").into_bytes()
}

/// The first line of a step's reply, for the debug log.
fn step_reply(step: &Step) -> String {
    match step {
        Step::Reply(reply)
        | Step::Close(reply)
        | Step::StartTls(reply)
        | Step::StartData(reply) => reply
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        other => format!("{other:?}"),
    }
}

/// The longest part of a protocol line shown in debug logs.
const LOG_MAX: usize = 200;

/// A client line as the debug log shows it: truncated, non-printable bytes
/// escaped, and credentials hidden (AUTH responses, AUTH initial
/// responses).
fn loggable(line: &[u8], credential: bool) -> String {
    if credential {
        return "********".to_owned();
    }
    let (mut shown, mut hidden) = (line, "");
    if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"AUTH ") {
        if let Some(space) = line[5..].iter().position(|&b| b == b' ') {
            (shown, hidden) = (&line[..5 + space], " ********");
        }
    }
    let mut text: String = shown
        .iter()
        .take(LOG_MAX)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if shown.len() > LOG_MAX {
        text.push_str("...");
    }
    text + hidden
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
