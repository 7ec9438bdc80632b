//! The conformance runner (`smtpd-conformance filter`) against the built
//! `filter-passthrough`: handshake, data-line vectors, the stress pass.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (two levels above this crate).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn conformance_passes() {
    let exe = env!("CARGO_BIN_EXE_filter-passthrough");
    let runner = smtpd_conformance::locate::runner_next_to(Path::new(exe));
    let out = Command::new(runner)
        .args(["filter", "--", exe])
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
