//! `/api/v1/clusters`: the spokes (OClusters) and their health. Health comes from the PM's
//! last check: held in memory by the leader, which checks the clusters, else the OCluster's
//! status (whose check times are refreshed only every `CRM_HEALTH_REPORT_INTERVAL`). When
//! that check is older than `CRM_HEALTH_CACHE_TTL`, the cluster is checked live for the
//! answer, and if that cannot be done the cached answer is served marked `stale`, with its
//! age and why.
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use oaas_crds::OCluster;
use oaas_crds::cluster::{ClusterHealth as Health, OClusterStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Rest;
use super::error::{ApiError, ApiResult};
use super::extract::Segments;
use crate::spoke_client::{Probe, SpokeError};

#[derive(Serialize, JsonSchema)]
pub struct Cluster {
    name: String,
    /// gRPC endpoint of the cluster's CRM.
    endpoint: String,
    /// Whether class deployments without targets would use this cluster by default.
    default: bool,
    health: ClusterHealth,
}

#[derive(Serialize, JsonSchema, Debug, PartialEq)]
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
    /// When this answer was found, RFC 3339: the PM's last check of the cluster, or now
    /// for a live check. Absent when the cluster was never checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    checked_at: Option<String>,
    /// Seconds since `checked_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    age_seconds: Option<u64>,
    /// The answer is older than `CRM_HEALTH_CACHE_TTL` and a live check failed or could not
    /// be made: `stale_reason` says why.
    stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_reason: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ClusterName {
    name: String,
}

fn rfc3339(time: &Time) -> Option<String> {
    serde_json::to_value(time)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
}

fn status_name(health: Health) -> &'static str {
    match health {
        Health::Healthy => "Healthy",
        Health::Degraded => "Degraded",
        Health::Unreachable => "Unhealthy",
        Health::Unknown => "Unknown",
    }
}

/// When the cached answer was found: the last check (an older PM recorded only when the
/// CRM last answered).
fn checked_at(status: &OClusterStatus) -> Option<Time> {
    status.last_checked.clone().or(status.last_seen.clone())
}

/// How old an answer checked at `checked` is at `now` (a clock step back counts as 0).
fn age(checked: Option<&Time>, now: Timestamp) -> Option<Duration> {
    let checked = checked?;
    Some(
        now.duration_since(checked.0)
            .try_into()
            .unwrap_or(Duration::ZERO),
    )
}

/// An answer is served as cached while it is at most `ttl` old (ages are whole seconds);
/// one never checked is not, nor is any when the TTL is 0 (every answer is checked live).
fn needs_refresh(age: Option<Duration>, ttl: Duration) -> bool {
    ttl.is_zero() || age.is_none_or(|age| age > ttl)
}

/// The health the last check found (`status`: this process's, else the OCluster's), with
/// its age.
fn cached(cluster: &OCluster, status: Option<OClusterStatus>, now: Timestamp) -> ClusterHealth {
    let status = status
        .or_else(|| cluster.status.clone())
        .unwrap_or_default();
    let checked = checked_at(&status);
    ClusterHealth {
        cluster_name: cluster.name_any(),
        status: status_name(status.health).into(),
        crm_version: status.crm_version,
        last_seen: status.last_seen.as_ref().and_then(rfc3339),
        node_count: status.node_count,
        ready_nodes: status.ready_nodes,
        availability: status.availability,
        message: status.message,
        checked_at: checked.as_ref().and_then(rfc3339),
        age_seconds: age(checked.as_ref(), now).map(|a| a.as_secs()),
        stale: false,
        stale_reason: None,
    }
}

/// The health a live check found just now, judged as the cluster controller judges it.
fn live(cluster: &OCluster, probe: &Probe, now: Timestamp) -> ClusterHealth {
    let info = &probe.info;
    let (health, why) = probe.verdict();
    let now = rfc3339(&Time(now));
    ClusterHealth {
        cluster_name: cluster.name_any(),
        status: status_name(health).into(),
        crm_version: Some(info.crm_version.clone()).filter(|v| !v.is_empty()),
        last_seen: now.clone(),
        node_count: Some(info.node_count),
        ready_nodes: Some(info.ready_nodes),
        availability: cluster.spec.availability.or(Some(info.availability)),
        message: why.map(String::from),
        checked_at: now,
        age_seconds: Some(0),
        stale: false,
        stale_reason: None,
    }
}

/// The cached answer, marked stale: older than `ttl`, and `problem` kept a live check from
/// replacing it.
fn stale(mut answer: ClusterHealth, ttl: Duration, problem: &SpokeError) -> ClusterHealth {
    let age = match answer.age_seconds {
        Some(seconds) => format!("last checked {seconds} s ago"),
        None => "never checked".into(),
    };
    answer.stale = true;
    answer.stale_reason = Some(format!(
        "{age} (CRM_HEALTH_CACHE_TTL is {} s) and a live check failed: {problem}",
        ttl.as_secs()
    ));
    answer
}

/// The health of `cluster` no older than the TTL allows, or marked stale.
async fn health_of(rest: &Rest, cluster: &OCluster) -> ClusterHealth {
    let ttl = rest.settings.health_cache_ttl;
    let last_check = rest.spokes.last_check(&cluster.name_any());
    let answer = cached(cluster, last_check, Timestamp::now());
    let age = answer.age_seconds.map(Duration::from_secs);
    if !needs_refresh(age, ttl) {
        return answer;
    }
    match rest.spokes.refresh(&cluster.name_any()).await {
        Ok(probe) => live(cluster, &probe, Timestamp::now()),
        Err(problem) => stale(answer, ttl, &problem),
    }
}

fn all(rest: &Rest) -> Vec<Arc<OCluster>> {
    let mut clusters = rest.clusters.state();
    clusters.sort_by_key(|c| c.name_any());
    clusters
}

/// Every cluster with its health.
pub async fn list(State(rest): State<Arc<Rest>>) -> Json<Vec<Cluster>> {
    let clusters = all(&rest);
    let health = join_all(clusters.iter().map(|c| health_of(&rest, c))).await;
    Json(
        clusters
            .iter()
            .zip(health)
            .map(|(c, health)| Cluster {
                name: c.name_any(),
                endpoint: c.spec.endpoint.clone(),
                default: c.spec.default,
                health,
            })
            .collect(),
    )
}

/// Health of every cluster.
pub async fn health_all(State(rest): State<Arc<Rest>>) -> Json<Vec<ClusterHealth>> {
    let clusters = all(&rest);
    Json(join_all(clusters.iter().map(|c| health_of(&rest, c))).await)
}

/// Health of one cluster.
pub async fn health(
    State(rest): State<Arc<Rest>>,
    Segments(ClusterName { name }): Segments<ClusterName>,
) -> ApiResult<Json<ClusterHealth>> {
    let cluster = rest
        .clusters
        .get(&ObjectRef::new(&name))
        .ok_or_else(|| ApiError::not_found(format!("cluster {name:?}")))?;
    Ok(Json(health_of(&rest, &cluster).await))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oaas_crds::cluster::OClusterSpec;
    use oaas_proto::crm::ClusterInfo;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn mk_cluster(checked: Option<i64>) -> OCluster {
        let mut cluster = OCluster::new("spoke-a", OClusterSpec::default());
        cluster.status = Some(OClusterStatus {
            health: Health::Unreachable,
            last_checked: checked.map(|s| Time(at(s))),
            last_seen: Some(Time(at(10))),
            message: Some("circuit open".into()),
            ..Default::default()
        });
        cluster
    }

    #[test]
    fn an_answer_is_served_cached_up_to_the_ttl() {
        let ttl = Duration::from_secs(15);
        assert!(!needs_refresh(Some(Duration::from_secs(15)), ttl));
        assert!(needs_refresh(Some(Duration::from_secs(16)), ttl));
        assert!(needs_refresh(None, ttl), "never checked");
        assert!(
            needs_refresh(Some(Duration::ZERO), Duration::ZERO),
            "a TTL of 0"
        );
    }

    #[test]
    fn the_cached_answer_carries_its_age_from_the_last_check() {
        let answer = cached(&mk_cluster(Some(100)), None, at(130));
        assert_eq!(answer.age_seconds, Some(30));
        assert_eq!(answer.status, "Unhealthy");
        assert!(
            answer
                .checked_at
                .unwrap()
                .starts_with("1970-01-01T00:01:40")
        );
        // Without a recorded check, the last answer dates it.
        assert_eq!(
            cached(&mk_cluster(None), None, at(130)).age_seconds,
            Some(120)
        );
        // A clock that went back does not make a negative age.
        assert_eq!(
            cached(&mk_cluster(Some(200)), None, at(130)).age_seconds,
            Some(0)
        );
        let never = OCluster::new("new", OClusterSpec::default());
        assert_eq!(cached(&never, None, at(130)).age_seconds, None);
    }

    #[test]
    fn this_processs_last_check_is_served_before_the_ocluster_status() {
        let last_check = OClusterStatus {
            health: Health::Healthy,
            last_checked: Some(Time(at(125))),
            ..Default::default()
        };
        let answer = cached(&mk_cluster(Some(100)), Some(last_check), at(130));
        assert_eq!(
            (answer.status.as_str(), answer.age_seconds),
            ("Healthy", Some(5))
        );
        assert_eq!(answer.message, None);
    }

    #[test]
    fn a_live_check_replaces_the_answer_and_a_failed_one_marks_it_stale() {
        let cluster = mk_cluster(Some(100));
        let probe = Probe {
            serving: true,
            info: ClusterInfo {
                node_count: 3,
                ready_nodes: 2,
                availability: 0.9,
                crm_version: "1.2.3".into(),
                ..Default::default()
            },
        };
        let answer = live(&cluster, &probe, at(130));
        assert_eq!(answer.status, "Healthy");
        assert_eq!((answer.age_seconds, answer.stale), (Some(0), false));
        assert_eq!(answer.ready_nodes, Some(2));
        assert_eq!(answer.message, None);
        assert_eq!(answer.checked_at, answer.last_seen);

        let answer = stale(
            cached(&cluster, None, at(130)),
            Duration::from_secs(15),
            &SpokeError::NotRegistered("spoke-a".into()),
        );
        assert!(answer.stale);
        assert_eq!(answer.status, "Unhealthy", "the cached answer is kept");
        let reason = answer.stale_reason.unwrap();
        assert!(
            reason.contains("30 s ago")
                && reason.contains("CRM_HEALTH_CACHE_TTL is 15 s")
                && reason.contains("not registered"),
            "{reason}"
        );
    }
}
