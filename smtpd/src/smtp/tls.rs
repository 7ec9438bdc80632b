//! Server-side TLS for STARTTLS and `smtps` listeners, with rustls (ring
//! provider): the configuration built from a listener's `pki` entries, the
//! certificate chosen by SNI, and the handshake over a tokio stream.
//!
//! [`ServerTls::for_listener`] loads the PEM certificate chain and key of
//! every `pki` the listener names (errors name the pki and the file) and
//! maps its `ciphers` (or `smtp ciphers`) and `protocols` strings. The
//! certificate is chosen as libtls (OpenSMTPD's TLS library) chooses it:
//! the first pki is the default; when the client sends a server name, the
//! first of the *other* pkis whose certificate names cover it (subject
//! alternative DNS names, `*.` wildcards for one label) serves instead;
//! nothing matches, or no name was sent: the default. The pki's own name
//! is not consulted, as in libtls.
//!
//! [`ServerTls::accept`] runs the handshake and returns the stream with a
//! [`TlsInfo`], which gives the `Received:` header its TLS part and the
//! filters their `link-tls` line ([`link_tls`], `VERSION:CIPHER:BITS`, with
//! OpenSSL's cipher names as libtls reports them).
//!
//! What rustls cannot do, and so is not done:
//! - TLS 1.0 and 1.1: `protocols` naming them is accepted and they are
//!   left out; a string leaving neither TLS 1.2 nor 1.3 is an error;
//! - suites other than ECDHE with AES-GCM or ChaCha20-Poly1305: `ciphers`
//!   selects among these; words that only select others (`RC4`, `3DES`,
//!   `kRSA`, `DHE`, `CBC`...) select nothing, and a string leaving no TLS
//!   1.2 suite while TLS 1.2 is the only protocol is an error. As in
//!   OpenSSL, the string governs TLS 1.2 suites; TLS 1.3 suites are all on
//!   unless the string names some of them;
//! - `dhe` of a pki: rustls has no finite-field DHE, the value is ignored;
//! - client certificates are asked for as OpenSMTPD asks: always, optional
//!   unless `verify` requires one, verified against the listener's `ca`
//!   (else [`DEFAULT_CA_FILE`]); rustls sends no CA names in its request
//!   (as libtls); an invalid certificate fails the handshake, a valid one
//!   makes `TlsInfo::verified` true;
//! - a certificate without subject alternative names is chosen by SNI only
//!   as the default (libtls falls back to the common name).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::received::TlsInfo;
use crate::config::{Config, Listener, Pki};

#[path = "tls_ciphers.rs"]
mod ciphers;

pub use ciphers::{parse_protocols, Protocols};

/// The CA certificates client certificates are verified against when a
/// listener names no `ca` (Debian's bundle; OpenSMTPD uses its TLS
/// library's default file).
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a listener's TLS serves.
#[derive(Debug, Clone, Default)]
pub struct Settings<'a> {
    /// Server certificates: the first is the default, the others serve SNI.
    pub pkis: Vec<&'a Pki>,
    /// A libtls cipher string.
    pub ciphers: Option<&'a str>,
    /// A libtls protocol string.
    pub protocols: Option<&'a str>,
    /// CA certificates (PEM) to verify client certificates against; a
    /// client certificate is asked for only when this is set.
    pub client_ca: Option<&'a Path>,
    /// A client certificate is required (`verify`).
    pub verify_client: bool,
}

/// Why a listener's TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key file cannot be read.
    #[error("pki {pki}: cannot read {}: {source}", path.display())]
    Read {
        /// The pki's name.
        pki: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the kind wanted.
    #[error("pki {pki}: {}: {why}", path.display())]
    Pem {
        /// The pki's name.
        pki: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key is of an unsupported kind, or does not match the
    /// certificate.
    #[error("pki {pki}: {}: {why}", path.display())]
    Key {
        /// The pki's name.
        pki: String,
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The CA file for client certificates is unusable.
    #[error("ca file {}: {why}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `verify` without CA certificates to verify against.
    #[error("client verification requires CA certificates")]
    NoCa,
    /// A listener with TLS but no pki.
    #[error("no pki for a TLS listener")]
    NoPki,
    /// A `ciphers` string that cannot be used.
    #[error("ciphers {0:?}: {1}")]
    Ciphers(String, String),
    /// A `protocols` string that cannot be used.
    #[error("protocols {0:?}: {1}")]
    Protocols(String, String),
    /// rustls refused the combination.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A listener's TLS server configuration, shared by its sessions.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established<S> {
    /// The TLS stream, to carry the session on.
    pub stream: TlsStream<S>,
    /// The negotiated parameters.
    pub info: TlsInfo,
    /// The server name the client asked for (SNI), if any.
    pub server_name: Option<String>,
}

impl ServerTls {
    /// The configuration of `listener`: its pkis (the first is the
    /// default), its `ciphers` (else `smtp ciphers`) and `protocols`, client
    /// certificates verified against its `ca` (else [`DEFAULT_CA_FILE`],
    /// when it exists or `verify` needs it).
    pub fn for_listener(config: &Config, listener: &Listener) -> Result<Self, Error> {
        let default_ca = Path::new(DEFAULT_CA_FILE);
        let client_ca = match listener.ca {
            Some(id) => Some(config[id].cert.as_path()),
            None => (listener.verify_client || default_ca.exists()).then_some(default_ca),
        };
        Self::new(&Settings {
            pkis: listener.pkis.iter().map(|&id| &config[id]).collect(),
            ciphers: listener
                .ciphers
                .as_deref()
                .or(config.smtp.ciphers.as_deref()),
            protocols: listener.protocols.as_deref(),
            client_ca,
            verify_client: listener.verify_client,
        })
    }

    /// The configuration of `settings`.
    pub fn new(settings: &Settings<'_>) -> Result<Self, Error> {
        let mut keys = Vec::with_capacity(settings.pkis.len());
        for pki in &settings.pkis {
            keys.push(load_pki(pki)?);
        }
        let (default, others) = keys.split_first().ok_or(Error::NoPki)?;
        let (ciphers, protocols) = (settings.ciphers, settings.protocols);
        let protocols = match protocols {
            Some(text) => {
                parse_protocols(text).map_err(|why| Error::Protocols(text.to_owned(), why))?
            }
            None => Protocols::DEFAULT,
        };
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(text) = ciphers {
            provider.cipher_suites = ciphers::select(text, &provider.cipher_suites, protocols)
                .map_err(|why| Error::Ciphers(text.to_owned(), why))?;
        }
        let resolver = SniResolver {
            default: Arc::clone(default),
            others: others.to_vec(),
        };
        let provider = Arc::new(provider);
        let verifier = client_verifier(settings, &provider)?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&protocols.versions())?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The server handshake over `stream`. The caller bounds its time.
    pub async fn accept<S>(&self, stream: S) -> io::Result<Established<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = self.acceptor.accept(stream).await?;
        let connection = stream.get_ref().1;
        let info = tls_info(connection)
            .ok_or_else(|| io::Error::other("handshake finished without parameters"))?;
        let server_name = connection.server_name().map(str::to_owned);
        Ok(Established {
            stream,
            info,
            server_name,
        })
    }
}

/// The `link-tls` text filters receive: `VERSION:CIPHER:BITS`.
pub fn link_tls(info: &TlsInfo) -> String {
    format!("{}:{}:{}", info.version, info.cipher, info.bits)
}

/// The name OpenSSL (so libtls) gives a negotiated suite, and its strength
/// in bits: what relaying's client side reports too.
pub fn openssl_cipher_name(suite: rustls::CipherSuite) -> (String, u32) {
    ciphers::openssl_name(suite)
}

/// The suites of `available` a libtls cipher string selects, in
/// `available`'s order: a listener's `ciphers`, and a relay's.
pub fn select_ciphers(
    text: &str,
    available: &[rustls::SupportedCipherSuite],
    protocols: Protocols,
) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    ciphers::select(text, available, protocols)
}

/// Who verifies client certificates: nobody without a CA file; else
/// webpki, for an optional or (`verify`) required certificate.
fn client_verifier(
    settings: &Settings<'_>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let Some(path) = settings.client_ca else {
        return match settings.verify_client {
            true => Err(Error::NoCa),
            false => Ok(WebPkiClientVerifier::no_client_auth()),
        };
    };
    let ca_error = |why: String| Error::Ca {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(format!("bad PEM: {e}")))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ca_error("no usable CA certificate".to_owned()));
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .clear_root_hint_subjects();
    let builder = match settings.verify_client {
        true => builder,
        false => builder.allow_unauthenticated(),
    };
    builder.build().map_err(|e| ca_error(e.to_string()))
}

/// The negotiated parameters of a finished handshake.
fn tls_info(connection: &rustls::ServerConnection) -> Option<TlsInfo> {
    let version = match connection.protocol_version()? {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => return None,
    };
    let suite = connection.negotiated_cipher_suite()?.suite();
    let (cipher, bits) = ciphers::openssl_name(suite);
    Some(TlsInfo {
        version: version.to_owned(),
        cipher,
        bits,
        verified: connection
            .peer_certificates()
            .is_some_and(|chain| !chain.is_empty()),
    })
}

/// The certificate chain and key of one pki, checked to match.
fn load_pki(pki: &Pki) -> Result<Arc<CertifiedKey>, Error> {
    let chain = load_chain(pki)?;
    let key = load_key(pki, &pki.key)?;
    let key_error = |why: String| Error::Key {
        pki: pki.name.clone(),
        path: pki.key.clone(),
        why,
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| key_error(format!("unsupported key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| key_error(format!("key does not match certificate: {e}")))?;
    Ok(Arc::new(certified))
}

fn read(pki: &Pki, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        pki: pki.name.clone(),
        path: path.to_owned(),
        source,
    })
}

fn pem_error(pki: &Pki, path: &Path, why: String) -> Error {
    Error::Pem {
        pki: pki.name.clone(),
        path: path.to_owned(),
        why,
    }
}

/// Every `CERTIFICATE` of the cert file, leaf first.
fn load_chain(pki: &Pki) -> Result<Vec<CertificateDer<'static>>, Error> {
    let text = read(pki, &pki.cert)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(pki, &pki.cert, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(pki, &pki.cert, "no certificate".to_owned()));
    }
    webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| pem_error(pki, &pki.cert, format!("bad certificate: {e}")))?;
    Ok(chain)
}

/// The first private key of the key file (PKCS#8, PKCS#1 or SEC1).
fn load_key(pki: &Pki, path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let text = read(pki, path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            pem_error(pki, path, "no private key".to_owned())
        }
        other => pem_error(pki, path, format!("bad PEM: {other}")),
    })
}

/// Chooses the certificate by SNI, as libtls does.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    others: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn choose(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        // libtls takes no IP literal as a server name (RFC 6066 section 3).
        let name = server_name.and_then(|n| ServerName::try_from(n).ok());
        let Some(name @ ServerName::DnsName(_)) = name else {
            return Arc::clone(&self.default);
        };
        self.others
            .iter()
            .find(|key| covers(key, &name))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// Whether the leaf certificate of `key` is valid for `name`.
fn covers(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    key.end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
        .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(hello.server_name()))
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
