//! table-ldap against a slapd that goes away, freezes and comes back, with
//! many requests in flight, and with keys that try to inject filter syntax.
//! The backend is driven over its stdin/stdout as the daemon drives it.

#![allow(clippy::disallowed_methods)]

mod slapd;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const SEED: &str = "\
dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
mail: alice@example.org

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
mail: bob@example.org
";

/// A table-ldap process and its answers, by request id.
struct Backend {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u32,
}

impl Backend {
    fn start(config: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_table-ldap"))
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start table-ldap");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        stdin
            .write_all(
                b"config|smtpd-version|0.1.0\nconfig|protocol|0.1\nconfig|tablename|users\nconfig|ready\n",
            )
            .expect("handshake");
        let backend = Self {
            child,
            stdin,
            lines,
            next_id: 0,
        };
        loop {
            let line = backend.line(Duration::from_secs(10)).expect("registration");
            if line == "register|ready" {
                break;
            }
            assert!(line.starts_with("register|"), "{line}");
        }
        backend
    }

    fn line(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Sends lookups of `keys` in `service` at once; returns their ids.
    fn send(&mut self, service: &str, keys: &[&str]) -> Vec<String> {
        let mut ids = Vec::new();
        let mut batch = String::new();
        for key in keys {
            self.next_id += 1;
            let id = format!("{:08x}", self.next_id);
            batch.push_str(&format!(
                "table|0.1|1731000000.000000|users|lookup|{service}|{id}|{key}\n"
            ));
            ids.push(id);
        }
        self.stdin.write_all(batch.as_bytes()).expect("send");
        self.stdin.flush().expect("flush");
        ids
    }

    /// The results (`found|VALUE`, `not-found`, `error|...`) of `ids`.
    fn answers(&self, ids: &[String], wait: Duration) -> HashMap<String, String> {
        let deadline = Instant::now() + wait;
        let mut got = HashMap::new();
        while got.len() < ids.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .line(left)
                .unwrap_or_else(|| panic!("only {} of {} answers", got.len(), ids.len()));
            let mut fields = line.splitn(3, '|');
            assert_eq!(fields.next(), Some("lookup-result"), "{line}");
            let id = fields.next().expect("id").to_owned();
            assert!(ids.contains(&id), "unexpected answer {line}");
            got.insert(id, fields.next().expect("result").to_owned());
        }
        got
    }

    /// One `fetch` of `service`: its result (`found|VALUE`, ...).
    fn fetch(&mut self, service: &str, wait: Duration) -> String {
        self.next_id += 1;
        let id = format!("{:08x}", self.next_id);
        let line = format!("table|0.1|1731000000.000000|users|fetch|{service}|{id}\n");
        self.stdin.write_all(line.as_bytes()).expect("send");
        self.stdin.flush().expect("flush");
        let answer = self.line(wait).expect("fetch answer");
        let prefix = format!("fetch-result|{id}|");
        answer
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{answer}"))
            .to_owned()
    }

    fn lookup(&mut self, service: &str, key: &str, wait: Duration) -> String {
        let ids = self.send(service, &[key]);
        self.answers(&ids, wait).remove(&ids[0]).expect("answer")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(slapd_pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid of our own child.
    let rc = unsafe { libc::kill(slapd_pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({slapd_pid}, {sig})");
}

#[test]
fn restart_freeze_concurrency_and_injection() {
    let mut slapd = slapd::Slapd::start();
    slapd.add(SEED);
    let config = slapd.config(
        "users.conf",
        "timeout 2\n\
         alias_filter (&(objectClass=inetOrgPerson)(uid=%u))\n\
         alias_attributes mail\n\
         mailaddr_filter (&(objectClass=inetOrgPerson)(mail=%s))\n\
         mailaddr_attributes uid\n",
    );
    let mut backend = Backend::start(&config);
    let quick = Duration::from_secs(10);

    // Answers, and many requests in flight at once on one connection.
    assert_eq!(
        backend.lookup("alias", "alice", quick),
        "found|alice@example.org"
    );
    let keys: Vec<&str> = (0..300)
        .map(|i| ["alice", "bob", "nobody"][i % 3])
        .collect();
    let ids = backend.send("alias", &keys);
    let answers = backend.answers(&ids, quick);
    for (id, key) in ids.iter().zip(&keys) {
        let want = match *key {
            "alice" => "found|alice@example.org",
            "bob" => "found|bob@example.org",
            _ => "not-found",
        };
        assert_eq!(answers[id], want, "{key}");
    }

    // Filter injection: the key is one escaped value, it matches nothing.
    for key in [
        "*",
        "*)(uid=*",
        "alice)(|(uid=*)",
        "x)(objectClass=*",
        "\\2a",
    ] {
        assert_eq!(backend.lookup("alias", key, quick), "not-found", "{key}");
    }
    assert_eq!(
        backend.lookup("mailaddr", "*)(uid=*@example.org", quick),
        "not-found"
    );
    let log = slapd.log();
    assert!(
        log.contains(r#"filter="(&(objectClass=inetOrgPerson)(uid=\2A)(uid=\2A))""#)
            || log.contains(r#"filter="(&(objectClass=inetOrgPerson)(uid=\2A\29\28uid=\2A))""#),
        "slapd did not log the escaped filter:\n{}",
        log.lines()
            .filter(|l| l.contains("filter="))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The server goes away: errors (temporary failures), never not-found.
    slapd.stop();
    let started = Instant::now();
    for _ in 0..3 {
        let got = backend.lookup("alias", "alice", quick);
        assert!(got.starts_with("error|"), "while down: {got}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "errors while down took {:?}",
        started.elapsed()
    );

    // It comes back: the backend reconnects by itself.
    slapd.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = backend.lookup("alias", "bob", quick);
        if got == "found|bob@example.org" {
            break;
        }
        assert!(got.starts_with("error|"), "after restart: {got}");
        assert!(Instant::now() < deadline, "no answer after the restart");
        thread::sleep(Duration::from_millis(100));
    }

    // A frozen server: the query deadline (timeout 2) answers error.
    let pid = slapd.pid().expect("running");
    signal(pid, libc::SIGSTOP);
    let started = Instant::now();
    let got = backend.lookup("alias", "alice", quick);
    let waited = started.elapsed();
    signal(pid, libc::SIGCONT);
    assert!(got.starts_with("error|"), "frozen: {got}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "the deadline took {waited:?}"
    );
    // And then it answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = backend.lookup("alias", "alice", quick);
        if got == "found|alice@example.org" {
            break;
        }
        assert!(got.starts_with("error|"), "after thaw: {got}");
        assert!(Instant::now() < deadline, "no answer after the thaw");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fetch_cycles_through_what_the_filter_lists() {
    let slapd = slapd::Slapd::start();
    slapd.add(SEED);
    let config = slapd.config(
        "sources.conf",
        "source_filter (&(objectClass=inetOrgPerson)(mail=%u))\n\
         source_attributes mail\n",
    );
    let mut backend = Backend::start(&config);
    let quick = Duration::from_secs(10);
    // Sorted, round and round; the filter's key is a presence match here,
    // never a client's text.
    for want in [
        "found|alice@example.org",
        "found|bob@example.org",
        "found|alice@example.org",
        "found|bob@example.org",
    ] {
        assert_eq!(backend.fetch("source", quick), want);
    }
    assert!(
        slapd
            .log()
            .contains(r#"filter="(&(objectClass=inetOrgPerson)(mail=*))""#),
        "the listing search"
    );
    // Only the services the daemon fetches are served.
    assert!(backend.fetch("alias", quick).starts_with("error"));
}
