//! DNS lookups for the daemon: the reverse name of every SMTP client (the
//! `Received:` header's `from HELO (RDNS [IP])`, the envelope's
//! `hostname:`, `%{rdns}`), forward-confirmed rDNS (the `rdns` and
//! `fcrdns` conditions of filters), and the MX and address lookups of
//! relaying.
//!
//! [`Resolver`] (`resolver.rs`) asks through `hickory-resolver`'s
//! nameserver pool over plain DNS (UDP with EDNS0, TCP when an answer is
//! truncated), configured only by [`Settings`] (`settings.rs`):
//! the nameservers and options of `/etc/resolv.conf`, of another file
//! (`smtpd --resolv-conf PATH`), or the nameservers named with `smtpd
//! --nameserver IP[:PORT]` (repeatable; they replace the file's). Nothing
//! else is read: not `/etc/hosts`, not the `search` list (every name is
//! asked as absolute), and there is no built-in fallback to a public
//! nameserver. The tests start their own nameserver on 127.0.0.1 and pass
//! it with `--nameserver`, so they never query the machine's.
//!
//! Every lookup ends within [`Settings::lookup_time`] (resolv.conf's
//! `timeout` × `attempts`, at most [`MAX_LOOKUP_TIME`]): a dead nameserver
//! delays a session, never stalls it, and a host where no nameserver
//! listens refuses at once (UDP sockets are connected, `connected.rs`).
//! Nothing is cached (as in OpenSMTPD's asr, the nameserver caches), and
//! no name is special: a client on 127.0.0.1 gets the PTR record the
//! nameserver serves. Each lookup tells a name that does not exist (`Ok`
//! with nothing) from a failure ([`Error`]: timeout, SERVFAIL, refused),
//! as the `fcrdns` states and relaying's temporary failures need.
//!
//! Intake calls [`Resolver::peer_name`] once per connection, before the
//! greeting, as OpenSMTPD does; a client without a name is `<unknown>`
//! ([`UNKNOWN`]).

mod connected;
mod resolver;
mod settings;

use std::fmt;

pub use resolver::Resolver;
pub use settings::{
    parse_nameserver, ResolvConfError, Settings, DEFAULT_RESOLV_CONF, DNS_PORT, MAX_LOOKUP_TIME,
};

/// What OpenSMTPD writes for a client without a reverse name.
pub const UNKNOWN: &str = "<unknown>";

/// Why a lookup gave no answer. A name that does not exist, or has no
/// record of the type asked, is no error: lookups answer it with nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No answer came within the lookup time.
    #[error("{query}: no answer within {seconds} s")]
    Timeout {
        /// What was asked, e.g. `PTR 192.0.2.1`.
        query: String,
        /// How long the resolver waited.
        seconds: u64,
    },
    /// The nameservers answered with an error or could not be reached.
    #[error("{query}: {reason}")]
    Failed {
        /// What was asked.
        query: String,
        /// The resolver's error.
        reason: String,
    },
    /// The name cannot be asked for (not a valid domain name).
    #[error("{name:?} is not a domain name: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The resolver does not use the network ([`Resolver::offline`]).
    #[error("{query}: DNS is off")]
    Offline {
        /// What was asked.
        query: String,
    },
}

/// The forward-confirmed rDNS state of a client, as OpenSMTPD reports it
/// to filters (`link-connect`'s FCRDNS field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fcrdns {
    /// The reverse name's addresses include the client's.
    Pass,
    /// No reverse name, or its addresses do not include the client's.
    Fail,
    /// A lookup failed (timeout, SERVFAIL).
    Error,
}

impl fmt::Display for Fcrdns {
    /// `pass`, `fail` or `error`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Error => "error",
        })
    }
}

/// What DNS says of a client, found once at connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName {
    /// The reverse name (PTR), without the final dot; `None` when there is
    /// none or the lookup failed.
    pub rdns: Option<String>,
    /// Whether the reverse name leads back to the client.
    pub fcrdns: Fcrdns,
}

impl PeerName {
    /// A client whose name was not looked up (`<unknown>`, FCrDNS error).
    pub fn unknown() -> Self {
        Self {
            rdns: None,
            fcrdns: Fcrdns::Error,
        }
    }

    /// The reverse name, or [`UNKNOWN`]: the text of the `Received:`
    /// header and of the envelope's `hostname:`.
    pub fn rdns_or_unknown(&self) -> &str {
        self.rdns.as_deref().unwrap_or(UNKNOWN)
    }
}

/// One mail exchanger of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Lower is tried first.
    pub preference: u16,
    /// The exchanger's host name, without the final dot. Empty for a null
    /// MX (RFC 7505: the domain accepts no mail).
    pub exchange: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_name_texts() {
        assert_eq!(PeerName::unknown().rdns_or_unknown(), "<unknown>");
        let named = PeerName {
            rdns: Some("mx.example.org".to_owned()),
            fcrdns: Fcrdns::Pass,
        };
        assert_eq!(named.rdns_or_unknown(), "mx.example.org");
        let states = [Fcrdns::Pass, Fcrdns::Fail, Fcrdns::Error].map(|s| s.to_string());
        assert_eq!(states, ["pass", "fail", "error"]);
    }
}
