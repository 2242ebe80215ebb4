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
        id: "hub/ns/d".into(),
        namespace: "ns".into(),
        generation: Some(1),
        spec: OClassDeploymentSpec {
            package: "p".into(),
            class_key: "C".into(),
            target_clusters: targets.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
        resolved: Ok(mk_resolved()),
        clusters: targets.iter().map(|t| mk_cluster(t, &[])).collect(),
        reported: BTreeMap::new(),
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

/// The revision of the unit `plan` sends to `cluster`.
fn sent_revision(plan: &Plan, cluster: &str) -> i64 {
    plan.sends
        .iter()
        .find(|(c, _)| c == cluster)
        .map(|(_, u)| u.revision)
        .expect("a unit for the cluster")
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
    assert_eq!(unit.id, "hub/ns/d");
    assert_eq!(
        unit.namespace, "ns",
        "without a prefix, the hub namespace's own name"
    );
    assert!(plan.restores.is_empty(), "nothing was held before");
}

#[test]
fn each_cluster_gets_the_hub_namespace_under_its_own_prefix() {
    let mut inputs = mk_inputs(&["a", "b"]);
    inputs.clusters[1].namespace_prefix = "hub2-".into();
    let plan = rollout_of(decide(&inputs));
    let namespaces: Vec<&str> = plan
        .sends
        .iter()
        .map(|(_, u)| u.namespace.as_str())
        .collect();
    assert_eq!(namespaces, ["ns", "hub2-ns"]);
}

/// What a spoke reports holding: `revision`, its spec hashing to `spec_hash`.
fn held(revision: i64, spec_hash: i64) -> Held {
    Held {
        revision,
        spec_hash,
    }
}

#[test]
fn a_spoke_copy_edited_or_deleted_there_is_sent_again_as_a_restore() {
    let first = rollout_of(decide(&mk_inputs(&[
        "edited", "deleted", "intact", "old-crm",
    ])));
    let revision = |cluster: &str| sent_revision(&first, cluster);
    let mut inputs = mk_inputs(&["edited", "deleted", "intact", "old-crm"]);
    inputs.previous.plan = Some(first.plan.clone());
    inputs.previous.clusters = ["edited", "deleted", "intact", "old-crm"]
        .map(|c| ClusterDeploymentStatus {
            cluster: c.into(),
            revision: Some(revision(c)),
            ..Default::default()
        })
        .into();
    inputs.reported = BTreeMap::from([
        (
            "edited".to_string(),
            held(revision("edited"), revision("edited") ^ 1),
        ),
        (
            "intact".to_string(),
            held(revision("intact"), revision("intact")),
        ),
        // A CRM from before spec hashes: trusted on its revision.
        ("old-crm".to_string(), held(revision("old-crm"), 0)),
    ]);
    let plan = rollout_of(decide(&inputs));
    assert_eq!(sent_to(&plan), ["edited", "deleted"]);
    assert_eq!(
        plan.restores,
        BTreeSet::from(["deleted".to_string(), "edited".to_string()])
    );
    assert_eq!(
        plan.settled.keys().collect::<Vec<_>>(),
        ["intact", "old-crm"]
    );
}

#[test]
fn a_send_for_a_new_revision_is_no_restore() {
    let first = rollout_of(decide(&mk_inputs(&["a"])));
    let old = first.sends[0].1.revision;
    let mut inputs = mk_inputs(&["a"]);
    inputs.spec.target_env = Some("staging".into());
    inputs.reported = BTreeMap::from([("a".to_string(), held(old, old))]);
    let plan = rollout_of(decide(&inputs));
    assert_eq!(sent_to(&plan), ["a"]);
    assert!(plan.restores.is_empty());
}

#[test]
fn what_each_cluster_gets_depends_on_what_it_runs_and_whether_it_answers() {
    let first = rollout_of(decide(&mk_inputs(&["a", "b", "c", "d"])));
    let revision_of = |cluster: &str| sent_revision(&first, cluster);
    let mut inputs = mk_inputs(&["a", "b", "c", "d"]);
    inputs.previous.plan = Some(first.plan.clone());
    inputs.reported = [("a", revision_of("a")), ("b", revision_of("b") + 1)]
        .map(|(c, r)| (c.to_string(), held(r, r)))
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
                deployment_id: "hub/ns/d".into(),
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
    let namespaces: Vec<_> = rollout
        .status
        .clusters
        .iter()
        .map(|c| c.namespace.as_deref())
        .collect();
    assert_eq!(
        namespaces,
        [Some("ns"), Some("ns")],
        "the mapping shows per cluster"
    );
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
