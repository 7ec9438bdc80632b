//! The conformance kit for smtpd backends, as a library.
//!
//! The `smtpd-conformance` binary starts a table, filter or queue backend
//! and replays the protocol vectors of `protocol-spec/vectors/` against it.
//! The pieces it is built from live here so that tests of other crates can
//! use them too:
//!
//! - [`vectors`]: the reader of the vector file format (files, cases,
//!   exchanges, placeholders) and the family rules that match a backend's
//!   answers to a case's expected lines.
//! - [`locate`]: the workspace, the standard fixture and the runner
//!   binary, for backend crates' tests.
//! - [`roundtrip`]: a table backend driven raw over its pipes, pipelined
//!   and one request at a time, for benchmarks.
//! - [`wire`]: every line of the three families through the one codec,
//!   `smtpd_sdk::proto`, sorted by direction.

pub mod locate;
pub mod roundtrip;
pub mod vectors;
pub mod wire;
