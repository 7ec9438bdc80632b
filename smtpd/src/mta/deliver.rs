//! One relay attempt for a batch of envelopes (one message, one action,
//! one destination domain): the destination and credentials from the
//! action and its tables, the message from the queue, the hosts from DNS,
//! a source address (`src <t>`, fetched round-robin) and a HELO name
//! (`helo`, `helo-src <t>` by source address, or the server's name), then
//! the hosts in order until one takes the transaction.
//!
//! A host whose session fails before the transaction (connection refused,
//! greeting, EHLO, TLS required and not offered or failing, AUTH) is
//! counted against its address ([`super::hosts`]) and the next is tried;
//! once a transaction runs, its results are final for this attempt: each
//! recipient accepted after the data is delivered, a 4xx is temporary, a
//! 5xx permanent. An idle connection of the same route is reused first;
//! if it turns out dead before the transaction starts, a new one is made.
//! Each envelope's outcome is logged (`mta delivery ... relay=NAME [ADDR]`)
//! and sent back to the scheduler.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::client::{BodyType, Failure, Login, Outgoing, Recipient};
use super::connect::{transaction, Done};
use super::engine::{family_allowed, limits_for, Batch, Shared};
use super::message::Message;
use super::pool::RouteKey;
use super::resolve::{self, Host, ResolveError};
use super::route::{Credentials, Destination, Target};
use super::srs;
use crate::config::{ActionId, ActionKind, MailFromRewrite, Relay};
use crate::delivery::local::LocalResult;
use crate::log::{self, Attempt};
use crate::queue::envelope::{Envelope, MailAddr};
use crate::queue::{unix_now, MsgId};
use crate::scheduler::Relayed;
use crate::table::Service;

/// The outcome of one envelope, with where it went for the log.
#[derive(Clone)]
struct Outcome {
    result: LocalResult,
    /// The next hop offers DSN: the envelope's NOTIFY went with it.
    dsn_passed: bool,
    /// The local address the transaction was sent from.
    source: Option<String>,
    /// The next hop's reply when it accepted the envelope.
    accepted: Option<String>,
    relay: String,
}

/// Delivers a batch and reports each envelope's outcome.
pub(super) async fn batch(shared: Arc<Shared>, batch: Batch) {
    let envelopes: Vec<&Envelope> = batch.iter().map(|(envelope, _)| envelope).collect();
    let outcomes = match attempt(&shared, &envelopes).await {
        Ok(outcomes) => outcomes,
        Err(failed) => vec![failed; envelopes.len()],
    };
    let now = unix_now();
    for ((envelope, reply), outcome) in batch.into_iter().zip(outcomes) {
        let attempt = match &outcome.result {
            LocalResult::Delivered => match &outcome.accepted {
                Some(reply) => Attempt::Relayed(reply),
                None => Attempt::Delivered,
            },
            LocalResult::Temporary(reason) => Attempt::TempFail(reason),
            LocalResult::Permanent(reason) => Attempt::PermFail(reason),
            LocalResult::Loop => Attempt::Loop,
        };
        let source = outcome.source.as_deref();
        log::relay_delivery(&envelope, attempt, now, source, &outcome.relay);
        let _ = reply.send(Relayed {
            result: outcome.result,
            dsn_passed: outcome.dsn_passed,
        });
    }
}

/// A failure of the whole batch before any host was reached.
fn temporary(reason: impl Into<String>) -> Outcome {
    Outcome {
        result: LocalResult::Temporary(reason.into()),
        dsn_passed: false,
        accepted: None,
        source: None,
        relay: "-".to_owned(),
    }
}

fn permanent(reason: impl Into<String>) -> Outcome {
    Outcome {
        result: LocalResult::Permanent(reason.into()),
        dsn_passed: false,
        accepted: None,
        source: None,
        relay: "-".to_owned(),
    }
}

/// Everything about the batch that does not depend on the host.
pub(super) struct Plan<'a> {
    /// The relay action.
    pub(super) action: ActionId,
    /// The message.
    pub(super) msgid: MsgId,
    /// The action's options.
    pub(super) relay: &'a Relay,
    /// Where and how.
    pub(super) destination: Destination,
    /// AUTH credentials.
    pub(super) login: Option<Login>,
    /// The message, read from the queue for each transaction.
    pub(super) message: Message,
    /// The transaction.
    pub(super) outgoing: Outgoing,
}

async fn attempt(shared: &Shared, envelopes: &[&Envelope]) -> Result<Vec<Outcome>, Outcome> {
    let plan = plan(shared, envelopes).await?;
    let hosts = match &plan.destination.target {
        Target::Mx { domain, backup } => {
            resolve::resolve_mx(&shared.settings.resolver, domain, backup.as_deref(), seed()).await
        }
        Target::Host(host) => resolve::resolve_host(&shared.settings.resolver, host).await,
    };
    let hosts = hosts.map_err(|e| match e {
        ResolveError::Temporary(why) => temporary(format!("421 4.4.3 {why}")),
        ResolveError::Permanent(why) => permanent(format!("550 5.1.2 {why}")),
    })?;
    let source = source_address(shared, plan.relay).await?;
    let helo = helo_name(shared, plan.relay, source).await?;
    {
        let mut relays = shared.relays();
        let state = relays.entry(plan.destination.clone()).or_default();
        state.refcount += 1;
        state.ntask += envelopes.len();
    }
    let outcomes = try_hosts(shared, &plan, &hosts, source, &helo).await;
    {
        let mut relays = shared.relays();
        if let Some(state) = relays.get_mut(&plan.destination) {
            state.refcount = state.refcount.saturating_sub(1);
            state.ntask = state.ntask.saturating_sub(envelopes.len());
        }
    }
    outcomes
}

/// The destination, credentials, message and transaction of a batch.
async fn plan<'a>(shared: &'a Shared, envelopes: &[&Envelope]) -> Result<Plan<'a>, Outcome> {
    let first = envelopes
        .first()
        .ok_or_else(|| temporary("421 4.3.0 empty batch"))?;
    let config = &shared.config;
    let action = config
        .action_named(&first.dispatcher)
        .ok_or_else(|| temporary(format!("421 4.3.0 unknown action {}", first.dispatcher)))?;
    let ActionKind::Relay(relay) = &config[action].kind else {
        return Err(temporary(format!(
            "421 4.3.0 action {} does not relay",
            first.dispatcher
        )));
    };
    let mut destination = Destination::of(
        &shared.tables,
        action,
        relay,
        &first.dest.domain,
        &shared.settings.server_name,
    )
    .await
    .map_err(|e| temporary(format!("421 4.3.0 {e}")))?;
    if let Target::Mx { .. } = destination.target {
        destination.port = shared.settings.mx_port;
    }
    let login = Credentials::of(relay, &shared.tables, &destination)
        .await
        .map_err(|e| temporary(format!("421 4.7.0 {e}")))?
        .map(|c| Login {
            user: c.user,
            password: c.password,
        });
    let msgid = first
        .msgid()
        .ok_or_else(|| temporary("421 4.3.0 envelope without id"))?;
    let message = Message::open(Arc::clone(&shared.queue), msgid)
        .await
        .map_err(|e| temporary(format!("421 4.3.0 {e}")))?;
    let srs_key = config.srs.key.as_ref().map(|key| key.0.as_str());
    let outgoing = outgoing(relay, srs_key, envelopes, message.size());
    Ok(Plan {
        action,
        msgid,
        relay,
        destination,
        login,
        message,
        outgoing,
    })
}

/// The transaction for the batch: sender (after `mail-from`), recipients
/// with their DSN parameters.
fn outgoing(relay: &Relay, srs_key: Option<&str>, envelopes: &[&Envelope], size: u64) -> Outgoing {
    let first = envelopes[0];
    let sender = match srs_key {
        Some(key) if relay.srs && srs::applies(first) => {
            srs::encode(&first.sender, &first.rcpt.domain, key, unix_now() / 86_400)
        }
        _ => rewrite_sender(&first.sender, relay.mail_from.as_ref()),
    };
    let recipients: Vec<Recipient> = envelopes
        .iter()
        .map(|envelope| Recipient {
            address: envelope.dest.to_string(),
            notify: envelope.dsn_notify,
            orcpt: (!envelope.dsn_orcpt.is_empty()).then(|| envelope.dsn_orcpt.clone()),
        })
        .collect();
    let smtputf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.address.is_ascii());
    Outgoing {
        sender,
        recipients,
        size: Some(size),
        body: BodyType::Unknown,
        smtputf8,
        dsn_ret: first.dsn_ret,
        dsn_envid: first.dsn_envid.clone(),
    }
}

/// The sender as `mail-from` rewrites it (only a non-empty sender).
pub fn rewrite_sender(sender: &MailAddr, rewrite: Option<&MailFromRewrite>) -> String {
    if sender.user.is_empty() && sender.domain.is_empty() {
        return String::new();
    }
    let (user, domain) = match rewrite {
        None => (sender.user.as_str(), sender.domain.as_str()),
        Some(MailFromRewrite::Address { user, domain }) => (user.as_str(), domain.as_str()),
        Some(MailFromRewrite::User(user)) => (user.as_str(), sender.domain.as_str()),
        Some(MailFromRewrite::Domain(domain)) => (sender.user.as_str(), domain.as_str()),
    };
    format!("{user}@{domain}")
}

/// The next source address of `src <t>`, if the action has one.
async fn source_address(shared: &Shared, relay: &Relay) -> Result<Option<IpAddr>, Outcome> {
    let Some(table) = relay.src else {
        return Ok(None);
    };
    let table = shared.tables.get(table);
    let text = table
        .fetch(Service::Source)
        .await
        .map_err(|e| temporary(format!("421 4.3.0 source table: {e}")))?
        .ok_or_else(|| temporary(format!("421 4.3.0 source table {} is empty", table.name())))?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| temporary(format!("421 4.3.0 invalid source address {text:?}")))
}

/// The HELO name: `helo NAME`, else `helo-src <t>`'s name for the source
/// address, else the server's name.
async fn helo_name(
    shared: &Shared,
    relay: &Relay,
    source: Option<IpAddr>,
) -> Result<String, Outcome> {
    if let Some(helo) = &relay.helo {
        return Ok(helo.clone());
    }
    if let (Some(table), Some(source)) = (relay.helo_src, source) {
        let table = shared.tables.get(table);
        let found = table
            .lookup(Service::Addrname, &source.to_string())
            .await
            .map_err(|e| temporary(format!("421 4.3.0 helo-src table: {e}")))?;
        return found.ok_or_else(|| {
            temporary(format!(
                "421 4.3.0 no helo name for {source} in table {}",
                table.name()
            ))
        });
    }
    Ok(shared.settings.server_name.clone())
}

/// Tries the hosts in order; the outcomes of the first transaction, or a
/// temporary failure naming the last error.
async fn try_hosts(
    shared: &Shared,
    plan: &Plan<'_>,
    hosts: &[Host],
    source: Option<IpAddr>,
    helo: &str,
) -> Result<Vec<Outcome>, Outcome> {
    let mut last: Option<(String, Failure)> = None;
    let mut tried = false;
    let limits = limits_for(&shared.config, plan.destination.host_or_domain());
    for host in hosts {
        for &addr in &host.addrs {
            if !family_allowed(limits, addr)
                || source.is_some_and(|s| s.is_ipv4() != addr.is_ipv4())
            {
                continue;
            }
            if shared.hosts().is_broken(addr, Instant::now()) {
                continue;
            }
            tried = true;
            let relay = format!("{addr} ({})", host.name);
            let key = RouteKey {
                destination: plan.destination.clone(),
                source,
                addr,
                name: host.name.clone(),
                helo: helo.to_owned(),
                user: plan.login.as_ref().map(|l| l.user.clone()),
            };
            match transaction(shared, plan, &key).await {
                Ok(Done {
                    local,
                    dsn,
                    results: Ok(results),
                }) => {
                    let source = local.map(|ip| ip.to_string());
                    let outcomes = results
                        .into_iter()
                        .map(|result| Outcome {
                            dsn_passed: dsn,
                            source: source.clone(),
                            accepted: result.as_ref().ok().map(|reply| reply.one_line()),
                            result: match result {
                                Ok(_) => LocalResult::Delivered,
                                Err(f) if f.is_temporary() => LocalResult::Temporary(f.errorline()),
                                Err(f) => LocalResult::Permanent(f.errorline()),
                            },
                            relay: relay.clone(),
                        })
                        .collect();
                    return Ok(outcomes);
                }
                Ok(Done {
                    local,
                    results: Err(failure),
                    ..
                }) => {
                    let outcome = Outcome {
                        dsn_passed: false,
                        source: local.map(|ip| ip.to_string()),
                        result: if failure.is_temporary() {
                            LocalResult::Temporary(failure.errorline())
                        } else {
                            LocalResult::Permanent(failure.errorline())
                        },
                        accepted: None,
                        relay,
                    };
                    return Ok(vec![outcome; plan.outgoing.recipients.len()]);
                }
                Err(failure) => {
                    tracing::info!("mta: {relay}: {failure}");
                    if shared.hosts().failed(addr, &host.name, Instant::now()) {
                        tracing::warn!("mta: {relay}: marked broken after repeated failures");
                    }
                    last = Some((relay, failure));
                }
            }
        }
    }
    Err(match last {
        Some((relay, failure)) => Outcome {
            dsn_passed: false,
            result: LocalResult::Temporary(failure.errorline()),
            accepted: None,
            source: source.map(|ip| ip.to_string()),
            relay,
        },
        None if tried => temporary("421 4.4.1 No usable route to the destination"),
        None => temporary(format!(
            "421 4.4.1 No usable MX for {} (all marked broken or wrong family)",
            plan.destination.host_or_domain()
        )),
    })
}

/// A seed for spreading equal MX preferences.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_now());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(user: &str, domain: &str) -> MailAddr {
        MailAddr {
            user: user.to_owned(),
            domain: domain.to_owned(),
        }
    }

    #[test]
    fn mail_from_rewrites_a_non_empty_sender() {
        let sender = addr("joe", "example.org");
        let cases = [
            (None, "joe@example.org"),
            (
                Some(MailFromRewrite::Address {
                    user: "bounce".to_owned(),
                    domain: "relay.example".to_owned(),
                }),
                "bounce@relay.example",
            ),
            (
                Some(MailFromRewrite::User("bounce".to_owned())),
                "bounce@example.org",
            ),
            (
                Some(MailFromRewrite::Domain("relay.example".to_owned())),
                "joe@relay.example",
            ),
        ];
        for (rewrite, expected) in cases {
            assert_eq!(rewrite_sender(&sender, rewrite.as_ref()), expected);
        }
        let null = MailAddr::default();
        let any = MailFromRewrite::User("x".to_owned());
        assert_eq!(rewrite_sender(&null, Some(&any)), "");
    }
}
