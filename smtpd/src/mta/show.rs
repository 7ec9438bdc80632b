//! The engine's state as `smtpctl show hosts`, `show relays` and `show
//! routes` print it (smtpctl.md, OpenSMTPD 7.8's formats):
//!
//! - hosts: `ADDR NAME refcount=N nconn=N lastconn=DUR|-`, where NAME is
//!   the name the address was reached as (7.8 shows its PTR name);
//! - relays: `[relay:DOMAIN,port=N,PROTO,...] refcount=N ntask=N nconn=N
//!   lastconn=DUR|- timeout=- wait=-`;
//! - routes: `ID. SRC <-> ADDR FLAGS nconn=N nerror=N penalty=N
//!   timeout=DUR|-`, FLAGS `D` while the address is marked broken, `K`
//!   while a connection waits idle.
//!
//! Durations are OpenSMTPD's (`1d2h3m4s`).

use std::fmt::Write as _;

use tokio::time::Instant;

use super::engine::Shared;
use super::route::Target;

/// Which listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `show hosts`.
    Hosts,
    /// `show relays`.
    Relays,
    /// `show routes`.
    Routes,
}

/// The lines of a listing.
pub(super) fn lines(shared: &Shared, what: Listing) -> Vec<String> {
    let now = Instant::now();
    match what {
        Listing::Hosts => shared
            .hosts()
            .list()
            .into_iter()
            .map(|(addr, state)| {
                format!(
                    "{addr} {} refcount={} nconn={} lastconn={}",
                    state.name,
                    state.nconn,
                    state.nconn,
                    ago(state.lastconn, now)
                )
            })
            .collect(),
        Listing::Relays => {
            let relays = shared.relays();
            let mut list: Vec<String> = relays
                .iter()
                .map(|(destination, state)| {
                    let mut head = format!(
                        "[relay:{},port={},{}",
                        destination.host_or_domain(),
                        destination.port,
                        destination.scheme
                    );
                    if let Some(label) = &destination.label {
                        let _ = write!(head, ",auth={label}");
                    }
                    if let Target::Mx {
                        backup: Some(name), ..
                    } = &destination.target
                    {
                        let _ = write!(head, ",backup={name}");
                    }
                    format!(
                        "{head}] refcount={} ntask={} nconn={} lastconn={} timeout=- wait=-",
                        state.refcount,
                        state.ntask,
                        state.nconn,
                        ago(state.lastconn, now)
                    )
                })
                .collect();
            list.sort();
            list
        }
        Listing::Routes => {
            let hosts = shared.hosts();
            let states = hosts.list();
            shared
                .pool
                .routes()
                .into_iter()
                .enumerate()
                .map(|(index, ((source, addr), open, idle))| {
                    let state = states.iter().find(|(a, _)| *a == addr).map(|(_, s)| s);
                    let broken = hosts.is_broken(addr, now);
                    let flags = format!(
                        "-{}-{}",
                        if broken { 'D' } else { '-' },
                        if idle > 0 { 'K' } else { '-' }
                    );
                    let timeout = state
                        .and_then(|s| s.broken_until)
                        .filter(|until| *until > now)
                        .map_or_else(|| "-".to_owned(), |until| duration((until - now).as_secs()));
                    format!(
                        "{}. {} <-> {addr} {flags} nconn={open} nerror={} penalty={} timeout={timeout}",
                        index + 1,
                        source.map_or_else(|| "[]".to_owned(), |s| s.to_string()),
                        state.map_or(0, |s| s.nerror),
                        state.map_or(0, |s| s.penalty),
                    )
                })
                .collect()
        }
    }
}

/// How long ago `then` was, or `-`.
fn ago(then: Option<Instant>, now: Instant) -> String {
    then.map_or_else(
        || "-".to_owned(),
        |then| duration(now.saturating_duration_since(then).as_secs()),
    )
}

/// Seconds as OpenSMTPD's `duration_to_text`: `1d2h3m4s`, `0s`.
pub fn duration(mut seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)] {
        if seconds >= size {
            let _ = write!(out, "{}{unit}", seconds / size);
            seconds %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(93_784), "1d2h3m4s");
    }
}
