//! A throwaway OpenLDAP server for tests: `slapd` with a generated
//! `slapd.conf` (mdb backend, the core, cosine, inetorgperson, nis and misc
//! (`nisMailAlias`) schemas of /etc/ldap/schema) in a temporary directory, listening on
//! `ldap://127.0.0.1:PORT/` only, suffix `dc=example,dc=org`, root DN
//! `cn=admin,dc=example,dc=org` / `secret`. Seeded with `ldapadd`; stopped
//! (and restarted) on demand; killed when dropped. Its log (`-d stats`:
//! one `SRCH ... filter="..."` line per search) is kept in `slapd.log`.
//! As root, slapd runs as the `openldap` user.

#![allow(dead_code, clippy::disallowed_methods)]

use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The directory's suffix.
pub(crate) const SUFFIX: &str = "dc=example,dc=org";
/// The root DN.
pub(crate) const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
/// The root DN's password.
pub(crate) const ROOT_PW: &str = "secret";

/// A running (or stopped) slapd.
pub(crate) struct Slapd {
    dir: PathBuf,
    port: u16,
    /// The ldaps:// port, when started with TLS.
    tls_port: Option<u16>,
    /// slapd's `-d` level at the next start.
    debug_level: &'static str,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

impl Slapd {
    /// Starts a server with an empty directory holding only the suffix.
    pub(crate) fn start() -> Self {
        Self::launch(false)
    }

    /// Starts a server that also speaks TLS: StartTLS on its ldap:// port
    /// and ldaps:// on another, with a self-signed certificate for
    /// 127.0.0.1 (its PEM is [`Slapd::ca_file`]).
    pub(crate) fn start_tls() -> Self {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "slapd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).expect("temp dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let db = dir.join("db");
        fs::create_dir(&db).expect("db dir");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             include /etc/ldap/schema/misc.schema\n\
             pidfile {dir}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             sizelimit unlimited\n\
             database mdb\n\
             maxsize 104857600\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ROOT_DN}\"\n\
             rootpw {ROOT_PW}\n\
             directory {db}\n\
             index objectClass eq\n",
            dir = dir.display(),
            db = db.display(),
        );
        let conf = if tls {
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem"))
                .output()
                .expect("run openssl");
            assert!(out.status.success(), "openssl: {out:?}");
            format!(
                "TLSCertificateFile {d}/cert.pem\nTLSCertificateKeyFile {d}/key.pem\n{conf}",
                d = dir.display()
            )
        } else {
            conf
        };
        fs::write(dir.join("slapd.conf"), conf).expect("slapd.conf");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "openldap:openldap"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown to openldap failed");
        }
        let mut slapd = Self {
            dir,
            port: free_port(),
            tls_port: tls.then(free_port),
            debug_level: "stats",
            child: None,
        };
        slapd.resume();
        slapd.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
        ));
        slapd
    }

    /// `ldap://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`, when started with TLS.
    pub(crate) fn ldaps_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("ldaps://127.0.0.1:{p}"))
    }

    /// The server certificate (self-signed), when started with TLS.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The temporary directory (world-readable).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of the server.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("slapd.log")
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the server (again) on the same port and data, and waits until
    /// it accepts connections.
    pub(crate) fn resume(&mut self) {
        assert!(self.child.is_none(), "slapd already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = Command::new("/usr/sbin/slapd");
        cmd.arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .arg("-h")
            .arg(match self.tls_port {
                Some(tls) => format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{tls}/", self.port),
                None => format!("ldap://127.0.0.1:{}/", self.port),
            })
            .args(["-d", self.debug_level]);
        if is_root() {
            cmd.args(["-u", "openldap", "-g", "openldap"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/slapd (apt-get install slapd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("slapd exited with {status}:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets slapd's `-d` level for the next [`Slapd::resume`]: `stats`
    /// (the default, which [`Slapd::log`] relies on) or `0` (nothing
    /// logged, for benchmarks).
    pub(crate) fn set_debug_level(&mut self, level: &'static str) {
        self.debug_level = level;
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (SIGKILL: it goes away without a goodbye).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Adds the entries of `ldif` with ldapadd, as the root DN.
    pub(crate) fn add(&self, ldif: &str) {
        let path = self.dir.join("seed.ldif");
        fs::write(&path, ldif).expect("seed.ldif");
        let out = Command::new("ldapadd")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW, "-f"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run ldapadd (apt-get install ldap-utils)");
        assert!(
            out.status.success(),
            "ldapadd failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes a table-ldap configuration into the temp dir (world-readable)
    /// and returns its path: url, bind, basedn, then `body`.
    pub(crate) fn config(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.join(name);
        let mut file = File::create(&path).expect("config file");
        write!(
            file,
            "url {}\nusername {ROOT_DN}\npassword {ROOT_PW}\nbasedn {SUFFIX}\n{body}",
            self.url()
        )
        .expect("write config");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        path
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// LDIF's `attr: value`, base64 (`attr:: ...`) when the value is not safe.
pub(crate) fn ldif_line(attr: &str, value: &str) -> String {
    let safe = value.is_ascii()
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ')
        && !value.contains(['\n', '\r', '\0']);
    if safe {
        format!("{attr}: {value}\n")
    } else {
        format!("{attr}:: {}\n", base64(value.as_bytes()))
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
