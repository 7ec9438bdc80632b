//! smtpd: an OpenSMTPD-compatible mail server whose tables, filters and
//! queue can be separate programs speaking line protocols.
//!
//! - [`config`]: smtpd.conf, parsed and checked into a [`config::Config`].
//! - [`table`]: the `Table` interface and its kinds (static, proc-exec).
//! - [`control`]: the control socket that `smtpctl` speaks.
//! - [`daemon`]: the running process: start-up, the control server, signals.
//! - [`dns`]: the resolver: clients' reverse names, FCrDNS, MX and addresses.
//! - [`enqueue`]: `sendmail`, `mailq`, `newaliases`: local submission.
//! - [`intake`]: the SMTP listeners and sessions, into the queue.
//! - [`filter`]: built-in and proc-exec filters, chains, the report stream.
//! - [`log`]: the OpenSMTPD-style event lines; standard error or syslog.
//! - [`delivery`]: recipient expansion and local delivery (maildir, mbox).
//! - [`proc`]: the supervisor of backend programs (tables, filters, queue).
//! - [`rules`]: `match` evaluation, which rule applies to a recipient.
//! - [`smtp`]: the SMTP protocol core: line codec, commands, replies, session.
//! - [`mta`]: relaying to other hosts over SMTP and LMTP.
//! - [`queue`]: the queue store interface, envelopes, and the fs queue.
//! - [`scheduler`]: retry timing, expiry, bounces and the scheduler state.

pub mod config;
pub mod control;
pub mod daemon;
pub mod delivery;
pub mod dns;
pub mod enqueue;
pub mod filter;
pub mod intake;
mod interfaces;
pub mod log;
pub mod mta;
pub mod privsep;
pub mod proc;
pub mod queue;
pub mod rules;
pub mod scheduler;
pub mod smtp;
pub mod table;
