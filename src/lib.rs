//! spark-webhook: a mutating admission webhook for Spark pods and a SparkApplication reconciler,
//! compatible with kubeflow spark-operator's `sparkoperator.k8s.io/v1beta2` API.
//!
//! # Module map
//!
//! Bottom first: a module imports only from modules listed above it. `tests/architecture.rs`
//! holds the exact layers and checks that, that no two files import each other, and that this
//! map names every module once, in layer order. Each room's own `//!` doc says what its files do.
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | vocabulary | `labels` | every label and annotation key, and the pod's Spark role |
//! | | `quantity` | Kubernetes and Spark size notations, parsed strictly |
//! | | `cron` | schedules (cron lines, macros, `@every`, time zones) and Go durations, parsed strictly |
//! | | `failpoint` | crash points for the fault tests |
//! | | `telemetry` | logging set-up |
//! | API | `crd` | the SparkApplication and ScheduledSparkApplication v1beta2 and SparkConnect v1alpha1 types and their CRDs |
//! | | `scheduling` | gang scheduling: the batch scheduler chosen, its PodGroup and pod marks, ResourceQuota fit |
//! | rules | `validation` | what makes a SparkApplication invalid, field by field |
//! | | `mutate` | the pod mutations, one file per concern, shared by webhook and submission |
//! | | `submission` | native submission: the driver pod, Service and `spark.properties` ConfigMap, and kubeflow's objects around them (Prometheus ConfigMap, UI Service and Ingresses, driver PDB); a SparkConnect's server |
//! | cluster I/O | `health` | whether the apiserver answers; API retry and watch backoff |
//! | | `namespaces` | which namespaces are job namespaces |
//! | | `events` | Kubernetes Events, a repeat patched into a series |
//! | | `registration` | the webhook configurations, built and kept registered |
//! | | `cache` | one SparkApplication watch per scope, and the compact stand-ins cached |
//! | | `certs` | the serving certificate: issuing, files, TLS, the self-managed Secret |
//! | | `metrics` | Prometheus metrics of reviews and SparkApplications |
//! | the two jobs | `webhook` | the admission endpoints: pod mutation and app validation |
//! | | `reconciler` | the pure state machine and its I/O shell (context, submit, cleanup, loop) |
//! | | `schedules` | ScheduledSparkApplications: the pure slot decision and its I/O shell |
//! | | `connect` | SparkConnects: the pure server decision and its I/O shell |
//! | the process | `server` | the TLS accept loop with a bounded drain |
//! | | `admin` | `/healthz`, `/readyz`, `/metrics` |
//! | | `shutdown` | signals and the ordered, time-bounded shutdown |
//! | | `render` | `render`: a submission's objects, offline |
//! | | `cli` | the clap flags, and nothing else |
//! | | `config` | what the flags mean: typed configs |
//! | | `serve` | `serve`: the parts composed from their configs |
//!
//! Public are the modules the binary, the tests, the benches and the fuzz targets use.

mod admin;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod config;
pub mod connect;
pub mod crd;
pub mod cron;
pub mod events;
pub mod failpoint;
mod health;
pub mod labels;
pub mod metrics;
pub mod mutate;
pub mod namespaces;
mod quantity;
pub mod reconciler;
pub mod registration;
pub mod render;
pub mod schedules;
pub mod scheduling;
pub mod serve;
pub mod server;
mod shutdown;
pub mod submission;
pub mod telemetry;
mod validation;
pub mod webhook;
