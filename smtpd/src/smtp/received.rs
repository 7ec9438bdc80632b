//! The `Received:` header the server prepends to every message, in
//! OpenSMTPD's shape (`smtp_message_begin` in `smtp_session.c`), and the
//! client address text OpenSMTPD prints in it and in the HELO answer.
//!
//! ```text
//! Received: from HELO (RDNS [192.0.2.1])
//!         by HOST (smtpd) with ESMTPSA id 0a0b0c0d (TLSv1.3:CIPHER:256:NO) auth=yes user=NAME
//!         for <user@example.org>;
//!         Wed, 25 Nov 2026 15:35:28 +0000
//! ```
//!
//! `from ...` is left out with `mask-src`; the TLS part only on TLS
//! sessions, `auth=` only with `received-auth`; `for <...>` only for a
//! single recipient. The lines come without terminators, like the codec's
//! data lines, so the driver writes them to the message first. The date
//! comes formatted (RFC 5322), keeping this pure.

use std::fmt;
use std::net::IpAddr;

/// The client of a session, printed as OpenSMTPD prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A network client.
    Ip(IpAddr),
    /// The local socket.
    Local,
}

impl fmt::Display for Peer {
    /// `[192.0.2.1]`, `[IPv6:2001:db8::1]` or `[local]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
            Self::Local => f.write_str("[local]"),
        }
    }
}

/// The TLS parameters shown in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version, e.g. `TLSv1.3`.
    pub version: String,
    /// The cipher suite name.
    pub cipher: String,
    /// The cipher's strength in bits.
    pub bits: u32,
    /// Whether the client's certificate was verified.
    pub verified: bool,
}

/// Everything the header shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The HELO/EHLO name.
    pub helo: String,
    /// The client's reverse DNS name (`<unknown>` when there is none).
    pub rdns: String,
    /// The client.
    pub peer: Peer,
    /// The listener's host name.
    pub hostname: String,
    /// `mask-src`: leave out the `from` part.
    pub mask_source: bool,
    /// The session said EHLO.
    pub esmtp: bool,
    /// TLS parameters, on a TLS session.
    pub tls: Option<TlsInfo>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// `received-auth`: show `auth=` (TLS sessions only).
    pub received_auth: bool,
    /// The message id.
    pub msgid: u32,
    /// The recipient, when there is exactly one.
    pub single_recipient: Option<String>,
    /// The date, RFC 5322 formatted.
    pub date: String,
}

/// Control characters become spaces: the header must not gain lines.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Received {
    /// The header's lines, folded as OpenSMTPD folds them, without
    /// terminators.
    pub fn lines(&self) -> Vec<String> {
        let mut first = "Received: ".to_owned();
        if !self.mask_source {
            first += &format!(
                "from {} ({} {})",
                clean(&self.helo),
                clean(&self.rdns),
                self.peer
            );
        }
        let mut by = format!(
            "\tby {} (smtpd) with {}SMTP{}{} id {:08x}",
            clean(&self.hostname),
            if self.esmtp { "E" } else { "" },
            if self.tls.is_some() { "S" } else { "" },
            if self.user.is_some() { "A" } else { "" },
            self.msgid,
        );
        if let Some(tls) = &self.tls {
            by += &format!(
                " ({}:{}:{}:{})",
                clean(&tls.version),
                clean(&tls.cipher),
                tls.bits,
                if tls.verified { "YES" } else { "NO" }
            );
            if self.received_auth {
                match &self.user {
                    Some(user) => by += &format!(" auth=yes user={}", clean(user)),
                    None => by += " auth=no",
                }
            }
        }
        let mut lines = vec![first, by];
        if let Some(rcpt) = &self.single_recipient {
            lines.push(format!("\tfor <{}>;", clean(rcpt)));
        } else if let Some(last) = lines.last_mut() {
            last.push(';');
        }
        lines.push(format!("\t{}", clean(&self.date)));
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn sample() -> Received {
        Received {
            helo: "client.example".to_owned(),
            rdns: "client.example".to_owned(),
            peer: Peer::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            hostname: "mx.example.org".to_owned(),
            mask_source: false,
            esmtp: true,
            tls: None,
            user: None,
            received_auth: false,
            msgid: 0x0a0b_0c0d,
            single_recipient: Some("bob@example.org".to_owned()),
            date: "Wed, 25 Nov 2026 15:35:28 +0000".to_owned(),
        }
    }

    #[test]
    fn plain_session() {
        assert_eq!(
            sample().lines(),
            [
                "Received: from client.example (client.example [192.0.2.1])",
                "\tby mx.example.org (smtpd) with ESMTP id 0a0b0c0d",
                "\tfor <bob@example.org>;",
                "\tWed, 25 Nov 2026 15:35:28 +0000",
            ]
        );
    }

    #[test]
    fn tls_auth_masked_many_recipients() {
        let received = Received {
            mask_source: true,
            tls: Some(TlsInfo {
                version: "TLSv1.3".to_owned(),
                cipher: "TLS_AES_256_GCM_SHA384".to_owned(),
                bits: 256,
                verified: false,
            }),
            user: Some("alice".to_owned()),
            received_auth: true,
            single_recipient: None,
            esmtp: true,
            ..sample()
        };
        assert_eq!(
            received.lines(),
            [
                "Received: ",
                "\tby mx.example.org (smtpd) with ESMTPSA id 0a0b0c0d (TLSv1.3:TLS_AES_256_GCM_SHA384:256:NO) auth=yes user=alice;",
                "\tWed, 25 Nov 2026 15:35:28 +0000",
            ]
        );
        let no_auth = Received {
            user: None,
            ..received
        };
        assert!(no_auth.lines()[1].ends_with(":NO) auth=no;"));
    }

    #[test]
    fn peers_and_injection() {
        assert_eq!(Peer::Local.to_string(), "[local]");
        let v6 = Peer::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(v6.to_string(), "[IPv6:::1]");
        let evil = Received {
            helo: "x\r\nX-Injected: yes".to_owned(),
            esmtp: false,
            ..sample()
        };
        let lines = evil.lines();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| !l.contains('\n') && !l.contains('\r')));
        assert!(lines[1].contains("with SMTP id"));
    }
}
