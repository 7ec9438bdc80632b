//! The table run loop, driven in memory with real protocol lines.

mod common;

use std::sync::Arc;

use smtpd_sdk::table::{self, Config, Error, RunError, Service, Table};
use tokio::sync::Notify;

const TS: &str = "1731000001.000412";

/// A table whose keys say what to do.
struct TestTable {
    tablename: Option<String>,
    gate: Arc<Notify>,
}

impl TestTable {
    fn new() -> Self {
        Self {
            tablename: None,
            gate: Arc::new(Notify::new()),
        }
    }
}

impl Table for TestTable {
    fn services(&self) -> Vec<Service> {
        vec![Service::Alias, Service::Domain, Service::Source]
    }

    fn configure(&mut self, config: &Config) -> Result<(), Error> {
        self.tablename = config.tablename().map(str::to_owned);
        Ok(())
    }

    async fn check(&self, _service: Service, key: &str) -> Result<bool, Error> {
        Ok(key == "example.org")
    }

    async fn lookup(&self, _service: Service, key: &str) -> Result<Option<String>, Error> {
        match key {
            "tablename" => Ok(self.tablename.clone()),
            "wait" => {
                self.gate.notified().await;
                Ok(Some("waited".to_owned()))
            }
            "open" => {
                self.gate.notify_one();
                Ok(Some("opened".to_owned()))
            }
            "fail" => Err(Error::failed("database\nunavailable")),
            "empty" => Ok(Some(String::new())),
            "postmaster" => Ok(Some("root".to_owned())),
            _ => Ok(None),
        }
    }

    async fn update(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn lookup(service: &str, id: &str, key: &str) -> String {
    format!("table|0.1|{TS}|test|lookup|{service}|{id}|{key}")
}

#[tokio::test]
async fn handshake_registers_the_services_and_passes_the_config() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        let registered = daemon
            .handshake("0.1", &[("tablename", "test"), ("future-key", "x|y")])
            .await;
        assert_eq!(
            registered,
            [
                "register|alias",
                "register|domain",
                "register|source",
                "register|ready"
            ]
        );
        daemon.send(&lookup("alias", "00000001", "tablename")).await;
        assert_eq!(
            daemon.recv().await.unwrap(),
            "lookup-result|00000001|found|test"
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(table::run_with(TestTable::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn an_unknown_version_stops_the_backend_before_registering() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.send("config|smtpd-version|9.0.0").await;
        daemon.send("config|protocol|0.2").await;
        daemon.send("config|ready").await;
        assert_eq!(daemon.recv().await, None, "nothing may be registered");
    };
    let (result, ()) = tokio::join!(table::run_with(TestTable::new(), input, output), script);
    let e = result.unwrap_err();
    assert!(matches!(e, RunError::UnsupportedVersion { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "unsupported protocol version 0.2 (this backend speaks 0.1)"
    );
}

#[tokio::test]
async fn a_handshake_without_version_or_with_garbage_fails() {
    for lines in [&["config|ready"][..], &["hello", "config|ready"]] {
        let (mut daemon, input, output) = common::pipes();
        let script = async {
            for line in lines {
                daemon.send(line).await;
            }
            assert_eq!(daemon.recv().await, None);
        };
        let (result, ()) = tokio::join!(table::run_with(TestTable::new(), input, output), script);
        assert!(matches!(result, Err(RunError::Handshake(_))), "{result:?}");
    }
}

#[tokio::test]
async fn eof_during_the_handshake_is_a_clean_exit() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.send("config|protocol|0.1").await;
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(table::run_with(TestTable::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn answers_leave_as_soon_as_they_are_ready() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.handshake("0.1", &[]).await;
        daemon.send(&lookup("alias", "00000001", "wait")).await;
        daemon.send(&lookup("alias", "00000002", "open")).await;
        assert_eq!(
            daemon.recv_n(2).await,
            [
                "lookup-result|00000002|found|opened",
                "lookup-result|00000001|found|waited"
            ]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(table::run_with(TestTable::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn eof_waits_for_the_requests_in_flight() {
    let (mut daemon, input, output) = common::pipes();
    let table = TestTable::new();
    let gate = Arc::clone(&table.gate);
    let script = async {
        daemon.handshake("0.1", &[]).await;
        daemon.send(&lookup("alias", "0000000a", "wait")).await;
        daemon.close();
        gate.notify_one();
        assert_eq!(
            daemon.recv().await.unwrap(),
            "lookup-result|0000000a|found|waited"
        );
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(table::run_with(table, input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn every_request_gets_an_answer_even_when_it_cannot_be_served() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.handshake("0.1", &[]).await;
        let requests = [
            // The handler fails: its message, on one line.
            lookup("alias", "00000001", "fail"),
            // An empty value cannot be sent.
            lookup("alias", "00000002", "empty"),
            // A service that is not registered.
            lookup("regex", "00000003", "postmaster"),
            // A service the codec does not know.
            lookup("frobnicate", "00000004", "postmaster"),
            // An operation left at its default.
            format!("table|0.1|{TS}|test|fetch|source|00000005"),
            // Lines that cannot be answered are dropped...
            "garbage".to_owned(),
            format!("table|0.1|{TS}|test|lookup|alias|XYZ|postmaster"),
            // ... and the next requests are served.
            format!("table|0.1|{TS}|test|check|domain|00000006|example.org"),
            format!("table|0.1|{TS}|test|update|00000007"),
            lookup("alias", "00000008", "nobody"),
        ];
        for r in &requests {
            daemon.send(r).await;
        }
        let mut answers = daemon.recv_n(8).await;
        answers.sort();
        assert_eq!(
            answers,
            [
                "check-result|00000006|found",
                "fetch-result|00000005|error|unsupported",
                "lookup-result|00000001|error|database unavailable",
                "lookup-result|00000002|error|backend answer refused: cannot send status: not a legal answer to this operation",
                "lookup-result|00000003|error|service regex not served",
                "lookup-result|00000004|error|unknown service",
                "lookup-result|00000008|not-found",
                "update-result|00000007|ok",
            ]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(table::run_with(TestTable::new(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn many_requests_in_flight_are_all_answered() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.handshake("0.1", &[]).await;
        for i in 0..5000u32 {
            let key = if i % 2 == 0 { "postmaster" } else { "nobody" };
            daemon
                .send(&lookup("alias", &format!("{i:08x}"), key))
                .await;
        }
        let mut seen = vec![false; 5000];
        for line in daemon.recv_n(5000).await {
            let id = usize::from_str_radix(&line[14..22], 16).unwrap();
            let expected = if id % 2 == 0 {
                format!("lookup-result|{id:08x}|found|root")
            } else {
                format!("lookup-result|{id:08x}|not-found")
            };
            assert_eq!(line, expected);
            assert!(!seen[id], "answered twice: {line}");
            seen[id] = true;
        }
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(table::run_with(TestTable::new(), input, output), script);
    result.unwrap();
}
