//! Connections kept open between transactions, and the limits on how many
//! may be open: per route (a source address and a next-hop address,
//! `max-conn-per-route`, 5 by default), per next-hop address
//! (`max-conn-per-host`, 10) and per destination domain (the MX domain or
//! the relay host, `max-conn-per-domain`, 100). A connection holds one
//! permit of each from its opening to its closing, idle or not, so the
//! limits count idle connections too. The limits are the destination's
//! (`mta limit for domain D`, else `mta limit`), taken when the route,
//! host or domain is first used (an MX shared by several domains keeps
//! the limit of the first).
//!
//! An idle connection is reused for the next message of the same
//! [`RouteKey`] (same destination, source, address, HELO name and
//! credentials); it is closed after `session-keepalive` seconds idle, or
//! after `session-mail-max` messages.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::client::Client;
use super::report::Reports;
use super::route::Destination;
use crate::config::MtaLimitValues;

/// What a connection can be reused for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// Where and how.
    pub destination: Destination,
    /// The local address connected from.
    pub source: Option<IpAddr>,
    /// The next hop.
    pub addr: IpAddr,
    /// Its name (MX or smarthost).
    pub name: String,
    /// The HELO name.
    pub helo: String,
    /// The AUTH user, if any.
    pub user: Option<String>,
}

/// A route: the source address (if chosen) and the next-hop address.
pub type Route = (Option<IpAddr>, IpAddr);

/// The permits an open connection holds: its route's, its host's and its
/// domain's.
pub type Permits = (
    OwnedSemaphorePermit,
    OwnedSemaphorePermit,
    OwnedSemaphorePermit,
);

/// A semaphore with the number of permits it was made with.
type Limit = (usize, Arc<Semaphore>);

/// An open session with its permits.
pub struct Pooled {
    /// The session.
    pub client: Client,
    /// Messages sent on it.
    pub sent: u64,
    /// Its route, host and domain permits.
    pub permits: Permits,
    /// Its smtp-out report stream.
    pub reports: Reports,
    /// The local address it was opened from.
    pub local: Option<IpAddr>,
}

/// The pool.
pub struct Pool {
    idle: Mutex<HashMap<RouteKey, Vec<(Instant, Pooled)>>>,
    routes: Mutex<HashMap<Route, Limit>>,
    hosts: Mutex<HashMap<IpAddr, Limit>>,
    domains: Mutex<HashMap<String, Limit>>,
    keepalive: Duration,
    /// Woken when a connection is put back idle.
    returned: Notify,
}

impl Pool {
    /// A pool closing connections idle for `keepalive`.
    pub fn new(keepalive: Duration) -> Self {
        Self {
            idle: Mutex::default(),
            routes: Mutex::default(),
            hosts: Mutex::default(),
            domains: Mutex::default(),
            keepalive,
            returned: Notify::new(),
        }
    }

    /// An idle connection for `key`, if one is open.
    pub fn take(&self, key: &RouteKey) -> Option<Pooled> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        let found = list.pop().map(|(_, pooled)| pooled);
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Keeps `pooled` for the next message of `key`.
    pub fn put(&self, key: RouteKey, pooled: Pooled) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.entry(key).or_default().push((Instant::now(), pooled));
        drop(idle);
        self.returned.notify_waiters();
    }

    /// An idle connection for `key` (one put back while waiting counts),
    /// or else the permits to open a new one: a delivery waiting at the
    /// limits takes the first connection that another one releases,
    /// rather than waiting for it to expire idle.
    pub async fn idle_or_permits(
        &self,
        key: &RouteKey,
        limits: &MtaLimitValues,
    ) -> Result<Pooled, Permits> {
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(pooled) = self.take(key) {
                return Ok(pooled);
            }
            tokio::select! {
                permits = self.permits(key, limits) => return Err(permits),
                () = &mut returned => {}
            }
        }
    }

    /// Takes out the connections idle longer than the keepalive.
    pub fn expired(&self) -> Vec<(RouteKey, Pooled)> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        idle.retain(|key, list| {
            let (old, keep): (Vec<_>, Vec<_>) = list
                .drain(..)
                .partition(|(since, _)| now.duration_since(*since) >= self.keepalive);
            *list = keep;
            out.extend(old.into_iter().map(|(_, pooled)| (key.clone(), pooled)));
            !list.is_empty()
        });
        out
    }

    /// Takes out every idle connection (shutdown).
    pub fn drain(&self) -> Vec<(RouteKey, Pooled)> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.drain()
            .flat_map(|(key, list)| list.into_iter().map(move |(_, p)| (key.clone(), p)))
            .collect()
    }

    /// Waits for a permit of the route, one of the host and one of the
    /// domain of `key`, each limit made from `limits` at its first use.
    pub async fn permits(&self, key: &RouteKey, limits: &MtaLimitValues) -> Permits {
        let route = semaphore(
            &self.routes,
            (key.source, key.addr),
            limits.max_conn_per_route,
        );
        let host = semaphore(&self.hosts, key.addr, limits.max_conn_per_host);
        let domain = semaphore(
            &self.domains,
            key.destination.host_or_domain().to_ascii_lowercase(),
            limits.max_conn_per_domain,
        );
        let acquire = |semaphore: Arc<Semaphore>| async move {
            semaphore
                .acquire_owned()
                .await
                .expect("the pool never closes its semaphores")
        };
        // The widest first: a delivery waiting for its domain holds no
        // route or host permit meanwhile.
        let domain = acquire(domain).await;
        let host = acquire(host).await;
        let route = acquire(route).await;
        (route, host, domain)
    }

    /// Connections open per route (source, address): (open, idle).
    pub fn routes(&self) -> Vec<(Route, usize, usize)> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = routes
            .iter()
            .map(|(route, (size, semaphore))| {
                let open = size - semaphore.available_permits();
                let waiting = idle
                    .iter()
                    .filter(|(key, _)| (key.source, key.addr) == *route)
                    .map(|(_, list)| list.len())
                    .sum();
                (*route, open, waiting)
            })
            .collect();
        list.sort_by_key(|(route, _, _)| *route);
        list
    }
}

/// The semaphore of `key` in `map`, made with `size` permits (at least
/// one) when the key is new.
fn semaphore<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Limit>>,
    key: K,
    size: u64,
) -> Arc<Semaphore> {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let (_, semaphore) = map.entry(key).or_insert_with(|| {
        let size = usize::try_from(size).unwrap_or(usize::MAX).max(1);
        (size, Arc::new(Semaphore::new(size)))
    });
    Arc::clone(semaphore)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::ActionId;
    use crate::mta::route::{Protocol, Target, TlsMode};

    fn key(domain: &str, addr: [u8; 4]) -> RouteKey {
        RouteKey {
            destination: Destination {
                action: ActionId::from_index(0),
                target: Target::Mx {
                    domain: domain.to_owned(),
                    backup: None,
                },
                scheme: "smtp",
                protocol: Protocol::Smtp,
                port: 25,
                tls: TlsMode::Opportunistic,
                verify: false,
                label: None,
            },
            source: None,
            addr: IpAddr::V4(Ipv4Addr::from(addr)),
            name: "mx".to_owned(),
            helo: "me".to_owned(),
            user: None,
        }
    }

    fn limits(per_route: u64, per_host: u64, per_domain: u64) -> MtaLimitValues {
        MtaLimitValues {
            max_conn_per_route: per_route,
            max_conn_per_host: per_host,
            max_conn_per_domain: per_domain,
            ..MtaLimitValues::default()
        }
    }

    /// Whether a permit is available at once.
    async fn available(pool: &Pool, key: &RouteKey, limits: &MtaLimitValues) -> Option<Permits> {
        let permits = pool.permits(key, limits);
        tokio::time::timeout(Duration::from_millis(10), permits)
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn each_limit_counts_its_own_connections() {
        let pool = Pool::new(Duration::from_secs(10));
        // One connection per domain to example.org, on any host.
        let tight = limits(5, 10, 1);
        let a = key("example.org", [192, 0, 2, 1]);
        let b = key("EXAMPLE.org", [192, 0, 2, 2]);
        let held = available(&pool, &a, &tight).await.unwrap();
        assert!(available(&pool, &b, &tight).await.is_none());
        // Another domain has its own limits (on a route first used for it).
        let other = key("example.net", [192, 0, 2, 3]);
        let roomy = limits(2, 10, 100);
        let first = available(&pool, &other, &roomy).await.unwrap();
        let second = available(&pool, &other, &roomy).await.unwrap();
        // Two per route for example.net: the third waits.
        assert!(available(&pool, &other, &roomy).await.is_none());
        drop(first);
        assert!(available(&pool, &other, &roomy).await.is_some());
        drop((second, held));
        assert!(available(&pool, &b, &tight).await.is_some());
        // The route listing counts open connections against each route's
        // own limit.
        let open: Vec<usize> = pool.routes().iter().map(|(_, open, _)| *open).collect();
        assert_eq!(open, [0, 0, 0]);
    }
}
