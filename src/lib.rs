//! spark-webhook: a mutating admission webhook for Spark pods and a SparkApplication reconciler,
//! compatible with kubeflow spark-operator's `sparkoperator.k8s.io/v1beta2` API.

pub mod admin;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod config;
pub mod crd;
pub mod events;
pub mod failpoint;
pub mod health;
pub mod labels;
pub mod metrics;
pub mod mutate;
pub mod namespaces;
pub mod quantity;
pub mod reconciler;
pub mod registration;
pub mod render;
pub mod serve;
pub mod server;
pub mod shutdown;
pub mod submission;
pub mod telemetry;
pub mod validation;
pub mod webhook;
