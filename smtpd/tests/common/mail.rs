//! Mail to and from the daemon under test, for the security battery and
//! the real-client tests: a running `smtpd` on a free port of 127.0.0.1,
//! a raw SMTP client that may speak from another source address than the
//! host's own, the fs spool read back as its human-readable envelope
//! files, generated certificates, `smtpctl encrypt`, and the real clients
//! (swaks, Python's smtplib) found on `PATH`.
//!
//! Every wait is bounded by [`DEADLINE`]: replies are read with a socket
//! timeout, the daemon's readiness from its `listening on` log line.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{smtpd_command, Process, Scratch, DEADLINE};

/// A client on the host itself: `from local` matches it (127.0.0.1 is an
/// address of the loopback interface, so it is in `<localhost>`).
pub(crate) const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A client from outside: 127.0.0.2 is routed over the loopback
/// interface, but it is no address of any interface, so `from local`
/// does not match it. Nothing leaves the host.
pub(crate) const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A port nobody listens on now: bound once, then released.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `smtpd`, the port of its first listener and its spool.
pub(crate) struct Smtpd {
    pub(crate) process: Process,
    pub(crate) port: u16,
    pub(crate) spool: Spool,
}

impl Deref for Smtpd {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for Smtpd {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl Smtpd {
    /// Writes `DIR/smtpd.conf` from what `config` gives for a free port
    /// (which the configuration must listen on, on 127.0.0.1), starts the
    /// daemon and waits until it listens on that port.
    pub(crate) fn start(dir: &Scratch, config: impl FnOnce(u16) -> String) -> Self {
        let port = free_port();
        let path = dir.write("smtpd.conf", &config(port));
        let smtpd = Self {
            process: Process::spawn(smtpd_command(dir, &path)),
            port,
            spool: Spool(dir.0.join("data").join("spool")),
        };
        smtpd.wait_for(&format!("listening on 127.0.0.1:{port}"));
        smtpd
    }

    /// A raw client of the first listener, connected from `source`.
    pub(crate) fn connect(&self, source: Ipv4Addr) -> Client {
        Client::connect(self.port, source)
    }

    /// Waits for one delivery log line (`SESSION mda delivery evpid=EVPID ...`)
    /// per entry of `msgids`, in any order (a message id given twice waits
    /// for two of its envelopes); the lines, in the order of `msgids`.
    pub(crate) fn wait_deliveries(&self, msgids: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; msgids.len()];
        while found.iter().any(Option::is_none) {
            let line = self.wait_for(" delivery evpid=");
            let slot = msgids
                .iter()
                .zip(&mut found)
                .find(|(msgid, slot)| slot.is_none() && line.contains(&format!("evpid={msgid}")));
            if let Some((_, slot)) = slot {
                *slot = Some(line);
            }
        }
        found.into_iter().flatten().collect()
    }
}

/// `smtp max-message-size` of the typical site.
pub(crate) const MAX_SIZE: usize = 8192;
/// `smtp limit max-rcpt` of the typical site.
pub(crate) const MAX_RCPT: usize = 4;

/// The local action's command for sites whose deliveries must stay in the
/// queue to be inspected: it fails temporarily (EX_TEMPFAIL), so every
/// accepted envelope remains in the spool, to be retried later.
pub(crate) const TEMPFAIL: &str = "exit 75";

/// The local action's command that delivers: it appends the message to
/// the site's mbox.
pub(crate) const DELIVER: &str = "cat >> {mbox}";

/// A daemon with a typical configuration: example.org is delivered by a
/// local `mda` action, and only the host itself (`from local`) may relay.
pub(crate) struct Site {
    pub(crate) smtpd: Smtpd,
    /// Where [`DELIVER`] appends what it delivers.
    pub(crate) mbox: PathBuf,
    /// A file that an injected shell command would create.
    pub(crate) marker: PathBuf,
}

impl Site {
    /// The typical configuration; local deliveries stay in the queue.
    pub(crate) fn start(dir: &Scratch) -> Self {
        Self::start_with(dir, TEMPFAIL, "", "")
    }

    /// The typical configuration with `mda` as the local action's command
    /// (`{mbox}` in it replaced by the mbox path), `top` before the first
    /// listener and `rules` after the actions. example.org is a virtual
    /// domain whose every address goes to the account `vmail` of the
    /// action's userbase (uid 65534, a world-writable home in DIR), so
    /// any valid local part is a recipient, as with a catch-all.
    pub(crate) fn start_with(dir: &Scratch, mda: &str, top: &str, rules: &str) -> Self {
        let home = dir.0.join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mbox = home.join("mbox");
        let marker = dir.0.join("pwned");
        let vusers = dir.write("vusers", "@example.org vmail\n");
        let users = dir.write("users", &format!("vmail 65534:65534:{}\n", home.display()));
        let mda = mda.replace("{mbox}", &mbox.display().to_string());
        let smtpd = Smtpd::start(dir, |port| {
            format!(
                "smtp max-message-size {MAX_SIZE}\n\
                 smtp limit max-rcpt {MAX_RCPT}\n\
                 table vusers file:{}\n\
                 table users file:{}\n\
                 {top}\
                 listen on 127.0.0.1 port {port} hostname mx.test\n\
                 action \"local\" mda \"{mda}\" virtual <vusers> userbase <users>\n\
                 action \"relay\" relay\n\
                 match from any for domain example.org action \"local\"\n\
                 match from local for any action \"relay\"\n\
                 {rules}",
                vusers.display(),
                users.display()
            )
        });
        Self {
            smtpd,
            mbox,
            marker,
        }
    }

    /// A client from outside, after EHLO.
    pub(crate) fn outsider(&self) -> Client {
        let mut c = self.smtpd.connect(OUTSIDER);
        c.expect_code("EHLO client.test", "250");
        c
    }

    /// What [`DELIVER`] has delivered so far.
    pub(crate) fn mbox(&self) -> String {
        std::fs::read_to_string(&self.mbox).unwrap_or_default()
    }
}

/// A raw SMTP client: bytes out exactly as given, whole replies in.
pub(crate) struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The 220 greeting.
    pub(crate) greeting: String,
}

impl Client {
    /// Connects to 127.0.0.1:`port` from `source` (port chosen by the
    /// system) and reads the greeting.
    pub(crate) fn connect(port: u16, source: Ipv4Addr) -> Self {
        let stream = connect_from(source, port);
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
            greeting: String::new(),
        };
        client.greeting = client.reply();
        assert!(client.greeting.starts_with("220 "), "{}", client.greeting);
        client
    }

    /// Writes `bytes` as they are.
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// One whole reply, every line of a multi-line one, CRLFs kept.
    pub(crate) fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(n > 0, "connection closed; so far {reply:?}");
            let line = String::from_utf8(line).unwrap();
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    /// Sends `line` and CRLF; returns the reply.
    pub(crate) fn command(&mut self, line: &str) -> String {
        self.command_bytes(line.as_bytes())
    }

    /// Sends `line` (any bytes) and CRLF; returns the reply.
    pub(crate) fn command_bytes(&mut self, line: &[u8]) -> String {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes);
        self.reply()
    }

    /// Sends `line` and asserts the one-line reply, given without CRLF.
    pub(crate) fn expect(&mut self, line: &str, reply: &str) {
        let got = self.command(line);
        assert_eq!(got, format!("{reply}\r\n"), "after {line:?}");
    }

    /// Sends `line` and asserts the reply's first three characters.
    pub(crate) fn expect_code(&mut self, line: &str, code: &str) -> String {
        let got = self.command(line);
        assert!(got.starts_with(code), "after {line:?}: {got:?}");
        got
    }

    /// DATA, `body` (CRLF lines, dot-stuffed by the caller), the final
    /// dot: the reply to the end of data.
    pub(crate) fn data(&mut self, body: &str) -> String {
        self.expect_code("DATA", "354");
        self.send(body.as_bytes());
        self.command(".")
    }

    /// Whether the server closed the connection (end of file before any
    /// more bytes).
    pub(crate) fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` bound to `source` first (std's
/// `TcpStream` cannot choose its source address).
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket has no memory-safety preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a socket this function owns; from here on the
    // TcpStream closes it, also when an assertion below fails.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let local = sockaddr(source, 0);
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes.
    let rc = unsafe { libc::bind(fd, std::ptr::from_ref(&local).cast(), len) };
    assert_eq!(rc, 0, "bind {source}: {}", std::io::Error::last_os_error());
    let remote = sockaddr(Ipv4Addr::LOCALHOST, port);
    // SAFETY: `remote` is a valid sockaddr_in of `len` bytes.
    let rc = unsafe { libc::connect(fd, std::ptr::from_ref(&remote).cast(), len) };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
    stream
}

/// The message id of a `250 2.0.0 MSGID Message accepted for delivery`.
pub(crate) fn accepted_id(reply: &str) -> String {
    assert!(
        reply.starts_with("250 2.0.0 ") && reply.ends_with(" Message accepted for delivery\r\n"),
        "{reply:?}"
    );
    reply.split_whitespace().nth(2).unwrap().to_owned()
}

/// The fs queue's spool directory.
pub(crate) struct Spool(pub(crate) PathBuf);

/// One envelope file of a committed message, `key: value` per line.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// The message it belongs to.
    pub(crate) msgid: String,
    /// The file's text.
    pub(crate) text: String,
}

impl Envelope {
    /// The value of `key`, if the file has it.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.text.lines().find_map(|line| {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(": "))
        })
    }

    /// Asserts a local delivery by `action` (an mda envelope), never a
    /// relay.
    pub(crate) fn assert_local(&self, action: &str) {
        assert_eq!(self.get("dispatcher"), Some(action), "{}", self.text);
        assert_eq!(self.get("type"), Some("mda"), "{}", self.text);
    }
}

impl Spool {
    /// The committed messages' directories (`queue/BB/MSGID`), sorted.
    pub(crate) fn committed(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(buckets) = std::fs::read_dir(self.0.join("queue")) else {
            return found;
        };
        for bucket in buckets {
            for message in std::fs::read_dir(bucket.unwrap().path()).unwrap() {
                found.push(message.unwrap().path());
            }
        }
        found.sort();
        found
    }

    /// The directory of committed message `msgid`.
    pub(crate) fn message_dir(&self, msgid: &str) -> PathBuf {
        self.committed()
            .into_iter()
            .find(|dir| dir.file_name().is_some_and(|name| name == msgid))
            .unwrap_or_else(|| panic!("message {msgid} is not in the queue"))
    }

    /// The text of committed message `msgid`.
    pub(crate) fn message(&self, msgid: &str) -> String {
        std::fs::read_to_string(self.message_dir(msgid).join("message")).unwrap()
    }

    /// The envelopes of committed message `msgid`, sorted by recipient
    /// (not by text: a delivery attempt may rewrite one at any time).
    pub(crate) fn envelopes(&self, msgid: &str) -> Vec<Envelope> {
        let mut found: Vec<Envelope> = std::fs::read_dir(self.message_dir(msgid))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.file_name().is_some_and(|name| name != "message"))
            .map(|path| Envelope {
                msgid: msgid.to_owned(),
                text: std::fs::read_to_string(path).unwrap(),
            })
            .collect();
        found.sort_by(|a, b| {
            let key = |e: &Envelope| {
                (
                    e.get("rcpt").map(str::to_owned),
                    e.get("dest").map(str::to_owned),
                )
            };
            key(a).cmp(&key(b))
        });
        found
    }

    /// The one envelope of committed message `msgid`.
    pub(crate) fn only_envelope(&self, msgid: &str) -> Envelope {
        let mut envelopes = self.envelopes(msgid);
        assert_eq!(envelopes.len(), 1, "{envelopes:?}");
        envelopes.remove(0)
    }

    /// Every envelope of every committed message.
    pub(crate) fn all_envelopes(&self) -> Vec<Envelope> {
        self.committed()
            .iter()
            .flat_map(|dir| {
                let msgid = dir.file_name().unwrap().to_string_lossy().into_owned();
                self.envelopes(&msgid)
            })
            .collect()
    }
}

/// A self-signed certificate for `name` and its key, written to
/// `DIR/NAME.crt` and `DIR/NAME.key`.
pub(crate) fn self_signed(dir: &Scratch, name: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let crt = dir.write(&format!("{name}.crt"), &cert.pem());
    let pem = dir.write(&format!("{name}.key"), &key.serialize_pem());
    (crt, pem)
}

/// The hash `smtpctl encrypt PASSWORD` prints, as an administrator makes
/// a `credentials` table with it.
pub(crate) fn smtpctl_encrypt(password: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_smtpctl"))
        .args(["-s", "/nonexistent/smtpd.sock", "encrypt", password])
        .stdin(Stdio::null())
        .output()
        .expect("smtpctl runs");
    assert!(out.status.success(), "{out:?}");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with('$'), "{hash}");
    hash
}

/// Runs `python3 -c SCRIPT` (python3 from `PATH`); its standard output,
/// after asserting that it succeeded.
pub(crate) fn python(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("python3 is on PATH");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3 failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The error given when swaks cannot be run: the tests that need it fail
/// rather than skip.
const SWAKS_MISSING: &str = "swaks is missing: these tests need the real swaks client \
     (Debian package `swaks`: `apt-get install -y swaks`, as .ci/run does)";

/// Runs swaks with `args` against 127.0.0.1:`port`, without reading any
/// configuration file; its output (standard output and error), exit code.
pub(crate) fn swaks(port: u16, args: &[&str]) -> (String, Option<i32>) {
    let out: Output = match Command::new("swaks")
        .arg("--server")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--timeout", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("{SWAKS_MISSING}"),
        Err(e) => panic!("swaks cannot run: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.code())
}

/// Whether `path` exists, for marker files that must never appear.
pub(crate) fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
