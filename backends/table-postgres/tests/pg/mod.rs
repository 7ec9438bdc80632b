//! A real PostgreSQL 15 server for tests: `initdb` and `pg_ctl` from
//! /usr/lib/postgresql/15/bin in a temporary directory, listening on a free
//! port of 127.0.0.1 only (its socket in that directory), trust
//! authentication for the `postgres` role. Both programs refuse to run as
//! root, so as root they run as the `postgres` user (`runuser -u postgres
//! --`) and the directory is theirs. [`PgServer`] is a guard: dropping it
//! (at the end of the test or during a panic) stops the server with
//! `pg_ctl stop -m immediate` and removes the directory.
//!
//! [`load_fixture`] and [`fixture_config`] serve the standard fixture.
//! Used by the table-postgres tests and benchmark and, through `#[path]`,
//! by the daemon's `tests/backend_postgres.rs`: std and `smtpd_sdk` only.

// A test harness: running the PostgreSQL programs is its whole point, and
// a failed unwrap is a failed test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where Debian's postgresql-15 puts its programs.
pub(crate) const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running server (or one stopped by [`PgServer::stop`]).
pub(crate) struct PgServer {
    /// The temporary directory: `data/`, `sock/`, `log`.
    pub(crate) dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub(crate) port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `program args`, as the `postgres` user when root.
fn as_postgres(program: &str, args: &[&str]) -> Command {
    let program = Path::new(BIN).join(program);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program).args(args);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    }
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PgServer {
    /// Makes a cluster in `TMPDIR/table-postgres-NAME-PID` and starts it.
    pub(crate) fn start(name: &str) -> Self {
        assert!(
            Path::new(BIN).join("initdb").exists(),
            "PostgreSQL 15 is missing: these tests need {BIN}/initdb \
             (Debian package postgresql-15, installed by .ci/run)"
        );
        let dir =
            std::env::temp_dir().join(format!("table-postgres-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        for d in [dir.as_path(), &dir.join("sock")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&dir);
                    c
                },
                "chown",
            );
        }
        let server = Self {
            dir,
            port: free_port(),
        };
        let data = server.data();
        run(
            as_postgres(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            ),
            "initdb",
        );
        server.start_again();
        server
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Starts the (stopped) server again, on the same port, and waits until
    /// it accepts connections.
    pub(crate) fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.join("sock").display()
        );
        let log = self.dir.join("log").display().to_string();
        run(
            as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    &self.data(),
                    "-l",
                    &log,
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ),
            "pg_ctl start",
        );
    }

    /// Stops the server at once (`-m immediate`: connections are cut, as
    /// in a crash).
    pub(crate) fn stop(&self) {
        run(
            as_postgres(
                "pg_ctl",
                &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
            ),
            "pg_ctl stop",
        );
    }

    /// A libpq connection string for the `postgres` database.
    pub(crate) fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Runs `sql` with psql (stopping at the first error); its output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        let mut child = Command::new(Path::new(BIN).join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "psql failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
        if std::thread::panicking() {
            eprintln!("--- postgres log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SQL text `text` as a dollar-quoted literal.
pub(crate) fn literal(text: &str) -> String {
    assert!(!text.contains("$v$"), "{text}");
    format!("$v${text}$v$")
}

/// Loads the standard fixture of `workspace` (protocol-spec/vectors/
/// fixtures/standard.table) into `fixture(pos, key, value)`, in file
/// order.
pub(crate) fn load_fixture(pg: &PgServer, workspace: &Path) {
    let path = workspace.join("protocol-spec/vectors/fixtures/standard.table");
    let data = std::fs::read(path).unwrap();
    let table = smtpd_sdk::tablefile::TableFile::parse(&data).unwrap();
    let mut sql = String::from(
        "DROP TABLE IF EXISTS fixture;\n\
         CREATE TABLE fixture (pos serial PRIMARY KEY, key text NOT NULL, value text NOT NULL);\n",
    );
    for entry in table.entries() {
        let value = entry.value.clone().unwrap_or_else(|| entry.key.clone());
        sql.push_str(&format!(
            "INSERT INTO fixture (key, value) VALUES ({}, {});\n",
            literal(&entry.key),
            literal(&value)
        ));
    }
    sql.push_str("CREATE INDEX ON fixture (key);\n");
    pg.psql(&sql);
}

/// A table-postgres configuration serving the loaded fixture for every
/// service, each value as it is (the one-column form of `credentials` and
/// `userinfo`), `fetch` cycling in file order.
pub(crate) fn fixture_config(pg: &PgServer) -> String {
    let mut text = format!("# the standard fixture\nconninfo {}\n", pg.conninfo());
    for service in [
        "alias",
        "domain",
        "credentials",
        "netaddr",
        "userinfo",
        "source",
        "mailaddr",
        "addrname",
        "mailaddrmap",
        "relayhost",
        "string",
        "regex",
    ] {
        text.push_str(&format!(
            "query_{service} SELECT value FROM fixture WHERE key = $1\n"
        ));
    }
    text.push_str(
        "query_auth: SELECT value FROM fixture WHERE key = $1\n\
         fetch_source SELECT value FROM fixture ORDER BY pos\n\
         fetch_relayhost SELECT value FROM fixture ORDER BY pos\n\
         connections 3\n",
    );
    text
}
