//! Connections kept open between transactions, and the limits on how many
//! may be open: per route (a source address and a next-hop address,
//! `max-conn-per-route`, 5 by default) and per next-hop address
//! (`max-conn-per-host`, 10). A connection holds one permit of each from
//! its opening to its closing, idle or not, so the limits count idle
//! connections too.
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

/// An open session with its permits.
pub struct Pooled {
    /// The session.
    pub client: Client,
    /// Messages sent on it.
    pub sent: u64,
    /// Its route permit and its host permit.
    pub permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    /// Its smtp-out report stream.
    pub reports: Reports,
    /// The local address it was opened from.
    pub local: Option<IpAddr>,
}

/// The pool.
pub struct Pool {
    idle: Mutex<HashMap<RouteKey, Vec<(Instant, Pooled)>>>,
    routes: Mutex<HashMap<Route, Arc<Semaphore>>>,
    hosts: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    per_route: usize,
    per_host: usize,
    keepalive: Duration,
    /// Woken when a connection is put back idle.
    returned: Notify,
}

impl Pool {
    /// A pool with the given limits.
    pub fn new(per_route: u64, per_host: u64, keepalive: Duration) -> Self {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        Self {
            idle: Mutex::default(),
            routes: Mutex::default(),
            hosts: Mutex::default(),
            per_route: size(per_route),
            per_host: size(per_host),
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
    ) -> Result<Pooled, (OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(pooled) = self.take(key) {
                return Ok(pooled);
            }
            tokio::select! {
                permits = self.permits(key.source, key.addr) => return Err(permits),
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

    /// Waits for a permit of the route and one of the host.
    pub async fn permits(
        &self,
        source: Option<IpAddr>,
        addr: IpAddr,
    ) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        let route = {
            let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                routes
                    .entry((source, addr))
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_route))),
            )
        };
        let host = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                hosts
                    .entry(addr)
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_host))),
            )
        };
        let route = route
            .acquire_owned()
            .await
            .expect("the pool never closes its semaphores");
        let host = host
            .acquire_owned()
            .await
            .expect("the pool never closes its semaphores");
        (route, host)
    }

    /// Connections open per route (source, address): (open, idle).
    pub fn routes(&self) -> Vec<(Route, usize, usize)> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = routes
            .iter()
            .map(|(route, semaphore)| {
                let open = self.per_route - semaphore.available_permits();
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
