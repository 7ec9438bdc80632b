//! `table_static FILE`: a table backend serving a table(5) file.
//!
//! Every service is registered and answered from the same data: `check`
//! and `lookup` by exact key (the daemon lower-cases its keys, and so does
//! the file parser), `fetch` cycling through the values in file order (one
//! position for the whole table, as OpenSMTPD's static tables do), `update`
//! re-reading the file: `ok`, or `error` when the file became unreadable or
//! invalid, in which case the old data stays in use. In a list file, a key's
//! value is the key itself.
//!
//! ```text
//! table users proc-exec "table_static /etc/mail/users"
//! ```
//!
//! Logs go to stderr (`RUST_LOG=debug` shows every line).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use smtpd_sdk::table::{self, Error, Service, Table};
use smtpd_sdk::tablefile::{Entry, TableFile};

/// The table: the file's path, its current content and the fetch position.
pub(crate) struct StaticTable {
    path: PathBuf,
    data: RwLock<Arc<TableFile>>,
    next: AtomicUsize,
}

impl StaticTable {
    pub(crate) fn open(path: PathBuf) -> Result<Self, String> {
        let data = load(&path)?;
        Ok(Self {
            path,
            data: RwLock::new(Arc::new(data)),
            next: AtomicUsize::new(0),
        })
    }

    fn data(&self) -> Arc<TableFile> {
        // A poisoned lock still holds complete data: it is only ever
        // replaced whole.
        match self.data.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

fn load(path: &std::path::Path) -> Result<TableFile, String> {
    let content = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TableFile::parse(&content).map_err(|e| format!("{}: {e}", path.display()))
}

fn value(entry: &Entry) -> String {
    entry.value.clone().unwrap_or_else(|| entry.key.clone())
}

impl Table for StaticTable {
    fn services(&self) -> Vec<Service> {
        Service::ALL.to_vec()
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
        let fresh = load(&self.path).map_err(Error::Failed)?;
        match self.data.write() {
            Ok(mut guard) => *guard = Arc::new(fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
        }
        self.next.store(0, Ordering::Relaxed);
        tracing::info!(path = %self.path.display(), "table reloaded");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: table_static FILE");
        return ExitCode::FAILURE;
    };
    match StaticTable::open(PathBuf::from(path)) {
        Ok(t) => table::run(t).await,
        Err(e) => {
            eprintln!("table_static: {e}");
            ExitCode::FAILURE
        }
    }
}
