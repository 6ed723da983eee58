//! The webhook's TLS: a PEM certificate chain and key read from files (a mounted Secret), reread
//! when either file changes so that a rotated certificate (cert-manager, or a re-created Secret)
//! is served without a restart. A rotation that does not parse keeps the previous pair.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why the certificate or key cannot be served.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{key}: the key does not match the certificate {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Loads and checks a certificate chain (leaf first) and its private key.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem = |path: &Path, message: String| TlsError::Pem { path: path.to_path_buf(), message };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, format!("invalid certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(pem(cert, "no certificate in PEM".into()));
    }
    let der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| pem(key, format!("invalid key PEM: {e}")))?;
    let signing =
        provider().key_provider.load_private_key(der).map_err(|e| pem(key, format!("unsupported key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch { cert: cert.to_path_buf(), key: key.to_path_buf() })
        }
        _ => Ok(certified),
    }
}

/// Modification time and length of both files: what tells a rotation.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map(|m| (m.modified().ok(), m.len())).unwrap_or((None, 0));
    [one(cert), one(key)]
}

/// Serves the pair of files, rereading them when they change.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl CertFiles {
    /// Loads the pair now: a missing or bad pair is an error at start.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let stamped = stamp(&cert, &key);
        let loaded = Arc::new(load(&cert, &key)?);
        Ok(CertFiles { cert, key, current: Mutex::new((stamped, loaded)) })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.cert, &self.key);
        if now != guard.0 {
            guard.0 = now;
            match load(&self.cert, &self.key) {
                Ok(loaded) => {
                    tracing::info!(cert = %self.cert.display(), "admission webhook certificate reloaded");
                    guard.1 = Arc::new(loaded);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admission webhook certificate not reloaded; serving the previous one")
                }
            }
        }
        guard.1.clone()
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// TLS 1.2/1.3, ALPN `http/1.1` (the API server's webhook client speaks it).
pub fn server_config(certs: Arc<CertFiles>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        // ring's provider has TLS 1.2 and 1.3 suites (the `tls12` feature is on workspace-wide).
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let mut config = builder.with_no_client_auth().with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn leaf(k: &CertifiedKey) -> Vec<u8> {
        k.cert[0].to_vec()
    }

    #[test]
    fn rotated_files_are_served_and_bad_ones_keep_the_previous_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (a_cert, a_key) = pair("a.example");
        std::fs::write(&cert, &a_cert).unwrap();
        std::fs::write(&key, &a_key).unwrap();
        let files = CertFiles::new(cert.clone(), key.clone()).unwrap();
        let first = leaf(&files.current());

        let (b_cert, b_key) = pair("b.example");
        std::fs::write(&cert, &b_cert).unwrap();
        std::fs::write(&key, &b_key).unwrap();
        let second = leaf(&files.current());
        assert_ne!(first, second, "the rotated certificate is served");
        assert_eq!(second, leaf(&load(&cert, &key).unwrap()));

        std::fs::write(&cert, "not a certificate").unwrap();
        assert_eq!(leaf(&files.current()), second, "a bad rotation keeps the previous pair");
    }

    #[test]
    fn bad_pairs_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        assert!(matches!(CertFiles::new(cert.clone(), key.clone()), Err(TlsError::Read { .. })));
        let (a_cert, _) = pair("a.example");
        let (_, b_key) = pair("b.example");
        std::fs::write(&cert, &a_cert).unwrap();
        std::fs::write(&key, &b_key).unwrap();
        let err = load(&cert, &key).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        std::fs::write(&key, "junk").unwrap();
        let err = load(&cert, &key).unwrap_err().to_string();
        assert!(err.starts_with(&key.display().to_string()), "{err}");
    }
}
