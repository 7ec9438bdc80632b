//! `table-static FILE`: a table(5) file served as a proc-exec table.
//!
//! This is the reference table backend: it behaves as smtpd's own `file:`
//! tables and is kept short so that it can be copied as the start of a new
//! backend. The file is parsed by [`smtpd_sdk::tablefile`] (comments,
//! `# @list`, bracketed IPv6 keys, lower-cased keys, last duplicate wins).
//!
//! ```text
//! table aliases proc-exec "table-static /etc/mail/aliases"
//! table aliases proc-exec "table-static -f /etc/mail/aliases"
//! ```
//!
//! - `check` and `lookup` go by exact key; in a list the value of a key is
//!   the key itself.
//! - `fetch` cycles through the values in file order, one position for the
//!   whole table, as OpenSMTPD's static tables do.
//! - `update` re-reads the file: `ok`, or `error` when the file became
//!   unreadable or invalid, in which case the old data stays in use.
//! - A mapping registers every service; a list only those a list can serve
//!   (smtpd itself refuses a list for aliases, credentials, userinfo, ...).
//!
//! Errors in the file are reported as `FILE:LINE: message` on stderr before
//! the backend registers, and it exits non-zero. Logs go to stderr
//! (`RUST_LOG=debug` shows every line).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use smtpd_sdk::backend::cli;
use smtpd_sdk::table::{self, Error, Service, Table};
use smtpd_sdk::tablefile::{Entry, Form, TableFile};

const USAGE: &str = "usage: table-static [-f] FILE\n\
    Serves a table(5) file (a list or a mapping) over table protocol 0.1.";

/// The services a list can serve: those smtpd only checks or fetches.
const LIST_SERVICES: [Service; 8] = [
    Service::Domain,
    Service::Netaddr,
    Service::Source,
    Service::Mailaddr,
    Service::Relayhost,
    Service::String,
    Service::Regex,
    Service::Auth,
];

/// The table: the file's path, its current content and the fetch position.
struct StaticTable {
    path: PathBuf,
    /// Replaced whole on `update`; readers clone the `Arc` and never hold
    /// the lock across an `.await`.
    data: RwLock<Arc<TableFile>>,
    /// The next `fetch` position (taken modulo the number of entries).
    next: AtomicUsize,
}

impl StaticTable {
    fn open(path: PathBuf) -> Result<Self, String> {
        let data = load(&path)?;
        Ok(Self {
            path,
            data: RwLock::new(Arc::new(data)),
            next: AtomicUsize::new(0),
        })
    }

    /// The current data. A poisoned lock still holds complete data: it is
    /// only ever replaced whole.
    fn data(&self) -> Arc<TableFile> {
        match self.data.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// Reads and parses the file; the error reads `FILE:LINE: message` (or
/// `FILE: message` when the file cannot be read).
fn load(path: &Path) -> Result<TableFile, String> {
    let content = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TableFile::parse(&content).map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.kind))
}

/// The value of an entry: its value in a mapping, its key in a list.
fn value(entry: &Entry) -> String {
    entry.value.clone().unwrap_or_else(|| entry.key.clone())
}

impl Table for StaticTable {
    fn services(&self) -> Vec<Service> {
        match self.data().form() {
            Form::List => LIST_SERVICES.to_vec(),
            Form::Mapping => Service::ALL.to_vec(),
        }
    }

    async fn check(&self, _service: Service, key: &str) -> Result<bool, Error> {
        Ok(self.data().contains_key(key))
    }

    async fn lookup(&self, _service: Service, key: &str) -> Result<Option<String>, Error> {
        Ok(self.data().get(key).map(value))
    }

    async fn fetch(&self, _service: Service) -> Result<Option<String>, Error> {
        let data = self.data();
        if data.is_empty() {
            return Ok(None);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(Some(value(&data.entries()[n % data.len()])))
    }

    async fn update(&self) -> Result<(), Error> {
        let fresh = Arc::new(load(&self.path).map_err(Error::Failed)?);
        match self.data.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        self.next.store(0, Ordering::Relaxed);
        tracing::info!(path = %self.path.display(), "table reloaded");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let path = match cli::start("table-static", USAGE) {
        Ok(path) => path,
        Err(code) => return code,
    };
    match StaticTable::open(path) {
        Ok(t) => table::run(t).await,
        Err(e) => cli::refuse("table-static", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t");
        std::fs::write(&path, "# comment\nkey value\n[::1 broken\n").expect("write");
        let e = load(&path).expect_err("a bracket without ']'");
        assert!(e.starts_with(&format!("{}:3: ", path.display())), "{e}");
    }

    #[tokio::test]
    async fn list_serves_keys_and_update_rereads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t");
        std::fs::write(&path, "# @list\nexample.org\nexample.net\n").expect("write");
        let t = StaticTable::open(path.clone()).expect("open");
        assert_eq!(t.services(), LIST_SERVICES.to_vec());
        assert!(t
            .check(Service::Domain, "example.net")
            .await
            .expect("check"));
        let found = t
            .lookup(Service::Domain, "example.org")
            .await
            .expect("lookup");
        assert_eq!(found.as_deref(), Some("example.org"));
        let first = t.fetch(Service::Source).await.expect("fetch");
        assert_eq!(first.as_deref(), Some("example.org"));

        std::fs::write(&path, "alias root\n").expect("write");
        t.update().await.expect("update");
        assert!(!t
            .check(Service::Domain, "example.net")
            .await
            .expect("check"));
        let found = t.lookup(Service::Alias, "alias").await.expect("lookup");
        assert_eq!(found.as_deref(), Some("root"));

        std::fs::write(&path, "[broken\n").expect("write");
        assert!(t.update().await.is_err());
        let kept = t.lookup(Service::Alias, "alias").await.expect("lookup");
        assert_eq!(kept.as_deref(), Some("root"), "the old data stays in use");
    }
}
