//! The scheduler: when each envelope is tried again, when it expires, and
//! the delivery status notifications (bounces) sent to senders.
//!
//! Three pure parts, no clock reads and no I/O besides reading the
//! original message handed in:
//!
//! - [`retry`]: OpenSMTPD's backoff (`ctime + BASE * n^2`, 400 s for relay,
//!   10 s for local delivery and bounces), expiry after the lifetime
//!   (`queue ttl` or the action's `ttl`, 4 days by default) and the
//!   `bounce warn-interval` delay warnings (queue.md section 6.2, 6.3, 6.5).
//! - [`bounce`]: which failed envelopes get a bounce at all (never a bounce
//!   of a bounce, nor one to the null sender), OpenSMTPD's grouping of the
//!   recipients of one message into one notification, and the RFC 3464
//!   `multipart/report` message itself (delivery.md section 6).
//! - [`state`]: the in-memory scheduler state (OpenSMTPD's ramqueue,
//!   queue.md section 6.1): pending, scheduled, in-flight and suspended
//!   envelopes, what is due now, the outcome of each attempt, and the
//!   administrative commands (`schedule`, `remove`, `pause`, `resume`).
//!
//! - [`driver`]: the task that loads envelopes from the queue, hands due
//!   ones to local delivery, updates, bounces and deletes them; it owns
//!   the clock and the queue handle, and answers `smtpctl`'s queue
//!   commands through its [`Handle`].
//! - [`lease`]: taking part in a queue shared with other daemons (SPEC.md
//!   4.12): the instance id, lease length, walk period and lease renewal.

pub mod bounce;
pub mod driver;
pub mod lease;
pub mod retry;
pub mod state;

pub use bounce::{bounce_envelope, group, Action, BounceGroup, BounceMessage, NoBounce, Report};
pub use driver::{Answer, Control, Driver, Handle, Inbox, Listed, Relayed, Relayer, Stats};
pub use lease::Sharing;
pub use retry::{Attempt, DeliveryType, Next, RetryPolicy, Warning};
pub use state::{EnvelopeState, Job, Outcome, Phase, Ramqueue, StateError, Target, Task};

#[cfg(test)]
mod fixture;
