//! Where the control plane's binaries are: the cache `scripts/k8s-tools.sh` builds them into (it
//! builds them there first when they are missing, so a plain `cargo test` works too; `make test`
//! has done it already in `make deps`). `SLUICE_K8S_BIN` names another directory holding both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Failures finding or building the binaries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BinariesError {
    #[error("running scripts/k8s-tools.sh: {0}")]
    Script(String),
    #[error("{0} is missing (scripts/k8s-tools.sh builds it; or set SLUICE_K8S_BIN)")]
    Missing(PathBuf),
}

/// The two binaries.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-tools.sh")
}

fn bin_dir() -> Result<PathBuf, BinariesError> {
    if let Some(dir) = std::env::var_os("SLUICE_K8S_BIN") {
        return Ok(PathBuf::from(dir));
    }
    // Builds when missing (serialised by a lock in the script), then prints the directory last.
    let out = Command::new("bash")
        .arg(script())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| BinariesError::Script(e.to_string()))?;
    if !out.status.success() {
        return Err(BinariesError::Script(format!("exited with {}", out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default().trim();
    if last.is_empty() {
        return Err(BinariesError::Script("printed no directory".into()));
    }
    Ok(PathBuf::from(last))
}

impl Binaries {
    /// Finds (building once per process if needed) kube-apiserver and etcd.
    pub(crate) fn locate() -> Result<Binaries, BinariesError> {
        static FOUND: OnceLock<Result<Binaries, BinariesError>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                let dir = bin_dir()?;
                let b = Binaries { kube_apiserver: dir.join("kube-apiserver"), etcd: dir.join("etcd") };
                for p in [&b.kube_apiserver, &b.etcd] {
                    if !p.is_file() {
                        return Err(BinariesError::Missing(p.clone()));
                    }
                }
                Ok(b)
            })
            .clone()
    }
}
