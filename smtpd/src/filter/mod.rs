//! Filters: built-in filters (`filter NAME phase PHASE match ...`),
//! proc-exec filters speaking filter protocol 0.7, chains of both, and the
//! report stream that tells filter processes what happens in sessions.
//!
//! [`builtin`] decides what one built-in filter does with what a session
//! knows at its phase.

pub mod builtin;
