//! The child caches: one watch per kind of child, holding of each child only what the
//! controller reads. A cache holds every child of every runtime, so its element type sets
//! the CRM's memory per runtime: k8s-openapi's `Deployment` takes 2.4 KiB before any field
//! is filled, a `Service` 0.8 KiB. Services and HPAs are watched as metadata only (the API
//! server sends no spec or status); Deployments as [`CachedDeployment`], which parses only
//! the fields observation reads.
use std::pin::Pin;

use futures::Stream;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Deserialize;

use oaas_crds::ClassRuntime;

/// A Deployment as the cache holds it: metadata, desired replicas, Pod selector, status.
#[derive(Clone, Debug, Deserialize)]
pub struct CachedDeployment {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CachedDeploymentSpec,
    #[serde(default)]
    pub status: DeploymentStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedDeploymentSpec {
    pub replicas: Option<i32>,
    #[serde(default)]
    pub selector: PodSelector,
}

/// A Deployment's Pod selector as a label-selector query (`k=v,k=v`), the one form it is
/// used in; a map would cost a B-tree node per Deployment. Empty when it has no labels.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "LabelSelector")]
pub struct PodSelector(pub String);

impl From<LabelSelector> for PodSelector {
    fn from(selector: LabelSelector) -> Self {
        let labels = selector.match_labels.unwrap_or_default();
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Self(pairs.join(","))
    }
}

impl k8s_openapi::Resource for CachedDeployment {
    const API_VERSION: &'static str = Deployment::API_VERSION;
    const GROUP: &'static str = Deployment::GROUP;
    const KIND: &'static str = Deployment::KIND;
    const VERSION: &'static str = Deployment::VERSION;
    const URL_PATH_SEGMENT: &'static str = Deployment::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for CachedDeployment {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

pub type CachedService = PartialObjectMeta<Service>;
pub type CachedAutoscaler = PartialObjectMeta<HorizontalPodAutoscaler>;

/// Caches of the children, shared with the observation step so it needs no API calls.
#[derive(Clone)]
pub struct ChildStores {
    pub deployments: Store<CachedDeployment>,
    pub services: Store<CachedService>,
    pub autoscalers: Store<CachedAutoscaler>,
}

/// A watch feeding one child cache; yields each child it saw change (deleted ones too, so
/// a deleted child wakes its owner up to bring it back).
pub type ChildStream<K> = Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The watches behind [`ChildStores`]; the controller must poll them for the caches to fill.
pub struct ChildStreams {
    pub deployments: ChildStream<CachedDeployment>,
    pub services: ChildStream<CachedService>,
    pub autoscalers: ChildStream<CachedAutoscaler>,
}

impl ChildStores {
    /// Watches the children in every namespace that `config` selects.
    pub fn watch(client: &Client, config: watcher::Config) -> (Self, ChildStreams) {
        let (deployments, deployment_stream) = cache(client, config.clone(), trim_deployment);
        let (services, service_stream) = cache(client, config.clone(), trim_partial);
        let (autoscalers, autoscaler_stream) = cache(client, config, trim_partial);
        let stores = Self {
            deployments,
            services,
            autoscalers,
        };
        let streams = ChildStreams {
            deployments: deployment_stream,
            services: service_stream,
            autoscalers: autoscaler_stream,
        };
        (stores, streams)
    }
}

fn cache<K>(
    client: &Client,
    config: watcher::Config,
    trim: fn(&mut K),
) -> (Store<K>, ChildStream<K>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .touched_objects();
    (reader, Box::pin(stream))
}

/// A metadata-only child also drops its type (`meta.k8s.io/v1` `PartialObjectMetadata`,
/// two strings per child): the cache it is in says what it is.
fn trim_partial<K>(child: &mut PartialObjectMeta<K>) {
    child.types = None;
    trim_metadata(&mut child.metadata);
}

/// Of a Deployment's conditions only failures are read; the others (`Available`, a healthy
/// `Progressing`) are dropped with their messages.
fn trim_deployment(deployment: &mut CachedDeployment) {
    trim_metadata(&mut deployment.metadata);
    if let Some(conditions) = deployment.status.conditions.as_mut() {
        conditions.retain(is_failure);
    }
}

/// A Deployment condition that says it cannot roll out.
pub fn is_failure(condition: &DeploymentCondition) -> bool {
    let stuck = condition.type_ == "Progressing" && condition.status == "False";
    let replica_failure = condition.type_ == "ReplicaFailure" && condition.status == "True";
    stuck || replica_failure
}

/// Of a child's metadata the controller reads its name, namespace, version, generation,
/// age and owner (the runtime it belongs to); the rest (labels, annotations, managed fields,
/// its own uid) is dropped before it reaches the cache.
fn trim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.uid = None;
}

/// Whether a cached child belongs to runtime `name` of namespace `ns`.
pub fn owned_by(child: &ObjectMeta, ns: &str, name: &str) -> bool {
    child.namespace.as_deref() == Some(ns)
        && child
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.name == name && o.kind == ClassRuntime::kind(&()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_deployment_keeps_what_the_controller_reads() {
        let mut deployment: CachedDeployment = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "d-f", "namespace": "ns", "generation": 3, "resourceVersion": "42",
                "uid": "5f1c0a4e-0000-4000-8000-000000000000",
                "labels": {"app.kubernetes.io/instance": "d", "app.kubernetes.io/name": "d"},
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "managedFields": [{"manager": "oaas-crm", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "oaas.io/v1alpha1", "kind": "ClassRuntime",
                    "name": "d", "uid": "u", "controller": true}],
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"tier": "fn", "app": "d-f"}},
                "template": {"spec": {"containers": [{"name": "f", "image": "img/f:1"}]}},
            },
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
                {"type": "ReplicaFailure", "status": "False"},
            ]},
        }))
        .unwrap();
        trim_deployment(&mut deployment);
        let meta = &deployment.metadata;
        assert_eq!(meta.generation, Some(3));
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert!(owned_by(meta, "ns", "d"));
        assert!(!owned_by(meta, "ns", "e") && !owned_by(meta, "other", "d"));
        assert!(meta.labels.is_none() && meta.annotations.is_none());
        assert!(meta.managed_fields.is_none() && meta.uid.is_none());
        assert_eq!(deployment.spec.replicas, Some(2));
        assert_eq!(deployment.spec.selector.0, "app=d-f,tier=fn");
        assert_eq!(deployment.status.ready_replicas, Some(1));
        let kept: Vec<_> = deployment
            .status
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(kept, ["Progressing"], "only the failure is kept");
    }

    #[test]
    fn a_cached_service_keeps_its_name_version_and_owner_only() {
        let mut service: CachedService = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "d-f", "namespace": "ns", "resourceVersion": "7", "uid": "u-1",
                "labels": {"app.kubernetes.io/instance": "d"},
                "ownerReferences": [{"apiVersion": "oaas.io/v1alpha1", "kind": "ClassRuntime",
                    "name": "d", "uid": "u", "controller": true}],
            },
        }))
        .unwrap();
        trim_partial(&mut service);
        assert!(service.types.is_none());
        let meta = &service.metadata;
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(owned_by(meta, "ns", "d"));
        assert!(meta.labels.is_none() && meta.uid.is_none());
    }

    #[test]
    fn a_deployment_without_spec_or_status_still_parses() {
        let deployment: CachedDeployment =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "d-f"}})).unwrap();
        assert_eq!(deployment.spec.replicas, None);
        assert_eq!(deployment.spec.selector.0, "");
        assert_eq!(deployment.status.replicas, None);
    }
}
