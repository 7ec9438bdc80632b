//! The conformance runner (`smtpd-conformance table --fixture
//! standard.table`) against the built `table-static` loaded with the
//! standard fixture: every case must pass.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (two levels above this crate).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The runner binary, next to this crate's binary.
fn runner() -> PathBuf {
    smtpd_conformance::locate::runner_next_to(Path::new(env!("CARGO_BIN_EXE_table-static")))
}

#[test]
fn standard_fixture_passes() {
    let fixture = workspace().join("protocol-spec/vectors/fixtures/standard.table");
    let out = Command::new(runner())
        .args(["table", "--fixture", "standard.table", "--"])
        .arg(env!("CARGO_BIN_EXE_table-static"))
        .arg(&fixture)
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
