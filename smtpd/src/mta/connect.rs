//! One transaction of a batch on one next-hop address: over an idle
//! connection of the same route when one is open (a connection found dead
//! before the transaction started is closed and the next one tried), or
//! over a new one opened within the pool's limits (TCP from the chosen
//! source, then the client's greeting, EHLO, STARTTLS by the
//! destination's TLS policy, AUTH). Afterwards the connection goes back
//! to the pool for the next message, or is closed after
//! `session-mail-max` messages or once it is unusable. The smtp-out
//! reports of the connection follow each step.

use std::net::{IpAddr, SocketAddr};

use tokio::time::Instant;

use super::client::{self, Client, Failure, Params, RcptResult, Stage, TlsPolicy};
use super::deliver::Plan;
use super::engine::{close, limits_for, Shared};
use super::pool::{Permits, Pooled, RouteKey};
use super::report::Reports;
use super::route::{Protocol, TlsMode};

/// A transaction that ran: the local address it was sent from, and one
/// result per recipient, or the failure of the whole transaction (final
/// for this attempt).
pub(super) struct Done {
    /// The connection's local address.
    pub(super) local: Option<IpAddr>,
    /// The next hop offers DSN (so NOTIFY went with the recipients).
    pub(super) dsn: bool,
    /// Per recipient, or for all.
    pub(super) results: Result<Vec<RcptResult>, Failure>,
}

/// One transaction over a reused or new connection to `key`'s address;
/// `Err` when the session failed before it (try another host).
pub(super) async fn transaction(
    shared: &Shared,
    plan: &Plan<'_>,
    key: &RouteKey,
) -> Result<Done, Failure> {
    let limits = &limits_for(&shared.config, plan.destination.host_or_domain()).values;
    let permits = loop {
        let mut pooled = match shared.pool.idle_or_permits(key, limits).await {
            Ok(pooled) => pooled,
            Err(permits) => break permits,
        };
        match pooled
            .client
            .send(&plan.outgoing, plan.message.reader())
            .await
        {
            Err(failure) if before_transaction(&failure) => {
                // The idle connection died: close it, try the next.
                close(shared, key.addr, pooled).await;
            }
            result => return Ok(finish(shared, plan, key, pooled, result).await),
        }
    };
    let pooled = open(shared, plan, key, permits).await?;
    shared.hosts().succeeded(key.addr);
    let mut pooled = pooled;
    let result = pooled
        .client
        .send(&plan.outgoing, plan.message.reader())
        .await;
    Ok(finish(shared, plan, key, pooled, result).await)
}

/// Whether a failure of `send` on a reused connection happened before the
/// peer saw the transaction (the connection was closed while idle): a
/// temporary failure without a reply at RSET or MAIL. The client's own
/// refusals of the message (SIZE, 8-bit, SMTPUTF8: permanent, no reply)
/// are a verdict on the message, not on the connection.
fn before_transaction(failure: &Failure) -> bool {
    failure.is_temporary()
        && failure.reply.is_none()
        && matches!(failure.stage, Stage::Reset | Stage::MailFrom)
}

/// Keeps the connection for the next message, or closes it; the results.
async fn finish(
    shared: &Shared,
    plan: &Plan<'_>,
    key: &RouteKey,
    mut pooled: Pooled,
    result: Result<Vec<RcptResult>, Failure>,
) -> Done {
    let tx = &plan.outgoing;
    let recipients: Vec<String> = tx.recipients.iter().map(|r| r.address.clone()).collect();
    let size = plan.message.size();
    pooled
        .reports
        .transaction(plan.msgid, size, &tx.sender, &recipients, &result);
    pooled.sent += 1;
    let local = pooled.local;
    let dsn = pooled.client.peer_info().extensions.dsn;
    let max = limits_for(&shared.config, plan.destination.host_or_domain())
        .values
        .session_mail_max;
    if pooled.client.is_usable() && pooled.sent < max {
        shared.pool.put(key.clone(), pooled);
    } else {
        close(shared, key.addr, pooled).await;
    }
    Done {
        local,
        dsn,
        results: result,
    }
}

/// Opens a session to `key`'s address, holding `permits` of the limits.
async fn open(
    shared: &Shared,
    plan: &Plan<'_>,
    key: &RouteKey,
    permits: Permits,
) -> Result<Pooled, Failure> {
    let destination = &plan.destination;
    let tls_config = match (destination.tls, shared.tls.get(&plan.action)) {
        (TlsMode::Off, _) => None,
        (_, Some(Ok(tls))) => Some(tls.clone()),
        (TlsMode::Opportunistic, _) => None,
        (_, Some(Err(why))) => {
            return Err(Failure::temporary(
                Stage::Tls,
                format!("TLS unavailable: {why}"),
            ))
        }
        (_, None) => return Err(Failure::temporary(Stage::Tls, "TLS unavailable")),
    };
    let tls = match (destination.tls, &tls_config) {
        (TlsMode::Off, _) | (TlsMode::Opportunistic, None) => TlsPolicy::Off,
        (TlsMode::Opportunistic, Some(_)) => TlsPolicy::Opportunistic,
        (TlsMode::StartTls, _) => TlsPolicy::Required,
        (TlsMode::Implicit, _) => TlsPolicy::Implicit,
    };
    let outbound = match (&shared.settings.filters, plan.relay.filter) {
        (Some(filters), Some(filter)) => filters.outbound(filter),
        _ => None,
    };
    let reports = Reports::new(outbound);
    let mut params = Params {
        helo: key.helo.clone(),
        tls,
        verify: destination.verify,
        server_name: key.name.clone(),
        tls_config,
        auth: plan.login.clone(),
        lmtp: destination.protocol == Protocol::Lmtp,
        timeouts: shared.settings.timeouts,
        transcript: reports.transcript(),
    };
    let now = Instant::now();
    shared.hosts().connecting(key.addr, &key.name, now);
    {
        let mut relays = shared.relays();
        let state = relays.entry(destination.clone()).or_default();
        state.nconn += 1;
        state.lastconn = Some(now);
    }
    let peer = SocketAddr::new(key.addr, destination.port);
    let (mut opened, mut local) = session(&params, key, peer, &reports).await;
    if params.tls == TlsPolicy::Opportunistic && opened.as_ref().is_err_and(handshake_failed) {
        // As 7.8: opportunistic TLS that fails is retried in clear, on a
        // new connection (never when TLS is required or implicit).
        tracing::info!(
            "mta: {peer} ({}): opportunistic TLS failed, downgrading to plain",
            key.name
        );
        params.tls = TlsPolicy::Off;
        params.tls_config = None;
        (opened, local) = session(&params, key, peer, &reports).await;
    }
    if let Ok(client) = &opened {
        reports.opened(client.peer_info(), &key.helo, key.user.as_deref());
    }
    match opened {
        Ok(client) => Ok(Pooled {
            local,
            reports,
            client,
            sent: 0,
            permits,
        }),
        Err(failure) => {
            shared.hosts().closed(key.addr);
            Err(failure)
        }
    }
}

/// A TCP connection to `peer` and a session over it; the local address.
async fn session(
    params: &Params,
    key: &RouteKey,
    peer: SocketAddr,
    reports: &Reports,
) -> (Result<Client, Failure>, Option<IpAddr>) {
    let stream = match client::connect(peer, key.source, params.timeouts.connect).await {
        Ok(stream) => stream,
        Err(failure) => return (Err(failure), key.source),
    };
    let local = stream.local_addr().ok();
    reports.connected(&key.name, local, peer);
    let opened = Client::open(stream, params).await;
    if opened.is_err() {
        reports.disconnected();
    }
    (opened, local.map(|a| a.ip()).or(key.source))
}

/// Whether opening failed in the TLS handshake after STARTTLS was
/// accepted (not a refused or missing STARTTLS: those go on in clear).
fn handshake_failed(failure: &Failure) -> bool {
    failure.stage == Stage::Tls && failure.reply.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replyless_early_failures_retry_on_a_new_connection() {
        assert!(before_transaction(&Failure::temporary(
            Stage::Reset,
            "closed"
        )));
        assert!(before_transaction(&Failure::temporary(
            Stage::MailFrom,
            "closed"
        )));
        assert!(!before_transaction(&Failure::temporary(
            Stage::DataEnd,
            "closed"
        )));
        let too_big = Failure::local(
            Stage::MailFrom,
            crate::smtp::Enhanced::new(5, 3, 4),
            "message too big for the remote host",
        );
        assert!(!before_transaction(&too_big));
        let reply = client::PeerReply::new(421, None, vec!["bye".to_owned()]);
        assert!(!before_transaction(&Failure::refused(
            Stage::MailFrom,
            reply
        )));
    }
}
