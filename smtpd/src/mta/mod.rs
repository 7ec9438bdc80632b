//! The MTA: relaying envelopes to other hosts over SMTP or LMTP.
//!
//! - [`route`]: the [`route::Destination`] of an envelope from its relay
//!   action (MX or smarthost, port, TLS policy, AUTH label).
//! - [`resolve`]: MX and address lookups, ordering, `backup` filtering.
//! - [`hosts`]: per-address state: connections, broken MXs and backoff.
//! - [`client`] speaks the client side of one SMTP/LMTP connection.

pub mod client;
pub mod hosts;
pub mod resolve;
pub mod route;
