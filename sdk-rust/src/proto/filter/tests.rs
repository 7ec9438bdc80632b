use super::*;

fn round_trip<T: Line + std::fmt::Debug>(line: &[u8]) -> T {
    let parsed =
        T::parse(line).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(line)));
    let mut out = parsed.to_line().unwrap();
    assert_eq!(out.pop(), Some(b'\n'));
    assert_eq!(out, line, "{parsed:?}");
    parsed
}

const SID: &str = "a1b2c3d4e5f60718";

#[test]
fn every_report_event_round_trips() {
    let params = [
        "link-connect|a1b2c3d4e5f60718|host.example.net|pass|192.0.2.7:50123|198.51.100.2:25",
        "link-connect|a1b2c3d4e5f60718|<unknown>|error|unix:/var/run/smtpd.sock|unix:/var/run/smtpd.sock",
        "link-disconnect|a1b2c3d4e5f60718",
        "link-greeting|a1b2c3d4e5f60718|mx.example.org",
        "link-identify|a1b2c3d4e5f60718|EHLO|helo.example.net",
        "link-tls|a1b2c3d4e5f60718|TLSv1.3:TLS_AES_256_GCM_SHA384:256",
        "link-auth|a1b2c3d4e5f60718|pass|alice",
        "tx-reset|a1b2c3d4e5f60718|0badcafe",
        "tx-begin|a1b2c3d4e5f60718|0badcafe",
        "tx-mail|a1b2c3d4e5f60718|0badcafe|ok|alice@example.net",
        "tx-rcpt|a1b2c3d4e5f60718|0badcafe|permfail|nobody@example.org",
        "tx-envelope|a1b2c3d4e5f60718|0badcafe|0badcafe00000001",
        "tx-data|a1b2c3d4e5f60718|0badcafe|tempfail",
        "tx-commit|a1b2c3d4e5f60718|0badcafe|4096",
        "tx-rollback|a1b2c3d4e5f60718|0badcafe",
        "protocol-client|a1b2c3d4e5f60718|MAIL FROM:<a@b> SIZE=10",
        "protocol-server|a1b2c3d4e5f60718|250 2.0.0 Ok",
        "filter-report|a1b2c3d4e5f60718|proc|guard|note with | pipe",
        "filter-response|a1b2c3d4e5f60718|mail-from|reject|550 5.7.1 no",
        "filter-response|a1b2c3d4e5f60718|connected|proceed",
        "timeout|a1b2c3d4e5f60718",
        "some-future-event|a1b2c3d4e5f60718|x|y",
        "another-future-event|a1b2c3d4e5f60718",
    ];
    for p in params {
        for sub in ["smtp-in", "smtp-out"] {
            let line = format!("report|0.7|1731000000.100000|{sub}|{p}");
            let parsed: Input = round_trip(line.as_bytes());
            assert!(matches!(parsed, Input::Report(_)));
        }
    }
}

#[test]
fn every_phase_round_trips() {
    for phase in Phase::ALL {
        let line = format!("filter|0.7|1731000003.250000|smtp-in|{phase}|{SID}|5d0a000100000001|");
        round_trip::<Input>(line.as_bytes());
    }
    let parsed: Input = round_trip(b"filter|0.7|1.000000|smtp-in|connect|a1b2c3d4e5f60718|0000000000000001|host.example.net|192.0.2.7");
    let Input::Filter(req) = parsed else { panic!() };
    assert_eq!(
        req.connect_params(),
        Some(("host.example.net", "192.0.2.7"))
    );
    round_trip::<Input>(
        b"filter|0.7|1.000000|smtp-in|data-line|a1b2c3d4e5f60718|0000000000000001|caf\xe9 8-bit",
    );
}

#[test]
fn every_decision_round_trips() {
    for d in [
        "proceed",
        "junk",
        "reject|550 5.7.1 Sender not allowed",
        "disconnect|421 4.7.0 Try later",
        "rewrite|<postmaster@example.net>",
        "report|a note",
        "rewrite|",
    ] {
        let line = format!("filter-result|{SID}|5d0a000100000001|{d}");
        round_trip::<Output>(line.as_bytes());
    }
    for l in ["", ".", "..dotted", "a|b"] {
        let line = format!("filter-dataline|{SID}|5d0a000100000002|{l}");
        round_trip::<Output>(line.as_bytes());
    }
}

#[test]
fn bad_outputs_are_refused() {
    for line in [
        "filter-result|a1b2c3d4e5f60718|5d0a000100000001|proceed|x",
        "filter-result|a1b2c3d4e5f60718|5d0a000100000001|junk|x",
        "filter-result|a1b2c3d4e5f60718|5d0a000100000001|reject",
        "filter-result|a1b2c3d4e5f60718|5d0a000100000001|reject|",
        "filter-result|a1b2c3d4e5f60718|5d0a000100000001|maybe",
        "filter-result|zzzz|5d0a000100000001|proceed",
        "filter-result|a1b2c3d4e5f60718|proceed",
        "filter-result||5d0a000100000001|proceed",
        "filter-dataline|a1b2c3d4e5f60718|5d0a000100000002",
        "report|1731000000.100000|smtp-in|a1b2c3d4e5f60718|note",
    ] {
        assert!(Output::parse(line.as_bytes()).is_err(), "{line}");
    }
}

#[test]
fn lenient_ids_like_strtoull() {
    let out = Output::parse(b"filter-result|A1B2|1|proceed").unwrap();
    assert_eq!(
        out,
        Output::Result {
            session: SessionId(0xa1b2),
            token: Token(1),
            decision: Decision::Proceed
        }
    );
}

#[test]
fn registrations() {
    for line in [
        "register|report|smtp-in|link-connect",
        "register|report|smtp-out|*",
        "register|filter|smtp-in|data-line",
        "register|ready",
    ] {
        round_trip::<Register>(line.as_bytes());
    }
    for line in [
        "register|filter|smtp-out|connect",
        "register|report|smtp-in|no-such-event",
        "register|filter|smtp-in|no-such-phase",
        "register|ready|x",
    ] {
        assert!(Register::parse(line.as_bytes()).is_err(), "{line}");
    }
}
