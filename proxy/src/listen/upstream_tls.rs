//! What a TLS upstream connection proves and checks beyond a bare handshake: the client
//! certificate sluice presents (Kong's service `client_certificate`, for upstreams that require
//! mutual TLS) and the longest certificate chain it accepts (Kong's `tls_verify_depth`).
//! [`crate::listen::tls::upstream_client_config`] puts them into the rustls client config.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Always presents one certificate, whatever the server asks for.
#[derive(Debug)]
pub(crate) struct ClientCertificate(pub Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Rejects chains with more certificates above the leaf than `depth` allows (OpenSSL's verify
/// depth, as Kong applies `tls_verify_depth`: the issuers presented plus the trust anchor), then
/// verifies as `inner` does.
#[derive(Debug)]
pub(crate) struct DepthLimited {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub depth: u32,
}

impl ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let above_leaf = intermediates.len() + 1;
        if above_leaf > self.depth as usize {
            return Err(rustls::Error::General(format!(
                "certificate chain has {above_leaf} issuer(s) above the leaf, more than tls_verify_depth {}",
                self.depth
            )));
        }
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
