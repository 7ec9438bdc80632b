//! The [`Resolver`]: hickory's pool of nameservers (UDP with EDNS0, then
//! TCP for a truncated answer; retries and per-query timeouts from
//! [`Settings`]; UDP sockets connected by `connected.rs`) asked directly,
//! each lookup bounded in time and its outcome sorted into "found",
//! "nothing there" and [`Error`].
//!
//! Not `hickory_resolver::Resolver`: it answers RFC 6761's special names
//! itself, so every client on 127.0.0.0/8 or ::1 would be `localhost`
//! without a query, whatever the nameserver says. Nothing is cached here
//! either, as in OpenSMTPD's asr: the nameserver (a local caching
//! resolver) caches.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverOpts};
use hickory_resolver::name_server::NameServerPool;
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::{DnsHandle, DnsRequestOptions, Protocol, RetryDnsHandle};
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};
use hickory_resolver::Name;

use super::connected::{ConnectedUdp, Connector};
use super::{Error, Fcrdns, Mx, PeerName, Settings};

/// The nameservers, with retries.
type Client = RetryDnsHandle<NameServerPool<Connector>>;

/// A DNS resolver, cheap to clone (clones share connections).
#[derive(Clone)]
pub struct Resolver {
    /// `None` for [`Resolver::offline`].
    client: Option<Client>,
    nameservers: Vec<SocketAddr>,
    lookup_time: Duration,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("offline", &self.client.is_none())
            .field("nameservers", &self.nameservers)
            .field("lookup_time", &self.lookup_time)
            .finish()
    }
}

impl Resolver {
    /// A resolver asking the nameservers of `settings`. It opens no socket
    /// before its first lookup, which must run inside a Tokio runtime.
    pub fn new(settings: &Settings) -> Self {
        let mut nameservers = NameServerConfigGroup::with_capacity(settings.nameservers.len() * 2);
        for &addr in &settings.nameservers {
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                nameservers.push(NameServerConfig::new(addr, protocol));
            }
        }
        let mut options = ResolverOpts::default();
        options.timeout = settings.timeout;
        options.attempts = usize::try_from(settings.attempts).unwrap_or(usize::MAX);
        let attempts = options.attempts;
        let connector = Connector::new(ConnectedUdp::default());
        let pool = NameServerPool::from_config(nameservers, options, connector);
        Self {
            client: Some(RetryDnsHandle::new(pool, attempts)),
            nameservers: settings.nameservers.clone(),
            lookup_time: settings.lookup_time(),
        }
    }

    /// A resolver that sends nothing: every lookup fails with
    /// [`Error::Offline`] (in-memory tests, sessions that need no DNS).
    pub fn offline() -> Self {
        Self {
            client: None,
            nameservers: Vec::new(),
            lookup_time: Duration::ZERO,
        }
    }

    /// The longest a lookup takes.
    pub fn lookup_time(&self) -> Duration {
        self.lookup_time
    }

    /// What DNS says of the client `ip`, as OpenSMTPD finds it at
    /// connection: its reverse name, then whether that name's addresses of
    /// the client's family include `ip`. Failures are logged and give no
    /// name; this never fails.
    pub async fn peer_name(&self, ip: IpAddr) -> PeerName {
        match self.lookup_ptr(ip).await {
            Ok(Some(name)) => {
                let fcrdns = self.fcrdns(&name, ip).await;
                PeerName {
                    rdns: Some(name),
                    fcrdns,
                }
            }
            Ok(None) => PeerName {
                rdns: None,
                fcrdns: Fcrdns::Fail,
            },
            Err(e) => {
                log_failure(&e);
                PeerName::unknown()
            }
        }
    }

    /// The reverse name of `ip` (its first PTR record, without the final
    /// dot), or `None` when it has none.
    pub async fn lookup_ptr(&self, ip: IpAddr) -> Result<Option<String>, Error> {
        let found = self
            .query(Name::from(ip), RecordType::PTR, &format!("PTR {ip}"))
            .await?;
        Ok(found.into_iter().find_map(|rdata| match rdata {
            RData::PTR(ptr) => Some(text(&ptr.0)),
            _ => None,
        }))
    }

    /// Whether `name`'s addresses of `ip`'s family (A for IPv4, AAAA for
    /// IPv6) include `ip`: [`Fcrdns::Fail`] when they do not or there are
    /// none, [`Fcrdns::Error`] (logged) when the lookup failed.
    pub async fn fcrdns(&self, name: &str, ip: IpAddr) -> Fcrdns {
        let kind = match ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        match self.lookup_addresses(name, kind).await {
            Ok(addresses) if addresses.contains(&ip) => Fcrdns::Pass,
            Ok(_) => Fcrdns::Fail,
            Err(e) => {
                log_failure(&e);
                Fcrdns::Error
            }
        }
    }

    /// The IPv4 and IPv6 addresses of `name` (A and AAAA, asked at once),
    /// empty when it has none. One family failing while the other answers
    /// gives the other's.
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, Error> {
        let (v4, v6) = futures::join!(
            self.lookup_addresses(name, RecordType::A),
            self.lookup_addresses(name, RecordType::AAAA)
        );
        match (v4, v6) {
            (Ok(mut v4), Ok(v6)) => {
                v4.extend(v6);
                Ok(v4)
            }
            (Ok(found), Err(e)) | (Err(e), Ok(found)) if found.is_empty() => Err(e),
            (Ok(found), Err(_)) | (Err(_), Ok(found)) => Ok(found),
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// The mail exchangers of `domain`, lowest preference first (equal
    /// preferences in the nameserver's order); empty when it has none, in
    /// which case mail goes to the domain's own address (RFC 5321 5.1).
    pub async fn lookup_mx(&self, domain: &str) -> Result<Vec<Mx>, Error> {
        Ok(self.lookup_domain_mx(domain).await?.unwrap_or_default())
    }

    /// The mail exchangers of `domain` as [`Resolver::lookup_mx`] finds
    /// them, or `None` when the domain does not exist (NXDOMAIN): relaying
    /// fails permanently then, and tries the domain's own address when it
    /// exists without MX records.
    pub async fn lookup_domain_mx(&self, domain: &str) -> Result<Option<Vec<Mx>>, Error> {
        let Some(found) = self
            .query_answer(absolute(domain)?, RecordType::MX, &format!("MX {domain}"))
            .await?
        else {
            return Ok(None);
        };
        let mut exchangers: Vec<Mx> = found
            .into_iter()
            .filter_map(|rdata| match rdata {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference(),
                    exchange: text(mx.exchange()),
                }),
                _ => None,
            })
            .collect();
        exchangers.sort_by_key(|mx| mx.preference);
        Ok(Some(exchangers))
    }

    /// The addresses of `name` of one type, A or AAAA.
    async fn lookup_addresses(&self, name: &str, kind: RecordType) -> Result<Vec<IpAddr>, Error> {
        let found = self
            .query(absolute(name)?, kind, &format!("{kind} {name}"))
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|rdata| match rdata {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect())
    }

    /// Asks for the `kind` records of `name` within the lookup time: the
    /// answer's records of that type (empty when the name or the record
    /// does not exist), or why there is no answer. `text` names the query
    /// in errors.
    async fn query(&self, name: Name, kind: RecordType, text: &str) -> Result<Vec<RData>, Error> {
        Ok(self
            .query_answer(name, kind, text)
            .await?
            .unwrap_or_default())
    }

    /// As [`Resolver::query`], with `None` when the name does not exist
    /// (NXDOMAIN) rather than existing without records of the type.
    async fn query_answer(
        &self,
        name: Name,
        kind: RecordType,
        text: &str,
    ) -> Result<Option<Vec<RData>>, Error> {
        let Some(client) = &self.client else {
            return Err(Error::Offline {
                query: text.to_owned(),
            });
        };
        let timeout = || Error::Timeout {
            query: text.to_owned(),
            seconds: self.lookup_time.as_secs(),
        };
        let mut options = DnsRequestOptions::default();
        // EDNS0 (1232-byte answers over UDP, the 2020 DNS flag day's
        // size): fewer answers truncated and asked again over TCP.
        options.use_edns = true;
        let mut responses = client.lookup(Query::query(name, kind), options);
        let answer = tokio::time::timeout(self.lookup_time, responses.next()).await;
        let response = match answer {
            Err(_) => return Err(timeout()),
            Ok(None) => Err(ProtoError::from("no response")),
            Ok(Some(response)) => response,
        };
        match response {
            // Through a CNAME the answer holds the chain: keep the records
            // of the type asked.
            Ok(response) if response.response_code() == ResponseCode::NXDomain => Ok(None),
            Ok(response) => Ok(Some(
                response
                    .answers()
                    .iter()
                    .filter(|record| record.record_type() == kind)
                    .map(|record| record.data().clone())
                    .collect(),
            )),
            Err(e) => match e.kind() {
                ProtoErrorKind::NoRecordsFound {
                    response_code: ResponseCode::NXDomain,
                    ..
                } => Ok(None),
                ProtoErrorKind::NoRecordsFound {
                    response_code: ResponseCode::NoError,
                    ..
                } => Ok(Some(Vec::new())),
                ProtoErrorKind::Timeout => Err(timeout()),
                _ => Err(Error::Failed {
                    query: text.to_owned(),
                    reason: e.to_string(),
                }),
            },
        }
    }
}

/// `name` as an absolute domain name (international names in ASCII).
fn absolute(name: &str) -> Result<Name, Error> {
    let mut fqdn = Name::from_utf8(name).map_err(|e| Error::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    fqdn.set_fqdn(true);
    Ok(fqdn)
}

/// A name from an answer as text, in ASCII, without the final dot.
fn text(name: &Name) -> String {
    let mut ascii = name.to_ascii();
    if ascii.ends_with('.') {
        ascii.pop();
    }
    ascii
}

/// Logs a lookup that failed, at debug level: a client without rDNS is
/// ordinary (OpenSMTPD says nothing then), and a dead nameserver must not
/// add a warning to every connection; an offline resolver fails by design
/// and is not logged.
fn log_failure(error: &Error) {
    if !matches!(error, Error::Offline { .. }) {
        tracing::debug!("DNS: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_absolute_and_answers_lose_the_dot() {
        let name = absolute("Mail.Example.org").unwrap();
        assert!(name.is_fqdn());
        // IDNA processing folds the case.
        assert_eq!(text(&name), "mail.example.org");
        assert_eq!(
            text(&absolute("bücher.example").unwrap()),
            "xn--bcher-kva.example"
        );
        assert_eq!(text(&Name::root()), "");
        assert!(matches!(absolute("a..b"), Err(Error::BadName { .. })));
    }

    #[tokio::test]
    async fn an_offline_resolver_asks_nobody() {
        let resolver = Resolver::offline();
        let ip = "192.0.2.1".parse().unwrap();
        assert_eq!(
            resolver.lookup_ptr(ip).await,
            Err(Error::Offline {
                query: "PTR 192.0.2.1".to_owned()
            })
        );
        assert_eq!(resolver.peer_name(ip).await, PeerName::unknown());
        assert_eq!(resolver.fcrdns("mx.example.org", ip).await, Fcrdns::Error);
        assert!(resolver.lookup_mx("example.org").await.is_err());
        assert!(resolver.lookup_ip("example.org").await.is_err());
    }
}
