//! The command line: `--help`, `-f FILE`, and configuration errors
//! reported as `FILE:LINE: message` before anything is registered.

#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_table-ldap"))
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("table-ldap-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn help_and_usage() {
    let out = bin().arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("usage: table-ldap [-f] FILE"), "{text}");

    let out = bin().output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}

#[test]
fn config_errors_name_file_and_line_before_registering() {
    let path = temp_config(
        "bad.conf",
        "url ldap://127.0.0.1:1\nbasedn dc=example,dc=org\nalias_filter (mail=%x)\nalias_attributes mail\n",
    );
    for args in [
        vec![path.to_str().expect("utf-8")],
        vec!["-f", path.to_str().expect("utf-8")],
    ] {
        let mut child = bin()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        // The daemon's handshake, which must not be answered.
        let _ = child.stdin.take().expect("stdin").write_all(
            b"config|smtpd-version|0.1.0\nconfig|protocol|0.1\nconfig|tablename|t\nconfig|ready\n",
        );
        let out = child.wait_with_output().expect("wait");
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "registered: {:?}", out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "{}:3: alias_filter: unknown placeholder %x",
                path.display()
            )),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn registers_the_configured_services_without_connecting() {
    // Nothing listens on port 1: registration does not need the directory,
    // and a lookup then answers error (a temporary failure).
    let path = temp_config(
        "good.conf",
        "url ldap://127.0.0.1:1\nbasedn dc=example,dc=org\ntimeout 2\n\
         domain_filter (dc=%u)\ndomain_attributes dc\n\
         mailaddrmap_filter (uid=%u)\nmailaddrmap_attributes mail\n",
    );
    let mut child = bin()
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"config|smtpd-version|0.1.0\nconfig|protocol|0.1\nconfig|tablename|t\nconfig|ready\n\
              table|0.1|1731000000.000000|t|lookup|domain|00000001|example.org\n\
              table|0.1|1731000000.000000|t|fetch|domain|00000002\n\
              table|0.1|1731000000.000000|t|update|00000003\n",
        )
        .expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        &lines[..3],
        ["register|domain", "register|mailaddrmap", "register|ready"]
    );
    let mut answers: Vec<&str> = lines[3..].to_vec();
    answers.sort_unstable();
    assert_eq!(answers.len(), 3, "{stdout}");
    assert!(
        answers[0].starts_with("fetch-result|00000002|error|"),
        "{stdout}"
    );
    assert!(
        answers[1].starts_with("lookup-result|00000001|error|"),
        "{stdout}"
    );
    assert_eq!(answers[2], "update-result|00000003|ok");
    let _ = std::fs::remove_file(&path);
}
