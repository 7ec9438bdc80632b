//! The MTA: relaying envelopes to other hosts over SMTP or LMTP.
//!
//! The scheduler's driver hands due `mta` envelopes to the [`Mta`] engine
//! (`engine.rs`), which batches them per message and destination and
//! delivers each batch (`deliver.rs`), one transaction per next-hop
//! address tried (`connect.rs`):
//!
//! - [`route`]: the [`route::Destination`] of an envelope from its relay
//!   action (MX or smarthost, port, TLS policy, AUTH label).
//! - [`resolve`]: MX and address lookups, ordering, `backup` filtering.
//! - [`hosts`]: per-address state: connections, broken MXs and backoff.
//! - `message.rs`: the message of a batch, streamed from the queue.
//! - [`pool`]: idle connections kept for reuse, and connection limits.
//! - [`report`]: smtp-out report events to the relay action's filters.
//! - [`show`]: `smtpctl show hosts|relays|routes`.
//! - [`srs`]: SRS rewriting of forwarded senders (`srs`).
//! - [`client`] speaks the client side of one SMTP/LMTP connection.

pub mod client;
mod connect;
mod deliver;
mod engine;
pub mod hosts;
mod message;
pub mod pool;
pub mod report;
pub mod resolve;
pub mod route;
pub mod show;
pub mod srs;

pub use deliver::rewrite_sender;
pub use engine::{Mta, RelayState, Settings, MAX_BATCH};
pub use show::Listing;
