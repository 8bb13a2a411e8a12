//! The Spark configuration of a submission ([`Conf`]): what ends up in `spark.properties`, and
//! the typed reads of it every builder needs (ports, prefixed entries). Below every other
//! submission module, which all read or write it (the assembly, `assemble`, fills it in).

use std::collections::BTreeMap;
use std::collections::btree_map;

use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;

/// A Spark configuration, sorted by key (the order `spark.properties` is written in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conf(BTreeMap<String, String>);

impl Conf {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.get(key)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key`, returning the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        self.0.insert(key, value)
    }

    /// Unsets `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> btree_map::Iter<'_, String, String> {
        self.0.iter()
    }

    /// The entries as a map, sorted by key.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The entries as a map, sorted by key.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }

    /// Entries under `prefix`, keyed by the rest of the key (empty rests are skipped), as Spark's
    /// `parsePrefixedKeyValuePairs`.
    pub fn prefixed(&self, prefix: &str) -> BTreeMap<&str, &str> {
        self.0
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(prefix)?;
                (!rest.is_empty()).then_some((rest, v.as_str()))
            })
            .collect()
    }

    /// The driver's RPC port (`spark.driver.port`, default 7078).
    pub(crate) fn driver_port(&self, ctx: &Ctx<'_>) -> Result<i32, SubmissionError> {
        self.port(ctx, DRIVER_PORT, DEFAULT_DRIVER_PORT)
    }

    /// The driver's block manager port (`spark.driver.blockManager.port`, else
    /// `spark.blockManager.port`, default 7079).
    pub(crate) fn block_manager_port(&self, ctx: &Ctx<'_>) -> Result<i32, SubmissionError> {
        if self.contains_key(DRIVER_BLOCK_MANAGER_PORT) {
            self.port(ctx, DRIVER_BLOCK_MANAGER_PORT, DEFAULT_BLOCK_MANAGER_PORT)
        } else {
            self.port(ctx, BLOCK_MANAGER_PORT, DEFAULT_BLOCK_MANAGER_PORT)
        }
    }

    /// The Spark UI port (`spark.ui.port`, default 4040).
    pub(crate) fn ui_port(&self, ctx: &Ctx<'_>) -> Result<i32, SubmissionError> {
        self.port(ctx, UI_PORT, DEFAULT_UI_PORT)
    }

    pub(crate) fn port(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        default: i32,
    ) -> Result<i32, SubmissionError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| invalid(ctx, key, v, "is not a port number (1-65535)")),
        }
    }
}

impl<'c> IntoIterator for &'c Conf {
    type Item = (&'c String, &'c String);
    type IntoIter = btree_map::Iter<'c, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Spark's defaults for what the pod is built from.
pub(crate) const DEFAULT_DRIVER_PORT: i32 = 7078;
pub(crate) const DEFAULT_BLOCK_MANAGER_PORT: i32 = 7079;
pub(crate) const DEFAULT_UI_PORT: i32 = 4040;

/// A memory overhead factor: a non-negative number.
pub(crate) fn parse_factor(ctx: &Ctx<'_>, key: &str, value: &str) -> Result<f64, SubmissionError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| invalid(ctx, key, value, "is not a non-negative number (e.g. 0.1)"))
}

/// An `Invalid` error for configuration key `key`, naming the SparkApplication field it comes
/// from when there is one.
pub(crate) fn invalid(ctx: &Ctx<'_>, key: &str, value: &str, reason: &str) -> SubmissionError {
    let field = match key {
        DRIVER_MEMORY => "spec.driver.memory".to_string(),
        DRIVER_MEMORY_OVERHEAD => "spec.driver.memoryOverhead".to_string(),
        DRIVER_CORES => "spec.driver.cores".to_string(),
        MEMORY_OVERHEAD_FACTOR => "spec.memoryOverheadFactor".to_string(),
        _ => format!("spec.sparkConf[{key:?}]"),
    };
    SubmissionError::Invalid {
        app: ctx.app_ref.clone(),
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}
