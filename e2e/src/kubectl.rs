//! Running the real `kubectl` against a test API server, with bounded time.
//!
//! Each [`Kubectl`] gets its own `HOME` and discovery cache directory, so tests never read or write the
//! user's `~/.kube` and never share cached discovery between servers.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Failures running kubectl.
#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    #[error("kubectl not found (looked at $KUBECTL, /usr/bin/kubectl and $PATH); the e2e tests need it")]
    NotFound,
    #[error("starting kubectl {args:?}: {source}")]
    Spawn { args: Vec<String>, source: std::io::Error },
    #[error("kubectl {args:?} did not finish within {timeout:?}")]
    Timeout { args: Vec<String>, timeout: Duration },
    #[error("kubectl {args:?} exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    Failed { args: Vec<String>, status: std::process::ExitStatus, stdout: String, stderr: String },
}

/// A kubectl bound to one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    timeout: Duration,
}

impl Kubectl {
    /// The kubectl binary: `$KUBECTL`, else `/usr/bin/kubectl`, else the first `kubectl` on `$PATH`.
    pub fn find() -> Result<PathBuf, KubectlError> {
        if let Some(p) = std::env::var_os("KUBECTL").map(PathBuf::from).filter(|p| p.is_file()) {
            return Ok(p);
        }
        let default = PathBuf::from("/usr/bin/kubectl");
        if default.is_file() {
            return Ok(default);
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.is_file())
            .ok_or(KubectlError::NotFound)
    }

    /// A kubectl using `kubeconfig`, with `work_dir` as its `HOME` and cache directory parent.
    pub fn new(kubeconfig: impl Into<PathBuf>, work_dir: &Path) -> Result<Self, KubectlError> {
        Ok(Self {
            program: Self::find()?,
            kubeconfig: kubeconfig.into(),
            home: work_dir.to_path_buf(),
            timeout: Duration::from_secs(60),
        })
    }

    /// Changes the per-invocation time limit (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A command with the kubeconfig, cache directory and environment set; add the arguments.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.join("kube-cache"))
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn output(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, KubectlError> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut cmd = self.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|source| KubectlError::Spawn { args: argv.clone(), source })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|source| KubectlError::Spawn { args: argv.clone(), source })?;
        }
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(out) => out.map_err(|source| KubectlError::Spawn { args: argv, source }),
            Err(_) => Err(KubectlError::Timeout { args: argv, timeout: self.timeout }),
        }
    }

    /// Runs kubectl and returns its output whatever the exit status.
    pub async fn run(&self, args: &[&str]) -> Result<Output, KubectlError> {
        self.output(args, None).await
    }

    fn check(args: &[&str], out: Output) -> Result<String, KubectlError> {
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(KubectlError::Failed {
                args: args.iter().map(|s| s.to_string()).collect(),
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    /// Runs kubectl; a non-zero exit is an error carrying stdout and stderr. Returns stdout.
    pub async fn ok(&self, args: &[&str]) -> Result<String, KubectlError> {
        Self::check(args, self.output(args, None).await?)
    }

    /// Runs kubectl with `stdin` as its standard input (for `apply -f -`). Returns stdout.
    pub(crate) async fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String, KubectlError> {
        Self::check(args, self.output(args, Some(stdin)).await?)
    }

    /// `kubectl apply -f -` with the given YAML (plus extra arguments). Returns stdout.
    pub async fn apply(&self, yaml: &str, extra: &[&str]) -> Result<String, KubectlError> {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        self.ok_with_stdin(&args, yaml).await
    }
}
