//! Local delivery building blocks (delivery.md): recipient expansion and
//! the ways a message is written for a local user.
//!
//! - `format.rs`: `%{...}` format specifiers and their sanitising;
//! - `alias.rs`: alias values (aliases(5), `.forward` lines);
//! - `expand.rs`: what one recipient expands to, through the rules,
//!   `alias`/`virtual` tables, the userbase and `~/.forward`;
//! - `maildir.rs` and `mbox.rs`: writing a message into a maildir or an
//!   mbox file, durably, as the target user (the caller runs them in the
//!   delivery process);
//! - `lmtp.rs`: an LMTP session to a Unix socket or a TCP host;
//! - `mda.rs`: running a delivery command through `/bin/sh -c` as
//!   OpenSMTPD does (account, environment, time limit, exit statuses).
//!
//! - `message.rs`: the queued message as a delivery reads it (added
//!   headers, LF line endings, the loop check);
//! - `local.rs`: [`local::LocalAgent`], one queued envelope delivered with
//!   its action's method, as the account;
//! - `helper.rs`: the maildir and mbox writers run as the account when the
//!   daemon is root (`smtpd mail.maildir ...`).
//!
//! Intake calls [`expand::Expander`] at RCPT TO; the scheduler's driver
//! calls [`local::LocalAgent`] for each due local envelope.

pub mod alias;
pub mod expand;
pub mod format;
pub mod helper;
pub mod lmtp;
pub mod local;
pub mod maildir;
pub mod mbox;
pub mod mda;
pub mod message;

#[cfg(test)]
mod test_dir;
