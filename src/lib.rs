//! spark-webhook: a mutating admission webhook for Spark pods and a SparkApplication reconciler,
//! compatible with kubeflow spark-operator's `sparkoperator.k8s.io/v1beta2` API.

pub mod crd;
