//! The informer cache of ClassRuntimes and the feed of their changes: what the status calls
//! answer from, what `WatchDeploymentStatus` streams (a snapshot, then each change), and
//! what the controller runs on (one copy of each runtime in memory, not one per user).
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use oaas_core::tenancy::REPLACES_ANNOTATION;
use oaas_crds::ClassRuntime;
use oaas_crds::convert::{deployment_status_to_proto, unit_with_revision};
use oaas_operator_common::Synced;
use oaas_proto::deployment as pb;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;
use tracing::warn;

/// The informer cache of ClassRuntimes and a feed of their changes for watchers.
#[derive(Clone)]
pub struct Runtimes {
    pub store: Store<ClassRuntime>,
    /// The store is filled: the watch's first list is in (see `Synced`).
    pub synced: Synced,
    changes: broadcast::Sender<pb::DeploymentStatusEvent>,
    /// What the store changed by, once it holds the change: what wakes the controller.
    applied: broadcast::Sender<Applied>,
}

/// A change the store took in.
#[derive(Clone, Debug)]
enum Applied {
    /// One runtime changed.
    One(ObjectRef<ClassRuntime>),
    /// The watch listed everything again: the store holds the new list only from its end
    /// (`InitDone`), and anything in it may have changed.
    All,
}

impl Runtimes {
    /// Starts watching the ClassRuntimes of the CRM `crm` in every namespace; the returned
    /// future drives the watch.
    pub fn start(client: &Client, crm: &str) -> (Self, impl Future<Output = ()> + use<>) {
        let (store, writer) = reflector::store();
        let (changes, _) = broadcast::channel(4096);
        let sender = changes.clone();
        let (applied, _) = broadcast::channel(4096);
        let applied_sender = applied.clone();
        let owned = watcher::Config::default().labels(&crate::namespaces::selector(crm));
        let stream = watcher(Api::<ClassRuntime>::all(client.clone()), owned)
            .default_backoff()
            .modify(trim)
            .reflect(writer);
        let store_for_events = store.clone();
        let (filled, mut filled_flag) = tokio::sync::watch::channel(false);
        let driver = async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                // While a deployment moves, its new runtime stands for it in every event: the
                // hub must not see the old one's status as the deployment's.
                let current = |r: &ClassRuntime| current(&store_for_events, &r.spec.deployment_id);
                let upserted = |r: ClassRuntime| {
                    let runtime = current(&r).map_or(r, |c| (*c).clone());
                    (pb::deployment_status_event::Kind::Upserted, runtime)
                };
                let (kind, runtime) = match event {
                    Ok(watcher::Event::Apply(r)) => {
                        // No receiver is fine: the controller runs only while it leads.
                        let _ = applied_sender.send(Applied::One(ObjectRef::from_obj(&r)));
                        upserted(r)
                    }
                    // The controller hears of a re-list at its end, with `Applied::All`.
                    Ok(watcher::Event::InitApply(r)) => upserted(r),
                    Ok(watcher::Event::Delete(r)) => match current(&r) {
                        Some(c) => (pb::deployment_status_event::Kind::Upserted, (*c).clone()),
                        None => (pb::deployment_status_event::Kind::Deleted, r),
                    },
                    Ok(watcher::Event::InitDone) => {
                        let _ = filled.send(true);
                        let _ = applied_sender.send(Applied::All);
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        warn!(error = %e, "ClassRuntime watch failed; retrying");
                        continue;
                    }
                };
                // No receiver is fine: nobody is watching right now.
                let _ = sender.send(event_of(kind, &runtime));
            }
        };
        // Filled when the first list is in, as the driver sees it: the store's own
        // `wait_until_ready` wakes one waiter only, and the controller waits on it too.
        let synced = Synced::after(async move { filled_flag.wait_for(|f| *f).await.is_ok() });
        (
            Self {
                store,
                synced,
                changes,
                applied,
            },
            driver,
        )
    }

    /// What the controller runs on, sharing this cache rather than keeping a second copy of
    /// every runtime: each cached runtime once the cache is filled, then each one the watch
    /// applies. A receiver that falls behind the feed gets every runtime again.
    pub fn applied(
        &self,
    ) -> impl Stream<Item = Result<ClassRuntime, watcher::Error>> + Send + 'static {
        let receiver = self.applied.subscribe();
        let (store, synced) = (self.store.clone(), self.synced.clone());
        let state = (receiver, Vec::<Arc<ClassRuntime>>::new(), false);
        futures::stream::unfold(state, move |(mut receiver, mut due, mut filled)| {
            let (store, synced) = (store.clone(), synced.clone());
            async move {
                loop {
                    if let Some(runtime) = due.pop() {
                        return Some((Ok((*runtime).clone()), (receiver, due, filled)));
                    }
                    if !filled {
                        synced.wait().await;
                        (due, filled) = (store.state(), true);
                        continue;
                    }
                    match receiver.recv().await {
                        Ok(Applied::One(key)) => due.extend(store.get(&key)),
                        Ok(Applied::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            due = store.state()
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
    }

    /// The runtime of a deployment id (see [`current`]).
    pub(super) fn find(&self, deployment_id: &str) -> Option<Arc<ClassRuntime>> {
        current(&self.store, deployment_id)
    }

    pub(super) fn find_all(&self, deployment_id: &str) -> Vec<Arc<ClassRuntime>> {
        find_all(&self.store, deployment_id)
    }
}

/// The runtime that stands for a deployment id: its only one, or while the deployment moves,
/// the new runtime (the one naming what it replaces).
fn current(store: &Store<ClassRuntime>, deployment_id: &str) -> Option<Arc<ClassRuntime>> {
    let mut all = find_all(store, deployment_id);
    all.sort_by_key(|r| r.annotations().contains_key(REPLACES_ANNOTATION));
    all.pop()
}

fn find_all(store: &Store<ClassRuntime>, deployment_id: &str) -> Vec<Arc<ClassRuntime>> {
    store.state_filter(|r| r.spec.deployment_id == deployment_id)
}

pub(super) fn status_of(runtime: &ClassRuntime) -> pb::DeploymentStatus {
    let status = runtime.status.clone().unwrap_or_default();
    let mut proto =
        deployment_status_to_proto(&runtime.spec.deployment_id, &status, runtime.spec.revision);
    proto.spec_hash = unit_of(runtime).revision;
    proto.updated_at = runtime
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().map(|c| &c.last_transition_time).max())
        .map(oaas_crds::convert::time_to_proto);
    if runtime.metadata.deletion_timestamp.is_some() {
        proto.phase = pb::Phase::Deleting as i32;
    } else if status.observed_generation != runtime.metadata.generation {
        // The status describes an older spec: the new one is still being applied.
        proto.phase = pb::Phase::Applying as i32;
    }
    proto
}

fn event_of(
    kind: pb::deployment_status_event::Kind,
    runtime: &ClassRuntime,
) -> pb::DeploymentStatusEvent {
    pb::DeploymentStatusEvent {
        kind: kind as i32,
        status: Some(status_of(runtime)),
    }
}

pub(super) fn info_of(runtime: &ClassRuntime) -> pb::ClassRuntimeInfo {
    pb::ClassRuntimeInfo {
        name: runtime.name_any(),
        namespace: runtime.namespace().unwrap_or_default(),
        unit: Some(pb::DeploymentUnit {
            revision: runtime.spec.revision.unwrap_or_default(),
            ..unit_of(runtime)
        }),
        status: Some(status_of(runtime)),
    }
}

/// The unit the runtime holds, its revision recomputed from its spec as the hub computes it.
fn unit_of(runtime: &ClassRuntime) -> pb::DeploymentUnit {
    unit_with_revision(&runtime.spec, &runtime.namespace().unwrap_or_default())
}

/// Sends a snapshot of every matching runtime, then each change, until the client leaves.
/// A watcher that falls behind gets a fresh snapshot instead of the events it missed.
pub(super) async fn stream_changes(
    runtimes: Runtimes,
    ids: Vec<String>,
    tx: mpsc::Sender<Result<pb::DeploymentStatusEvent, Status>>,
) {
    use pb::deployment_status_event::Kind;
    let wanted = |id: &str| ids.is_empty() || ids.iter().any(|i| i == id);
    let mut changes = runtimes.changes.subscribe();
    // A CRM that just started serves before its cache is filled: a snapshot taken then
    // would be empty, and the hub would forget runtimes that do not change again.
    runtimes.synced.wait().await;
    loop {
        let all = runtimes.store.state();
        // While a deployment moves, only its new runtime (the one naming what it replaces)
        // stands for it; found in one pass, not a search of the store per runtime.
        let moving: HashSet<&str> = all
            .iter()
            .filter(|r| r.annotations().contains_key(REPLACES_ANNOTATION))
            .map(|r| r.spec.deployment_id.as_str())
            .collect();
        for runtime in &all {
            let id = &runtime.spec.deployment_id;
            let stands_for_it = !moving.contains(id.as_str())
                || runtime.annotations().contains_key(REPLACES_ANNOTATION);
            if wanted(id)
                && stands_for_it
                && tx
                    .send(Ok(event_of(Kind::Upserted, runtime)))
                    .await
                    .is_err()
            {
                return;
            }
        }
        let complete = pb::DeploymentStatusEvent {
            kind: Kind::SnapshotComplete as i32,
            status: None,
        };
        if tx.send(Ok(complete)).await.is_err() {
            return;
        }
        loop {
            match changes.recv().await {
                Ok(event) => {
                    let id = event
                        .status
                        .as_ref()
                        .map(|s| s.deployment_id.as_str())
                        .unwrap_or_default();
                    if wanted(id) && tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// What the cache drops of each runtime before holding it: managed fields (most of an
/// object) and labels (a map costs a B-tree node per runtime, and every runtime here
/// carries this CRM's label, which the watch selects by; the others are only for selecting
/// on the API server). Nothing reads either from the cache.
fn trim(runtime: &mut ClassRuntime) {
    runtime.metadata.managed_fields = None;
    runtime.metadata.labels = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_drops_labels_and_managed_fields_but_keeps_what_is_read() {
        let mut runtime: ClassRuntime = serde_json::from_value(serde_json::json!({
            "apiVersion": "oaas.io/v1alpha1", "kind": "ClassRuntime",
            "metadata": {
                "name": "r", "namespace": "ns", "uid": "u-1", "resourceVersion": "3",
                "labels": {"oaas.io/crm": "crm", "oaas.io/hub-namespace": "team"},
                "annotations": {REPLACES_ANNOTATION: "ns/old"},
                "managedFields": [{"manager": "oaas-crm", "operation": "Apply"}],
            },
            "spec": {"deploymentId": "team/pkg/C", "packageName": "pkg", "classKey": "C"},
        }))
        .unwrap();
        trim(&mut runtime);
        assert!(runtime.metadata.labels.is_none() && runtime.metadata.managed_fields.is_none());
        assert_eq!(runtime.annotations()[REPLACES_ANNOTATION], "ns/old");
        assert_eq!(runtime.uid().as_deref(), Some("u-1"));
        assert_eq!(runtime.spec.deployment_id, "team/pkg/C");
    }
}
