//! The child objects of ClassRuntimes, behind one handle: apply what a render produced,
//! delete what it no longer produces, observe the workloads ([`observe`]), and delete
//! everything when the runtime goes. The handle owns the child caches (shared with
//! observation, so it needs no API calls for them) and the hashes of what was applied.
mod cached;
mod observe;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::{Client, Resource, ResourceExt};
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

    async fn delete(&self, ns: &str, kind: ChildKind, name: &str) -> Result<(), Error> {
        self.applied.forget(&ChildKey::new(kind, ns, name));
        match self
            .api(ns, kind)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every child of runtime `name` (asking the API, not the caches); returns how
    /// many are still there, being deleted.
    pub async fn delete_all(
        &self,
        ns: &str,
        name: &str,
        knative_installed: bool,
    ) -> Result<usize, Error> {
        let selector = selector(name);
        let kinds: Vec<ChildKind> = ChildKind::ALL
            .into_iter()
            .filter(|k| *k != ChildKind::KnativeService || knative_installed)
            .collect();
        for kind in &kinds {
            for child in self
                .api(ns, *kind)
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
            {
                if child.metadata.deletion_timestamp.is_none() {
                    self.delete(ns, *kind, &child.name_any()).await?;
                }
            }
        }
        let mut remaining = 0;
        for kind in &kinds {
            remaining += self
                .api(ns, *kind)
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .len();
        }
        Ok(remaining)
    }
}

/// The label selector of runtime `name`'s children.
fn selector(name: &str) -> String {
    format!("{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}")
}
