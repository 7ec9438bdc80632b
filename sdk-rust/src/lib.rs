//! The smtpd line protocols, as a library.
//!
//! smtpd talks to its plug-in programs (tables, filters, queue backends) over
//! pipe-delimited text lines on stdin/stdout. This crate is the one codec for
//! those lines, shared by the daemon and by every backend, plus helpers that
//! turn a few callbacks into a complete backend program.
//!
//! - [`proto`]: pure parse/format of every line of the three families
//!   (table 0.1, filter 0.7, queue 0.1). No I/O, no async runtime.
//! - [`codec`]: a tokio-util adapter that frames bytes into lines.
//! - [`table`], [`filter`], [`queue`] (in [`backend`]): one trait per
//!   family and a `run` function that performs the handshake and the
//!   request loop.
//! - [`tablefile`]: a parser of OpenSMTPD table(5) files.
//!
//! The wire format itself is specified in `protocol-spec/SPEC.md`.

pub mod proto;
pub mod tablefile;

#[cfg(feature = "tokio")]
pub mod backend;
#[cfg(feature = "tokio")]
pub mod codec;

#[cfg(feature = "tokio")]
pub use backend::{filter, queue, table};
