//! The conformance runner (`smtpd-conformance table --fixture
//! standard.table`) against the built `table-sqlite`, with the standard
//! fixture loaded into a database made here: every case must pass. Also
//! checks that a configuration error stops the backend before it registers,
//! with the file and line on stderr.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use smtpd_sdk::tablefile::TableFile;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The runner binary, next to this crate's binary.
fn runner() -> PathBuf {
    smtpd_conformance::locate::runner_next_to(Path::new(env!("CARGO_BIN_EXE_table-sqlite")))
}

/// The fixture in one table `kv(k, v)`, in file order (rowid), and a
/// configuration whose queries serve every service from it (credentials and
/// userinfo queries returning the whole value in one column).
fn fixture_config(dir: &Path) -> PathBuf {
    let fixture = workspace().join("protocol-spec/vectors/fixtures/standard.table");
    let table = TableFile::parse(&std::fs::read(fixture).expect("fixture")).expect("parse");
    let db = dir.join("fixture.sqlite");
    let mut conn = rusqlite::Connection::open(&db).expect("create the database");
    let tx = conn.transaction().expect("transaction");
    tx.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)", [])
        .expect("schema");
    for entry in table.entries() {
        let value = entry.value.clone().unwrap_or_else(|| entry.key.clone());
        tx.execute(
            "INSERT INTO kv (k, v) VALUES (?1, ?2)",
            [&entry.key, &value],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    let one = "SELECT v FROM kv WHERE k = ?";
    let config = format!(
        "# the standard fixture\n\
         dbpath {db}\n\
         query_alias {one}\n\
         query_domain {one}\n\
         query_credentials {one}\n\
         query_netaddr {one}\n\
         query_userinfo {one}\n\
         query_source {one}\n\
         query_mailaddr {one}\n\
         query_addrname {one}\n\
         query_mailaddrmap {one}\n\
         query_relayhost {one}\n\
         query_string {one}\n\
         query_regex {one}\n\
         query_auth {one}\n\
         fetch_source SELECT v FROM kv ORDER BY rowid\n\
         fetch_relayhost SELECT v FROM kv ORDER BY rowid\n",
        db = db.display()
    );
    let path = dir.join("sqlite.conf");
    std::fs::write(&path, config).expect("write the configuration");
    path
}

#[test]
fn standard_fixture_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path());
    let out = Command::new(runner())
        .args(["table", "--fixture", "standard.table", "--"])
        .arg(env!("CARGO_BIN_EXE_table-sqlite"))
        .arg(&config)
        .current_dir(workspace().join("protocol-spec"))
        .output()
        .expect("running smtpd-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "conformance failed:\n{stdout}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn config_errors_stop_it_before_it_registers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = fixture_config(dir.path());
    let text = std::fs::read_to_string(&config).expect("read");
    let broken = text.replace(
        "query_domain SELECT v FROM kv WHERE k = ?",
        "query_domain SELECT k, v FROM kv WHERE k = ?",
    );
    std::fs::write(&config, broken).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_table-sqlite"))
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("running table-sqlite");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing registered");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:4: query_domain: the query returns 2 columns, 1 expected",
        config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
