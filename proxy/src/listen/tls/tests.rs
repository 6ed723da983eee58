use std::time::Duration;

use arc_swap::ArcSwap;
use proxy_config::Sni;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

/// A test CA.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// (cert PEM, key PEM) for `names`, signed by `ca` or self-signed.
fn leaf(names: &[&str], ca: Option<&Ca>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.pem(), key.serialize_pem())
}

fn cert_entity(id: &str, pair: &(String, String), snis: &[&str]) -> Certificate {
    Certificate {
        id: Some(id.to_string()),
        cert: pair.0.clone(),
        key: pair.1.clone(),
        snis: snis.iter().map(|s| Sni::Name(s.to_string())).collect(),
        tags: vec![],
    }
}

fn leaf_der(ck: &CertifiedKey) -> Vec<u8> {
    ck.cert[0].to_vec()
}

fn pem_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

fn default_cert() -> Arc<CertifiedKey> {
    load_default_certificate(None, None).unwrap()
}

/// What the client saw of one handshake.
#[derive(Debug)]
struct Seen {
    leaf: Vec<u8>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
}

/// Serves one TLS connection with `server` (echoing one byte) and connects with `client` as `name`
/// (an IP address sends no SNI).
async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, name: &str) -> Result<Seen, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        tls.write_all(&b).await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await?;
        let server_name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
        let mut tls = TlsConnector::from(client).connect(server_name, tcp).await?;
        tls.write_all(b"x").await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        assert_eq!(&b, b"x");
        let conn = tls.get_ref().1;
        let leaf = conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
        Ok::<_, std::io::Error>(Seen {
            leaf,
            alpn: conn.alpn_protocol().map(|p| p.to_vec()),
            version: conn.protocol_version(),
        })
    };
    let result = tokio::time::timeout(Duration::from_secs(20), client_side)
        .await
        .unwrap_or_else(|_| panic!("handshake with {name} timed out"));
    if result.is_ok() {
        tokio::time::timeout(Duration::from_secs(20), server_task).await.unwrap().unwrap()?;
    } else {
        server_task.abort();
    }
    result
}

/// A client that accepts any certificate and offers `alpn`.
fn lenient_client(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut c = (*upstream_client_config(false, &[], false).unwrap()).clone();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

fn fixed_resolver(store: CertStore) -> Arc<SniResolver> {
    let store = Arc::new(store);
    Arc::new(SniResolver::new(Arc::new(move || store.clone())))
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default() {
    let exact = leaf(&["api.example.com"], None);
    let wild = leaf(&["*.example.com"], None);
    let suffix = leaf(&["shop.example.*"], None);
    let default = default_cert();
    let store = CertStore::build(
        &[
            cert_entity("exact", &exact, &["API.example.com."]),
            cert_entity("wild", &wild, &["*.example.com"]),
            cert_entity("suffix", &suffix, &["shop.example.*"]),
        ],
        default.clone(),
    )
    .unwrap();
    assert_eq!(store.len(), 3);
    let server = server_config(fixed_resolver(store), true);
    let client = lenient_client(&[ALPN_H2, ALPN_HTTP11]);

    let cases = [
        ("api.example.com", pem_der(&exact.0)),
        ("Api.Example.Com", pem_der(&exact.0)),
        ("www.example.com", pem_der(&wild.0)),
        ("shop.example.org", pem_der(&suffix.0)),
        ("shop.example.net", pem_der(&suffix.0)),
        // one label only: shop.example.co.uk is not shop.example.*
        ("shop.example.co.uk", leaf_der(&default)),
        // one label only: a.b.example.com is not *.example.com
        ("a.b.example.com", leaf_der(&default)),
        ("example.com", leaf_der(&default)),
        ("unknown.test", leaf_der(&default)),
        // an IP address: the client sends no SNI
        ("127.0.0.1", leaf_der(&default)),
    ];
    for (name, expected) in cases {
        let seen = handshake(server.clone(), client.clone(), name).await.unwrap();
        assert_eq!(seen.leaf, expected, "{name}");
    }
}

#[tokio::test]
async fn alpn_offers_h2_only_with_http2() {
    let store = CertStore::with_default(default_cert());
    let resolver = fixed_resolver(store);
    let h2_and_h1 = lenient_client(&[ALPN_H2, ALPN_HTTP11]);

    let with_h2 = handshake(server_config(resolver.clone(), true), h2_and_h1.clone(), "localhost").await.unwrap();
    assert_eq!(with_h2.alpn.as_deref(), Some(ALPN_H2));

    let without = handshake(server_config(resolver.clone(), false), h2_and_h1, "localhost").await.unwrap();
    assert_eq!(without.alpn.as_deref(), Some(ALPN_HTTP11));

    // a client offering only h2 gets no protocol from an http/1.1-only listener: rustls refuses it
    let h2_only = lenient_client(&[ALPN_H2]);
    assert!(handshake(server_config(resolver.clone(), false), h2_only, "localhost").await.is_err());

    // a client with no ALPN still connects
    let none = handshake(server_config(resolver, true), lenient_client(&[]), "localhost").await.unwrap();
    assert_eq!(none.alpn, None);
}

#[tokio::test]
async fn store_swap_applies_to_the_next_handshake() {
    let old = leaf(&["svc.test"], None);
    let new = leaf(&["svc.test"], None);
    let default = default_cert();
    let build = |pair: &(String, String)| CertStore::build(&[cert_entity("c", pair, &["svc.test"])], default.clone());
    let current = Arc::new(ArcSwap::from_pointee(build(&old).unwrap()));
    let reader = current.clone();
    let resolver = Arc::new(SniResolver::new(Arc::new(move || reader.load_full())));
    let server = server_config(resolver, true);
    // a fresh client each time: a resumed TLS session keeps the certificate it was made with
    let client = || lenient_client(&[ALPN_H2]);

    assert_eq!(handshake(server.clone(), client(), "svc.test").await.unwrap().leaf, pem_der(&old.0));
    assert_eq!(handshake(server.clone(), client(), "svc.test").await.unwrap().leaf, pem_der(&old.0));
    current.store(Arc::new(build(&new).unwrap()));
    assert_eq!(handshake(server.clone(), client(), "svc.test").await.unwrap().leaf, pem_der(&new.0));
}

#[test]
fn build_reports_every_broken_certificate() {
    let a = leaf(&["a.test"], None);
    let b = leaf(&["b.test"], None);
    let good = leaf(&["good.test"], None);
    let mismatched = Certificate { key: b.1.clone(), ..cert_entity("mismatch-id", &a, &["a.test"]) };
    let mut no_id = cert_entity("x", &good, &["first.test", "second.test"]);
    no_id.id = None;
    no_id.cert = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_string();
    let no_cert = Certificate { cert: b.1.clone(), ..cert_entity("no-cert", &b, &["nc.test"]) };
    let no_key = Certificate { key: b.0.clone(), ..cert_entity("no-key", &b, &["nk.test"]) };
    let bad_der = Certificate {
        cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
        ..cert_entity("bad-der", &b, &["bd.test"])
    };
    let certs = [cert_entity("good", &good, &["good.test"]), mismatched, no_id, no_cert, no_key, bad_der];
    let errors = CertStore::build(&certs, default_cert()).unwrap_err();
    let summary: Vec<(String, String, String)> = errors
        .iter()
        .map(|e| {
            assert_eq!(e.entity_type, "certificate");
            assert_eq!(e.errors.len(), 1);
            (e.entity_name.clone(), e.errors[0].field.clone(), e.errors[0].message.clone())
        })
        .collect();
    assert_eq!(summary.len(), 5, "{summary:?}");
    let expect = [
        ("mismatch-id", "key", "key does not match the certificate"),
        ("first.test", "cert", "invalid certificate PEM"),
        ("no-cert", "cert", "no certificate in PEM"),
        ("no-key", "key", "no private key in PEM"),
        ("bad-der", "cert", "invalid certificate"),
    ];
    for ((name, field, msg), (en, ef, em)) in summary.iter().zip(expect) {
        assert_eq!((name.as_str(), field.as_str()), (en, ef), "{msg}");
        assert!(msg.contains(em), "{name}: '{msg}' should contain '{em}'");
    }
    assert_eq!(errors[0].entity_id.as_deref(), Some("mismatch-id"));
    assert_eq!(errors[1].entity_id, None);
}

#[test]
fn duplicate_sni_keeps_the_first_certificate() {
    let first = leaf(&["dup.test"], None);
    let second = leaf(&["dup.test"], None);
    let store = CertStore::build(
        &[cert_entity("1", &first, &["dup.test"]), cert_entity("2", &second, &["DUP.test"])],
        default_cert(),
    )
    .unwrap();
    assert_eq!(leaf_der(&store.resolve(Some("dup.test"))), pem_der(&first.0));
    assert_eq!(store.len(), 1);
    assert!(store.lookup(None).is_none());
    assert!(store.lookup(Some("other.test")).is_none());
}

#[test]
fn default_certificate_is_self_signed_p256_for_localhost() {
    let ck = default_cert();
    assert_eq!(ck.key.algorithm(), rustls::SignatureAlgorithm::ECDSA);
    assert_eq!(ck.cert.len(), 1);
    ck.keys_match().unwrap();
    let parsed = ParsedCertificate::try_from(&ck.cert[0]).unwrap();
    rustls::client::verify_server_name(&parsed, &ServerName::try_from("localhost").unwrap()).unwrap();
    // generated fresh each call
    assert_ne!(leaf_der(&default_cert()), leaf_der(&ck));
}

#[test]
fn default_certificate_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let pair = leaf(&["proxy.test"], None);
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, &pair.0).unwrap();
    std::fs::write(&key_path, &pair.1).unwrap();
    let ck = load_default_certificate(Some(&cert_path), Some(&key_path)).unwrap();
    assert_eq!(leaf_der(&ck), pem_der(&pair.0));

    let e = load_default_certificate(Some(&cert_path), None).unwrap_err();
    assert_eq!(e.to_string(), "KONG_SSL_CERT is set but KONG_SSL_CERT_KEY is not; set both or neither");
    let e = load_default_certificate(None, Some(&key_path)).unwrap_err();
    assert!(e.to_string().starts_with("KONG_SSL_CERT_KEY is set"), "{e}");

    let missing = dir.path().join("missing.crt");
    let e = load_default_certificate(Some(&missing), Some(&key_path)).unwrap_err();
    assert!(e.to_string().contains("missing.crt"), "{e}");

    let other = leaf(&["other.test"], None);
    std::fs::write(&key_path, &other.1).unwrap();
    let e = load_default_certificate(Some(&cert_path), Some(&key_path)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("tls.key") && msg.contains("key does not match the certificate"), "{msg}");
}

/// A TLS server presenting `pair` for any SNI.
fn server_with(pair: &(String, String)) -> Arc<ServerConfig> {
    let ck = Arc::new(certified_key_from_pem(&pair.0, &pair.1).unwrap());
    server_config(fixed_resolver(CertStore::with_default(ck)), true)
}

#[tokio::test]
async fn upstream_verify_with_custom_ca() {
    let ca1 = ca("ca one");
    let ca2 = ca("ca two");
    let signed = leaf(&["upstream.test"], Some(&ca1));
    let server = server_with(&signed);

    let trusting = upstream_client_config(true, &[&ca1.pem], true).unwrap();
    let seen = handshake(server.clone(), trusting.clone(), "upstream.test").await.unwrap();
    assert_eq!(seen.leaf, pem_der(&signed.0));
    assert_eq!(seen.alpn.as_deref(), Some(ALPN_H2));

    // several CAs in one PEM, and several PEMs
    let bundle = format!("{}{}", ca2.pem, ca1.pem);
    let bundled = upstream_client_config(true, &[&bundle], false).unwrap();
    let seen = handshake(server.clone(), bundled, "upstream.test").await.unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(ALPN_HTTP11));
    handshake(server.clone(), upstream_client_config(true, &[&ca2.pem, &ca1.pem], true).unwrap(), "upstream.test")
        .await
        .unwrap();

    // the wrong name is refused
    let e = handshake(server.clone(), trusting, "other.test").await.unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");

    // another CA is refused
    let e = handshake(server.clone(), upstream_client_config(true, &[&ca2.pem], true).unwrap(), "upstream.test")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    // the public roots do not know our test CA either
    let public = upstream_client_config(true, &[], true).unwrap();
    assert!(handshake(server, public, "upstream.test").await.is_err());
}

#[tokio::test]
async fn upstream_without_verify_accepts_self_signed() {
    let self_signed = leaf(&["whatever.test"], None);
    let server = server_with(&self_signed);
    let client = upstream_client_config(false, &[], true).unwrap();
    let seen = handshake(server.clone(), client.clone(), "another-name.test").await.unwrap();
    assert_eq!(seen.leaf, pem_der(&self_signed.0));
    assert_eq!(seen.alpn.as_deref(), Some(ALPN_H2));
    // and by IP address, without SNI
    handshake(server.clone(), client, "127.0.0.1").await.unwrap();

    let verifying = upstream_client_config(true, &[], true).unwrap();
    assert!(handshake(server, verifying, "whatever.test").await.is_err());
}

#[test]
fn upstream_ca_errors_name_the_ca() {
    let e = upstream_client_config(true, &["not a pem"], false).unwrap_err();
    assert_eq!(e.to_string(), "CA certificate #1: no certificate in PEM");
    let good = ca("ok");
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let e = upstream_client_config(true, &[&good.pem, garbage], false).unwrap_err();
    assert!(e.to_string().starts_with("CA certificate #2: "), "{e}");
}

#[tokio::test]
async fn serves_tls12_and_tls13() {
    let store = CertStore::with_default(default_cert());
    let server = server_config(fixed_resolver(store), true);
    let mut tls12 = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert {
            algorithms: provider().signature_verification_algorithms,
        }))
        .with_no_client_auth();
    tls12.alpn_protocols = vec![ALPN_H2.to_vec()];
    let seen = handshake(server.clone(), Arc::new(tls12), "localhost").await.unwrap();
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(seen.alpn.as_deref(), Some(ALPN_H2));
    let seen = handshake(server, lenient_client(&[ALPN_H2]), "localhost").await.unwrap();
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3));
}
