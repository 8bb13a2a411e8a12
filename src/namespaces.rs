//! Which namespaces are Spark job namespaces: the one rule shared by the webhook and the
//! reconciler.

use std::collections::BTreeSet;

/// The job namespaces: every namespace, or a fixed list (`--namespaces`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobNamespaces(Option<BTreeSet<String>>);

impl JobNamespaces {
    /// From the `--namespaces` flag: empty (or only blanks) means all namespaces.
    pub fn from_list<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set: BTreeSet<String> = names
            .into_iter()
            .map(|s| s.as_ref().trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        JobNamespaces((!set.is_empty()).then_some(set))
    }

    pub fn all() -> Self {
        JobNamespaces(None)
    }

    pub fn contains(&self, namespace: &str) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(namespace))
    }

    /// The explicit list, or None for all namespaces.
    pub fn list(&self) -> Option<&BTreeSet<String>> {
        self.0.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_all() {
        assert!(JobNamespaces::from_list(Vec::<String>::new()).contains("x"));
        assert!(JobNamespaces::from_list([" "]).contains("x"));
        let some = JobNamespaces::from_list(["a", " b "]);
        assert!(some.contains("a") && some.contains("b") && !some.contains("c"));
    }
}
