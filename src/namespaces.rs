//! Which namespaces are Spark job namespaces: the one rule shared by the webhook and the
//! reconciler.
//!
//! Three forms, as kubeflow's `--namespaces` and `--namespace-selector`: every namespace; a fixed
//! list; namespaces whose labels match a selector (plus the listed ones, if any). The selected
//! names change while we run — a tenant namespace labelled after start is served without a
//! restart, one unlabelled stops being served — so they live in a shared set that the
//! namespace watch (`cache::namespaces`) keeps current; everything else only asks
//! [`JobNamespaces::contains`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

/// The job namespaces. Clones share the selected set.
#[derive(Clone, Debug, Default)]
pub struct JobNamespaces {
    /// The `--namespaces` list; None (and no selector) means every namespace.
    listed: Option<BTreeSet<String>>,
    /// The `--namespace-selector` (a label selector, as the apiserver parses it).
    selector: Option<String>,
    selected: Arc<Selected>,
}

/// The namespaces the selector matches now, kept by the namespace watch.
#[derive(Debug)]
pub struct Selected {
    names: RwLock<BTreeSet<String>>,
    synced: AtomicBool,
    /// Names that have just started to match (a controller reconciles their apps then).
    added: broadcast::Sender<String>,
}

impl Default for Selected {
    fn default() -> Self {
        Selected {
            names: RwLock::default(),
            synced: AtomicBool::new(false),
            added: broadcast::channel(256).0,
        }
    }
}

impl Selected {
    /// Replaces the whole set (after a (re)list), announcing the names new to it.
    pub fn replace(&self, names: BTreeSet<String>) {
        let added: Vec<String> = match self.names.write() {
            Ok(mut current) => {
                let added = names.difference(&current).cloned().collect();
                *current = names;
                added
            }
            Err(_) => Vec::new(),
        };
        self.synced.store(true, Ordering::Release);
        for name in added {
            let _ = self.added.send(name);
        }
    }

    /// A namespace that matches now; announced (and true) if it did not before.
    pub fn insert(&self, name: &str) -> bool {
        let new = self
            .names
            .write()
            .map(|mut n| n.insert(name.to_string()))
            .unwrap_or(false);
        if new {
            let _ = self.added.send(name.to_string());
        }
        new
    }

    /// A namespace that no longer matches (unlabelled or deleted).
    pub fn remove(&self, name: &str) {
        if let Ok(mut n) = self.names.write() {
            n.remove(name);
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.names.read().map(|n| n.contains(name)).unwrap_or(false)
    }
}

impl JobNamespaces {
    /// From the `--namespaces` flag: empty (or only blanks) means all namespaces.
    pub fn from_list<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::from_flags(names, None)
    }

    /// From `--namespaces` and `--namespace-selector`, with kubeflow's rule: neither given means
    /// every namespace; otherwise a namespace is served when listed OR matched.
    pub fn from_flags<I, S>(names: I, selector: Option<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set: BTreeSet<String> = names
            .into_iter()
            .map(|s| s.as_ref().trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let selector = selector
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        JobNamespaces {
            listed: (!set.is_empty() || selector.is_some()).then_some(set),
            selector,
            selected: Arc::default(),
        }
    }

    pub fn all() -> Self {
        Self::default()
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match &self.listed {
            None => true,
            Some(listed) => listed.contains(namespace) || self.selected.contains(namespace),
        }
    }

    /// The namespaces to watch one by one, or None to watch every namespace (all of them, or
    /// a selector whose matches change while we run).
    pub fn watch_list(&self) -> Option<&BTreeSet<String>> {
        match self.selector {
            Some(_) => None,
            None => self.listed.as_ref(),
        }
    }

    /// What each watch or controller covers: one listed namespace each, or one scope (`None`)
    /// over every namespace.
    pub fn scopes(&self) -> Vec<Option<String>> {
        match self.watch_list() {
            Some(list) => list.iter().cloned().map(Some).collect(),
            None => vec![None],
        }
    }

    /// The label selector, if namespaces are selected by their labels.
    pub fn selector(&self) -> Option<&str> {
        self.selector.as_deref()
    }

    /// The selected set, for the namespace watch that keeps it.
    pub fn selected(&self) -> &Selected {
        &self.selected
    }

    /// True once the selected set holds the first list (at once without a selector): until
    /// then a pod of a selected namespace would look like no job namespace's.
    pub fn is_synced(&self) -> bool {
        self.selector.is_none() || self.selected.synced.load(Ordering::Acquire)
    }

    /// Names as they start to match the selector; `None` when some were missed (a slow
    /// reader), so the reader looks at every served namespace instead. Ends at shutdown of the
    /// namespace watch.
    pub fn added(&self) -> impl futures::Stream<Item = Option<String>> + Send + 'static {
        futures::stream::unfold(self.selected.added.subscribe(), |mut rx| async move {
            match rx.recv().await {
                Ok(name) => Some((Some(name), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((None, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }
}

/// Runs one controller per scope of `namespaces` (see [`JobNamespaces::scopes`]) until all of
/// them end: the SparkConnect and schedule controllers' fan-out. (The SparkApplication
/// controllers have their own, over the shared app cache's scopes, restarting one that panics.)
pub async fn run_per_scope<F, Fut>(namespaces: &JobNamespaces, controller: F)
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = ()>,
{
    futures::future::join_all(namespaces.scopes().into_iter().map(controller)).await;
}

impl PartialEq for JobNamespaces {
    /// The configuration, not what the selector matches at the moment.
    fn eq(&self, other: &Self) -> bool {
        self.listed == other.listed && self.selector == other.selector
    }
}

impl Eq for JobNamespaces {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_all() {
        assert!(JobNamespaces::from_list(Vec::<String>::new()).contains("x"));
        assert!(JobNamespaces::from_list([" "]).contains("x"));
        let some = JobNamespaces::from_list(["a", " b "]);
        assert!(some.contains("a") && some.contains("b") && !some.contains("c"));
        assert_eq!(some.watch_list().map(|l| l.len()), Some(2));
    }

    /// kubeflow's rule: a selector alone serves only what it matches, and with a list either
    /// one admits a namespace; the matches follow the namespace watch.
    #[test]
    fn a_selector_serves_its_matches_as_they_change_plus_the_list() {
        let only = JobNamespaces::from_flags(Vec::<String>::new(), Some("team=spark".into()));
        assert!(!only.contains("a"), "nothing matches before the first list");
        assert!(!only.is_synced());
        assert_eq!(
            only.watch_list(),
            None,
            "matches come and go: watch everything"
        );
        use futures::{FutureExt, StreamExt};
        let mut added = std::pin::pin!(only.added());
        let mut next = || added.next().now_or_never().flatten().flatten();
        only.selected().replace(BTreeSet::from(["a".to_string()]));
        assert!(only.is_synced() && only.contains("a") && !only.contains("b"));
        assert_eq!(next().as_deref(), Some("a"));

        let clone = only.clone();
        assert!(only.selected().insert("b"));
        assert!(clone.contains("b"), "clones share the selected set");
        assert_eq!(next().as_deref(), Some("b"));
        assert!(!only.selected().insert("b"));
        assert_eq!(next(), None, "announced once");
        only.selected().remove("a");
        assert!(!clone.contains("a"));

        let both = JobNamespaces::from_flags(["fixed"], Some("team=spark".into()));
        assert!(both.contains("fixed") && !both.contains("other"));
        both.selected()
            .replace(BTreeSet::from(["other".to_string()]));
        assert!(both.contains("fixed") && both.contains("other"));
        assert!(
            JobNamespaces::from_flags(Vec::<String>::new(), Some(" ".into())).contains("x"),
            "a blank selector is no selector"
        );
    }
}
