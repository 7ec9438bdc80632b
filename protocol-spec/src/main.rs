//! `smtpd-conformance`: runs a backend program through the protocol vectors.

fn main() {}
