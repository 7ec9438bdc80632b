//! Tests of the configuration module, by subject:
//!
//! - `grammar.rs`: every directive and option, table-driven, with what each
//!   becomes in the [`Config`];
//! - `lexical.rs`: macros, `-D`, includes, continuations, comments, quotes;
//! - `invalid.rs`: invalid configurations and the exact error each gives;
//! - `samples.rs`: whole configurations in OpenSMTPD's style.

mod grammar;
mod invalid;
mod lexical;
mod robustness;
mod samples;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Config, Diagnostic, Error, LoadOptions, Loaded};

/// The action and rule every snippet needs (there must be a rule).
const PRELUDE: &str = "action \"a\" mbox\n";
const CLOSING: &str = "\nmatch from any action \"a\"\n";

/// Loads `snippet` between [`PRELUDE`] and a closing rule, or panics with
/// the errors.
fn load_snippet(snippet: &str, opts: &LoadOptions) -> Config {
    let text = format!("{PRELUDE}{snippet}{CLOSING}");
    match Config::parse_str("smtpd.conf", &text, opts) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{snippet:?} should load:\n{e}"),
    }
}

/// Loads a whole configuration text, or panics with the errors.
fn load(text: &str) -> Loaded {
    load_with(text, &LoadOptions::default())
}

fn load_with(text: &str, opts: &LoadOptions) -> Loaded {
    Config::parse_str("smtpd.conf", text, opts).unwrap_or_else(|e| panic!("should load:\n{e}"))
}

/// The error headlines (`file:line:col: message`) of a text that must fail.
fn headlines(text: &str, opts: &LoadOptions) -> Vec<String> {
    let err = failure(text, opts);
    err.errors().map(Diagnostic::headline).collect()
}

fn failure(text: &str, opts: &LoadOptions) -> Error {
    match Config::parse_str("smtpd.conf", text, opts) {
        Ok(_) => panic!("{text:?} should not load"),
        Err(e) => e,
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("smtpd-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file and returns its path.
    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
