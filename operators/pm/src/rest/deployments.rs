//! `/api/v1/deployments` and `/api/v1/deployment-status`: OaaS deployment documents ↔
//! OClassDeployment resources, with the hub's aggregated status.
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use oaas_crds::OClassDeployment;
use oaas_crds::common::Phase;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{Access, Caller};
use super::error::{ApiError, ApiResult};
use super::extract::{Document, Namespace, Params, Segments};
use super::outcome::{Outcome, Stored, WithHeaders};
use super::packages::{if_match, replace_spec};
use super::{Rest, at_least, deleting, in_namespace, page, until_cached};
use crate::document::mapping::{
    condition_of, deployment_document, deployment_name, deployment_resource,
};
use crate::document::{Deployment, DeploymentCondition};

#[derive(Deserialize, JsonSchema)]
pub struct DeploymentFilter {
    package_name: Option<String>,
    class_key: Option<String>,
    /// Only deployments targeting this cluster (same as `target_cluster`).
    target_env: Option<String>,
    target_cluster: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
pub struct DeploymentKey {
    #[schemars(pattern(oaas_crds::validation::KEY_PATTERN))]
    key: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct ClusterParam {
    /// Only this cluster: remove it from the deployment's targets (delete), or report its
    /// state (status).
    cluster: Option<String>,
}

fn cached(rest: &Rest, namespace: &str, key: &str) -> ApiResult<Arc<OClassDeployment>> {
    rest.deployments
        .get(&ObjectRef::new(&deployment_name(key)).within(namespace))
        .ok_or_else(|| {
            ApiError::not_found(format!("deployment {key:?} in namespace {namespace:?}"))
        })
}

/// List class deployments.
pub async fn list(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Params(filter): Params<DeploymentFilter>,
) -> ApiResult<Json<Vec<Deployment>>> {
    let cluster = filter
        .target_cluster
        .as_ref()
        .or(filter.target_env.as_ref());
    let matching = in_namespace(&rest.deployments, &namespace)
        .into_iter()
        .filter(|d| {
            let planned = d.status.as_ref().and_then(|s| s.plan.as_ref());
            filter
                .package_name
                .as_ref()
                .is_none_or(|p| *p == d.spec.package)
                && filter
                    .class_key
                    .as_ref()
                    .is_none_or(|c| *c == d.spec.class_key)
                && cluster.is_none_or(|c| {
                    d.spec.target_clusters.contains(c)
                        || planned.is_some_and(|p| p.clusters.contains(c))
                })
        })
        .collect();
    Ok(Json(
        page(matching, filter.offset, filter.limit)
            .iter()
            .map(|d| deployment_document(d))
            .collect(),
    ))
}

/// One class deployment with its state; the ETag is its resourceVersion.
pub async fn get(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Segments(DeploymentKey { key }): Segments<DeploymentKey>,
) -> ApiResult<WithHeaders<Deployment>> {
    let deployment = cached(&rest, &namespace, &key)?;
    Ok(WithHeaders::tagged(
        deployment_document(&deployment),
        deployment.resource_version(),
    ))
}

/// Deploy a class of a stored package to the clusters in `target_envs` (none: the default
/// cluster, or healthy ones chosen for availability, within `available_envs`). A key that exists
/// already is updated, as upstream's `oprc deploy apply` expects (201 created, 200 updated);
/// with `If-Match: "<resourceVersion>"` only that version is replaced (409 otherwise).
pub async fn create(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Document(doc): Document<Deployment>,
) -> ApiResult<Stored<Outcome>> {
    let deployment = deployment_resource(&doc, &namespace)?;
    check_references(&rest, &namespace, &deployment)?;
    let expected = if_match(&headers)?;
    let api: Api<OClassDeployment> = rest.api(&namespace);
    let name = deployment.name_any();
    let created = match expected {
        // A conditional write is an update of that version.
        Some(_) => None,
        None => match api.create(&PostParams::default(), &deployment).await {
            Ok(created) => Some(created),
            Err(kube::Error::Api(e)) if e.code == 409 => None,
            Err(e) => return Err(e.into()),
        },
    };
    let was_created = created.is_some();
    let stored = match created {
        Some(created) => created,
        None => {
            let update = Access {
                resource: "classdeployments",
                verb: "update",
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
            };
            let caller = caller.as_ref().map(|Extension(c)| c);
            rest.authenticator
                .allows(&rest.client, caller, &update)
                .await?;
            replace_spec(&api, &name, expected.as_deref(), |current| {
                current.spec = deployment.spec.clone();
            })
            .await?
        }
    };
    until_cached(&rest.deployments, &namespace, &name, |c| {
        at_least(c, &stored)
    })
    .await;
    let targets = match stored.spec.target_clusters.join(", ") {
        none if none.is_empty() => "the default cluster, or where its availability needs".into(),
        named => named,
    };
    let outcome = |status, done| Outcome {
        id: doc.key.clone(),
        status,
        message: format!(
            "deployment {name:?} {done}; the package manager now deploys it to {targets}"
        ),
        resource_version: stored.resource_version(),
    };
    Ok(if was_created {
        Stored::Created(outcome("created", "created"))
    } else {
        Stored::Updated(outcome("updated", "updated"))
    })
}

/// What the seeds' API checked on create and kubectl cannot: the package exists, has the
/// class, and the clusters are known.
fn check_references(rest: &Rest, namespace: &str, deployment: &OClassDeployment) -> ApiResult<()> {
    let spec = &deployment.spec;
    let package = rest
        .packages
        .get(&ObjectRef::new(&spec.package).within(namespace))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "package {:?} in namespace {namespace:?}",
                spec.package
            ))
        })?;
    if !package.spec.classes.iter().any(|c| c.key == spec.class_key) {
        return Err(unprocessable(
            "class_key",
            format!(
                "package {:?} has no class {:?}",
                spec.package, spec.class_key
            ),
        ));
    }
    for (field, clusters) in [
        ("target_envs", &spec.target_clusters),
        ("available_envs", &spec.available_clusters),
    ] {
        let unknown: Vec<&str> = clusters
            .iter()
            .filter(|c| rest.clusters.get(&ObjectRef::new(c)).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(unprocessable(
                field,
                format!(
                    "unknown cluster(s) {}; GET /api/v1/envs lists the known ones",
                    unknown.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn unprocessable(field: &str, message: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        message.clone(),
    )
    .with_detail(Some(field.into()), message)
}

#[derive(Serialize, JsonSchema)]
pub struct DeleteOutcome {
    message: String,
    id: String,
    /// Clusters the class is being removed from.
    deleted_envs: Vec<String>,
}

/// Delete a class deployment from every cluster, or with `?cluster=` take that one cluster
/// out of its targets. The hub removes the class from the spokes before the object goes.
pub async fn delete(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Segments(DeploymentKey { key }): Segments<DeploymentKey>,
    Params(ClusterParam { cluster }): Params<ClusterParam>,
) -> ApiResult<Json<DeleteOutcome>> {
    let current = cached(&rest, &namespace, &key)?;
    let name = current.name_any();
    let api: Api<OClassDeployment> = rest.api(&namespace);
    let Some(cluster) = cluster else {
        api.delete(&name, &DeleteParams::default()).await?;
        until_cached(&rest.deployments, &namespace, &name, deleting).await;
        let planned = current.status.as_ref().and_then(|s| s.plan.as_ref());
        return Ok(Json(DeleteOutcome {
            message: "Deployment deleted across environments".into(),
            id: key,
            deleted_envs: planned.map_or_else(
                || current.spec.target_clusters.clone(),
                |p| p.clusters.clone(),
            ),
        }));
    };
    if !current.spec.target_clusters.contains(&cluster) {
        return Err(ApiError::not_found(format!(
            "cluster {cluster:?} among the targets of {key:?}"
        )));
    }
    if current.spec.target_clusters.len() == 1 && current.spec.cluster_selector.is_none() {
        return Err(ApiError::conflict(format!(
            "{cluster:?} is the only cluster of {key:?}; delete the deployment instead"
        )));
    }
    let updated = replace_spec(&api, &name, None, |d: &mut OClassDeployment| {
        d.spec.target_clusters.retain(|c| *c != cluster);
    })
    .await?;
    until_cached(&rest.deployments, &namespace, &name, |c| {
        at_least(c, &updated)
    })
    .await;
    Ok(Json(DeleteOutcome {
        message: "Deployment deleted from the cluster".into(),
        id: key,
        deleted_envs: vec![cluster],
    }))
}

#[derive(Serialize, JsonSchema)]
pub struct DeploymentStatus {
    id: String,
    /// The seeds' coarse condition: PENDING, DEPLOYING, RUNNING, DOWN or DELETED.
    status: DeploymentCondition,
    /// Pending, Applying, Progressing, Available, Degraded or Deleting.
    phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// When the state last changed, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_updated: Option<String>,
    /// Target clusters whose runtime is Available, out of all targets, e.g. 2/2.
    #[serde(skip_serializing_if = "Option::is_none")]
    clusters_ready: Option<String>,
    clusters: Vec<ClusterState>,
}

#[derive(Serialize, JsonSchema)]
pub struct ClusterState {
    cluster: String,
    phase: String,
    ready_functions: u32,
    total_functions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn phase_name(phase: Option<Phase>) -> String {
    phase.unwrap_or_default().as_str().to_string()
}

fn rfc3339<T: Serialize>(time: &T) -> Option<String> {
    serde_json::to_value(time).ok()?.as_str().map(String::from)
}

/// State of a class deployment as the hub aggregated it; `?cluster=` for one cluster.
/// `id` is the deployment key, or `<namespace>/<key>` (URL-encoded `/`).
pub async fn status(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Segments(super::runtimes::RuntimeId { id }): Segments<super::runtimes::RuntimeId>,
    Params(ClusterParam { cluster }): Params<ClusterParam>,
) -> ApiResult<Json<DeploymentStatus>> {
    let (namespace, key) = match id.split_once('/') {
        Some((ns, key)) => (rest.namespace(Some(ns))?, key.to_string()),
        None => (namespace, id.clone()),
    };
    let deployment = cached(&rest, &namespace, &key)?;
    let status = deployment.status.clone().unwrap_or_default();
    let clusters: Vec<ClusterState> = status
        .clusters
        .iter()
        .filter(|c| cluster.as_ref().is_none_or(|wanted| *wanted == c.cluster))
        .map(|c| ClusterState {
            cluster: c.cluster.clone(),
            phase: phase_name(c.phase),
            ready_functions: c.ready_functions,
            total_functions: c.total_functions,
            message: c.message.clone(),
        })
        .collect();
    let (phase, message) = match (&cluster, clusters.first()) {
        (Some(name), None) => {
            return Err(ApiError::not_found(format!(
                "cluster {name:?} in the status of {key:?}"
            )));
        }
        (Some(_), Some(one)) => (
            status
                .clusters
                .iter()
                .find(|c| c.cluster == one.cluster)
                .and_then(|c| c.phase),
            one.message.clone(),
        ),
        (None, _) => (
            status.phase,
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.message.clone()),
        ),
    };
    let condition = if deployment.metadata.deletion_timestamp.is_some() {
        DeploymentCondition::Deleted
    } else {
        condition_of(phase.unwrap_or_default())
    };
    Ok(Json(DeploymentStatus {
        id,
        status: condition,
        phase: phase_name(phase),
        message,
        last_updated: status
            .conditions
            .iter()
            .map(|c| &c.last_transition_time)
            .max_by_key(|t| t.0)
            .and_then(rfc3339),
        clusters_ready: status.clusters_ready,
        clusters,
    }))
}
