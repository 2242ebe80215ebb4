//! Which clusters a class deployment runs in, from what the hub knows of each OCluster:
//! explicit names plus healthy selector matches, through availability planning.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use oaas_crds::class_deployment::{OClassDeploymentSpec, ReplicaPlan};
use oaas_crds::cluster::ClusterHealth;

use crate::planning::{Candidate, UNKNOWN_AVAILABILITY, place, replicas_per_cluster};

/// How long a selector-chosen cluster that turned unreachable keeps its place by default.
pub const DEFAULT_FAILOVER_GRACE: Duration = Duration::from_secs(30);

/// What the hub knows of one OCluster when it decides.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub health: ClusterHealth,
    pub availability: Option<f64>,
    /// How long the cluster has not been Ready (zero while it is).
    pub unready_for: Duration,
    /// Whether the PM has a channel to the cluster's CRM.
    pub connected: bool,
    /// Put before a hub namespace's name to name its namespace in this cluster.
    pub namespace_prefix: String,
    /// Marked as where deployments without targets go (`spec.default`).
    pub default: bool,
    /// Nodes the CRM last reported ready.
    pub ready_nodes: Option<u32>,
}

/// Whether units can be sent to `cluster` now; the message says why not.
pub fn reachable(cluster: &str, view: Option<&ClusterView>) -> Result<(), String> {
    match view {
        None => Err(format!("OCluster {cluster} does not exist")),
        Some(v) if v.health == ClusterHealth::Unreachable => {
            Err(format!("cluster {cluster} is unreachable"))
        }
        Some(v) if !v.connected => Err(format!("cluster {cluster} is not registered yet")),
        Some(_) => Ok(()),
    }
}

/// The plan: explicit names always; selector matches while healthy — a planned one that
/// turned unreachable keeps its place for the failover grace period, then a healthy match
/// replaces it — as few as the availability target needs. A deployment that names no
/// cluster and has no selector goes to the default clusters, or, when none is marked (or
/// allowed), is planned like a selector matching every cluster. `availableClusters` limits
/// what is chosen automatically. Replicas per cluster follow [`replicas_per_cluster`].
pub fn plan(
    spec: &OClassDeploymentSpec,
    clusters: &[ClusterView],
    previous: Option<&ReplicaPlan>,
    strong: bool,
) -> ReplicaPlan {
    let grace = spec
        .failover_grace_seconds
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(DEFAULT_FAILOVER_GRACE);
    let was_planned = |name: &str| previous.is_some_and(|p| p.clusters.iter().any(|c| c == name));
    let view = |name: &str| clusters.iter().find(|c| c.name == name);
    let allowed = |name: &str| {
        spec.available_clusters.is_empty() || spec.available_clusters.iter().any(|a| a == name)
    };
    let untargeted = spec.target_clusters.is_empty() && spec.cluster_selector.is_none();
    let defaults: Vec<&String> = clusters
        .iter()
        .filter(|c| untargeted && c.default && allowed(&c.name))
        .map(|c| &c.name)
        .collect();
    let mut candidates: Vec<Candidate> = spec
        .target_clusters
        .iter()
        .chain(defaults.iter().copied())
        .map(|name| Candidate {
            name: name.clone(),
            availability: view(name).and_then(|c| c.availability),
            explicit: true,
        })
        .collect();
    let everything = LabelSelector::default();
    let selector = match &spec.cluster_selector {
        Some(selector) => Some(selector),
        None if untargeted && defaults.is_empty() => Some(&everything),
        None => None,
    };
    if let Some(selector) = selector {
        for cluster in clusters {
            if candidates.iter().any(|c| c.name == cluster.name)
                || !allowed(&cluster.name)
                || !matches_selector(selector, &cluster.labels)
            {
                continue;
            }
            let usable = cluster.health == ClusterHealth::Healthy
                || (was_planned(&cluster.name) && cluster.unready_for < grace);
            if usable {
                candidates.push(Candidate {
                    name: cluster.name.clone(),
                    availability: cluster.availability,
                    explicit: false,
                });
            }
        }
    }
    let target = spec.nfr.as_ref().and_then(|n| n.availability);
    let placement = place(&candidates, target, strong);
    let replicas = replicas_in(&placement.clusters, clusters, target);
    let mut reason = placement.reason;
    if defaults.iter().any(|d| placement.clusters.contains(d)) {
        reason = format!("default cluster; {reason}");
    }
    if replicas > 1 {
        reason = format!("{reason}; {replicas} replicas per function in each cluster");
    }
    ReplicaPlan {
        clusters: placement.clusters,
        replicas_per_cluster: replicas,
        expected_availability: Some((placement.expected_availability * 1e6).round() / 1e6),
        reason,
    }
}

/// One replica count for every planned cluster: the one their least available node and
/// smallest ready node count call for.
fn replicas_in(planned: &[String], clusters: &[ClusterView], target: Option<f64>) -> u32 {
    let views = || clusters.iter().filter(|c| planned.contains(&c.name));
    let availability = views()
        .map(|c| c.availability.unwrap_or(UNKNOWN_AVAILABILITY))
        .reduce(f64::min)
        .unwrap_or(UNKNOWN_AVAILABILITY);
    let ready_nodes = views().filter_map(|c| c.ready_nodes).min();
    replicas_per_cluster(target, availability, ready_nodes)
}

pub fn matches_selector(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let equal = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    equal && expressions
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    /// A healthy, connected cluster with these labels.
    pub fn mk_cluster(name: &str, labels: &[(&str, &str)]) -> ClusterView {
        ClusterView {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            health: ClusterHealth::Healthy,
            availability: Some(0.99),
            unready_for: Duration::ZERO,
            connected: true,
            namespace_prefix: String::new(),
            default: false,
            ready_nodes: Some(3),
        }
    }

    fn unreachable_for(mut cluster: ClusterView, secs: u64) -> ClusterView {
        cluster.health = ClusterHealth::Unreachable;
        cluster.unready_for = Duration::from_secs(secs);
        cluster
    }

    fn by_region(region: &str) -> OClassDeploymentSpec {
        OClassDeploymentSpec {
            cluster_selector: Some(LabelSelector {
                match_labels: Some([("region".to_string(), region.to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn planned(clusters: &[&str]) -> ReplicaPlan {
        ReplicaPlan {
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn plans_explicit_names_and_healthy_selector_matches() {
        let clusters = [
            mk_cluster("eu-1", &[("region", "eu")]),
            mk_cluster("us-1", &[("region", "us")]),
            unreachable_for(mk_cluster("eu-2", &[("region", "eu")]), 60),
        ];
        let cases: Vec<(&str, OClassDeploymentSpec, Option<ReplicaPlan>, Vec<&str>)> = vec![
            (
                "selector: healthy matches only",
                by_region("eu"),
                None,
                vec!["eu-1"],
            ),
            (
                "explicit names are kept even when unhealthy",
                OClassDeploymentSpec {
                    target_clusters: vec!["eu-2".into()],
                    ..Default::default()
                },
                None,
                vec!["eu-2"],
            ),
            (
                "an unreachable planned cluster past the grace is replaced",
                by_region("eu"),
                Some(planned(&["eu-2"])),
                vec!["eu-1"],
            ),
            ("no match, no cluster", by_region("ap"), None, vec![]),
        ];
        for (name, spec, previous, expected) in cases {
            let plan = plan(&spec, &clusters, previous.as_ref(), false);
            assert_eq!(plan.clusters, expected, "{name}");
        }
    }

    #[test]
    fn a_planned_cluster_keeps_its_place_within_the_failover_grace() {
        let spec = OClassDeploymentSpec {
            failover_grace_seconds: Some(120),
            ..by_region("eu")
        };
        let clusters = [unreachable_for(mk_cluster("eu-2", &[("region", "eu")]), 60)];
        let kept = plan(&spec, &clusters, Some(&planned(&["eu-2"])), false);
        assert_eq!(kept.clusters, ["eu-2"]);
        let fresh = plan(&spec, &clusters, None, false);
        assert!(fresh.clusters.is_empty(), "never planned: not taken");
    }

    #[test]
    fn a_deployment_without_targets_is_placed() {
        let marked = |mut c: ClusterView| {
            c.default = true;
            c
        };
        let mut unknown = mk_cluster("c", &[]);
        unknown.availability = Some(0.5);
        let plain = [
            mk_cluster("a", &[]),
            mk_cluster("b", &[]),
            unknown,
            unreachable_for(mk_cluster("down", &[]), 60),
        ];
        let with_default = [marked(mk_cluster("d", &[])), mk_cluster("a", &[])];
        let available = |names: &[&str]| OClassDeploymentSpec {
            available_clusters: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        let target = |availability: f64, spec: OClassDeploymentSpec| OClassDeploymentSpec {
            nfr: Some(oaas_crds::common::NfrRequirements {
                availability: Some(availability),
                ..Default::default()
            }),
            ..spec
        };
        let cases: Vec<(&str, OClassDeploymentSpec, &[ClusterView], Vec<&str>)> = vec![
            (
                "the default cluster when one is marked",
                Default::default(),
                &with_default,
                vec!["d"],
            ),
            (
                "not the default when availableClusters leaves it out",
                available(&["a"]),
                &with_default,
                vec!["a"],
            ),
            (
                "no target: every healthy cluster",
                Default::default(),
                &plain,
                vec!["a", "b", "c"],
            ),
            (
                "a target: the fewest, most available healthy clusters",
                target(0.98, Default::default()),
                &plain,
                vec!["a"],
            ),
            (
                "within availableClusters",
                target(0.98, available(&["b", "c"])),
                &plain,
                vec!["b"],
            ),
            (
                "named clusters never bring the default along",
                OClassDeploymentSpec {
                    target_clusters: vec!["a".into()],
                    ..Default::default()
                },
                &with_default,
                vec!["a"],
            ),
        ];
        for (name, spec, clusters, expected) in cases {
            let plan = plan(&spec, clusters, None, false);
            assert_eq!(plan.clusters, expected, "{name}: {}", plan.reason);
        }
        let reason = plan(&Default::default(), &with_default, None, false).reason;
        assert!(reason.starts_with("default cluster"), "{reason}");
    }

    #[test]
    fn the_plan_raises_replicas_for_the_least_available_cluster() {
        let mut weak = mk_cluster("weak", &[]);
        weak.availability = Some(0.9);
        let strong_one = mk_cluster("strong", &[]);
        let spec = |availability: f64| OClassDeploymentSpec {
            target_clusters: vec!["weak".into(), "strong".into()],
            nfr: Some(oaas_crds::common::NfrRequirements {
                availability: Some(availability),
                ..Default::default()
            }),
            ..Default::default()
        };
        let clusters = [weak, strong_one];
        let plan_for = |availability| plan(&spec(availability), &clusters, None, false);
        assert_eq!(plan_for(0.9).replicas_per_cluster, 1);
        let raised = plan_for(0.99);
        assert_eq!(
            raised.replicas_per_cluster, 2,
            "0.9 nodes need two for 0.99"
        );
        assert!(raised.reason.contains("2 replicas"), "{}", raised.reason);
        assert_eq!(
            plan_for(0.999_9).replicas_per_cluster,
            3,
            "at most the 3 ready nodes"
        );
    }

    #[test]
    fn reachability_names_the_missing_piece() {
        let mut disconnected = mk_cluster("a", &[]);
        disconnected.connected = false;
        let cases = [
            (None, Some("OCluster a does not exist")),
            (
                Some(unreachable_for(mk_cluster("a", &[]), 1)),
                Some("cluster a is unreachable"),
            ),
            (Some(disconnected), Some("cluster a is not registered yet")),
            (Some(mk_cluster("a", &[])), None),
        ];
        for (view, expected) in cases {
            assert_eq!(reachable("a", view.as_ref()).err().as_deref(), expected);
        }
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let requirement = |operator: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "region".into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        };
        let cases = [
            (by_region("eu").cluster_selector.unwrap(), true),
            (by_region("us").cluster_selector.unwrap(), false),
            (requirement("In", &["eu", "us"]), true),
            (requirement("NotIn", &["eu"]), false),
            (requirement("Exists", &[]), true),
            (requirement("DoesNotExist", &[]), false),
            (requirement("Bogus", &[]), false),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                matches_selector(&selector, &labels),
                expected,
                "{selector:?}"
            );
        }
    }
}
