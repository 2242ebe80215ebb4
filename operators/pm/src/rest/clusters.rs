//! `/api/v1/clusters`: the spokes (OClusters) and their health as the PM last checked it.
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use oaas_crds::OCluster;
use oaas_crds::cluster::ClusterHealth as Health;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Rest;
use super::error::{ApiError, ApiResult};
use super::extract::Segments;

#[derive(Serialize, JsonSchema)]
pub struct Cluster {
    name: String,
    /// gRPC endpoint of the cluster's CRM.
    endpoint: String,
    /// Whether class deployments without targets would use this cluster by default.
    default: bool,
    health: ClusterHealth,
}

#[derive(Serialize, JsonSchema)]
pub struct ClusterHealth {
    cluster_name: String,
    /// Healthy, Degraded, Unhealthy (unreachable) or Unknown (not checked yet).
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    crm_version: Option<String>,
    /// When the CRM last answered, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ready_nodes: Option<u32>,
    /// Probability that the cluster is up, used by replica planning.
    #[serde(skip_serializing_if = "Option::is_none")]
    availability: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ClusterName {
    name: String,
}

fn health_of(cluster: &OCluster) -> ClusterHealth {
    let status = cluster.status.clone().unwrap_or_default();
    ClusterHealth {
        cluster_name: cluster.name_any(),
        status: match status.health {
            Health::Healthy => "Healthy",
            Health::Degraded => "Degraded",
            Health::Unreachable => "Unhealthy",
            Health::Unknown => "Unknown",
        }
        .into(),
        crm_version: status.crm_version,
        last_seen: status
            .last_seen
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(String::from)),
        node_count: status.node_count,
        ready_nodes: status.ready_nodes,
        availability: status.availability,
        message: status.message,
    }
}

fn all(rest: &Rest) -> Vec<Arc<OCluster>> {
    let mut clusters = rest.clusters.state();
    clusters.sort_by_key(|c| c.name_any());
    clusters
}

/// Every cluster with its health.
pub async fn list(State(rest): State<Arc<Rest>>) -> Json<Vec<Cluster>> {
    Json(
        all(&rest)
            .iter()
            .map(|c| Cluster {
                name: c.name_any(),
                endpoint: c.spec.endpoint.clone(),
                default: c.spec.default,
                health: health_of(c),
            })
            .collect(),
    )
}

/// Health of every cluster.
pub async fn health_all(State(rest): State<Arc<Rest>>) -> Json<Vec<ClusterHealth>> {
    Json(all(&rest).iter().map(|c| health_of(c)).collect())
}

/// Health of one cluster.
pub async fn health(
    State(rest): State<Arc<Rest>>,
    Segments(ClusterName { name }): Segments<ClusterName>,
) -> ApiResult<Json<ClusterHealth>> {
    rest.clusters
        .get(&ObjectRef::new(&name))
        .map(|c| Json(health_of(&c)))
        .ok_or_else(|| ApiError::not_found(format!("cluster {name:?}")))
}
