//! TLS for both sides of the proxy: server certificates chosen by SNI, and client configs for TLS
//! upstreams (`https`, `grpcs`).
//!
//! Certificates come from the pushed config (`certificates[]` with their `snis`) and are compiled
//! into an immutable [`CertStore`] per config; a bad PEM or a key that does not belong to its
//! certificate fails the whole push with a Kong-shaped entity error, so the old store keeps serving.
//! [`SniResolver`] asks for the current store on every handshake, so a config swap (a rotated
//! Secret) applies to the next handshake without touching open connections.
//!
//! Every config is built with rustls' ring provider passed explicitly, so the process never needs a
//! process-wide default provider (and never picks up aws-lc-rs by accident).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proxy_config::{Certificate, EntityError, FieldError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use thiserror::Error;

use crate::listen::upstream_tls::{ClientCertificate, DepthLimited};

/// ALPN protocol ids.
pub(crate) const ALPN_H2: &[u8] = b"h2";
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The only TLS versions sluice speaks.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider for every config: ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Errors outside of pushed configs: the default certificate, upstream client configs.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{set} is set but {missing} is not; set both or neither")]
    IncompletePair { set: &'static str, missing: &'static str },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("default certificate ({}): {problem}", path.display())]
    DefaultCertificate { path: PathBuf, problem: PemProblem },
    #[error("cannot generate the self-signed default certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CA certificate #{index}: {reason}")]
    CaCertificate { index: usize, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a certificate/key pair could not be used, and which field (`cert` or `key`) is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct PemProblem {
    pub field: &'static str,
    pub message: String,
}

impl PemProblem {
    fn cert(message: impl Into<String>) -> Self {
        PemProblem { field: "cert", message: message.into() }
    }
    fn key(message: impl Into<String>) -> Self {
        PemProblem { field: "key", message: message.into() }
    }
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key into a signing pair, checking
/// that the key belongs to the leaf certificate.
pub(crate) fn certified_key_from_pem(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, PemProblem> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemProblem::cert(format!("invalid certificate PEM: {e}")))?;
    let leaf = chain.first().ok_or_else(|| PemProblem::cert("no certificate in PEM"))?;
    ParsedCertificate::try_from(leaf).map_err(|e| PemProblem::cert(format!("invalid certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PemProblem::key("no private key in PEM"),
        e => PemProblem::key(format!("invalid key PEM: {e}")),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PemProblem::key(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(PemProblem::key("key does not match the certificate"))
        }
        // The provider cannot tell (no public key exposed): rustls itself accepts such pairs.
        Err(rustls::Error::InconsistentKeys(_)) => Ok(certified),
        Err(e) => Err(PemProblem::cert(format!("invalid certificate: {e}"))),
    }
}

/// The server certificates of one config: exact SNI names, wildcard SNI patterns, and the default.
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` and `example.*`, keyed by the pattern itself.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<&String> = self.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<&String> = self.wildcard.keys().collect();
        wildcard.sort();
        f.debug_struct("CertStore").field("exact", &exact).field("wildcard", &wildcard).finish_non_exhaustive()
    }
}

/// Lower case, without a trailing dot.
fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl CertStore {
    /// A store with no SNI entries: every handshake gets `default`.
    pub fn with_default(default: Arc<CertifiedKey>) -> CertStore {
        CertStore { exact: HashMap::new(), wildcard: HashMap::new(), default }
    }

    /// Compiles the pushed certificates. Every broken certificate is reported (entity type
    /// `certificate`, field `cert` or `key`). SNIs come from each certificate's `snis`, as in Kong; a
    /// name listed twice keeps the first certificate (config validation reports such duplicates).
    pub fn build(certs: &[Certificate], default: Arc<CertifiedKey>) -> Result<CertStore, Vec<EntityError>> {
        let mut store = CertStore::with_default(default);
        let mut errors = Vec::new();
        for c in certs {
            let key = match certified_key_from_pem(&c.cert, &c.key) {
                Ok(k) => Arc::new(k),
                Err(p) => {
                    errors.push(EntityError {
                        entity_type: "certificate".to_string(),
                        entity_name: c.display_name().to_string(),
                        entity_id: c.id.clone(),
                        entity_tags: c.tags.clone(),
                        errors: vec![FieldError::new(p.field, p.message)],
                    });
                    continue;
                }
            };
            for sni in &c.snis {
                let name = normalize_name(sni.name());
                let map =
                    if name.starts_with("*.") || name.ends_with(".*") { &mut store.wildcard } else { &mut store.exact };
                map.entry(name).or_insert_with(|| key.clone());
            }
        }
        if errors.is_empty() {
            Ok(store)
        } else {
            Err(errors)
        }
    }

    /// The certificate for a client's SNI: an exact name, then `*.rest` (the first label replaced),
    /// then `first.*` (the last label replaced), then the default. No SNI gets the default.
    pub fn resolve(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        self.lookup(sni).unwrap_or_else(|| self.default.clone())
    }

    /// Like [`CertStore::resolve`] but `None` instead of the default.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = normalize_name(sni?);
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some(dot) = name.find('.') {
            if let Some(k) = self.wildcard.get(&format!("*{}", &name[dot..])) {
                return Some(k.clone());
            }
        }
        if let Some(dot) = name.rfind('.') {
            if let Some(k) = self.wildcard.get(&format!("{}*", &name[..=dot])) {
                return Some(k.clone());
            }
        }
        None
    }

    /// The certificate served when no SNI matches.
    pub fn default_certificate(&self) -> &Arc<CertifiedKey> {
        &self.default
    }

    /// How many SNI names and patterns the store knows.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// True when only the default certificate is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The default certificate: from `KONG_SSL_CERT`/`KONG_SSL_CERT_KEY` when both are given, else a
/// self-signed P-256 certificate for `localhost`, generated now (call once at start).
pub(crate) fn load_default_certificate(
    cert_path: Option<&Path>,
    key_path: Option<&Path>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    match (cert_path, key_path) {
        (Some(cert_path), Some(key_path)) => {
            let read =
                |p: &Path| std::fs::read_to_string(p).map_err(|source| TlsError::Read { path: p.into(), source });
            let (cert, key) = (read(cert_path)?, read(key_path)?);
            let ck = certified_key_from_pem(&cert, &key).map_err(|problem| TlsError::DefaultCertificate {
                path: if problem.field == "key" { key_path.into() } else { cert_path.into() },
                problem,
            })?;
            Ok(Arc::new(ck))
        }
        (Some(_), None) => Err(TlsError::IncompletePair { set: "KONG_SSL_CERT", missing: "KONG_SSL_CERT_KEY" }),
        (None, Some(_)) => Err(TlsError::IncompletePair { set: "KONG_SSL_CERT_KEY", missing: "KONG_SSL_CERT" }),
        (None, None) => self_signed_localhost(),
    }
}

fn self_signed_localhost() -> Result<Arc<CertifiedKey>, TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "sluice default certificate");
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing_key = provider().key_provider.load_private_key(key_der)?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing_key)))
}

/// Picks the server certificate per handshake from whatever store is current at that moment.
pub(crate) struct SniResolver {
    current: Arc<dyn Fn() -> Arc<CertStore> + Send + Sync>,
}

impl SniResolver {
    pub(crate) fn new(current: Arc<dyn Fn() -> Arc<CertStore> + Send + Sync>) -> Self {
        SniResolver { current }
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some((self.current)().resolve(client_hello.server_name()))
    }
}

/// A server config for an `ssl` listener: TLS 1.2 and 1.3; ALPN `h2` then `http/1.1` when the
/// listener has `http2`, else only `http/1.1`.
pub(crate) fn server_config(resolver: Arc<SniResolver>, http2: bool) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        // ring's default provider has TLS 1.2 and 1.3 suites and kx groups (the `tls12` feature is
        // on workspace-wide), so this cannot fail.
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let mut config = builder.with_no_client_auth().with_cert_resolver(resolver);
    config.alpn_protocols =
        if http2 { vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()] } else { vec![ALPN_HTTP11.to_vec()] };
    Arc::new(config)
}

/// A client config for a TLS upstream. `verify == false` (Kong's default `tls_verify`) accepts any
/// server certificate but still checks the handshake signatures; `verify == true` checks the chain
/// and name against `ca_pems` (each may hold several certificates) or, when none are given, the
/// Mozilla roots. ALPN is `h2` for `grpcs` upstreams and `http/1.1` otherwise.
#[cfg(test)]
pub(crate) fn upstream_client_config(
    verify: bool,
    ca_pems: &[&str],
    alpn_h2: bool,
) -> Result<Arc<ClientConfig>, TlsError> {
    upstream_client_config_with(verify, ca_pems, alpn_h2, None, None)
}

/// [`upstream_client_config`], also presenting `client_cert` to the upstream (mutual TLS) and,
/// when verifying, refusing chains deeper than `verify_depth` (see [`crate::listen::upstream_tls`]).
pub(crate) fn upstream_client_config_with(
    verify: bool,
    ca_pems: &[&str],
    alpn_h2: bool,
    client_cert: Option<Arc<CertifiedKey>>,
    verify_depth: Option<u32>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(VERSIONS)?;
    let verifier: Arc<dyn ServerCertVerifier> = if verify {
        let mut roots = RootCertStore::empty();
        if ca_pems.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for (i, pem) in ca_pems.iter().enumerate() {
            let index = i + 1;
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::CaCertificate { index, reason: format!("invalid PEM: {e}") })?;
            if certs.is_empty() {
                return Err(TlsError::CaCertificate { index, reason: "no certificate in PEM".to_string() });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| TlsError::CaCertificate { index, reason: e.to_string() })?;
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        match verify_depth {
            Some(depth) => Arc::new(DepthLimited { inner: webpki, depth }),
            None => webpki as Arc<dyn ServerCertVerifier>,
        }
    } else {
        Arc::new(AnyServerCert { algorithms })
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match client_cert {
        Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCertificate(key))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if alpn_h2 { ALPN_H2.to_vec() } else { ALPN_HTTP11.to_vec() }];
    Ok(Arc::new(config))
}

/// `tls_verify off`: any certificate chain and name are accepted, but the peer must still prove it
/// holds the certificate's key.
#[derive(Debug)]
struct AnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
