//! The `smtpd` binary's configuration check, run as a user would: every
//! sample in `examples/` must pass `smtpd -n`, a bad file must fail with
//! `file:line:column` errors, and the other flags behave as OpenSMTPD's.
//! The running daemon is tested in `control.rs`.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn smtpd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtpd"))
        .args(args)
        .output()
        .expect("the smtpd binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A scratch directory for one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("smtpd-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_example_passes_the_check() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        let out = smtpd(&["-n", "-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}:\n{}",
            path.display(),
            stderr(&out)
        );
        assert_eq!(stderr(&out), "configuration OK\n", "{}", path.display());
        checked.push(path.file_name().unwrap().to_owned());
    }
    assert!(checked.iter().any(|n| n == "smtpd.conf"), "{checked:?}");
    assert!(checked.len() >= 4, "{checked:?}");
}

#[test]
fn a_bad_file_fails_with_located_errors() {
    let dir = Scratch::new("bad");
    let path = dir.write(
        "bad.conf",
        "listen on 127.0.0.1 port 2525 prot 25\n\
         action \"local\" maildir alias <missing>\n\
         match from any for any action \"local\"\n",
    );
    let file = path.to_str().unwrap();
    let out = smtpd(&["-n", "-f", file]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0],
        format!("{file}:1:31: syntax error: unexpected `prot`")
    );
    assert_eq!(lines[1], "  listen on 127.0.0.1 port 2525 prot 25");
    assert_eq!(lines[2], "                                ^~~~");
    assert!(
        lines[3].starts_with("  expected: a listener option"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:2:31: no table named \"missing\"")),
        "{err}"
    );
    assert!(err.ends_with("2 errors in the configuration\n"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn command_line_macros_override_the_file_and_unused_ones_warn_with_v() {
    let dir = Scratch::new("macros");
    let path = dir.write(
        "m.conf",
        "p = \"25\"\nlisten on 127.0.0.1 port $p\naction \"a\" mbox\nmatch action \"a\"\n",
    );
    let file = path.to_str().unwrap();
    let out = smtpd(&["-n", "-f", file, "-D", "p=0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("{file}:2:26: invalid port: 0")),
        "{}",
        stderr(&out)
    );
    let out = smtpd(&["-n", "-v", "-f", file, "-D", "p=2525", "-D", "spare=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("warning: macro 'spare' not used"), "{err}");
    assert!(err.ends_with("configuration OK\n"), "{err}");
    let out = smtpd(&["-n", "-f", file, "-D", "novalue"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses a bad -D");
}

#[test]
fn without_n_a_bad_configuration_stops_the_daemon_before_it_starts_anything() {
    let dir = Scratch::new("serve-bad");
    let path = dir.write(
        "bad.conf",
        "table t { a }\nmatch from any for any action \"nowhere\"\n",
    );
    let data = dir.0.join("data");
    let socket = dir.0.join("smtpd.sock");
    for debug in [&[][..], &["-d"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_smtpd"))
            .args(debug)
            .arg("-f")
            .arg(&path)
            .arg("--data-dir")
            .arg(&data)
            .arg("--control-socket")
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:2:", path.display())) && err.contains("nowhere"),
            "{err}"
        );
        assert!(!data.exists() && !socket.exists(), "nothing was created");
    }
    let out = smtpd(&["-d", "-f", "/nonexistent/smtpd.conf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("/nonexistent/smtpd.conf: cannot read the configuration"));
}
