//! `queue compression` and `queue encryption` end to end on the fs queue:
//! compression alone, encryption alone (key from a key file), both (key
//! from the environment), then a damaged message moved aside and a
//! restart with another key refused. The cases themselves are in
//! `queue_layers/cases.rs`, written for any queue store.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// Tests: a failed unwrap is a failed test (the shared harness unwraps).
#![allow(clippy::unwrap_used)]

#[path = "queue_layers/cases.rs"]
mod cases;
mod common;

use cases::{FsStore, KeyFrom, Layers};
use common::Scratch;

const COMPRESS: Layers = Layers {
    compress: true,
    encrypt: None,
};

#[test]
fn compression_alone() {
    let dir = Scratch::new("layers", "compress");
    cases::round_trip(&dir, &FsStore::new(&dir), COMPRESS);
}

#[test]
fn encryption_alone_with_a_key_file() {
    let dir = Scratch::new("layers", "encrypt");
    let layers = Layers {
        compress: false,
        encrypt: Some(KeyFrom::File),
    };
    cases::round_trip(&dir, &FsStore::new(&dir), layers);
}

#[test]
fn compression_and_encryption_with_the_key_from_the_environment() {
    let dir = Scratch::new("layers", "both");
    let layers = Layers {
        compress: true,
        encrypt: Some(KeyFrom::Env),
    };
    cases::round_trip(&dir, &FsStore::new(&dir), layers);
}

#[test]
fn a_damaged_message_is_moved_aside_and_not_delivered() {
    for (name, layers) in [
        ("tamper-compress", COMPRESS),
        (
            "tamper-both",
            Layers {
                compress: true,
                encrypt: Some(KeyFrom::Config),
            },
        ),
    ] {
        let dir = Scratch::new("layers", name);
        cases::tampered(&dir, &FsStore::new(&dir), layers);
    }
}

#[test]
fn another_key_on_standard_input_refuses_to_start() {
    let dir = Scratch::new("layers", "other-key");
    let layers = Layers {
        compress: false,
        encrypt: Some(KeyFrom::Stdin),
    };
    cases::other_key(&dir, &FsStore::new(&dir), layers);
}

#[test]
fn a_key_file_others_may_read_or_a_short_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("layers", "key-file");
    let conf = dir.write(
        "smtpd.conf",
        "queue encryption\n\
         listen on 127.0.0.1 port 2599\n\
         action \"deliver\" maildir\n\
         match from any for any action \"deliver\"\n",
    );
    let key = dir.write("queue.key", &format!("{}\n", cases::KEY));
    let run = |env: Option<&str>| {
        let mut cmd = common::smtpd_command(&dir, &conf);
        cmd.arg("--queue-key-file")
            .arg(&key)
            .env_remove(cases::KEY_ENV);
        if let Some(value) = env {
            cmd.env(cases::KEY_ENV, value);
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .expect("smtpd runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Written world-readable by Scratch::write.
    let (code, err) = run(None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("queue.key") && err.contains("0644"), "{err}");
    std::fs::write(&key, "too short\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = run(Some(cases::KEY));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("exactly 32 bytes") && err.contains("not 9"),
        "{err}"
    );
}
