//! Shared harness of the proxy's in-process tests: a proxy on 127.0.0.1:0 listeners with its admin
//! socket in a temp dir, config pushes over that socket, an HTTP/1.1 echo backend, and clients
//! (hyper h1/h2c, rustls, tonic) pointed at the proxy.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::app::Running;
use proxy::settings::Settings;
use tokio::net::{TcpListener, TcpStream, UnixStream};

pub mod grpc_backends;
pub mod process;
pub mod redis;
pub mod upstream;

pub struct TestProxy {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
}

impl TestProxy {
    /// Starts a proxy with `listen` as KONG_PROXY_LISTEN (use port 0) and extra env settings.
    pub async fn start(listen: &str, extra: &[(&str, &str)]) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("admin.sock");
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("KONG_PROXY_LISTEN".into(), listen.into());
        env.insert("KONG_STATUS_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("SLUICE_ADMIN_SOCKET".into(), sock.display().to_string());
        env.insert("KONG_PROXY_ACCESS_LOG".into(), "off".into());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
        let running = proxy::app::start(settings).await.unwrap();
        TestProxy { running: Some(running), dir }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.running().proxy_addrs[i]
    }
    pub fn status_addr(&self) -> SocketAddr {
        self.running().status_addrs[0]
    }
    pub fn socket(&self) -> PathBuf {
        self.running().admin_socket.clone()
    }

    /// POST /config; returns (status, body).
    pub async fn push(&self, config: &str) -> (u16, String) {
        admin_request(&self.socket(), "POST", "/config", Some(config.to_string())).await
    }

    pub async fn push_ok(&self, config: &str) {
        let (status, body) = self.push(config).await;
        assert_eq!(status, 201, "push rejected: {body}");
    }
}

/// One request over the admin unix socket.
pub async fn admin_request(sock: &Path, method: &str, path: &str, body: Option<String>) -> (u16, String) {
    let stream = UnixStream::connect(sock).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A response read whole: status, headers, body, trailers.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub trailers: Option<http::HeaderMap>,
}

async fn read(resp: Response<Incoming>) -> Got {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Got { status, headers, body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(), trailers }
}

/// HTTP/1.1 request on a fresh plaintext connection.
pub async fn h1(addr: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    read(send.send_request(req).await.unwrap()).await
}

/// HTTP/2 prior-knowledge (h2c) request on a fresh connection.
pub async fn h2c(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Got, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(read(send.send_request(req).await?).await)
}

pub fn get(uri: &str, host: &str) -> Request<Full<Bytes>> {
    Request::builder().uri(uri).header("host", host).body(Full::new(Bytes::new())).unwrap()
}

/// A TLS client config trusting `ca_pem`, offering `alpn`.
pub fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

/// TLS handshake to the proxy; returns the stream, negotiated ALPN and the leaf certificate.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await
}

/// An HTTP/1.1 + h2c backend answering every request with JSON describing it.
pub struct EchoHttp {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn echo_http(name: &'static str) -> EchoHttp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let headers: serde_json::Map<String, serde_json::Value> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.to_str().unwrap_or(""))))
                        .collect();
                    let info = serde_json::json!({
                        "backend": name,
                        "method": req.method().as_str(),
                        "uri": req.uri().to_string(),
                        "version": format!("{:?}", req.version()),
                        "headers": headers,
                    });
                    let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                    let mut info = info;
                    info["body_len"] = body.into();
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .header("x-backend", name)
                            .body(Full::new(Bytes::from(info.to_string())))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    EchoHttp { addr, task }
}

/// A Kong config routing `/` to an HTTP echo backend and gRPC hello/echo to a gRPC backend.
pub fn basic_config(http: SocketAddr, grpc: SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: web
  protocol: http
  host: {hh}
  port: {hp}
  routes:
  - name: web
    paths: ["/"]
- name: grpc
  protocol: grpc
  host: {gh}
  port: {gp}
  routes:
  - name: grpc
    protocols: [grpc, grpcs]
    paths: ["/hello.HelloService/", "/echo.Echo/", "/grpc.reflection", "/grpc.health"]
"#,
        hh = http.ip(),
        hp = http.port(),
        gh = grpc.ip(),
        gp = grpc.port()
    )
}

/// A Kong config with one gRPC (h2c) service `g` at `backend` and a catch-all gRPC route.
pub fn grpc_config(backend: SocketAddr) -> String {
    format!(
        "_format_version: '3.0'\nservices:\n- name: g\n  protocol: grpc\n  host: {}\n  port: {}\n  routes:\n  - name: g\n    protocols: [grpc, grpcs]\n    paths: ['/']\n",
        backend.ip(),
        backend.port()
    )
}

/// A tonic channel to the proxy over h2c, presenting `authority`.
pub async fn grpc_channel(addr: SocketAddr, authority: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .connect()
        .await
        .unwrap()
}

/// A tonic channel to the proxy over TLS (ALPN h2), trusting `ca_pem`, with SNI and authority `domain`.
pub async fn grpc_tls_channel(addr: SocketAddr, domain: &str, ca_pem: &str) -> tonic::transport::Channel {
    install_provider();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name(domain);
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .origin(format!("https://{domain}").parse().unwrap())
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A `certificates:` section of a Kong config: one certificate per (cert PEM, key PEM, SNI).
pub fn certificates_yaml(list: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("certificates:\n");
    for (cert, key, sni) in list {
        out.push_str(&format!(
            "- cert: {}\n  key: {}\n  snis: [{}]\n",
            serde_json::to_string(cert).unwrap(),
            serde_json::to_string(key).unwrap(),
            serde_json::to_string(sni).unwrap()
        ));
    }
    out
}

/// Makes ring the process default provider (tonic asks for the default).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA and a leaf certificate signed by it for `names`: (ca_pem, cert_pem, key_pem).
pub fn ca_and_leaf(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sluice test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}
