//! The spoke namespaces the CRM deploys into. Each serves one hub namespace of one hub (its
//! tenant): the CRM creates a missing one and labels it as its own, uses an existing one only
//! when it carries the CRM's label (an administrator's hand-over), refuses one that serves
//! another tenant, and releases it once it holds no ClassRuntime any more.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use oaas_core::tenancy::{CREATED_BY_CRM_ANNOTATION, CRM_LABEL, SERVES_ANNOTATION};
use oaas_core::wire::{CLASS_RUNTIME_CLEANUP_FINALIZER, CRM_FIELD_MANAGER};
use oaas_crds::ClassRuntime;
use serde_json::json;
use tracing::info;

/// Selects what the CRM `crm` made: several CRMs may share a cluster.
pub fn selector(crm: &str) -> String {
    format!("{CRM_LABEL}={crm}")
}

/// What to do with a namespace before deploying into it for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Ours and serving the tenant already.
    Ready,
    /// Missing: create it, ours and serving the tenant.
    Create,
    /// Ours (handed over or released) and serving nobody: mark it as the tenant's.
    Take,
    /// Not usable; the message says why and what to do.
    Refuse(String),
    /// Being deleted: retry once it is gone.
    Terminating,
}

/// The pure decision over the namespace as it is.
pub fn claim(namespace: Option<&Namespace>, name: &str, crm: &str, tenant: &str) -> Claim {
    let Some(namespace) = namespace else {
        return Claim::Create;
    };
    if namespace.metadata.deletion_timestamp.is_some() {
        return Claim::Terminating;
    }
    // The CRM's own namespace is its from the start; any other is handed over by the label.
    if name != crm && namespace.labels().get(CRM_LABEL).map(String::as_str) != Some(crm) {
        return Claim::Refuse(format!(
            "namespace {name} exists and does not belong to this class runtime manager; \
             hand it over with `kubectl label namespace {name} {CRM_LABEL}={crm}`, or map the \
             hub namespace elsewhere (OCluster spec.namespacePrefix)"
        ));
    }
    match namespace.annotations().get(SERVES_ANNOTATION) {
        Some(served) if served == tenant => Claim::Ready,
        Some(served) if !served.is_empty() => Claim::Refuse(format!(
            "namespace {name} already serves hub namespace {served}, so it cannot also serve \
             {tenant}; give one of the OClusters pointing here another spec.namespacePrefix"
        )),
        _ => Claim::Take,
    }
}

#[derive(Clone)]
pub struct Namespaces {
    client: Client,
    /// This CRM's identity in `oaas.io/crm` labels: the namespace it runs in.
    crm: String,
    /// By namespace, the runtimes being deleted whose cleanup has been through
    /// [`Namespaces::release`] (the cache may still show them a moment longer).
    released: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl Namespaces {
    pub fn new(client: Client, crm: String) -> Self {
        Self {
            client,
            crm,
            released: Arc::default(),
        }
    }

    pub fn crm(&self) -> &str {
        &self.crm
    }

    fn api(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// Sets (or clears) whom the namespace serves, only if it is still at `version`: two
    /// tenants taking one namespace at once cannot both win.
    async fn annotate(
        &self,
        name: &str,
        version: Option<String>,
        serves: Option<&str>,
    ) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {
            "resourceVersion": version,
            "annotations": {SERVES_ANNOTATION: serves},
        }});
        let params = PatchParams {
            field_manager: Some(CRM_FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api()
            .patch(name, &params, &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Makes `name` ready to hold `tenant`'s runtimes; `Err` says why it cannot (and nothing
    /// was changed).
    pub async fn claim(&self, name: &str, tenant: &str) -> Result<(), ClaimError> {
        let existing = self.api().get_opt(name).await?;
        match claim(existing.as_ref(), name, &self.crm, tenant) {
            Claim::Ready => Ok(()),
            Claim::Create => {
                let namespace: Namespace = serde_json::from_value(json!({
                    "metadata": {
                        "name": name,
                        "labels": {
                            CRM_LABEL: self.crm,
                            // As the namespace the spoke manifests make for workloads.
                            "pod-security.kubernetes.io/enforce": "baseline",
                        },
                        "annotations": {SERVES_ANNOTATION: tenant, CREATED_BY_CRM_ANNOTATION: "true"},
                    }
                }))
                .expect("a valid Namespace");
                let params = PostParams {
                    field_manager: Some(CRM_FIELD_MANAGER.into()),
                    ..Default::default()
                };
                match self.api().create(&params, &namespace).await {
                    Ok(_) => {
                        info!(namespace = name, tenant, "namespace created");
                        Ok(())
                    }
                    // Another Deploy created it a moment ago: decide again on what is there.
                    Err(kube::Error::Api(e)) if e.code == 409 => Err(ClaimError::Raced),
                    Err(e) => Err(e.into()),
                }
            }
            Claim::Take => {
                let version = existing.and_then(|n| n.metadata.resource_version);
                match self.annotate(name, version, Some(tenant)).await {
                    Ok(()) => {}
                    // Someone else changed it since it was read: decide again.
                    Err(kube::Error::Api(e)) if e.code == 409 => return Err(ClaimError::Raced),
                    Err(e) => return Err(e.into()),
                }
                info!(namespace = name, tenant, "namespace taken");
                Ok(())
            }
            Claim::Refuse(message) => Err(ClaimError::Refused(message)),
            Claim::Terminating => Err(ClaimError::Terminating(name.to_string())),
        }
    }

    /// Once `name` holds no ClassRuntime but `leaving` (and ones being deleted, which may be
    /// leaving at the same moment): deletes it when the CRM created it, otherwise lets it
    /// serve another tenant later. The namespace's other contents do not keep it.
    ///
    /// `cached` (this CRM's runtimes as its watch holds them) answers without a call while
    /// another runtime stays, or while others are being deleted and have yet to come here (the
    /// last of them releases it): a call per runtime that goes made deleting `n` runtimes cost
    /// `n` lists of up to `n` objects. Only "none is left" is confirmed by a list, since the
    /// cache may not hold a runtime created a moment ago.
    pub async fn release(
        &self,
        name: &str,
        leaving: &str,
        cached: &Store<ClassRuntime>,
    ) -> Result<(), kube::Error> {
        {
            let mut released = self.released.lock().expect("not poisoned");
            let passed = released.entry(name.to_string()).or_default();
            let state = cached.state();
            let others = others(state.iter().map(|r| &r.metadata), name, leaving, passed);
            if others == Others::Stay {
                // Those that went are out of the cache by now, or soon: keep the rest.
                passed
                    .retain(|runtime| cached.get(&ObjectRef::new(runtime).within(name)).is_some());
            }
            passed.insert(leaving.to_string());
            if others != Others::NoneLeft {
                return Ok(());
            }
        }
        let listed = Api::<ClassRuntime>::namespaced(self.client.clone(), name)
            .list_metadata(&ListParams::default().labels(&selector(&self.crm)))
            .await?;
        if listed
            .items
            .iter()
            .any(|r| stays(&r.metadata, name, leaving))
        {
            return Ok(());
        }
        self.released.lock().expect("not poisoned").remove(name);
        let Some(namespace) = self.api().get_opt(name).await? else {
            return Ok(());
        };
        if name != self.crm && namespace.labels().get(CRM_LABEL) != Some(&self.crm) {
            return Ok(());
        }
        if namespace
            .annotations()
            .contains_key(CREATED_BY_CRM_ANNOTATION)
        {
            match self.api().delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            info!(
                namespace = name,
                "namespace removed: it holds nothing any more"
            );
        } else if namespace.annotations().contains_key(SERVES_ANNOTATION) {
            let version = namespace.metadata.resource_version.clone();
            match self.annotate(name, version, None).await {
                // Taken again meanwhile: it is not empty any more.
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                other => other?,
            }
            info!(
                namespace = name,
                "namespace released: it holds nothing any more"
            );
        }
        Ok(())
    }
}

/// What the runtimes the cache holds say about namespace `namespace` once `leaving` goes.
#[derive(Debug, PartialEq)]
enum Others {
    /// Another runtime in it is not being deleted: the namespace stays in use.
    Stay,
    /// Others are being deleted and their cleanup has yet to release (`passed` lacks them):
    /// the last of them does.
    Leaving,
    /// None that the cache knows of.
    NoneLeft,
}

fn others<'a>(
    runtimes: impl IntoIterator<Item = &'a ObjectMeta>,
    namespace: &str,
    leaving: &str,
    passed: &HashSet<String>,
) -> Others {
    let mut others = Others::NoneLeft;
    for runtime in runtimes {
        let name = runtime.name.as_deref().unwrap_or_default();
        if runtime.namespace.as_deref() != Some(namespace) || name == leaving {
            continue;
        }
        if runtime.deletion_timestamp.is_none() {
            return Others::Stay;
        }
        // Only a runtime with this CRM's finalizer comes through a cleanup to release.
        let cleaned_up = runtime
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == CLASS_RUNTIME_CLEANUP_FINALIZER);
        if cleaned_up && !passed.contains(name) {
            others = Others::Leaving;
        }
    }
    others
}

/// Whether a runtime keeps namespace `namespace` when `leaving` goes: it is in it, it is
/// another one, and it is not being deleted (it may be leaving at the same moment).
fn stays(runtime: &ObjectMeta, namespace: &str, leaving: &str) -> bool {
    runtime.namespace.as_deref() == Some(namespace)
        && runtime.name.as_deref() != Some(leaving)
        && runtime.deletion_timestamp.is_none()
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{0}")]
    Refused(String),
    #[error("namespace {0} is being deleted; retry once it is gone")]
    Terminating(String),
    #[error("the namespace was created concurrently; retry")]
    Raced,
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(labels: serde_json::Value, annotations: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": "team-b", "labels": labels, "annotations": annotations}
        }))
        .unwrap()
    }

    #[test]
    fn a_missing_namespace_is_created_and_an_owned_one_used() {
        assert_eq!(
            claim(None, "team-b", "oaas-crm", "hub/team-b"),
            Claim::Create
        );
        let ours = ns(
            json!({CRM_LABEL: "oaas-crm"}),
            json!({SERVES_ANNOTATION: "hub/team-b"}),
        );
        assert_eq!(
            claim(Some(&ours), "team-b", "oaas-crm", "hub/team-b"),
            Claim::Ready
        );
        let handed_over = ns(json!({CRM_LABEL: "oaas-crm"}), json!({}));
        assert_eq!(
            claim(Some(&handed_over), "team-b", "oaas-crm", "hub/team-b"),
            Claim::Take
        );
        let own = ns(json!({}), json!({}));
        assert_eq!(
            claim(Some(&own), "oaas-crm", "oaas-crm", "hub/default"),
            Claim::Take
        );
    }

    #[test]
    fn a_namespace_of_someone_else_or_of_another_tenant_is_refused_with_the_fix() {
        let foreign = ns(json!({}), json!({}));
        let Claim::Refuse(message) = claim(Some(&foreign), "team-b", "oaas-crm", "hub/team-b")
        else {
            panic!("a foreign namespace must be refused");
        };
        assert!(
            message.contains("kubectl label namespace team-b oaas.io/crm=oaas-crm"),
            "{message}"
        );
        let other_crm = ns(json!({CRM_LABEL: "other"}), json!({}));
        assert!(matches!(
            claim(Some(&other_crm), "team-b", "oaas-crm", "hub/team-b"),
            Claim::Refuse(_)
        ));
        let other_tenant = ns(
            json!({CRM_LABEL: "oaas-crm"}),
            json!({SERVES_ANNOTATION: "hub/b"}),
        );
        let Claim::Refuse(message) = claim(Some(&other_tenant), "team-b", "oaas-crm", "hub/team-b")
        else {
            panic!("a namespace serving another tenant must be refused");
        };
        assert!(
            message.contains("already serves hub namespace hub/b"),
            "{message}"
        );
    }

    #[test]
    fn a_namespace_being_deleted_is_retried() {
        let mut gone = ns(
            json!({CRM_LABEL: "oaas-crm"}),
            json!({SERVES_ANNOTATION: "hub/team-b"}),
        );
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert_eq!(
            claim(Some(&gone), "team-b", "oaas-crm", "hub/team-b"),
            Claim::Terminating
        );
    }

    #[test]
    fn only_another_runtime_not_being_deleted_keeps_a_namespace() {
        let runtime = |namespace: &str, name: &str, deleting: bool| ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            deletion_timestamp: deleting.then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                )
            }),
            ..Default::default()
        };
        let cases = [
            (runtime("team-b", "other", false), true),
            (runtime("team-b", "leaving", false), false),
            (runtime("team-b", "other", true), false),
            (runtime("team-c", "other", false), false),
        ];
        for (meta, keeps) in cases {
            assert_eq!(stays(&meta, "team-b", "leaving"), keeps, "{meta:?}");
        }
    }

    fn runtime(namespace: &str, name: &str, deleting: bool, finalizer: bool) -> ObjectMeta {
        serde_json::from_value(json!({
            "namespace": namespace,
            "name": name,
            "deletionTimestamp": deleting.then_some("2026-12-05T07:00:00Z"),
            "finalizers": finalizer.then_some([CLASS_RUNTIME_CLEANUP_FINALIZER]),
        }))
        .expect("valid metadata")
    }

    #[test]
    fn of_runtimes_deleted_together_only_the_last_to_come_releases_the_namespace() {
        let none = HashSet::new();
        let a = runtime("t", "a", true, true);
        let b = runtime("t", "b", true, true);
        // a goes first: b is still to come, so a leaves it to b.
        assert_eq!(others([&a, &b], "t", "a", &none), Others::Leaving);
        // b comes after a has been through: the cache still shows a, but none is left.
        let passed_a = HashSet::from(["a".to_string()]);
        assert_eq!(others([&a, &b], "t", "b", &passed_a), Others::NoneLeft);
        // A runtime not being deleted keeps it; other namespaces do not count.
        let live = runtime("t", "c", false, true);
        assert_eq!(others([&a, &live], "t", "a", &none), Others::Stay);
        let elsewhere = runtime("u", "c", false, true);
        assert_eq!(others([&a, &elsewhere], "t", "a", &none), Others::NoneLeft);
        // One being deleted without this CRM's finalizer never comes through a cleanup.
        let unfinalized = runtime("t", "d", true, false);
        assert_eq!(
            others([&a, &unfinalized], "t", "a", &none),
            Others::NoneLeft
        );
    }
}
