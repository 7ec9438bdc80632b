//! The PROXY v2 parser, table-driven, and the reader over in-memory
//! streams (paused time for the timeout).

use tokio::io::AsyncWriteExt;

use super::*;

/// A header: version/command byte, family byte, and the bytes after the
/// prefix.
fn header(ver_cmd: u8, family: u8, rest: &[u8]) -> Vec<u8> {
    let mut bytes = SIGNATURE.to_vec();
    bytes.push(ver_cmd);
    bytes.push(family);
    let len = u16::try_from(rest.len()).unwrap();
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(rest);
    bytes
}

/// The IPv4 block: source, destination, their ports.
fn inet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut block = src.to_vec();
    block.extend_from_slice(&dst);
    block.extend_from_slice(&sport.to_be_bytes());
    block.extend_from_slice(&dport.to_be_bytes());
    block
}

fn inet6(src: Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut block = src.octets().to_vec();
    block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&sport.to_be_bytes());
    block.extend_from_slice(&25u16.to_be_bytes());
    block
}

/// Parses a whole header from a slice.
fn parse(bytes: &[u8]) -> Result<Option<SocketAddr>, Error> {
    let prefix: [u8; PREFIX_LEN] = bytes[..PREFIX_LEN].try_into().unwrap();
    let prefix = parse_prefix(&prefix)?;
    parse_rest(&prefix, &bytes[PREFIX_LEN..])
}

#[test]
fn proxied_clients_and_local_connections() {
    let v4 = inet([203, 0, 113, 9], [192, 0, 2, 1], 51234, 25);
    let client6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let mut with_tlvs = v4.clone();
    // A TLV (type 0x04 NOOP, length 3) after the addresses is skipped.
    with_tlvs.extend_from_slice(&[0x04, 0x00, 0x03, 1, 2, 3]);
    let cases: Vec<(Vec<u8>, Option<SocketAddr>)> = vec![
        (
            header(0x21, 0x11, &v4),
            Some("203.0.113.9:51234".parse().unwrap()),
        ),
        (
            header(0x21, 0x21, &inet6(client6, 40000)),
            Some(SocketAddr::new(IpAddr::V6(client6), 40000)),
        ),
        (
            header(0x21, 0x11, &with_tlvs),
            Some("203.0.113.9:51234".parse().unwrap()),
        ),
        // LOCAL: the proxy's own connection, whatever the block says.
        (header(0x20, 0x00, &[]), None),
        (header(0x20, 0x11, &v4), None),
        (header(0x20, 0x31, &[0u8; 216]), None),
    ];
    for (bytes, expected) in cases {
        assert_eq!(parse(&bytes).unwrap(), expected, "{bytes:02x?}");
    }
}

#[test]
fn malformed_headers_say_why_as_opensmtpd_does() {
    let v4 = inet([203, 0, 113, 9], [192, 0, 2, 1], 51234, 25);
    let mut bad_signature = header(0x21, 0x11, &v4);
    bad_signature[0] = b'P';
    let mut too_long = header(0x21, 0x11, &v4);
    too_long[14..16].copy_from_slice(&65520u16.to_be_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (bad_signature, "protocol error (invalid signature)"),
        (header(0x11, 0x11, &v4), "protocol error (invalid version)"),
        // UDP over IPv4, and an unknown family.
        (
            header(0x21, 0x12, &v4),
            "protocol error (unsupported address family)",
        ),
        (
            header(0x21, 0x41, &v4),
            "protocol error (unsupported address family)",
        ),
        (too_long, "protocol error (header too long)"),
        (
            header(0x21, 0x11, &v4[..11]),
            "protocol error (address info too short)",
        ),
        (
            header(0x21, 0x21, &v4),
            "protocol error (address info too short)",
        ),
        (header(0x22, 0x11, &v4), "protocol error (unknown command)"),
        (
            header(0x21, 0x00, &[]),
            "address translation (UNSPEC family not supported for PROXYing)",
        ),
        (
            header(0x21, 0x31, &[0u8; 216]),
            "address translation (Unix socket sources are not supported)",
        ),
    ];
    for (bytes, reason) in cases {
        let error = parse(&bytes).unwrap_err();
        assert_eq!(error.to_string(), reason, "{bytes:02x?}");
    }
}

#[tokio::test]
async fn exactly_the_header_is_read() {
    let mut bytes = header(
        0x21,
        0x11,
        &inet([198, 51, 100, 4], [192, 0, 2, 1], 1025, 25),
    );
    bytes.extend_from_slice(b"EHLO client.test\r\n");
    let mut input: &[u8] = &bytes;
    let source = read_source(&mut input).await.unwrap();
    assert_eq!(source, Some("198.51.100.4:1025".parse().unwrap()));
    assert_eq!(input, b"EHLO client.test\r\n");
}

#[tokio::test]
async fn a_short_or_plain_smtp_start_is_refused() {
    // The connection ends within the header.
    let whole = header(
        0x21,
        0x11,
        &inet([198, 51, 100, 4], [192, 0, 2, 1], 1025, 25),
    );
    for cut in [0, 5, PREFIX_LEN, whole.len() - 1] {
        let mut input: &[u8] = &whole[..cut];
        let error = read_source(&mut input).await.unwrap_err();
        assert_eq!(error.to_string(), "disconnected", "cut at {cut}");
    }
    // A client that speaks SMTP at once (EHLO and QUIT are 16 bytes).
    let mut input: &[u8] = b"EHLO a\r\nQUIT\r\n\r\n";
    let error = read_source(&mut input).await.unwrap_err();
    assert_eq!(error.to_string(), "protocol error (invalid signature)");
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_dropped_after_the_timeout() {
    let (_client, mut server) = tokio::io::duplex(1024);
    let (_tx, mut drain) = watch::channel(Drain::Serve);
    let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(accept(&mut server, peer, &mut drain).await, None);
    assert_eq!(started.elapsed(), TIMEOUT);
}

#[tokio::test]
async fn accept_gives_the_client_or_the_peer_itself() {
    let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let (_tx, mut drain) = watch::channel(Drain::Serve);
    let (mut client, mut server) = tokio::io::duplex(1024);
    let v4 = inet([203, 0, 113, 9], [192, 0, 2, 1], 51234, 25);
    client.write_all(&header(0x21, 0x11, &v4)).await.unwrap();
    let ip = accept(&mut server, peer, &mut drain).await;
    assert_eq!(ip, Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))));
    client.write_all(&header(0x20, 0x00, &[])).await.unwrap();
    assert_eq!(accept(&mut server, peer, &mut drain).await, Some(peer.ip()));
    // A v4-mapped IPv6 client is an IPv4 one.
    let mapped: Ipv6Addr = "::ffff:203.0.113.10".parse().unwrap();
    client
        .write_all(&header(0x21, 0x21, &inet6(mapped, 1)))
        .await
        .unwrap();
    let ip = accept(&mut server, peer, &mut drain).await;
    assert_eq!(ip, Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))));
}

#[tokio::test]
async fn the_daemon_stopping_ends_the_wait() {
    let (_client, mut server) = tokio::io::duplex(1024);
    let (tx, mut drain) = watch::channel(Drain::Serve);
    let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let waiting = tokio::spawn(async move { accept(&mut server, peer, &mut drain).await });
    tx.send_replace(Drain::Finish);
    assert_eq!(waiting.await.unwrap(), None);
}

#[test]
fn log_addresses_are_opensmtpd_s() {
    assert_eq!(
        LogAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))).to_string(),
        "192.0.2.1"
    );
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(LogAddress(v6).to_string(), "IPv6:2001:db8::1");
}
