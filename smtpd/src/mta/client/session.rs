//! The dialogue of one client session: [`Client::open`] (greeting, EHLO
//! or HELO, STARTTLS, AUTH), [`Client::send`] (one transaction, pipelined
//! when the peer allows), [`Client::reset`] and [`Client::quit`]. The
//! module overview in `mod.rs` says what each step does and why.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::body::Encoder;
use super::failure::{Failure, Stage};
use super::reply::PeerReply;
use super::wire::{BoxIo, Io, Wire};
use super::{
    BodyType, DsnRet, Extensions, Login, Notify, Outgoing, Params, PeerInfo, RcptResult, Recipient,
    Timeouts, TlsInfo, TlsPolicy,
};
use crate::smtp::{encode_base64, Enhanced};

/// The size of the blocks the message is read and sent in.
const BLOCK: usize = 64 * 1024;

/// An open session: greeted, EHLO'd, and TLS'd and authenticated as the
/// parameters asked.
pub struct Client {
    wire: Wire,
    info: PeerInfo,
    timeouts: Timeouts,
    lmtp: bool,
    /// The last transaction did not complete: RSET before the next.
    dirty: bool,
    /// The connection is unusable (I/O error, timeout, protocol error).
    broken: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("info", &self.info)
            .field("lmtp", &self.lmtp)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a session over `stream` (connected by the caller): TLS first
    /// for smtps, the greeting, EHLO (or HELO), STARTTLS and AUTH as
    /// `params` ask.
    pub async fn open<S: Io + 'static>(stream: S, params: &Params) -> Result<Self, Failure> {
        check_helo(&params.helo)?;
        let mut stream: BoxIo = Box::new(stream);
        let mut tls = None;
        if params.tls == TlsPolicy::Implicit {
            let (secured, info) = handshake(stream, params).await?;
            stream = secured;
            tls = Some(info);
        }
        let mut wire = Wire::new(stream, params.transcript.clone());
        let timeouts = params.timeouts;
        let greeting = wire.reply(Stage::Greeting, timeouts.greeting).await?;
        if !greeting.is_success() {
            abandon(&mut wire, &timeouts).await;
            return Err(Failure::refused(Stage::Greeting, greeting));
        }
        let strict = tls.is_some() || params.tls == TlsPolicy::Required || params.auth.is_some();
        let (mut hello, mut extensions) = match hello(&mut wire, params, strict).await {
            Ok(done) => done,
            Err(failure) => {
                abandon(&mut wire, &timeouts).await;
                return Err(failure);
            }
        };
        if tls.is_none() && wants_starttls(params, &extensions)? {
            let (next, secured) = starttls(wire, params).await?;
            wire = next;
            if secured.is_some() {
                tls = secured;
                (hello, extensions) = self::hello(&mut wire, params, true).await?;
            }
        }
        let mut info = PeerInfo {
            greeting,
            hello,
            extensions,
            tls,
            authenticated: false,
        };
        if let Some(login) = &params.auth {
            if let Err(failure) = authenticate(&mut wire, &info, login, &timeouts).await {
                abandon(&mut wire, &timeouts).await;
                return Err(failure);
            }
            info.authenticated = true;
        }
        Ok(Self {
            wire,
            info,
            timeouts,
            lmtp: params.lmtp,
            dirty: false,
            broken: false,
        })
    }

    /// What the session learnt about its peer.
    pub fn peer_info(&self) -> &PeerInfo {
        &self.info
    }

    /// Whether another transaction may go over this session (no I/O
    /// error, timeout or protocol error happened).
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Sends one message. `Ok` holds one result per recipient of `tx`, in
    /// order (a refused RCPT, or the reply after the data: for SMTP the
    /// one reply to the final dot, for LMTP each recipient's own); `Err`
    /// is a failure that concerns every recipient (MAIL FROM refused, the
    /// message refused here, the connection lost before any recipient had
    /// an outcome). A recipient refused before the data keeps its own
    /// failure even when the transaction fails later.
    pub async fn send(
        &mut self,
        tx: &Outgoing,
        body: impl AsyncRead + Unpin,
    ) -> Result<Vec<RcptResult>, Failure> {
        if self.broken {
            return Err(Failure::temporary(Stage::MailFrom, "session closed"));
        }
        let mail = mail_command(tx, &self.info.extensions)?;
        let mut slots: Vec<Option<RcptResult>> = Vec::with_capacity(tx.recipients.len());
        let mut commands = Vec::with_capacity(tx.recipients.len());
        for rcpt in &tx.recipients {
            match rcpt_command(rcpt, &self.info.extensions) {
                Ok(command) => {
                    commands.push(Some(command));
                    slots.push(None);
                }
                Err(failure) => {
                    commands.push(None);
                    slots.push(Some(Err(failure)));
                }
            }
        }
        if commands.iter().all(Option::is_none) {
            return Ok(slots.into_iter().flatten().collect());
        }
        let outcome = self.transaction(&mail, &commands, &mut slots, body).await;
        if let Err(failure) = outcome {
            // No reply (I/O, timeout, refused here mid-stream) or 421
            // (RFC 5321 section 3.8: the server is closing): done.
            if failure.reply.as_ref().map_or(true, |r| r.code() == 421) {
                self.broken = true;
            }
            if slots.iter().all(Option::is_none) {
                return Err(failure);
            }
            for slot in &mut slots {
                slot.get_or_insert_with(|| Err(failure.clone()));
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// `RSET`: ends any transaction so that the session can carry another.
    pub async fn reset(&mut self) -> Result<(), Failure> {
        if self.broken {
            return Err(Failure::temporary(Stage::Reset, "session closed"));
        }
        self.wire.queue("RSET");
        let result = self.rset_reply(true).await;
        if result.is_ok() {
            self.dirty = false;
        }
        result
    }

    /// `QUIT`, its reply awaited (within the command timeout), then the
    /// connection closed.
    pub async fn quit(mut self) {
        if !self.broken {
            self.wire.queue("QUIT");
            let limit = self.timeouts.command;
            if self.wire.flush(Stage::Reset, limit).await.is_ok() {
                let _ = self.wire.reply(Stage::Reset, limit).await;
            }
        }
        self.wire.shutdown(self.timeouts.command).await;
    }

    /// The commands of one transaction, up to the replies after the data.
    async fn transaction(
        &mut self,
        mail: &str,
        rcpts: &[Option<String>],
        slots: &mut [Option<RcptResult>],
        body: impl AsyncRead + Unpin,
    ) -> Result<(), Failure> {
        let reset = std::mem::replace(&mut self.dirty, true);
        let accepted = if self.info.extensions.pipelining {
            self.pipelined(reset, mail, rcpts, slots).await?
        } else {
            self.lockstep(reset, mail, rcpts, slots).await?
        };
        let Some(accepted) = accepted else {
            return Ok(());
        };
        let data_total = self.timeouts.data_total;
        let transfer = async {
            self.stream_body(body).await?;
            self.data_end(&accepted, slots).await
        };
        match tokio::time::timeout(data_total, transfer).await {
            Ok(Ok(())) => {
                self.dirty = false;
                Ok(())
            }
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(Failure::temporary(
                Stage::Body,
                "timeout: the message transfer took too long",
            )),
        }
    }

    /// MAIL, RCPTs and DATA in one write, replies read in order. The
    /// indexes of the accepted recipients, when the peer is ready for the
    /// data.
    async fn pipelined(
        &mut self,
        reset: bool,
        mail: &str,
        rcpts: &[Option<String>],
        slots: &mut [Option<RcptResult>],
    ) -> Result<Option<Vec<usize>>, Failure> {
        let limit = self.timeouts.command;
        if reset {
            self.wire.queue("RSET");
        }
        self.wire.queue(mail);
        for command in rcpts.iter().flatten() {
            self.wire.queue(command);
        }
        self.wire.queue("DATA");
        self.wire.flush(Stage::MailFrom, limit).await?;
        if reset {
            self.rset_reply(false).await?;
        }
        let mail = self.wire.reply(Stage::MailFrom, limit).await?;
        let mut accepted = Vec::new();
        for (i, command) in rcpts.iter().enumerate() {
            if command.is_none() {
                continue;
            }
            let reply = match self.wire.reply(Stage::RcptTo, limit).await {
                Ok(reply) => reply,
                // A server refusing MAIL may close at once (421): its
                // reply is the reason, the missing ones are not.
                Err(_) if !mail.is_success() => {
                    self.broken = true;
                    return Err(Failure::refused(Stage::MailFrom, mail));
                }
                Err(failure) => return Err(failure),
            };
            if !mail.is_success() {
                continue;
            }
            match reply.is_success() {
                true => accepted.push(i),
                false => slots[i] = Some(Err(Failure::refused(Stage::RcptTo, reply))),
            }
        }
        let data = match self.wire.reply(Stage::Data, limit).await {
            Ok(reply) => reply,
            Err(_) if !mail.is_success() => {
                self.broken = true;
                return Err(Failure::refused(Stage::MailFrom, mail));
            }
            Err(failure) => return Err(failure),
        };
        if data.code() == 354 && (!mail.is_success() || accepted.is_empty()) {
            // RFC 2920 section 3.1: nothing to send, end the data at once.
            self.wire.queue(".");
            self.wire.flush(Stage::Data, limit).await?;
            self.wire.reply(Stage::Data, limit).await?;
        }
        if !mail.is_success() {
            return Err(Failure::refused(Stage::MailFrom, mail));
        }
        if accepted.is_empty() {
            return Ok(None);
        }
        if data.code() != 354 {
            return Err(Failure::refused(Stage::Data, data));
        }
        Ok(Some(accepted))
    }

    /// MAIL, each RCPT and DATA, each reply awaited before the next.
    async fn lockstep(
        &mut self,
        reset: bool,
        mail: &str,
        rcpts: &[Option<String>],
        slots: &mut [Option<RcptResult>],
    ) -> Result<Option<Vec<usize>>, Failure> {
        if reset {
            self.wire.queue("RSET");
            self.rset_reply(true).await?;
        }
        let mail = self.command(Stage::MailFrom, mail).await?;
        if !mail.is_success() {
            return Err(Failure::refused(Stage::MailFrom, mail));
        }
        let mut accepted = Vec::new();
        for (i, command) in rcpts.iter().enumerate() {
            let Some(command) = command else {
                continue;
            };
            let reply = self.command(Stage::RcptTo, command).await?;
            match reply.is_success() {
                true => accepted.push(i),
                false => slots[i] = Some(Err(Failure::refused(Stage::RcptTo, reply))),
            }
        }
        if accepted.is_empty() {
            return Ok(None);
        }
        let data = self.command(Stage::Data, "DATA").await?;
        if data.code() != 354 {
            return Err(Failure::refused(Stage::Data, data));
        }
        Ok(Some(accepted))
    }

    /// Sends one command and reads its reply.
    async fn command(&mut self, stage: Stage, line: &str) -> Result<PeerReply, Failure> {
        self.wire.queue(line);
        self.wire.flush(stage, self.timeouts.command).await?;
        self.wire.reply(stage, self.timeouts.command).await
    }

    /// Reads the reply to a queued RSET (sending it first when `flush`);
    /// a refusal leaves the session in an unknown state: unusable.
    async fn rset_reply(&mut self, flush: bool) -> Result<(), Failure> {
        let limit = self.timeouts.command;
        if flush {
            self.wire.flush(Stage::Reset, limit).await?;
        }
        let reply = self.wire.reply(Stage::Reset, limit).await?;
        if reply.is_success() {
            return Ok(());
        }
        self.broken = true;
        Err(Failure::refused(Stage::Reset, reply))
    }

    /// Streams the message and the final dot, checking 8-bit content and
    /// size against what the peer offers.
    async fn stream_body(&mut self, mut body: impl AsyncRead + Unpin) -> Result<(), Failure> {
        let extensions = &self.info.extensions;
        let seven_bit_only = !extensions.eight_bit_mime;
        let limit = extensions.size.filter(|&n| n > 0);
        let block_time = self.timeouts.data_block;
        let mut encoder = Encoder::new();
        let mut chunk = Vec::with_capacity(BLOCK);
        loop {
            chunk.clear();
            let n = body.read_buf(&mut chunk).await.map_err(|e| {
                Failure::temporary(Stage::Body, format!("reading the message: {e}"))
            })?;
            if n == 0 {
                break;
            }
            encoder.push(&chunk, self.wire.output());
            if seven_bit_only && encoder.eight_bit() {
                return Err(Failure::local(
                    Stage::Body,
                    Enhanced::new(5, 6, 3),
                    "message has 8-bit content but the remote host does not support 8BITMIME",
                ));
            }
            if let Some(limit) = limit.filter(|&n| encoder.size() > n) {
                return Err(too_big(Stage::Body, encoder.size(), limit));
            }
            if self.wire.pending() >= BLOCK {
                self.wire.flush(Stage::Body, block_time).await?;
            }
        }
        encoder.finish(self.wire.output());
        self.wire.said(".");
        self.wire.flush(Stage::Body, block_time).await
    }

    /// The replies after the final dot: one for SMTP, one per accepted
    /// recipient for LMTP.
    async fn data_end(
        &mut self,
        accepted: &[usize],
        slots: &mut [Option<RcptResult>],
    ) -> Result<(), Failure> {
        let limit = self.timeouts.data_end;
        if self.lmtp {
            for &i in accepted {
                let reply = self.wire.reply(Stage::DataEnd, limit).await?;
                slots[i] = Some(outcome(reply));
            }
            return Ok(());
        }
        let reply = self.wire.reply(Stage::DataEnd, limit).await?;
        for &i in accepted {
            slots[i] = Some(outcome(reply.clone()));
        }
        Ok(())
    }
}

/// A reply after the data as a recipient's result.
fn outcome(reply: PeerReply) -> RcptResult {
    match reply.is_success() {
        true => Ok(reply),
        false => Err(Failure::refused(Stage::DataEnd, reply)),
    }
}

/// The TLS handshake, bounded by the TLS timeout.
async fn handshake(stream: BoxIo, params: &Params) -> Result<(BoxIo, TlsInfo), Failure> {
    let config = params
        .tls_config
        .as_ref()
        .ok_or_else(|| Failure::temporary(Stage::Tls, "no TLS configuration"))?;
    let connect = config.connect(stream, &params.server_name, params.verify);
    match tokio::time::timeout(params.timeouts.tls, connect).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(why)) => Err(Failure::temporary(Stage::Tls, why)),
        Err(_) => Err(Failure::temporary(
            Stage::Tls,
            "timeout during the TLS handshake",
        )),
    }
}

/// EHLO (LHLO), then HELO when EHLO is refused and `strict` does not
/// forbid it.
async fn hello(
    wire: &mut Wire,
    params: &Params,
    strict: bool,
) -> Result<(&'static str, Extensions), Failure> {
    let limit = params.timeouts.command;
    let verb = if params.lmtp { "LHLO" } else { "EHLO" };
    wire.queue(&format!("{verb} {}", params.helo));
    wire.flush(Stage::Ehlo, limit).await?;
    let reply = wire.reply(Stage::Ehlo, limit).await?;
    if reply.is_success() {
        return Ok((verb, Extensions::parse(&reply)));
    }
    if params.lmtp || strict {
        return Err(Failure::refused(Stage::Ehlo, reply));
    }
    wire.queue(&format!("HELO {}", params.helo));
    wire.flush(Stage::Helo, limit).await?;
    let reply = wire.reply(Stage::Helo, limit).await?;
    match reply.is_success() {
        true => Ok(("HELO", Extensions::default())),
        false => Err(Failure::refused(Stage::Helo, reply)),
    }
}

/// Whether to try STARTTLS; `Required` without the extension is a failure.
fn wants_starttls(params: &Params, extensions: &Extensions) -> Result<bool, Failure> {
    match (params.tls, extensions.starttls) {
        (TlsPolicy::Off | TlsPolicy::Implicit, _) | (TlsPolicy::Opportunistic, false) => Ok(false),
        (TlsPolicy::Required, false) => Err(Failure::temporary(
            Stage::Tls,
            "TLS required but not supported by the remote host",
        )),
        (TlsPolicy::Opportunistic | TlsPolicy::Required, true) => Ok(true),
    }
}

/// STARTTLS and the handshake: the wire to go on with, and the TLS
/// parameters (`None` when an opportunistic STARTTLS is refused: the
/// session goes on in clear).
async fn starttls(mut wire: Wire, params: &Params) -> Result<(Wire, Option<TlsInfo>), Failure> {
    let limit = params.timeouts.command;
    wire.queue("STARTTLS");
    wire.flush(Stage::Tls, limit).await?;
    let reply = wire.reply(Stage::Tls, limit).await?;
    if !reply.is_success() {
        return match params.tls {
            TlsPolicy::Required => Err(Failure::refused(Stage::Tls, reply)),
            _ => Ok((wire, None)),
        };
    }
    if wire.has_input() {
        return Err(Failure::temporary(
            Stage::Tls,
            "the remote host sent data after its STARTTLS reply",
        ));
    }
    let transcript = wire.transcript();
    let (secured, info) = handshake(wire.into_stream(), params).await?;
    Ok((Wire::new(secured, transcript), Some(info)))
}

/// AUTH PLAIN, or LOGIN when PLAIN is not offered; only over TLS.
async fn authenticate(
    wire: &mut Wire,
    info: &PeerInfo,
    login: &Login,
    timeouts: &Timeouts,
) -> Result<(), Failure> {
    if info.tls.is_none() {
        return Err(Failure::temporary(
            Stage::Auth,
            "AUTH refused over a session without TLS",
        ));
    }
    let mechanisms = &info.extensions.auth;
    let limit = timeouts.command;
    let reply = if mechanisms.iter().any(|m| m == "PLAIN") {
        let token = format!("\0{}\0{}", login.user, login.password);
        let line = format!("AUTH PLAIN {}", encode_base64(token.as_bytes()));
        wire.queue_secret(&line, "AUTH PLAIN ********");
        wire.flush(Stage::Auth, limit).await?;
        wire.reply(Stage::Auth, limit).await?
    } else if mechanisms.iter().any(|m| m == "LOGIN") {
        wire.queue("AUTH LOGIN");
        let mut reply = None;
        for secret in [&login.user, &login.password] {
            wire.flush(Stage::Auth, limit).await?;
            let challenge = wire.reply(Stage::Auth, limit).await?;
            if challenge.code() != 334 {
                reply = Some(challenge);
                break;
            }
            wire.queue_secret(&encode_base64(secret.as_bytes()), "********");
        }
        match reply {
            Some(reply) => reply,
            None => {
                wire.flush(Stage::Auth, limit).await?;
                wire.reply(Stage::Auth, limit).await?
            }
        }
    } else {
        return Err(Failure::temporary(
            Stage::Auth,
            "the remote host offers neither AUTH PLAIN nor AUTH LOGIN",
        ));
    };
    match reply.code() {
        235 => Ok(()),
        _ => Err(Failure::refused(Stage::Auth, reply)),
    }
}

/// Sends QUIT without waiting, after a session-level refusal.
async fn abandon(wire: &mut Wire, timeouts: &Timeouts) {
    wire.queue("QUIT");
    let _ = wire.flush(Stage::Reset, timeouts.command).await;
    wire.shutdown(timeouts.command).await;
}

/// Whether `text` can go into a command without changing its meaning:
/// no control character, space or angle bracket.
fn is_safe(text: &str) -> bool {
    !text
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>')
}

fn check_helo(helo: &str) -> Result<(), Failure> {
    match !helo.is_empty() && is_safe(helo) {
        true => Ok(()),
        false => Err(Failure::temporary(
            Stage::Ehlo,
            format!("invalid HELO name {helo:?}"),
        )),
    }
}

fn too_big(stage: Stage, size: u64, limit: u64) -> Failure {
    Failure::local(
        stage,
        Enhanced::new(5, 3, 4),
        format!("message too big for the remote host ({size} bytes, its limit {limit})"),
    )
}

/// `MAIL FROM:<sender>` with the parameters the peer takes, or why the
/// message cannot go to this peer.
fn mail_command(tx: &Outgoing, ext: &Extensions) -> Result<String, Failure> {
    let stage = Stage::MailFrom;
    if !is_safe(&tx.sender) || !is_safe(&tx.dsn_envid) {
        return Err(Failure::local(
            stage,
            Enhanced::new(5, 1, 7),
            format!("invalid sender {:?}", tx.sender),
        ));
    }
    if !tx.sender.is_ascii() && !ext.smtputf8 {
        return Err(no_smtputf8(stage));
    }
    if let (Some(limit), Some(size)) = (ext.size.filter(|&n| n > 0), tx.size) {
        if size > limit {
            return Err(too_big(stage, size, limit));
        }
    }
    if tx.body == BodyType::EightBit && !ext.eight_bit_mime {
        return Err(Failure::local(
            stage,
            Enhanced::new(5, 6, 3),
            "message has 8-bit content but the remote host does not support 8BITMIME",
        ));
    }
    let mut command = format!("MAIL FROM:<{}>", tx.sender);
    if let (Some(_), Some(size)) = (ext.size, tx.size) {
        command.push_str(&format!(" SIZE={size}"));
    }
    if ext.eight_bit_mime && tx.body != BodyType::SevenBit {
        command.push_str(" BODY=8BITMIME");
    }
    let utf8 =
        tx.smtputf8 || !tx.sender.is_ascii() || tx.recipients.iter().any(|r| !r.address.is_ascii());
    if ext.smtputf8 && utf8 {
        command.push_str(" SMTPUTF8");
    }
    if ext.dsn {
        match tx.dsn_ret {
            Some(DsnRet::Full) => command.push_str(" RET=FULL"),
            Some(DsnRet::Hdrs) => command.push_str(" RET=HDRS"),
            None => {}
        }
        if !tx.dsn_envid.is_empty() {
            command.push_str(&format!(" ENVID={}", tx.dsn_envid));
        }
    }
    Ok(command)
}

fn no_smtputf8(stage: Stage) -> Failure {
    Failure::local(
        stage,
        Enhanced::new(5, 6, 7),
        "non-ASCII address but the remote host does not support SMTPUTF8",
    )
}

/// `RCPT TO:<address>` with DSN parameters when the peer takes them.
fn rcpt_command(rcpt: &Recipient, ext: &Extensions) -> Result<String, Failure> {
    let stage = Stage::RcptTo;
    let orcpt = rcpt.orcpt.as_deref().unwrap_or("");
    if rcpt.address.is_empty() || !is_safe(&rcpt.address) || !is_safe(orcpt) {
        return Err(Failure::local(
            stage,
            Enhanced::new(5, 1, 3),
            format!("invalid recipient {:?}", rcpt.address),
        ));
    }
    if !rcpt.address.is_ascii() && !ext.smtputf8 {
        return Err(no_smtputf8(stage));
    }
    let mut command = format!("RCPT TO:<{}>", rcpt.address);
    if ext.dsn {
        if let Some(notify) = notify_value(rcpt.notify) {
            command.push_str(&format!(" NOTIFY={notify}"));
        }
        if !orcpt.is_empty() {
            command.push_str(&format!(" ORCPT={orcpt}"));
        }
    }
    Ok(command)
}

/// `NEVER`, or the requested conditions joined by commas; `None` when
/// nothing was requested.
fn notify_value(notify: Notify) -> Option<String> {
    if notify.0 & Notify::NEVER != 0 {
        return Some("NEVER".to_owned());
    }
    let words: Vec<&str> = [
        (Notify::SUCCESS, "SUCCESS"),
        (Notify::FAILURE, "FAILURE"),
        (Notify::DELAY, "DELAY"),
    ]
    .iter()
    .filter(|(bit, _)| notify.0 & bit != 0)
    .map(|(_, word)| *word)
    .collect();
    (!words.is_empty()).then(|| words.join(","))
}
