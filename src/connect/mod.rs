//! SparkConnects: each one's Spark Connect server pod (a driver running `SparkConnectServer`,
//! built by native submission, `submission::connect`), the Service clients connect through, and
//! the executors the server's driver starts from `spec.executor`. [`state`] decides (pure: the
//! server's fate, the status); [`controller`] observes the SparkConnects and their pods, carries
//! the decision out and writes the status. It runs while this replica leads, beside the
//! SparkApplication controllers (see `reconciler::runner`), over the same job namespaces.

pub mod controller;
pub mod state;
