//! TLS material and configurations for the demo: self-signed certificates for tests (rcgen), and the rustls client
//! configuration of the CLI (a given CA, the bundled web roots, or no verification at all for `--insecure`).
//! Everything uses the ring provider, the only one in the tree.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::DemoError;

/// The ring provider, as an `Arc` for the `builder_with_provider` constructors.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider if none is set yet. tonic's server TLS asks for the default.
pub fn install_default_provider() {
    // An error only means a default is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A self-signed certificate for `names` (DNS names or IP addresses), as `(cert_pem, key_pem)`.
pub fn try_self_signed(names: &[&str]) -> Result<(String, String), DemoError> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// A self-signed certificate for `names` (DNS names or IP addresses), as `(cert_pem, key_pem)`. For tests.
///
/// # Panics
/// If a name is not a valid DNS name or IP address; use [`try_self_signed`] to get the error instead.
#[allow(clippy::expect_used)]
pub fn self_signed(names: &[&str]) -> (String, String) {
    try_self_signed(names).expect("self_signed: names must be valid DNS names or IP addresses")
}

/// How the client checks the server's certificate.
#[derive(Clone, Debug)]
pub enum Verify {
    /// Trust these PEM certificates only.
    Ca(String),
    /// Trust the bundled public web roots.
    WebRoots,
    /// Accept any certificate (handshake signatures are still checked).
    Insecure,
}

fn roots_from_pem(pem: &str) -> Result<RootCertStore, DemoError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| DemoError::Tls(format!("CA PEM: {e}")))?;
        roots.add(cert).map_err(|e| DemoError::Tls(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(DemoError::Tls("CA PEM holds no certificate".into()));
    }
    Ok(roots)
}

/// The certificate verifier for `verify` (ring signature algorithms).
pub fn server_verifier(verify: &Verify) -> Result<Arc<dyn ServerCertVerifier>, DemoError> {
    let roots = match verify {
        Verify::Insecure => return Ok(Arc::new(AcceptAnyCertificate::new())),
        Verify::Ca(pem) => roots_from_pem(pem)?,
        Verify::WebRoots => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| DemoError::Tls(e.to_string()))?;
    Ok(verifier)
}

/// A rustls client configuration that offers ALPN `h2` only.
pub fn client_config(verify: &Verify) -> Result<ClientConfig, DemoError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| DemoError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(verify)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// `--insecure`: trusts any certificate chain but still verifies the handshake signatures.
#[derive(Debug)]
pub struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl AcceptAnyCertificate {
    /// A verifier using the ring provider's signature algorithms.
    pub fn new() -> Self {
        Self(provider())
    }
}

impl Default for AcceptAnyCertificate {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pems_load() {
        let (cert, key) = self_signed(&["localhost", "127.0.0.1"]);
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        assert!(client_config(&Verify::Ca(cert)).is_ok());
        assert!(matches!(client_config(&Verify::Ca("nothing".into())), Err(DemoError::Tls(_))));
        assert!(try_self_signed(&["caf\u{e9}.example"]).is_err());
    }
}
