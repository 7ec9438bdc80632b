//! One daemon over queue-postgres (`queue proc-exec "queue-postgres
//! CONF"`) on a real PostgreSQL 15 server that each test starts
//! (table-postgres's harness, `tests/pg/mod.rs`), crashed under load from
//! several concurrent smtplib senders (the senders, probes and checks of
//! `common/load.rs`, shared with queue_proc.rs's tests on queue-sqlite):
//!
//! - the daemon killed with SIGKILL while it accepts and delivers, then
//!   started again: every message acknowledged with 250 is delivered, and
//!   none twice but the envelopes the dead daemon held a live lease on
//!   when it died (delivered, not yet deleted: the window of SPEC.md
//!   4.12), each at most twice;
//! - the PostgreSQL server stopped as in a crash (`pg_ctl stop -m
//!   immediate`): intake answers 4xx while it is down and accepts again
//!   once it is back, nothing acknowledged is lost, nothing delivered
//!   twice;
//! - the queue backend killed with SIGKILL: intake answers 4xx until the
//!   supervisor has started it again, then the same.
//!
//! The backend registers `lease`, so the daemon claims each envelope
//! before delivering it; a lease of 5 s and a walk every second
//! (`--queue-lease`, `--queue-rewalk`) keep the takeover after the
//! restart short.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// Tests: a failed unwrap is a failed test (the shared harness unwraps).
#![allow(clippy::unwrap_used)]

mod common;

#[path = "../../backends/table-postgres/tests/pg/mod.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::backend::{account, binary, writable};
use common::load::{
    acked_in, assert_all_delivered_once, assert_only_sent, kill_9, pids_with, probe,
    probe_until_accepted, smtpctl, wait_all_delivered, Load,
};
use common::mail::{free_port, Smtpd, Spool};
use common::{smtpd_command, Process, Scratch, DEADLINE};
use pg::PgServer;

/// The schema of the queue's tables.
const SCHEMA: &str = "mailq";

/// The lease of the test's daemons, in seconds.
const LEASE: u64 = 5;

/// The backend's configuration for `pg`.
fn queue_conf(dir: &Scratch, pg: &PgServer) -> PathBuf {
    dir.write(
        "queue-postgres.conf",
        &format!("conninfo {}\nschema {SCHEMA}\n", pg.conninfo()),
    )
}

/// A daemon whose queue is queue-postgres with `conf`: mail for
/// example.org goes to `MAILDIRS/vmail`.
fn start(dir: &Scratch, conf: &Path, maildirs: &Path) -> Smtpd {
    let (uid, gid) = account();
    let home = writable(dir, "home");
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", &format!("vmail {uid}:{gid}:{}\n", home.display()));
    let port = free_port();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "queue proc-exec \"{backend} {conf}\"\n\
             table vusers file:{vusers}\n\
             table users file:{users}\n\
             listen on 127.0.0.1 port {port} hostname mx.test\n\
             action \"deliver\" maildir \"{m}/%{{user.username}}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"deliver\"\n",
            backend = binary("queue-postgres").display(),
            conf = conf.display(),
            vusers = vusers.display(),
            users = users.display(),
            m = maildirs.display(),
        ),
    );
    let mut cmd = smtpd_command(dir, &config);
    cmd.args(["--queue-lease", &LEASE.to_string(), "--queue-rewalk", "1"]);
    let smtpd = Smtpd {
        process: Process::spawn(cmd),
        port,
        spool: Spool(dir.0.join("data").join("spool")),
    };
    smtpd.wait_for(&format!("listening on 127.0.0.1:{port}"));
    smtpd
}

/// `SELECT count(*) ...` on the server.
fn count(pg: &PgServer, sql: &str) -> usize {
    pg.psql(sql).trim().parse().unwrap()
}

/// Waits until the store holds no committed message and no envelope of
/// one (a transaction cut by a crash leaves its message uncommitted, with
/// its envelopes, removed by a start of the backend a day later).
fn wait_empty(pg: &PgServer) {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = count(
            pg,
            &format!(
                "SELECT (SELECT count(*) FROM {SCHEMA}.messages WHERE committed) + \
                 (SELECT count(*) FROM {SCHEMA}.envelopes e, {SCHEMA}.messages m \
                 WHERE m.msgid = e.msgid AND m.committed);"
            ),
        );
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < end,
            "{left} messages and envelopes left in the store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until no queue-postgres with `conf` runs any more.
fn wait_backend_gone(conf: &Path) {
    let needle = conf.display().to_string();
    let end = Instant::now() + DEADLINE;
    while !pids_with("queue-postgres", &needle).is_empty() {
        assert!(Instant::now() < end, "queue-postgres outlives its daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_of_the_daemon_under_load_then_a_restart_delivers_everything_acknowledged() {
    let pg = PgServer::start("queue-proc-kill-daemon");
    let dir = Scratch::new("queue-proc-pg", "kill-daemon");
    let conf = queue_conf(&dir, &pg);
    let maildirs = writable(&dir, "maildir");
    let maildir = maildirs.join("vmail");
    let mut smtpd = start(&dir, &conf, &maildirs);
    // Deliveries run during the load: the kill cuts some of them.
    let load = Load::start(smtpd.port, 4, 100);
    load.wait_acked(40);
    let live = format!(
        "SELECT count(*) FROM {SCHEMA}.envelopes \
         WHERE lease_owner IS NOT NULL AND lease_expires > now();"
    );
    let end = Instant::now() + DEADLINE;
    while count(&pg, &live) == 0 {
        assert!(Instant::now() < end, "no delivery ever in flight");
    }
    smtpd.stop(libc::SIGKILL);
    // What the daemon held when it died (its backend may still answer a
    // request already sent): the only envelopes that may be delivered
    // twice.
    wait_backend_gone(&conf);
    let held = count(&pg, &live);
    let delivered_before = common::load::delivered(&maildir).len();
    let lines = load.finish();
    let acked = acked_in(&lines);
    assert!(acked.len() >= 40, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("LOST ")),
        "the kill cut some transactions"
    );

    let started = Instant::now();
    let smtpd = start(&dir, &conf, &maildirs);
    wait_all_delivered(&maildir, &acked, || {});
    let restarted = started.elapsed();
    // Once the store is empty, what the dead daemon held was delivered
    // again too.
    wait_empty(&pg);
    let found = common::load::delivered(&maildir);
    assert_only_sent(&found, &lines);
    let twice: Vec<(&String, &usize)> = found.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.iter().all(|(_, n)| **n == 2),
        "delivered more than twice: {twice:?}"
    );
    assert!(
        twice.len() <= held,
        "{} duplicates, but the daemon held only {held} leases when it died: {twice:?}",
        twice.len()
    );
    eprintln!(
        "kill -9 under load: {} acknowledged, {delivered_before} delivered before the kill, \
         {held} leases held, the rest delivered {:.1} s after the restart, {} duplicates",
        acked.len(),
        restarted.as_secs_f64(),
        twice.len()
    );
    drop(smtpd);
}

#[test]
fn the_postgresql_server_crashing_under_load_gives_4xx_then_resumes() {
    let pg = PgServer::start("queue-proc-server");
    let dir = Scratch::new("queue-proc-pg", "server");
    let conf = queue_conf(&dir, &pg);
    let maildirs = writable(&dir, "maildir");
    let smtpd = start(&dir, &conf, &maildirs);

    let load = Load::start(smtpd.port, 4, 150);
    load.wait_acked(40);
    pg.stop();
    // While it is down, intake answers 4xx (the message is created in the
    // queue at DATA), every time.
    let mut probes = Vec::new();
    for _ in 0..3 {
        let reply = probe(&smtpd, &mut probes);
        assert!(reply.starts_with("451 4.3.0"), "{reply}");
    }
    pg.start_again();
    // The same backend reconnects: messages are accepted again.
    probe_until_accepted(&smtpd, &mut probes, "the database");

    let mut lines = load.finish();
    lines.extend(probes);
    let acked = acked_in(&lines);
    assert!(acked.len() > 40, "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.starts_with("TEMP 5")),
        "never a 5xx: {lines:?}"
    );
    // Deliveries that failed while the server was down are retried;
    // `schedule all` spares the test the retry delay.
    let found = assert_all_delivered_once(&maildirs.join("vmail"), &acked, || {
        smtpctl(&dir, &["schedule", "all"]);
    });
    assert_only_sent(&found, &lines);
    wait_empty(&pg);
}

#[test]
fn kill_9_of_the_queue_backend_under_load_gives_4xx_then_resumes() {
    let pg = PgServer::start("queue-proc-kill-backend");
    let dir = Scratch::new("queue-proc-pg", "kill-backend");
    let conf = queue_conf(&dir, &pg);
    let maildirs = writable(&dir, "maildir");
    let smtpd = start(&dir, &conf, &maildirs);
    let needle = conf.display().to_string();
    let backend = pids_with("queue-postgres", &needle);
    assert_eq!(backend.len(), 1, "one queue-postgres runs: {backend:?}");

    let load = Load::start(smtpd.port, 4, 150);
    load.wait_acked(40);
    kill_9(backend[0]);
    smtpd.wait_for("backend queue exited");
    // While it is down (the first restart waits 1 s), intake answers 4xx.
    let mut probes = Vec::new();
    let first = probe(&smtpd, &mut probes);
    assert!(first.starts_with("451 4.3.0"), "{first}");
    // It comes back: a new child, and messages are accepted again.
    probe_until_accepted(&smtpd, &mut probes, "the queue backend");
    let restarted = pids_with("queue-postgres", &needle);
    assert!(
        restarted.len() == 1 && restarted[0] != backend[0],
        "{restarted:?}"
    );

    let mut lines = load.finish();
    lines.extend(probes);
    let acked = acked_in(&lines);
    assert!(acked.len() > 40, "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.starts_with("TEMP 5")),
        "never a 5xx: {lines:?}"
    );
    let found = assert_all_delivered_once(&maildirs.join("vmail"), &acked, || {
        smtpctl(&dir, &["schedule", "all"]);
    });
    assert_only_sent(&found, &lines);
    wait_empty(&pg);
}
