//! The MTA: relaying envelopes to other hosts over SMTP or LMTP.
//!
//! [`client`] speaks the client side of one SMTP/LMTP connection.

pub mod client;
