//! The listening sockets: `listen on` addresses resolved and bound, and
//! one accept loop per socket spawning a session task per connection.
//!
//! A session first reads the PROXY v2 header on `proxy-v2` listeners
//! (`proxy.rs`: its client becomes the session's source), looks up the
//! client's reverse name, then its server name by the local address in
//! the `hostnames` table (`hostnames.rs`), and only then greets. The
//! accept loops stop while the [`Gate`] is paused or at its session
//! limit.
//!
//! Names are resolved without DNS: `localhost` is the loopback addresses,
//! `*` and `all` every interface address, any other name an interface's
//! addresses (`getifaddrs(3)`); IPv6 link-local addresses are left out
//! (they need a scope to bind). `inet4` / `inet6` keep one family.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::gate::{Family, Gate};
use super::handler::{IntakeHandler, ListenerContext};
use super::{proxy, Error, LiveSessions, Shared};
use crate::config::{AddressFamily, ListenAddress, Listener};
use crate::interfaces;
use crate::smtp::conn::{self, BoxStream, ConnConfig, Drain, Handler};
use crate::smtp::{Peer, Session};

/// The backlog of every listening socket.
const BACKLOG: u32 = 1024;

/// The addresses `listener` binds to.
pub fn resolve(listener: &Listener) -> Result<Vec<IpAddr>, Error> {
    let mut addresses = match &listener.address {
        ListenAddress::Ip(ip) => vec![*ip],
        ListenAddress::Name(name) => {
            let lower = name.to_ascii_lowercase();
            let found = match lower.as_str() {
                "localhost" => vec![
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ],
                "*" | "all" => interface_addresses(None).map_err(|e| resolve_error(name, &e))?,
                _ => interface_addresses(Some(name)).map_err(|e| resolve_error(name, &e))?,
            };
            if found.is_empty() {
                return Err(Error::Resolve {
                    name: name.clone(),
                    reason: "no such interface (host names are not resolved)".to_owned(),
                });
            }
            found
        }
    };
    addresses.retain(|a| match listener.family {
        Some(AddressFamily::Inet4) => a.is_ipv4(),
        Some(AddressFamily::Inet6) => a.is_ipv6(),
        None => true,
    });
    Ok(addresses)
}

fn resolve_error(name: &str, e: &io::Error) -> Error {
    Error::Resolve {
        name: name.to_owned(),
        reason: e.to_string(),
    }
}

/// Binds every address of every listener, logging each.
pub(super) async fn bind_all(
    shared: &Shared,
) -> Result<Vec<(TcpListener, Arc<ListenerContext>)>, Error> {
    let mut bound = Vec::new();
    for listener in &shared.config.listeners {
        let context = Arc::new(ListenerContext::new(shared, listener)?);
        for ip in resolve(listener)? {
            let addr = SocketAddr::new(ip, listener.port);
            let socket = bind(addr).map_err(|source| Error::Bind { addr, source })?;
            tracing::info!("listening on {addr}");
            bound.push((socket, Arc::clone(&context)));
        }
    }
    Ok(bound)
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections on `socket` until aborted, one task per session
/// (each following `sessions` for the daemon's shutdown), none while
/// `gate` is paused.
pub(super) async fn accept_loop(
    socket: TcpListener,
    context: Arc<ListenerContext>,
    shared: Arc<Shared>,
    gate: Gate,
    sessions: LiveSessions,
) {
    loop {
        gate.opened().await;
        gate.room().await;
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            () = gate.paused() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (context, shared) = (Arc::clone(&context), Arc::clone(&shared));
                let family = if peer.ip().to_canonical().is_ipv4() {
                    Family::Inet4
                } else {
                    Family::Inet6
                };
                let count = gate.session(family, context.smtps());
                let drain = sessions.follow();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, peer, context, shared, drain).await {
                        tracing::debug!("session from {peer}: {e}");
                    }
                    drop(count);
                });
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Out of descriptors: wait for a session to end.
                gate.exhausted(&e).await;
            }
            Err(e) => {
                // A transient network error: wait a little rather than
                // spin.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One session, from accept to close.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    context: Arc<ListenerContext>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<Drain>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let ip = match context.proxy_v2() {
        false => peer.ip().to_canonical(),
        true => match proxy::accept(&mut stream, peer, &mut drain).await {
            Some(ip) => ip,
            // Closed without a word, as OpenSMTPD closes it.
            None => return Ok(()),
        },
    };
    tracing::debug!("connection from {} on port {}", ip, context.port());
    // Before the greeting, as OpenSMTPD: bounded in time, never an error.
    let name = shared.resolver.peer_name(ip).await;
    tracing::debug!(
        "{ip} is {} (fcrdns {})",
        name.rdns_or_unknown(),
        name.fcrdns
    );
    let host = name.rdns_or_unknown().to_owned();
    let config = context.session_config_for(&shared, local.ip()).await;
    let filters = context.filter().and_then(|f| shared.filters.session(f));
    let mut handler = IntakeHandler::new(shared, Arc::clone(&context), ip, name)
        .with_session_config(Arc::clone(&config));
    if let Some(filters) = filters {
        let src = SocketAddr::new(
            ip,
            if ip == peer.ip().to_canonical() {
                peer.port()
            } else {
                0
            },
        );
        handler = handler.with_filters(filters, src.to_string(), local.to_string());
    }
    let log = handler.log();
    log.connected(Some(ip), &host);
    let mut stream: BoxStream = Box::new(stream);
    if context.smtps() {
        stream = match handler.accept_tls(stream).await {
            Ok(stream) => stream,
            Err(e) => {
                log.disconnected(&Err(e));
                return Ok(());
            }
        };
    }
    let session = Session::new(config, &Peer::Ip(ip).to_string());
    let config = ConnConfig::default();
    let outcome = conn::run_draining(stream, session, &mut handler, config, drain).await;
    // Whatever ended the session, a message not committed is dropped.
    handler.abort_message().await;
    handler.session_ended();
    log.disconnected(&outcome);
    Ok(())
}

/// The addresses of every interface (`None`) or of the interface named
/// `name`, IPv6 link-local ones left out, each once.
fn interface_addresses(name: Option<&str>) -> io::Result<Vec<IpAddr>> {
    let mut addresses = Vec::new();
    for found in interfaces::all()? {
        let wanted = name.map_or(true, |n| n == found.interface);
        let link_local =
            matches!(found.address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if wanted && !link_local && !addresses.contains(&found.address) {
            addresses.push(found.address);
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(address: ListenAddress, family: Option<AddressFamily>) -> Listener {
        Listener {
            family,
            port: 25,
            ..Listener::new(address)
        }
    }

    #[test]
    fn literals_localhost_and_families() {
        let ip = ListenAddress::Ip("192.0.2.7".parse().unwrap());
        assert_eq!(
            resolve(&listener(ip.clone(), None)).unwrap(),
            ["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
        assert!(resolve(&listener(ip, Some(AddressFamily::Inet6)))
            .unwrap()
            .is_empty());
        let local = ListenAddress::Name("localhost".into());
        assert_eq!(resolve(&listener(local.clone(), None)).unwrap().len(), 2);
        assert_eq!(
            resolve(&listener(local, Some(AddressFamily::Inet4))).unwrap(),
            [IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
    }

    #[test]
    fn interfaces() {
        let lo = resolve(&listener(
            ListenAddress::Name("lo".into()),
            Some(AddressFamily::Inet4),
        ))
        .unwrap();
        assert_eq!(lo, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let all = resolve(&listener(ListenAddress::Name("*".into()), None)).unwrap();
        assert!(all.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let err = resolve(&listener(ListenAddress::Name("nosuchif0".into()), None)).unwrap_err();
        assert!(err.to_string().contains("no such interface"), "{err}");
    }
}
