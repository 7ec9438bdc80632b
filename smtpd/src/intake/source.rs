//! Where an intake session comes from: a network client, or a local user
//! submitting through the Unix socket (`sendmail`), and how each of the
//! other modules sees that source: the rules (`from local` matches the
//! socket), the queue envelope (`source: local`) and the `Received:`
//! header (`[local]`).

use std::fmt;
use std::net::IpAddr;

use crate::queue::envelope as qenv;
use crate::rules;
use crate::smtp::Peer;

/// The client of an intake session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A network client.
    Ip(IpAddr),
    /// A local submission through the socket listener.
    Local {
        /// The submitting user's login name (from the socket's peer
        /// credentials), or the uid in decimal when it has no name.
        user: String,
    },
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl Source {
    /// The source the `match` rules test.
    pub fn rules(&self) -> rules::Source {
        match self {
            Self::Ip(ip) => rules::Source::Ip(*ip),
            Self::Local { .. } => rules::Source::Socket,
        }
    }

    /// The `source:` of the queue envelope.
    pub fn queue(&self) -> qenv::Source {
        match self {
            Self::Ip(IpAddr::V4(v4)) => qenv::Source::V4(*v4),
            Self::Ip(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => qenv::Source::V4(v4),
                None => qenv::Source::V6(*v6),
            },
            Self::Local { .. } => qenv::Source::Local,
        }
    }

    /// The client as the `Received:` header and the HELO answer show it.
    pub fn peer(&self) -> Peer {
        match self {
            Self::Ip(ip) => Peer::Ip(*ip),
            Self::Local { .. } => Peer::Local,
        }
    }

    /// The submitting user of a local session.
    pub fn local_user(&self) -> Option<&str> {
        match self {
            Self::Ip(_) => None,
            Self::Local { user } => Some(user),
        }
    }
}

/// `192.0.2.1`, `2001:db8::1`, or `local user NAME`, for the log.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Local { user } => write!(f, "local user {user}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn each_module_sees_its_own_form() {
        let local = Source::Local {
            user: "alice".into(),
        };
        assert_eq!(local.rules(), rules::Source::Socket);
        assert_eq!(local.rules().key(), "local");
        assert_eq!(local.queue(), qenv::Source::Local);
        assert_eq!(local.peer().to_string(), "[local]");
        assert_eq!(local.local_user(), Some("alice"));
        assert_eq!(local.to_string(), "local user alice");

        let v4 = Source::from(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(v4.rules().key(), "192.0.2.1");
        assert_eq!(v4.queue().to_string(), "192.0.2.1");
        assert_eq!(v4.peer().to_string(), "[192.0.2.1]");
        assert_eq!(v4.local_user(), None);

        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Source::from(mapped).queue().to_string(), "192.0.2.1");
        let v6 = Source::from(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(v6.queue().to_string(), "[::1]");
    }
}
