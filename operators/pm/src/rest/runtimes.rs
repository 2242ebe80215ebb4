//! `/api/v1/class-runtimes` (alias `/deployment-records`): what the spokes' CRMs actually
//! run, asked over gRPC at request time. A spoke that cannot answer is named: a 503 when
//! the request needs that spoke, a `Warning` header when a listing is incomplete.
use std::sync::Arc;

use axum::extract::State;
use futures::future::join_all;
use kube::ResourceExt;
use oaas_core::tenancy;
use oaas_crds::convert::{phase_from_proto, time_from_proto};
use oaas_proto::deployment::{self as pb};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{Namespace, Params, Segments};
use super::outcome::WithHeaders;
use super::{Rest, page};
use crate::document::DeploymentCondition;
use crate::document::mapping::{condition_of, deployment_name};

#[derive(Deserialize, JsonSchema)]
pub struct RuntimeId {
    /// Deployment key, or `<namespace>/<key>` with the `/` URL-encoded.
    pub id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct RuntimeFilter {
    package_name: Option<String>,
    class_key: Option<String>,
    /// Only this cluster (OCluster name).
    cluster: Option<String>,
    /// Only this condition (e.g. RUNNING) or phase (e.g. Available).
    status: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ClusterChoice {
    /// Ask only this cluster.
    cluster: Option<String>,
}

/// A class runtime in one spoke.
#[derive(Serialize, JsonSchema, Debug)]
pub struct ClassRuntimeRecord {
    /// Deployment id: `<namespace>/<name>` of the OClassDeployment on the hub.
    id: String,
    deployment_unit_id: String,
    package_name: String,
    class_key: String,
    target_environment: String,
    cluster_name: String,
    /// Namespace and name of the ClassRuntime resource in the spoke.
    namespace: String,
    name: String,
    status: RecordStatus,
    functions: Vec<FunctionState>,
    /// Revision of the deployment unit the spoke runs.
    revision: i64,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct RecordStatus {
    condition: DeploymentCondition,
    phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_updated: Option<String>,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct FunctionState {
    function_key: String,
    ready: bool,
    ready_replicas: u32,
    desired_replicas: u32,
    service: String,
    url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

fn record(cluster: &str, info: pb::ClassRuntimeInfo) -> ClassRuntimeRecord {
    let unit = info.unit.unwrap_or_default();
    let status = info.status.unwrap_or_default();
    let phase = phase_from_proto(status.phase()).unwrap_or_default();
    ClassRuntimeRecord {
        // `<namespace>/<name>`, as GET /class-runtimes/{id} takes it; the unit's id adds the hub.
        id: tenancy::parse_deployment_id(&unit.id)
            .map(|id| id.within_hub())
            .unwrap_or_else(|_| unit.id.clone()),
        deployment_unit_id: unit.id,
        package_name: unit.package_name,
        class_key: unit.class_key,
        target_environment: unit.target_env,
        cluster_name: cluster.to_string(),
        namespace: info.namespace,
        name: info.name,
        status: RecordStatus {
            condition: condition_of(phase),
            phase: phase.as_str().to_string(),
            message: Some(status.message).filter(|m| !m.is_empty()),
            last_updated: status
                .updated_at
                .as_ref()
                .and_then(time_from_proto)
                .and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_str().map(String::from)),
        },
        functions: status
            .functions
            .into_iter()
            .map(|f| FunctionState {
                function_key: f.function_key,
                ready: f.ready,
                ready_replicas: f.ready_replicas,
                desired_replicas: f.desired_replicas,
                service: f.service,
                url: f.url,
                message: f.message,
            })
            .collect(),
        revision: status.revision,
    }
}

/// The clusters a request asks: the named one (404 when unknown) or all known ones.
fn clusters(rest: &Rest, only: Option<&str>) -> ApiResult<Vec<String>> {
    let mut names: Vec<String> = rest.clusters.state().iter().map(|c| c.name_any()).collect();
    names.sort();
    match only {
        None => Ok(names),
        Some(name) if names.iter().any(|n| n == name) => Ok(vec![name.to_string()]),
        Some(name) => Err(ApiError::not_found(format!("cluster {name:?}"))),
    }
}

/// Class runtimes in every spoke (or `?cluster=`), newest state as the CRMs report it.
pub async fn list(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Params(filter): Params<RuntimeFilter>,
) -> ApiResult<WithHeaders<Vec<ClassRuntimeRecord>>> {
    let names = clusters(&rest, filter.cluster.as_deref())?;
    let request = pb::ListClassRuntimesRequest {
        package_name: filter.package_name.clone().unwrap_or_default(),
        class_key: filter.class_key.clone().unwrap_or_default(),
    };
    let answers = join_all(
        names
            .iter()
            .map(|cluster| rest.spokes.list_class_runtimes(cluster, request.clone())),
    )
    .await;
    // A spoke lists every namespace's runtimes, and other hubs' too: only this namespace's
    // of this hub are the caller's to see.
    let ours = tenancy::deployment_id(rest.spokes.hub(), &namespace, "");
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    for (cluster, answer) in names.iter().zip(answers) {
        match answer {
            Ok(list) => records.extend(
                list.items
                    .into_iter()
                    .filter(|i| i.unit.as_ref().is_some_and(|u| u.id.starts_with(&ours)))
                    .map(|i| record(cluster, i)),
            ),
            Err(problem) => warnings.push(problem.to_string()),
        }
    }
    if filter.cluster.is_some()
        && let Some(problem) = warnings.pop()
    {
        return Err(ApiError::unavailable(problem));
    }
    let wanted = filter.status.as_deref().map(str::to_ascii_uppercase);
    records.retain(|r| {
        wanted.as_deref().is_none_or(|w| {
            w == r.status.phase.to_ascii_uppercase()
                || serde_json::to_value(r.status.condition).is_ok_and(|c| c == w)
        })
    });
    Ok(WithHeaders::warned(
        page(records, filter.offset, filter.limit),
        warnings,
    ))
}

/// One class runtime, from the spoke that has it (all are asked unless `?cluster=`).
/// 404 when no spoke has it, 503 when it is not found and some spoke could not answer.
pub async fn get(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Segments(RuntimeId { id }): Segments<RuntimeId>,
    Params(ClusterChoice { cluster }): Params<ClusterChoice>,
) -> ApiResult<axum::Json<ClassRuntimeRecord>> {
    let (namespace, name) = match id.split_once('/') {
        Some((ns, key)) => (rest.namespace(Some(ns))?, deployment_name(key)),
        None => (namespace, deployment_name(&id)),
    };
    let deployment_id = tenancy::deployment_id(rest.spokes.hub(), &namespace, &name);
    let names = clusters(&rest, cluster.as_deref())?;
    let answers = join_all(
        names
            .iter()
            .map(|cluster| rest.spokes.get_class_runtime(cluster, &deployment_id)),
    )
    .await;
    let mut problems = Vec::new();
    for (cluster, answer) in names.iter().zip(answers) {
        match answer {
            Ok(Some(info)) => return Ok(axum::Json(record(cluster, info))),
            Ok(None) => {}
            Err(problem) => problems.push(problem.to_string()),
        }
    }
    if problems.is_empty() {
        Err(ApiError::not_found(format!(
            "class runtime {deployment_id:?}"
        )))
    } else {
        Err(ApiError::unavailable(format!(
            "class runtime {deployment_id:?} was not found in the clusters that answered; {}",
            problems.join("; ")
        )))
    }
}
