//! The sockets the resolver asks through: hickory's Tokio sockets, except
//! that each UDP socket is connected to its nameserver.
//!
//! hickory sends from unconnected sockets, so the ICMP "port unreachable"
//! of a host where no nameserver runs (resolv.conf naming 127.0.0.1
//! without a local resolver, a test's dead port) never reaches it, and
//! every lookup waits out its timeout. On a connected socket the kernel
//! reports it to the next receive as "connection refused": the lookup
//! fails at once, as it does for the C library and OpenSMTPD's asr (which
//! connect their UDP sockets too), and a session is not delayed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hickory_resolver::name_server::GenericConnector;
use hickory_resolver::proto::runtime::{RuntimeProvider, TokioRuntimeProvider};
use hickory_resolver::proto::udp::DnsUdpSocket;
use tokio::io::{Interest, Ready};
use tokio::net::UdpSocket;

/// The connection provider of [`super::Resolver`].
pub(super) type Connector = GenericConnector<ConnectedUdp>;

/// Tokio's runtime provider with connected UDP sockets.
#[derive(Clone, Default)]
pub(super) struct ConnectedUdp(TokioRuntimeProvider);

impl RuntimeProvider for ConnectedUdp {
    type Handle = <TokioRuntimeProvider as RuntimeProvider>::Handle;
    type Timer = <TokioRuntimeProvider as RuntimeProvider>::Timer;
    type Udp = ConnectedSocket;
    type Tcp = <TokioRuntimeProvider as RuntimeProvider>::Tcp;

    fn create_handle(&self) -> Self::Handle {
        self.0.create_handle()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Self::Tcp>>>> {
        self.0.connect_tcp(server_addr, bind_addr, timeout)
    }

    /// A socket bound to `local_addr` and connected to `server_addr`
    /// (hickory still sends with `sendto(2)` to that same address, which
    /// Linux accepts on a connected socket).
    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Self::Udp>>>> {
        Box::pin(async move {
            let socket = UdpSocket::bind(local_addr).await?;
            socket.connect(server_addr).await?;
            Ok(ConnectedSocket {
                socket: Arc::new(socket),
                waiting: Mutex::new(None),
            })
        })
    }
}

/// What a receive waits on: the socket readable, or in error.
type Readiness = Pin<Box<dyn Future<Output = io::Result<Ready>> + Send>>;

/// A UDP socket connected to its nameserver, whose receive also ends on
/// the error the kernel queues for it (Tokio's own receive waits for data
/// only, and would miss it).
pub(super) struct ConnectedSocket {
    socket: Arc<UdpSocket>,
    /// The readiness being waited for, kept between polls.
    waiting: Mutex<Option<Readiness>>,
}

impl ConnectedSocket {
    /// The error queued on the socket, if any (taking it clears it).
    fn queued_error(&self) -> io::Result<()> {
        match self.socket.take_error()? {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl DnsUdpSocket for ConnectedSocket {
    type Time = <TokioRuntimeProvider as RuntimeProvider>::Timer;

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            self.queued_error()?;
            match self.socket.try_recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                received => return Poll::Ready(received),
            }
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let readiness = waiting.get_or_insert_with(|| {
                let socket = Arc::clone(&self.socket);
                Box::pin(async move { socket.ready(Interest::READABLE | Interest::ERROR).await })
            });
            let ready = ready!(readiness.as_mut().poll(cx));
            *waiting = None;
            if ready?.is_error() {
                self.queued_error()?;
                // No error left (taken by an earlier receive): forget the
                // event, or the next wait would end at once again.
                let _ = self.socket.try_io(Interest::ERROR, || {
                    Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                });
            }
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_send_to(cx, buf, target)
    }
}
