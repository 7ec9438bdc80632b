//! A next hop for the relay tests: a small SMTP server on 127.0.0.1 (a
//! free port), scripted per test, that records what it is sent.
//!
//! [`Peer::start`] takes a [`Script`]: the answer at each stage (greeting,
//! EHLO, MAIL, RCPT by default and per address, DATA, the final dot), each
//! a reply or [`Answer::Drop`] (the connection closed at that point);
//! optional STARTTLS with a certificate signed by a generated CA
//! ([`PeerTls`], whose CA file a relay's `ca` can name); optional AUTH
//! (PLAIN and LOGIN, offered once TLS is up when STARTTLS is offered;
//! MAIL is refused with 530 until the client authenticated). The script
//! can change while the peer runs ([`Peer::set_script`]), e.g. 4xx first
//! and accept later. Pipelined commands are answered in order.
//! [`Answer::Stall`] never answers (the peer waits for the client to give
//! up and close); [`Script::broken_tls`] accepts STARTTLS and then sends
//! garbage instead of a handshake; [`PeerTls::requesting_client_cert`]
//! asks the client for a certificate during the handshake (optional, as
//! MX hosts do) and each message records the one presented.
//!
//! The peer records every command line ([`Peer::commands`]), every
//! accepted message ([`Message`]: sender, `MAIL FROM` parameters,
//! accepted recipients, the data unstuffed, TLS and AUTH state) and the
//! connections it accepted; [`Peer::wait_messages`] waits for messages
//! within [`DEADLINE`]. One thread per connection, sockets with a read
//! timeout, the listener stopped when the `Peer` is dropped.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::{Scratch, DEADLINE};

/// The peer's name in its greeting and EHLO reply.
pub(crate) const PEER_NAME: &str = "peer.smtpd.test";

/// What the peer does at one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Send this reply (lines separated by `\n`; CRLF added).
    Reply(String),
    /// Close the connection without answering.
    Drop,
    /// Never answer: wait until the client closes the connection.
    Stall,
}

impl Answer {
    /// A reply.
    pub(crate) fn reply(text: &str) -> Self {
        Self::Reply(text.to_owned())
    }

    fn is_positive(&self) -> bool {
        matches!(self, Self::Reply(text) if text.starts_with('2') || text.starts_with('3'))
    }
}

/// The certificate the peer serves for STARTTLS and the CA that signed
/// it.
#[derive(Clone)]
pub(crate) struct PeerTls {
    /// The server configuration.
    pub(crate) config: Arc<ServerConfig>,
    /// The CA certificate (PEM), world-readable, for a relay's `ca`.
    pub(crate) ca_file: PathBuf,
}

impl PeerTls {
    /// A CA and a certificate for `name` it signed; the CA written to
    /// `DIR/peer-ca-NAME.pem`.
    pub(crate) fn new(dir: &Scratch, name: &str) -> Self {
        Self::build(dir, name, None)
    }

    fn build(dir: &Scratch, name: &str, client_ca: Option<CertificateDer<'static>>) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subjects: OpenSSL takes a leaf named as its issuer for
        // a self-signed certificate.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "smtpd test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec![name.to_owned()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, name);
        let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        let ca_file = dir.write(&format!("peer-ca-{name}.pem"), &ca.pem());
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(client_ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(client_ca).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], der)
            .unwrap();
        Self {
            config: Arc::new(config),
            ca_file,
        }
    }

    /// [`PeerTls::new`] asking the client for a certificate signed by
    /// `client_ca` (DER); a client without one is still accepted.
    pub(crate) fn requesting_client_cert(
        dir: &Scratch,
        name: &str,
        client_ca: CertificateDer<'static>,
    ) -> Self {
        Self::build(dir, name, Some(client_ca))
    }
}

/// How the peer answers.
#[derive(Clone)]
pub(crate) struct Script {
    /// The greeting (`220 peer.smtpd.test ESMTP`).
    pub(crate) greeting: Answer,
    /// EHLO, HELO and LHLO: a positive reply is followed by the extension
    /// lines.
    pub(crate) ehlo: Answer,
    /// The extensions announced (besides STARTTLS and AUTH, added by
    /// `tls` and `auth`).
    pub(crate) extensions: Vec<String>,
    /// MAIL FROM.
    pub(crate) mail: Answer,
    /// RCPT TO, for addresses not in `rcpt_for`.
    pub(crate) rcpt: Answer,
    /// RCPT TO for particular addresses (compared case-insensitively).
    pub(crate) rcpt_for: Vec<(String, Answer)>,
    /// DATA.
    pub(crate) data: Answer,
    /// The final dot.
    pub(crate) dot: Answer,
    /// Offer STARTTLS with this certificate.
    pub(crate) tls: Option<PeerTls>,
    /// Offer AUTH and require it before MAIL: user and password.
    pub(crate) auth: Option<(String, String)>,
    /// Answer STARTTLS with 220, then send garbage and close instead of
    /// a handshake.
    pub(crate) tls_breaks: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self::accept()
    }
}

impl Script {
    /// Accepts everything: PIPELINING, 8BITMIME, SIZE, DSN, SMTPUTF8,
    /// ENHANCEDSTATUSCODES.
    pub(crate) fn accept() -> Self {
        Self {
            greeting: Answer::Reply(format!("220 {PEER_NAME} ESMTP test peer")),
            ehlo: Answer::Reply(format!("250 {PEER_NAME} hello")),
            extensions: ["PIPELINING", "8BITMIME", "SIZE 36700160", "DSN", "SMTPUTF8"]
                .into_iter()
                .chain(["ENHANCEDSTATUSCODES"])
                .map(str::to_owned)
                .collect(),
            mail: Answer::reply("250 2.1.0 Ok"),
            rcpt: Answer::reply("250 2.1.5 Ok"),
            rcpt_for: Vec::new(),
            data: Answer::reply("354 End data with <CR><LF>.<CR><LF>"),
            dot: Answer::reply("250 2.0.0 Ok: queued"),
            tls: None,
            auth: None,
            tls_breaks: false,
        }
    }

    /// This script with `greeting` as the greeting.
    pub(crate) fn greeting(mut self, answer: Answer) -> Self {
        self.greeting = answer;
        self
    }

    /// This script answering MAIL FROM with `answer`.
    pub(crate) fn mail(mut self, answer: Answer) -> Self {
        self.mail = answer;
        self
    }

    /// This script answering every RCPT TO with `answer`.
    pub(crate) fn rcpt(mut self, answer: Answer) -> Self {
        self.rcpt = answer;
        self
    }

    /// This script answering RCPT TO:<`address`> with `answer`.
    pub(crate) fn rcpt_for(mut self, address: &str, answer: Answer) -> Self {
        self.rcpt_for.push((address.to_ascii_lowercase(), answer));
        self
    }

    /// This script answering DATA with `answer`.
    pub(crate) fn data(mut self, answer: Answer) -> Self {
        self.data = answer;
        self
    }

    /// This script answering the final dot with `answer`.
    pub(crate) fn dot(mut self, answer: Answer) -> Self {
        self.dot = answer;
        self
    }

    /// This script offering STARTTLS with `tls`.
    pub(crate) fn starttls(mut self, tls: PeerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// This script offering STARTTLS whose handshake then fails.
    pub(crate) fn broken_tls(mut self, tls: PeerTls) -> Self {
        self.tls = Some(tls);
        self.tls_breaks = true;
        self
    }

    /// This script requiring AUTH as `user` with `password`.
    pub(crate) fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// This script without PIPELINING.
    pub(crate) fn no_pipelining(mut self) -> Self {
        self.extensions.retain(|e| e != "PIPELINING");
        self
    }

    fn rcpt_answer(&self, address: &str) -> Answer {
        let address = address.to_ascii_lowercase();
        self.rcpt_for
            .iter()
            .find(|(a, _)| *a == address)
            .map_or_else(|| self.rcpt.clone(), |(_, answer)| answer.clone())
    }
}

/// A message the peer accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The connection it came on (1 for the first).
    pub(crate) connection: usize,
    /// The EHLO/HELO/LHLO argument.
    pub(crate) helo: String,
    /// The reverse path, without angle brackets.
    pub(crate) sender: String,
    /// What followed `MAIL FROM:<...>` (parameters), trimmed.
    pub(crate) mail_params: String,
    /// The accepted recipients, in order.
    pub(crate) rcpts: Vec<String>,
    /// The data, unstuffed, lines ending in CRLF.
    pub(crate) data: String,
    /// The session was in TLS.
    pub(crate) tls: bool,
    /// The user the session authenticated as.
    pub(crate) auth: Option<String>,
    /// The certificate the client presented in the TLS handshake (DER).
    pub(crate) client_cert: Option<Vec<u8>>,
    /// The negotiated TLS cipher suite (rustls' name, such as
    /// `TLS13_AES_256_GCM_SHA384`).
    pub(crate) cipher: Option<String>,
}

#[derive(Default)]
struct Record {
    connections: usize,
    commands: Vec<String>,
    messages: Vec<Message>,
}

struct Shared {
    script: Mutex<Script>,
    record: Mutex<Record>,
    changed: Condvar,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap()
    }
}

/// A running test peer.
pub(crate) struct Peer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Peer {
    /// Starts a peer answering by `script` on 127.0.0.1, a free port.
    pub(crate) fn start(script: Script) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), script)
    }

    /// Starts a peer on `addr`: several MX hosts share the one port
    /// `smtpd --mx-port` gives (127.0.0.1, 127.0.0.2, ... are all
    /// loopback).
    pub(crate) fn start_on(addr: SocketAddr, script: Script) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            record: Mutex::new(Record::default()),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_shared, accept_stop) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let id = {
                    let mut record = accept_shared.record();
                    record.connections += 1;
                    record.connections
                };
                accept_shared.changed.notify_all();
                let shared = Arc::clone(&accept_shared);
                std::thread::spawn(move || {
                    let _ = Session::new(id, &shared).run(stream);
                });
            }
        });
        Self { addr, shared, stop }
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers by `script` from the next command on.
    pub(crate) fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap() = script;
    }

    /// The connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.shared.record().connections
    }

    /// Every command line received so far, in order (all connections).
    pub(crate) fn commands(&self) -> Vec<String> {
        self.shared.record().commands.clone()
    }

    /// The messages accepted so far.
    pub(crate) fn messages(&self) -> Vec<Message> {
        self.shared.record().messages.clone()
    }

    /// Waits until at least `count` messages were accepted (panics after
    /// [`DEADLINE`]); returns them all.
    pub(crate) fn wait_messages(&self, count: usize) -> Vec<Message> {
        self.wait(|record| record.messages.len() >= count, "messages");
        self.messages()
    }

    /// Waits until at least `count` connections were accepted.
    pub(crate) fn wait_connections(&self, count: usize) -> usize {
        self.wait(|record| record.connections >= count, "connections");
        self.connections()
    }

    fn wait(&self, done: impl Fn(&Record) -> bool, what: &str) {
        let end = Instant::now() + DEADLINE;
        let mut record = self.shared.record();
        while !done(&record) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "peer: no {what} in time; commands: {:?}",
                record.commands
            );
            record = self.shared.changed.wait_timeout(record, left).unwrap().0;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The connection: clear, or TLS after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// One connection's state.
struct Session<'a> {
    id: usize,
    shared: &'a Shared,
    helo: String,
    tls: bool,
    auth: Option<String>,
    sender: Option<(String, String)>,
    rcpts: Vec<String>,
}

/// What to do after a command.
enum Next {
    Continue,
    StartTls,
    Close,
}

impl<'a> Session<'a> {
    fn new(id: usize, shared: &'a Shared) -> Self {
        Self {
            id,
            shared,
            helo: String::new(),
            tls: false,
            auth: None,
            sender: None,
            rcpts: Vec::new(),
        }
    }

    fn script(&self) -> Script {
        self.shared.script.lock().unwrap().clone()
    }

    fn run(mut self, tcp: TcpStream) -> io::Result<()> {
        tcp.set_read_timeout(Some(DEADLINE))?;
        tcp.set_nodelay(true)?;
        let mut reader = BufReader::new(Stream::Plain(tcp));
        if !answer(&mut reader, &self.script().greeting)? {
            return Ok(());
        }
        loop {
            let Some(line) = read_line(&mut reader)? else {
                return Ok(());
            };
            self.shared.record().commands.push(line.clone());
            self.shared.changed.notify_all();
            match self.command(&mut reader, &line)? {
                Next::Continue => {}
                Next::Close => return close(reader),
                Next::StartTls if self.script().tls_breaks => {
                    reader
                        .get_mut()
                        .write_all(b"this is not a TLS handshake\r\n")?;
                    return close(reader);
                }
                Next::StartTls => {
                    let Stream::Plain(tcp) = reader.into_inner() else {
                        unreachable!("STARTTLS is answered only in clear");
                    };
                    let config = self.script().tls.expect("STARTTLS offered").config;
                    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
                    reader = BufReader::new(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))));
                    self.tls = true;
                    self.helo.clear();
                    self.reset();
                }
            }
        }
    }

    fn reset(&mut self) {
        self.sender = None;
        self.rcpts.clear();
    }

    fn command(&mut self, reader: &mut BufReader<Stream>, line: &str) -> io::Result<Next> {
        let script = self.script();
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("");
        let reply = |reader: &mut BufReader<Stream>, text: &str| {
            answer(reader, &Answer::reply(text)).map(|_| Next::Continue)
        };
        match verb {
            "EHLO" | "HELO" | "LHLO" => self.hello(reader, &script, line),
            "STARTTLS" if script.tls.is_some() && !self.tls && reader.buffer().is_empty() => {
                reply(reader, "220 2.0.0 Ready to start TLS")?;
                Ok(Next::StartTls)
            }
            "AUTH" if self.auth_offered(&script) && self.auth.is_none() => {
                self.authenticate(reader, &script, line)
            }
            "MAIL" if script.auth.is_some() && self.auth.is_none() => {
                reply(reader, "530 5.7.0 Authentication required")
            }
            "MAIL" => {
                let rest = &line["MAIL FROM:".len().min(line.len())..];
                let (address, params) = split_path(rest);
                if script.mail.is_positive() {
                    self.sender = Some((address, params));
                    self.rcpts.clear();
                }
                step(reader, &script.mail)
            }
            "RCPT" if self.sender.is_none() => reply(reader, "503 5.5.1 MAIL first"),
            "RCPT" => {
                let (address, _) = split_path(&line["RCPT TO:".len().min(line.len())..]);
                let answer = script.rcpt_answer(&address);
                if answer.is_positive() {
                    self.rcpts.push(address);
                }
                step(reader, &answer)
            }
            "DATA" if self.rcpts.is_empty() => reply(reader, "503 5.5.1 No valid recipients"),
            "DATA" => self.data(reader, &script),
            "RSET" => {
                self.reset();
                reply(reader, "250 2.0.0 Ok")
            }
            "NOOP" => reply(reader, "250 2.0.0 Ok"),
            "QUIT" => {
                answer(reader, &Answer::reply("221 2.0.0 Bye"))?;
                Ok(Next::Close)
            }
            _ => reply(reader, "500 5.5.2 Command unrecognized"),
        }
    }

    fn auth_offered(&self, script: &Script) -> bool {
        script.auth.is_some() && (self.tls || script.tls.is_none())
    }

    fn hello(
        &mut self,
        reader: &mut BufReader<Stream>,
        script: &Script,
        line: &str,
    ) -> io::Result<Next> {
        self.reset();
        let Answer::Reply(text) = &script.ehlo else {
            return Ok(Next::Close);
        };
        if text.starts_with('2') {
            self.helo = line
                .split_once(' ')
                .map(|(_, h)| h.to_owned())
                .unwrap_or_default();
        }
        if !text.starts_with('2') || line.to_ascii_uppercase().starts_with("HELO") {
            return step(reader, &script.ehlo);
        }
        let mut lines = vec![text.trim_start_matches("250 ").to_owned()];
        lines.extend(script.extensions.iter().cloned());
        if script.tls.is_some() && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        if self.auth_offered(script) {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        let last = lines.len() - 1;
        let text: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
            .collect();
        step(reader, &Answer::Reply(text.join("\n")))
    }

    fn authenticate(
        &mut self,
        reader: &mut BufReader<Stream>,
        script: &Script,
        line: &str,
    ) -> io::Result<Next> {
        let (user, password) = script.auth.clone().unwrap_or_default();
        let words: Vec<&str> = line.split(' ').collect();
        let decode = |text: &str| {
            smtpd::smtp::decode_base64(text.as_bytes())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let ask = |reader: &mut BufReader<Stream>, prompt: &str| -> io::Result<String> {
            answer(reader, &Answer::Reply(format!("334 {prompt}")))?;
            Ok(read_line(reader)?.map(|l| decode(&l)).unwrap_or_default())
        };
        let given = match words.get(1).map(|m| m.to_ascii_uppercase()).as_deref() {
            Some("PLAIN") => {
                let token = match words.get(2) {
                    Some(initial) => decode(initial),
                    None => ask(reader, "")?,
                };
                let mut parts = token.split('\0').skip(1);
                (
                    parts.next().map(str::to_owned),
                    parts.next().map(str::to_owned),
                )
            }
            Some("LOGIN") => {
                let name = ask(reader, "VXNlcm5hbWU6")?;
                let pass = ask(reader, "UGFzc3dvcmQ6")?;
                (Some(name), Some(pass))
            }
            _ => return step(reader, &Answer::reply("504 5.5.4 Mechanism not supported")),
        };
        if given == (Some(user.clone()), Some(password)) {
            self.auth = Some(user);
            step(reader, &Answer::reply("235 2.7.0 Authentication succeeded"))
        } else {
            step(reader, &Answer::reply("535 5.7.8 Authentication failed"))
        }
    }

    fn data(&mut self, reader: &mut BufReader<Stream>, script: &Script) -> io::Result<Next> {
        if !answer(reader, &script.data)? {
            return Ok(Next::Close);
        }
        if !script.data.is_positive() {
            return Ok(Next::Continue);
        }
        let mut data = String::new();
        loop {
            let Some(line) = read_line(reader)? else {
                return Ok(Next::Close);
            };
            if line == "." {
                break;
            }
            data.push_str(line.strip_prefix('.').unwrap_or(&line));
            data.push_str("\r\n");
        }
        let dot = self.script().dot;
        if dot.is_positive() {
            let (sender, mail_params) = self.sender.clone().unwrap_or_default();
            let message = Message {
                connection: self.id,
                helo: self.helo.clone(),
                sender,
                mail_params,
                rcpts: self.rcpts.clone(),
                data,
                tls: self.tls,
                auth: self.auth.clone(),
                client_cert: match reader.get_ref() {
                    Stream::Tls(tls) => tls
                        .conn
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|cert| cert.to_vec()),
                    Stream::Plain(_) => None,
                },
                cipher: match reader.get_ref() {
                    Stream::Tls(tls) => tls
                        .conn
                        .negotiated_cipher_suite()
                        .map(|suite| format!("{:?}", suite.suite())),
                    Stream::Plain(_) => None,
                },
            };
            self.shared.record().messages.push(message);
            self.shared.changed.notify_all();
        }
        self.reset();
        step(reader, &dot)
    }
}

/// Answers, then continues or (for [`Answer::Drop`]) closes.
fn step(reader: &mut BufReader<Stream>, what: &Answer) -> io::Result<Next> {
    match answer(reader, what)? {
        true => Ok(Next::Continue),
        false => Ok(Next::Close),
    }
}

/// Writes the reply; `false` for [`Answer::Drop`].
fn answer(reader: &mut BufReader<Stream>, what: &Answer) -> io::Result<bool> {
    let text = match what {
        Answer::Reply(text) => text,
        Answer::Drop => return Ok(false),
        Answer::Stall => {
            // Read (and drop) whatever comes until the client gives up.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
            return Ok(false);
        }
    };
    let mut out = String::new();
    for line in text.split('\n') {
        out.push_str(line);
        out.push_str("\r\n");
    }
    let stream = reader.get_mut();
    stream.write_all(out.as_bytes())?;
    stream.flush()?;
    Ok(true)
}

/// One line without CRLF; `None` at the end of the stream.
fn read_line(reader: &mut BufReader<Stream>) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// `<address> params` into the address and the parameters.
fn split_path(text: &str) -> (String, String) {
    let text = text.trim_start();
    match text.strip_prefix('<').and_then(|t| t.split_once('>')) {
        Some((address, rest)) => (address.to_owned(), rest.trim().to_owned()),
        None => {
            let (address, rest) = text.split_once(' ').unwrap_or((text, ""));
            (address.to_owned(), rest.trim().to_owned())
        }
    }
}

fn close(reader: BufReader<Stream>) -> io::Result<()> {
    match reader.into_inner() {
        Stream::Plain(tcp) => tcp.shutdown(Shutdown::Both),
        Stream::Tls(mut tls) => {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            tls.sock.shutdown(Shutdown::Both)
        }
    }
}
