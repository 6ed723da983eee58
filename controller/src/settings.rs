//! Command-line settings with KIC's flag names (each also readable from `CONTROLLER_<FLAG>`), so a
//! KIC Deployment's arguments keep working. Parsing and validation only; nothing here does I/O.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use thiserror::Error;

/// The IngressClass `spec.controller` value KIC ships and sluice answers to.
pub const CONTROLLER_NAME: &str = "ingress-controllers.konghq.com/kong";

/// A setting that parsed but makes no sense.
#[derive(Debug, Error, PartialEq)]
pub enum SettingsError {
    #[error("--kong-admin-url: '{0}' is not supported; expected unix:///path/to/admin.sock")]
    AdminUrl(String),
    #[error("{flag}: invalid address '{value}': expected [HOST]:PORT")]
    Address { flag: &'static str, value: String },
    #[error("--proxy-sync-seconds: {0} must be a positive number of seconds")]
    SyncPeriod(f64),
    #[error("--publish-service: '{0}' must be NAMESPACE/NAME")]
    PublishService(String),
    #[error("--admission-webhook-listen: the admission webhook needs a cluster; it cannot run with --manifests")]
    WebhookWithoutCluster,
    #[error(transparent)]
    Traces(#[from] crate::sync_trace::TraceError),
}

/// Output format of `--dump-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DumpFormat {
    #[default]
    Yaml,
    Json,
}

/// Everything `sluice-controller` can be told.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-controller", version, about = "Kong-compatible ingress controller for sluice-proxy")]
pub struct Settings {
    /// Ingress class handled (Ingress annotation `kubernetes.io/ingress.class`, `spec.ingressClassName`,
    /// or the default IngressClass when it carries this name).
    #[arg(long, env = "CONTROLLER_INGRESS_CLASS", default_value = "kong")]
    pub ingress_class: String,

    /// Namespaces to watch (comma-separated or repeated); empty = all.
    #[arg(long, env = "CONTROLLER_WATCH_NAMESPACE", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,

    /// `NAMESPACE/NAME` of the proxy's Service; its load-balancer addresses go to Ingress status.
    #[arg(long, env = "CONTROLLER_PUBLISH_SERVICE")]
    pub publish_service: Option<String>,

    /// Addresses (IPs or hostnames) written to Ingress status instead of the publish Service's.
    #[arg(long, env = "CONTROLLER_PUBLISH_STATUS_ADDRESS", value_delimiter = ',')]
    pub publish_status_address: Vec<String>,

    /// Write Ingress status (only the leader does).
    #[arg(long, env = "CONTROLLER_UPDATE_STATUS", default_value_t = true, action = clap::ArgAction::Set)]
    pub update_status: bool,

    /// Name of the Lease used for leader election.
    #[arg(long, env = "CONTROLLER_ELECTION_ID", default_value = "5b374a9e.konghq.com")]
    pub election_id: String,

    /// Namespace of the election Lease (defaults to the pod's namespace, else `default`).
    #[arg(long, env = "CONTROLLER_ELECTION_NAMESPACE")]
    pub election_namespace: Option<String>,

    /// The proxy's admin endpoint: `unix:///path/to/admin.sock`.
    #[arg(long, env = "CONTROLLER_KONG_ADMIN_URL", default_value = "unix:///var/run/sluice/admin.sock")]
    pub kong_admin_url: String,

    /// Debounce between a change and the rebuild/push it triggers, in seconds (fractions allowed).
    #[arg(long, env = "CONTROLLER_PROXY_SYNC_SECONDS", default_value_t = 3.0)]
    pub proxy_sync_seconds: f64,

    /// Timeout of one push to the proxy, in seconds.
    #[arg(long, env = "CONTROLLER_PROXY_TIMEOUT_SECONDS", default_value_t = 30.0)]
    pub proxy_timeout_seconds: f64,

    /// Address of the controller's `/metrics` (`:10255` = all interfaces).
    #[arg(long, env = "CONTROLLER_METRICS_BIND_ADDRESS", default_value = ":10255")]
    pub metrics_bind_address: String,

    /// Address of `/healthz` and `/readyz`.
    #[arg(long, env = "CONTROLLER_HEALTH_PROBE_BIND_ADDRESS", default_value = ":10254")]
    pub health_probe_bind_address: String,

    /// Path to a kubeconfig; default: in-cluster config, else `$KUBECONFIG`/`~/.kube/config`.
    #[arg(long, env = "CONTROLLER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Cluster DNS domain, used for `ingress.kubernetes.io/service-upstream` targets.
    #[arg(long, env = "CONTROLLER_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Print the translated config and exit.
    #[arg(long, env = "CONTROLLER_DUMP_CONFIG")]
    pub dump_config: bool,

    /// Format of `--dump-config`.
    #[arg(long, env = "CONTROLLER_DUMP_FORMAT", value_enum, default_value_t = DumpFormat::Yaml)]
    pub dump_format: DumpFormat,

    /// Log level (`error`, `warn`, `info`, `debug`, `trace`, or a tracing filter).
    #[arg(long, env = "CONTROLLER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format: `text` or `json`.
    #[arg(long, env = "CONTROLLER_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Run from YAML manifests (a file or a directory, read recursively) instead of a cluster,
    /// re-translating when they change.
    #[arg(long, env = "CONTROLLER_MANIFESTS")]
    pub manifests: Option<PathBuf>,

    /// `controllerName` of the GatewayClasses this controller serves (Gateway API).
    #[arg(long, env = "CONTROLLER_GATEWAY_CONTROLLER_NAME", default_value = crate::translate::gateway::DEFAULT_CONTROLLER_NAME)]
    pub gateway_controller_name: String,

    /// Address of the validating admission webhook (HTTPS), e.g. `:8080`; `off` (the default) disables it.
    #[arg(long, env = "CONTROLLER_ADMISSION_WEBHOOK_LISTEN", default_value = "off")]
    pub admission_webhook_listen: String,

    /// PEM certificate chain the admission webhook serves (reread when it changes).
    #[arg(long, env = "CONTROLLER_ADMISSION_WEBHOOK_CERT_FILE", default_value = DEFAULT_WEBHOOK_CERT)]
    pub admission_webhook_cert_file: PathBuf,

    /// PEM private key of `--admission-webhook-cert-file`.
    #[arg(long, env = "CONTROLLER_ADMISSION_WEBHOOK_KEY_FILE", default_value = DEFAULT_WEBHOOK_KEY)]
    pub admission_webhook_key_file: PathBuf,

    /// OTLP/gRPC collector (`http://HOST:PORT`) that receives a trace per sync round (spans
    /// `sync`, `translate`, `push`); unset = no tracing. Also the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,
}

/// KIC's default paths of the webhook's certificate and key (a mounted `kubernetes.io/tls` Secret).
pub const DEFAULT_WEBHOOK_CERT: &str = "/admission-webhook/tls.crt";
pub(crate) const DEFAULT_WEBHOOK_KEY: &str = "/admission-webhook/tls.key";

impl Default for Settings {
    /// The defaults of every flag (what a bare `sluice-controller` gets), environment ignored.
    fn default() -> Self {
        Settings {
            ingress_class: "kong".into(),
            watch_namespace: Vec::new(),
            publish_service: None,
            publish_status_address: Vec::new(),
            update_status: true,
            election_id: "5b374a9e.konghq.com".into(),
            election_namespace: None,
            kong_admin_url: "unix:///var/run/sluice/admin.sock".into(),
            proxy_sync_seconds: 3.0,
            proxy_timeout_seconds: 30.0,
            metrics_bind_address: ":10255".into(),
            health_probe_bind_address: ":10254".into(),
            kubeconfig: None,
            cluster_domain: "cluster.local".into(),
            dump_config: false,
            dump_format: DumpFormat::Yaml,
            log_level: "info".into(),
            log_format: "text".into(),
            manifests: None,
            gateway_controller_name: crate::translate::gateway::DEFAULT_CONTROLLER_NAME.into(),
            admission_webhook_listen: "off".into(),
            admission_webhook_cert_file: DEFAULT_WEBHOOK_CERT.into(),
            admission_webhook_key_file: DEFAULT_WEBHOOK_KEY.into(),
            otlp_traces_endpoint: None,
        }
    }
}

impl Settings {
    /// Checks what clap cannot: URL shape, addresses, periods. Called by `main` before anything starts.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.admin_socket()?;
        endpoint_address("--metrics-bind-address", &self.metrics_bind_address)?;
        endpoint_address("--health-probe-bind-address", &self.health_probe_bind_address)?;
        self.sync_period()?;
        self.publish_service()?;
        if let Some(url) = &self.otlp_traces_endpoint {
            crate::sync_trace::check_endpoint(url)?;
        }
        if self.admission_webhook()?.is_some() && self.manifests.is_some() {
            return Err(SettingsError::WebhookWithoutCluster);
        }
        Ok(())
    }

    /// `--admission-webhook-listen` as an address (`None` = off).
    pub fn admission_webhook(&self) -> Result<Option<SocketAddr>, SettingsError> {
        endpoint_address("--admission-webhook-listen", &self.admission_webhook_listen)
    }

    /// The admin socket path from `--kong-admin-url`.
    pub fn admin_socket(&self) -> Result<PathBuf, SettingsError> {
        match self.kong_admin_url.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
            _ => Err(SettingsError::AdminUrl(self.kong_admin_url.clone())),
        }
    }

    /// `--proxy-sync-seconds` as a duration.
    pub(crate) fn sync_period(&self) -> Result<Duration, SettingsError> {
        let s = self.proxy_sync_seconds;
        if s.is_finite() && s > 0.0 && s < 86_400.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(SettingsError::SyncPeriod(s))
        }
    }

    /// `--proxy-timeout-seconds` as a duration (invalid values fall back to KIC's 30 s).
    pub(crate) fn push_timeout(&self) -> Duration {
        let s = self.proxy_timeout_seconds;
        if s.is_finite() && s > 0.0 && s < 3_600.0 {
            Duration::from_secs_f64(s)
        } else {
            Duration::from_secs(30)
        }
    }

    /// `--publish-service` split into namespace and name.
    pub fn publish_service(&self) -> Result<Option<(String, String)>, SettingsError> {
        match &self.publish_service {
            None => Ok(None),
            Some(s) => match s.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok(Some((ns.to_string(), name.to_string())))
                }
                _ => Err(SettingsError::PublishService(s.clone())),
            },
        }
    }

    /// Whether objects of `namespace` are in scope of `--watch-namespace`.
    pub(crate) fn watches_namespace(&self, namespace: &str) -> bool {
        self.watch_namespace.is_empty() || self.watch_namespace.iter().any(|n| n == namespace)
    }
}

/// Like [`bind_address`], but `0`, `off` or empty disable the listener (`None`), as in KIC.
pub(crate) fn endpoint_address(flag: &'static str, value: &str) -> Result<Option<SocketAddr>, SettingsError> {
    match value {
        "0" | "off" | "" => Ok(None),
        v => bind_address(flag, v).map(Some),
    }
}

/// Parses KIC-style bind addresses: `:10254` (all interfaces), `HOST:PORT`, `[v6]:PORT`.
pub fn bind_address(flag: &'static str, value: &str) -> Result<SocketAddr, SettingsError> {
    let err = || SettingsError::Address { flag, value: value.to_string() };
    let full = if value.starts_with(':') { format!("0.0.0.0{value}") } else { value.to_string() };
    full.parse::<SocketAddr>().map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kic() {
        let s = Settings::try_parse_from(["sluice-controller"]).unwrap();
        assert_eq!(s.ingress_class, "kong");
        assert_eq!(s.proxy_sync_seconds, 3.0);
        assert_eq!(s.admin_socket().unwrap(), PathBuf::from("/var/run/sluice/admin.sock"));
        assert_eq!(bind_address("x", &s.metrics_bind_address).unwrap().port(), 10255);
        assert_eq!(bind_address("x", &s.health_probe_bind_address).unwrap().port(), 10254);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn default_impl_matches_the_flag_defaults() {
        let parsed = Settings::try_parse_from(["sluice-controller"]).unwrap();
        assert_eq!(format!("{:?}", Settings::default()), format!("{parsed:?}"));
    }

    #[test]
    fn flags_parse() {
        let s = Settings::try_parse_from([
            "sluice-controller",
            "--watch-namespace",
            "a,b",
            "--proxy-sync-seconds",
            "0.05",
            "--kong-admin-url",
            "unix:///tmp/x.sock",
            "--publish-service",
            "kong/proxy",
            "--dump-config",
            "--dump-format",
            "json",
        ])
        .unwrap();
        assert_eq!(s.watch_namespace, vec!["a", "b"]);
        assert_eq!(s.sync_period().unwrap(), Duration::from_millis(50));
        assert_eq!(s.publish_service().unwrap(), Some(("kong".into(), "proxy".into())));
        assert_eq!(s.dump_format, DumpFormat::Json);
        assert!(s.watches_namespace("a") && !s.watches_namespace("c"));
    }

    #[test]
    fn bad_values_are_errors() {
        let mut s = Settings { kong_admin_url: "http://127.0.0.1:8001".into(), ..Settings::default() };
        assert!(matches!(s.validate(), Err(SettingsError::AdminUrl(_))));
        s.kong_admin_url = "unix:///x".into();
        s.proxy_sync_seconds = 0.0;
        assert!(matches!(s.validate(), Err(SettingsError::SyncPeriod(_))));
        s.proxy_sync_seconds = 1.0;
        s.metrics_bind_address = "nope".into();
        assert!(matches!(s.validate(), Err(SettingsError::Address { .. })));
        s.metrics_bind_address = "off".into();
        assert!(s.validate().is_ok());
        assert_eq!(endpoint_address("x", "0").unwrap(), None);
        s.admission_webhook_listen = "nope".into();
        assert!(matches!(s.validate(), Err(SettingsError::Address { flag: "--admission-webhook-listen", .. })));
        s.admission_webhook_listen = ":8080".into();
        assert!(s.validate().is_ok());
        s.manifests = Some("/x".into());
        assert_eq!(s.validate(), Err(SettingsError::WebhookWithoutCluster));
    }
}
