//! What the engine remembers of each next-hop address: connections open,
//! the last connection, and the errors that make it "broken" for a while
//! (OpenSMTPD's route penalty): after [`MAX_ERRORS`] session failures in
//! a row (refused connection, bad greeting, TLS that fails or is not
//! offered when required), the address is skipped for a delay that grows
//! with each new penalty (`BASE_DELAY * penalty^2`, at most
//! [`MAX_DELAY`]), so the next MX is tried; a success clears it. When
//! every address of a destination is broken, the delivery is a
//! temporary failure and the envelope waits for the scheduler's retry.
//!
//! Time is Tokio's, so the tests pause and advance it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Session failures in a row that mark an address broken.
pub const MAX_ERRORS: u32 = 3;

/// The first penalty's delay.
pub const BASE_DELAY: Duration = Duration::from_secs(15);

/// The longest an address stays broken.
pub const MAX_DELAY: Duration = Duration::from_secs(3 * 3600);

/// The state of one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// The name it was reached as (MX or smarthost).
    pub name: String,
    /// Connections open now.
    pub nconn: usize,
    /// Session failures since the last success.
    pub nerror: u32,
    /// Times it was marked broken since the last success.
    pub penalty: u32,
    /// When the last connection was opened.
    pub lastconn: Option<Instant>,
    /// Broken until then.
    pub broken_until: Option<Instant>,
}

/// The table of addresses.
#[derive(Debug, Default)]
pub struct Hosts {
    hosts: HashMap<IpAddr, HostState>,
}

impl Hosts {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, addr: IpAddr, name: &str) -> &mut HostState {
        let state = self.hosts.entry(addr).or_default();
        if state.name.is_empty() {
            state.name = name.to_owned();
        }
        state
    }

    /// Whether `addr` is broken at `now`.
    pub fn is_broken(&self, addr: IpAddr, now: Instant) -> bool {
        self.hosts
            .get(&addr)
            .and_then(|state| state.broken_until)
            .is_some_and(|until| now < until)
    }

    /// A connection to `addr` (reached as `name`) is being opened.
    pub fn connecting(&mut self, addr: IpAddr, name: &str, now: Instant) {
        let state = self.entry(addr, name);
        state.nconn += 1;
        state.lastconn = Some(now);
    }

    /// A connection to `addr` closed.
    pub fn closed(&mut self, addr: IpAddr) {
        if let Some(state) = self.hosts.get_mut(&addr) {
            state.nconn = state.nconn.saturating_sub(1);
        }
    }

    /// A session with `addr` got as far as a transaction: it works.
    pub fn succeeded(&mut self, addr: IpAddr) {
        if let Some(state) = self.hosts.get_mut(&addr) {
            state.nerror = 0;
            state.penalty = 0;
            state.broken_until = None;
        }
    }

    /// A session with `addr` failed before any transaction; true when
    /// this marks it broken.
    pub fn failed(&mut self, addr: IpAddr, name: &str, now: Instant) -> bool {
        let state = self.entry(addr, name);
        state.nerror += 1;
        if state.nerror < MAX_ERRORS {
            return false;
        }
        state.nerror = 0;
        state.penalty += 1;
        let delay = BASE_DELAY
            .saturating_mul(state.penalty.saturating_mul(state.penalty))
            .min(MAX_DELAY);
        state.broken_until = Some(now + delay);
        true
    }

    /// Every address known, sorted, with its state.
    pub fn list(&self) -> Vec<(IpAddr, HostState)> {
        let mut list: Vec<_> = self
            .hosts
            .iter()
            .map(|(addr, state)| (*addr, state.clone()))
            .collect();
        list.sort_by_key(|(addr, _)| *addr);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_break_an_address_for_a_while() {
        let mut hosts = Hosts::new();
        let a = ip("192.0.2.1");
        let start = Instant::now();
        assert!(!hosts.failed(a, "mx1", start));
        assert!(!hosts.failed(a, "mx1", start));
        assert!(!hosts.is_broken(a, start));
        assert!(hosts.failed(a, "mx1", start));
        assert!(hosts.is_broken(a, start));
        assert!(!hosts.is_broken(ip("192.0.2.2"), start));
        tokio::time::advance(BASE_DELAY - Duration::from_secs(1)).await;
        assert!(hosts.is_broken(a, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!hosts.is_broken(a, Instant::now()));
        // The second penalty lasts four times as long.
        for _ in 0..MAX_ERRORS {
            hosts.failed(a, "mx1", Instant::now());
        }
        tokio::time::advance(BASE_DELAY * 3).await;
        assert!(hosts.is_broken(a, Instant::now()));
        tokio::time::advance(BASE_DELAY).await;
        assert!(!hosts.is_broken(a, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_clears_the_penalty() {
        let mut hosts = Hosts::new();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..MAX_ERRORS {
            hosts.failed(a, "mx1", now);
        }
        assert!(hosts.is_broken(a, now));
        hosts.succeeded(a);
        assert!(!hosts.is_broken(a, now));
        assert_eq!(hosts.list()[0].1.penalty, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_delay_is_bounded() {
        let mut hosts = Hosts::new();
        let a = ip("2001:db8::1");
        for _ in 0..(MAX_ERRORS * 100) {
            hosts.failed(a, "mx", Instant::now());
        }
        tokio::time::advance(MAX_DELAY).await;
        assert!(!hosts.is_broken(a, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn connections_are_counted() {
        let mut hosts = Hosts::new();
        let a = ip("192.0.2.1");
        hosts.connecting(a, "mx1", Instant::now());
        hosts.connecting(a, "mx1", Instant::now());
        hosts.closed(a);
        let list = hosts.list();
        assert_eq!((list[0].1.name.as_str(), list[0].1.nconn), ("mx1", 1));
        assert!(list[0].1.lastconn.is_some());
    }
}
