//! The namespaces `--namespace-selector` matches, kept current by a watch of their metadata
//! (the apiserver applies the selector, so a namespace that stops matching arrives as a
//! deletion). Only names are kept: a cluster has few namespaces, but nothing else is read.

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::namespaces::JobNamespaces;

/// A selector the apiserver refuses, with its words.
#[derive(Debug, thiserror::Error)]
#[error("--namespace-selector {selector:?}: {message}")]
pub struct InvalidSelector {
    pub selector: String,
    pub message: String,
}

/// Checks the selector with the apiserver (the parser every other client's selector goes
/// through, so the same syntax as kubectl's `-l`): a refused one stops the start instead of
/// a watch retrying it forever. Other errors (an apiserver not up yet) are left to the watch.
pub async fn check_selector(
    client: &Client,
    namespaces: &JobNamespaces,
) -> Result<(), InvalidSelector> {
    let Some(selector) = namespaces.selector() else {
        return Ok(());
    };
    let api: Api<Namespace> = Api::all(client.clone());
    match api
        .list_metadata(&ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 400 => Err(InvalidSelector {
            selector: selector.to_string(),
            message: e.message,
        }),
        _ => Ok(()),
    }
}

/// Keeps `namespaces`' selected set until `shutdown` (nothing to do without a selector).
/// The watch retries with backoff forever, keeping the last set meanwhile.
pub fn watch_selected(client: &Client, namespaces: &JobNamespaces, shutdown: CancellationToken) {
    let Some(selector) = namespaces.selector().map(str::to_string) else {
        return;
    };
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let stream = watcher(api, watcher::Config::default().labels(&selector))
        .backoff(crate::health::WatchBackoff::default());
    let namespaces = namespaces.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        // The names of a (re)list in progress, swapped in whole once complete.
        let mut listing = BTreeSet::new();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = stream.next() => match next {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        tracing::warn!(%selector, error = %e, "namespace watch failed; retrying");
                        continue;
                    }
                    None => break,
                },
            };
            let selected = namespaces.selected();
            match event {
                watcher::Event::Init => listing.clear(),
                watcher::Event::InitApply(ns) => {
                    listing.insert(ns.name_any());
                }
                watcher::Event::InitDone => {
                    tracing::info!(%selector, namespaces = ?listing, "job namespaces selected");
                    selected.replace(std::mem::take(&mut listing));
                }
                watcher::Event::Apply(ns) => {
                    if selected.insert(&ns.name_any()) {
                        tracing::info!(namespace = %ns.name_any(), "namespace matches --namespace-selector: serving it");
                    }
                }
                watcher::Event::Delete(ns) => {
                    tracing::info!(namespace = %ns.name_any(), "namespace no longer matches --namespace-selector: no longer serving it");
                    selected.remove(&ns.name_any());
                }
            }
        }
    });
}
