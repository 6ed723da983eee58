//! Kubeconfig files pointing kubectl (or any client) at a test API server.
//!
//! Plain HTTP on loopback, no credentials: the file names one cluster, one user without auth, and one
//! context with namespace `default`.

use std::net::SocketAddr;

/// The kubeconfig YAML for a server listening on `addr`.
pub fn render(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: sluice-test\n  cluster:\n    server: http://{addr}\n\
         users:\n\
         - name: sluice-test\n  user: {{}}\n\
         contexts:\n\
         - name: sluice-test\n  context:\n    cluster: sluice-test\n    user: sluice-test\n    namespace: default\n\
         current-context: sluice-test\n\
         preferences: {{}}\n"
    )
}
