use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::{CipherSuite, ClientConfig, RootCertStore, SupportedCipherSuite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::ciphers::{parse_protocols, select};
use super::*;
use crate::config::Dhe;

/// A scratch directory for one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("smtpd-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA that signs server certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A pki named `name` for a certificate of `names`, written to `dir`:
    /// the chain (leaf and CA) and the key.
    fn pki(&self, dir: &Scratch, name: &str, names: &[&str]) -> Pki {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let file = name.replace('*', "star");
        Pki {
            name: name.to_owned(),
            cert: dir.write(
                &format!("{file}.crt"),
                &format!("{}{}", leaf.pem(), self.cert.pem()),
            ),
            key: dir.write(&format!("{file}.key"), &key.serialize_pem()),
            dhe: Dhe::None,
        }
    }

    /// A client certificate for `name` and its key.
    fn client_cert(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (vec![cert.der().clone()], key)
    }

    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> TlsConnector {
        self.client_with(versions, None)
    }

    /// A client trusting this CA, presenting `cert` if given.
    fn client_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots);
        let config = match cert {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        TlsConnector::from(Arc::new(config))
    }
}

fn settings<'a>(
    pkis: &[&'a Pki],
    ciphers: Option<&'a str>,
    protocols: Option<&'a str>,
) -> Settings<'a> {
    Settings {
        pkis: pkis.to_vec(),
        ciphers,
        protocols,
        ..Settings::default()
    }
}

/// A handshake between `server` and a client verifying `name`; both ends
/// then exchange a line. Returns what the server saw.
async fn handshake(
    server: &ServerTls,
    client: &TlsConnector,
    name: &str,
) -> io::Result<Established<tokio::io::DuplexStream>> {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let client_side = async {
        let mut tls = client.connect(name, far).await?;
        tls.write_all(b"EHLO client\r\n").await?;
        tls.flush().await?;
        let mut reply = [0u8; 8];
        tls.read_exact(&mut reply).await?;
        assert_eq!(&reply, b"250 ok\r\n");
        Ok::<_, io::Error>(tls)
    };
    let server_side = async {
        let mut established = server.accept(near).await?;
        let mut line = [0u8; 13];
        established.stream.read_exact(&mut line).await?;
        assert_eq!(&line, b"EHLO client\r\n");
        established.stream.write_all(b"250 ok\r\n").await?;
        established.stream.flush().await?;
        Ok(established)
    };
    let (client_result, server_result) = tokio::join!(client_side, server_side);
    client_result?;
    server_result
}

#[tokio::test]
async fn handshake_reports_link_tls_and_server_name() {
    let dir = Scratch::new();
    let ca = Ca::new();
    let pki = ca.pki(&dir, "mx.example.org", &["mx.example.org"]);
    let server = ServerTls::new(&settings(&[&pki], None, None)).unwrap();
    let tls13 = handshake(
        &server,
        &ca.client(&[&rustls::version::TLS13]),
        "mx.example.org",
    )
    .await
    .unwrap();
    assert_eq!(link_tls(&tls13.info), "TLSv1.3:TLS_AES_256_GCM_SHA384:256");
    assert!(!tls13.info.verified);
    assert_eq!(tls13.server_name.as_deref(), Some("mx.example.org"));
    // rcgen's keys are ECDSA P-256.
    let tls12 = handshake(
        &server,
        &ca.client(&[&rustls::version::TLS12]),
        "mx.example.org",
    )
    .await
    .unwrap();
    assert_eq!(
        link_tls(&tls12.info),
        "TLSv1.2:ECDHE-ECDSA-AES256-GCM-SHA384:256"
    );
}

#[tokio::test]
async fn sni_chooses_among_the_listener_pkis_by_certificate_name() {
    let dir = Scratch::new();
    let ca = Ca::new();
    let default = ca.pki(&dir, "mx.example.org", &["mx.example.org"]);
    let wildcard = ca.pki(&dir, "*", &["*.example.net"]);
    let named = ca.pki(&dir, "other", &["mail.example.com", "smtp.example.com"]);
    let server = ServerTls::new(&settings(&[&default, &wildcard, &named], None, None)).unwrap();
    let client = ca.client(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    for name in [
        "mx.example.org",
        "smtp.example.net",
        "mail.example.com",
        "smtp.example.com",
    ] {
        let established = handshake(&server, &client, name).await;
        assert!(established.is_ok(), "{name}: {established:?}");
    }
    // A name no other pki covers gets the default, which the client then
    // refuses for that name.
    let err = handshake(&server, &client, "a.b.example.net")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    let keys: Vec<Arc<CertifiedKey>> = [&default, &wildcard, &named]
        .iter()
        .map(|p| load_pki(p).unwrap())
        .collect();
    let resolver = SniResolver {
        default: Arc::clone(&keys[0]),
        others: keys[1..].to_vec(),
    };
    let cases: &[(Option<&str>, usize)] = &[
        (None, 0),
        (Some("mx.example.org"), 0),
        (Some("x.example.net"), 1),
        (Some("X.EXAMPLE.NET"), 1),
        (Some("example.net"), 0),
        (Some("mail.example.com"), 2),
        (Some("unknown.test"), 0),
        (Some("192.0.2.1"), 0),
        (Some("not a name"), 0),
    ];
    for (name, expected) in cases {
        let chosen = resolver.choose(*name);
        assert!(Arc::ptr_eq(&chosen, &keys[*expected]), "{name:?}");
    }
}

#[tokio::test]
async fn protocols_and_ciphers_restrict_the_handshake() {
    let dir = Scratch::new();
    let ca = Ca::new();
    let pki = ca.pki(&dir, "mx.example.org", &["mx.example.org"]);
    let both = ca.client(&[&rustls::version::TLS13, &rustls::version::TLS12]);

    let only12 = ServerTls::new(&settings(
        &[&pki],
        Some("ECDHE-ECDSA-CHACHA20-POLY1305"),
        Some("tlsv1.2"),
    ))
    .unwrap();
    let established = handshake(&only12, &both, "mx.example.org").await.unwrap();
    assert_eq!(
        link_tls(&established.info),
        "TLSv1.2:ECDHE-ECDSA-CHACHA20-POLY1305:256"
    );

    let only13 = ServerTls::new(&settings(
        &[&pki],
        Some("TLS_AES_128_GCM_SHA256"),
        Some("!tlsv1.2"),
    ))
    .unwrap();
    let established = handshake(&only13, &both, "mx.example.org").await.unwrap();
    assert_eq!(
        link_tls(&established.info),
        "TLSv1.3:TLS_AES_128_GCM_SHA256:128"
    );
    let refused = handshake(
        &only13,
        &ca.client(&[&rustls::version::TLS12]),
        "mx.example.org",
    )
    .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn client_certificates_are_verified_against_the_ca() {
    let dir = Scratch::new();
    let ca = Ca::new();
    let pki = ca.pki(&dir, "mx.example.org", &["mx.example.org"]);
    let ca_file = dir.write("ca.pem", &ca.cert.pem());
    let optional = ServerTls::new(&Settings {
        client_ca: Some(&ca_file),
        ..settings(&[&pki], None, None)
    })
    .unwrap();
    let required = ServerTls::new(&Settings {
        client_ca: Some(&ca_file),
        verify_client: true,
        ..settings(&[&pki], None, None)
    })
    .unwrap();
    let stranger = Ca::new();
    let versions: &[&'static rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    let anonymous = || ca.client_with(versions, None);
    let known = || ca.client_with(versions, Some(ca.client_cert("client.example.org")));
    let foreign = || ca.client_with(versions, Some(stranger.client_cert("client.example.org")));

    let name = "mx.example.org";
    let verified = |e: Established<_>| e.info.verified;
    assert_eq!(
        handshake(&optional, &anonymous(), name)
            .await
            .map(verified)
            .ok(),
        Some(false)
    );
    assert_eq!(
        handshake(&optional, &known(), name)
            .await
            .map(verified)
            .ok(),
        Some(true)
    );
    assert_eq!(
        handshake(&required, &known(), name)
            .await
            .map(verified)
            .ok(),
        Some(true)
    );
    assert!(handshake(&required, &anonymous(), name).await.is_err());
    assert!(handshake(&optional, &foreign(), name).await.is_err());
    assert!(handshake(&required, &foreign(), name).await.is_err());

    let no_ca = ServerTls::new(&Settings {
        verify_client: true,
        ..settings(&[&pki], None, None)
    });
    assert!(matches!(no_ca, Err(Error::NoCa)));
    let empty = dir.write("empty.pem", "");
    let err = ServerTls::new(&Settings {
        client_ca: Some(&empty),
        ..settings(&[&pki], None, None)
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("empty.pem: no usable CA certificate"),
        "{err}"
    );
}

#[test]
fn protocol_strings_read_as_libtls_reads_them() {
    let (both, only12, only13) = (
        Protocols::DEFAULT,
        Protocols {
            tls12: true,
            tls13: false,
        },
        Protocols {
            tls12: false,
            tls13: true,
        },
    );
    let cases: &[(&str, Result<Protocols, ()>)] = &[
        ("secure", Ok(both)),
        ("default", Ok(both)),
        ("all", Ok(both)),
        ("legacy", Ok(both)),
        ("tlsv1.2", Ok(only12)),
        ("TLSv1.3", Ok(only13)),
        ("tlsv1.2,tlsv1.3", Ok(both)),
        ("tlsv1.2:tlsv1.3", Ok(both)),
        ("tlsv1.0, tlsv1.2", Ok(only12)),
        ("!tlsv1.3", Ok(only12)),
        ("all,!tlsv1.2", Ok(only13)),
        ("tlsv1", Ok(both)),
        ("tlsv1.0,tlsv1.1", Err(())),
        ("!tlsv1.2,!tlsv1.3", Err(())),
        ("tls1.3", Err(())),
        ("", Err(())),
        ("tlsv1.2,", Err(())),
    ];
    for (text, expected) in cases {
        assert_eq!(&parse_protocols(text).map_err(|_| ()), expected, "{text:?}");
    }
    assert_eq!(
        parse_protocols("sslv3").unwrap_err(),
        "unknown protocol \"sslv3\""
    );
}

fn all_suites() -> Vec<SupportedCipherSuite> {
    rustls::crypto::ring::default_provider().cipher_suites
}

fn names(suites: &[SupportedCipherSuite]) -> Vec<String> {
    suites
        .iter()
        .map(|s| ciphers::openssl_name(s.suite()).0)
        .collect()
}

#[test]
fn cipher_strings_select_among_rustls_suites() {
    let all = all_suites();
    let tls13 = [
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ];
    let with13 = |tls12: &[&str]| -> Vec<String> {
        tls13.iter().chain(tls12).map(|s| (*s).to_owned()).collect()
    };
    let cases: &[(&str, Vec<String>)] = &[
        ("secure", names(&all)),
        ("COMPAT", names(&all)),
        ("HIGH:!aNULL:!MD5", names(&all)),
        ("ALL:!aNULL:!eNULL:!RC4:!3DES:!kRSA", names(&all)),
        (
            "ECDHE+AESGCM:!ECDSA",
            with13(&["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]),
        ),
        (
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305",
            with13(&[
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ]),
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            with13(&["ECDHE-RSA-AES256-GCM-SHA384"]),
        ),
        (
            "HIGH:-AES128:NOSUCHWORD",
            with13(&[
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ]),
        ),
        (
            "TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES256-GCM-SHA384",
            vec![
                "TLS_CHACHA20_POLY1305_SHA256".to_owned(),
                "ECDHE-RSA-AES256-GCM-SHA384".to_owned(),
            ],
        ),
        ("TLSv1.3", with13(&[])),
        ("AESGCM+AES256+TLSv1.3", vec![tls13[0].to_owned()]),
    ];
    for (text, expected) in cases {
        let selected = select(text, &all, Protocols::DEFAULT).unwrap();
        assert_eq!(&names(&selected), expected, "{text:?}");
    }
    let only12 = Protocols {
        tls12: true,
        tls13: false,
    };
    for text in ["RC4:3DES", "!HIGH", "TLSv1.3", "kRSA+AES"] {
        assert!(select(text, &all, only12).is_err(), "{text:?}");
    }
    assert!(
        select("RC4", &all, Protocols::DEFAULT).is_ok(),
        "TLS 1.3 remains"
    );
}

#[test]
fn openssl_names_of_suites() {
    assert_eq!(
        ciphers::openssl_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ("ECDHE-RSA-AES128-GCM-SHA256".to_owned(), 128)
    );
    assert_eq!(
        ciphers::openssl_name(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
        ("TLS_CHACHA20_POLY1305_SHA256".to_owned(), 256)
    );
    for suite in all_suites() {
        assert_ne!(ciphers::openssl_name(suite.suite()).1, 0, "{suite:?}");
    }
}

#[test]
fn errors_name_the_pki_and_the_file() {
    let dir = Scratch::new();
    let ca = Ca::new();
    let good = ca.pki(&dir, "mx.example.org", &["mx.example.org"]);
    let other = ca.pki(&dir, "other.example.org", &["other.example.org"]);
    let missing = Pki {
        cert: dir.0.join("missing.crt"),
        ..good.clone()
    };
    let not_pem = Pki {
        cert: dir.write("garbage.crt", "not a certificate\n"),
        ..good.clone()
    };
    let no_key = Pki {
        key: good.cert.clone(),
        ..good.clone()
    };
    let mismatch = Pki {
        key: other.key,
        ..good.clone()
    };
    let bad_der = Pki {
        cert: dir.write(
            "bad.crt",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
        ..good.clone()
    };
    let cases: &[(&Pki, &str)] = &[
        (&missing, "missing.crt: cannot read"),
        (&not_pem, "garbage.crt: no certificate"),
        (&no_key, "mx.example.org.crt: no private key"),
        (
            &mismatch,
            "other.example.org.key: key does not match certificate",
        ),
        (&bad_der, "bad.crt: bad certificate"),
    ];
    for (pki, expected) in cases {
        let err = ServerTls::new(&settings(&[pki], None, None))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("pki mx.example.org: "), "{err}");
        let shown = err.replace(&format!("{}/", dir.0.display()), "");
        assert!(
            shown.contains(expected) || shown.contains(&expected.replace(": cannot read", "")),
            "{err}"
        );
    }
    assert!(matches!(
        ServerTls::new(&settings(&[], None, None)),
        Err(Error::NoPki)
    ));
    let err = ServerTls::new(&settings(&[&good], Some("RC4"), Some("tlsv1.2"))).unwrap_err();
    assert!(err.to_string().starts_with("ciphers \"RC4\": "), "{err}");
    let err = ServerTls::new(&settings(&[&good], None, Some("sslv3"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "protocols \"sslv3\": unknown protocol \"sslv3\""
    );
}

#[tokio::test]
async fn a_listener_is_configured_from_smtpd_conf() {
    let dir = Scratch::new();
    let ca = Ca::new();
    let first = ca.pki(&dir, "mx.example.org", &["mx.example.org"]);
    let second = ca.pki(&dir, "mail.example.net", &["mail.example.net"]);
    let clients = dir.write("clients.pem", &ca.cert.pem());
    let text = format!(
        "pki mx.example.org cert \"{}\"\n\
         pki mx.example.org key \"{}\"\n\
         pki mail.example.net cert \"{}\" key \"{}\"\n\
         ca clients cert \"{}\"\n\
         smtp ciphers \"ECDHE-ECDSA-AES128-GCM-SHA256\"\n\
         listen on 127.0.0.1 port 2525 tls pki mx.example.org pki mail.example.net protocols \"tlsv1.2\"\n\
         listen on 127.0.0.1 port 4650 smtps pki mail.example.net ciphers \"ECDHE-ECDSA-CHACHA20-POLY1305\"\n\
         listen on 127.0.0.1 port 4651 smtps verify pki mx.example.org ca clients\n\
         action deliver maildir\n\
         match from any for domain example.org action deliver\n",
        first.cert.display(),
        first.key.display(),
        second.cert.display(),
        second.key.display(),
        clients.display(),
    );
    let config: Config = text.parse().unwrap();
    let client = ca.client(&[&rustls::version::TLS13, &rustls::version::TLS12]);

    let starttls = ServerTls::for_listener(&config, &config.listeners[0]).unwrap();
    for name in ["mx.example.org", "mail.example.net"] {
        let established = handshake(&starttls, &client, name).await.unwrap();
        assert_eq!(
            link_tls(&established.info),
            "TLSv1.2:ECDHE-ECDSA-AES128-GCM-SHA256:128",
            "{name}"
        );
    }
    let smtps = ServerTls::for_listener(&config, &config.listeners[1]).unwrap();
    let established = handshake(
        &smtps,
        &ca.client(&[&rustls::version::TLS12]),
        "mail.example.net",
    )
    .await
    .unwrap();
    assert_eq!(
        link_tls(&established.info),
        "TLSv1.2:ECDHE-ECDSA-CHACHA20-POLY1305:256"
    );
    let verify = ServerTls::for_listener(&config, &config.listeners[2]).unwrap();
    let known = ca.client_with(
        &[&rustls::version::TLS13],
        Some(ca.client_cert("client.example.org")),
    );
    let established = handshake(&verify, &known, "mx.example.org").await.unwrap();
    assert!(established.info.verified);
    assert!(handshake(&verify, &client, "mx.example.org").await.is_err());
}
