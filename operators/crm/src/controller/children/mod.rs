//! The child objects of ClassRuntimes, behind one handle: apply what a render produced,
//! delete what it no longer produces, observe the workloads ([`observe`]), and delete
//! everything when the runtime goes. The handle owns the child caches (shared with
//! observation, so it needs no API calls for them) and the hashes of what was applied.
mod cached;
mod observe;

use std::collections::BTreeSet;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::{Client, Resource, ResourceExt};
use oaas_crds::class_runtime::ResourceRef;
use tracing::{info, warn};

pub use cached::ChildStores;

use super::{Error, FIELD_MANAGER};
use crate::applied::{self, AppliedCache, ChildKey};
use crate::render::{
    ChildKind, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY, RenderContext, Rendered,
};

/// Every call that reads or changes child objects.
pub struct Children {
    client: Client,
    stores: ChildStores,
    applied: AppliedCache,
}

impl Children {
    pub fn new(client: Client, stores: ChildStores) -> Self {
        Self {
            client,
            stores,
            applied: AppliedCache::default(),
        }
    }

    fn api(&self, ns: &str, kind: ChildKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &kind.api_resource())
    }

    /// Applies every child; returns the first failure as text for status instead of failing
    /// the reconcile, so one bad child is reported while the others still converge.
    pub async fn apply(&self, ns: &str, rendered: &Rendered) -> Option<String> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut first_error = None;
        for child in &rendered.children {
            let key = ChildKey::new(child.kind, ns, &child.name);
            let hash = applied::hash_of(child);
            let live_version = self.live_version(child.kind, ns, &child.name);
            if self.applied.is_current(&key, hash, live_version.as_deref()) {
                continue;
            }
            match self
                .api(ns, child.kind)
                .patch(&child.name, &params, &Patch::Apply(&child.object))
                .await
            {
                Ok(applied) => self.applied.record(
                    key,
                    hash,
                    applied::version_of(&applied.metadata).as_deref(),
                ),
                Err(e) => {
                    warn!(child = %child.name, kind = ?child.kind, error = %e, "apply failed");
                    first_error
                        .get_or_insert_with(|| format!("{:?} {}: {e}", child.kind, child.name));
                }
            }
        }
        first_error
    }

    /// The live child's version from the caches; Knative Services have no cache and are
    /// always applied.
    fn live_version(&self, kind: ChildKind, ns: &str, name: &str) -> Option<String> {
        fn from<K: Resource<DynamicType = ()> + Clone>(
            store: &Store<K>,
            ns: &str,
            name: &str,
        ) -> Option<String> {
            let object = store.get(&reflector::ObjectRef::new(name).within(ns))?;
            applied::version_of(object.meta())
        }
        match kind {
            ChildKind::Deployment => from(&self.stores.deployments, ns, name),
            ChildKind::Service => from(&self.stores.services, ns, name),
            ChildKind::HorizontalPodAutoscaler => from(&self.stores.autoscalers, ns, name),
            ChildKind::KnativeService => None,
        }
    }

    /// Deletes children of runtime `name` that the current render did not produce.
    pub async fn delete_orphans(
        &self,
        ns: &str,
        name: &str,
        rendered: &Rendered,
        render_context: &RenderContext<'_>,
    ) -> Result<(), Error> {
        for kind in ChildKind::ALL {
            if kind == ChildKind::KnativeService && !render_context.knative_installed {
                continue;
            }
            for existing in self.existing(ns, name, kind).await? {
                let wanted = rendered
                    .children
                    .iter()
                    .any(|c| c.kind == kind && c.name == existing);
                if !wanted {
                    info!(child = %existing, ?kind, "deleting orphaned child");
                    self.delete(ns, kind, &existing).await?;
                }
            }
        }
        Ok(())
    }

    /// Names of the children of a kind that belong to runtime `name`, from the caches (or
    /// the API for Knative Services, which are rare enough not to need a cache).
    async fn existing(&self, ns: &str, name: &str, kind: ChildKind) -> Result<Vec<String>, Error> {
        fn owned<K: Resource<DynamicType = ()> + Clone>(
            store: &Store<K>,
            ns: &str,
            name: &str,
        ) -> Vec<String> {
            store
                .state_filter(|o| cached::owned_by(o.meta(), ns, name))
                .iter()
                .filter_map(|o| o.meta().name.clone())
                .collect()
        }
        Ok(match kind {
            ChildKind::Deployment => owned(&self.stores.deployments, ns, name),
            ChildKind::Service => owned(&self.stores.services, ns, name),
            ChildKind::HorizontalPodAutoscaler => owned(&self.stores.autoscalers, ns, name),
            ChildKind::KnativeService => self
                .api(ns, kind)
                .list(&ListParams::default().labels(&selector(name)))
                .await?
                .items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect(),
        })
    }

    /// Deletes a child; returns whether it is still there, held by a finalizer.
    async fn delete(&self, ns: &str, kind: ChildKind, name: &str) -> Result<bool, Error> {
        self.applied.forget(&ChildKey::new(kind, ns, name));
        match self
            .api(ns, kind)
            .delete(name, &DeleteParams::background())
            .await
        {
            // Some kinds answer with the deleted object itself: only finalizers keep it.
            Ok(answer) => Ok(answer.left().is_some_and(|o| !o.finalizers().is_empty())),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every child of runtime `name` that the caches hold or that its status
    /// `recorded` (a child applied a moment ago may not be cached yet); returns how many are
    /// still there, held by finalizers. By name, not by a label-selected list (but for Knative
    /// Services, which have no cache): such a list makes the API server go through every
    /// object of the kind in the namespace, once per runtime deleted. A child that both miss
    /// still goes with the runtime, through its owner reference.
    pub async fn delete_all(
        &self,
        ns: &str,
        name: &str,
        recorded: &[ResourceRef],
        knative_installed: bool,
    ) -> Result<usize, Error> {
        let mut remaining = 0;
        for kind in ChildKind::ALL {
            if kind == ChildKind::KnativeService && !knative_installed {
                continue;
            }
            let cached = self.existing(ns, name, kind).await?;
            for child in to_delete(kind, cached, recorded) {
                remaining += usize::from(self.delete(ns, kind, &child).await?);
            }
        }
        Ok(remaining)
    }
}

/// The names of a runtime's children of `kind` to delete: those found, and those its status
/// records, once each.
fn to_delete(kind: ChildKind, found: Vec<String>, recorded: &[ResourceRef]) -> BTreeSet<String> {
    let recorded = recorded
        .iter()
        .filter(|r| ChildKind::of(&r.api_version, &r.kind) == Some(kind))
        .map(|r| r.name.clone());
    found.into_iter().chain(recorded).collect()
}

/// The label selector of runtime `name`'s children.
fn selector(name: &str) -> String {
    format!("{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(api_version: &str, kind: &str, name: &str) -> ResourceRef {
        ResourceRef {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_child_recorded_but_not_yet_cached_is_deleted_too_and_each_once() {
        let status = [
            recorded("apps/v1", "Deployment", "cart-f"),
            recorded("apps/v1", "Deployment", "cart-g"),
            recorded("v1", "Service", "cart-f"),
            recorded("serving.knative.dev/v1", "Service", "cart-k"),
        ];
        let found = vec!["cart-f".to_string(), "cart-old".to_string()];
        let deployments = to_delete(ChildKind::Deployment, found, &status);
        assert_eq!(
            deployments.into_iter().collect::<Vec<_>>(),
            ["cart-f", "cart-g", "cart-old"]
        );
        // Services and Knative Services share a kind name; the API version tells them apart.
        let services = to_delete(ChildKind::Service, Vec::new(), &status);
        assert_eq!(services.into_iter().collect::<Vec<_>>(), ["cart-f"]);
        let knative = to_delete(ChildKind::KnativeService, Vec::new(), &status);
        assert_eq!(knative.into_iter().collect::<Vec<_>>(), ["cart-k"]);
        assert!(to_delete(ChildKind::HorizontalPodAutoscaler, Vec::new(), &status).is_empty());
    }
}
