//! The Spark UI Service `<app>-ui-svc` and Ingress `<app>-ui-ingress`, and the per-port Services
//! and Ingresses of `driverIngressOptions`, as kubeflow's controller creates them (`web_ui.go`,
//! `driveringress.go`), plus the `spark.ui.proxyBase` an Ingress on a sub-path needs.
//!
//! kubeflow creates them once the app is SUBMITTED, owned by the app; here they are objects of
//! the attempt, created with the driver's Service and owned by the driver pod like it, and
//! labelled with the submission id, so an attempt's cleanup removes them and a retry creates
//! its own.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use regex::Regex;

use crate::labels::{APP_NAME_LABEL, SPARK_ROLE_LABEL, SparkRole};

use super::conf::{Conf, DEFAULT_UI_PORT};
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::names::fit_name;
use super::objects::operator_labels;

const DEFAULT_UI_PORT_NAME: &str = "spark-driver-ui-port";
const PROXY_BASE: &str = "spark.ui.proxyBase";
const PROXY_REDIRECT_URI: &str = "spark.ui.proxyRedirectUri";
const REWRITE_TARGET: &str = "nginx.ingress.kubernetes.io/rewrite-target";

/// The UI objects of one attempt and what the status reports about them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebUi {
    /// `<app>-ui-svc`, unless `--enable-ui-service=false`.
    pub service: Option<Service>,
    /// `<app>-ui-ingress`, when the UI Service exists and `--ingress-url-format` is set.
    pub ingress: Option<Ingress>,
    /// `status.driverInfo.webUIIngressAddress`: the Ingress URL.
    pub ingress_address: String,
    /// `driverIngressOptions`: `<app>-driver-<port>` Services and `<app>-ing-<port>` Ingresses.
    pub extra_services: Vec<Service>,
    pub extra_ingresses: Vec<Ingress>,
}

/// An Ingress URL as kubeflow reads `--ingress-url-format`: Go's `url.Parse`, with `http://`
/// assumed when the format names no scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IngressUrl {
    scheme: String,
    host: String,
    path: String,
}

impl IngressUrl {
    pub(crate) fn parse(format: &str, ctx: &Ctx<'_>) -> Self {
        static NAME: LazyLock<Regex> = LazyLock::new(|| re(r"\{\{\s*\$appName\s*\}\}"));
        static NAMESPACE: LazyLock<Regex> = LazyLock::new(|| re(r"\{\{\s*\$appNamespace\s*\}\}"));
        static ID: LazyLock<Regex> = LazyLock::new(|| re(r"\{\{\s*\$appId\s*\}\}"));
        let url = NAME.replace_all(format, regex::NoExpand(ctx.name));
        let url = NAMESPACE.replace_all(&url, regex::NoExpand(ctx.namespace));
        let url = ID.replace_all(&url, regex::NoExpand(&ctx.names.app_id));
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains('/') => {
                (scheme.to_string(), rest)
            }
            _ => ("http".to_string(), url.as_ref()),
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        Self {
            scheme,
            host: host.to_string(),
            path: path.to_string(),
        }
    }

    /// The URL as kubeflow reports it in `webUIIngressAddress`.
    pub(crate) fn address(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }

    /// Serving on a sub-path: the Ingress captures the rest and rewrites it (nginx).
    fn sub_path(&self) -> bool {
        !self.path.is_empty() && self.path != "/"
    }
}

fn re(pattern: &str) -> Regex {
    // Constant patterns, checked by the unit tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad constant pattern {pattern}: {e}"))
}

/// kubeflow's `configWebUI`: with the UI Service on and an Ingress URL with a path, the UI must
/// know it is served under that path. Set only when `sparkConf` does not say otherwise.
pub(crate) fn proxy_conf(ctx: &Ctx<'_>, conf: &mut Conf) {
    let ui = &ctx.opts.ui;
    let Some(format) = ui.ingress_url_format.as_deref().filter(|f| !f.is_empty()) else {
        return;
    };
    if !ui.enable_ui_service {
        return;
    }
    let url = IngressUrl::parse(format, ctx);
    if url.path.is_empty() {
        return;
    }
    if !conf.contains_key(PROXY_BASE) {
        conf.insert(PROXY_BASE.into(), url.path.clone());
    }
    if !conf.contains_key(PROXY_REDIRECT_URI) {
        conf.insert(PROXY_REDIRECT_URI.into(), "/".into());
    }
}

/// The UI Service, its Ingress and the `driverIngressOptions` objects.
pub(crate) fn build(ctx: &Ctx<'_>, conf: &Conf) -> Result<WebUi, SubmissionError> {
    let mut ui = WebUi::default();
    let opts = &ctx.opts.ui;
    let spec_ui = ctx.app.spec.spark_ui_options.as_ref();
    if opts.enable_ui_service {
        let target = conf.ui_port(ctx)?;
        // kubeflow: without sparkUIOptions the Service port is the UI port; with them, their
        // servicePort or 4040.
        let port = match spec_ui {
            None => target,
            Some(o) => o.service_port.unwrap_or(DEFAULT_UI_PORT),
        };
        let port_name = spec_ui
            .and_then(|o| o.service_port_name.clone())
            .unwrap_or_else(|| DEFAULT_UI_PORT_NAME.to_string());
        let service = service(
            ctx,
            fit_name(ctx.name, "ui-svc"),
            (port_name, port, target),
            spec_ui.and_then(|o| o.service_type.clone()),
            spec_ui
                .map(|o| o.service_annotations.clone())
                .unwrap_or_default(),
            spec_ui.map(|o| &o.service_labels),
        );
        if let Some(format) = opts.ingress_url_format.as_deref().filter(|f| !f.is_empty()) {
            let url = IngressUrl::parse(format, ctx);
            let annotations = Some(ui_ingress_annotations(ctx))
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| opts.ingress_annotations.clone());
            let tls = Some(ui_ingress_tls(ctx))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| opts.ingress_tls.clone());
            ui.ingress = Some(ingress(
                ctx,
                fit_name(ctx.name, "ui-ingress"),
                &service,
                &url,
                annotations,
                tls,
            ));
            ui.ingress_address = url.address();
        }
        ui.service = Some(service);
    }
    for (i, option) in ctx.app.spec.driver_ingress_options.iter().enumerate() {
        let port = option.service_port;
        if !(1..=65535).contains(&port) {
            return Err(SubmissionError::Invalid {
                app: ctx.app_ref.clone(),
                field: format!("spec.driverIngressOptions[{i}].servicePort"),
                value: port.to_string(),
                reason: "is not a port number (1-65535)".into(),
            });
        }
        let port_name = Some(option.service_port_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("driver-ing-{port}"));
        let service = service(
            ctx,
            format!("{}-driver-{port}", ctx.name),
            (port_name, port, port),
            option.service_type.clone(),
            option.service_annotations.clone(),
            Some(&option.service_labels),
        );
        if let Some(format) = option
            .ingress_url_format
            .as_deref()
            .filter(|f| !f.is_empty())
        {
            let url = IngressUrl::parse(format, ctx);
            // kubeflow gives these the app's sparkUIOptions annotations and TLS; an option's
            // own ingressAnnotations / ingressTLS win here when set.
            let annotations = Some(option.ingress_annotations.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| ui_ingress_annotations(ctx));
            let tls = Some(option.ingress_tls.clone())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| ui_ingress_tls(ctx));
            ui.extra_ingresses.push(ingress(
                ctx,
                format!("{}-ing-{port}", ctx.name),
                &service,
                &url,
                annotations,
                tls,
            ));
        }
        ui.extra_services.push(service);
    }
    Ok(ui)
}

fn ui_ingress_annotations(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    ctx.app
        .spec
        .spark_ui_options
        .as_ref()
        .map(|o| o.ingress_annotations.clone())
        .unwrap_or_default()
}

fn ui_ingress_tls(ctx: &Ctx<'_>) -> Vec<IngressTLS> {
    ctx.app
        .spec
        .spark_ui_options
        .as_ref()
        .map(|o| o.ingress_tls.clone())
        .unwrap_or_default()
}

/// kubeflow's `createDriverIngressService`: selects the app's driver by app name and role.
/// The user's labels join the operator's (kubeflow replaces them, losing the submission id an
/// attempt's cleanup finds them by).
fn service(
    ctx: &Ctx<'_>,
    name: String,
    (port_name, port, target): (String, i32, i32),
    type_: Option<String>,
    annotations: BTreeMap<String, String>,
    user_labels: Option<&BTreeMap<String, String>>,
) -> Service {
    let mut labels = user_labels.cloned().unwrap_or_default();
    labels.extend(operator_labels(ctx));
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ctx.namespace.to_string()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some(port_name),
                port,
                target_port: Some(IntOrString::Int(target)),
                ..ServicePort::default()
            }]),
            selector: Some(BTreeMap::from([
                (APP_NAME_LABEL.to_string(), ctx.name.to_string()),
                (
                    SPARK_ROLE_LABEL.to_string(),
                    SparkRole::Driver.as_str().to_string(),
                ),
            ])),
            type_: Some(
                type_
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "ClusterIP".into()),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// kubeflow's `createDriverIngressV1`: one rule for the URL's host, to the Service's port; on a
/// sub-path, nginx capture groups and a rewrite to the UI's root.
fn ingress(
    ctx: &Ctx<'_>,
    name: String,
    service: &Service,
    url: &IngressUrl,
    mut annotations: BTreeMap<String, String>,
    tls: Vec<IngressTLS>,
) -> Ingress {
    let port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .map_or(0, |p| p.port);
    let path = if url.sub_path() {
        annotations.insert(REWRITE_TARGET.into(), "/$2".into());
        format!("{}(/|$)(.*)", url.path)
    } else {
        url.path.clone()
    };
    Ingress {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ctx.namespace.to_string()),
            labels: Some(operator_labels(ctx)),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: ctx
                .opts
                .ui
                .ingress_class_name
                .clone()
                .filter(|c| !c.is_empty()),
            rules: Some(vec![IngressRule {
                host: Some(url.host.clone()).filter(|h| !h.is_empty()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service.metadata.name.clone().unwrap_or_default(),
                                port: Some(ServiceBackendPort {
                                    number: Some(port),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                        path: Some(path).filter(|p| !p.is_empty()),
                        path_type: "ImplementationSpecific".into(),
                    }],
                }),
            }]),
            tls: (!tls.is_empty()).then_some(tls),
            default_backend: None,
        }),
        status: None,
    }
}
