use super::*;
use k8s_openapi::jiff::Timestamp;
use oaas_crds::class_deployment::ClusterDeploymentStatus;
use oaas_crds::class_runtime::RuntimeFunction;
use oaas_crds::cluster::ClusterHealth;
use oaas_crds::common::{Phase, ProvisionConfig};

use crate::placement::tests::mk_cluster;

fn mk_resolved() -> ResolvedClass {
    ResolvedClass {
        functions: vec![RuntimeFunction {
            function_key: "f".into(),
            provision_config: ProvisionConfig {
                container_image: Some("img/f:1".into()),
                ..Default::default()
            },
            ..Default::default()
        }],
        consistency: ConsistencyModel::default(),
    }
}

/// A deployment of a resolved class to these clusters, every one healthy and connected.
fn mk_inputs(targets: &[&str]) -> Inputs {
    Inputs {
        id: "ns/d".into(),
        generation: Some(1),
        spec: OClassDeploymentSpec {
            package: "p".into(),
            class_key: "C".into(),
            target_clusters: targets.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
        resolved: Ok(mk_resolved()),
        clusters: targets.iter().map(|t| mk_cluster(t, &[])).collect(),
        reported_revisions: BTreeMap::new(),
        previous: OClassDeploymentStatus::default(),
        now: Time(Timestamp::from_second(1_800_000_000).unwrap()),
    }
}

fn rollout_of(decision: Decision) -> Plan {
    match decision {
        Decision::Rollout(plan) => plan,
        Decision::Blocked(rollout) => panic!("blocked: {rollout:?}"),
    }
}

fn sent_to(plan: &Plan) -> Vec<&str> {
    plan.sends.iter().map(|(c, _)| c.as_str()).collect()
}

#[test]
fn a_new_deployment_sends_a_unit_to_each_target() {
    let plan = rollout_of(decide(&mk_inputs(&["a", "b"])));
    assert_eq!(sent_to(&plan), ["a", "b"]);
    assert!(plan.replanned);
    assert!(plan.settled.is_empty() && plan.removals.is_empty());
    let (cluster, unit) = &plan.sends[1];
    assert_eq!((cluster.as_str(), unit.target_cluster.as_str()), ("b", "b"));
    assert_eq!(unit.id, "ns/d");
}

#[test]
fn what_each_cluster_gets_depends_on_what_it_runs_and_whether_it_answers() {
    let first = rollout_of(decide(&mk_inputs(&["a", "b", "c", "d"])));
    let revision_of = |cluster: &str| {
        first
            .sends
            .iter()
            .find(|(c, _)| c == cluster)
            .map(|(_, u)| u.revision)
            .unwrap()
    };
    let mut inputs = mk_inputs(&["a", "b", "c", "d"]);
    inputs.previous.plan = Some(first.plan.clone());
    inputs.reported_revisions = [("a", revision_of("a")), ("b", revision_of("b") + 1)]
        .map(|(c, r)| (c.to_string(), r))
        .into();
    inputs.clusters[2].health = ClusterHealth::Unreachable;
    inputs.clusters[3].connected = false;
    let plan = rollout_of(decide(&inputs));
    assert!(!plan.replanned);
    let cases = [
        ("a", "runs this revision", None, Some(Ok(revision_of("a")))),
        ("b", "runs another revision", Some(()), None),
        (
            "c",
            "unreachable",
            None,
            Some(Err("cluster c is unreachable".to_string())),
        ),
        (
            "d",
            "not connected",
            None,
            Some(Err("cluster d is not registered yet".to_string())),
        ),
    ];
    for (cluster, why, send, settled) in cases {
        let sent = plan.sends.iter().any(|(c, _)| c == cluster);
        assert_eq!(sent, send.is_some(), "{cluster} ({why}): sent");
        assert_eq!(
            plan.settled.get(cluster),
            settled.as_ref(),
            "{cluster} ({why})"
        );
    }
}

#[test]
fn an_unresolvable_class_is_blocked_with_its_problem() {
    let mut inputs = mk_inputs(&["a"]);
    inputs.resolved = Err(Problem {
        reason: "ClassNotFound",
        message: "package p has no class \"C\"".into(),
    });
    match decide(&inputs) {
        Decision::Blocked(rollout) => {
            assert_eq!(rollout.phase(), Phase::Degraded);
            assert_eq!(
                rollout.degraded_message(),
                Some("package p has no class \"C\"")
            );
        }
        other => panic!("expected blocked, got {other:?}"),
    }
}

#[test]
fn clusters_leaving_the_plan_are_removed_when_they_can_be() {
    let mut inputs = mk_inputs(&["a"]);
    inputs.clusters.push(mk_cluster("gone-reachable", &[]));
    let mut down = mk_cluster("gone-down", &[]);
    down.health = ClusterHealth::Unreachable;
    inputs.clusters.push(down);
    inputs.previous.clusters = ["a", "gone-reachable", "gone-down", "deleted-ocluster"]
        .map(|c| ClusterDeploymentStatus {
            cluster: c.into(),
            ..Default::default()
        })
        .into();
    let plan = rollout_of(decide(&inputs));
    assert_eq!(plan.removals, ["gone-reachable"]);
    assert_eq!(
        plan.stuck_removals,
        BTreeMap::from([(
            "gone-down".to_string(),
            "cluster gone-down is unreachable".to_string()
        )])
    );
}

#[test]
fn finishing_combines_settled_and_sent_outcomes() {
    let inputs = mk_inputs(&["a", "b"]);
    let mut plan = rollout_of(decide(&inputs));
    let (_, unit_b) = plan.sends.pop().unwrap();
    plan.settled
        .insert("a".into(), Err("cluster a is unreachable".into()));
    let acted = Acted {
        sent: BTreeMap::from([("b".to_string(), Ok(unit_b.revision))]),
        reported: BTreeMap::from([(
            "b".to_string(),
            pb::DeploymentStatus {
                deployment_id: "ns/d".into(),
                phase: pb::Phase::Available as i32,
                revision: unit_b.revision,
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    let rollout = finish(&inputs, plan, acted);
    assert_eq!(rollout.phase(), Phase::Degraded);
    assert_eq!(rollout.status.clusters_ready.as_deref(), Some("1/2"));
    assert_eq!(rollout.status.observed_generation, Some(1));
}

#[test]
fn cleanup_covers_every_cluster_that_may_hold_the_class() {
    let mut spec = mk_inputs(&["a"]).spec;
    spec.target_clusters.push("never-created".into());
    let status = OClassDeploymentStatus {
        clusters: vec![ClusterDeploymentStatus {
            cluster: "b".into(),
            ..Default::default()
        }],
        plan: Some(ReplicaPlan {
            clusters: vec!["c".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut c = mk_cluster("c", &[]);
    c.health = ClusterHealth::Unreachable;
    let clusters = [mk_cluster("a", &[]), mk_cluster("b", &[]), c];
    let targets = cleanup_targets(&spec, &status, &clusters);
    assert_eq!(
        targets,
        [
            ("a".to_string(), Ok(())),
            ("b".to_string(), Ok(())),
            ("c".to_string(), Err("cluster c is unreachable".to_string())),
        ]
    );
}
