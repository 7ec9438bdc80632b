//! The client side of TLS with rustls (ring provider), for STARTTLS and
//! smtps: the configurations a relay uses (built once, shared by its
//! sessions), the handshake, and what it negotiated.
//!
//! [`ClientTls::new`] loads the CA certificates server certificates are
//! verified against (the relay's `ca`, else the system bundle
//! [`DEFAULT_CA_FILE`]) and the relay's `pki` as a client certificate. It
//! holds two configurations: one that verifies the server's certificate
//! against the CAs and the MX name (`tls`, `smtp+tls://`, `smtps://`), and
//! one that accepts any certificate (opportunistic STARTTLS and `tls
//! no-verify`, as OpenSMTPD 7.8 does); with the latter, the chain is still
//! checked after the handshake so that logs can say whether it was valid.
//! Without any usable CA certificate, the verifying configuration is
//! missing and a session that needs it fails (temporarily) at the
//! handshake rather than going on unverified.
//!
//! A relay's `protocols` and `ciphers` strings are read as a listener's
//! (`smtp::tls`): TLS 1.2 and 1.3 only, the suites rustls has; the
//! negotiated suite is reported with OpenSSL's name, as libtls does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

use super::wire::BoxIo;
use crate::smtp::tls::{
    openssl_cipher_name, parse_protocols, select_ciphers, Protocols, DEFAULT_CA_FILE,
};
use crate::smtp::TlsInfo;

/// What a relay's TLS uses.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings<'a> {
    /// CA certificates (PEM) for verification; `None`: [`DEFAULT_CA_FILE`].
    pub ca_file: Option<&'a Path>,
    /// A client certificate chain and its key (PEM files): the relay's
    /// `pki`.
    pub client_cert: Option<(&'a Path, &'a Path)>,
    /// A libtls protocol string (`protocols`).
    pub protocols: Option<&'a str>,
}

/// Why a relay's TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file of a named CA or pki cannot be used.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The `protocols` string cannot be used.
    #[error("protocols {0:?}: {1}")]
    Protocols(String, String),
    /// The `ciphers` string cannot be used.
    #[error("ciphers {0:?}: {1}")]
    Ciphers(String, String),
    /// rustls refused the combination.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client TLS configurations of one relay; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    verifying: Option<Arc<ClientConfig>>,
    accepting: Arc<ClientConfig>,
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("verifies", &self.verifying.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds both configurations. A named CA file that gives no
    /// certificate is an error; the system bundle missing is not (only
    /// verifying sessions fail then).
    pub fn new(settings: &TlsSettings<'_>) -> Result<Self, TlsError> {
        Self::with_ciphers(settings, None)
    }

    /// [`ClientTls::new`] offering only the suites a libtls cipher string
    /// selects (the relay's `ciphers`, else `smtp ciphers`).
    pub fn with_ciphers(
        settings: &TlsSettings<'_>,
        ciphers: Option<&str>,
    ) -> Result<Self, TlsError> {
        let protocols = match settings.protocols {
            Some(text) => {
                parse_protocols(text).map_err(|why| TlsError::Protocols(text.to_owned(), why))?
            }
            None => Protocols::DEFAULT,
        };
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if protocols.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if protocols.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(text) = ciphers {
            provider.cipher_suites = select_ciphers(text, &provider.cipher_suites, protocols)
                .map_err(|why| TlsError::Ciphers(text.to_owned(), why))?;
        }
        let provider = Arc::new(provider);
        let roots = load_roots(settings.ca_file)?;
        let verifier = match roots {
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?,
            ),
            None => None,
        };
        let client_cert = match settings.client_cert {
            Some((cert, key)) => Some(load_client_cert(cert, key)?),
            None => None,
        };
        let build = |verifier: Arc<dyn ServerCertVerifier>| -> Result<_, TlsError> {
            let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(&versions)?
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            let config = match &client_cert {
                Some((chain, key)) => {
                    builder.with_client_auth_cert(chain.clone(), key.clone_key())?
                }
                None => builder.with_no_client_auth(),
            };
            Ok(Arc::new(config))
        };
        let verifying = match &verifier {
            Some(v) => Some(build(Arc::clone(v) as Arc<dyn ServerCertVerifier>)?),
            None => None,
        };
        let accepting = build(Arc::new(AcceptAny(Arc::clone(&provider))))?;
        Ok(Self {
            verifying,
            accepting,
            verifier,
        })
    }

    /// The handshake over `stream` for `server_name` (checked against the
    /// certificate when `verify`). The caller bounds its time.
    pub(super) async fn connect(
        &self,
        stream: BoxIo,
        server_name: &str,
        verify: bool,
    ) -> Result<(BoxIo, TlsInfo), String> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| format!("invalid server name {server_name:?}"))?;
        let config = match (verify, &self.verifying) {
            (true, Some(config)) => Arc::clone(config),
            (true, None) => return Err("no CA certificates to verify the server with".to_owned()),
            (false, _) => Arc::clone(&self.accepting),
        };
        let stream = TlsConnector::from(config)
            .connect(name.clone(), stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let connection = stream.get_ref().1;
        let verified = verify || self.check(connection, &name);
        let info = tls_info(connection, verified)
            .ok_or_else(|| "TLS handshake finished without parameters".to_owned())?;
        Ok((Box::new(stream), info))
    }

    /// Whether the certificate an unverified session got is valid anyway.
    fn check(&self, connection: &rustls::ClientConnection, name: &ServerName<'_>) -> bool {
        let (Some(verifier), Some(chain)) = (&self.verifier, connection.peer_certificates()) else {
            return false;
        };
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        verifier
            .verify_server_cert(leaf, intermediates, name, &[], UnixTime::now())
            .is_ok()
    }
}

/// The CA certificates of `path` (else the system bundle): `None` when the
/// system bundle is missing or empty.
fn load_roots(path: Option<&Path>) -> Result<Option<RootCertStore>, TlsError> {
    let (path, named) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CA_FILE), false),
    };
    let error = |why: String| TlsError::File {
        path: path.to_owned(),
        why,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if named => return Err(error(e.to_string())),
        Err(_) => return Ok(None),
    };
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("bad PEM: {e}")))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    match (added, named) {
        (0, true) => Err(error("no usable CA certificate".to_owned())),
        (0, false) => Ok(None),
        _ => Ok(Some(roots)),
    }
}

/// A client certificate chain and its key.
type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_client_cert(cert: &Path, key: &Path) -> Result<ClientCert, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::File {
            path: path.to_owned(),
            why: e.to_string(),
        })
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: cert.to_owned(),
            why: format!("bad PEM: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::File {
            path: cert.to_owned(),
            why: "no certificate".to_owned(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| TlsError::File {
        path: key.to_owned(),
        why: format!("no usable private key: {e}"),
    })?;
    Ok((chain, key_der))
}

/// The negotiated parameters, `verified` saying whether the server's
/// certificate was valid for its name.
fn tls_info(connection: &rustls::ClientConnection, verified: bool) -> Option<TlsInfo> {
    let version = match connection.protocol_version()? {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => return None,
    };
    let (cipher, bits) = openssl_cipher_name(connection.negotiated_cipher_suite()?.suite());
    Some(TlsInfo {
        version: version.to_owned(),
        cipher,
        bits,
        verified,
    })
}

/// Accepts any server certificate, still checking the handshake's
/// signatures (opportunistic TLS and `no-verify`).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
