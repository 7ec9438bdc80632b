//! A nameserver on 127.0.0.1 for the tests, so that no daemon they start
//! and no resolver they build asks the machine's: `hickory-server`
//! answering from in-memory records on a free port (UDP and TCP), in a
//! thread of its own. It is authoritative for the whole tree, so any name
//! it does not hold is NXDOMAIN, never a query elsewhere.
//!
//! [`shared`] is the server every `smtpd_command()` daemon asks, holding
//! the [`Zone::standard`] records (reverse names of 127.0.0.1 and ::1,
//! addresses, MX). [`Zone::serve`] starts another with other records;
//! [`DeadDns`] is a nameserver port that never answers. 127.0.0.2, the
//! outside client of `mail.rs`, has no reverse name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, AAAA, MX, PTR, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use tokio::sync::oneshot;

/// The reverse name of 127.0.0.1 and ::1, whose addresses are those
/// (FCrDNS passes).
pub(crate) const CLIENT_NAME: &str = "client.smtpd.test";

/// An address whose reverse name does not lead back to it (FCrDNS fails).
pub(crate) const LIAR_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// The reverse name of [`LIAR_IP`]; its address is 192.0.2.2.
pub(crate) const LIAR_NAME: &str = "liar.smtpd.test";

/// A domain with two mail exchangers: `mx1.relay.smtpd.test` (preference
/// 10, 127.0.0.1) and `mx2.relay.smtpd.test` (20, 127.0.0.1 and ::1).
pub(crate) const RELAY_DOMAIN: &str = "relay.smtpd.test";

/// A domain with a null MX (RFC 7505).
pub(crate) const NULL_MX_DOMAIN: &str = "null-mx.smtpd.test";

/// The TTL of every record.
const TTL: u32 = 300;

/// How long the server keeps a silent TCP connection.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// The records a test nameserver holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Zone {
    records: Vec<Record>,
}

impl Zone {
    /// No records: every name is NXDOMAIN.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The records of [`shared`]; see the constants of this module.
    pub(crate) fn standard() -> Self {
        let localhost4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let localhost6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        Self::new()
            .ptr(localhost4, CLIENT_NAME)
            .ptr(localhost6, CLIENT_NAME)
            .address(CLIENT_NAME, localhost4)
            .address(CLIENT_NAME, localhost6)
            .ptr(LIAR_IP, LIAR_NAME)
            .address(LIAR_NAME, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))
            .mx(RELAY_DOMAIN, 20, "mx2.relay.smtpd.test")
            .mx(RELAY_DOMAIN, 10, "mx1.relay.smtpd.test")
            .address("mx1.relay.smtpd.test", localhost4)
            .address("mx2.relay.smtpd.test", localhost4)
            .address("mx2.relay.smtpd.test", localhost6)
            .mx(NULL_MX_DOMAIN, 0, ".")
    }

    /// Adds the reverse name of `ip`.
    pub(crate) fn ptr(mut self, ip: IpAddr, name: &str) -> Self {
        self.records.push(Record::from_rdata(
            Name::from(ip),
            TTL,
            RData::PTR(PTR(fqdn(name))),
        ));
        self
    }

    /// Adds an address of `name` (A or AAAA).
    pub(crate) fn address(mut self, name: &str, ip: IpAddr) -> Self {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        self.records
            .push(Record::from_rdata(fqdn(name), TTL, rdata));
        self
    }

    /// Adds a mail exchanger of `domain` (`.` for a null MX).
    pub(crate) fn mx(mut self, domain: &str, preference: u16, exchange: &str) -> Self {
        let rdata = RData::MX(MX::new(preference, fqdn(exchange)));
        self.records
            .push(Record::from_rdata(fqdn(domain), TTL, rdata));
        self
    }

    /// Serves these records on a free port of 127.0.0.1, UDP and TCP,
    /// until the returned server is dropped.
    pub(crate) fn serve(self) -> TestDns {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let catalog = self.catalog();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-dns-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let mut server = ServerFuture::new(catalog);
                    server.register_socket_std(udp).unwrap();
                    server.register_listener_std(tcp, TCP_TIMEOUT).unwrap();
                    tokio::select! {
                        done = server.block_until_done() => done.unwrap(),
                        _ = stopped => {}
                    }
                });
            })
            .unwrap();
        TestDns {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// One authority for the root, so every name is answered from here.
    fn catalog(self) -> Catalog {
        let root = Name::root();
        let mut authority = InMemoryAuthority::empty(root.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            fqdn("ns.smtpd.test"),
            fqdn("hostmaster.smtpd.test"),
            1,
            3600,
            600,
            86400,
            TTL,
        );
        let serial = soa.serial();
        assert!(authority.upsert_mut(
            Record::from_rdata(root.clone(), TTL, RData::SOA(soa)),
            serial
        ));
        for record in self.records {
            assert!(authority.upsert_mut(record, serial));
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&root), vec![Arc::new(authority)]);
        catalog
    }
}

/// A running test nameserver.
#[derive(Debug)]
pub(crate) struct TestDns {
    /// Its address, the same port for UDP and TCP.
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The nameserver of this test binary, serving [`Zone::standard`],
/// started on first use and kept until the process ends.
pub(crate) fn shared() -> &'static TestDns {
    static SHARED: OnceLock<TestDns> = OnceLock::new();
    SHARED.get_or_init(|| Zone::standard().serve())
}

/// A nameserver port that never answers: its UDP socket is never read and
/// its TCP connections are accepted by the kernel and never served.
#[derive(Debug)]
pub(crate) struct DeadDns {
    /// The port, the same for UDP and TCP.
    pub(crate) addr: SocketAddr,
    _udp: UdpSocket,
    _tcp: TcpListener,
}

impl DeadDns {
    /// Binds a free port of 127.0.0.1.
    pub(crate) fn bind() -> Self {
        let (udp, tcp) = bind_pair();
        Self {
            addr: udp.local_addr().unwrap(),
            _udp: udp,
            _tcp: tcp,
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        // The port may be taken for TCP: try another.
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            return (udp, tcp);
        }
    }
    panic!("no port of 127.0.0.1 free for both UDP and TCP");
}

fn fqdn(name: &str) -> Name {
    let mut name = Name::from_ascii(name).unwrap();
    name.set_fqdn(true);
    name
}
