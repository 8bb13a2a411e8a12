//! Flags -> typed configs. `cli` holds what was typed; this module says what it means (the
//! defaults that depend on where we run: in a cluster or not, POD_NAMESPACE, this replica's
//! identity) and returns the configs of the layers below (`Registration`, `SecretCertConfig`,
//! the reconciler's settings, ...) as one [`ServeConfig`] that `serve` composes without
//! reading a flag. Flag combinations that cannot run are refused here, before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::certs::issue::CertOptions;
use crate::certs::secret::SecretCertConfig;
use crate::cli::{
    CertsArgs, MetricNamesArg, ReconcilerArgs, RegistrationArgs, RenderArgs, SeccompDefault,
    ServeArgs, SubmitterKind,
};
use crate::metrics::MetricNames;
use crate::mutate::MutationOptions;
use crate::namespaces::JobNamespaces;
use crate::reconciler::runner::LeaderElection;
use crate::reconciler::state::Settings;
use crate::registration::{Endpoint, Registration};
use crate::render::RenderOptions;
use crate::scheduling::{self, BatchOptions};
use crate::submission::spark_submit::{SparkSubmitter, SubmitAuth};
use crate::submission::{SubmitOptions, Submitter, UiOptions};

/// A flag combination that cannot run (clap has already checked each flag alone).
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("--submitter=spark-submit needs --spark-home (or SPARK_HOME)")]
    NoSparkHome,
    #[error("no bin/spark-submit under --spark-home {0}")]
    NoSparkSubmit(String),
    #[error("--webhook=false and --controller=false leave nothing to run")]
    NothingToRun,
    #[error("self-managed certificate: {0}")]
    CertSecret(String),
    #[error(
        "--default-batch-scheduler={0}: not an enabled batch scheduler (volcano, yunikorn, or one of --kube-scheduler-names; needs --enable-batch-scheduler)"
    )]
    DefaultBatchScheduler(String),
    #[error("--{flag}: {error}")]
    Json {
        flag: &'static str,
        error: serde_json::Error,
    },
}

/// Everything `serve` runs, as typed configs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The plain-HTTP admin endpoints.
    pub admin_addr: SocketAddr,
    pub namespaces: JobNamespaces,
    /// The mutation rules' knobs (the webhook's and native submission's).
    pub mutation: MutationOptions,
    /// Gang scheduling (the webhook's checks and executor marks, submission's PodGroups).
    pub batch: BatchOptions,
    /// None: --webhook=false.
    pub webhook: Option<WebhookConfig>,
    /// None: --controller=false.
    pub reconciler: Option<ReconcilerSetup>,
    /// How long in-flight work may take to finish at shutdown.
    pub shutdown_timeout: Duration,
    /// After SIGTERM: unready but still serving, for this long, before the listener closes.
    pub drain_period: Duration,
    /// How long the Kubernetes API may be unreachable before /readyz fails.
    pub api_outage_grace: Duration,
}

/// The admission webhook: where it listens, what it serves, how it is registered.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    pub certs: CertSource,
    /// The configurations to keep registered (their caBundle filled in at run time); None:
    /// --register-webhook is off.
    pub registration: Option<Registration>,
    /// Body-read timeout, in-flight cap and live-read budget.
    pub body_timeout: Duration,
    pub max_in_flight: usize,
    /// The live-read budget of cache misses, per second.
    pub live_reads_per_second: u32,
    /// `--enable-resource-quota-enforcement`.
    pub enforce_quota: bool,
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    /// Files (tls.crt, tls.key, ca.crt) in a folder, re-read every `reload_interval`.
    Dir {
        dir: PathBuf,
        reload_interval: Duration,
    },
    /// A Secret this process creates, renews and serves (--cert-secret).
    Secret(SecretCertConfig),
}

/// The reconciler's settings; `serve` adds the caches, metrics and Event recorder it shares.
#[derive(Clone, Debug)]
pub struct ReconcilerSetup {
    pub settings: Settings,
    pub submit: SubmitOptions,
    pub submitter: Submitter,
    pub leader_election: Option<LeaderElection>,
    pub metrics: MetricsConfig,
}

/// The SparkApplication metrics' shape.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    pub prefix: String,
    pub labels: Vec<String>,
    pub start_latency_buckets: Vec<f64>,
    /// Ours (Prometheus' naming rules) or kubeflow's exact names and types.
    pub names: MetricNames,
}

impl ServeConfig {
    /// What `args` mean; refuses combinations that cannot run.
    pub fn from_args(args: &ServeArgs) -> Result<ServeConfig, ConfigError> {
        if !args.webhook && !args.controller {
            return Err(ConfigError::NothingToRun);
        }
        let mutation = args.mutation();
        let batch = args.batch()?;
        let webhook = match args.webhook {
            false => None,
            true => Some(WebhookConfig {
                addr: args.webhook_addr,
                certs: match &args.cert_secret {
                    Some(name) => {
                        let cfg = args.secret_cert_config(name);
                        cfg.validate()
                            .map_err(|e| ConfigError::CertSecret(e.to_string()))?;
                        CertSource::Secret(cfg)
                    }
                    None => CertSource::Dir {
                        dir: args.cert_dir.clone(),
                        reload_interval: args.cert_reload_interval,
                    },
                },
                registration: args
                    .registers()
                    .then(|| args.registration.registration(Vec::new())),
                body_timeout: args.webhook_body_timeout,
                max_in_flight: args.webhook_max_in_flight as usize,
                live_reads_per_second: args.webhook_live_reads_per_second,
                enforce_quota: args.enable_resource_quota_enforcement,
            }),
        };
        let reconciler = match args.controller {
            false => None,
            true => Some(args.reconciler.setup(mutation, batch.clone())?),
        };
        Ok(ServeConfig {
            admin_addr: args.admin_addr,
            namespaces: JobNamespaces::from_flags(
                &args.namespaces,
                args.namespace_selector.clone(),
            ),
            mutation,
            batch,
            webhook,
            reconciler,
            shutdown_timeout: args.shutdown_timeout,
            drain_period: args.drain_period,
            api_outage_grace: args.api_outage_grace,
        })
    }
}

/// Whether we run in a pod: the defaults of --register-webhook and --leader-election.
fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

impl CertsArgs {
    pub fn options(&self) -> CertOptions {
        CertOptions {
            dir: self.dir.clone(),
            service_name: self.service_name.clone(),
            namespace: self.namespace.clone(),
            extra_dns: self.dns_names.clone(),
            extra_ips: self.ips.clone(),
            validity_days: self.validity_days,
            ca_validity_days: self.ca_validity_days,
            new_ca: self.new_ca,
        }
    }
}

impl RenderArgs {
    pub fn options(&self) -> RenderOptions {
        RenderOptions {
            file: self.file.clone(),
            namespace: self.namespace.clone(),
            attempt: self.attempt,
            default_spark_image: self.default_spark_image.clone(),
            ingress_url_format: self.ingress_url_format.clone().filter(|f| !f.is_empty()),
            enable_driver_pdb: self.enable_driver_pdb,
            batch: BatchOptions {
                enabled: self.enable_batch_scheduler,
                default_scheduler: None,
                kube_scheduler_names: self.kube_scheduler_names.clone(),
            },
        }
    }
}

impl RegistrationArgs {
    /// The registration these flags describe, with `ca_bundle` as its caBundle.
    pub fn registration(&self, ca_bundle: Vec<u8>) -> Registration {
        let endpoint = match &self.webhook_url {
            Some(url) => Endpoint::Url(url.clone()),
            None => Endpoint::Service {
                namespace: self.service_namespace.clone(),
                name: self.service_name.clone(),
                port: self.service_port,
            },
        };
        Registration {
            name: self.webhook_config_name.clone(),
            endpoint,
            ca_bundle,
            pod_failure_policy: self.webhook_failure_policy,
            app_failure_policy: self.validation_failure_policy,
            timeout_seconds: self.webhook_timeout_seconds,
            namespace_selector: self
                .webhook_namespace_selector
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

impl ReconcilerArgs {
    fn submitter(&self) -> Result<Submitter, ConfigError> {
        if self.submitter == SubmitterKind::Native {
            return Ok(Submitter::Native);
        }
        let spark_home = self.spark_home.clone().ok_or(ConfigError::NoSparkHome)?;
        if !spark_home.join("bin/spark-submit").exists() {
            return Err(ConfigError::NoSparkSubmit(spark_home.display().to_string()));
        }
        let sa = SubmitAuth::service_account();
        let auth = SubmitAuth {
            token_file: self
                .spark_submit_token_file
                .clone()
                .unwrap_or(sa.token_file),
            ca_cert_file: self.spark_submit_ca_file.clone().or(sa.ca_cert_file),
        };
        Ok(Submitter::SparkSubmit {
            runner: SparkSubmitter {
                spark_home,
                timeout: self.spark_submit_timeout,
                kubeconfig_auth: auth,
            },
            master: self.spark_master.clone(),
        })
    }

    /// kubeflow's web UI flags; the JSON ones parsed here, so a typo stops the start.
    fn ui(&self) -> Result<UiOptions, ConfigError> {
        fn json<T: serde::de::DeserializeOwned + Default>(
            flag: &'static str,
            value: Option<&String>,
        ) -> Result<T, ConfigError> {
            match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(T::default()),
                Some(v) => {
                    serde_json::from_str(v).map_err(|error| ConfigError::Json { flag, error })
                }
            }
        }
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(UiOptions {
            enable_ui_service: self.enable_ui_service,
            ingress_url_format: non_empty(&self.ingress_url_format),
            ingress_class_name: non_empty(&self.ingress_class_name),
            ingress_tls: json("ingress-tls", self.ingress_tls.as_ref())?,
            ingress_annotations: json("ingress-annotations", self.ingress_annotations.as_ref())?,
        })
    }

    /// The reconciler's settings; `spark-submit` is checked to exist here.
    fn setup(
        &self,
        mutation: MutationOptions,
        batch: BatchOptions,
    ) -> Result<ReconcilerSetup, ConfigError> {
        let leader_election =
            self.leader_election
                .unwrap_or_else(in_cluster)
                .then(|| LeaderElection {
                    lease_name: self.leader_election_lock_name.clone(),
                    namespace: self
                        .leader_election_lock_namespace
                        .clone()
                        .or_else(|| std::env::var("POD_NAMESPACE").ok())
                        .unwrap_or_else(|| "default".into()),
                    identity: identity(),
                    duration: self.leader_election_lease_duration,
                    grace: self.leader_election_renew_grace,
                });
        Ok(ReconcilerSetup {
            submitter: self.submitter()?,
            settings: Settings {
                driver_start_timeout: (!self.driver_start_timeout.is_zero())
                    .then_some(self.driver_start_timeout),
                max_tracked_executors: self.max_tracked_executor_per_app,
                orphan_sweep_interval: self.orphan_sweep_interval.max(Duration::from_millis(100)),
                ..Settings::default()
            },
            submit: SubmitOptions {
                default_image: self.default_spark_image.clone(),
                master_url: self.spark_master.clone(),
                mutation,
                ui: self.ui()?,
                enable_driver_pdb: self.enable_driver_pdb,
                batch,
            },
            leader_election,
            metrics: MetricsConfig {
                prefix: self.metrics_prefix.clone(),
                labels: self.metrics_labels.clone(),
                start_latency_buckets: self.metrics_job_start_latency_buckets.clone(),
                names: match self.metrics_names {
                    MetricNamesArg::Native => MetricNames::Native,
                    MetricNamesArg::Kubeflow => MetricNames::Kubeflow,
                },
            },
        })
    }
}

impl ServeArgs {
    /// Whether to register the webhook configurations: --register-webhook, else in a cluster.
    fn registers(&self) -> bool {
        self.register_webhook.unwrap_or_else(in_cluster)
    }

    /// Gang scheduling: kubeflow's three flags. A default that is not an enabled scheduler
    /// stops the start (kubeflow only logs it, then fails every app's submission).
    fn batch(&self) -> Result<BatchOptions, ConfigError> {
        let default = self
            .default_batch_scheduler
            .clone()
            .filter(|s| !s.is_empty());
        let names: Vec<String> = self
            .kube_scheduler_names
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        if let Some(d) = &default {
            let known = d == scheduling::VOLCANO || d == scheduling::YUNIKORN || names.contains(d);
            if !self.enable_batch_scheduler || !known {
                return Err(ConfigError::DefaultBatchScheduler(d.clone()));
            }
        }
        Ok(BatchOptions {
            enabled: self.enable_batch_scheduler,
            default_scheduler: default,
            kube_scheduler_names: names,
        })
    }

    /// The mutation rules' knobs.
    fn mutation(&self) -> MutationOptions {
        MutationOptions {
            default_seccomp_profile: self.default_seccomp_profile == SeccompDefault::RuntimeDefault,
            executor_prestop_decommission: self.executor_prestop_decommission,
        }
    }

    /// The self-managed mode's settings for Secret `name`.
    fn secret_cert_config(&self, name: &str) -> SecretCertConfig {
        let reg = &self.registration;
        let (mut extra_dns, mut extra_ips) = (Vec::new(), Vec::new());
        // A url clientConfig is called by its host: the certificate must cover it too.
        if let Some(host) = reg.webhook_url.as_deref().and_then(url_host) {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => extra_ips.push(ip),
                Err(_) => extra_dns.push(host),
            }
        }
        SecretCertConfig {
            namespace: self
                .cert_secret_namespace
                .clone()
                .or_else(|| {
                    std::env::var("POD_NAMESPACE")
                        .ok()
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| reg.service_namespace.clone()),
            name: name.to_string(),
            service_name: reg.service_name.clone(),
            service_namespace: reg.service_namespace.clone(),
            extra_dns,
            extra_ips,
            renew_before: self.cert_renew_before,
            check_interval: self.cert_check_interval,
            validity_days: self.cert_validity_days,
            ca_validity_days: self.ca_validity_days,
            ca_renew_before: self.ca_renew_before,
            ca_overlap: self.ca_overlap,
            identity: identity(),
        }
    }
}

/// The host of `https://host[:port]/path` (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// This replica's name for leases and Events: the pod name, else hostname and pid (two
/// processes on one host must never share an identity, kubeflow #2063).
pub fn identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "spark-webhook".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--metrics-names`: ours by default, kubeflow's when asked (flag or env).
    #[test]
    fn metric_names_are_native_unless_kubeflow_is_asked_for() {
        use clap::Parser;
        let names = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(args).expect("parses");
            let crate::cli::Command::Serve(serve) = cli.command else {
                panic!("serve")
            };
            serve
                .reconciler
                .setup(MutationOptions::default(), BatchOptions::default())
                .expect("a setup")
                .metrics
                .names
        };
        assert_eq!(names(&["spark-webhook", "serve"]), MetricNames::Native);
        assert_eq!(
            names(&["spark-webhook", "serve", "--metrics-names=kubeflow"]),
            MetricNames::Kubeflow
        );
        assert!(
            crate::cli::Cli::try_parse_from(["spark-webhook", "serve", "--metrics-names=go"])
                .is_err()
        );
    }

    /// kubeflow's batch flags: the default must be an enabled scheduler (kubeflow only logs
    /// it and then fails every app's submission); kube-scheduler names are batch schedulers.
    #[test]
    fn the_default_batch_scheduler_must_be_enabled() {
        use clap::Parser;
        let batch = |args: &[&str]| {
            let mut all = vec!["spark-webhook", "serve"];
            all.extend_from_slice(args);
            let cli = crate::cli::Cli::try_parse_from(all).expect("parses");
            let crate::cli::Command::Serve(serve) = cli.command else {
                panic!("serve")
            };
            serve.batch().map_err(|e| e.to_string())
        };
        assert_eq!(batch(&[]), Ok(BatchOptions::default()));
        let err = batch(&["--default-batch-scheduler=volcano"]).unwrap_err();
        assert!(err.contains("needs --enable-batch-scheduler"), "{err}");
        assert!(batch(&["--enable-batch-scheduler", "--default-batch-scheduler=sp"]).is_err());
        assert_eq!(
            batch(&[
                "--enable-batch-scheduler",
                "--kube-scheduler-names=sp,other",
                "--default-batch-scheduler=sp",
            ]),
            Ok(BatchOptions {
                enabled: true,
                default_scheduler: Some("sp".into()),
                kube_scheduler_names: vec!["sp".into(), "other".into()],
            })
        );
    }

    #[test]
    fn url_hosts() {
        for (url, host) in [
            ("https://127.0.0.1:9443", Some("127.0.0.1")),
            ("https://webhook.example.com/x", Some("webhook.example.com")),
            ("https://[::1]:9443/", Some("::1")),
            ("webhook:443", Some("webhook")),
            ("https://", None),
        ] {
            assert_eq!(url_host(url).as_deref(), host, "{url}");
        }
    }
}
