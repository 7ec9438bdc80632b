//! Where mail for a domain goes: its mail exchangers by preference, equal
//! preferences spread at random (RFC 5321 5.1), each with its A and AAAA
//! addresses (looked up in parallel), or the domain's own addresses when
//! it has no MX record (the implicit MX). A null MX (RFC 7505) and a
//! domain that does not exist are permanent failures; a lookup that
//! fails (SERVFAIL, timeout) is temporary.
//!
//! `backup` and `backup mx NAME` keep only the exchangers more preferred
//! than the named one, as OpenSMTPD 7.8 does (a backup MX relays to the
//! primaries, never to itself or its peers). When the name is not among
//! the exchangers, every exchanger is kept (7.8 uses its preference only
//! when it finds one).
//!
//! The ordering and filtering are pure ([`order`], [`keep_better_than`]);
//! [`resolve_mx`] and [`resolve_host`] ask the [`Resolver`].

use std::net::IpAddr;

use crate::dns::{Mx, Resolver};

/// One host to try, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The host name (the MX exchange, the smarthost, or an address
    /// literal's text).
    pub name: String,
    /// The MX preference (0 for a smarthost or an implicit MX).
    pub preference: u16,
    /// Its addresses, IPv4 first.
    pub addrs: Vec<IpAddr>,
}

/// Why no host could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Try again later (a lookup failed, or no better MX than ourselves).
    #[error("{0}")]
    Temporary(String),
    /// The domain does not receive mail (NXDOMAIN, null MX, no address).
    #[error("{0}")]
    Permanent(String),
}

/// The exchangers sorted by preference, those of equal preference in a
/// random order drawn from `seed` (a different seed each delivery
/// spreads the load among them).
pub fn order(mut exchangers: Vec<Mx>, seed: u64) -> Vec<Mx> {
    let mut state = seed;
    let mut keyed: Vec<(u16, u64, Mx)> = exchangers
        .drain(..)
        .map(|mx| {
            // splitmix64: enough to shuffle a handful of names.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (mx.preference, z ^ (z >> 31), mx)
        })
        .collect();
    keyed.sort_by_key(|(preference, draw, _)| (*preference, *draw));
    keyed.into_iter().map(|(_, _, mx)| mx).collect()
}

/// The exchangers strictly more preferred than the one named `me` (case
/// insensitive); all of them when `me` is not an exchanger.
pub fn keep_better_than(exchangers: Vec<Mx>, me: &str) -> Vec<Mx> {
    let mine = exchangers
        .iter()
        .filter(|mx| mx.exchange.eq_ignore_ascii_case(me.trim_end_matches('.')))
        .map(|mx| mx.preference)
        .min();
    match mine {
        Some(limit) => exchangers
            .into_iter()
            .filter(|mx| mx.preference < limit)
            .collect(),
        None => exchangers,
    }
}

/// Whether the answer is a null MX: one record, exchange `.`.
fn is_null_mx(exchangers: &[Mx]) -> bool {
    exchangers.len() == 1 && exchangers[0].exchange.is_empty()
}

/// The hosts that receive mail for `domain`, in the order to try them.
/// `backup` is the name of the MX we act as a backup for (`backup`: the
/// server's name; `backup mx NAME`: NAME).
pub async fn resolve_mx(
    resolver: &Resolver,
    domain: &str,
    backup: Option<&str>,
    seed: u64,
) -> Result<Vec<Host>, ResolveError> {
    let temporary = |e: crate::dns::Error| ResolveError::Temporary(format!("DNS error: {e}"));
    let Some(exchangers) = resolver.lookup_domain_mx(domain).await.map_err(temporary)? else {
        return Err(ResolveError::Permanent(format!(
            "Domain does not exist: {domain}"
        )));
    };
    if is_null_mx(&exchangers) {
        return Err(ResolveError::Permanent(format!(
            "Domain does not accept mail (null MX): {domain}"
        )));
    }
    if exchangers.is_empty() {
        if backup.is_some() {
            return Err(ResolveError::Temporary(format!(
                "No MX found for domain {domain} to back up"
            )));
        }
        // The implicit MX: the domain's own addresses.
        let addrs = resolver.lookup_ip(domain).await.map_err(temporary)?;
        if addrs.is_empty() {
            return Err(ResolveError::Permanent(format!(
                "No MX found for domain: {domain}"
            )));
        }
        return Ok(vec![Host {
            name: domain.to_owned(),
            preference: 0,
            addrs,
        }]);
    }
    let mut exchangers: Vec<Mx> = exchangers
        .into_iter()
        .filter(|mx| !mx.exchange.is_empty())
        .collect();
    if let Some(me) = backup {
        exchangers = keep_better_than(exchangers, me);
        if exchangers.is_empty() {
            return Err(ResolveError::Temporary(format!(
                "No MX of {domain} is more preferred than {me}"
            )));
        }
    }
    let exchangers = order(exchangers, seed);
    let found = futures::future::join_all(
        exchangers
            .iter()
            .map(|mx| address_of(resolver, &mx.exchange)),
    )
    .await;
    let mut hosts = Vec::new();
    let mut failure = None;
    for (mx, addrs) in exchangers.into_iter().zip(found) {
        match addrs {
            Ok(addrs) if !addrs.is_empty() => hosts.push(Host {
                name: mx.exchange,
                preference: mx.preference,
                addrs,
            }),
            Ok(_) => {}
            Err(e) => failure = Some(e),
        }
    }
    match (hosts.is_empty(), failure) {
        (false, _) => Ok(hosts),
        (true, Some(e)) => Err(temporary(e)),
        (true, None) => Err(ResolveError::Permanent(format!(
            "No address found for the MXs of {domain}"
        ))),
    }
}

/// The addresses of `name`, or the address it is when it is one.
async fn address_of(resolver: &Resolver, name: &str) -> Result<Vec<IpAddr>, crate::dns::Error> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![ip]),
        Err(_) => resolver.lookup_ip(name).await,
    }
}

/// The addresses of a smarthost (a name, or an address literal): a name
/// without addresses is a temporary failure, as a relay host that
/// vanished from DNS is a configuration error to fix, not a reason to
/// bounce.
pub async fn resolve_host(resolver: &Resolver, name: &str) -> Result<Vec<Host>, ResolveError> {
    let addrs = address_of(resolver, name)
        .await
        .map_err(|e| ResolveError::Temporary(format!("DNS error: {e}")))?;
    if addrs.is_empty() {
        return Err(ResolveError::Temporary(format!(
            "No address found for relay host {name}"
        )));
    }
    Ok(vec![Host {
        name: name.to_owned(),
        preference: 0,
        addrs,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, exchange: &str) -> Mx {
        Mx {
            preference,
            exchange: exchange.to_owned(),
        }
    }

    fn names(list: &[Mx]) -> Vec<&str> {
        list.iter().map(|mx| mx.exchange.as_str()).collect()
    }

    #[test]
    fn order_is_by_preference() {
        let list = vec![mx(30, "c"), mx(10, "a"), mx(20, "b")];
        for seed in 0..20 {
            assert_eq!(names(&order(list.clone(), seed)), ["a", "b", "c"]);
        }
    }

    #[test]
    fn equal_preferences_are_spread() {
        let list = vec![mx(10, "a"), mx(10, "b"), mx(10, "c"), mx(20, "z")];
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let ordered = order(list.clone(), seed * 7919);
            assert_eq!(ordered[3].exchange, "z");
            let mut head = names(&ordered[..3]);
            firsts.insert(head[0].to_owned());
            head.sort_unstable();
            assert_eq!(head, ["a", "b", "c"]);
        }
        assert_eq!(firsts.len(), 3, "each equal MX comes first for some seed");
    }

    #[test]
    fn backup_keeps_only_better_exchangers() {
        let list = vec![mx(10, "a"), mx(20, "b"), mx(20, "me"), mx(30, "c")];
        assert_eq!(names(&keep_better_than(list.clone(), "me")), ["a"]);
        assert_eq!(names(&keep_better_than(list.clone(), "ME.")), ["a"]);
        assert_eq!(
            names(&keep_better_than(list.clone(), "a")),
            Vec::<&str>::new()
        );
        assert_eq!(
            names(&keep_better_than(list.clone(), "c")),
            ["a", "b", "me"]
        );
        assert_eq!(
            names(&keep_better_than(list, "unknown")),
            ["a", "b", "me", "c"]
        );
    }

    #[test]
    fn a_null_mx_is_one_empty_exchange() {
        assert!(is_null_mx(&[mx(0, "")]));
        assert!(!is_null_mx(&[mx(0, "a")]));
        assert!(!is_null_mx(&[mx(0, ""), mx(10, "a")]));
        assert!(!is_null_mx(&[]));
    }

    #[tokio::test]
    async fn an_offline_resolver_fails_temporarily() {
        let resolver = Resolver::offline();
        assert!(matches!(
            resolve_mx(&resolver, "example.org", None, 1).await,
            Err(ResolveError::Temporary(_))
        ));
        assert!(matches!(
            resolve_host(&resolver, "smtp.example.org").await,
            Err(ResolveError::Temporary(_))
        ));
        let literal = resolve_host(&resolver, "192.0.2.7").await.unwrap();
        assert_eq!(literal[0].addrs, ["192.0.2.7".parse::<IpAddr>().unwrap()]);
    }
}
