use std::time::Duration;

use super::*;
use crate::queue::envelope::Bounce;
use crate::scheduler::fixture::{envelope, mda, mta};

const T0: u64 = 1_731_000_000;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn bounce(ctime: u64) -> Envelope {
    envelope(0x1234_5678, 3, Kind::Bounce(Bounce::Failed), ctime)
}

/// The table of queue.md 6.2: offsets of attempts 1 to 7 from creation.
#[test]
fn backoff_schedule_matches_opensmtpd() {
    let relay = [0, 400, 1600, 3600, 6400, 10000, 14400];
    let local = [0, 10, 40, 90, 160, 250, 360];
    let policy = RetryPolicy::default();
    for (retry, (r, l)) in relay.iter().zip(local).enumerate() {
        let mut e = mta(T0);
        e.retry = retry as u16;
        assert_eq!(
            policy.first_attempt(&e, None),
            Next::Retry(T0 + r),
            "mta {retry}"
        );
        let mut e = mda(T0);
        e.retry = retry as u16;
        assert_eq!(
            policy.first_attempt(&e, None),
            Next::Retry(T0 + l),
            "mda {retry}"
        );
        let mut e = bounce(T0);
        e.retry = retry as u16;
        assert_eq!(
            policy.first_attempt(&e, None),
            Next::Retry(T0 + l),
            "bounce {retry}"
        );
    }
}

/// After a tempfail: the first `ctime + BASE * n^2` after now, n >= retry.
#[test]
fn next_attempt_after_tempfail() {
    let policy = RetryPolicy::default();
    // (mta?, retry, now - T0, expected next - T0)
    let cases: &[(bool, u16, u64, Next)] = &[
        (true, 1, 0, Next::Retry(T0 + 400)),
        (true, 1, 399, Next::Retry(T0 + 400)),
        // Exactly at the attempt time: it is not in the future.
        (true, 1, 400, Next::Retry(T0 + 1600)),
        (true, 2, 5, Next::Retry(T0 + 1600)),
        // Late attempt (queue was paused): skips the past slots.
        (true, 1, 5000, Next::Retry(T0 + 6400)),
        (false, 1, 0, Next::Retry(T0 + 10)),
        (false, 3, 100, Next::Retry(T0 + 160)),
        (false, 1, 250, Next::Retry(T0 + 360)),
        // Near the end of the 4-day lifetime: 29^2 * 400 = 336400 < 345600,
        // 30^2 * 400 = 360000 is past it.
        (true, 29, 330_000, Next::Retry(T0 + 336_400)),
        (true, 29, 340_000, Next::Expire(T0 + 4 * DAY)),
        (true, 30, 0, Next::Expire(T0 + 4 * DAY)),
    ];
    for &(relay, retry, now, expected) in cases {
        let mut e = if relay { mta(T0) } else { mda(T0) };
        e.retry = retry;
        let got = policy.next_attempt(&e, None, T0 + now).next;
        assert_eq!(got, expected, "relay={relay} retry={retry} now=+{now}");
    }
}

/// About 30 attempts for a relayed envelope over the default 4 days.
#[test]
fn a_relayed_envelope_gets_about_thirty_attempts() {
    let policy = RetryPolicy::default();
    let mut e = mta(T0);
    let mut now = T0;
    let mut attempts = 1;
    loop {
        e.retry += 1;
        match policy.next_attempt(&e, None, now).next {
            Next::Retry(at) => {
                assert!(at > now);
                now = at;
                attempts += 1;
            }
            Next::Expire(at) => {
                assert_eq!(at, T0 + 4 * DAY);
                break;
            }
        }
    }
    assert_eq!(attempts, 30);
}

#[test]
fn lifetime_comes_from_the_action_then_the_queue() {
    let policy = RetryPolicy {
        ttl: Duration::from_secs(2 * DAY),
        warn_intervals: vec![],
    };
    let hour = Some(Duration::from_secs(HOUR));
    // (envelope, action ttl, expiry - T0)
    let cases: [(Envelope, Option<Duration>, u64); 5] = [
        (mda(T0), None, 2 * DAY),
        (mda(T0), hour, HOUR),
        (mta(T0), hour, HOUR),
        (mta(T0), None, 2 * DAY),
        // Bounces use the global value whatever the action says.
        (bounce(T0), hour, 2 * DAY),
    ];
    for (e, action, expected) in cases {
        assert_eq!(policy.expiry(&e, action), T0 + expected, "{:?}", e.kind);
    }
    // An expired envelope on load expires at once (its expiry is past).
    let mut e = mda(T0);
    e.retry = 5000;
    assert_eq!(policy.first_attempt(&e, hour), Next::Expire(T0 + HOUR));
    // The action's short ttl expires a local delivery early.
    let mut e = mda(T0);
    e.retry = 18;
    // 19^2 * 10 = 3610 >= 3600.
    assert_eq!(
        policy.next_attempt(&e, hour, T0 + 3240).next,
        Next::Expire(T0 + HOUR)
    );
}

/// Delay warnings: the first threshold reached by the next attempt and
/// not warned about yet, one per tempfail.
#[test]
fn warn_intervals_are_each_warned_once() {
    let policy = RetryPolicy {
        ttl: DEFAULT_TTL,
        warn_intervals: vec![
            Duration::from_secs(HOUR),
            Duration::from_secs(4 * HOUR),
            Duration::from_secs(DAY),
        ],
    };
    let warn = |delay: u64| Warning {
        delay,
        ttl: 4 * DAY,
        last_bounce: T0 + delay,
    };
    // (retry, now - T0, last_bounce - T0 or 0, warning)
    let cases: &[(u16, u64, u64, Option<Warning>)] = &[
        // Next attempt at +400: before every threshold.
        (1, 0, 0, None),
        // Next attempt at +1h (3^2 * 400 = 3600): reaches the first one.
        (3, 1700, 0, Some(warn(HOUR))),
        // Already warned about 1h: nothing until 4h.
        (4, 3600, HOUR, None),
        // Next attempt at +4h (6^2 * 400 = 14400 = 4h).
        (6, 10_001, HOUR, Some(warn(4 * HOUR))),
        // Both 1h and 4h reached, none warned: the first one only.
        (6, 10_001, 0, Some(warn(HOUR))),
        (8, 23_000, 4 * HOUR, None),
        // 15^2 * 400 = 90000 >= 1 day.
        (15, 80_000, 4 * HOUR, Some(warn(DAY))),
        (16, 90_000, DAY, None),
    ];
    for &(retry, now, last, expected) in cases {
        let mut e = mta(T0);
        e.retry = retry;
        e.last_bounce = if last == 0 { 0 } else { T0 + last };
        let got = policy.next_attempt(&e, None, T0 + now).warning;
        assert_eq!(got, expected, "retry={retry} now=+{now} last=+{last}");
    }
}

#[test]
fn default_warning_after_four_hours_and_none_for_bounces() {
    let policy = RetryPolicy::default();
    let mut e = mda(T0);
    e.retry = 1;
    let attempt = policy.next_attempt(&e, None, T0 + 4 * HOUR);
    assert_eq!(
        attempt.warning,
        Some(Warning {
            delay: 4 * HOUR,
            ttl: 4 * DAY,
            last_bounce: T0 + 4 * HOUR
        })
    );
    let mut b = bounce(T0);
    b.retry = 1;
    assert_eq!(policy.next_attempt(&b, None, T0 + 4 * HOUR).warning, None);
    let none = RetryPolicy {
        ttl: DEFAULT_TTL,
        warn_intervals: vec![],
    };
    assert_eq!(none.next_attempt(&e, None, T0 + 4 * HOUR).warning, None);
}

#[test]
fn settings_come_from_smtpd_conf() {
    let config: Config = "queue ttl 2d\n\
bounce warn-interval 1h, 6h\n\
action \"local\" maildir ttl 3h\n\
action \"out\" relay\n\
match from any for domain \"example.org\" action \"local\"\n\
match from local for any action \"out\"\n"
        .parse()
        .expect("config");
    let policy = RetryPolicy::from_config(&config);
    assert_eq!(
        policy,
        RetryPolicy {
            ttl: Duration::from_secs(2 * DAY),
            warn_intervals: vec![Duration::from_secs(HOUR), Duration::from_secs(6 * HOUR)],
        }
    );
    let local = RetryPolicy::action_ttl(&config, "local");
    assert_eq!(local, Some(Duration::from_secs(3 * HOUR)));
    assert_eq!(RetryPolicy::action_ttl(&config, "out"), None);
    assert_eq!(RetryPolicy::action_ttl(&config, "missing"), None);
    assert_eq!(policy.expiry(&mda(T0), local), T0 + 3 * HOUR);

    let defaults: Config = "action \"local\" maildir\n\
match for local action \"local\"\n"
        .parse()
        .expect("config");
    assert_eq!(RetryPolicy::from_config(&defaults), RetryPolicy::default());
}
