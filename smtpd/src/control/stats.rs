//! `smtpctl show stats` and `smtpctl monitor`: which counters the daemon
//! reports, and how smtpctl prints them (smtpctl.md sections 4 and 6).
//!
//! [`counters`] names the daemon's counters with OpenSMTPD's keys, only
//! those touched since start, sorted as OpenSMTPD's stat backend keeps
//! them (by key); `uptime` is one of them. [`stat_lines`] prints them as
//! `key=value`, `uptime` as `uptime=SECONDS` and `uptime.human=XdYhZmWs`.
//!
//! OpenSMTPD keys this daemon has no counter for, and why:
//! `bounce.envelope`, `bounce.message`, `bounce.session` (bounces are
//! written into the queue directly, not sent over an SMTP session);
//! `mta.*` (relaying is not built yet); `queue.evpcache.*` (no envelope
//! cache: envelopes are read from the queue when needed); `queue.ram.*`
//! (no ram queue backend); `scheduler.envelope.incoming` (the scheduler
//! hears of envelopes at commit only), `scheduler.envelope.updated` and
//! `scheduler.ramqueue.update` (no update list); `scheduler.ramqueue.hold`,
//! `holdq`, `hold-overflow` (only relaying holds envelopes); `mda.user`
//! (deliveries are not grouped per user); `smtp.tls` (STARTTLS is not
//! counted by the session).
//!
//! [`monitor_header`] and [`monitor_line`] print OpenSMTPD's monitor: a
//! two-line header every 25 lines, then one line of 13 columns per
//! second: clients now, connections and disconnections since the last
//! line, envelopes now, enqueued, dequeued, delivered, temporary and
//! permanent failures, loops, expired, removed and bounces since the last
//! line (since start on the first).

use super::protocol::{Answer, Digest};
use crate::intake::SessionCounters;
use crate::scheduler::Stats;

/// Lines of `monitor` between two headers.
pub const MONITOR_HEADER_EVERY: u64 = 25;

/// The daemon's counters under OpenSMTPD's keys, only those touched
/// since start, sorted by key: `scheduler` from the scheduler, `sessions`
/// from intake, `control` the control connections open now, `uptime` in
/// seconds.
pub fn counters(
    scheduler: &Stats,
    sessions: &SessionCounters,
    control: u64,
    uptime: u64,
) -> Vec<(String, i64)> {
    let s = scheduler;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let z = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let mda_pending = s.mda_inflight.saturating_sub(s.mda_running);
    let candidates: [(&str, bool, i64); 21] = [
        ("control.session", true, n(control)),
        ("mda.envelope", s.mda_started > 0, z(s.mda_inflight)),
        ("mda.pending", s.mda_started > 0, z(mda_pending)),
        ("mda.running", s.mda_started > 0, z(s.mda_running)),
        ("queue.bounce", s.bounces > 0, n(s.bounces)),
        ("scheduler.delivery.loop", s.loops > 0, n(s.loops)),
        ("scheduler.delivery.ok", s.delivered > 0, n(s.delivered)),
        ("scheduler.delivery.permfail", s.permfail > 0, n(s.permfail)),
        ("scheduler.delivery.tempfail", s.tempfail > 0, n(s.tempfail)),
        ("scheduler.envelope", s.enqueued > 0, z(s.queued)),
        ("scheduler.envelope.expired", s.expired > 0, n(s.expired)),
        ("scheduler.envelope.inflight", s.started > 0, z(s.inflight)),
        ("scheduler.envelope.removed", s.removed > 0, n(s.removed)),
        ("scheduler.ramqueue.envelope", s.enqueued > 0, z(s.queued)),
        ("scheduler.ramqueue.message", s.enqueued > 0, z(s.messages)),
        (
            "smtp.session",
            sessions.all.opened > 0,
            n(sessions.all.current()),
        ),
        (
            "smtp.session.inet4",
            sessions.inet4.opened > 0,
            n(sessions.inet4.current()),
        ),
        (
            "smtp.session.inet6",
            sessions.inet6.opened > 0,
            n(sessions.inet6.current()),
        ),
        (
            "smtp.session.local",
            sessions.local.opened > 0,
            n(sessions.local.current()),
        ),
        (
            "smtp.smtps",
            sessions.smtps.opened > 0,
            n(sessions.smtps.current()),
        ),
        ("uptime", true, n(uptime)),
    ];
    let mut keys: Vec<(String, i64)> = candidates
        .into_iter()
        .filter(|(_, touched, _)| *touched)
        .map(|(key, _, value)| (key.to_owned(), value))
        .collect();
    keys.sort();
    keys
}

/// The counters `monitor` follows, from the same sources as [`counters`].
pub fn digest(scheduler: &Stats, sessions: &SessionCounters) -> Digest {
    let s = scheduler;
    Digest {
        clt_connect: sessions.all.opened,
        clt_disconnect: sessions.all.closed,
        evp_enqueued: s.enqueued,
        evp_dequeued: s.enqueued.saturating_sub(s.queued as u64),
        evp_expired: s.expired,
        evp_removed: s.removed,
        evp_bounce: s.bounces,
        dlv_ok: s.delivered,
        dlv_permfail: s.permfail,
        dlv_tempfail: s.tempfail,
        dlv_loop: s.loops,
    }
}

/// What `show stats` prints for its answer lines; `None` at the first
/// line that is no counter.
pub fn stat_lines(answers: &[Answer]) -> Option<String> {
    let mut out = String::new();
    for answer in answers {
        let Answer::Stat { key, value } = answer else {
            return None;
        };
        if key == "uptime" {
            out.push_str(&format!("uptime={value}\n"));
            out.push_str(&format!("uptime.human={}\n", duration_to_text(*value)));
        } else {
            out.push_str(&format!("{key}={value}\n"));
        }
    }
    Some(out)
}

/// A duration as OpenSMTPD writes it: `1d2h3m4s`, zero units left out,
/// `0s` for nothing, `-` before a negative one.
pub fn duration_to_text(seconds: i64) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    if seconds < 0 {
        out.push('-');
    }
    let t = seconds.unsigned_abs();
    let (days, hours, minutes, secs) = (t / 86_400, t / 3600 % 24, t / 60 % 60, t % 60);
    for (value, unit) in [(days, 'd'), (hours, 'h'), (minutes, 'm'), (secs, 's')] {
        if value != 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// The two header lines of `monitor`.
pub const MONITOR_HEADER: &str =
    "--- client ---  -- envelope --   ---- relay/delivery --- ------- misc -------\n\
     curr conn disc  curr  enq  deq   ok tmpfail prmfail loop expire remove bounce\n";

/// The header printed before line `count` (from 0) of `monitor`, if one
/// is due: every [`MONITOR_HEADER_EVERY`] lines, after a blank line but
/// the first time.
pub fn monitor_header(count: u64) -> Option<String> {
    match count % MONITOR_HEADER_EVERY {
        0 if count == 0 => Some(MONITOR_HEADER.to_owned()),
        0 => Some(format!("\n{MONITOR_HEADER}")),
        _ => None,
    }
}

/// One line of `monitor`: the state in `now`, the changes since `last`.
pub fn monitor_line(now: &Digest, last: &Digest) -> String {
    let delta = |a: u64, b: u64| a.saturating_sub(b);
    format!(
        "{:4} {:4} {:4}  {:4} {:4} {:4} {:4} {:4} {:4} {:4} {:4} {:4} {:4}\n",
        delta(now.clt_connect, now.clt_disconnect),
        delta(now.clt_connect, last.clt_connect),
        delta(now.clt_disconnect, last.clt_disconnect),
        delta(now.evp_enqueued, now.evp_dequeued),
        delta(now.evp_enqueued, last.evp_enqueued),
        delta(now.evp_dequeued, last.evp_dequeued),
        delta(now.dlv_ok, last.dlv_ok),
        delta(now.dlv_tempfail, last.dlv_tempfail),
        delta(now.dlv_permfail, last.dlv_permfail),
        delta(now.dlv_loop, last.dlv_loop),
        delta(now.evp_expired, last.evp_expired),
        delta(now.evp_removed, last.evp_removed),
        delta(now.evp_bounce, last.evp_bounce),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::Sessions;

    #[test]
    fn only_touched_counters_are_reported_sorted_by_key() {
        let fresh = counters(&Stats::default(), &SessionCounters::default(), 1, 42);
        assert_eq!(
            fresh,
            [("control.session".to_owned(), 1), ("uptime".to_owned(), 42)]
        );
        let scheduler = Stats {
            queued: 2,
            messages: 1,
            inflight: 1,
            enqueued: 5,
            started: 4,
            mda_inflight: 1,
            mda_running: 1,
            mda_started: 4,
            bounces: 1,
            delivered: 2,
            tempfail: 1,
            permfail: 1,
            removed: 1,
            ..Stats::default()
        };
        let sessions = SessionCounters {
            all: Sessions {
                opened: 3,
                closed: 2,
            },
            inet4: Sessions {
                opened: 2,
                closed: 2,
            },
            local: Sessions {
                opened: 1,
                closed: 0,
            },
            ..SessionCounters::default()
        };
        let text: Vec<String> = counters(&scheduler, &sessions, 2, 3700)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            text,
            [
                "control.session=2",
                "mda.envelope=1",
                "mda.pending=0",
                "mda.running=1",
                "queue.bounce=1",
                "scheduler.delivery.ok=2",
                "scheduler.delivery.permfail=1",
                "scheduler.delivery.tempfail=1",
                "scheduler.envelope=2",
                "scheduler.envelope.inflight=1",
                "scheduler.envelope.removed=1",
                "scheduler.ramqueue.envelope=2",
                "scheduler.ramqueue.message=1",
                "smtp.session=1",
                "smtp.session.inet4=0",
                "smtp.session.local=1",
                "uptime=3700",
            ]
        );
    }

    #[test]
    fn stats_print_as_key_value_lines_with_a_human_uptime() {
        let answers = [
            Answer::Stat {
                key: "scheduler.delivery.ok".into(),
                value: 7,
            },
            Answer::Stat {
                key: "uptime".into(),
                value: 93_784,
            },
        ];
        assert_eq!(
            stat_lines(&answers).unwrap(),
            "scheduler.delivery.ok=7\nuptime=93784\nuptime.human=1d2h3m4s\n"
        );
        assert_eq!(stat_lines(&[Answer::Succeeded]), None);
    }

    #[test]
    fn durations_as_openbsd_writes_them() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3600, "1h"),
            (3661, "1h1m1s"),
            (86_400, "1d"),
            (90_061, "1d1h1m1s"),
            (-61, "-1m1s"),
        ];
        for (seconds, text) in cases {
            assert_eq!(duration_to_text(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn monitor_prints_a_header_every_25_lines_and_deltas() {
        let first = monitor_header(0).unwrap();
        assert_eq!(
            first,
            "--- client ---  -- envelope --   ---- relay/delivery --- ------- misc -------\n\
             curr conn disc  curr  enq  deq   ok tmpfail prmfail loop expire remove bounce\n"
        );
        assert_eq!(monitor_header(1), None);
        assert_eq!(monitor_header(24), None);
        assert_eq!(monitor_header(25).unwrap(), format!("\n{first}"));
        let last = Digest {
            clt_connect: 10,
            clt_disconnect: 8,
            evp_enqueued: 20,
            evp_dequeued: 15,
            dlv_ok: 12,
            ..Digest::default()
        };
        let now = Digest {
            clt_connect: 13,
            clt_disconnect: 9,
            evp_enqueued: 24,
            evp_dequeued: 16,
            evp_expired: 1,
            evp_removed: 2,
            evp_bounce: 3,
            dlv_ok: 13,
            dlv_permfail: 4,
            dlv_tempfail: 5,
            dlv_loop: 6,
        };
        assert_eq!(
            monitor_line(&now, &last),
            "   4    3    1     8    4    1    1    5    4    6    1    2    3\n"
        );
        // The first line shows totals since start.
        assert_eq!(
            monitor_line(&last, &Digest::default()),
            "   2   10    8     5   20   15   12    0    0    0    0    0    0\n"
        );
    }
}
