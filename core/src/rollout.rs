//! A class deployment's status from what happened to its units and what its spokes report:
//! one entry per cluster, the phase, and the standard conditions.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use oaas_crds::class_deployment::{ClusterDeploymentStatus, OClassDeploymentStatus, ReplicaPlan};
use oaas_crds::common::Phase;
use oaas_crds::conditions::{AVAILABLE, DEGRADED, Desired, PROGRESSING, READY};
use oaas_crds::convert::{condition_from_proto, phase_from_proto, recommendation_from_proto};
use oaas_proto::deployment as pb;

use crate::resolve::Problem;

/// What became of the unit sent to one cluster: the revision it runs (or was just sent),
/// or why it could not be sent.
pub type Outcome = Result<i64, String>;

/// The status to write and the conditions to merge into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub status: OClassDeploymentStatus,
    pub conditions: Vec<Desired>,
}

impl Rollout {
    pub fn phase(&self) -> Phase {
        self.status.phase.unwrap_or_default()
    }

    /// The Degraded condition's message, when degraded.
    pub fn degraded_message(&self) -> Option<&str> {
        self.conditions
            .iter()
            .find(|d| d.type_ == DEGRADED && d.status)
            .map(|d| d.message.as_str())
    }
}

/// How long a rollout's progress may wait before it is written (the controller looks again
/// every 15 s while a rollout is in progress, so held progress shows within that).
pub const PROGRESS_HOLD: Duration = Duration::from_secs(10);

/// Whether `next` only adds progress to a rollout that was and still is Progressing under the
/// same plan and generation, with no cluster Degraded: such a write may wait up to
/// [`PROGRESS_HOLD`] after the last one. A fast rollout's steps per cluster (sent, applying,
/// progressing, one of two available) are overtaken within a second or two; writing each
/// would cost the hub a status write per step and cluster, for states nobody sees. The
/// start, the end (Available), any Degraded and any new plan are written at once.
pub fn only_progress(previous: &OClassDeploymentStatus, next: &OClassDeploymentStatus) -> bool {
    let progressing = |s: &OClassDeploymentStatus| s.phase == Some(Phase::Progressing);
    progressing(previous)
        && progressing(next)
        && previous.plan == next.plan
        && previous.observed_generation == next.observed_generation
        && next
            .clusters
            .iter()
            .all(|c| c.phase != Some(Phase::Degraded))
}

/// What a rollout pass found, cluster by cluster.
pub struct Observed<'a> {
    /// An entry per planned cluster.
    pub outcomes: &'a BTreeMap<String, Outcome>,
    /// Clusters that left the plan but could not be cleaned up yet, with why.
    pub leaving: &'a BTreeMap<String, String>,
    /// What each spoke last reported for this deployment.
    pub reported: &'a BTreeMap<String, pb::DeploymentStatus>,
}

/// The status after a rollout pass.
pub fn status(
    id: &str,
    generation: Option<i64>,
    previous: &OClassDeploymentStatus,
    plan: ReplicaPlan,
    observed: Observed,
    now: &Time,
) -> Rollout {
    let Observed {
        outcomes,
        leaving,
        reported,
    } = observed;
    let mut clusters: Vec<ClusterDeploymentStatus> = outcomes
        .iter()
        .map(|(cluster, outcome)| {
            let before = previous.clusters.iter().find(|c| &c.cluster == cluster);
            cluster_status(cluster, id, outcome, reported.get(cluster), before, now)
        })
        .collect();
    clusters.extend(previous.clusters.iter().filter_map(|old| {
        leaving
            .get(&old.cluster)
            .map(|problem| ClusterDeploymentStatus {
                message: Some(format!("removing: {problem}")),
                ..old.clone()
            })
    }));
    let (phase, conditions) = aggregate(&clusters, &plan.clusters);
    let ready = clusters
        .iter()
        .filter(|c| plan.clusters.contains(&c.cluster) && c.phase == Some(Phase::Available))
        .count();
    let status = OClassDeploymentStatus {
        observed_generation: generation,
        phase: Some(phase),
        clusters_ready: Some(format!("{ready}/{}", plan.clusters.len())),
        plan: Some(plan),
        clusters,
        ..previous.clone()
    };
    Rollout { status, conditions }
}

/// The status when the deployment cannot be rolled out at all (its package or class).
pub fn blocked(previous: &OClassDeploymentStatus, problem: &Problem) -> Rollout {
    let message = problem.message.clone();
    let conditions = [READY, AVAILABLE, PROGRESSING]
        .map(|t| Desired::new(t, false, problem.reason, message.clone()))
        .into_iter()
        .chain([Desired::new(
            DEGRADED,
            true,
            problem.reason,
            message.clone(),
        )])
        .collect();
    Rollout {
        status: OClassDeploymentStatus {
            phase: Some(Phase::Degraded),
            ..previous.clone()
        },
        conditions,
    }
}

/// What one target cluster runs; a failed send or a stale revision shows.
fn cluster_status(
    cluster: &str,
    id: &str,
    outcome: &Outcome,
    reported: Option<&pb::DeploymentStatus>,
    before: Option<&ClusterDeploymentStatus>,
    now: &Time,
) -> ClusterDeploymentStatus {
    let base = ClusterDeploymentStatus {
        cluster: cluster.to_string(),
        deployment_id: id.to_string(),
        last_sync: before.and_then(|b| b.last_sync.clone()),
        ..Default::default()
    };
    match (outcome, reported) {
        (Err(problem), _) => ClusterDeploymentStatus {
            phase: Some(Phase::Degraded),
            message: Some(problem.clone()),
            ..base
        },
        (Ok(_), None) => ClusterDeploymentStatus {
            phase: Some(Phase::Pending),
            message: Some("sent; waiting for the spoke to report".into()),
            ..base
        },
        (Ok(revision), Some(status)) => {
            let current = status.revision == *revision;
            let phase = phase_from_proto(status.phase()).unwrap_or(Phase::Pending);
            let phase = if current || phase == Phase::Degraded {
                phase
            } else {
                Phase::Applying
            };
            let changed = before
                .is_none_or(|b| b.phase != Some(phase) || b.revision != Some(status.revision));
            ClusterDeploymentStatus {
                phase: Some(phase),
                conditions: status.conditions.iter().map(condition_from_proto).collect(),
                last_sync: if changed {
                    Some(now.clone())
                } else {
                    base.last_sync.clone()
                },
                message: Some(status.message.clone()).filter(|m| !m.is_empty()),
                revision: Some(status.revision),
                ready_functions: status.functions.iter().filter(|f| f.ready).count() as u32,
                total_functions: status.functions.len() as u32,
                recommendations: status
                    .recommendations
                    .iter()
                    .map(recommendation_from_proto)
                    .collect(),
                ..base
            }
        }
    }
}

/// The deployment's phase and conditions from its clusters' states.
fn aggregate(clusters: &[ClusterDeploymentStatus], targets: &[String]) -> (Phase, Vec<Desired>) {
    let of_targets: Vec<&ClusterDeploymentStatus> = clusters
        .iter()
        .filter(|c| targets.contains(&c.cluster))
        .collect();
    let available = of_targets
        .iter()
        .filter(|c| c.phase == Some(Phase::Available))
        .count();
    let degraded: Vec<String> = of_targets
        .iter()
        .filter(|c| c.phase == Some(Phase::Degraded))
        .map(|c| format!("{}: {}", c.cluster, c.message.clone().unwrap_or_default()))
        .collect();
    let summary = format!("{available}/{} clusters available", targets.len());
    if targets.is_empty() {
        let message =
            "no cluster matches: check targetClusters, clusterSelector and cluster health";
        return (
            Phase::Degraded,
            vec![
                Desired::new(READY, false, "NoClusters", message),
                Desired::new(AVAILABLE, false, "NoClusters", message),
                Desired::new(PROGRESSING, false, "NoClusters", message),
                Desired::new(DEGRADED, true, "NoClusters", message),
            ],
        );
    }
    let ready = Desired::new(
        READY,
        true,
        "Planned",
        format!("deployed to {}", targets.join(", ")),
    );
    if available == targets.len() {
        return (
            Phase::Available,
            vec![
                ready,
                Desired::new(AVAILABLE, true, "AllClustersAvailable", summary.clone()),
                Desired::new(PROGRESSING, false, "RolloutComplete", summary),
                Desired::new(DEGRADED, false, "AsExpected", ""),
            ],
        );
    }
    if !degraded.is_empty() {
        return (
            Phase::Degraded,
            vec![
                ready,
                Desired::new(AVAILABLE, false, "ClustersDegraded", summary.clone()),
                Desired::new(PROGRESSING, false, "ClustersDegraded", summary),
                Desired::new(DEGRADED, true, "ClustersDegraded", degraded.join("; ")),
            ],
        );
    }
    (
        Phase::Progressing,
        vec![
            ready,
            Desired::new(AVAILABLE, false, "RollingOut", summary.clone()),
            Desired::new(PROGRESSING, true, "RollingOut", summary),
            Desired::new(DEGRADED, false, "AsExpected", ""),
        ],
    )
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
