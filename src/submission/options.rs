//! Operator-wide settings of submission, apart from the builders so every one of them can read
//! the settings without importing the module that assembles them.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::IngressTLS;

use crate::mutate::MutationOptions;
use crate::scheduling::BatchOptions;

/// What `spark.master` says when the operator is not told otherwise: the in-cluster API.
pub const DEFAULT_MASTER_URL: &str = "k8s://https://kubernetes.default.svc:443";

/// Operator-wide settings of native submission.
#[derive(Clone, Debug, PartialEq)]
pub struct SubmitOptions {
    /// Image for apps that name none (`--default-spark-image`).
    pub default_image: Option<String>,
    /// `spark.master`. The driver talks to the API through `spark.kubernetes.driver.master`
    /// (default `https://kubernetes.default.svc`), so this is mostly informational.
    pub master_url: String,
    /// The pod mutation rules' options, applied to the driver.
    pub mutation: MutationOptions,
    /// The Spark UI Service and Ingress.
    pub ui: UiOptions,
    /// Create the driver PodDisruptionBudget for apps asking for it (`--enable-driver-pdb`).
    pub enable_driver_pdb: bool,
    /// Gang scheduling (`--enable-batch-scheduler` and its companions).
    pub batch: BatchOptions,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            default_image: None,
            master_url: DEFAULT_MASTER_URL.to_string(),
            mutation: MutationOptions::default(),
            ui: UiOptions::default(),
            enable_driver_pdb: false,
            batch: BatchOptions::default(),
        }
    }
}

/// kubeflow's web UI flags (`--enable-ui-service`, `--ingress-*`).
#[derive(Clone, Debug, PartialEq)]
pub struct UiOptions {
    /// Create `<app>-ui-svc` (kubeflow's default: on).
    pub enable_ui_service: bool,
    /// Host and path of the UI Ingress, with `{{$appName}}`, `{{$appNamespace}}` and
    /// `{{$appId}}`; no Ingress when unset.
    pub ingress_url_format: Option<String>,
    /// `spec.ingressClassName` of every Ingress created.
    pub ingress_class_name: Option<String>,
    /// TLS of the UI Ingress when the app's `sparkUIOptions.ingressTLS` is empty.
    pub ingress_tls: Vec<IngressTLS>,
    /// Annotations of the UI Ingress when the app's `sparkUIOptions.ingressAnnotations` is empty.
    pub ingress_annotations: BTreeMap<String, String>,
}

impl Default for UiOptions {
    fn default() -> Self {
        Self {
            enable_ui_service: true,
            ingress_url_format: None,
            ingress_class_name: None,
            ingress_tls: Vec::new(),
            ingress_annotations: BTreeMap::new(),
        }
    }
}
