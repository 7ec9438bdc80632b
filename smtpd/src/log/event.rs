//! The catalogue: every OpenSMTPD-style event line the daemon logs, as an
//! [`Event`] whose `Display` is the line.
//!
//! The wording follows OpenSMTPD 7.x (`smtp_session.c`, `mda.c`,
//! `mta.c`, `queue.c`), so that tools written for its logs (fail2ban's
//! `opensmtpd` filter, pflogsumm-style reports) read ours:
//!
//! ```text
//! 3a2f1b0c4d5e6f70 smtp connected address=192.0.2.7 host=mx.example.net
//! 3a2f1b0c4d5e6f70 smtp tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256
//! 3a2f1b0c4d5e6f70 smtp authentication user=alice result=ok
//! 3a2f1b0c4d5e6f70 smtp failed-command command="RCPT TO:<x@example.org>" result="550 5.1.1 Invalid recipient: <x@example.org>"
//! 3a2f1b0c4d5e6f70 smtp bad-input result="500 5.5.2 Line too long"
//! 3a2f1b0c4d5e6f70 smtp message msgid=0badcafe size=1234 nrcpt=1 proto=ESMTP
//! 3a2f1b0c4d5e6f70 smtp envelope evpid=0badcafe00000001 from=<a@example.net> to=<b@example.org>
//! 3a2f1b0c4d5e6f70 smtp disconnected reason=quit
//! 77ab0c1d2e3f4051 mda delivery evpid=0badcafe00000001 from=<a@example.net> to=<b@example.org> rcpt=<b@example.org> user=b delay=2s result=Ok stat=Delivered
//! 77ab0c1d2e3f4051 mta delivery evpid=0badcafe00000002 from=<a@example.net> to=<c@example.com> rcpt=<c@example.com> source="-" relay="-" delay=1m result="TempFail" stat="..."
//! delivery: Expire for 0badcafe00000001: from=<a@example.net>, to=<b@example.org>, rcpt=<->, delay=4d, stat=Envelope expired
//! ```
//!
//! Where OpenSMTPD prints a client's bytes (the command of
//! `failed-command`, an AUTH user name) it escapes them with `strnvis(3)`;
//! here [`escape`] does the same job and also escapes `"` and `\`, so a
//! quoted field always ends at the first unescaped `"`. The command of a
//! failed AUTH never shows its credentials (see
//! [`super::shown_command`]). Two disconnection reasons are ours:
//! `shutdown` (the daemon stopped and answered 421) and `injection`
//! (input was buffered before a TLS handshake).

use std::fmt;
use std::net::IpAddr;

use crate::queue::envelope::MailAddr;
use crate::queue::{EvpId, MsgId};
use crate::smtp::Reply;

pub use smtpd_sdk::proto::SessionId;

/// How an AUTH attempt ended (`result=` of `smtp authentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// The credentials are good.
    Ok,
    /// They are not.
    Permfail,
    /// They could not be checked.
    Tempfail,
}

/// How a session ended (`reason=` of `smtp disconnected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'a> {
    /// The session closed it (QUIT, or a reply that ends the session).
    Quit,
    /// The client went away.
    Disconnect,
    /// The client was silent too long.
    Timeout,
    /// The daemon is stopping (421 sent).
    Shutdown,
    /// Input was buffered before a TLS handshake.
    Injection,
    /// A read, write or TLS error.
    IoError(&'a str),
}

/// How a delivery attempt ended (`result=` of `mda delivery` and `mta
/// delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Delivered.
    Ok,
    /// To be tried again.
    TempFail,
    /// Failed for good (a bounce follows).
    PermFail,
}

/// What happened to an envelope outside a delivery (`queue.c`'s lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// It stayed in the queue past its lifetime.
    Expire,
    /// An administrator removed it.
    Remove,
}

/// One event line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A client connected (after its reverse name was looked up); `None`
    /// is a local submission (`address=local`).
    Connected {
        /// The session.
        session: SessionId,
        /// The client's address.
        address: Option<IpAddr>,
        /// Its reverse name, `<unknown>` when it has none.
        host: &'a str,
    },
    /// The TLS handshake completed.
    Tls {
        /// The session.
        session: SessionId,
        /// The protocol version, `TLSv1.3`.
        version: &'a str,
        /// The cipher suite.
        cipher: &'a str,
        /// Its strength in bits.
        bits: u32,
    },
    /// An AUTH attempt ended.
    Authentication {
        /// The session.
        session: SessionId,
        /// The user name given.
        user: &'a str,
        /// How it ended.
        result: AuthResult,
    },
    /// A command got a 4xx or 5xx reply.
    FailedCommand {
        /// The session.
        session: SessionId,
        /// The command as logs may show it ([`super::shown_command`]).
        command: &'a [u8],
        /// The reply.
        result: &'a Reply,
    },
    /// A line that is no command (too long, a bare CR or LF) was refused.
    BadInput {
        /// The session.
        session: SessionId,
        /// The reply.
        result: &'a Reply,
    },
    /// A message was committed to the queue.
    Message {
        /// The session.
        session: SessionId,
        /// The message.
        msgid: MsgId,
        /// Its size in the queue.
        size: u64,
        /// The recipients accepted.
        nrcpt: usize,
        /// Whether the client said EHLO (`ESMTP`) rather than HELO.
        esmtp: bool,
    },
    /// One accepted recipient of a committed message.
    Envelope {
        /// The session.
        session: SessionId,
        /// The (last) envelope created for the recipient.
        evpid: EvpId,
        /// The sender, empty for the null sender.
        from: &'a MailAddr,
        /// The recipient as given at RCPT TO.
        to: &'a MailAddr,
    },
    /// A session ended.
    Disconnected {
        /// The session.
        session: SessionId,
        /// Why.
        reason: Reason<'a>,
    },
    /// A local delivery attempt ended.
    MdaDelivery {
        /// The delivery's session.
        session: SessionId,
        /// What was delivered.
        delivery: Delivery<'a>,
        /// The local user delivered to.
        user: &'a str,
    },
    /// A relay attempt ended.
    MtaDelivery {
        /// The relay session.
        session: SessionId,
        /// What was relayed.
        delivery: Delivery<'a>,
        /// The local address connected from, if any.
        source: Option<&'a str>,
        /// The relay connected to.
        relay: &'a str,
    },
    /// An envelope left the queue without a delivery.
    Queue {
        /// Why.
        action: QueueAction,
        /// The envelope.
        evpid: EvpId,
        /// Whether it is a local delivery (`delivery:`) or not (`relay:`).
        local: bool,
        /// Its sender.
        from: &'a MailAddr,
        /// Its final recipient.
        to: &'a MailAddr,
        /// The recipient as given at RCPT TO.
        rcpt: &'a MailAddr,
        /// Seconds since it was queued.
        delay: u64,
        /// The status text.
        stat: &'a str,
    },
}

/// The envelope facts and outcome a delivery line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// The envelope.
    pub evpid: EvpId,
    /// Its sender, empty for the null sender.
    pub from: &'a MailAddr,
    /// Its final recipient.
    pub to: &'a MailAddr,
    /// The recipient as given at RCPT TO.
    pub rcpt: &'a MailAddr,
    /// Seconds since it was queued.
    pub delay: u64,
    /// How it ended.
    pub result: DeliveryResult,
    /// The status text (`Delivered`, the error).
    pub stat: &'a str,
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Connected {
                session,
                address,
                host,
            } => write!(
                f,
                "{session} smtp connected address={} host={host}",
                Address(address)
            ),
            Self::Tls {
                session,
                version,
                cipher,
                bits,
            } => write!(f, "{session} smtp tls ciphers={version}:{cipher}:{bits}"),
            Self::Authentication {
                session,
                user,
                result,
            } => write!(
                f,
                "{session} smtp authentication user={} result={result}",
                escape(user.as_bytes())
            ),
            Self::FailedCommand {
                session,
                command,
                result,
            } => write!(
                f,
                "{session} smtp failed-command command=\"{}\" result=\"{}\"",
                escape(command),
                first_line(result)
            ),
            Self::BadInput { session, result } => write!(
                f,
                "{session} smtp bad-input result=\"{}\"",
                first_line(result)
            ),
            Self::Message {
                session,
                msgid,
                size,
                nrcpt,
                esmtp,
            } => write!(
                f,
                "{session} smtp message msgid={msgid} size={size} nrcpt={nrcpt} proto={}",
                if esmtp { "ESMTP" } else { "SMTP" }
            ),
            Self::Envelope {
                session,
                evpid,
                from,
                to,
            } => write!(
                f,
                "{session} smtp envelope evpid={evpid} from=<{}> to=<{}>",
                Mailbox(from),
                Mailbox(to)
            ),
            Self::Disconnected { session, reason } => {
                write!(f, "{session} smtp disconnected reason={reason}")
            }
            Self::MdaDelivery {
                session,
                delivery: d,
                user,
            } => write!(
                f,
                "{session} mda delivery evpid={} from=<{}> to=<{}> rcpt=<{}> user={} \
                 delay={} result={} stat={}",
                d.evpid,
                Mailbox(d.from),
                d.to,
                d.rcpt,
                escape(user.as_bytes()),
                Delay(d.delay),
                d.result,
                d.stat
            ),
            Self::MtaDelivery {
                session,
                delivery: d,
                source,
                relay,
            } => write!(
                f,
                "{session} mta delivery evpid={} from=<{}> to=<{}> rcpt=<{}> source=\"{}\" \
                 relay=\"{}\" delay={} result=\"{}\" stat=\"{}\"",
                d.evpid,
                Mailbox(d.from),
                d.to,
                d.rcpt,
                source.unwrap_or("-"),
                escape(relay.as_bytes()),
                Delay(d.delay),
                d.result,
                escape(d.stat.as_bytes())
            ),
            Self::Queue {
                action,
                evpid,
                local,
                from,
                to,
                rcpt,
                delay,
                stat,
            } => {
                // As queue.c: `<user@domain>` even for the null sender, and
                // the recipient only when it differs from the final one.
                let rcpt = if rcpt == to {
                    "-".to_owned()
                } else {
                    rcpt.to_string()
                };
                write!(
                    f,
                    "{}: {action} for {evpid}: from=<{from}>, to=<{to}>, rcpt=<{rcpt}>, \
                     delay={}, stat={stat}",
                    if local { "delivery" } else { "relay" },
                    Delay(delay)
                )
            }
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Permfail => "permfail",
            Self::Tempfail => "tempfail",
        })
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quit => f.write_str("quit"),
            Self::Disconnect => f.write_str("disconnect"),
            Self::Timeout => f.write_str("timeout"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::Injection => f.write_str("injection"),
            Self::IoError(error) => write!(f, "\"io-error: {}\"", escape(error.as_bytes())),
        }
    }
}

impl fmt::Display for DeliveryResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "Ok",
            Self::TempFail => "TempFail",
            Self::PermFail => "PermFail",
        })
    }
}

impl fmt::Display for QueueAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expire => "Expire",
            Self::Remove => "Remove",
        })
    }
}

/// A client address as OpenSMTPD's `ss_to_text`: `192.0.2.7`,
/// `IPv6:2001:db8::1`, `local`.
struct Address(Option<IpAddr>);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.map(|ip| ip.to_canonical()) {
            None => f.write_str("local"),
            Some(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Some(IpAddr::V6(v6)) => write!(f, "IPv6:{v6}"),
        }
    }
}

/// `user@domain`, or nothing for the null sender.
struct Mailbox<'a>(&'a MailAddr);

impl fmt::Display for Mailbox<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.user.is_empty(), self.0.domain.is_empty()) {
            (true, true) => Ok(()),
            (true, false) => f.write_str(&self.0.domain),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// A duration as OpenSMTPD's `duration_to_text`: `0s`, `42s`, `1m5s`,
/// `2h`, `4d3h2m1s`.
pub struct Delay(pub u64);

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        if t == 0 {
            return f.write_str("0s");
        }
        let (days, hours, minutes, seconds) = (t / 86_400, t / 3600 % 24, t / 60 % 60, t % 60);
        for (value, unit) in [(days, 'd'), (hours, 'h'), (minutes, 'm'), (seconds, 's')] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// The first line of a reply, escaped for a quoted field.
fn first_line(reply: &Reply) -> String {
    let text = reply.to_string();
    escape(text.lines().next().unwrap_or_default().as_bytes())
}

/// Bytes as a log field shows them: printable ASCII as is, except `\` and
/// `"` (backslashed), tab, CR and LF as `\t`, `\r`, `\n`, anything else
/// as a three-digit octal escape (`strnvis(3)` with `VIS_CSTYLE |
/// VIS_OCTAL`, plus `"`).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

#[cfg(test)]
#[path = "event/tests.rs"]
mod tests;
