//! Local delivery building blocks (delivery.md): recipient expansion and
//! the ways a message is written for a local user.
//!
//! - `alias.rs`: alias values (aliases(5), .forward lines);
//! - `format.rs`: `%{...}` format specifiers and their sanitising;

pub mod alias;
pub mod format;
