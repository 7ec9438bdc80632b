use super::*;

fn round_trip<T: Line + std::fmt::Debug + PartialEq>(line: &str) -> T {
    let parsed = T::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
    let out = parsed.to_line().unwrap();
    assert_eq!(out, format!("{line}\n").as_bytes());
    parsed
}

#[test]
fn requests_round_trip() {
    let r: Request =
        round_trip("table|0.1|1731000001.000412|vusers|lookup|credentials|5e3a91c0|alice");
    assert_eq!(r.id, TableId(0x5e3a91c0));
    assert_eq!(
        r.op,
        Op::Lookup {
            service: Service::Credentials,
            key: "alice".into()
        }
    );
    round_trip::<Request>(
        "table|0.1|1731000002.010101|vusers|check|mailaddr|77aa00ff|bob@example.org",
    );
    round_trip::<Request>("table|0.1|1731000200.120000|egress|fetch|source|11aa22bb");
    round_trip::<Request>("table|0.1|1731000100.000001|vusers|update|4d3c2b1a");
    let r: Request = round_trip("table|0.1|1.000000|t|lookup|alias|00000001|a|b|c");
    assert_eq!(
        r.op,
        Op::Lookup {
            service: Service::Alias,
            key: "a|b|c".into()
        }
    );
}

#[test]
fn responses_round_trip() {
    round_trip::<Response>("lookup-result|5e3a91c0|found|alice:$2b$09$abc");
    round_trip::<Response>("check-result|77aa00ff|not-found");
    round_trip::<Response>("check-result|77aa00ff|found");
    round_trip::<Response>("lookup-result|9b9b0001|error|database unavailable");
    round_trip::<Response>("lookup-result|9b9b0001|error");
    round_trip::<Response>("lookup-result|9b9b0001|error|");
    round_trip::<Response>("update-result|4d3c2b1a|ok");
    round_trip::<Response>("fetch-result|11aa22bb|found|[2001:db8::10]");
    let r: Response = round_trip("lookup-result|00000001|found|left|middle|right");
    assert_eq!(r.result, TableResult::Value("left|middle|right".into()));
}

#[test]
fn invalid_lines_are_refused() {
    for line in [
        "lookup-result|5e3a91c0|found|",
        "lookup-result|5e3a91c0|found",
        "lookup-result|5E3A91C0|not-found",
        "lookup-result|5e3a91c|not-found",
        "update-result|4d3c2b1a|ok|x",
        "check-result|77aa00ff|not-found|x",
        "check-result|77aa00ff|found|x",
        "update-result|4d3c2b1a|found",
        "frob-result|4d3c2b1a|ok",
        "lookup-result|00000001|found|a\r",
        "",
    ] {
        assert!(Response::parse(line.as_bytes()).is_err(), "{line}");
    }
    for line in [
        "table|0.2|1.000000|t|update|00000001",
        "table|0.1|1|t|update|00000001",
        "table|0.1|1.000000|t|update|00000001|x",
        "table|0.1|1.000000|t|fetch|source|00000001|x",
        "table|0.1|1.000000|t|lookup|alias|00000001",
        "table|0.1|1.000000|t|frob|00000001",
    ] {
        assert!(Request::parse(line.as_bytes()).is_err(), "{line}");
    }
}

#[test]
fn unknown_service_can_still_be_answered() {
    let err = Request::parse(b"table|0.1|1.000000|t|lookup|nosuch|0000abcd|key").unwrap_err();
    assert_eq!(err.problem, Problem::Unknown);
    let reply = err.reply_to.unwrap();
    assert_eq!(
        (reply.op.as_str(), reply.id.as_str()),
        ("lookup", "0000abcd")
    );
}

#[test]
fn formatting_refuses_forged_lines() {
    let req = Request {
        timestamp: Timestamp::default(),
        table: "t".into(),
        id: TableId(1),
        op: Op::Lookup {
            service: Service::Alias,
            key: "a\nb".into(),
        },
    };
    assert!(req.to_line().is_err());
    let req = Request {
        table: "a|b".into(),
        op: Op::Update,
        ..req
    };
    assert!(req.to_line().is_err());
    let resp = Response {
        op: OpKind::Lookup,
        id: TableId(1),
        result: TableResult::Value(String::new()),
    };
    assert!(resp.to_line().is_err());
}

#[test]
fn registrations() {
    round_trip::<Register>("register|credentials");
    round_trip::<Register>("register|ready");
    assert!(Register::parse(b"register|none").is_err());
    assert!(Register::parse(b"register|alias|x").is_err());
}
