use super::*;
use DeliveryType::{Bounce, Mda, Mta};

const M1: MsgId = MsgId(0x0000_00a1);
const M2: MsgId = MsgId(0x0000_00b2);

fn id(msg: MsgId, low: u32) -> EvpId {
    EvpId::new(msg, low)
}

/// One step of a scenario and what it must give.
#[derive(Debug)]
enum Step {
    Insert(EvpId, DeliveryType, u64, u64),
    /// `due(now)` hands out exactly these jobs, in this order.
    Due(u64, Vec<Job>),
    Report(EvpId, Outcome),
    /// The outcome is refused with this error.
    BadReport(EvpId, Outcome, StateError),
    Schedule(Target, usize),
    Remove(Target, usize),
    Suspend(Target, usize),
    Resume(Target, usize),
    /// `hold(evpid, holdq, now)`.
    Hold(EvpId, u64, u64),
    /// `release(kind, holdq, count)` releases this many.
    Release(DeliveryType, u64, Option<usize>, usize),
    Pause(DeliveryType),
    Unpause(DeliveryType),
    /// `next_wakeup(now)`.
    Wakeup(u64, Option<u64>),
    /// Envelopes known, and in flight.
    Count(usize, usize),
}

use Step::*;

fn deliver(evpid: EvpId, kind: DeliveryType) -> Job {
    Job {
        evpid,
        task: Task::Deliver(kind),
    }
}

fn expire(evpid: EvpId) -> Job {
    Job {
        evpid,
        task: Task::Expire,
    }
}

fn removed(evpid: EvpId) -> Job {
    Job {
        evpid,
        task: Task::Remove,
    }
}

fn run(name: &str, max_inflight: usize, steps: Vec<Step>) {
    let mut q = Ramqueue::new(max_inflight);
    for (n, step) in steps.into_iter().enumerate() {
        let at = format!("{name}, step {n}: {step:?}");
        match step {
            Insert(evpid, kind, sched, exp) => q.insert(evpid, kind, sched, exp).expect(&at),
            Due(now, jobs) => assert_eq!(q.due(now), jobs, "{at}"),
            Report(evpid, o) => q.outcome(evpid, o).expect(&at),
            BadReport(evpid, o, e) => assert_eq!(q.outcome(evpid, o), Err(e), "{at}"),
            Schedule(t, n) => assert_eq!(q.schedule(t), n, "{at}"),
            Remove(t, n) => assert_eq!(q.remove(t), n, "{at}"),
            Suspend(t, n) => assert_eq!(q.suspend(t), n, "{at}"),
            Resume(t, n) => assert_eq!(q.resume(t), n, "{at}"),
            Hold(evpid, holdq, now) => q.hold(evpid, holdq, now).expect(&at),
            Release(kind, holdq, count, n) => assert_eq!(q.release(kind, holdq, count), n, "{at}"),
            Pause(kind) => q.pause(kind),
            Unpause(kind) => q.unpause(kind),
            Wakeup(now, w) => assert_eq!(q.next_wakeup(now), w, "{at}"),
            Count(known, inflight) => {
                assert_eq!((q.len(), q.inflight()), (known, inflight), "{at}");
                assert_eq!(q.is_empty(), known == 0, "{at}");
            }
        }
    }
}

#[test]
fn scenarios() {
    let a = id(M1, 1);
    let b = id(M1, 2);
    let c = id(M2, 1);
    let retry = |t| Outcome::Tempfail(Next::Retry(t));
    let scenarios: Vec<(&str, usize, Vec<Step>)> = vec![
        (
            "delivered at once",
            10,
            vec![
                Wakeup(100, None),
                Insert(a, Mda, 100, 1000),
                Wakeup(50, Some(100)),
                Due(99, vec![]),
                Due(100, vec![deliver(a, Mda)]),
                Due(100, vec![]),
                Count(1, 1),
                Report(a, Outcome::Ok),
                Count(0, 0),
                Wakeup(100, None),
            ],
        ),
        (
            "tempfail then permfail",
            10,
            vec![
                Insert(a, Mta, 100, 1000),
                Due(100, vec![deliver(a, Mta)]),
                Report(a, retry(500)),
                Count(1, 0),
                Wakeup(101, Some(500)),
                Due(499, vec![]),
                Due(500, vec![deliver(a, Mta)]),
                Report(a, Outcome::Permfail),
                Count(0, 0),
            ],
        ),
        (
            "loop is forgotten",
            10,
            vec![
                Insert(b, Mda, 0, 1000),
                Due(0, vec![deliver(b, Mda)]),
                Report(b, Outcome::Loop),
                Count(0, 0),
            ],
        ),
        (
            "expiry before the next attempt",
            10,
            vec![
                Insert(a, Mta, 100, 1000),
                Due(100, vec![deliver(a, Mta)]),
                Report(a, Outcome::Tempfail(Next::Expire(1000))),
                Wakeup(200, Some(1000)),
                Due(999, vec![]),
                Due(1000, vec![expire(a)]),
                Count(0, 0),
            ],
        ),
        (
            "a late batch: expired envelopes are not delivered",
            10,
            vec![
                Insert(a, Mda, 100, 1000),
                Insert(b, Mda, 900, 1000),
                Due(1500, vec![expire(a), expire(b)]),
                Count(0, 0),
            ],
        ),
        (
            "round robin across lists, removals first",
            10,
            vec![
                Insert(a, Mda, 10, 1000),
                Insert(b, Mta, 10, 1000),
                Insert(c, Bounce, 10, 1000),
                Insert(id(M2, 2), Mda, 5, 8),
                Insert(id(M2, 3), Mda, 10, 1000),
                Remove(Target::Envelope(id(M2, 3)), 1),
                Due(
                    10,
                    vec![
                        removed(id(M2, 3)),
                        expire(id(M2, 2)),
                        deliver(c, Bounce),
                        deliver(a, Mda),
                        deliver(b, Mta),
                    ],
                ),
                Count(3, 3),
            ],
        ),
        (
            "earliest first within a list, ties by id",
            10,
            vec![
                Insert(c, Mda, 30, 1000),
                Insert(b, Mda, 20, 1000),
                Insert(a, Mda, 20, 1000),
                Due(40, vec![deliver(a, Mda), deliver(b, Mda), deliver(c, Mda)]),
            ],
        ),
        (
            "in-flight limit",
            2,
            vec![
                Insert(a, Mda, 0, 1000),
                Insert(b, Mda, 0, 1000),
                Insert(c, Mta, 0, 1000),
                Due(0, vec![deliver(a, Mda), deliver(c, Mta)]),
                // Every slot is taken and nothing is pending.
                Wakeup(0, None),
                Due(1, vec![]),
                Report(a, Outcome::Ok),
                Wakeup(1, Some(1)),
                Due(1, vec![deliver(b, Mda)]),
            ],
        ),
        (
            "pause and resume mda",
            10,
            vec![
                Pause(Mda),
                Insert(a, Mda, 0, 1000),
                Insert(c, Mta, 0, 1000),
                Due(0, vec![deliver(c, Mta)]),
                Wakeup(5, None),
                Due(5, vec![]),
                Unpause(Mda),
                Wakeup(5, Some(5)),
                Due(5, vec![deliver(a, Mda)]),
            ],
        ),
        (
            "schedule now, one, a message, all",
            10,
            vec![
                Insert(a, Mta, 400, 1000),
                Insert(b, Mta, 500, 1000),
                Insert(c, Mda, 600, 1000),
                Schedule(Target::Envelope(a), 1),
                Due(0, vec![deliver(a, Mta)]),
                // In flight: not scheduled again.
                Schedule(Target::Message(M1), 1),
                Due(0, vec![deliver(b, Mta)]),
                Schedule(Target::All, 1),
                Due(0, vec![deliver(c, Mda)]),
                Schedule(Target::Envelope(id(M2, 9)), 0),
            ],
        ),
        (
            "remove: pending at once, in flight after its attempt",
            10,
            vec![
                Insert(a, Mta, 0, 1000),
                Insert(b, Mta, 500, 1000),
                Due(0, vec![deliver(a, Mta)]),
                Remove(Target::Message(M1), 2),
                // Already being removed: not counted twice.
                Remove(Target::Message(M1), 0),
                Due(0, vec![removed(b)]),
                Count(1, 1),
                Report(a, retry(400)),
                Count(1, 0),
                Due(0, vec![removed(a)]),
                Count(0, 0),
                Remove(Target::All, 0),
            ],
        ),
        (
            "removed in flight, then delivered",
            10,
            vec![
                Insert(a, Mda, 0, 1000),
                Due(0, vec![deliver(a, Mda)]),
                Remove(Target::Envelope(a), 1),
                Report(a, Outcome::Ok),
                Due(0, vec![]),
                Count(0, 0),
            ],
        ),
        (
            "suspend and resume",
            10,
            vec![
                Insert(a, Mda, 10, 1000),
                Insert(b, Mda, 10, 1000),
                Suspend(Target::Envelope(a), 1),
                Suspend(Target::Envelope(a), 0),
                Due(20, vec![deliver(b, Mda)]),
                Wakeup(20, None),
                // Not made ready by schedule while suspended.
                Schedule(Target::All, 0),
                Resume(Target::Envelope(a), 1),
                Resume(Target::Envelope(a), 0),
                Due(20, vec![deliver(a, Mda)]),
            ],
        ),
        (
            "suspended while scheduled, and while in flight",
            10,
            vec![
                Insert(a, Mda, 0, 1000),
                Insert(b, Mta, 0, 1000),
                Pause(Mda),
                Due(0, vec![deliver(b, Mta)]),
                // a sits in the mda list; b is in flight.
                Suspend(Target::All, 2),
                Unpause(Mda),
                Due(0, vec![]),
                Report(b, retry(5)),
                Due(10, vec![]),
                Resume(Target::All, 2),
                Due(10, vec![deliver(a, Mda), deliver(b, Mta)]),
            ],
        ),
        (
            "a suspended envelope can be removed",
            10,
            vec![
                Insert(a, Mda, 0, 1000),
                Suspend(Target::All, 1),
                Remove(Target::All, 1),
                Due(0, vec![removed(a)]),
                Count(0, 0),
            ],
        ),
        (
            "held until released, oldest first",
            10,
            vec![
                Insert(a, Mta, 0, 1000),
                Insert(b, Mta, 0, 1000),
                Insert(c, Mta, 0, 1000),
                Due(0, vec![deliver(a, Mta), deliver(b, Mta), deliver(c, Mta)]),
                Hold(a, 7, 1),
                Hold(b, 7, 1),
                Hold(c, 8, 1),
                Count(3, 0),
                Wakeup(1, None),
                Due(5, vec![]),
                Release(Mta, 7, Some(1), 1),
                // Another type's queue of the same id holds nothing.
                Release(Mda, 8, None, 0),
                Due(5, vec![deliver(a, Mta)]),
                Release(Mta, 7, None, 1),
                Release(Mta, 7, None, 0),
                Due(5, vec![deliver(b, Mta)]),
                // schedule takes a held envelope out of its queue.
                Schedule(Target::Envelope(c), 1),
                Release(Mta, 8, None, 0),
                Due(5, vec![deliver(c, Mta)]),
            ],
        ),
        (
            "held envelopes can be removed and suspended",
            10,
            vec![
                Insert(a, Mta, 0, 1000),
                Insert(b, Mta, 0, 1000),
                Due(0, vec![deliver(a, Mta), deliver(b, Mta)]),
                Hold(a, 1, 0),
                Hold(b, 1, 0),
                Remove(Target::Envelope(a), 1),
                Suspend(Target::Envelope(b), 1),
                Release(Mta, 1, None, 0),
                Due(0, vec![removed(a)]),
                Resume(Target::Envelope(b), 1),
                Due(0, vec![deliver(b, Mta)]),
                // Removed while in flight, then held: removed.
                Remove(Target::Envelope(b), 1),
                Hold(b, 1, 0),
                Due(0, vec![removed(b)]),
                Count(0, 0),
            ],
        ),
        (
            "outcomes only for envelopes in flight",
            10,
            vec![
                BadReport(a, Outcome::Ok, StateError::Unknown(a)),
                Insert(a, Mda, 50, 1000),
                BadReport(a, Outcome::Ok, StateError::NotInflight(a)),
                Count(1, 0),
            ],
        ),
    ];
    for (name, max, steps) in scenarios {
        run(name, max, steps);
    }
}

#[test]
fn a_full_hold_queue_retries_soon() {
    let mut q = Ramqueue::default();
    let ids: Vec<EvpId> = (1..=HOLDQ_MAX as u32 + 1).map(|n| id(M1, n)).collect();
    for evpid in &ids {
        q.insert(*evpid, Mta, 0, 10_000).unwrap();
    }
    assert_eq!(q.due(0).len(), ids.len());
    for evpid in &ids {
        q.hold(*evpid, 42, 100).unwrap();
    }
    let last = *ids.last().unwrap();
    assert_eq!(q.get(ids[0]).unwrap().phase, Phase::Held(42));
    let overflow = q.get(last).unwrap();
    assert_eq!(
        (overflow.phase, overflow.sched),
        (Phase::Pending, 100 + HOLDQ_OVERFLOW_DELAY)
    );
    assert_eq!(q.next_wakeup(100), Some(103));
    assert_eq!(q.due(103), vec![deliver(last, Mta)]);
    assert_eq!(q.hold(ids[0], 1, 0), Err(StateError::NotInflight(ids[0])));
    assert_eq!(q.release(Mta, 42, None), HOLDQ_MAX);
}

#[test]
fn duplicate_insert_is_refused() {
    let mut q = Ramqueue::default();
    let a = id(M1, 1);
    q.insert(a, Mda, 0, 10).unwrap();
    assert_eq!(q.insert(a, Mta, 0, 10), Err(StateError::Duplicate(a)));
    let s = q.get(a).unwrap();
    assert_eq!(
        (s.kind, s.phase, s.sched, s.expire),
        (Mda, Phase::Pending, 0, 10)
    );
    assert!(!q.is_paused(Mda));
    q.pause(Mda);
    assert!(q.is_paused(Mda));
    assert_eq!(q.get(id(M2, 1)), None);
}

#[test]
fn state_reports_phase_and_flags() {
    let mut q = Ramqueue::default();
    let a = id(M1, 1);
    q.insert(a, Mta, 5, 100).unwrap();
    q.due(5);
    assert_eq!(q.get(a).unwrap().phase, Phase::Inflight);
    q.remove(Target::Envelope(a));
    assert!(q.get(a).unwrap().removed);
    q.outcome(a, Outcome::Tempfail(Next::Retry(50))).unwrap();
    assert_eq!(q.get(a).unwrap().phase, Phase::Scheduled);
}

#[test]
fn in_flight_limit_from_smtpd_conf() {
    let config: Config = "scheduler limit max-inflight 1\n\
action \"local\" maildir\n\
match for local action \"local\"\n"
        .parse()
        .expect("config");
    let mut q = Ramqueue::from_config(&config);
    q.insert(id(M1, 1), Mda, 0, 10).unwrap();
    q.insert(id(M1, 2), Mda, 0, 10).unwrap();
    assert_eq!(q.due(0), vec![deliver(id(M1, 1), Mda)]);
    assert_eq!(q.due(0), vec![]);
}
