use super::*;

fn round_trip<T: Line + std::fmt::Debug>(line: &str) -> T {
    let parsed = T::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
    let out = parsed.to_line().unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\n"));
    parsed
}

const TS: &str = "1731000001.000412";

#[test]
fn every_request_round_trips() {
    for args in [
        "message-create|0000000000000001",
        "message-write|0000000000000002|0badcafe|0|aGVsbG8=",
        "message-write|0000000000000002|0badcafe|32768|aGVsbG8=",
        "message-commit|0000000000000003|0badcafe|10",
        "message-read|0000000000000004|0badcafe|0|32768",
        "message-delete|0000000000000005|0badcafe",
        "message-corrupt|0000000000000006|0badcafe",
        "envelope-create|0000000000000007|0badcafe|dmVyc2lvbjogMQ==",
        "envelope-update|0000000000000008|0badcafe00000001|dmVyc2lvbjogMg==",
        "envelope-load|0000000000000009|0badcafe00000001",
        "envelope-delete|000000000000000a|0badcafe00000001",
        "envelope-walk|000000000000000b|0000000000000000",
    ] {
        round_trip::<Request>(&format!("queue|0.1|{TS}|{args}"));
    }
    let r: Request = round_trip(&format!(
        "queue|0.1|{TS}|message-write|0000000000000002|0badcafe|5|aGVsbG8="
    ));
    assert_eq!(
        r.op,
        Op::MessageWrite {
            msgid: MsgId(0x0badcafe),
            offset: 5,
            data: b"hello".to_vec()
        }
    );
}

#[test]
fn every_answer_round_trips() {
    for line in [
        "message-create-result|0000000000000001|ok|0badcafe",
        "message-write-result|0000000000000002|ok",
        "message-commit-result|0000000000000003|error|size mismatch",
        "message-read-result|0000000000000004|found|aGVsbG8=",
        "message-read-result|0000000000000004|found|",
        "message-read-result|0000000000000004|not-found",
        "message-delete-result|0000000000000005|ok",
        "message-corrupt-result|0000000000000006|not-found",
        "envelope-create-result|0000000000000007|ok|0badcafe00000001",
        "envelope-update-result|0000000000000008|not-found",
        "envelope-load-result|0000000000000009|found|dmVyc2lvbjogMQ==",
        "envelope-delete-result|000000000000000a|ok",
        "envelope-walk-result|000000000000000b|found|0badcafe00000001|dmVyc2lvbjogMQ==",
        "envelope-walk-result|000000000000000b|done",
        "envelope-walk-result|000000000000000b|error",
        "envelope-walk-result|000000000000000b|error|disk | on fire",
    ] {
        round_trip::<Response>(line);
    }
}

#[test]
fn bad_lines_are_refused() {
    for line in [
        "message-create-result|0000000000000001|ok",
        "message-create-result|0000000000000001|ok|00000000",
        "message-write-result|0000000000000002|found|aGVsbG8=",
        "message-read-result|0000000000000004|found|not base64!",
        "envelope-load-result|0000000000000009|found|",
        "envelope-create-result|0000000000000007|ok|0badcafe00000000",
        "envelope-walk-result|000000000000000b|found|0badcafe00000001",
        "envelope-walk-result|000000000000000b|found|0badcafe00000001|",
        "envelope-walk-result|000000000000000b|ok",
        "message-delete-result|0000000000000005|ok|extra",
        "frob-result|0000000000000005|ok",
        "message-delete-result|00000005|ok",
    ] {
        assert!(Response::parse(line.as_bytes()).is_err(), "{line}");
    }
    for args in [
        "message-write|0000000000000002|0badcafe|0|",
        "message-write|0000000000000002|00000000|0|aGVsbG8=",
        "envelope-create|0000000000000006|0badcafe|",
        "envelope-update|0000000000000006|0badcafe00000001|",
        "message-commit|0000000000000003|0badcafe|-1",
        "envelope-load|0000000000000009|0badcafe",
        "envelope-walk|000000000000000b",
        "message-create|0000000000000001|x",
    ] {
        assert!(
            Request::parse(format!("queue|0.1|{TS}|{args}").as_bytes()).is_err(),
            "{args}"
        );
    }
}

#[test]
fn unknown_operations_can_still_be_answered() {
    let err = Request::parse(format!("queue|0.1|{TS}|message-frob|00000000000000ff|x").as_bytes())
        .unwrap_err();
    let reply = err.reply_to.unwrap();
    assert_eq!(
        (reply.op.as_str(), reply.id.as_str()),
        ("message-frob", "00000000000000ff")
    );
    let err =
        Request::parse(format!("queue|0.1|{TS}|envelope-load|00000000000000ff|zz").as_bytes())
            .unwrap_err();
    assert_eq!(err.reply_to.unwrap().op, "envelope-load");
}

#[test]
fn lease_requests_round_trip() {
    for args in [
        "envelope-claim|0000000000000001|0badcafe00000001|mx1.example.org:4f2a|60",
        "envelope-claim|0000000000000001|0badcafe00000001|a|86400",
        "envelope-release|0000000000000002|0badcafe00000001|mx1.example.org:4f2a",
        "envelope-walk-free|0000000000000003|0000000000000000|mx1.example.org:4f2a",
    ] {
        round_trip::<Request>(&format!("queue|0.1|{TS}|{args}"));
    }
    let r: Request = round_trip(&format!(
        "queue|0.1|{TS}|envelope-claim|0000000000000001|0badcafe00000001|mx-1_a.b|30"
    ));
    assert_eq!(
        r.op,
        Op::EnvelopeClaim {
            evpid: EvpId(0x0bad_cafe_0000_0001),
            instance: "mx-1_a.b".into(),
            seconds: 30
        }
    );
    assert!(r.op.kind().needs_lease());
    assert!(!OpKind::EnvelopeWalk.needs_lease());
}

#[test]
fn lease_answers_round_trip() {
    for line in [
        "envelope-claim-result|0000000000000001|ok",
        "envelope-claim-result|0000000000000001|busy",
        "envelope-claim-result|0000000000000001|not-found",
        "envelope-claim-result|0000000000000001|error|database down",
        "envelope-release-result|0000000000000002|ok",
        "envelope-walk-free-result|0000000000000003|found|0badcafe00000001|dmVyc2lvbjogMQ==",
        "envelope-walk-free-result|0000000000000003|done",
    ] {
        round_trip::<Response>(line);
    }
    for line in [
        "envelope-walk-result|0000000000000001|busy",
        "envelope-release-result|0000000000000002|busy",
        "envelope-release-result|0000000000000002|not-found",
        "envelope-claim-result|0000000000000001|busy|someone",
        "envelope-claim-result|0000000000000001|done",
        "envelope-walk-free-result|0000000000000003|ok",
    ] {
        assert!(Response::parse(line.as_bytes()).is_err(), "{line}");
    }
}

#[test]
fn bad_lease_requests_are_refused() {
    for args in [
        "envelope-claim|0000000000000001|0badcafe00000001|mx1|0",
        "envelope-claim|0000000000000001|0badcafe00000001|mx1|86401",
        "envelope-claim|0000000000000001|0badcafe00000001||60",
        "envelope-claim|0000000000000001|0badcafe00000001|mx 1|60",
        "envelope-claim|0000000000000001|0badcafe00000001|mx1",
        "envelope-claim|0000000000000001|0000000000000000|mx1|60",
        "envelope-release|0000000000000002|0badcafe00000001",
        "envelope-release|0000000000000002|0badcafe00000001|mx1|60",
        "envelope-walk-free|0000000000000003|0000000000000000",
        "envelope-walk-free|0000000000000003|0000000000000000|m/x",
    ] {
        let err = Request::parse(format!("queue|0.1|{TS}|{args}").as_bytes()).unwrap_err();
        assert!(err.reply_to.is_some(), "{args}: the error can be answered");
    }
    let long = "x".repeat(MAX_INSTANCE_LEN + 1);
    assert!(!is_instance_id(&long));
    assert!(is_instance_id(&long[1..]));
    let bad = Request {
        timestamp: Timestamp::parse(TS.as_bytes()).unwrap(),
        id: QueueId(1),
        op: Op::EnvelopeRelease {
            evpid: EvpId(0x0bad_cafe_0000_0001),
            instance: "a|b".into(),
        },
    };
    assert!(bad.to_line().is_err(), "a | in an instance id is refused");
    let bad = Request {
        op: Op::EnvelopeClaim {
            evpid: EvpId(0x0bad_cafe_0000_0001),
            instance: "a".into(),
            seconds: 0,
        },
        ..bad
    };
    assert!(bad.to_line().is_err(), "a lease of 0 s is refused");
}
