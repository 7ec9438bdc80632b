//! Opening the TCP connection to a next hop: from a chosen source address
//! (the relay's `src`), within a time limit, with `TCP_NODELAY` so that
//! the final dot and pipelined commands leave at once (OpenSMTPD 6.8's
//! Nagle delay on the final dot cost it most of its relay throughput).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::failure::{Failure, Stage};

/// Connects to `peer`, from `source` when given, within `limit`.
pub async fn connect(
    peer: SocketAddr,
    source: Option<IpAddr>,
    limit: Duration,
) -> Result<TcpStream, Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::temporary(Stage::Connect, format!("{what} {peer}: {e}"))
    };
    let socket = match peer {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| fail("socket for", e))?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| fail(&format!("bind {source} for"), e))?;
    }
    let stream = match tokio::time::timeout(limit, socket.connect(peer)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(fail("connect to", e)),
        Err(_) => {
            return Err(Failure::temporary(
                Stage::Connect,
                format!("connect to {peer}: timeout"),
            ))
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|e| fail("TCP_NODELAY on", e))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[tokio::test]
    async fn connects_from_the_source_address_without_nagle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let stream = connect(peer, Some(source), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(stream.nodelay().unwrap());
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from.ip(), source);
    }

    #[tokio::test]
    async fn refused_is_temporary() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = listener.local_addr().unwrap();
        drop(listener);
        let failure = connect(peer, None, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(failure.is_temporary());
        assert_eq!(failure.stage, Stage::Connect);
    }
}
