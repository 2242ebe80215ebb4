//! The ClassRuntime state machine: from what was rendered and what the cluster reports
//! about each workload to a phase, standard conditions and per-function status.
//!
//! Pending (never reconciled) → Applying (spec changed, children being applied) →
//! Progressing (children exist, not all ready) → Available (every function and the data grid
//! ready), or Degraded (a child cannot be applied or cannot become ready, with a reason).
use std::collections::HashMap;
use std::time::Duration;

use oaas_crds::class_runtime::FunctionRuntimeStatus;
use oaas_crds::common::Phase;
use oaas_crds::conditions::{AVAILABLE, DEGRADED, Desired, PROGRESSING};

use crate::render::Rendered;

/// What the cluster says about one workload (a Deployment or a Knative Service).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    pub desired: u32,
    pub ready: u32,
    /// The workload controller has seen the latest spec and rolled it out everywhere.
    pub rolled_out: bool,
    /// Why it cannot become ready (reason, message), e.g. Pods that cannot be scheduled.
    pub failure: Option<(String, String)>,
}

impl Workload {
    fn is_ready(&self) -> bool {
        self.rolled_out && self.ready >= self.desired && self.failure.is_none()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// By workload name; absent means the workload does not exist (yet).
    pub workloads: HashMap<String, Workload>,
    /// Why applying the children failed, if it did.
    pub apply_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub phase: Phase,
    pub conditions: Vec<Desired>,
    pub functions: Vec<FunctionRuntimeStatus>,
    pub message: String,
}

pub fn derive(rendered: &Rendered, observed: &Observation) -> Outcome {
    let functions: Vec<FunctionRuntimeStatus> = rendered
        .functions
        .iter()
        .map(|f| {
            let w = observed.workloads.get(&f.workload);
            FunctionRuntimeStatus {
                function_key: f.function_key.clone(),
                ready: w.is_some_and(Workload::is_ready),
                ready_replicas: w.map(|w| w.ready).unwrap_or(0),
                desired_replicas: w.map(|w| w.desired).unwrap_or(f.desired_replicas),
                service: Some(f.workload.clone()),
                url: Some(f.url.clone()),
                message: w.and_then(|w| w.failure.as_ref().map(|(_, m)| m.clone())),
            }
        })
        .collect();

    let workloads: Vec<(&str, Option<&Workload>)> = rendered
        .functions
        .iter()
        .map(|f| (f.workload.as_str(), observed.workloads.get(&f.workload)))
        .chain(
            rendered
                .odgm
                .iter()
                .map(|o| (o.deployment.as_str(), observed.workloads.get(&o.deployment))),
        )
        .collect();
    let ready = workloads
        .iter()
        .filter(|(_, w)| w.is_some_and(Workload::is_ready))
        .count();
    let total = workloads.len();
    let summary = format!("{ready}/{total} workloads ready");

    let failure = rendered
        .problems
        .first()
        .map(|p| (p.reason.to_string(), p.message.clone()))
        .or_else(|| {
            observed
                .apply_error
                .as_ref()
                .map(|e| ("ApplyFailed".to_string(), e.clone()))
        })
        .or_else(|| {
            workloads.iter().find_map(|(name, w)| {
                w.and_then(|w| w.failure.as_ref())
                    .map(|(reason, m)| (reason.clone(), format!("{name}: {m}")))
            })
        });

    if let Some((reason, message)) = failure {
        return Outcome {
            phase: Phase::Degraded,
            conditions: vec![
                Desired::new(AVAILABLE, false, &reason, message.clone()),
                Desired::new(PROGRESSING, false, &reason, summary),
                Desired::new(DEGRADED, true, &reason, message.clone()),
            ],
            functions,
            message,
        };
    }
    if ready == total {
        return Outcome {
            phase: Phase::Available,
            conditions: vec![
                Desired::new(AVAILABLE, true, "WorkloadsReady", summary.clone()),
                Desired::new(PROGRESSING, false, "RolloutComplete", summary.clone()),
                Desired::new(DEGRADED, false, "AsExpected", ""),
            ],
            functions,
            message: summary,
        };
    }
    let waiting: Vec<&str> = workloads
        .iter()
        .filter(|(_, w)| !w.is_some_and(Workload::is_ready))
        .map(|(name, _)| *name)
        .collect();
    let message = format!("{summary}; waiting for {}", waiting.join(", "));
    Outcome {
        phase: Phase::Progressing,
        conditions: vec![
            Desired::new(AVAILABLE, false, "WorkloadsNotReady", message.clone()),
            Desired::new(PROGRESSING, true, "RollingOut", message.clone()),
            Desired::new(DEGRADED, false, "AsExpected", ""),
        ],
        functions,
        message,
    }
}

/// How often an Available runtime is looked at again: a safety net for changes no watch
/// shows (its children's changes wake it up at once).
pub const AVAILABLE_LOOK: Duration = Duration::from_secs(300);

/// When a runtime that is not Available is looked at again, after `not_available_for` in
/// that state: every `base` at first, then every quarter of the time it has been waiting
/// (at most [`AVAILABLE_LOOK`]). The look finds what no watch shows (Pods that cannot start);
/// a runtime waiting for long is unlikely to change within seconds, and thousands waiting
/// at once (a full cluster) must not take all of the controller's passes from new work.
pub fn next_look(base: Duration, not_available_for: Duration) -> Duration {
    (not_available_for / 4).clamp(base.min(AVAILABLE_LOOK), AVAILABLE_LOOK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{ChildKind, FunctionPlan, OdgmPlan, RenderProblem};
    use oaas_crds::common::Template;

    fn mk_rendered(functions: &[&str], odgm: bool) -> Rendered {
        Rendered {
            template: Template::K8sDeployment,
            children: vec![],
            functions: functions
                .iter()
                .map(|f| FunctionPlan {
                    function_key: f.to_string(),
                    workload: format!("c-{f}"),
                    kind: ChildKind::Deployment,
                    desired_replicas: 2,
                    url: format!("http://c-{f}.ns.svc.cluster.local:8080"),
                })
                .collect(),
            odgm: odgm.then(|| OdgmPlan {
                deployment: "c-odgm".into(),
                service: "c-odgm-svc".into(),
                replicas: 1,
            }),
            problems: vec![],
        }
    }

    fn mk_ready(desired: u32) -> Workload {
        Workload {
            desired,
            ready: desired,
            rolled_out: true,
            failure: None,
        }
    }

    fn mk_observed(pairs: &[(&str, Workload)]) -> Observation {
        Observation {
            workloads: pairs
                .iter()
                .map(|(n, w)| (n.to_string(), w.clone()))
                .collect(),
            apply_error: None,
        }
    }

    fn condition<'a>(outcome: &'a Outcome, type_: &str) -> &'a Desired {
        outcome
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    #[test]
    fn nothing_observed_yet_is_progressing() {
        let outcome = derive(&mk_rendered(&["echo"], true), &Observation::default());
        assert_eq!(outcome.phase, Phase::Progressing);
        assert!(condition(&outcome, PROGRESSING).status);
        assert!(
            outcome.message.contains("waiting for c-echo, c-odgm"),
            "{}",
            outcome.message
        );
    }

    #[test]
    fn every_workload_ready_is_available() {
        let observed = mk_observed(&[("c-echo", mk_ready(2)), ("c-odgm", mk_ready(1))]);
        let outcome = derive(&mk_rendered(&["echo"], true), &observed);
        assert_eq!(outcome.phase, Phase::Available);
        assert!(condition(&outcome, AVAILABLE).status);
        assert!(!condition(&outcome, DEGRADED).status);
        assert!(outcome.functions[0].ready);
        assert_eq!(outcome.functions[0].service.as_deref(), Some("c-echo"));
    }

    #[test]
    fn the_data_grid_must_be_ready_too() {
        let observed = mk_observed(&[
            ("c-echo", mk_ready(2)),
            (
                "c-odgm",
                Workload {
                    ready: 0,
                    ..mk_ready(1)
                },
            ),
        ]);
        assert_eq!(
            derive(&mk_rendered(&["echo"], true), &observed).phase,
            Phase::Progressing
        );
    }

    #[test]
    fn a_rollout_in_flight_is_progressing_even_with_enough_ready_pods() {
        let observed = mk_observed(&[(
            "c-echo",
            Workload {
                rolled_out: false,
                ..mk_ready(2)
            },
        )]);
        assert_eq!(
            derive(&mk_rendered(&["echo"], false), &observed).phase,
            Phase::Progressing
        );
    }

    #[test]
    fn a_workload_that_cannot_become_ready_degrades_with_its_reason() {
        let stuck = Workload {
            failure: Some(("Unschedulable".into(), "0/3 nodes have enough cpu".into())),
            ..Workload::default()
        };
        let outcome = derive(
            &mk_rendered(&["echo"], false),
            &mk_observed(&[("c-echo", stuck)]),
        );
        assert_eq!(outcome.phase, Phase::Degraded);
        let degraded = condition(&outcome, DEGRADED);
        assert!(degraded.status);
        assert_eq!(degraded.reason, "Unschedulable");
        assert!(degraded.message.contains("c-echo: 0/3 nodes"));
        assert_eq!(
            outcome.functions[0].message.as_deref(),
            Some("0/3 nodes have enough cpu")
        );
    }

    #[test]
    fn an_apply_error_degrades() {
        let observed = Observation {
            apply_error: Some("admission webhook denied".into()),
            ..Default::default()
        };
        let outcome = derive(&mk_rendered(&["echo"], false), &observed);
        assert_eq!(condition(&outcome, DEGRADED).reason, "ApplyFailed");
    }

    #[test]
    fn a_render_problem_wins_over_everything_else() {
        let mut rendered = mk_rendered(&["echo"], false);
        rendered.problems.push(RenderProblem {
            reason: "KnativeNotInstalled",
            message: "install it".into(),
        });
        let outcome = derive(&rendered, &mk_observed(&[("c-echo", mk_ready(2))]));
        assert_eq!(outcome.phase, Phase::Degraded);
        assert_eq!(condition(&outcome, AVAILABLE).reason, "KnativeNotInstalled");
    }

    #[test]
    fn a_runtime_waiting_long_is_looked_at_less_often() {
        let base = Duration::from_secs(10);
        let secs = Duration::from_secs;
        for (waiting, look) in [(0, 10), (40, 10), (120, 30), (600, 150), (7200, 300)] {
            assert_eq!(
                next_look(base, secs(waiting)),
                secs(look),
                "after {waiting} s"
            );
        }
        assert_eq!(
            next_look(secs(900), secs(0)),
            AVAILABLE_LOOK,
            "base above the cap"
        );
    }
}
