//! The queue run loop, driven in memory with real protocol lines.

mod common;

use std::sync::Arc;

use smtpd_sdk::queue::{self, Error, EvpId, MsgId, Queue};
use tokio::sync::Notify;

const TS: &str = "1731000001.000412";

/// A queue with a few operations, each showing one behaviour.
struct TestQueue {
    gate: Arc<Notify>,
}

impl Queue for TestQueue {
    fn capabilities(&self) -> Vec<String> {
        vec!["future-capability".to_owned()]
    }

    async fn message_create(&self) -> Result<MsgId, Error> {
        self.gate.notified().await;
        Ok(MsgId(0x0bad_cafe))
    }

    async fn message_write(&self, _msgid: MsgId, _offset: u64, _data: &[u8]) -> Result<(), Error> {
        Err(Error::failed("disk full"))
    }

    async fn envelope_load(&self, evpid: EvpId) -> Result<Option<Vec<u8>>, Error> {
        // An empty envelope cannot be sent; another id is not found.
        Ok((evpid.0 == 0x0bad_cafe_0000_0001).then(Vec::new))
    }

    async fn envelope_create(&self, _msgid: MsgId, _data: &[u8]) -> Result<EvpId, Error> {
        // Not an envelope id of that message: refused by the SDK.
        Ok(EvpId(0x0bad_cafe_0000_0000))
    }

    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, Error> {
        self.gate.notify_one();
        Ok((after.0 == 0).then(|| (EvpId(0x0bad_cafe_0000_0001), b"envelope".to_vec())))
    }
}

fn new_queue() -> TestQueue {
    TestQueue {
        gate: Arc::new(Notify::new()),
    }
}

fn req(op: &str, id: u64, args: &str) -> String {
    format!("queue|0.1|{TS}|{op}|{id:016x}{args}")
}

#[tokio::test]
async fn handshake_registers_capabilities() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        assert_eq!(
            daemon.handshake("0.1", &[]).await,
            ["register|future-capability", "register|ready"]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(queue::run_with(new_queue(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn an_unknown_version_stops_the_backend() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.send("config|protocol|1.0").await;
        daemon.send("config|ready").await;
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(queue::run_with(new_queue(), input, output), script);
    assert_eq!(
        result.unwrap_err().to_string(),
        "unsupported protocol version 1.0 (this backend speaks 0.1)"
    );
}

#[tokio::test]
async fn answers_leave_in_completion_order() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.handshake("0.1", &[]).await;
        daemon.send(&req("message-create", 1, "")).await;
        daemon
            .send(&req("envelope-walk", 2, "|0000000000000000"))
            .await;
        assert_eq!(
            daemon.recv_n(2).await,
            [
                "envelope-walk-result|0000000000000002|found|0badcafe00000001|ZW52ZWxvcGU=",
                "message-create-result|0000000000000001|ok|0badcafe",
            ]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(queue::run_with(new_queue(), input, output), script);
    result.unwrap();
}

#[tokio::test]
async fn failures_and_bad_requests_are_answered_error() {
    let (mut daemon, input, output) = common::pipes();
    let script = async {
        daemon.handshake("0.1", &[]).await;
        let requests = [
            req("message-write", 1, "|0badcafe|0|aGVsbG8="),
            req("message-commit", 2, "|0badcafe|5"),
            req("envelope-load", 3, "|0badcafe00000001"),
            req("envelope-load", 4, "|0badcafe00000002"),
            req("envelope-create", 5, "|0badcafe|ZQ=="),
            req("message-frobnicate", 6, "|0badcafe"),
            req("message-read", 7, "|00000000|0|10"),
            req("message-write", 8, "|0badcafe|0|not base64!"),
            "queue|0.1|1731000001.000412|message-create|short".to_owned(),
            req("envelope-walk", 9, "|0000000000000000"),
        ];
        for r in &requests {
            daemon.send(r).await;
        }
        let mut answers = daemon.recv_n(9).await;
        answers.sort();
        assert_eq!(
            answers,
            [
                "envelope-create-result|0000000000000005|error|backend answer refused: invalid id",
                "envelope-load-result|0000000000000003|error|backend answer refused: cannot send status: not a legal answer to this operation",
                "envelope-load-result|0000000000000004|not-found",
                "envelope-walk-result|0000000000000009|found|0badcafe00000001|ZW52ZWxvcGU=",
                "message-commit-result|0000000000000002|error|unsupported",
                "message-frobnicate-result|0000000000000006|error|unknown operation",
                "message-read-result|0000000000000007|error|invalid message id",
                "message-write-result|0000000000000001|error|disk full",
                "message-write-result|0000000000000008|error|invalid data",
            ]
        );
        daemon.close();
        assert_eq!(daemon.recv().await, None);
    };
    let (result, ()) = tokio::join!(queue::run_with(new_queue(), input, output), script);
    result.unwrap();
}
