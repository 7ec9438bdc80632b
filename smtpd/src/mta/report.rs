//! smtp-out report events for relay actions with `filter NAME`, sent
//! through [`crate::filter::Outbound`] (one stream per connection), in
//! 7.8's order as far as the engine sees the session:
//!
//! - `link-connect` once the TCP connection is up (RDNS the next hop's
//!   name, FCRDNS `pass`, local and remote `ADDR:PORT`);
//! - after the session opened: `link-greeting` (the greeting's host
//!   name), `link-tls` when encrypted, `link-identify` (`EHLO`, `HELO` or
//!   `LHLO` and our name), `link-auth` when authenticated;
//! - per message: `tx-begin`, `tx-mail`, one `tx-rcpt` per recipient,
//!   `tx-data`, then `tx-commit` (the size) when a recipient was accepted,
//!   else `tx-rollback`;
//! - `link-disconnect` when the connection closes;
//! - `protocol-client` (each command, AUTH credentials masked, and the
//!   `.` ending a message) and `protocol-server` (each reply line) as the
//!   session sends and reads them, through the client's [`Transcript`]:
//!   so they come as they happen, before the link and transaction events
//!   of the same step, which are sent once the step is over.

use std::net::SocketAddr;

use smtpd_sdk::proto::filter::{AuthResult, Event, Fcrdns, TxResult};

use super::client::{Failure, PeerInfo, RcptResult, Said, Stage, Transcript};
use crate::filter::Outbound;
use crate::queue::MsgId;

/// A connection's report stream (nothing is sent without one).
#[derive(Clone, Default)]
pub struct Reports(Option<Outbound>);

impl Reports {
    /// Reports to `outbound`, if any.
    pub fn new(outbound: Option<Outbound>) -> Self {
        Self(outbound)
    }

    fn send(&self, event: Event) {
        if let Some(outbound) = &self.0 {
            outbound.report(event);
        }
    }

    /// The session's transcript forwarding its lines as `protocol-client`
    /// and `protocol-server` (none without a report stream).
    pub fn transcript(&self) -> Option<Transcript> {
        let outbound = self.0.clone()?;
        Some(Transcript::new(move |said| {
            outbound.report(match said {
                Said::Client(line) => Event::ProtocolClient {
                    line: line.to_owned(),
                },
                Said::Server(line) => Event::ProtocolServer {
                    line: line.to_owned(),
                },
            });
        }))
    }

    /// The TCP connection to `peer` (named `name`) is up from `local`.
    pub fn connected(&self, name: &str, local: Option<SocketAddr>, peer: SocketAddr) {
        self.send(Event::LinkConnect {
            rdns: name.to_owned(),
            fcrdns: Fcrdns::Pass,
            src: local.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            dest: peer.to_string(),
        });
    }

    /// The session opened, saying `helo` to the peer.
    pub fn opened(&self, info: &PeerInfo, helo: &str, user: Option<&str>) {
        if self.0.is_none() {
            return;
        }
        let hostname = info
            .greeting
            .lines()
            .first()
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        self.send(Event::LinkGreeting { hostname });
        if let Some(tls) = &info.tls {
            self.send(Event::LinkTls {
                info: format!("{}:{}:{}", tls.version, tls.cipher, tls.bits),
            });
        }
        self.send(Event::LinkIdentify {
            method: info.hello.to_owned(),
            identity: helo.to_owned(),
        });
        if let (true, Some(user)) = (info.authenticated, user) {
            self.send(Event::LinkAuth {
                result: AuthResult::Pass,
                username: user.to_owned(),
            });
        }
    }

    /// One transaction of message `msgid` (`size` bytes) from `sender` to
    /// `recipients` ended with `result`.
    pub fn transaction(
        &self,
        msgid: MsgId,
        size: u64,
        sender: &str,
        recipients: &[String],
        result: &Result<Vec<RcptResult>, Failure>,
    ) {
        if self.0.is_none() {
            return;
        }
        self.send(Event::TxBegin { msgid });
        let mail = match result {
            Err(f) if f.stage == Stage::MailFrom => tx_result(f),
            _ => TxResult::Ok,
        };
        self.send(Event::TxMail {
            msgid,
            result: mail,
            address: sender.to_owned(),
        });
        if mail != TxResult::Ok {
            self.send(Event::TxRollback { msgid });
            return;
        }
        let accepted = match result {
            Ok(results) => {
                for (address, result) in recipients.iter().zip(results) {
                    let result = match result {
                        Err(f) if f.stage == Stage::RcptTo => tx_result(f),
                        _ => TxResult::Ok,
                    };
                    self.send(Event::TxRcpt {
                        msgid,
                        result,
                        address: address.clone(),
                    });
                }
                results.iter().any(Result::is_ok)
            }
            Err(_) => false,
        };
        self.send(Event::TxData {
            msgid,
            result: match result {
                Err(f) => tx_result(f),
                Ok(_) if accepted => TxResult::Ok,
                Ok(results) => results
                    .iter()
                    .find_map(|r| r.as_ref().err())
                    .map_or(TxResult::Tempfail, tx_result),
            },
        });
        self.send(if accepted {
            Event::TxCommit { msgid, size }
        } else {
            Event::TxRollback { msgid }
        });
    }

    /// The connection closed.
    pub fn disconnected(&self) {
        self.send(Event::LinkDisconnect);
    }
}

fn tx_result(failure: &Failure) -> TxResult {
    if failure.is_temporary() {
        TxResult::Tempfail
    } else {
        TxResult::Permfail
    }
}
