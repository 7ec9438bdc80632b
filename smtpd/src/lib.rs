//! smtpd: an OpenSMTPD-compatible mail server whose tables, filters and
//! queue can be separate programs speaking line protocols.
//!
//! - [`config`]: smtpd.conf, parsed and checked into a [`config::Config`].

pub mod config;
