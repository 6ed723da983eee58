//! Installing sluice into a Kubernetes API the way manifests/README.md tells users to (CRDs first,
//! waited for, then `kubectl apply -f crds/ -f manifests/`), and the ServiceAccount token the
//! controller runs with. Shared by the e2e tests and `sluice-cluster` (`make cluster`).

use std::path::{Path, PathBuf};

use crate::kubectl::{Kubectl, KubectlError};

/// The namespace and ServiceAccount of manifests/10-rbac.yaml.
pub const SLUICE_NAMESPACE: &str = "sluice";
pub(crate) const SLUICE_ACCOUNT: &str = "sluice";
/// The leader-election Lease the Role of manifests/10-rbac.yaml allows (`--election-id`).
pub const ELECTION_ID: &str = "sluice-controller-leader";

/// The repository root (where `crds/`, `manifests/` and `examples/` are).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ has a parent").to_path_buf()
}

fn arg(p: PathBuf) -> String {
    p.display().to_string()
}

/// `kubectl apply -f crds/ -f manifests/gateway-api-crds.yaml`, wait until established, then
/// `kubectl apply -f crds/ -f manifests/`.
pub async fn install_manifests(kubectl: &Kubectl) -> Result<(), KubectlError> {
    let root = repo();
    let (crds, gateway, manifests) =
        (arg(root.join("crds")), arg(root.join("manifests/gateway-api-crds.yaml")), arg(root.join("manifests")));
    kubectl.ok(&["apply", "-f", &crds, "-f", &gateway]).await?;
    kubectl.ok(&["wait", "--for=condition=Established", "--timeout=60s", "-f", &crds, "-f", &gateway]).await?;
    kubectl.ok(&["apply", "-f", &crds, "-f", &manifests]).await?;
    Ok(())
}

/// A token for the sluice ServiceAccount (`kubectl create token`: the TokenRequest API).
pub async fn service_account_token(kubectl: &Kubectl) -> Result<String, KubectlError> {
    let out = kubectl.ok(&["create", "token", SLUICE_ACCOUNT, "-n", SLUICE_NAMESPACE, "--duration=12h"]).await?;
    Ok(out.trim().to_string())
}
