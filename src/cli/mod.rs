//! Command line: `serve`, `certs`, `crds`, `webhooks`, `render`. Every flag has an
//! environment-variable fallback (`SPARK_WEBHOOK_*`) so a Deployment can be configured without
//! rewriting its args. Only the clap structs live here; `config` says what they mean.

mod serve;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

pub use serve::{
    MetricNamesArg, ReconcilerArgs, RegistrationArgs, SeccompDefault, ServeArgs, SubmitterKind,
};

#[derive(Debug, Parser)]
#[command(
    name = "spark-webhook",
    version,
    about = "Spark on Kubernetes, the sparkoperator.k8s.io/v1beta2 way: a mutating webhook for Spark pods and a SparkApplication reconciler",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// Log filter, in RUST_LOG syntax (e.g. `info` or `info,spark_webhook=debug,kube=warn`).
    #[arg(long, env = "SPARK_WEBHOOK_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log format.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook and the SparkApplication reconciler.
    Serve(Box<ServeArgs>),
    /// Create or rotate the webhook's CA and serving certificate (PEM files in --dir).
    Certs(CertsArgs),
    /// Print the SparkApplication and ScheduledSparkApplication CustomResourceDefinitions (YAML)
    /// for `kubectl apply -f -`.
    Crds,
    /// Print the Mutating/ValidatingWebhookConfigurations (YAML), for registering by hand.
    Webhooks(WebhooksArgs),
    /// Print, without a cluster, the objects submitting a SparkApplication would create and the
    /// webhook's patch for its executor pods.
    Render(RenderArgs),
}

/// Options of `spark-webhook render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// SparkApplication manifest (YAML or JSON); `-` reads standard input.
    pub file: PathBuf,

    /// Namespace for a manifest that names none.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,

    /// Submission attempt to render (names and ids differ per attempt).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: u32,

    /// Image for apps that name none, as `serve --default-spark-image`.
    #[arg(long, env = "SPARK_WEBHOOK_DEFAULT_SPARK_IMAGE")]
    pub default_spark_image: Option<String>,

    /// Render the Spark UI Ingress too, as `serve --ingress-url-format`.
    #[arg(long)]
    pub ingress_url_format: Option<String>,

    /// Render the driver PodDisruptionBudget of apps asking for one, as `serve
    /// --enable-driver-pdb`.
    #[arg(long)]
    pub enable_driver_pdb: bool,

    /// Render the batch scheduler's PodGroup and pod marks, as `serve --enable-batch-scheduler`.
    #[arg(long)]
    pub enable_batch_scheduler: bool,

    /// As `serve --kube-scheduler-names` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub kube_scheduler_names: Vec<String>,
}

/// Options of `spark-webhook webhooks`.
#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// PEM file of the CA that signed the serving certificate (e.g. certs/ca.crt); without it the
    /// caBundle is left empty for you to fill in.
    #[arg(long, env = "SPARK_WEBHOOK_CA_BUNDLE_FILE")]
    pub ca_bundle_file: Option<PathBuf>,

    #[command(flatten)]
    pub registration: RegistrationArgs,
}

/// Options of `spark-webhook certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Folder for ca.crt, ca.key, tls.crt and tls.key (created if missing).
    #[arg(long, env = "SPARK_WEBHOOK_CERT_DIR", default_value = "certs")]
    pub dir: PathBuf,

    /// Name of the webhook's Service: the certificate covers <svc>, <svc>.<ns>, <svc>.<ns>.svc and
    /// <svc>.<ns>.svc.cluster.local.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_SERVICE_NAME",
        default_value = "spark-webhook"
    )]
    pub service_name: String,

    /// Namespace of the webhook's Service.
    #[arg(
        long,
        env = "SPARK_WEBHOOK_SERVICE_NAMESPACE",
        default_value = "spark-operator"
    )]
    pub namespace: String,

    /// Extra DNS names for the serving certificate (repeatable or comma-separated).
    #[arg(
        long = "dns-name",
        env = "SPARK_WEBHOOK_CERT_DNS_NAMES",
        value_delimiter = ','
    )]
    pub dns_names: Vec<String>,

    /// Extra IP addresses for the serving certificate (127.0.0.1 is always included).
    #[arg(long = "ip", env = "SPARK_WEBHOOK_CERT_IPS", value_delimiter = ',')]
    pub ips: Vec<IpAddr>,

    /// Validity of the serving certificate, in days.
    #[arg(long, env = "SPARK_WEBHOOK_CERT_VALIDITY_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub validity_days: u32,

    /// Validity of a newly created CA, in days.
    #[arg(long, env = "SPARK_WEBHOOK_CA_VALIDITY_DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_validity_days: u32,

    /// Replace the CA too (clients must then get the new caBundle); by default the CA is kept.
    #[arg(long, env = "SPARK_WEBHOOK_NEW_CA")]
    pub new_ca: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// An environment variable read by two flags would set both: each names one flag only.
    #[test]
    fn no_two_flags_read_the_same_environment_variable() {
        fn walk(cmd: &clap::Command, path: &str, seen: &mut Vec<(String, String)>) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy().into_owned();
                    let flag = format!("{path} --{}", arg.get_id());
                    if let Some((_, other)) = seen.iter().find(|(e, _)| *e == env) {
                        panic!("{env} is read by both {other} and {flag}");
                    }
                    seen.push((env, flag));
                }
            }
            for sub in cmd.get_subcommands() {
                // Subcommands run alone: a variable may serve one flag in each.
                let mut own = seen.clone();
                walk(sub, &format!("{path} {}", sub.get_name()), &mut own);
            }
        }
        walk(&super::Cli::command(), "spark-webhook", &mut Vec::new());
    }
}
