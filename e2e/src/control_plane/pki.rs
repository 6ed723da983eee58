//! The certificates and keys a test control plane needs, made fresh for each one (as envtest's
//! `tinyca`): a CA and the serving certificate of kube-apiserver, a CA for client certificates and
//! the admin certificate of the test (`system:masters`), and the service-account signing key pair
//! that makes TokenRequest (`kubectl create token`) work.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// Failures making or writing the certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Paths of the files written by [`write`].
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// CA of the serving certificate: what clients trust.
    pub serving_ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// CA kube-apiserver accepts client certificates from (`--client-ca-file`).
    pub client_ca: PathBuf,
    /// The test's admin client certificate (user `sluice-e2e-admin`, group `system:masters`).
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// Service-account token signing key (private) and its public key.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn ca(common_name: &str) -> Result<(Issuer<'static, KeyPair>, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.distinguished_name.push(DnType::CommonName, common_name);
    let pem = params.self_signed(&key)?.pem();
    Ok((Issuer::new(params, key), pem))
}

fn write_file(path: PathBuf, text: &str) -> Result<PathBuf, PkiError> {
    std::fs::write(&path, text).map_err(|source| PkiError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Makes every certificate and key and writes them into `dir`.
pub(super) fn write(dir: &Path) -> Result<PkiFiles, PkiError> {
    let (serving_issuer, serving_ca_pem) = ca("sluice-e2e serving CA")?;
    let serving_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = params.signed_by(&serving_key, &serving_issuer)?;

    let (client_issuer, client_ca_pem) = ca("sluice-e2e client CA")?;
    let admin_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "sluice-e2e-admin");
    params.distinguished_name.push(DnType::OrganizationName, "system:masters");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = params.signed_by(&admin_key, &client_issuer)?;

    let sa = KeyPair::generate()?;
    Ok(PkiFiles {
        serving_ca: write_file(dir.join("serving-ca.crt"), &serving_ca_pem)?,
        serving_cert: write_file(dir.join("apiserver.crt"), &serving_cert.pem())?,
        serving_key: write_file(dir.join("apiserver.key"), &serving_key.serialize_pem())?,
        client_ca: write_file(dir.join("client-ca.crt"), &client_ca_pem)?,
        admin_cert: write_file(dir.join("admin.crt"), &admin_cert.pem())?,
        admin_key: write_file(dir.join("admin.key"), &admin_key.serialize_pem())?,
        sa_key: write_file(dir.join("sa-signer.key"), &sa.serialize_pem())?,
        sa_pub: write_file(dir.join("sa-signer.pub"), &sa.public_key_pem())?,
    })
}
