//! Where the kit's files are, for the tests of backend crates that run
//! the `smtpd-conformance` binary against their own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The standard table fixture (`vectors/fixtures/standard.table`).
pub fn standard_table() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors/fixtures/standard.table")
}

/// The `smtpd-conformance` binary in the directory of `binary` (a
/// backend built in the same target directory and profile), built with
/// cargo first when it is missing (`cargo test --workspace` has built it
/// already).
///
/// # Panics
///
/// When cargo cannot build it: a test that needs the runner cannot go on.
pub fn runner_next_to(binary: &Path) -> PathBuf {
    let dir = binary.parent().unwrap_or_else(|| Path::new("."));
    let runner = dir.join("smtpd-conformance");
    if !runner.exists() {
        // Building the runner is what a test harness does here.
        #[allow(clippy::disallowed_methods)]
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args([
            "build",
            "-p",
            "smtpd-conformance",
            "--bin",
            "smtpd-conformance",
        ]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let built = cargo
            .current_dir(workspace())
            .status()
            .is_ok_and(|s| s.success());
        assert!(built, "cargo build -p smtpd-conformance failed");
    }
    runner
}
