//! Observation: the state of every workload a render asked for, from the Deployment cache,
//! the Pods of a Deployment that is not ready, and Knative Services.
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::reflector;

use super::Children;
use super::cached::{CachedDeployment, is_failure};
use crate::controller::Error;
use crate::render::{ChildKind, RenderContext, Rendered};
use crate::state::{Observation, Workload};

/// Pods of a new Deployment need a moment to be scheduled and started; looking at them
/// sooner costs a Pod list per reconcile and finds nothing.
const POD_CHECK_AFTER: Duration = Duration::from_secs(5);

impl Children {
    /// Reads the state of every workload the render asked for.
    pub async fn observe(
        &self,
        ns: &str,
        rendered: &Rendered,
        render_context: &RenderContext<'_>,
    ) -> Result<Observation, Error> {
        let mut observation = Observation::default();
        let deployments = rendered
            .functions
            .iter()
            .filter(|f| f.kind == ChildKind::Deployment)
            .map(|f| f.workload.clone())
            .chain(rendered.odgm.iter().map(|o| o.deployment.clone()));
        for name in deployments {
            let key = reflector::ObjectRef::<CachedDeployment>::new(&name).within(ns);
            if let Some(deployment) = self.stores.deployments.get(&key) {
                let mut workload = deployment_workload(&deployment);
                if worth_a_pod_check(&deployment, &workload, age(&deployment)) {
                    workload.failure = workload
                        .failure
                        .or(self.pod_failure(ns, &deployment).await?);
                }
                observation.workloads.insert(name, workload);
            }
        }
        let knative_functions = rendered
            .functions
            .iter()
            .filter(|f| f.kind == ChildKind::KnativeService);
        for f in knative_functions.filter(|_| render_context.knative_installed) {
            let api = self.api(ns, ChildKind::KnativeService);
            if let Some(service) = api.get_opt(&f.workload).await? {
                observation.workloads.insert(
                    f.workload.clone(),
                    knative_workload(&service, f.desired_replicas),
                );
            }
        }
        Ok(observation)
    }

    /// Pod-level reasons a Deployment cannot become ready, found without waiting for its
    /// progress deadline: unschedulable Pods and containers that cannot start.
    async fn pod_failure(
        &self,
        ns: &str,
        deployment: &CachedDeployment,
    ) -> Result<Option<(String, String)>, Error> {
        let selector = &deployment.spec.selector.0;
        if selector.is_empty() {
            return Ok(None);
        }
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default().labels(selector))
            .await?;
        const STUCK: [&str; 6] = [
            "ErrImagePull",
            "ImagePullBackOff",
            "CrashLoopBackOff",
            "CreateContainerConfigError",
            "InvalidImageName",
            "CreateContainerError",
        ];
        for pod in pods.items {
            let status = pod.status.unwrap_or_default();
            for c in status.conditions.unwrap_or_default() {
                if c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                {
                    return Ok(Some((
                        "Unschedulable".into(),
                        c.message.unwrap_or_default(),
                    )));
                }
            }
            for cs in status.container_statuses.unwrap_or_default() {
                if let Some(waiting) = cs.state.and_then(|s| s.waiting)
                    && let Some(reason) = waiting.reason.filter(|r| STUCK.contains(&r.as_str()))
                {
                    return Ok(Some((reason, waiting.message.unwrap_or_default())));
                }
            }
        }
        Ok(None)
    }
}

/// Whether the Pods of a Deployment may say why it is not ready: it is not, it is past the
/// first moments of a rollout, and some of its Pods exist but are not ready. Pods that do
/// not exist yet say nothing, and listing them costs the API server a scan of the
/// namespace's Pods: with thousands of runtimes rolling out at once, those lists were
/// most of its work and starved the rollouts themselves.
fn worth_a_pod_check(d: &CachedDeployment, workload: &Workload, age: Duration) -> bool {
    let not_ready = !workload.rolled_out || workload.ready < workload.desired;
    let unready_pods = d.status.replicas.unwrap_or(0) > d.status.ready_replicas.unwrap_or(0);
    not_ready && unready_pods && age >= POD_CHECK_AFTER
}

fn age(d: &CachedDeployment) -> Duration {
    d.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or_default()
}

fn deployment_workload(d: &CachedDeployment) -> Workload {
    let desired = d.spec.replicas.unwrap_or(1).max(0) as u32;
    let status = &d.status;
    let observed_latest = status.observed_generation >= d.metadata.generation;
    let updated = status.updated_replicas.unwrap_or(0).max(0) as u32;
    let total = status.replicas.unwrap_or(0).max(0) as u32;
    let failure = status.conditions.iter().flatten().find_map(|c| {
        is_failure(c).then(|| {
            (
                c.reason.clone().unwrap_or_else(|| c.type_.clone()),
                c.message.clone().unwrap_or_default(),
            )
        })
    });
    Workload {
        desired,
        ready: status.available_replicas.unwrap_or(0).max(0) as u32,
        rolled_out: observed_latest && updated >= desired && total == updated,
        failure,
    }
}

fn knative_workload(service: &DynamicObject, desired: u32) -> Workload {
    let conditions = service.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    let is_ready = ready.is_some_and(|c| c["status"] == "True");
    let failed = ready.filter(|c| c["status"] == "False").map(|c| {
        (
            c["reason"].as_str().unwrap_or("NotReady").to_string(),
            c["message"].as_str().unwrap_or_default().to_string(),
        )
    });
    Workload {
        desired,
        ready: if is_ready { desired } else { 0 },
        rolled_out: is_ready,
        failure: failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, pods: i32, ready_pods: i32) -> CachedDeployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d-f", "generation": 1},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": pods, "updatedReplicas": pods,
                       "readyReplicas": ready_pods, "availableReplicas": ready_pods},
        }))
        .unwrap()
    }

    #[test]
    fn pods_are_listed_only_when_some_exist_unready_past_the_first_moments() {
        let late = POD_CHECK_AFTER;
        let cases = [
            // (desired, Pods, ready Pods, age, listed)
            (2, 2, 1, late, true),
            (2, 0, 0, late, false),
            (2, 1, 1, late, false),
            (2, 2, 2, late, false),
            (2, 2, 1, Duration::from_secs(1), false),
        ];
        for (desired, pods, ready, age, listed) in cases {
            let d = deployment(desired, pods, ready);
            let workload = deployment_workload(&d);
            assert_eq!(
                worth_a_pod_check(&d, &workload, age),
                listed,
                "{desired} desired, {pods} Pods, {ready} ready, {age:?} old"
            );
        }
    }
}
