//! The report: one line per check as it completes, then the summary.
//!
//! Lines are `PASS NAME[: detail]`, `FAIL NAME: what went wrong` followed
//! by indented details (expected and received lines, the backend's last
//! stderr lines), and `SKIP NAME: reason`. Protocol lines are shown through
//! [`show`], which keeps them on one line and bounded.

use std::io::Write;

/// A failed check: one summary line and any number of detail lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) summary: String,
    pub(crate) details: Vec<String>,
}

impl Failure {
    pub(crate) fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    /// Adds the backend's last stderr lines, if it wrote any.
    pub(crate) fn with_stderr(mut self, stderr: &[String]) -> Self {
        if !stderr.is_empty() {
            self.details.push(format!(
                "stderr of the backend (last {} lines):",
                stderr.len()
            ));
            self.details
                .extend(stderr.iter().map(|line| format!("  {line}")));
        }
        self
    }
}

/// Counts and prints the checks.
#[derive(Debug, Default)]
pub(crate) struct Report {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Report {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn failed(&self) -> usize {
        self.failed
    }

    pub(crate) fn pass(&mut self, name: &str, detail: &str) {
        self.passed += 1;
        if detail.is_empty() {
            print_lines(&[format!("PASS {name}")]);
        } else {
            print_lines(&[format!("PASS {name}: {detail}")]);
        }
    }

    pub(crate) fn fail(&mut self, name: &str, failure: &Failure) {
        self.failed += 1;
        let mut lines = vec![format!("FAIL {name}: {}", failure.summary)];
        lines.extend(failure.details.iter().map(|d| format!("    {d}")));
        print_lines(&lines);
    }

    pub(crate) fn skip(&mut self, name: &str, reason: &str) {
        self.skipped += 1;
        print_lines(&[format!("SKIP {name}: {reason}")]);
    }

    /// A line that is not a check (what is being run).
    pub(crate) fn note(&self, text: &str) {
        print_lines(&[format!("# {text}")]);
    }

    /// Prints the summary line.
    pub(crate) fn finish(&self) {
        print_lines(&[self.summary()]);
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

fn print_lines(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        // A closed stdout (`| head`) must not abort the run.
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// The longest protocol line shown whole in a report.
const SHOWN: usize = 160;

/// A protocol line for a report: control characters escaped, cut to a
/// readable length with its full size noted.
pub(crate) fn show(line: &[u8]) -> String {
    let cut = line.len().min(SHOWN);
    let text = String::from_utf8_lossy(&line[..cut]);
    let mut out: String = text.escape_debug().collect();
    if cut < line.len() {
        out.push_str(&format!("... ({} bytes)", line.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_shown_escaped_and_bounded() {
        assert_eq!(show(b"a|b\r"), "a|b\\r");
        let long = vec![b'a'; 1000];
        let shown = show(&long);
        assert!(shown.ends_with("... (1000 bytes)"));
        assert!(shown.len() < 200);
    }

    #[test]
    fn failures_carry_stderr() {
        let f = Failure::new("x").with_stderr(&["boom".to_owned()]);
        assert_eq!(f.details.len(), 2);
        assert_eq!(f.details[1], "  boom");
        let mut report = Report::new();
        report.fail("case", &f);
        report.skip("other", "why");
        assert_eq!(report.summary(), "0 passed, 1 failed, 1 skipped");
    }
}
