//! ScheduledSparkApplications: each due slot of a schedule becomes one SparkApplication run,
//! which the reconciler then submits like any other. [`state`] decides (pure: slots, concurrency
//! policy, history, status); [`controller`] observes the schedules and their runs, carries the
//! decision out and writes the status. It runs while this replica leads, beside the
//! SparkApplication controllers (see `reconciler::runner`), over the same job namespaces.

pub mod controller;
pub mod state;
