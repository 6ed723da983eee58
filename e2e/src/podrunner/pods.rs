//! The kubelet's and scheduler's part: Pods are bound to the runner's node, each one's container
//! runs as a local process in its own network namespace, and its status is written once the
//! process accepts connections. Deleted Pods are stopped and removed with grace 0, so their
//! namespaces and Deployments do not hang in Terminating.
//!
//! A container runs its image's mapped binary ([`super::Images`]) with exactly the Pod's
//! environment (`value` and the `fieldRef`s a downward API offers for metadata and addresses) and
//! `args`; Secret volumes are written to a per-Pod directory and environment values under their
//! `mountPath` point there. Anything else a Pod asks for (several containers, `command`, other
//! volume kinds, other env sources) fails the Pod with a status message naming it.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

use super::node::NODE_IP;
use super::{key, now, ByKey, Config, PodRunnerError};
use crate::netns::BackendNet;

/// How long a started process may take to accept connections.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(100);
/// echo-basic's HTTP and gRPC port when the Pod declares none (`HTTP_PORT` overrides it).
const DEFAULT_PORT: u16 = 3000;

/// One Pod's running container. Dropping it kills the process, removes the network namespace
/// and the Pod's files.
struct Proc {
    uid: String,
    ready: JoinHandle<()>,
    child: Option<Child>,
    net: BackendNet,
    dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.ready.abort();
        if let Some(mut c) = self.child.take() {
            // By PID: the Child signals exactly this process (ip netns exec execs the binary).
            let _ = c.kill();
            let _ = c.wait();
        }
        tracing::debug!(netns = self.net.name(), "removing pod network namespace");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Pods this runner runs, by `namespace/name`.
pub(super) struct Running {
    client: Client,
    config: Config,
    procs: ByKey<Proc>,
    /// UIDs of Pods that could not be started (their status says why); not retried.
    failed: HashSet<String>,
}

impl Running {
    pub(super) fn new(client: Client, config: Config) -> Running {
        Running { client, config, procs: HashMap::new(), failed: HashSet::new() }
    }

    /// One pass over all Pods: bind, start, notice exits, finish deletions.
    pub(super) async fn reconcile(&mut self) -> Result<(), PodRunnerError> {
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(PodRunnerError::kube("listing pods"))?;
        let mut seen = HashSet::new();
        for pod in pods {
            let (ns, name, uid) = (pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid().unwrap_or_default());
            if self.config.skip_namespaces.contains(&ns) {
                continue;
            }
            let k = key(&ns, &name);
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            if pod.metadata.deletion_timestamp.is_some() {
                if node.as_deref() == Some(self.config.node.as_str()) {
                    self.procs.remove(&k);
                    self.failed.remove(&uid);
                    self.delete_now(&ns, &name, &uid).await?;
                }
                continue;
            }
            seen.insert(k.clone());
            match node {
                None => self.bind(&ns, &name).await?,
                Some(n) if n == self.config.node => {
                    if self.procs.get(&k).is_some_and(|p| p.uid != uid) {
                        self.procs.remove(&k);
                    }
                    if self.procs.contains_key(&k) {
                        self.check_exit(&k, &ns, &name).await?;
                    } else if !self.failed.contains(&uid) {
                        match self.start(&pod).await {
                            Ok(p) => {
                                self.procs.insert(k, p);
                            }
                            Err(PodRunnerError::Waiting(what)) => {
                                tracing::info!(pod = %k, "waiting for {what}");
                            }
                            Err(e) => {
                                tracing::warn!(pod = %k, error = %e, "pod not started");
                                self.failed.insert(uid);
                                self.write_failure(&ns, &name, &e.to_string()).await?;
                            }
                        }
                    }
                }
                Some(_) => {}
            }
        }
        // Pods removed without passing through deletionTimestamp (force-deleted elsewhere).
        self.procs.retain(|k, _| seen.contains(k));
        Ok(())
    }

    fn api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The scheduler's answer: a Binding to the runner's node.
    async fn bind(&self, ns: &str, name: &str) -> Result<(), PodRunnerError> {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.config.node}});
        match self
            .api(ns)
            .create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => Ok(()),
            // Already bound (a second event for the same Pod) or already gone.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
            Err(e) => Err(PodRunnerError::kube(format!("binding pod {ns}/{name}"))(e)),
        }
    }

    /// Deletes the Pod for good (its process is already stopped).
    async fn delete_now(&self, ns: &str, name: &str, uid: &str) -> Result<(), PodRunnerError> {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.api(ns).delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(PodRunnerError::kube(format!("deleting pod {ns}/{name}"))(e)),
        }
    }

    /// A process that exited makes its Pod Failed (nothing restarts it).
    async fn check_exit(&mut self, k: &str, ns: &str, name: &str) -> Result<(), PodRunnerError> {
        let Some(p) = self.procs.get_mut(k) else { return Ok(()) };
        let Some(child) = p.child.as_mut() else { return Ok(()) };
        if let Ok(Some(status)) = child.try_wait() {
            p.child = None;
            let log = p.dir.with_extension("log");
            self.write_failure(ns, name, &format!("process exited with {status}; log {}", log.display())).await?;
        }
        Ok(())
    }

    async fn write_failure(&self, ns: &str, name: &str, message: &str) -> Result<(), PodRunnerError> {
        let now = now();
        let status = json!({"status": {"phase": "Failed", "reason": "SluicePodRunner", "message": message,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "reason": "SluicePodRunner", "message": message,
                    "lastTransitionTime": now}]}});
        match self.api(ns).patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(PodRunnerError::kube(format!("status of pod {ns}/{name}"))(e)),
        }
    }

    /// Starts the Pod's container and a task that writes its status once it accepts connections.
    async fn start(&self, pod: &Pod) -> Result<Proc, PodRunnerError> {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let err = |detail: String| PodRunnerError::Pod { pod: key(&ns, &name), detail };
        let spec = pod.spec.as_ref().ok_or_else(|| err("no spec".into()))?;
        let [container] = spec.containers.as_slice() else {
            return Err(err(format!(
                "the runner runs one container per pod, spec.containers has {}",
                spec.containers.len()
            )));
        };
        if container.command.is_some() {
            return Err(err(format!(
                "container {}: command is not supported (the image's binary runs)",
                container.name
            )));
        }
        let image = container.image.clone().unwrap_or_default();
        let binary = self.config.images.binary(&image).map_err(err)?;
        let dir = self.config.dir.join(format!("{ns}_{name}"));
        let net = BackendNet::create()?;
        let child = match &binary {
            None => None,
            Some(bin) => {
                let started = self.spawn(pod, container, bin, &dir, &net).await;
                if started.is_err() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Some(started?)
            }
        };
        let port = ready_port(container);
        let ready =
            tokio::spawn(write_ready(self.api(&ns), name.clone(), container.clone(), net.ip(), binary.map(|_| port)));
        Ok(Proc { uid: pod.uid().unwrap_or_default(), ready, child, net, dir })
    }

    /// Runs `bin` as the container: its environment, Secret volumes and args, in `net`.
    async fn spawn(
        &self,
        pod: &Pod,
        container: &Container,
        bin: &Path,
        dir: &Path,
        net: &BackendNet,
    ) -> Result<Child, PodRunnerError> {
        let err = |detail: String| PodRunnerError::Pod {
            pod: key(&pod.namespace().unwrap_or_default(), &pod.name_any()),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        let mounts = self.write_secret_volumes(pod, container, dir).await?;
        let env = environment(pod, container, &mounts, net.ip()).map_err(err)?;
        let log = std::fs::File::create(dir.with_extension("log")).map_err(|e| err(format!("log file: {e}")))?;
        let log2 = log.try_clone().map_err(|e| err(format!("log file: {e}")))?;
        Command::new("ip")
            .args(["netns", "exec", net.name()])
            .arg(bin)
            .args(container.args.iter().flatten())
            .env_clear()
            .envs(env)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| err(format!("starting {}: {e}", bin.display())))
    }

    /// Writes each Secret volume the container mounts to `dir/<volume>/<key>`; returns
    /// `(mountPath, directory)` pairs.
    async fn write_secret_volumes(
        &self,
        pod: &Pod,
        container: &Container,
        dir: &Path,
    ) -> Result<Vec<(String, PathBuf)>, PodRunnerError> {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let err = |detail: String| PodRunnerError::Pod { pod: key(&ns, &name), detail };
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let v = volumes
                .iter()
                .find(|v| v.name == m.name)
                .ok_or_else(|| err(format!("volumeMount {}: no such volume", m.name)))?;
            let source = v
                .secret
                .as_ref()
                .ok_or_else(|| err(format!("volume {}: only secret volumes are supported", v.name)))?;
            let secret_name = source.secret_name.clone().unwrap_or_default();
            // As kubelet: a Secret not there yet keeps the Pod waiting (retried on Secret events).
            let secret = match Api::<Secret>::namespaced(self.client.clone(), &ns).get_opt(&secret_name).await {
                Ok(Some(s)) => s,
                Ok(None) => return Err(PodRunnerError::Waiting(format!("secret {ns}/{secret_name} of pod {name}"))),
                Err(e) => return Err(PodRunnerError::kube(format!("secret {ns}/{secret_name} of pod {name}"))(e)),
            };
            let data = secret.data.unwrap_or_default();
            // `items` picks keys and names their files; without it every key is a file.
            let files: Vec<(String, String)> = match &source.items {
                Some(items) => items.iter().map(|i| (i.key.clone(), i.path.clone())).collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            let vdir = dir.join(&v.name);
            std::fs::create_dir_all(&vdir).map_err(|e| err(format!("creating {}: {e}", vdir.display())))?;
            for (k, path) in files {
                let value = data
                    .get(&k)
                    .ok_or_else(|| err(format!("volume {}: secret {secret_name} has no key {k}", v.name)))?;
                std::fs::write(vdir.join(&path), &value.0)
                    .map_err(|e| err(format!("writing secret key {k} to {path}: {e}")))?;
            }
            mounts.push((m.mount_path.trim_end_matches('/').to_string(), vdir));
        }
        Ok(mounts)
    }
}

/// The container's environment: values (paths under a Secret volume's `mountPath` rewritten to
/// where the runner wrote it) and downward-API fields.
fn environment(
    pod: &Pod,
    container: &Container,
    mounts: &[(String, PathBuf)],
    ip: Ipv4Addr,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (_, Some(from)) => {
                let field = from
                    .field_ref
                    .as_ref()
                    .ok_or_else(|| format!("env {}: only value and valueFrom.fieldRef are supported", e.name))?;
                match field.field_path.as_str() {
                    "metadata.name" => pod.name_any(),
                    "metadata.namespace" => pod.namespace().unwrap_or_default(),
                    "metadata.uid" => pod.uid().unwrap_or_default(),
                    "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
                    "spec.serviceAccountName" => {
                        pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default()
                    }
                    "status.podIP" => ip.to_string(),
                    "status.hostIP" => NODE_IP.to_string(),
                    other => return Err(format!("env {}: fieldRef {other} is not supported", e.name)),
                }
            }
            (Some(v), None) => rewrite(v, mounts),
            (None, None) => String::new(),
        };
        env.push((e.name.clone(), value));
    }
    Ok(env)
}

fn rewrite(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, dir) in mounts {
        if let Some(rest) = value.strip_prefix(mount.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{}{rest}", dir.display());
            }
        }
    }
    value.to_string()
}

/// The port whose accepting connections makes the container ready: its first declared port,
/// else `HTTP_PORT`, else echo-basic's default.
fn ready_port(container: &Container) -> u16 {
    if let Some(p) = container.ports.iter().flatten().next() {
        return u16::try_from(p.container_port).unwrap_or(DEFAULT_PORT);
    }
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "HTTP_PORT")
        .and_then(|e| e.value.as_ref()?.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// Waits until `ip:port` accepts a TCP connection (no wait without a process), then writes the
/// Pod's status: Running, Ready, its addresses and container status.
async fn write_ready(api: Api<Pod>, name: String, container: Container, ip: Ipv4Addr, port: Option<u16>) {
    if let Some(port) = port {
        let start = Instant::now();
        loop {
            if tokio::net::TcpStream::connect((ip, port)).await.is_ok() {
                break;
            }
            if start.elapsed() > READY_LIMIT {
                tracing::warn!(pod = %name, %ip, port, "not accepting connections within {READY_LIMIT:?}");
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let now = now();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
        "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
        "startTime": now,
        "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "",
            "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}],
    }});
    if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await {
        tracing::warn!(pod = %name, error = %e, "writing ready status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(env: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "apps", "uid": "u-1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "echo", "env": env}]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    #[test]
    fn environment_resolves_values_field_refs_and_secret_paths() {
        let (pod, c) = with_env(json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "CERT", "value": "/etc/secret-volume/crt"},
            {"name": "OTHER", "value": "/etc/secret-volumes/crt"},
        ]));
        let mounts = vec![("/etc/secret-volume".to_string(), PathBuf::from("/run/p/secret-volume"))];
        let env = environment(&pod, &c, &mounts, Ipv4Addr::new(10, 199, 0, 2)).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_NAME"), Some("web-1"));
        assert_eq!(get("NAMESPACE"), Some("apps"));
        assert_eq!(get("IP"), Some("10.199.0.2"));
        assert_eq!(get("CERT"), Some("/run/p/secret-volume/crt"));
        // Only whole path components under the mount are rewritten.
        assert_eq!(get("OTHER"), Some("/etc/secret-volumes/crt"));
    }

    #[test]
    fn environment_names_what_it_cannot_resolve() {
        let (pod, c) =
            with_env(json!([{"name": "LIMIT", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['x']"}}}]));
        let e = environment(&pod, &c, &[], Ipv4Addr::LOCALHOST).unwrap_err();
        assert!(e.contains("env LIMIT") && e.contains("metadata.labels['x']"), "{e}");
        let (pod, c) = with_env(json!([{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]));
        let e = environment(&pod, &c, &[], Ipv4Addr::LOCALHOST).unwrap_err();
        assert!(e.contains("env KEY"), "{e}");
    }

    #[test]
    fn ready_port_prefers_declared_ports_then_http_port() {
        let (_, mut c) = with_env(json!([{"name": "HTTP_PORT", "value": "8081"}]));
        assert_eq!(ready_port(&c), 8081);
        c.env = None;
        assert_eq!(ready_port(&c), DEFAULT_PORT);
        c.ports = Some(vec![k8s_openapi::api::core::v1::ContainerPort { container_port: 9000, ..Default::default() }]);
        assert_eq!(ready_port(&c), 9000);
    }
}
