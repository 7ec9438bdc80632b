//! `smtpctl encrypt`, run as an administrator runs it to fill a
//! `credentials` table: no daemon, a bcrypt hash of the argument or of each
//! line of standard input, each hash accepted by the server's own check.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use smtpd::smtp::credentials::check_password;

/// smtpctl with `words`, `input` on its standard input, and a control
/// socket that does not exist (no daemon is needed).
fn smtpctl(words: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtpctl"))
        .arg("-s")
        .arg("/nonexistent/smtpd.sock")
        .args(words)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the smtpctl binary runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn hashes(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines().map(str::to_owned).collect()
}

#[test]
fn the_argument_is_hashed() {
    for words in [&["encrypt", "s3cret pass"][..], &["enc", "s3cret pass"]] {
        let printed = hashes(&smtpctl(words, b"ignored\n"));
        assert_eq!(printed.len(), 1, "{printed:?}");
        let hash = &printed[0];
        assert!(hash.starts_with("$2b$10$") && hash.len() == 60, "{hash}");
        assert_eq!(check_password(hash, b"s3cret pass"), Ok(true));
        assert_eq!(check_password(hash, b"s3cret"), Ok(false));
        // As a `user:hash` table value too.
        assert_eq!(
            check_password(&format!("alice:{hash}"), b"s3cret pass"),
            Ok(true)
        );
    }
}

#[test]
fn each_line_of_standard_input_is_hashed() {
    let input: &[u8] = b"alpha\nbeta gamma\n\n\xc3\xa9t\xc3\xa9 \xff\nlast without newline";
    let passwords: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let printed = hashes(&smtpctl(&["encrypt"], input));
    assert_eq!(printed.len(), passwords.len(), "{printed:?}");
    for (hash, password) in printed.iter().zip(&passwords) {
        assert_eq!(check_password(hash, password), Ok(true), "{password:?}");
        assert_eq!(check_password(hash, b"alpha\n"), Ok(false));
    }
    assert!(hashes(&smtpctl(&["encrypt"], b"")).is_empty());
}

#[test]
fn extra_words_are_an_invalid_command() {
    let out = smtpctl(&["encrypt", "one", "two"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "invalid command\n");
    assert!(out.stdout.is_empty());
}
