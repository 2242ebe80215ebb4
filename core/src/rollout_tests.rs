use super::*;
use k8s_openapi::jiff::Timestamp;

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

fn mk_report(phase: pb::Phase, revision: i64, message: &str) -> pb::DeploymentStatus {
    pb::DeploymentStatus {
        deployment_id: "ns/d".into(),
        phase: phase as i32,
        revision,
        message: message.into(),
        ..Default::default()
    }
}

fn mk_plan(clusters: &[&str]) -> ReplicaPlan {
    ReplicaPlan {
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    }
}

fn condition(rollout: &Rollout, type_: &str) -> Desired {
    rollout
        .conditions
        .iter()
        .find(|d| d.type_ == type_)
        .cloned()
        .unwrap()
}

/// One pass over clusters a and b: each with its outcome and report.
fn pass(
    a: (Outcome, Option<pb::DeploymentStatus>),
    b: (Outcome, Option<pb::DeploymentStatus>),
) -> Rollout {
    let outcomes = BTreeMap::from([("a".to_string(), a.0), ("b".to_string(), b.0)]);
    let reported: BTreeMap<String, pb::DeploymentStatus> = [("a", a.1), ("b", b.1)]
        .into_iter()
        .filter_map(|(c, r)| Some((c.to_string(), r?)))
        .collect();
    status(
        "ns/d",
        Some(2),
        &OClassDeploymentStatus::default(),
        mk_plan(&["a", "b"]),
        Observed {
            outcomes: &outcomes,
            leaving: &BTreeMap::new(),
            reported: &reported,
        },
        &now(),
    )
}

#[test]
fn phases_follow_the_clusters() {
    let available = || {
        (
            Ok(7),
            Some(mk_report(pb::Phase::Available, 7, "1/1 workloads ready")),
        )
    };
    let cases: Vec<(&str, Rollout, Phase, &str)> = vec![
        (
            "every target available",
            pass(available(), available()),
            Phase::Available,
            "2/2",
        ),
        (
            "a send failed",
            pass(available(), (Err("cluster b is unreachable".into()), None)),
            Phase::Degraded,
            "1/2",
        ),
        (
            "sent, no report yet",
            pass(available(), (Ok(7), None)),
            Phase::Progressing,
            "1/2",
        ),
        (
            "the spoke still runs an older revision",
            pass(
                available(),
                (Ok(8), Some(mk_report(pb::Phase::Available, 7, ""))),
            ),
            Phase::Progressing,
            "1/2",
        ),
        (
            "the spoke reports Degraded whatever the revision",
            pass(
                available(),
                (Ok(8), Some(mk_report(pb::Phase::Degraded, 7, "crash"))),
            ),
            Phase::Degraded,
            "1/2",
        ),
    ];
    for (name, rollout, phase, ready) in cases {
        assert_eq!(rollout.phase(), phase, "{name}");
        assert_eq!(
            rollout.status.clusters_ready.as_deref(),
            Some(ready),
            "{name}"
        );
        assert_eq!(rollout.status.observed_generation, Some(2), "{name}");
        assert_eq!(
            condition(&rollout, AVAILABLE).status,
            phase == Phase::Available,
            "{name}"
        );
    }
}

#[test]
fn a_degraded_target_is_named_in_the_condition() {
    let rollout = pass(
        (Ok(7), Some(mk_report(pb::Phase::Available, 7, ""))),
        (Err("cluster b is unreachable".into()), None),
    );
    assert_eq!(
        rollout.degraded_message(),
        Some("b: cluster b is unreachable")
    );
    let b = &rollout.status.clusters[1];
    assert_eq!((b.cluster.as_str(), b.phase), ("b", Some(Phase::Degraded)));
}

#[test]
fn a_pending_send_waits_for_the_spoke() {
    let rollout = pass((Ok(7), None), (Ok(7), None));
    assert_eq!(rollout.phase(), Phase::Progressing);
    assert!(condition(&rollout, PROGRESSING).status);
    assert_eq!(
        condition(&rollout, AVAILABLE).message,
        "0/2 clusters available"
    );
    assert_eq!(rollout.status.clusters[0].phase, Some(Phase::Pending));
}

#[test]
fn clusters_leaving_the_plan_stay_listed_but_do_not_count() {
    let previous = OClassDeploymentStatus {
        clusters: vec![ClusterDeploymentStatus {
            cluster: "old".into(),
            phase: Some(Phase::Available),
            ..Default::default()
        }],
        ..Default::default()
    };
    let outcomes = BTreeMap::from([("a".to_string(), Ok(7))]);
    let reported = BTreeMap::from([("a".to_string(), mk_report(pb::Phase::Available, 7, ""))]);
    let leaving = BTreeMap::from([("old".to_string(), "no answer".to_string())]);
    let rollout = status(
        "ns/d",
        Some(1),
        &previous,
        mk_plan(&["a"]),
        Observed {
            outcomes: &outcomes,
            leaving: &leaving,
            reported: &reported,
        },
        &now(),
    );
    assert_eq!(rollout.phase(), Phase::Available);
    let old = rollout
        .status
        .clusters
        .iter()
        .find(|c| c.cluster == "old")
        .unwrap();
    assert_eq!(old.message.as_deref(), Some("removing: no answer"));
}

#[test]
fn no_target_is_degraded_with_a_reason() {
    let rollout = status(
        "ns/d",
        Some(1),
        &OClassDeploymentStatus::default(),
        mk_plan(&[]),
        Observed {
            outcomes: &BTreeMap::new(),
            leaving: &BTreeMap::new(),
            reported: &BTreeMap::new(),
        },
        &now(),
    );
    assert_eq!(rollout.phase(), Phase::Degraded);
    assert_eq!(condition(&rollout, READY).reason, "NoClusters");
}

#[test]
fn last_sync_moves_only_when_the_cluster_changes() {
    let earlier = Time(Timestamp::from_second(1_700_000_000).unwrap());
    let before = ClusterDeploymentStatus {
        cluster: "a".into(),
        phase: Some(Phase::Available),
        revision: Some(7),
        last_sync: Some(earlier.clone()),
        ..Default::default()
    };
    let report = mk_report(pb::Phase::Available, 7, "");
    let same = cluster_status("a", "ns/d", &Ok(7), Some(&report), Some(&before), &now());
    assert_eq!(same.last_sync, Some(earlier));
    let progressing = mk_report(pb::Phase::Progressing, 7, "");
    let moved = cluster_status(
        "a",
        "ns/d",
        &Ok(7),
        Some(&progressing),
        Some(&before),
        &now(),
    );
    assert_eq!(moved.last_sync, Some(now()));
}

#[test]
fn a_blocked_deployment_is_degraded_with_the_problem() {
    let problem = Problem {
        reason: "PackageNotFound",
        message: "OPackage ns/p does not exist".into(),
    };
    let rollout = blocked(&OClassDeploymentStatus::default(), &problem);
    assert_eq!(rollout.phase(), Phase::Degraded);
    for type_ in [READY, AVAILABLE, PROGRESSING] {
        assert!(!condition(&rollout, type_).status);
    }
    let degraded = condition(&rollout, DEGRADED);
    assert!(degraded.status);
    assert_eq!(degraded.reason, "PackageNotFound");
}

#[test]
fn only_progress_within_the_same_plan_may_wait() {
    let mk = |phase: Phase, clusters: &[(&str, Phase)]| OClassDeploymentStatus {
        phase: Some(phase),
        observed_generation: Some(1),
        plan: Some(mk_plan(&["a", "b"])),
        clusters: clusters
            .iter()
            .map(|(name, phase)| ClusterDeploymentStatus {
                cluster: name.to_string(),
                phase: Some(*phase),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let sent = mk(
        Phase::Progressing,
        &[("a", Phase::Pending), ("b", Phase::Pending)],
    );
    let half = mk(
        Phase::Progressing,
        &[("a", Phase::Available), ("b", Phase::Progressing)],
    );
    assert!(
        only_progress(&sent, &half),
        "a step of a rollout in progress"
    );
    let done = mk(
        Phase::Available,
        &[("a", Phase::Available), ("b", Phase::Available)],
    );
    assert!(!only_progress(&half, &done), "the end is written at once");
    assert!(
        !only_progress(&OClassDeploymentStatus::default(), &sent),
        "so is the start"
    );
    let failing = mk(
        Phase::Progressing,
        &[("a", Phase::Degraded), ("b", Phase::Pending)],
    );
    assert!(!only_progress(&sent, &failing), "a Degraded cluster");
    let mut replanned = half.clone();
    replanned.plan = Some(mk_plan(&["a", "c"]));
    assert!(!only_progress(&sent, &replanned), "a new plan");
    let mut updated = half;
    updated.observed_generation = Some(2);
    assert!(!only_progress(&sent, &updated), "a new generation");
}
