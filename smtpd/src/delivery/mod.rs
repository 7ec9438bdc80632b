//! Local delivery building blocks (delivery.md): recipient expansion and
//! the ways a message is written for a local user.
//!
//! - `format.rs`: `%{...}` format specifiers and their sanitising;

pub mod format;
