//! One reconcile of a class deployment, decided: from what the hub knows (gathered into
//! [`Inputs`]) to the plan, the units to send, the clusters to clean up, and — once the
//! sends are done — the status ([`finish`]). The PM's controller gathers, acts and records;
//! every choice is made here.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use oaas_crds::class_deployment::{OClassDeploymentSpec, OClassDeploymentStatus, ReplicaPlan};
use oaas_crds::common::ConsistencyModel;
use oaas_proto::deployment as pb;

use crate::placement::{ClusterView, plan, reachable};
use crate::resolve::{Problem, ResolvedClass};
use crate::rollout::{self, Outcome, Rollout};
use crate::tenancy::spoke_namespace;
use crate::unit;

/// Everything a decision is made from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `<hub>/<namespace>/<name>` of the OClassDeployment: its id in every spoke.
    pub id: String,
    /// The OClassDeployment's namespace on the hub (mapped to a namespace in each spoke).
    pub namespace: String,
    pub generation: Option<i64>,
    pub spec: OClassDeploymentSpec,
    /// The class and functions it deploys, or why they cannot be resolved.
    pub resolved: Result<ResolvedClass, Problem>,
    /// Every OCluster the PM knows.
    pub clusters: Vec<ClusterView>,
    /// What each spoke last reported holding for this deployment.
    pub reported: BTreeMap<String, Held>,
    /// The status as last written.
    pub previous: OClassDeploymentStatus,
    pub now: Time,
}

/// What a spoke holds for a deployment: the revision the hub last wrote there, and a hash
/// of the spec as it is now (computed as the hub computes revisions; 0 from a spoke too old
/// to report it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    pub revision: i64,
    pub spec_hash: i64,
}

impl Held {
    /// Whether the spoke runs `revision` exactly as the hub sent it.
    pub fn runs(&self, revision: i64) -> bool {
        self.revision == revision && (self.spec_hash == revision || self.spec_hash == 0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing can be sent: write this status (and retry later).
    Blocked(Rollout),
    Rollout(Plan),
}

/// What to do for a deployment that resolves.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub plan: ReplicaPlan,
    /// The planned clusters differ from the last plan's.
    pub replanned: bool,
    /// Units for planned clusters that do not run their revision yet.
    pub sends: Vec<(String, pb::DeploymentUnit)>,
    /// Clusters among the sends that held this revision already, as far as the hub knew: the
    /// spoke's copy was edited or deleted there (drift) if the send changes anything.
    pub restores: BTreeSet<String>,
    /// Planned clusters already running their unit's revision, or that cannot be reached
    /// (with why): their outcome without a call.
    pub settled: BTreeMap<String, Outcome>,
    /// Clusters that left the plan and may still hold the class.
    pub removals: Vec<String>,
    /// Clusters that left the plan but cannot be reached to remove it (with why).
    pub stuck_removals: BTreeMap<String, String>,
}

pub fn decide(inputs: &Inputs) -> Decision {
    let resolved = match &inputs.resolved {
        Ok(resolved) => resolved,
        Err(problem) => return Decision::Blocked(rollout::blocked(&inputs.previous, problem)),
    };
    let previous_plan = inputs.previous.plan.as_ref();
    let strong = resolved.consistency == ConsistencyModel::Strong;
    let plan = plan(&inputs.spec, &inputs.clusters, previous_plan, strong);
    let view = |name: &str| inputs.clusters.iter().find(|c| c.name == name);
    let mut sends = Vec::new();
    let mut restores = BTreeSet::new();
    let mut settled = BTreeMap::new();
    for cluster in &plan.clusters {
        let Some(view) = view(cluster).filter(|v| reachable(cluster, Some(v)).is_ok()) else {
            let problem = reachable(cluster, view(cluster)).err().unwrap_or_default();
            settled.insert(cluster.clone(), Err(problem));
            continue;
        };
        let namespace = spoke_namespace(&view.namespace_prefix, &inputs.namespace);
        let target = unit::Target {
            cluster,
            namespace: &namespace,
            replicas: plan.replicas_per_cluster,
        };
        let unit = unit::build(&inputs.id, &inputs.spec, resolved, target);
        let held = inputs.reported.get(cluster);
        if held.is_some_and(|h| h.runs(unit.revision)) {
            settled.insert(cluster.clone(), Ok(unit.revision));
            continue;
        }
        let held_before = held.is_some_and(|h| h.revision == unit.revision)
            || inputs
                .previous
                .clusters
                .iter()
                .any(|c| &c.cluster == cluster && c.revision == Some(unit.revision));
        if held_before {
            restores.insert(cluster.clone());
        }
        sends.push((cluster.clone(), unit));
    }
    let mut removals = Vec::new();
    let mut stuck_removals = BTreeMap::new();
    for cluster in inputs.previous.clusters.iter().map(|c| &c.cluster) {
        // A cluster whose OCluster is gone holds nothing the hub can reach: nothing to do.
        if plan.clusters.contains(cluster) || view(cluster).is_none() {
            continue;
        }
        match reachable(cluster, view(cluster)) {
            Ok(()) => removals.push(cluster.clone()),
            Err(problem) => {
                stuck_removals.insert(cluster.clone(), problem);
            }
        }
    }
    Decision::Rollout(Plan {
        replanned: previous_plan.map(|p| &p.clusters) != Some(&plan.clusters),
        plan,
        sends,
        restores,
        settled,
        removals,
        stuck_removals,
    })
}

/// The clusters a deleted deployment must be removed from, each with whether it can be
/// reached; those whose OCluster is gone are left out (nothing to remove there).
pub fn cleanup_targets(
    spec: &OClassDeploymentSpec,
    status: &OClassDeploymentStatus,
    clusters: &[ClusterView],
) -> Vec<(String, Result<(), String>)> {
    let mut names: Vec<String> = status.clusters.iter().map(|c| c.cluster.clone()).collect();
    names.extend(status.plan.iter().flat_map(|p| p.clusters.clone()));
    names.extend(spec.target_clusters.clone());
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let view = clusters.iter().find(|c| c.name == name)?;
            let reach = reachable(&name, Some(view));
            Some((name, reach))
        })
        .collect()
}

/// What the sends and removals came to.
#[derive(Debug, Clone, Default)]
pub struct Acted {
    /// The outcome of each send.
    pub sent: BTreeMap<String, Outcome>,
    /// Removals that failed, with why.
    pub failed_removals: BTreeMap<String, String>,
    /// What each spoke reports for this deployment after the sends.
    pub reported: BTreeMap<String, pb::DeploymentStatus>,
}

/// The status after the sends.
pub fn finish(inputs: &Inputs, decided: Plan, acted: Acted) -> Rollout {
    let mut outcomes = decided.settled;
    outcomes.extend(acted.sent);
    let mut leaving = decided.stuck_removals;
    leaving.extend(acted.failed_removals);
    let mut rollout = rollout::status(
        &inputs.id,
        inputs.generation,
        &inputs.previous,
        decided.plan,
        rollout::Observed {
            outcomes: &outcomes,
            leaving: &leaving,
            reported: &acted.reported,
        },
        &inputs.now,
    );
    // Where each cluster holds it: what `kubectl get` and REST show as the mapping.
    for cluster in &mut rollout.status.clusters {
        if let Some(view) = inputs.clusters.iter().find(|c| c.name == cluster.cluster) {
            cluster.namespace = Some(spoke_namespace(&view.namespace_prefix, &inputs.namespace));
        }
    }
    rollout
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
