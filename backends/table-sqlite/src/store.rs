//! The database side: connections, prepared statements, worker threads.
//!
//! A [`Store`] is built from a [`Config`]: it opens the database read-only,
//! prepares every configured statement once to check it (a lookup query
//! takes one `?` parameter, a fetch query none, and each returns the number
//! of columns its service needs), then starts a few worker threads, each
//! with its own connection and its own cache of prepared statements. The
//! async side sends jobs over a channel and awaits the answer, so SQLite
//! never blocks the protocol loop. Dropping the store (after an `update`
//! replaced it and its last request finished) ends its workers.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use smtpd_sdk::table::Service;
use tokio::sync::oneshot;

use crate::config::{Config, ConfigError, Fetch, Lookup, Query, Shape};

/// Rows of text, as many columns as the query returns.
type Rows = Vec<Vec<String>>;

/// One statement to run on a worker.
struct Job {
    sql: Arc<str>,
    key: Option<String>,
    /// Every row, or the first one only.
    all: bool,
    reply: oneshot::Sender<Result<Rows, String>>,
}

/// The cached result of a fetch query, served round-robin.
#[derive(Default)]
struct Cycle {
    values: Vec<String>,
    next: usize,
    calls: u64,
    loaded: Option<Instant>,
}

/// An open database with its checked statements and worker threads.
pub(crate) struct Store {
    lookups: Vec<(Lookup, Arc<str>)>,
    fetches: Vec<(Fetch, Arc<str>, Mutex<Cycle>)>,
    jobs: mpsc::Sender<Job>,
}

/// How many worker threads (and connections) a store runs.
fn workers() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

fn open(config: &Config) -> Result<Connection, ConfigError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&config.dbpath, flags).map_err(|e| {
        ConfigError::at(
            &config.file,
            config.dbpath_line,
            format!("dbpath: cannot open {}: {e}", config.dbpath.display()),
        )
    })?;
    // An administrator writing to the database holds its lock briefly;
    // wait for it rather than failing the lookup.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| ConfigError::at(&config.file, config.dbpath_line, e.to_string()))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Prepares `query` and checks its parameters and columns: as many as
/// `shape` needs, or one for a [`Shape::Fields`] query that returns the
/// value already joined (`user:hash`, `uid:gid:home`, or a bare password).
fn check(
    conn: &Connection,
    config: &Config,
    query: &Query,
    params: usize,
    shape: Shape,
) -> Result<(), ConfigError> {
    let at = |message: String| ConfigError::at(&config.file, query.line, message);
    let stmt = conn
        .prepare(&query.sql)
        .map_err(|e| at(format!("{}: {e}", query.key)))?;
    let got = stmt.parameter_count();
    if got != params {
        return Err(at(format!(
            "{}: the query takes {got} parameters, {params} expected{}",
            query.key,
            if params == 1 {
                " (the lookup key, ?)"
            } else {
                ""
            }
        )));
    }
    let got = stmt.column_count();
    let columns = shape.columns();
    if got != columns && !(got == 1 && matches!(shape, Shape::Fields(_))) {
        let or_one = if columns > 1 {
            " (or 1, the whole value)"
        } else {
            ""
        };
        return Err(at(format!(
            "{}: the query returns {got} columns, {columns}{or_one} expected",
            query.key
        )));
    }
    Ok(())
}

/// The text of a column: integers and reals in decimal, NULL empty.
fn text(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

/// Runs one job on `conn` (its statement prepared once per connection).
fn run(conn: &Connection, job: &Job) -> Result<Rows, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&job.sql)?;
    let columns = stmt.column_count();
    let mut rows = match &job.key {
        Some(key) => stmt.query([key.as_str()])?,
        None => stmt.query([])?,
    };
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut fields = Vec::with_capacity(columns);
        for i in 0..columns {
            fields.push(text(row.get_ref(i)?));
        }
        out.push(fields);
        if !job.all {
            break;
        }
    }
    Ok(out)
}

/// A worker: takes jobs until the store is dropped.
fn work(conn: &Connection, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let Ok(receiver) = jobs.lock() else {
                return;
            };
            match receiver.recv() {
                Ok(job) => job,
                Err(mpsc::RecvError) => return,
            }
        };
        let result = run(conn, &job).map_err(|e| e.to_string());
        // The requester may be gone (the daemon closed the pipe).
        let _ = job.reply.send(result);
    }
}

impl Store {
    /// Opens the database, checks every statement, starts the workers.
    pub(crate) fn open(config: &Config) -> Result<Self, ConfigError> {
        let conn = open(config)?;
        for lookup in &config.lookups {
            check(&conn, config, &lookup.query, 1, lookup.shape)?;
        }
        for fetch in &config.fetches {
            check(&conn, config, &fetch.query, 0, Shape::Single)?;
        }
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut conns = vec![conn];
        for _ in 1..workers() {
            conns.push(open(config)?);
        }
        for (i, conn) in conns.into_iter().enumerate() {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("sqlite-{i}"))
                .spawn(move || work(&conn, &receiver))
                .map_err(|e| ConfigError::at(&config.file, config.dbpath_line, e.to_string()))?;
        }
        Ok(Self {
            lookups: config
                .lookups
                .iter()
                .map(|l| (l.clone(), Arc::from(l.query.sql.as_str())))
                .collect(),
            fetches: config
                .fetches
                .iter()
                .map(|f| (f.clone(), Arc::from(f.query.sql.as_str()), Mutex::default()))
                .collect(),
            jobs,
        })
    }

    /// The extension services configured (beyond OpenSMTPD's nine).
    pub(crate) fn services(&self) -> impl Iterator<Item = Service> + '_ {
        let lookups = self.lookups.iter().map(|(l, _)| l.service);
        lookups.chain(self.fetches.iter().map(|(f, _, _)| f.service))
    }

    /// Runs `sql` on a worker.
    async fn rows(&self, sql: &Arc<str>, key: Option<&str>, all: bool) -> Result<Rows, String> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            sql: Arc::clone(sql),
            key: key.map(str::to_owned),
            all,
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| "the database workers are gone".to_owned())?;
        answer
            .await
            .map_err(|_| "a database worker died".to_owned())?
    }

    fn lookup_query(&self, service: Service) -> Result<&(Lookup, Arc<str>), String> {
        self.lookups
            .iter()
            .find(|(l, _)| l.service == service)
            .ok_or_else(|| format!("no query configured for {service}"))
    }

    /// Is there at least one row for `key`?
    pub(crate) async fn check(&self, service: Service, key: &str) -> Result<bool, String> {
        let (_, sql) = self.lookup_query(service)?;
        Ok(!self.rows(sql, Some(key), false).await?.is_empty())
    }

    /// The value for `key`, shaped as the service wants it.
    pub(crate) async fn lookup(
        &self,
        service: Service,
        key: &str,
    ) -> Result<Option<String>, String> {
        let (lookup, sql) = self.lookup_query(service)?;
        let all = lookup.shape == Shape::Joined;
        let rows = self.rows(sql, Some(key), all).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(match lookup.shape {
            Shape::Joined => rows
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect::<Vec<_>>()
                .join(", "),
            Shape::Single | Shape::Fields(_) => rows
                .into_iter()
                .next()
                .map(|r| r.join(":"))
                .unwrap_or_default(),
        }))
    }

    /// The next value of the fetch query for `service`, re-running the
    /// query once the cache expired or served its number of fetches.
    pub(crate) async fn fetch(&self, service: Service) -> Result<Option<String>, String> {
        let (fetch, sql, cycle) = self
            .fetches
            .iter()
            .find(|(f, _, _)| f.service == service)
            .ok_or_else(|| format!("no fetch query configured for {service}"))?;
        let stale = {
            let cycle = lock(cycle);
            cycle.calls >= fetch.refresh
                || cycle.loaded.map_or(true, |at| at.elapsed() >= fetch.expire)
        };
        if stale {
            let rows = self.rows(sql, None, true).await?;
            let mut cycle = lock(cycle);
            cycle.values = rows
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            cycle.next = 0;
            cycle.calls = 0;
            cycle.loaded = Some(Instant::now());
        }
        let mut cycle = lock(cycle);
        cycle.calls += 1;
        if cycle.values.is_empty() {
            return Ok(None);
        }
        let value = cycle.values[cycle.next % cycle.values.len()].clone();
        cycle.next = cycle.next.wrapping_add(1);
        Ok(Some(value))
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    fn database(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("db.sqlite");
        if path.exists() {
            return path;
        }
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE aliases (name TEXT, target TEXT);
             INSERT INTO aliases VALUES ('team', 'alice'), ('team', 'bob');
             CREATE TABLE users (login TEXT, uid INTEGER, gid INTEGER, home TEXT);
             INSERT INTO users VALUES ('alice', 1000, 1000, '/home/alice');
             CREATE TABLE sources (addr TEXT);
             INSERT INTO sources VALUES ('192.0.2.1'), ('192.0.2.2');",
        )
        .expect("schema");
        path
    }

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "dbpath {}\n\
             query_alias SELECT target FROM aliases WHERE name = ? ORDER BY target\n\
             query_userinfo SELECT uid, gid, home FROM users WHERE login = ?\n\
             fetch_source SELECT addr FROM sources ORDER BY addr\n\
             fetch_source_refresh 3\n{extra}",
            database(dir).display()
        );
        config::parse(Path::new("sqlite.conf"), &text).expect("valid")
    }

    #[tokio::test]
    async fn lookups_fetch_and_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&config(dir.path(), "")).expect("open");
        let team = store.lookup(Service::Alias, "team").await.expect("lookup");
        assert_eq!(team.as_deref(), Some("alice, bob"));
        let alice = store
            .lookup(Service::Userinfo, "alice")
            .await
            .expect("lookup");
        assert_eq!(alice.as_deref(), Some("1000:1000:/home/alice"));
        assert!(store
            .check(Service::Userinfo, "alice")
            .await
            .expect("check"));
        assert!(!store.check(Service::Alias, "nobody").await.expect("check"));
        assert!(
            store.lookup(Service::Domain, "x").await.is_err(),
            "not configured"
        );
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(
                store
                    .fetch(Service::Source)
                    .await
                    .expect("fetch")
                    .unwrap_or_default(),
            );
        }
        assert_eq!(got, ["192.0.2.1", "192.0.2.2", "192.0.2.1"]);
        // The fourth fetch re-runs the query and starts over.
        let again = store.fetch(Service::Source).await.expect("fetch");
        assert_eq!(again.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn column_counts_are_checked_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = config(
            dir.path(),
            "query_credentials SELECT login, uid, gid FROM users WHERE login = ?\n",
        );
        let e = Store::open(&bad).err().expect("one column for credentials");
        assert_eq!(
            e.to_string(),
            "sqlite.conf:6: query_credentials: the query returns 3 columns, 2 (or 1, the whole value) expected"
        );
        let bad = config(dir.path(), "query_domain SELECT 'x'\n");
        let e = Store::open(&bad).err().expect("no parameter");
        assert!(e
            .to_string()
            .starts_with("sqlite.conf:6: query_domain: the query takes 0"));
        let bad = config(
            dir.path(),
            "query_domain SELECT name FROM nowhere WHERE a = ?\n",
        );
        let e = Store::open(&bad).err().expect("no such table");
        assert!(e.to_string().contains("no such table"), "{e}");
    }
}
