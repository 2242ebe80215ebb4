//! The analyzer loop: every interval, each ClassRuntime not in mode `off` is measured,
//! recommended for and, in mode `enforce`, moved one safe step. It never touches workloads
//! or status itself: it reports on the board and wakes the controller.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use oaas_crds::ClassRuntime;
use oaas_crds::class_runtime::AppliedRecommendation;
use oaas_crds::common::{EnforcementMode, ReplicaRecommendation, Template};
use oaas_crds::conditions::Desired;
use tokio::sync::mpsc;
use tracing::debug;

use super::decide::{self, Decision, EnforceInput, Pending, Usage};
use super::provider::{MetricsProvider, ProviderError};
use super::{Board, NFR_OBSERVED, Report, Settings, key_of, newest_applied};
use crate::render::{self, ChildKind, FunctionPlan, RenderContext};

pub struct Analyzer {
    pub provider: Arc<dyn MetricsProvider>,
    pub settings: Settings,
    /// The start-up render settings, the same the controller renders with.
    pub render: render::Settings,
    /// The CRM it runs in, as the controller renders for (see `RenderContext::crm`).
    pub crm: String,
    pub board: Arc<Board>,
    pub runtimes: Store<ClassRuntime>,
    pub recorder: Recorder,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub wake: mpsc::UnboundedSender<ObjectRef<ClassRuntime>>,
    /// Targets waiting out their stability window, by (runtime, function).
    pub pending: HashMap<(String, String), Pending>,
}

impl Analyzer {
    pub async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let runtimes = self.runtimes.state();
            let present: std::collections::HashSet<String> =
                runtimes.iter().map(|r| key_of(r)).collect();
            self.board.retain(&present);
            self.pending
                .retain(|(runtime, _), _| present.contains(runtime));
            for runtime in runtimes {
                if runtime.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let key = key_of(&runtime);
                let changed = if runtime.spec.enforcement_mode == EnforcementMode::Off {
                    self.pending.retain(|(r, _), _| *r != key);
                    self.board.remove(&key)
                } else {
                    let report = self.analyze(&runtime).await;
                    self.metrics.observe_analysis(&report.condition.reason);
                    self.board.set(&key, report)
                };
                if changed {
                    let _ = self.wake.send(ObjectRef::from_obj(runtime.as_ref()));
                }
            }
        }
    }

    async fn analyze(&mut self, runtime: &ClassRuntime) -> Report {
        let now = Timestamp::now();
        let key = key_of(runtime);
        let stored = runtime.status.clone().unwrap_or_default();
        let no_enforcement = BTreeMap::new();
        let render_context = RenderContext {
            settings: &self.render,
            knative_installed: true,
            enforced: &no_enforcement,
            crm: &self.crm,
        };
        let rendered = render::render(runtime, &render_context);
        let namespace = runtime.namespace().unwrap_or_default();
        let cpu_target = render::cpu_target(runtime);

        let mut measured = Vec::new();
        let mut missing = Vec::new();
        for plan in &rendered.functions {
            let replicas = stored
                .functions
                .iter()
                .find(|f| f.function_key == plan.function_key)
                .map_or(plan.desired_replicas, |f| f.ready_replicas);
            match self.usage(&namespace, &plan.workload, replicas).await {
                Ok(Some(usage)) => measured.push((plan, usage)),
                Ok(None) => missing.push(plan.function_key.clone()),
                Err(error) => {
                    debug!(class_runtime = %key, %error, "metrics unavailable");
                    return Report {
                        condition: Desired::new(
                            NFR_OBSERVED,
                            false,
                            "MetricsUnavailable",
                            error.to_string(),
                        ),
                        recommendations: stored.nfr_recommendations,
                        applied: Vec::new(),
                    };
                }
            }
        }

        let observed_at = Time(now);
        let mut recommendations = Vec::new();
        for (plan, usage) in &measured {
            let Some(function) = runtime
                .spec
                .functions
                .iter()
                .find(|f| f.function_key == plan.function_key)
            else {
                continue;
            };
            let p = &function.provision_config;
            let cpu_request = p.cpu_request.as_deref().and_then(decide::parse_cpu);
            let (min, max) = render::scale_bounds(p);
            let r = decide::recommend(usage, cpu_request, cpu_target, min, max);
            recommendations.push(ReplicaRecommendation {
                function_key: plan.function_key.clone(),
                current_replicas: usage.replicas,
                recommended_replicas: r.replicas,
                reason: r.reason,
                observed_at: Some(observed_at.clone()),
                recommended_cpu: r.cpu_request,
                recommended_memory: r.memory_request,
            });
        }

        let mut notes = Vec::new();
        let mut applied = Vec::new();
        if runtime.spec.enforcement_mode == EnforcementMode::Enforce {
            if !self.settings.enforcement {
                notes.push(
                    "enforcement is off on this spoke (OPRC_CRM_FEATURES_NFR_ENFORCEMENT)"
                        .to_string(),
                );
            } else if !matches!(rendered.template, Template::K8sDeployment | Template::Edge) {
                notes.push(format!(
                    "the {} template takes no replica changes",
                    rendered.template.as_str()
                ));
            } else {
                let previous = self.board.get(&key).map(|r| r.applied).unwrap_or_default();
                let in_force = newest_applied(&stored.last_applied_recommendations, &previous);
                for r in &recommendations {
                    let Some(plan) = rendered
                        .functions
                        .iter()
                        .find(|p| p.function_key == r.function_key)
                    else {
                        continue;
                    };
                    if let Some(change) = self
                        .enforce(
                            runtime,
                            &rendered.children,
                            plan,
                            r,
                            &in_force,
                            now,
                            &mut notes,
                        )
                        .await
                    {
                        applied.push(change);
                    }
                }
                applied = newest_applied(&previous, &applied);
            }
        }

        let window = self.settings.window.as_secs();
        let condition = if missing.is_empty() {
            let mut message = format!(
                "{} function(s) analyzed over the last {window}s",
                measured.len()
            );
            for note in &notes {
                message.push_str("; ");
                message.push_str(note);
            }
            Desired::new(NFR_OBSERVED, true, "Analyzed", message)
        } else {
            Desired::new(
                NFR_OBSERVED,
                false,
                "NoMetrics",
                format!(
                    "no samples for {} in the last {window}s from {}; is it scraping their pods?",
                    missing.join(", "),
                    self.provider.describe()
                ),
            )
        };
        Report {
            condition,
            recommendations,
            applied,
        }
    }

    /// One function's enforcement step: the change to apply now, if any.
    #[allow(clippy::too_many_arguments)]
    async fn enforce(
        &mut self,
        runtime: &ClassRuntime,
        children: &[render::Child],
        plan: &FunctionPlan,
        recommendation: &ReplicaRecommendation,
        in_force: &[AppliedRecommendation],
        now: Timestamp,
        notes: &mut Vec<String>,
    ) -> Option<AppliedRecommendation> {
        let function = runtime
            .spec
            .functions
            .iter()
            .find(|f| f.function_key == plan.function_key)?;
        let (min, max) = render::scale_bounds(&function.provision_config);
        let last = in_force
            .iter()
            .find(|a| a.function_key == plan.function_key);
        let pending_key = (key_of(runtime), plan.function_key.clone());
        let input = EnforceInput {
            recommended: recommendation.recommended_replicas,
            current: last.map_or(min.max(1), |a| a.replicas),
            min,
            max,
            pending: self.pending.get(&pending_key).copied(),
            last_applied_at: last.map(|a| a.applied_at.0),
            now,
        };
        match decide::enforce(input, &self.settings.safeguards) {
            Decision::AtTarget => {
                self.pending.remove(&pending_key);
                None
            }
            Decision::Wait { pending, reason } => {
                self.pending.insert(pending_key, pending);
                notes.push(format!("{}: {reason}", plan.function_key));
                None
            }
            Decision::Apply {
                replicas,
                pending,
                reason,
            } => {
                self.pending.insert(pending_key, pending);
                let autoscaled = children.iter().any(|c| {
                    c.kind == ChildKind::HorizontalPodAutoscaler && c.name == plan.workload
                });
                let target_kind = if autoscaled {
                    "HorizontalPodAutoscaler"
                } else {
                    "Deployment"
                };
                self.metrics.observe_enforcement(target_kind);
                let field = if autoscaled {
                    "minReplicas"
                } else {
                    "replicas"
                };
                oaas_operator_common::publish_event(
                    &self.recorder,
                    runtime,
                    EventType::Normal,
                    "Enforced",
                    format!(
                        "{}: {target_kind} {} {field} {reason}",
                        plan.function_key, plan.workload
                    ),
                )
                .await;
                Some(AppliedRecommendation {
                    function_key: plan.function_key.clone(),
                    replicas,
                    target_kind: target_kind.into(),
                    applied_at: Time(now),
                })
            }
        }
    }

    /// CPU cores used by a workload's pods (averaged over the window) and their memory
    /// working set now; None when the provider has no samples for them.
    async fn usage(
        &self,
        namespace: &str,
        workload: &str,
        replicas: u32,
    ) -> Result<Option<Usage>, ProviderError> {
        let rate_window = format!("{}s", self.settings.rate_window.as_secs());
        let fill = |query: &str| {
            query
                .replace("{namespace}", namespace)
                .replace("{workload}", workload)
                .replace("{rate_window}", &rate_window)
        };
        let cpu = self
            .provider
            .range(
                &fill(&self.settings.cpu_query),
                self.settings.window,
                self.settings.step,
            )
            .await?;
        // Sum the series at each instant (a query may keep pods apart), then average.
        let mut at: BTreeMap<i64, f64> = BTreeMap::new();
        for series in &cpu {
            for (t, v) in &series.points {
                *at.entry((t * 1000.0) as i64).or_default() += v;
            }
        }
        if at.is_empty() {
            return Ok(None);
        }
        let cpu_cores = at.values().sum::<f64>() / at.len() as f64;
        let memory = self
            .provider
            .instant(&fill(&self.settings.memory_query))
            .await?;
        let memory_bytes = memory
            .iter()
            .filter_map(|s| s.points.last().map(|p| p.1))
            .reduce(|a, b| a + b);
        Ok(Some(Usage {
            cpu_cores,
            memory_bytes,
            replicas,
        }))
    }
}
