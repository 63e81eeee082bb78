//! TLS for SIP signalling (SPEC §2.4, §8): the rustls configurations the
//! transports use, built from `[tls]` and swapped on reload.
//!
//! Why a swap of whole configurations rather than a certificate resolver
//! alone: a reload may change the certificate, the CA bundle for carriers
//! and the client CA together, and an [`ArcSwap`] of one [`TlsConfigs`]
//! changes all three atomically. Every handshake loads the current value
//! once; an established connection keeps the `Arc` its handshake used, so a
//! reload never touches connections or calls in progress (peers such as
//! FreeSWITCH and Asterisk need a restart for a new certificate; trunkd
//! does not).
//!
//! Protocol versions are TLS 1.2 and 1.3 only, with rustls' default suites
//! from the `ring` provider: ECDHE key exchange with AES-GCM or
//! ChaCha20-Poly1305, nothing else (SPEC §8).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::warn;
use trunkd_config::TlsSettings;

/// Only these; TLS 1.0 and 1.1 are refused in the handshake.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A `[tls]` file that could not be used. Its display names the key the
/// way configuration errors do (`tls.cert_file: …`), so a failed reload
/// reads like any other invalid file.
#[derive(Debug, thiserror::Error)]
#[error("{section}.{key}: {path}: {reason}")]
pub struct TlsError {
    /// The configuration section: `tls`, or `admin` for its listener.
    pub section: String,
    pub key: String,
    pub path: String,
    pub reason: String,
}

impl TlsError {
    /// The same error about a key of another section (`admin.tls_cert_file`).
    fn in_section(mut self, section: &str) -> Self {
        self.section = section.to_owned();
        self
    }

    fn new(key: impl Into<String>, path: &Path, reason: impl std::fmt::Display) -> Self {
        TlsError {
            section: "tls".to_owned(),
            key: key.into(),
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Everything a handshake needs, built together from one `[tls]`.
pub struct TlsConfigs {
    /// `None` without `cert_file`: no TLS listener can serve.
    server: Option<Arc<ServerConfig>>,
    /// Each certificate file loaded (`cert_file`, then every
    /// `sni_certificates` one) with its leaf certificate's notAfter in Unix
    /// seconds, for `tls_certificate_not_after_timestamp_seconds`.
    pub not_after: Vec<(String, i64)>,
    client: Arc<ClientConfig>,
    handshake_timeout: Duration,
}

impl TlsConfigs {
    /// Reads the files `settings` names and builds both sides. Blocking
    /// file I/O: call it at start or on a blocking thread.
    ///
    /// # Errors
    /// The first file that is missing, unreadable, not PEM, or that rustls
    /// refuses (no certificate, a key that is not the certificate's).
    pub fn load(settings: &TlsSettings) -> Result<TlsConfigs, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = match (&settings.cert_file, &settings.key_file) {
            (Some(c), Some(k)) => Some((read_chain(c, "cert_file")?, read_key(k)?)),
            _ => None,
        };
        let mut not_after = Vec::new();
        if let (Some(path), Some((chain, _))) = (&settings.cert_file, &identity) {
            not_after.push((
                path.display().to_string(),
                leaf_not_after(chain, path, "cert_file")?,
            ));
        }
        let server = match &identity {
            None => None,
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(VERSIONS)
                    .map_err(|e| TlsError::new("cert_file", Path::new("-"), e))?;
                let builder = match &settings.client_ca_file {
                    None => builder.with_no_client_auth(),
                    Some(ca) => {
                        let roots = read_roots(ca, "client_ca_file")?;
                        // Asked, not required: a PBX without a certificate
                        // still connects; admission refuses it only for a VC
                        // with `require_client_certificate`.
                        let verifier = WebPkiClientVerifier::builder_with_provider(
                            Arc::new(roots),
                            provider.clone(),
                        )
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::new("client_ca_file", ca, e))?;
                        builder.with_client_cert_verifier(verifier)
                    }
                };
                let cert_file = settings.cert_file.as_deref().unwrap_or(Path::new("-"));
                let config = if settings.sni_certificates.is_empty() {
                    builder
                        .with_single_cert(chain.clone(), key.clone_key())
                        .map_err(|e| TlsError::new("cert_file", cert_file, e))?
                } else {
                    let key_file = settings.key_file.as_deref().unwrap_or(Path::new("-"));
                    let mut by_name = std::collections::HashMap::new();
                    for (i, s) in settings.sni_certificates.iter().enumerate() {
                        let field = format!("sni_certificates[{i}].");
                        let ck = certified_key(&provider, &s.cert_file, &s.key_file, &field)?;
                        not_after.push((
                            s.cert_file.display().to_string(),
                            leaf_not_after(&ck.cert, &s.cert_file, &format!("{field}cert_file"))?,
                        ));
                        by_name.insert(s.server_name.clone(), ck);
                    }
                    let default = certified_key(&provider, cert_file, key_file, "")?;
                    builder.with_cert_resolver(Arc::new(SniResolver { default, by_name }))
                };
                Some(Arc::new(config))
            }
        };

        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::new("ca_file", Path::new("-"), e))?;
        let builder = if settings.verify_server {
            let roots = match &settings.ca_file {
                Some(ca) => read_roots(ca, "ca_file")?,
                None => system_roots(),
            };
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider, None)))
        };
        // trunkd's own certificate doubles as its client certificate, for
        // carriers that authenticate their customers by mutual TLS.
        let client = match identity {
            Some((chain, key)) => {
                let cert_file = settings.cert_file.as_deref().unwrap_or(Path::new("-"));
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::new("cert_file", cert_file, e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsConfigs {
            server,
            not_after,
            client: Arc::new(client),
            handshake_timeout: settings.handshake_timeout,
        })
    }
}

/// The admin listener's server configuration (`[admin] tls_cert_file`,
/// `tls_key_file`): TLS 1.2 and 1.3, HTTP/1.1 by ALPN, no client
/// certificates (the bearer token authenticates).
///
/// # Errors
/// A file that is missing, not PEM, or a key that is not the certificate's.
pub fn admin_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_chain(cert, "tls_cert_file").map_err(|e| e.in_section("admin"))?;
    let key_der = read_key_as(key, "tls_key_file").map_err(|e| e.in_section("admin"))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::new("tls_cert_file", cert, e).in_section("admin"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::new("tls_cert_file", cert, e).in_section("admin"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the first certificate of
/// `cert_file` (the admin listener's own, `[admin] tls_cert_file`).
///
/// # Errors
/// The file is missing or holds no certificate.
pub fn pinned_client_config(cert_file: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let leaf = read_chain(cert_file, "tls_cert_file")
        .map_err(|e| e.in_section("admin"))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            TlsError::new("tls_cert_file", cert_file, "no certificate").in_section("admin")
        })?;
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::new("tls_cert_file", cert_file, e).in_section("admin"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider, Some(leaf))))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The configurations in force; see the module docs for why a swap.
pub struct Tls {
    current: ArcSwap<TlsConfigs>,
}

impl Tls {
    pub fn new(configs: TlsConfigs) -> Tls {
        Tls {
            current: ArcSwap::from_pointee(configs),
        }
    }

    /// Makes `configs` the one new handshakes use.
    pub fn store(&self, configs: TlsConfigs) {
        self.current.store(Arc::new(configs));
    }

    /// An acceptor for one incoming handshake; `None` without a certificate.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current.load().server.clone().map(TlsAcceptor::from)
    }

    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.current.load().client.clone())
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.current.load().handshake_timeout
    }
}

/// The name a client verifies and sends: SNI for a DNS name; an IP
/// literal is matched against the certificate's IP addresses and is never
/// sent as SNI (RFC 6066 §3).
pub fn server_name(host: &str, ip: std::net::IpAddr) -> ServerName<'static> {
    match ServerName::try_from(host.to_owned()) {
        Ok(n @ ServerName::DnsName(_)) => n,
        _ => ServerName::IpAddress(ip.into()),
    }
}

fn read_chain(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::new(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(key, path, e))?;
    if chain.is_empty() {
        return Err(TlsError::new(key, path, "no PEM certificate in the file"));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    read_key_as(path, "key_file")
}

fn read_key_as(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::new(key, path, e))
}

/// Serves the certificate of the name a client asks for (SNI), and the
/// default certificate to clients that ask for none or another name.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: std::collections::HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()));
        Some(named.unwrap_or(&self.default).clone())
    }
}

/// The notAfter (Unix seconds) of a chain's first (leaf) certificate: when
/// the listener's certificate expires, which is what an operator must
/// renew (`TrunkdCertificateExpiring` alerts on it).
fn leaf_not_after(chain: &[CertificateDer<'_>], path: &Path, key: &str) -> Result<i64, TlsError> {
    let leaf = chain
        .first()
        .ok_or_else(|| TlsError::new(key, path, "no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TlsError::new(key, path, format!("not an X.509 certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
    field: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_chain(cert, &format!("{field}cert_file"))?;
    let der = read_key_as(key, &format!("{field}key_file"))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::new(format!("{field}key_file"), key, e))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| TlsError::new(format!("{field}key_file"), key, e))?;
    Ok(Arc::new(ck))
}

fn read_roots(path: &Path, key: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(read_chain(path, key)?);
    if added == 0 {
        return Err(TlsError::new(
            key,
            path,
            "no usable CA certificate in the file",
        ));
    }
    Ok(roots)
}

/// The operating system's trust store (Debian: /etc/ssl/certs), read on
/// every load so that an updated ca-certificates applies on reload.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        warn!(error = %e, "reading the system's CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        warn!(
            "no system CA certificates found: outgoing TLS will fail verification; set tls.ca_file"
        );
    }
    roots
}

/// `verify_server = false`: the handshake's signatures are still checked
/// (the peer holds the key of the certificate it sent), but not who
/// issued the certificate or for which name. For labs only.
#[derive(Debug)]
/// A server verifier without a CA: any certificate (`verify_server =
/// false`, labs only), or exactly one pinned leaf certificate (the CLI
/// talking to its own daemon's admin listener, whose certificate file it
/// reads from the same configuration). Signatures are always checked, so
/// the peer holds the certificate's key.
struct AcceptAnyServer(Arc<CryptoProvider>, Option<CertificateDer<'static>>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.1 {
            Some(pin) if pin.as_ref() != end_entity.as_ref() => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
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
