//! The SMTP session as a pure state machine.
//!
//! [`Session::on_line`] takes each line the codec yields in command mode
//! (a command, or a response inside an AUTH exchange) and returns a
//! [`Step`]: a reply to send and what to do next, or a request for a
//! decision the session cannot make alone: check a sender or recipient
//! against the rules and tables, open a queue message, check credentials,
//! commit the message. The driver (the connection task) carries the
//! request out and gives the answer back through the matching method
//! (`sender_checked`, `recipient_checked`, `message_opened`,
//! `authenticated`, `committed`), which returns the next [`Step`]. There is
//! no I/O here and no clock: tests run a session from a script.
//!
//! Behaviour follows OpenSMTPD's `smtp_session.c`: one HELO/EHLO per
//! session (again only after STARTTLS), MAIL needs HELO, then TLS when
//! `tls-require`, then AUTH when `auth` is required; parameters only after
//! EHLO and only for the extensions offered; STARTTLS forgets everything
//! (RFC 3207); AUTH PLAIN and LOGIN are offered only on a TLS session
//! that has not authenticated yet. The reply texts are OpenSMTPD's. Where
//! this differs, it follows RFC 5321: 452 past the recipient limit
//! (OpenSMTPD says 451), 552 for a message too big (554), 555 for an
//! unknown parameter (503), 501 for arguments to DATA, RSET, QUIT or
//! STARTTLS (500); PIPELINING and SMTPUTF8 are offered (the driver
//! flushes replies only when no input is waiting, RFC 2920; OpenSMTPD
//! refuses pipelined input). The message is opened in the queue at DATA,
//! not at MAIL FROM.

use std::fmt;
use std::sync::Arc;

use super::address::{Domain, Mailbox, ReversePath};
use super::auth::{decode_base64, parse_plain, text, Credentials};
use super::codec::{DataEnd, LineError};
use super::command::{Auth, Command, MailFrom, Mechanism, RcptTo};
use super::reply::Reply;
use super::settings::{AuthMode, SessionConfig, TlsMode};

/// A transaction: MAIL FROM and the recipients accepted so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The MAIL FROM command, parameters included.
    pub mail: MailFrom,
    /// The accepted recipients, domains completed.
    pub recipients: Vec<RcptTo>,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Send the reply, read on.
    Reply(Reply),
    /// Send the reply, then close the connection.
    Close(Reply),
    /// Send the reply (220), make sure no input is buffered (else close:
    /// plaintext injection), do the TLS handshake, then call
    /// [`Session::tls_established`].
    StartTls(Reply),
    /// Send the reply (354) and switch the codec to DATA mode for at most
    /// [`Session::max_message_size`] bytes; give its end to
    /// [`Session::on_data_end`].
    StartData(Reply),
    /// Check the sender (rules, filters, `senders` table); answer with
    /// [`Session::sender_checked`].
    CheckSender(MailFrom),
    /// Check the recipient (rules, tables); answer with
    /// [`Session::recipient_checked`].
    CheckRecipient(RcptTo),
    /// Open a message in the queue for [`Session::transaction`]; answer
    /// with [`Session::message_opened`].
    OpenMessage,
    /// Check credentials against the listener's `auth` table; answer with
    /// [`Session::authenticated`].
    Authenticate(Credentials),
    /// Commit the message (durably) to the queue; answer with
    /// [`Session::committed`].
    Commit {
        /// The message's size as received.
        size: u64,
    },
}

/// The request waiting for the driver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Sender(MailFrom),
    Recipient(RcptTo),
    Open,
    Auth(String),
    Commit,
}

/// An AUTH exchange in progress: what the next line answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exchange {
    Plain,
    LoginUser,
    LoginPassword(String),
}

/// Which answer of an AUTH exchange the next line is (logs name it
/// instead of showing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStage {
    /// The PLAIN message.
    Plain,
    /// The LOGIN user name.
    Username,
    /// The LOGIN password.
    Password,
}

const USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
const PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// One SMTP session's state.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    peer: String,
    helo: Option<(Domain, bool)>,
    tls: bool,
    user: Option<String>,
    tx: Option<Transaction>,
    pending: Option<Pending>,
    exchange: Option<Exchange>,
    in_data: bool,
    mails: usize,
    closed: bool,
}

impl Session {
    /// A new session on a listener; `peer` is the client as OpenSMTPD
    /// prints it in the HELO answer: [`Peer`](super::Peer)'s text,
    /// `[192.0.2.1]`, `[IPv6:2001:db8::1]` or `[local]`.
    pub fn new(config: Arc<SessionConfig>, peer: &str) -> Self {
        Self {
            tls: config.tls == TlsMode::Smtps,
            user: config.local.then(|| "local".to_owned()),
            config,
            peer: peer.to_owned(),
            helo: None,
            tx: None,
            pending: None,
            exchange: None,
            in_data: false,
            mails: 0,
            closed: false,
        }
    }

    /// The 220 greeting to send first.
    pub fn greeting(&self) -> Reply {
        Reply::greeting(&self.config.hostname)
    }

    /// The listener's host name.
    pub fn hostname(&self) -> &str {
        &self.config.hostname
    }

    /// The limit to give the codec at DATA.
    pub fn max_message_size(&self) -> u64 {
        self.config.limits.max_message_size
    }

    /// The transaction in progress, if any.
    pub const fn transaction(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    /// The authenticated user (`local` on the local socket).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The HELO/EHLO name, once given.
    pub fn helo(&self) -> Option<&Domain> {
        self.helo.as_ref().map(|(domain, _)| domain)
    }

    /// Whether the client said EHLO (rather than HELO).
    pub fn is_esmtp(&self) -> bool {
        self.helo.as_ref().is_some_and(|(_, extended)| *extended)
    }

    /// Whether TLS is active.
    pub const fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the next line answers an AUTH challenge (so it holds a
    /// credential and must not be logged).
    pub const fn in_auth_exchange(&self) -> bool {
        self.exchange.is_some()
    }

    /// Which answer of an AUTH exchange the next line is, if any.
    pub const fn auth_stage(&self) -> Option<AuthStage> {
        match self.exchange {
            None => None,
            Some(Exchange::Plain) => Some(AuthStage::Plain),
            Some(Exchange::LoginUser) => Some(AuthStage::Username),
            Some(Exchange::LoginPassword(_)) => Some(AuthStage::Password),
        }
    }

    /// Whether the session asked to close.
    pub const fn is_closed(&self) -> bool {
        self.closed
    }

    /// Takes one line of client input in command mode.
    pub fn on_line(&mut self, line: &[u8]) -> Step {
        if self.closed || self.pending.is_some() || self.in_data {
            return self.misuse();
        }
        if let Some(exchange) = self.exchange.take() {
            return self.handle_auth_response(exchange, line);
        }
        match Command::parse(line) {
            Ok(command) => self.on_command(command),
            Err(error) => Step::Reply(Reply::from(&error)),
        }
    }

    /// Takes a line the codec refused (too long, bare CR or LF).
    pub fn on_invalid(&mut self, error: LineError) -> Step {
        self.exchange = None;
        Step::Reply(match error {
            LineError::TooLong => Reply::line_too_long(),
            LineError::BareNewline => Reply::bare_newline(),
        })
    }

    /// Handles one parsed command.
    pub fn on_command(&mut self, command: Command) -> Step {
        if self.closed || self.pending.is_some() || self.in_data || self.exchange.is_some() {
            return self.misuse();
        }
        match command {
            Command::Helo(domain) => self.handle_hello(domain, false),
            Command::Ehlo(domain) => self.handle_hello(domain, true),
            Command::Mail(mail) => self.handle_mail(mail),
            Command::Rcpt(rcpt) => self.handle_rcpt(rcpt),
            Command::Data => self.handle_data(),
            Command::Rset if self.helo.is_none() => Step::Reply(Reply::bad_sequence()),
            Command::Rset => {
                self.tx = None;
                Step::Reply(Reply::reset())
            }
            Command::Noop => Step::Reply(Reply::ok()),
            Command::Help => Step::Reply(Reply::help()),
            Command::Quit => {
                self.closed = true;
                Step::Close(Reply::bye())
            }
            Command::Vrfy(_) | Command::Expn(_) => Step::Reply(Reply::not_implemented()),
            Command::StartTls => self.handle_starttls(),
            Command::Auth(auth) => self.handle_auth(auth),
        }
    }

    /// Whether `command` passes the session's sequence checks (HELO
    /// first, a transaction for RCPT and DATA, TLS or AUTH when required,
    /// ...): filters are asked only about commands that do, as OpenSMTPD
    /// validates a command before its filters see it. Parameter checks
    /// (SIZE, SMTPUTF8, ...) still come after the filters.
    pub fn would_run(&self, command: &Command) -> bool {
        let identified = self.helo.is_some();
        match command {
            Command::Helo(_) | Command::Ehlo(_) => !identified,
            Command::Mail(_) => {
                identified
                    && self.tx.is_none()
                    && (self.config.tls != TlsMode::Required || self.tls)
                    && (self.config.auth != AuthMode::Required || self.user.is_some())
                    && self.mails < self.config.limits.max_mails
            }
            Command::Rcpt(_) => self
                .tx
                .as_ref()
                .is_some_and(|tx| tx.recipients.len() < self.config.limits.max_recipients),
            Command::Data => self.tx.as_ref().is_some_and(|tx| !tx.recipients.is_empty()),
            Command::Rset => identified,
            Command::StartTls => identified && self.tx.is_none() && self.offers_starttls(),
            Command::Auth(_) => identified && self.tx.is_none() && self.offers_auth(),
            _ => true,
        }
    }

    /// A request answered out of turn: a driver bug; the session ends.
    fn misuse(&mut self) -> Step {
        self.closed = true;
        Step::Close(Reply::temporary_failure())
    }

    fn handle_hello(&mut self, domain: Domain, extended: bool) -> Step {
        if self.helo.is_some() {
            return Step::Reply(Reply::already_identified());
        }
        let first = Reply::hello_text(&self.config.hostname, &domain.to_string(), &self.peer);
        self.helo = Some((domain, extended));
        if !extended {
            return Step::Reply(Reply::multi(250, None, &[first]));
        }
        let mut lines = vec![
            first,
            "8BITMIME".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            format!("SIZE {}", self.config.limits.max_message_size),
        ];
        if self.config.dsn {
            lines.push("DSN".to_owned());
        }
        lines.push("PIPELINING".to_owned());
        if self.config.smtputf8 {
            lines.push("SMTPUTF8".to_owned());
        }
        if self.offers_starttls() {
            lines.push("STARTTLS".to_owned());
        }
        if self.offers_auth() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        lines.push("HELP".to_owned());
        Step::Reply(Reply::multi(250, None, &lines))
    }

    fn offers_starttls(&self) -> bool {
        matches!(self.config.tls, TlsMode::StartTls | TlsMode::Required) && !self.tls
    }

    fn offers_auth(&self) -> bool {
        self.config.auth != AuthMode::None && self.tls && self.user.is_none()
    }

    /// The ESMTP parameters of MAIL FROM this session may use; the
    /// reply refusing the first that it may not.
    fn check_mail_parameters(&self, mail: &MailFrom, extended: bool) -> Result<(), Reply> {
        let given = [
            ("SIZE", mail.size.is_some(), true),
            ("BODY", mail.body.is_some(), true),
            ("SMTPUTF8", mail.smtputf8, self.config.smtputf8),
            ("RET", mail.ret.is_some(), self.config.dsn),
            ("ENVID", mail.envid.is_some(), self.config.dsn),
            ("AUTH", mail.auth.is_some(), true),
        ];
        for (name, present, offered) in given {
            if present && !(offered && extended) {
                return Err(Reply::unsupported_parameter(name));
            }
        }
        if mail
            .size
            .is_some_and(|size| size > self.config.limits.max_message_size)
        {
            return Err(Reply::message_too_big());
        }
        match &mail.sender {
            ReversePath::Mailbox(mailbox) if !mailbox.is_ascii() && !mail.smtputf8 => {
                Err(Reply::utf8_not_declared())
            }
            _ => Ok(()),
        }
    }

    fn handle_mail(&mut self, mut mail: MailFrom) -> Step {
        let Some((_, extended)) = self.helo else {
            return Step::Reply(Reply::bad_sequence());
        };
        if self.config.tls == TlsMode::Required && !self.tls {
            return Step::Reply(Reply::tls_required());
        }
        if self.config.auth == AuthMode::Required && self.user.is_none() {
            return Step::Reply(Reply::auth_required());
        }
        if self.tx.is_some() {
            return Step::Reply(Reply::bad_sequence());
        }
        if self.mails >= self.config.limits.max_mails {
            return Step::Reply(Reply::too_many_messages());
        }
        if let Err(reply) = self.check_mail_parameters(&mail, extended) {
            return Step::Reply(reply);
        }
        if let ReversePath::Mailbox(mailbox) = &mut mail.sender {
            self.complete(mailbox);
        }
        self.pending = Some(Pending::Sender(mail.clone()));
        Step::CheckSender(mail)
    }

    /// Gives a bare local part this host's name, as OpenSMTPD does.
    fn complete(&self, mailbox: &mut Mailbox) {
        if mailbox.domain.is_none() {
            mailbox.domain = Some(Domain::Name(self.config.hostname.clone()));
        }
    }

    /// The driver's answer to [`Step::CheckSender`]: `Ok` accepts the
    /// sender and opens the transaction, `Err` sends that reply.
    pub fn sender_checked(&mut self, verdict: Result<(), Reply>) -> Step {
        let Some(Pending::Sender(mail)) = self.pending.take() else {
            return self.misuse();
        };
        match verdict {
            Ok(()) => {
                self.tx = Some(Transaction {
                    mail,
                    recipients: Vec::new(),
                });
                Step::Reply(Reply::ok())
            }
            Err(reply) => Step::Reply(reply),
        }
    }

    fn handle_rcpt(&mut self, mut rcpt: RcptTo) -> Step {
        let Some(tx) = &self.tx else {
            return Step::Reply(Reply::bad_sequence());
        };
        if tx.recipients.len() >= self.config.limits.max_recipients {
            return Step::Reply(Reply::too_many_recipients());
        }
        if !self.config.dsn || !self.helo.as_ref().is_some_and(|(_, extended)| *extended) {
            if rcpt.notify.is_some() {
                return Step::Reply(Reply::unsupported_parameter("NOTIFY"));
            }
            if rcpt.orcpt.is_some() {
                return Step::Reply(Reply::unsupported_parameter("ORCPT"));
            }
        }
        if !rcpt.recipient.is_ascii() && !tx.mail.smtputf8 {
            return Step::Reply(Reply::utf8_not_declared());
        }
        self.complete(&mut rcpt.recipient);
        self.pending = Some(Pending::Recipient(rcpt.clone()));
        Step::CheckRecipient(rcpt)
    }

    /// The driver's answer to [`Step::CheckRecipient`]: `Ok` adds the
    /// recipient, `Err` sends that reply (550 unknown, 451 table failure...).
    pub fn recipient_checked(&mut self, verdict: Result<(), Reply>) -> Step {
        let Some(Pending::Recipient(rcpt)) = self.pending.take() else {
            return self.misuse();
        };
        let Some(tx) = self.tx.as_mut() else {
            return self.misuse();
        };
        match verdict {
            Ok(()) => {
                tx.recipients.push(rcpt);
                Step::Reply(Reply::recipient_ok())
            }
            Err(reply) => Step::Reply(reply),
        }
    }

    fn handle_data(&mut self) -> Step {
        match &self.tx {
            None => Step::Reply(Reply::bad_sequence()),
            Some(tx) if tx.recipients.is_empty() => Step::Reply(Reply::no_recipient()),
            Some(_) => {
                self.pending = Some(Pending::Open);
                Step::OpenMessage
            }
        }
    }

    /// The driver's answer to [`Step::OpenMessage`]: `Ok` starts DATA,
    /// `Err` sends that reply and ends the transaction.
    pub fn message_opened(&mut self, result: Result<(), Reply>) -> Step {
        if self.pending.take() != Some(Pending::Open) {
            return self.misuse();
        }
        match result {
            Ok(()) => {
                self.in_data = true;
                Step::StartData(Reply::start_data())
            }
            Err(reply) => {
                self.tx = None;
                Step::Reply(reply)
            }
        }
    }

    /// The end of DATA as the codec reported it: a complete message is
    /// to be committed ([`Step::Commit`]); otherwise the transaction ends
    /// with 552, 550 or 500 and the driver drops what it received.
    pub fn on_data_end(&mut self, end: DataEnd) -> Step {
        if !self.in_data || self.pending.is_some() {
            return self.misuse();
        }
        self.in_data = false;
        let reply = match end {
            DataEnd::Complete { size } => {
                self.pending = Some(Pending::Commit);
                return Step::Commit { size };
            }
            DataEnd::TooLarge => Reply::message_too_big(),
            DataEnd::BareNewline => Reply::bare_newline_in_data(),
            DataEnd::LineTooLong => Reply::data_line_too_long(),
        };
        self.tx = None;
        Step::Reply(reply)
    }

    /// The driver's answer to [`Step::Commit`]: the message id once the
    /// message is durable (250), or the failure's reply (4xx).
    pub fn committed<I: fmt::Display>(&mut self, result: Result<I, Reply>) -> Step {
        if self.pending.take() != Some(Pending::Commit) {
            return self.misuse();
        }
        self.tx = None;
        match result {
            Ok(id) => {
                self.mails += 1;
                Step::Reply(Reply::accepted(&id))
            }
            Err(reply) => Step::Reply(reply),
        }
    }

    fn handle_starttls(&mut self) -> Step {
        if self.helo.is_none() || self.tx.is_some() {
            return Step::Reply(Reply::bad_sequence());
        }
        if self.tls && self.config.tls != TlsMode::None {
            return Step::Reply(Reply::already_secured());
        }
        if !self.offers_starttls() {
            return Step::Reply(Reply::not_supported());
        }
        Step::StartTls(Reply::ready_for_tls())
    }

    /// TLS is up after [`Step::StartTls`]: the session starts over (RFC
    /// 3207 4.2), the client must say EHLO again.
    pub fn tls_established(&mut self) {
        self.tls = true;
        self.helo = None;
        self.tx = None;
        self.exchange = None;
    }

    fn handle_auth(&mut self, auth: Auth) -> Step {
        if self.helo.is_none() || self.tx.is_some() {
            return Step::Reply(Reply::bad_sequence());
        }
        if self.user.is_some() && self.config.auth != AuthMode::None {
            return Step::Reply(Reply::already_authenticated());
        }
        if !self.offers_auth() {
            return Step::Reply(Reply::not_supported());
        }
        match (auth.mechanism, auth.initial) {
            (Mechanism::Plain, None) => self.challenge(Exchange::Plain, ""),
            (Mechanism::Plain, Some(message)) => self.check_plain(&message),
            (Mechanism::Login, None) => self.challenge(Exchange::LoginUser, USERNAME_CHALLENGE),
            (Mechanism::Login, Some(user)) => match text(&user) {
                Some(user) if !user.is_empty() => {
                    self.challenge(Exchange::LoginPassword(user), PASSWORD_CHALLENGE)
                }
                _ => Step::Reply(Reply::auth_syntax()),
            },
        }
    }

    fn challenge(&mut self, exchange: Exchange, text: &str) -> Step {
        self.exchange = Some(exchange);
        Step::Reply(Reply::auth_challenge(text))
    }

    fn check_plain(&mut self, message: &[u8]) -> Step {
        match parse_plain(message) {
            Some(credentials) => self.authenticate(credentials),
            None => Step::Reply(Reply::auth_syntax()),
        }
    }

    fn authenticate(&mut self, credentials: Credentials) -> Step {
        self.pending = Some(Pending::Auth(credentials.user.clone()));
        Step::Authenticate(credentials)
    }

    fn handle_auth_response(&mut self, exchange: Exchange, line: &[u8]) -> Step {
        if line == b"*" {
            return Step::Reply(Reply::auth_aborted());
        }
        let Some(decoded) = decode_base64(line) else {
            return Step::Reply(Reply::auth_syntax());
        };
        match exchange {
            Exchange::Plain => self.check_plain(&decoded),
            Exchange::LoginUser => match text(&decoded) {
                Some(user) if !user.is_empty() => {
                    self.challenge(Exchange::LoginPassword(user), PASSWORD_CHALLENGE)
                }
                _ => Step::Reply(Reply::auth_syntax()),
            },
            Exchange::LoginPassword(user) => match text(&decoded) {
                Some(password) => self.authenticate(Credentials { user, password }),
                None => Step::Reply(Reply::auth_syntax()),
            },
        }
    }

    /// The driver's answer to [`Step::Authenticate`]: whether the
    /// credentials are good, or the temporary failure that kept it from
    /// knowing (never turned into a 535).
    pub fn authenticated(&mut self, verdict: Result<bool, Reply>) -> Step {
        let Some(Pending::Auth(user)) = self.pending.take() else {
            return self.misuse();
        };
        match verdict {
            Ok(true) => {
                self.user = Some(user);
                Step::Reply(Reply::auth_succeeded())
            }
            Ok(false) => Step::Reply(Reply::auth_failed()),
            Err(reply) => Step::Reply(reply),
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
