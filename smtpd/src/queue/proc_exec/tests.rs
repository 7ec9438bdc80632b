//! Tests of the queue client: the family's handshake and answer decoding,
//! then a real backend (the Python SDK's `queue_memory` example) and small
//! shell programs that fail.

use std::path::PathBuf;

use super::*;

fn sdk_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sdk-python/src")
        .canonicalize()
        .expect("sdk-python/src")
}

fn spec(command: String) -> Spec {
    Spec::new("q", command, "/", Duration::from_secs(10))
}

async fn memory_queue() -> ProcExecQueue {
    let command = format!(
        "/usr/bin/env PYTHONPATH={} python3 -m smtpd_sdk.examples.queue_memory",
        sdk_python().display()
    );
    ProcExecQueue::start(spec(command)).await.expect("start")
}

#[test]
fn registrations_record_every_capability() {
    let p = QueueProtocol;
    let mut reg = Registration::default();
    assert!(matches!(
        p.register(b"register|leases", &mut reg),
        Ok(Registered::Ignored(_))
    ));
    assert!(matches!(
        p.register(b"register|leases", &mut reg),
        Ok(Registered::Ignored(_))
    ));
    assert!(p.register(b"register|", &mut reg).is_err());
    assert!(p
        .register(
            b"message-create-result|0000000000000001|ok|0badcafe",
            &mut reg
        )
        .is_err());
    assert_eq!(
        p.register(b"register|ready", &mut reg),
        Ok(Registered::Ready)
    );
    assert_eq!(reg.capabilities, ["leases"]);
    assert!(reg.has("leases") && !reg.has("other"));
    assert!(p.config().is_empty());
    assert_eq!(p.protocol(), "0.1");
}

#[test]
fn answers_are_keyed_by_request_id() {
    let p = QueueProtocol;
    match p.decode(b"message-create-result|00000000000000a1|ok|0badcafe") {
        Decoded::Answer { key, answer } => {
            assert_eq!(key, QueueId(0xa1));
            assert_eq!(answer.result, QueueResult::Created(MsgId(0x0bad_cafe)));
        }
        other => panic!("{other:?}"),
    }
    assert!(p.is_failure(&Response {
        op: OpKind::MessageRead,
        id: QueueId(1),
        result: QueueResult::Error(None),
    }));
    for (line, key) in [
        (
            &b"message-read-result|00000000000000a2|ok"[..],
            Some(QueueId(0xa2)),
        ),
        (
            b"envelope-load-result|00000000000000a3|found|",
            Some(QueueId(0xa3)),
        ),
        (
            b"envelope-walk-result|00000000000000a4|found|zz",
            Some(QueueId(0xa4)),
        ),
        (b"envelope-walk-result|00000000000000A4|done", None),
        (b"envelope-walk|00000000000000a4|done", None),
        (b"garbage", None),
        (b"", None),
    ] {
        match p.decode(line) {
            Decoded::Malformed { key: got, .. } => assert_eq!(got, key, "{line:?}"),
            other => panic!("{line:?} decoded as {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_message_goes_through_a_real_backend_in_chunks() {
    let q = memory_queue().await;
    assert_eq!(q.name(), "q");
    let msgid = q.message_create().await.expect("create");
    let evpid = q
        .envelope_create(msgid, b"version: 3\n")
        .await
        .expect("envelope");
    assert_eq!(evpid.msgid(), msgid);
    // Larger than a chunk, not a multiple of one, every byte value.
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    q.message_write(msgid, 0, &content[..70_000])
        .await
        .expect("write");
    q.message_write(msgid, 70_000, &content[70_000..])
        .await
        .expect("write");
    q.message_commit(msgid, content.len() as u64)
        .await
        .expect("commit");
    let mut read = Vec::new();
    loop {
        let chunk = q
            .message_read(msgid, read.len() as u64, 32_768)
            .await
            .expect("read")
            .expect("found");
        if chunk.is_empty() {
            break;
        }
        read.extend_from_slice(&chunk);
    }
    assert_eq!(read, content);
    assert!(matches!(
        q.message_read(msgid, 0, MAX_READ_LENGTH + 1).await,
        Err(Error::ReadTooLarge { .. })
    ));
    assert_eq!(
        q.envelope_walk(EvpId(0)).await.expect("walk"),
        Some((evpid, b"version: 3\n".to_vec()))
    );
    assert_eq!(q.envelope_walk(evpid).await.expect("walk"), None);
    assert!(q
        .envelope_update(evpid, b"version: 3\nretry: 1\n")
        .await
        .expect("update"));
    assert_eq!(
        q.envelope_load(evpid).await.expect("load").as_deref(),
        Some(&b"version: 3\nretry: 1\n"[..])
    );
    assert!(matches!(
        q.envelope_update(evpid, b"").await,
        Err(Error::EnvelopeSize { size: 0 })
    ));
    q.envelope_delete(evpid).await.expect("delete");
    assert_eq!(q.envelope_load(evpid).await.expect("load"), None);
    q.message_delete(msgid).await.expect("delete");
    assert_eq!(q.message_read(msgid, 0, 10).await.expect("read"), None);
    assert!(!q.message_corrupt(msgid).await.expect("corrupt"));
    q.shutdown().await;
    assert_eq!(*q.supervisor().state().borrow(), State::Stopped);
}

#[tokio::test]
async fn a_backend_error_is_a_temporary_failure_naming_the_backend() {
    // Answers every request `error|disk full`, keeping its id.
    let script = r#"/bin/sh -c 'while read -r l; do [ "$l" = config\|ready ] && break; done
echo register\|ready
while IFS="|" read -r q v ts op id rest; do echo "$op-result|$id|error|disk full"; done'"#;
    let q = ProcExecQueue::start(spec(script.to_owned()))
        .await
        .expect("start");
    let e = q.message_create().await.expect_err("error");
    assert_eq!(e.to_string(), "queue backend q: message-create: disk full");
    assert_eq!(e.smtp_status().code, 451);
    q.shutdown().await;
}

#[tokio::test]
async fn answers_that_do_not_fit_the_request_are_refused() {
    // Answers message-create with a message id, envelope-create with an
    // envelope of another message, and anything else with a result of
    // another operation.
    let script = r#"/bin/sh -c 'while read -r l; do [ "$l" = config\|ready ] && break; done
echo register\|ready
while IFS="|" read -r q v ts op id rest; do case $op in
message-create) echo "$op-result|$id|ok|0badcafe";;
envelope-create) echo "$op-result|$id|ok|0000000100000001";;
*) echo "message-delete-result|$id|ok";;
esac; done'"#;
    let q = ProcExecQueue::start(spec(script.to_owned()))
        .await
        .expect("start");
    let msgid = q.message_create().await.expect("create");
    let e = q
        .envelope_create(msgid, b"x")
        .await
        .expect_err("wrong message");
    assert!(
        e.to_string()
            .contains("envelope 0000000100000001 for message 0badcafe"),
        "{e}"
    );
    let e = q
        .envelope_load(EvpId(0x0bad_cafe_0000_0001))
        .await
        .expect_err("wrong type");
    assert!(
        e.to_string()
            .contains("message-delete-result to a envelope-load request"),
        "{e}"
    );
    q.shutdown().await;
}

#[tokio::test]
async fn a_dead_backend_fails_requests_and_its_return_is_announced() {
    // Passes the handshake, then dies at its first request.
    let script = r#"/bin/sh -c 'while read -r l; do [ "$l" = config\|ready ] && break; done
echo register\|ready
read -r l; exit 3'"#;
    let q = ProcExecQueue::start(spec(script.to_owned()))
        .await
        .expect("start");
    let mut recoveries = q.recoveries().expect("a proc-exec queue recovers");
    let before = *recoveries.borrow_and_update();
    let e = q.message_create().await.expect_err("died");
    assert!(
        matches!(e, Error::Backend { ref backend, .. } if backend == "q"),
        "{e}"
    );
    assert_eq!(e.smtp_status().code, 451);
    // The supervisor restarts it after its backoff.
    tokio::time::timeout(Duration::from_secs(30), recoveries.changed())
        .await
        .expect("restarted in time")
        .expect("still supervised");
    assert!(*recoveries.borrow() > before);
    q.shutdown().await;
}
