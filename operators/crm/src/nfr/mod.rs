//! NFR observe and enforce. The analyzer ([`analyzer`]) asks a metrics provider
//! ([`provider`], Prometheus) how each function of each ClassRuntime is used, turns that into
//! recommendations ([`decide::recommend`]) and, for runtimes in enforce mode, decides replica
//! changes under the safeguards ([`decide::enforce`]). It reports on a [`Board`]; the
//! controller, the one writer of status and workloads, merges the report into status and
//! renders the applied replicas (HPA minReplicas, else Deployment replicas), so a later
//! apply never undoes the enforcer.
pub mod analyzer;
pub mod decide;
pub mod provider;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use oaas_crds::ClassRuntime;
use oaas_crds::class_runtime::AppliedRecommendation;
use oaas_crds::common::{EnforcementMode, ReplicaRecommendation};
use oaas_crds::conditions::Desired;

/// Condition type the analyzer reports with.
pub const NFR_OBSERVED: &str = "NfrObserved";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub prometheus_url: String,
    /// How often every ClassRuntime is analyzed.
    pub interval: Duration,
    /// How far back the queries look, and the resolution of range queries.
    pub window: Duration,
    pub step: Duration,
    /// The window of `rate()` in the CPU query: at least four scrape intervals.
    pub rate_window: Duration,
    pub query_timeout: Duration,
    /// PromQL with `{namespace}`, `{workload}` and `{rate_window}` placeholders: CPU cores
    /// used by a function's pods (a range query, averaged) and their memory working set in
    /// bytes (an instant query).
    pub cpu_query: String,
    pub memory_query: String,
    /// Whether runtimes in enforce mode have their replicas changed (the spoke's gate).
    pub enforcement: bool,
    pub safeguards: decide::Safeguards,
}

pub const DEFAULT_CPU_QUERY: &str = r#"sum(rate(container_cpu_usage_seconds_total{namespace="{namespace}",pod=~"{workload}-.*",container!="",container!="POD"}[{rate_window}]))"#;
pub const DEFAULT_MEMORY_QUERY: &str = r#"sum(container_memory_working_set_bytes{namespace="{namespace}",pod=~"{workload}-.*",container!="",container!="POD"})"#;

/// What the analyzer last found for one ClassRuntime.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub condition: Desired,
    pub recommendations: Vec<ReplicaRecommendation>,
    /// Replica changes the enforcer decided, newest per function.
    pub applied: Vec<AppliedRecommendation>,
}

/// The analyzer's latest report per ClassRuntime (`namespace/name`).
#[derive(Default)]
pub struct Board {
    reports: Mutex<HashMap<String, Report>>,
}

impl Board {
    pub fn get(&self, key: &str) -> Option<Report> {
        self.reports.lock().expect("nfr board").get(key).cloned()
    }

    /// Stores a report; whether it differs from the previous one.
    pub fn set(&self, key: &str, report: Report) -> bool {
        let mut reports = self.reports.lock().expect("nfr board");
        reports.insert(key.to_string(), report.clone()) != Some(report)
    }

    pub fn remove(&self, key: &str) -> bool {
        self.reports
            .lock()
            .expect("nfr board")
            .remove(key)
            .is_some()
    }

    /// Forgets the reports of runtimes that are gone.
    pub fn retain(&self, keep: &std::collections::HashSet<String>) {
        self.reports
            .lock()
            .expect("nfr board")
            .retain(|key, _| keep.contains(key));
    }
}

pub fn key_of(runtime: &ClassRuntime) -> String {
    format!(
        "{}/{}",
        runtime.metadata.namespace.as_deref().unwrap_or_default(),
        runtime.metadata.name.as_deref().unwrap_or_default()
    )
}

/// What status says about NFRs, from the stored status and the analyzer's report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NfrStatus {
    pub condition: ConditionChange,
    pub recommendations: Vec<ReplicaRecommendation>,
    /// Replicas in force by the enforcer, per function (enforce mode only).
    pub applied: Vec<AppliedRecommendation>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum ConditionChange {
    Set(Desired),
    /// Mode off: no analysis, no condition.
    Remove,
    /// No report yet (the CRM just started, or runs no analyzer): status stays as it is, so
    /// a restart does not drop the replicas in force before the analyzer's first pass.
    #[default]
    Keep,
}

pub fn status_for(runtime: &ClassRuntime, report: Option<Report>) -> NfrStatus {
    let stored = runtime.status.clone().unwrap_or_default();
    let mode = runtime.spec.enforcement_mode;
    if mode == EnforcementMode::Off {
        return NfrStatus {
            condition: ConditionChange::Remove,
            ..Default::default()
        };
    }
    let (condition, recommendations, reported) = match report {
        Some(r) => (
            ConditionChange::Set(r.condition),
            r.recommendations,
            r.applied,
        ),
        None => (
            ConditionChange::Keep,
            stored.nfr_recommendations,
            Vec::new(),
        ),
    };
    let applied = if mode == EnforcementMode::Enforce {
        newest_applied(&stored.last_applied_recommendations, &reported)
            .into_iter()
            .filter(|a| {
                runtime
                    .spec
                    .functions
                    .iter()
                    .any(|f| f.function_key == a.function_key)
            })
            .collect()
    } else {
        Vec::new()
    };
    NfrStatus {
        condition,
        recommendations,
        applied,
    }
}

/// One entry per function: the most recently applied of `stored` and `reported`.
pub fn newest_applied(
    stored: &[AppliedRecommendation],
    reported: &[AppliedRecommendation],
) -> Vec<AppliedRecommendation> {
    let mut newest: BTreeMap<&str, &AppliedRecommendation> = BTreeMap::new();
    for a in stored.iter().chain(reported) {
        match newest.get(a.function_key.as_str()) {
            Some(seen) if seen.applied_at.0 >= a.applied_at.0 => {}
            _ => {
                newest.insert(&a.function_key, a);
            }
        }
    }
    newest.into_values().cloned().collect()
}

/// Replicas the enforcer put in force, by function key.
pub fn enforced_replicas(applied: &[AppliedRecommendation]) -> BTreeMap<String, u32> {
    applied
        .iter()
        .map(|a| (a.function_key.clone(), a.replicas))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use oaas_crds::ClassRuntimeSpec;
    use oaas_crds::class_runtime::{ClassRuntimeStatus, RuntimeFunction};

    fn mk_applied(function: &str, replicas: u32, second: i64) -> AppliedRecommendation {
        AppliedRecommendation {
            function_key: function.into(),
            replicas,
            target_kind: "Deployment".into(),
            applied_at: Time(Timestamp::from_second(second).unwrap()),
        }
    }

    fn mk_runtime(mode: EnforcementMode, stored: Vec<AppliedRecommendation>) -> ClassRuntime {
        let mut runtime = ClassRuntime::new(
            "r",
            ClassRuntimeSpec {
                functions: vec![RuntimeFunction {
                    function_key: "f".into(),
                    ..Default::default()
                }],
                enforcement_mode: mode,
                ..Default::default()
            },
        );
        runtime.status = Some(ClassRuntimeStatus {
            last_applied_recommendations: stored,
            ..Default::default()
        });
        runtime
    }

    fn mk_report(applied: Vec<AppliedRecommendation>) -> Report {
        Report {
            condition: Desired::new(NFR_OBSERVED, true, "Analyzed", "ok"),
            recommendations: Vec::new(),
            applied,
        }
    }

    #[test]
    fn the_newest_application_per_function_wins() {
        let merged = newest_applied(
            &[mk_applied("f", 2, 10), mk_applied("g", 4, 50)],
            &[mk_applied("f", 3, 20), mk_applied("g", 1, 40)],
        );
        assert_eq!(merged, [mk_applied("f", 3, 20), mk_applied("g", 4, 50)]);
    }

    #[test]
    fn only_enforce_mode_keeps_replicas_in_force_and_off_reports_nothing() {
        let stored = vec![mk_applied("f", 2, 10), mk_applied("gone", 9, 10)];
        let report = || Some(mk_report(vec![mk_applied("f", 3, 20)]));
        let enforce = status_for(
            &mk_runtime(EnforcementMode::Enforce, stored.clone()),
            report(),
        );
        assert_eq!(
            enforce.applied,
            [mk_applied("f", 3, 20)],
            "gone functions drop out"
        );
        assert!(matches!(enforce.condition, ConditionChange::Set(_)));

        let observe = status_for(
            &mk_runtime(EnforcementMode::Observe, stored.clone()),
            report(),
        );
        assert!(observe.applied.is_empty(), "observe mode changes nothing");
        assert!(matches!(observe.condition, ConditionChange::Set(_)));

        let off = status_for(&mk_runtime(EnforcementMode::Off, stored.clone()), report());
        assert_eq!(off.condition, ConditionChange::Remove);
        assert!(off.applied.is_empty() && off.recommendations.is_empty());

        let restarted = status_for(&mk_runtime(EnforcementMode::Enforce, stored), None);
        assert_eq!(restarted.condition, ConditionChange::Keep);
        assert_eq!(
            restarted.applied,
            [mk_applied("f", 2, 10)],
            "kept until the first pass"
        );
    }
}
