//! Where a relay action sends an envelope, and how: the [`Destination`]
//! (OpenSMTPD's "relay") built from the action's options and the
//! envelope's domain. Envelopes with equal destinations share
//! connections; `smtpctl show relays` lists them.
//!
//! The destination is the recipient domain's MX hosts, or a smarthost
//! from `host <t>` (fetched round-robin) or `domain <t>` (looked up by the
//! recipient domain; a domain the table does not map goes by MX, as in
//! 7.8). Its TLS policy follows the URL's scheme and the `tls` option,
//! never weaker than either asks (smtpd-conf.md 6.2):
//!
//! | scheme | no `tls` | `tls` | `tls no-verify` |
//! |---|---|---|---|
//! | MX / `smtp://` | STARTTLS if offered | STARTTLS required, verified | required, unverified |
//! | `smtp+tls://` | required, verified | required, verified | required, unverified |
//! | `smtps://` | TLS on connect, verified | same | unverified |
//! | `smtp+notls://`, `lmtp://` | none | tempfail "TLS required for relaying" | same |
//!
//! An opportunistic STARTTLS verifies nothing (a certificate that does
//! not verify is still better than clear text), as in 7.8.

use std::fmt;

use crate::config::ActionId;
use crate::config::{Relay, RelayRoute, RelayScheme, RelayTls, RelayUrl};
use crate::table::{Service, Tables};

/// How TLS is used on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Never (`smtp+notls://`, `lmtp://`).
    Off,
    /// STARTTLS when the server offers it, clear text else.
    Opportunistic,
    /// STARTTLS, or no transaction at all.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// The protocol spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SMTP (EHLO, then HELO).
    Smtp,
    /// LMTP (LHLO, one reply per recipient after DATA).
    Lmtp,
}

/// Which hosts a destination connects to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The MX hosts of a domain.
    Mx {
        /// The recipient domain.
        domain: String,
        /// `backup`/`backup mx NAME`: only MXs more preferred than this
        /// name.
        backup: Option<String>,
    },
    /// One host (a name or an address literal).
    Host(String),
}

/// Where and how a group of envelopes is relayed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The relay action.
    pub action: ActionId,
    /// The hosts.
    pub target: Target,
    /// The URL's scheme as 7.8 writes it (`smtp` for MX relaying), for
    /// listings.
    pub scheme: &'static str,
    /// SMTP or LMTP.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// TLS use.
    pub tls: TlsMode,
    /// Whether the server's certificate must verify.
    pub verify: bool,
    /// The `auth` table key, from the URL.
    pub label: Option<String>,
}

/// Why no destination could be built: always temporary (configuration
/// or table trouble an administrator fixes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

impl Destination {
    /// The destination of an envelope for `domain` relayed by `action`
    /// (whose kind is `relay`). `server_name` is what `backup` compares
    /// MX names with.
    pub async fn of(
        tables: &Tables,
        action: ActionId,
        relay: &Relay,
        domain: &str,
        server_name: &str,
    ) -> Result<Self, RouteError> {
        let url = match relay.route {
            None => None,
            Some(RelayRoute::Host(table)) => {
                let table = tables.get(table);
                let text = table
                    .fetch(Service::Relayhost)
                    .await
                    .map_err(|e| RouteError(format!("relay host table: {e}")))?
                    .ok_or_else(|| {
                        RouteError(format!("relay host table {} is empty", table.name()))
                    })?;
                Some(parse_url(&text)?)
            }
            Some(RelayRoute::Domain(table)) => tables
                .get(table)
                .lookup(Service::Relayhost, &domain.to_ascii_lowercase())
                .await
                .map_err(|e| RouteError(format!("relay domain table: {e}")))?
                .map(|text| parse_url(&text))
                .transpose()?,
        };
        Self::build(action, relay, url, domain, server_name)
    }

    /// The destination for a known URL (or MX relaying when `None`).
    pub fn build(
        action: ActionId,
        relay: &Relay,
        url: Option<RelayUrl>,
        domain: &str,
        server_name: &str,
    ) -> Result<Self, RouteError> {
        let (target, scheme, label, port) = match url {
            Some(url) => (Target::Host(url.host), url.scheme, url.label, url.port),
            None => (
                Target::Mx {
                    domain: domain.to_ascii_lowercase(),
                    backup: relay
                        .backup
                        .as_ref()
                        .map(|backup| backup.mx.clone().unwrap_or_else(|| server_name.to_owned())),
                },
                RelayScheme::Smtp,
                None,
                None,
            ),
        };
        let (tls, verify) = tls_policy(scheme, relay.tls)?;
        let protocol = match scheme {
            RelayScheme::Lmtp => Protocol::Lmtp,
            _ => Protocol::Smtp,
        };
        let port = port.unwrap_or(match scheme {
            RelayScheme::Smtps => 465,
            _ => 25,
        });
        Ok(Self {
            action,
            target,
            scheme: scheme_name(scheme),
            protocol,
            port,
            tls,
            verify,
            label,
        })
    }

    /// The domain to look MX hosts up for, or the host's name.
    pub fn host_or_domain(&self) -> &str {
        match &self.target {
            Target::Mx { domain, .. } => domain,
            Target::Host(host) => host,
        }
    }
}

/// A relay URL from a table value, with the table's name in the error.
fn parse_url(text: &str) -> Result<RelayUrl, RouteError> {
    RelayUrl::parse(text.trim()).map_err(|e| RouteError(format!("invalid relay URL {text:?}: {e}")))
}

/// The TLS mode and verification for a scheme and a `tls` option.
pub fn tls_policy(
    scheme: RelayScheme,
    tls: Option<RelayTls>,
) -> Result<(TlsMode, bool), RouteError> {
    let verify = !matches!(tls, Some(RelayTls::NoVerify));
    match (scheme, tls) {
        (RelayScheme::Smtp, None) => Ok((TlsMode::Opportunistic, false)),
        (RelayScheme::Smtp | RelayScheme::SmtpTls, _) => Ok((TlsMode::StartTls, verify)),
        (RelayScheme::Smtps, _) => Ok((TlsMode::Implicit, verify)),
        (RelayScheme::SmtpNoTls | RelayScheme::Lmtp, None) => Ok((TlsMode::Off, false)),
        (RelayScheme::SmtpNoTls | RelayScheme::Lmtp, Some(_)) => {
            Err(RouteError("TLS required for relaying".to_owned()))
        }
    }
}

/// The name of a scheme as 7.8 writes it.
pub fn scheme_name(scheme: RelayScheme) -> &'static str {
    match scheme {
        RelayScheme::Smtp => "smtp",
        RelayScheme::SmtpTls => "smtp+tls",
        RelayScheme::SmtpNoTls => "smtp+notls",
        RelayScheme::Lmtp => "lmtp",
        RelayScheme::Smtps => "smtps",
    }
}

/// AUTH credentials for a relay URL's label.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The cleartext password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses a `credentials` value for `label` (tables.md 2.2):
    /// `user:password`, or a password alone whose user is the label.
    pub fn parse(label: &str, value: &str) -> Result<Self, RouteError> {
        let invalid = || RouteError(format!("invalid credentials for label {label}"));
        if value.len() < 3 {
            return Err(invalid());
        }
        match value.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(Self {
                user: user.to_owned(),
                password: password.to_owned(),
            }),
            Some(_) => Err(invalid()),
            None => Ok(Self {
                user: label.to_owned(),
                password: value.to_owned(),
            }),
        }
    }

    /// The credentials of the destination's label from the action's
    /// `auth` table; `None` without a label. A label without a table, or
    /// missing from it, is a temporary failure.
    pub async fn of(
        relay: &Relay,
        tables: &Tables,
        destination: &Destination,
    ) -> Result<Option<Self>, RouteError> {
        let Some(label) = &destination.label else {
            return Ok(None);
        };
        let Some(table) = relay.auth else {
            return Err(RouteError(format!(
                "relay URL has label {label} but the action has no auth table"
            )));
        };
        let table = tables.get(table);
        let value = table
            .lookup(Service::Credentials, label)
            .await
            .map_err(|e| RouteError(format!("auth table: {e}")))?
            .ok_or_else(|| {
                RouteError(format!(
                    "no credentials for label {label} in table {}",
                    table.name()
                ))
            })?;
        Self::parse(label, &value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backup;

    fn url(text: &str) -> Option<RelayUrl> {
        Some(RelayUrl::parse(text).unwrap())
    }

    fn action() -> ActionId {
        ActionId::from_index(0)
    }

    #[test]
    fn mx_relaying_is_opportunistic_on_port_25() {
        let d = Destination::build(action(), &Relay::default(), None, "Example.ORG", "me").unwrap();
        assert_eq!(
            d.target,
            Target::Mx {
                domain: "example.org".to_owned(),
                backup: None
            }
        );
        assert_eq!(
            (d.tls, d.verify, d.port),
            (TlsMode::Opportunistic, false, 25)
        );
        assert_eq!(d.protocol, Protocol::Smtp);
        assert_eq!(d.host_or_domain(), "example.org");
    }

    #[test]
    fn backup_names_ourselves_or_the_mx_given() {
        let mut relay = Relay {
            backup: Some(Backup { mx: None }),
            ..Relay::default()
        };
        let d = Destination::build(action(), &relay, None, "example.org", "mx2.me").unwrap();
        assert!(matches!(d.target, Target::Mx { backup: Some(ref b), .. } if b == "mx2.me"));
        relay.backup = Some(Backup {
            mx: Some("mx3.example.org".to_owned()),
        });
        let d = Destination::build(action(), &relay, None, "example.org", "mx2.me").unwrap();
        assert!(
            matches!(d.target, Target::Mx { backup: Some(ref b), .. } if b == "mx3.example.org")
        );
    }

    #[test]
    fn schemes_set_port_tls_and_protocol() {
        let relay = Relay::default();
        let cases = [
            (
                "smtp://h",
                TlsMode::Opportunistic,
                false,
                25,
                Protocol::Smtp,
            ),
            ("smtp+tls://h", TlsMode::StartTls, true, 25, Protocol::Smtp),
            (
                "smtp+tls://h:587",
                TlsMode::StartTls,
                true,
                587,
                Protocol::Smtp,
            ),
            ("smtps://h", TlsMode::Implicit, true, 465, Protocol::Smtp),
            ("smtp+notls://h", TlsMode::Off, false, 25, Protocol::Smtp),
            ("lmtp://h:24", TlsMode::Off, false, 24, Protocol::Lmtp),
        ];
        for (text, tls, verify, port, protocol) in cases {
            let d = Destination::build(action(), &relay, url(text), "x", "me").unwrap();
            assert_eq!(
                (d.tls, d.verify, d.port, d.protocol),
                (tls, verify, port, protocol),
                "{text}"
            );
            assert_eq!(d.target, Target::Host("h".to_owned()));
        }
    }

    #[test]
    fn tls_option_never_weakens_the_scheme() {
        let table = [
            (
                RelayScheme::Smtp,
                Some(RelayTls::Verify),
                Ok((TlsMode::StartTls, true)),
            ),
            (
                RelayScheme::Smtp,
                Some(RelayTls::NoVerify),
                Ok((TlsMode::StartTls, false)),
            ),
            (
                RelayScheme::SmtpTls,
                Some(RelayTls::NoVerify),
                Ok((TlsMode::StartTls, false)),
            ),
            (
                RelayScheme::Smtps,
                Some(RelayTls::NoVerify),
                Ok((TlsMode::Implicit, false)),
            ),
            (RelayScheme::Smtps, None, Ok((TlsMode::Implicit, true))),
        ];
        for (scheme, tls, expected) in table {
            assert_eq!(tls_policy(scheme, tls), expected, "{scheme:?} {tls:?}");
        }
        for scheme in [RelayScheme::SmtpNoTls, RelayScheme::Lmtp] {
            let e = tls_policy(scheme, Some(RelayTls::Verify)).unwrap_err();
            assert_eq!(e.0, "TLS required for relaying");
        }
    }

    #[test]
    fn labels_and_credentials() {
        let d = Destination::build(
            action(),
            &Relay::default(),
            url("smtp+tls://lbl@h:587"),
            "x",
            "me",
        )
        .unwrap();
        assert_eq!(d.label.as_deref(), Some("lbl"));
        let c = Credentials::parse("lbl", "joe:se:cret").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("joe", "se:cret"));
        let c = Credentials::parse("lbl", "secret").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("lbl", "secret"));
        for bad in ["ab", ":secret", "joe:"] {
            assert!(Credentials::parse("lbl", bad).is_err(), "{bad}");
        }
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[tokio::test]
    async fn a_label_without_auth_table_fails() {
        let d = Destination::build(action(), &Relay::default(), url("smtps://lbl@h"), "x", "me")
            .unwrap();
        let e = Credentials::of(&Relay::default(), &Tables::default(), &d)
            .await
            .unwrap_err();
        assert!(e.0.contains("no auth table"), "{e}");
        let plain =
            Destination::build(action(), &Relay::default(), url("smtps://h"), "x", "me").unwrap();
        assert_eq!(
            Credentials::of(&Relay::default(), &Tables::default(), &plain).await,
            Ok(None)
        );
    }
}
