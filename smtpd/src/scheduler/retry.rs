//! Retry timing, expiry and delay warnings (queue.md sections 6.2, 6.3
//! and 6.5), as pure functions of an envelope, the settings and a time
//! passed in (Unix seconds; nothing here reads a clock).
//!
//! OpenSMTPD's backoff counts from the creation time, not from the last
//! attempt: attempt `n` (from 0) is due at `ctime + BASE * n^2`, BASE being
//! 400 s for relaying and 10 s for local delivery and bounces. After a
//! temporary failure the next attempt is the first of these instants that
//! lies in the future, starting from the envelope's retry counter. An
//! envelope expires at `ctime + TTL` (the action's `ttl`, else `queue ttl`,
//! 4 days by default; bounces always use `queue ttl`); an attempt that
//! would fall at or after that instant becomes the expiry. On each
//! temporary failure the first `bounce warn-interval` threshold that the
//! next attempt reaches and that was not warned about yet gives one delay
//! warning, and the envelope's `last-bounce` records it.

use std::time::Duration;

use crate::config::Config;
use crate::queue::envelope::{Envelope, Kind};

/// Backoff base for relayed envelopes (`mta`), seconds.
pub const BACKOFF_RELAY: u64 = 400;

/// Backoff base for local deliveries and bounces, seconds.
pub const BACKOFF_LOCAL: u64 = 10;

/// The default envelope lifetime (`queue ttl`): 4 days.
pub const DEFAULT_TTL: Duration = Duration::from_secs(4 * 24 * 3600);

/// The default `bounce warn-interval` list: one warning after 4 hours.
pub const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// How an envelope is delivered, which picks its backoff and its ready
/// list in the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryType {
    /// Local delivery.
    Mda,
    /// Relay to another host.
    Mta,
    /// A bounce to inject.
    Bounce,
}

impl DeliveryType {
    /// The delivery type of an envelope.
    pub fn of(envelope: &Envelope) -> Self {
        match envelope.kind {
            Kind::Mda(_) => Self::Mda,
            Kind::Mta => Self::Mta,
            Kind::Bounce(_) => Self::Bounce,
        }
    }

    /// The backoff base in seconds.
    pub fn backoff_base(self) -> u64 {
        match self {
            Self::Mta => BACKOFF_RELAY,
            Self::Mda | Self::Bounce => BACKOFF_LOCAL,
        }
    }
}

/// The scheduler's timing settings, from smtpd.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `queue ttl`: the lifetime of envelopes whose action sets none.
    pub ttl: Duration,
    /// `bounce warn-interval`: delay warning thresholds, ascending.
    pub warn_intervals: Vec<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            warn_intervals: vec![DEFAULT_WARN_INTERVAL],
        }
    }
}

/// When an envelope is tried next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time (Unix seconds).
    Retry(u64),
    /// No attempt is left before the lifetime ends: the envelope expires at
    /// this time (Unix seconds, possibly already past).
    Expire(u64),
}

/// A delay warning to send after a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warning {
    /// The threshold reached (`bounce-delay`), seconds.
    pub delay: u64,
    /// The lifetime announced to the sender (`bounce-ttl`), seconds.
    pub ttl: u64,
    /// The new `last-bounce` of the envelope: `ctime + delay`.
    pub last_bounce: u64,
}

/// The result of [`RetryPolicy::next_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The next attempt, or the expiry.
    pub next: Next,
    /// The delay warning due now, if any.
    pub warning: Option<Warning>,
}

impl RetryPolicy {
    /// The settings of a configuration: `queue ttl` and
    /// `bounce warn-interval`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            ttl: config.queue.ttl,
            warn_intervals: config.bounce.warn_intervals.clone(),
        }
    }

    /// The `ttl` of the action named `dispatcher`, if it sets one (the
    /// `action_ttl` the other methods take).
    pub fn action_ttl(config: &Config, dispatcher: &str) -> Option<Duration> {
        config
            .actions
            .iter()
            .find(|a| a.name == dispatcher)
            .and_then(|a| a.ttl)
    }

    /// The lifetime of an envelope: `action_ttl` (the action's `ttl`) if
    /// set, else `queue ttl`; bounces always use `queue ttl`.
    pub fn lifetime(&self, envelope: &Envelope, action_ttl: Option<Duration>) -> u64 {
        let ttl = match (DeliveryType::of(envelope), action_ttl) {
            (DeliveryType::Bounce, _) | (_, None) => self.ttl,
            (_, Some(ttl)) => ttl,
        };
        ttl.as_secs()
    }

    /// When the envelope expires: creation time plus its lifetime.
    pub fn expiry(&self, envelope: &Envelope, action_ttl: Option<Duration>) -> u64 {
        envelope
            .ctime
            .saturating_add(self.lifetime(envelope, action_ttl))
    }

    /// The attempt for an envelope entering the scheduler (new, or loaded
    /// after a restart): `ctime + BASE * retry^2`, which may lie in the
    /// past (then it is due at once). A new envelope (retry 0) is tried at
    /// its creation time.
    pub fn first_attempt(&self, envelope: &Envelope, action_ttl: Option<Duration>) -> Next {
        let base = DeliveryType::of(envelope).backoff_base();
        let at = backoff(envelope.ctime, base, u64::from(envelope.retry));
        bounded(at, self.expiry(envelope, action_ttl))
    }

    /// The attempt after a temporary failure, the envelope's retry counter
    /// already incremented: the first `ctime + BASE * n^2` later than
    /// `now` with `n` at least the retry counter, or the expiry when that
    /// falls at or after the end of the lifetime; with the delay warning
    /// due, if any.
    pub fn next_attempt(
        &self,
        envelope: &Envelope,
        action_ttl: Option<Duration>,
        now: u64,
    ) -> Attempt {
        let base = DeliveryType::of(envelope).backoff_base();
        let mut step = u64::from(envelope.retry);
        let mut at = backoff(envelope.ctime, base, step);
        while at <= now {
            step += 1;
            at = backoff(envelope.ctime, base, step);
        }
        let ttl = self.lifetime(envelope, action_ttl);
        Attempt {
            next: bounded(at, self.expiry(envelope, action_ttl)),
            warning: self.warning(envelope, at, ttl),
        }
    }

    /// The first warn-interval threshold `T` with `ctime + T <= next_try`
    /// and `last-bounce < ctime + T`: one warning at a time, each threshold
    /// once. Bounces themselves are never warned about.
    fn warning(&self, envelope: &Envelope, next_try: u64, ttl: u64) -> Option<Warning> {
        if DeliveryType::of(envelope) == DeliveryType::Bounce {
            return None;
        }
        self.warn_intervals.iter().find_map(|interval| {
            let delay = interval.as_secs();
            let threshold = envelope.ctime.saturating_add(delay);
            (delay > 0 && next_try >= threshold && envelope.last_bounce < threshold).then_some(
                Warning {
                    delay,
                    ttl,
                    last_bounce: threshold,
                },
            )
        })
    }
}

/// An attempt at `at`, or the expiry if that is not earlier.
fn bounded(at: u64, expire: u64) -> Next {
    if at >= expire {
        Next::Expire(expire)
    } else {
        Next::Retry(at)
    }
}

/// `t0 + base * step^2`, saturating.
fn backoff(t0: u64, base: u64, step: u64) -> u64 {
    t0.saturating_add(base.saturating_mul(step.saturating_mul(step)))
}

#[cfg(test)]
mod tests;
