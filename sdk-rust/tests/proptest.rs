//! Property tests of the codec: every typed line formats to bytes that parse
//! back to the same value, and no input whatsoever makes a parser panic.
//!
//! Typed strategies cover the table and queue families (whose types are
//! plain data); the filter family is covered by lines assembled from the
//! protocol's own vocabulary, which must survive parse → format → parse.

use proptest::prelude::*;
use smtpd_sdk::proto::{filter, queue, table, ConfigLine, EvpId, Line, MsgId, QueueId, TableId};
use smtpd_sdk::proto::{Timestamp, MAX_LINE};

/// Text that may sit in a last field: anything but `\n`, `|` included.
fn last_field() -> impl Strategy<Value = String> {
    "[^\n\r]{0,40}"
}

/// Text for a field other than the last one.
fn middle_field() -> impl Strategy<Value = String> {
    "[^\n\r|]{1,20}"
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0u64..=u64::from(u32::MAX), 0u32..1_000_000)
        .prop_map(|(secs, micros)| Timestamp { secs, micros })
}

fn service() -> impl Strategy<Value = table::Service> {
    proptest::sample::select(table::Service::ALL.to_vec())
}

fn table_op() -> impl Strategy<Value = table::Op> {
    prop_oneof![
        (service(), last_field()).prop_map(|(service, key)| table::Op::Check { service, key }),
        (service(), last_field()).prop_map(|(service, key)| table::Op::Lookup { service, key }),
        service().prop_map(|service| table::Op::Fetch { service }),
        Just(table::Op::Update),
    ]
}

fn table_request() -> impl Strategy<Value = table::Request> {
    (timestamp(), "[a-z0-9_.-]{1,12}", any::<u32>(), table_op()).prop_map(
        |(timestamp, table, id, op)| table::Request {
            timestamp,
            table,
            id: TableId(id),
            op,
        },
    )
}

fn table_response() -> impl Strategy<Value = table::Response> {
    use table::{OpKind, TableResult};
    let result = prop_oneof![
        Just(TableResult::Found),
        "[^\n\r]{1,40}".prop_map(TableResult::Value),
        Just(TableResult::NotFound),
        Just(TableResult::Ok),
        proptest::option::of(last_field()).prop_map(TableResult::Error),
    ];
    let op = proptest::sample::select(vec![
        OpKind::Check,
        OpKind::Lookup,
        OpKind::Fetch,
        OpKind::Update,
    ]);
    (op, any::<u32>(), result)
        .prop_filter("a legal answer to the operation", |(op, _, result)| {
            table::Response::is_valid_for(*op, result)
        })
        .prop_map(|(op, id, result)| table::Response {
            op,
            id: TableId(id),
            result,
        })
}

fn msgid() -> impl Strategy<Value = MsgId> {
    any::<u32>().prop_map(MsgId)
}

fn evpid() -> impl Strategy<Value = EvpId> {
    any::<u64>().prop_map(EvpId)
}

fn blob(min: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), min..200)
}

fn queue_op() -> impl Strategy<Value = queue::Op> {
    use queue::Op;
    prop_oneof![
        Just(Op::MessageCreate),
        (msgid(), any::<u64>(), blob(1)).prop_map(|(msgid, offset, data)| Op::MessageWrite {
            msgid,
            offset,
            data
        }),
        (msgid(), any::<u64>()).prop_map(|(msgid, size)| Op::MessageCommit { msgid, size }),
        (msgid(), any::<u64>(), 1u64..=1 << 20).prop_map(|(msgid, offset, length)| {
            Op::MessageRead {
                msgid,
                offset,
                length,
            }
        }),
        msgid().prop_map(|msgid| Op::MessageDelete { msgid }),
        msgid().prop_map(|msgid| Op::MessageCorrupt { msgid }),
        (msgid(), blob(1)).prop_map(|(msgid, data)| Op::EnvelopeCreate { msgid, data }),
        (evpid(), blob(1)).prop_map(|(evpid, data)| Op::EnvelopeUpdate { evpid, data }),
        evpid().prop_map(|evpid| Op::EnvelopeLoad { evpid }),
        evpid().prop_map(|evpid| Op::EnvelopeDelete { evpid }),
        evpid().prop_map(|after| Op::EnvelopeWalk { after }),
        (evpid(), "[A-Za-z0-9._:-]{1,64}", 1u64..=86_400).prop_map(|(evpid, instance, seconds)| {
            Op::EnvelopeClaim {
                evpid,
                instance,
                seconds,
            }
        }),
        (evpid(), "[A-Za-z0-9._:-]{1,64}")
            .prop_map(|(evpid, instance)| Op::EnvelopeRelease { evpid, instance }),
        (evpid(), "[A-Za-z0-9._:-]{1,64}")
            .prop_map(|(after, instance)| Op::EnvelopeWalkFree { after, instance }),
    ]
}

fn queue_request() -> impl Strategy<Value = queue::Request> {
    (timestamp(), any::<u64>(), queue_op()).prop_map(|(timestamp, id, op)| queue::Request {
        timestamp,
        id: QueueId(id),
        op,
    })
}

fn queue_response() -> impl Strategy<Value = queue::Response> {
    use queue::{OpKind, QueueResult};
    let result = prop_oneof![
        Just(QueueResult::Ok),
        msgid().prop_map(QueueResult::Created),
        evpid().prop_map(QueueResult::EnvelopeCreated),
        blob(0).prop_map(QueueResult::Data),
        (evpid(), blob(1)).prop_map(|(e, d)| QueueResult::Walked(e, d)),
        Just(QueueResult::NotFound),
        Just(QueueResult::Done),
        Just(QueueResult::Busy),
        proptest::option::of(last_field()).prop_map(QueueResult::Error),
    ];
    let op = proptest::sample::select(OpKind::ALL.to_vec());
    (op, any::<u64>(), result)
        .prop_filter("a legal answer to the operation", |(op, _, result)| {
            queue::Response::is_valid_for(*op, result)
        })
        .prop_map(|(op, id, result)| queue::Response {
            op,
            id: QueueId(id),
            result,
        })
}

/// Filter lines assembled from the protocol's vocabulary, with random
/// parameters: most parse, some do not; none may panic, and those that
/// parse must survive a format/parse round trip.
fn filter_input_line() -> impl Strategy<Value = String> {
    let phase = proptest::sample::select(filter::Phase::ALL.to_vec());
    let event = proptest::sample::select(filter::EventKind::ALL.to_vec());
    let sub = proptest::sample::select(vec!["smtp-in", "smtp-out"]);
    let params = proptest::collection::vec(middle_field(), 0..4);
    prop_oneof![
        (timestamp(), phase, any::<u64>(), any::<u64>(), last_field()).prop_map(
            |(ts, phase, sid, token, param)| format!(
                "filter|0.7|{ts}|smtp-in|{}|{sid:016x}|{token:016x}|{param}",
                phase.name()
            )
        ),
        (timestamp(), sub, event, any::<u64>(), params, last_field()).prop_map(
            |(ts, sub, event, sid, params, last)| {
                let mut line = format!("report|0.7|{ts}|{sub}|{}|{sid:016x}", event.name());
                for p in params {
                    line.push('|');
                    line.push_str(&p);
                }
                line.push('|');
                line.push_str(&last);
                line
            }
        ),
    ]
}

fn filter_output_line() -> impl Strategy<Value = String> {
    let decision = proptest::sample::select(vec![
        "proceed",
        "junk",
        "reject",
        "disconnect",
        "rewrite",
        "report",
    ]);
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            decision,
            proptest::option::of(last_field())
        )
            .prop_map(|(sid, token, decision, param)| match param {
                Some(p) => format!("filter-result|{sid:x}|{token:016X}|{decision}|{p}"),
                None => format!("filter-result|{sid:016x}|{token:x}|{decision}"),
            }),
        (any::<u64>(), any::<u64>(), last_field()).prop_map(|(sid, token, line)| format!(
            "filter-dataline|{sid:016x}|{token:016x}|{line}"
        )),
    ]
}

/// Parses, and when that succeeds checks that formatting gives a line that
/// parses to the same value.
fn reparses<T: Line + PartialEq + std::fmt::Debug>(line: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(parsed) = T::parse(line) {
        let out = parsed
            .to_line()
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(out.last(), Some(&b'\n'));
        let again = T::parse(&out[..out.len() - 1])
            .map_err(|e| TestCaseError::fail(format!("re-parse failed: {e}")))?;
        prop_assert_eq!(again, parsed);
    }
    Ok(())
}

fn exact_round_trip<T: Line + PartialEq + std::fmt::Debug>(value: &T) -> Result<(), TestCaseError> {
    let out = value
        .to_line()
        .map_err(|e| TestCaseError::fail(format!("format failed: {e:?}")))?;
    prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    let parsed = T::parse(&out[..out.len() - 1])
        .map_err(|e| TestCaseError::fail(format!("parse failed: {e}")))?;
    prop_assert_eq!(&parsed, value);
    Ok(())
}

/// Feeds the same bytes to every parser of every family.
fn parse_everything(line: &[u8]) {
    let _ = ConfigLine::parse(line);
    let _ = table::Register::parse(line);
    let _ = table::Request::parse(line);
    let _ = table::Response::parse(line);
    let _ = filter::Register::parse(line);
    let _ = filter::Input::parse(line);
    let _ = filter::Output::parse(line);
    let _ = queue::Register::parse(line);
    let _ = queue::Request::parse(line);
    let _ = queue::Response::parse(line);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn table_requests_round_trip(req in table_request()) {
        exact_round_trip(&req)?;
    }

    #[test]
    fn table_responses_round_trip(resp in table_response()) {
        exact_round_trip(&resp)?;
    }

    #[test]
    fn queue_requests_round_trip(req in queue_request()) {
        exact_round_trip(&req)?;
    }

    #[test]
    fn queue_responses_round_trip(resp in queue_response()) {
        exact_round_trip(&resp)?;
    }

    #[test]
    fn filter_inputs_reparse(line in filter_input_line()) {
        reparses::<filter::Input>(line.as_bytes())?;
    }

    #[test]
    fn filter_outputs_reparse(line in filter_output_line()) {
        reparses::<filter::Output>(line.as_bytes())?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        parse_everything(&line);
    }

    #[test]
    fn protocol_alphabet_never_panics(line in "[a-z0-9|.:\\-\n\r ]{0,120}") {
        parse_everything(line.as_bytes());
    }
}

#[test]
fn a_very_long_line_is_handled() {
    let mut line = b"lookup-result|00000001|found|".to_vec();
    line.resize(MAX_LINE, b'a');
    let parsed = table::Response::parse(&line).expect("a long value is legal");
    assert_eq!(parsed.to_line().expect("formats").len(), MAX_LINE + 1);
    parse_everything(&line);
}
