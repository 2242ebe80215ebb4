//! The OClassDeployment controller: resolve the package's class → plan the clusters → send
//! each target a deployment unit (concurrently, with deadlines and retries) → remove the
//! class from clusters that left the plan → aggregate what the spokes report (their status
//! watches fill the registry's board and trigger this reconcile) → status and conditions.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use oaas_crds::class_deployment::{ClusterDeploymentStatus, OClassDeploymentStatus, ReplicaPlan};
use oaas_crds::class_runtime::ClassRuntimeSpec;
use oaas_crds::cluster::ClusterHealth;
use oaas_crds::common::{ConsistencyModel, Phase};
use oaas_crds::conditions::{self, AVAILABLE, DEGRADED, Desired, PROGRESSING, READY};
use oaas_crds::convert::{
    condition_from_proto, phase_from_proto, recommendation_from_proto, unit_from_runtime_spec,
};
use oaas_crds::validation::fnv1a;
use oaas_crds::{OClassDeployment, OCluster, OPackage};
use oaas_operator_common::publish_event;
use oaas_proto::deployment as pb;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::{info, instrument, warn};

use crate::Error;
use crate::metrics::Metrics;
use crate::planning::{Candidate, place};
use crate::registry::{Registry, Spoke};
use crate::resolve::{Problem, resolve_class};
use crate::scope::Scope;
use crate::triggers::{cluster_placement_changes, generation_changes, spec_changes};

pub const FINALIZER: &str = "oaas.io/spoke-cleanup";
const FIELD_MANAGER: &str = "oaas-pm";
/// Annotation whose value, when set, is sent as `x-correlation-id` instead of the uid.
pub const CORRELATION_ANNOTATION: &str = "oaas.io/correlation-id";
const DEFAULT_FAILOVER_GRACE: Duration = Duration::from_secs(30);

pub struct Context {
    pub client: Client,
    pub scope: Scope,
    pub registry: Arc<Registry>,
    pub packages: Store<OPackage>,
    pub clusters: Store<OCluster>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
}

impl Context {
    pub fn new(
        client: Client,
        scope: Scope,
        registry: Arc<Registry>,
        packages: Store<OPackage>,
        clusters: Store<OCluster>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from("oaas-pm"));
        Self {
            client,
            scope,
            registry,
            packages,
            clusters,
            metrics,
            recorder,
        }
    }
}

/// The id a class deployment has in every spoke: stable across retries and restarts.
pub fn deployment_id(cd: &OClassDeployment) -> String {
    format!("{}/{}", cd.namespace().unwrap_or_default(), cd.name_any())
}

fn object_ref_of(id: &str) -> Option<ObjectRef<OClassDeployment>> {
    let (namespace, name) = id.split_once('/')?;
    Some(ObjectRef::new(name).within(namespace))
}

pub async fn run(ctx: Arc<Context>, changed: mpsc::UnboundedReceiver<String>) {
    let (deployments, changes) = spec_changes(
        ctx.scope.api::<OClassDeployment>(&ctx.client),
        watcher::Config::default(),
    );
    let controller = Controller::for_stream(changes, deployments.clone());
    let for_clusters = deployments.clone();
    let for_packages = deployments.clone();
    controller
        // Cluster health and availability change plans: look at every deployment again.
        .watches_stream(
            cluster_placement_changes(
                Api::<OCluster>::all(ctx.client.clone()),
                ctx.scope.clusters(),
            ),
            move |_| {
                for_clusters
                    .state()
                    .iter()
                    .map(|cd| ObjectRef::from_obj(cd.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(
            generation_changes(
                ctx.scope.api::<OPackage>(&ctx.client),
                watcher::Config::default(),
            ),
            move |package| {
                let namespace = package.namespace();
                let name = package.name_any();
                for_packages
                    .state()
                    .iter()
                    .filter(|cd| cd.namespace() == namespace && cd.spec.package == name)
                    .map(|cd| ObjectRef::from_obj(cd.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A spoke reported a change: the deployment it belongs to reconciles at once.
        .reconcile_on(
            UnboundedReceiverStream::new(changed)
                .filter_map(|id| async move { object_ref_of(&id) }),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(cd: Arc<OClassDeployment>, error: &Error, _: Arc<Context>) -> Action {
    warn!(deployment = %cd.name_any(), %error, "class deployment reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

#[instrument(skip_all, fields(deployment = %deployment_id(&cd)))]
async fn reconcile(cd: Arc<OClassDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api = Api::<OClassDeployment>::namespaced(
        ctx.client.clone(),
        &cd.namespace().unwrap_or_default(),
    );
    let started = Instant::now();
    let result = finalizer(&api, FINALIZER, cd, |event| async {
        match event {
            Finalizer::Apply(cd) => apply(&cd, &ctx).await,
            Finalizer::Cleanup(cd) => cleanup(&cd, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .observe_reconcile("oclassdeployment", started.elapsed(), result.is_err());
    result
}

fn correlation_id(cd: &OClassDeployment) -> String {
    cd.annotations()
        .get(CORRELATION_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| cd.uid().unwrap_or_default())
}

async fn apply(cd: &OClassDeployment, ctx: &Context) -> Result<Action, Error> {
    let previous = cd.status.clone().unwrap_or_default();
    let namespace = cd.namespace().unwrap_or_default();
    let package = ctx
        .packages
        .get(&ObjectRef::new(&cd.spec.package).within(&namespace));
    let lookup = |name: &str| {
        ctx.packages
            .get(&ObjectRef::new(name).within(&namespace))
            .map(|p| (*p).clone())
    };
    let resolved = match &package {
        None => Err(Problem {
            reason: "PackageNotFound",
            message: format!("OPackage {namespace}/{} does not exist", cd.spec.package),
        }),
        Some(p) if p.spec.disabled => Err(Problem {
            reason: "PackageDisabled",
            message: format!("OPackage {} is disabled", cd.spec.package),
        }),
        Some(p) => resolve_class(&cd.spec, p, &lookup),
    };
    let resolved = match resolved {
        Ok(r) => r,
        Err(problem) => {
            let desired = blocked_conditions(&problem);
            write_status(
                ctx,
                cd,
                &previous,
                OClassDeploymentStatus {
                    phase: Some(Phase::Degraded),
                    ..previous.clone()
                },
                &desired,
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };

    let plan = plan(cd, ctx, &previous, resolved.consistency);
    if previous.plan.as_ref().map(|p| &p.clusters) != Some(&plan.clusters) {
        let note = format!("clusters {:?}: {}", plan.clusters, plan.reason);
        publish_event(&ctx.recorder, cd, EventType::Normal, "Planned", note).await;
    }

    let id = deployment_id(cd);
    let spec = ClassRuntimeSpec {
        deployment_id: id.clone(),
        package_name: cd.spec.package.clone(),
        class_key: cd.spec.class_key.clone(),
        target_cluster: None,
        target_env: cd.spec.target_env.clone(),
        functions: resolved.functions,
        template: cd.spec.template,
        addons: cd.spec.odgm.iter().map(|_| "odgm".to_string()).collect(),
        odgm: cd.spec.odgm.clone(),
        nfr: cd.spec.nfr.clone(),
        enforcement_mode: cd.spec.enforcement_mode,
        consistency_model: resolved.consistency,
        revision: None,
    };
    let correlation = correlation_id(cd);
    let results = join_all(plan.clusters.iter().map(|cluster| {
        let mut unit_spec = spec.clone();
        unit_spec.target_cluster = Some(cluster.clone());
        let mut unit = unit_from_runtime_spec(&unit_spec);
        unit.revision = revision_of(&unit);
        deploy_to(ctx, cluster, unit, &correlation)
    }))
    .await;
    let outcomes: BTreeMap<String, Result<i64, String>> =
        plan.clusters.iter().cloned().zip(results).collect();

    // Clusters that left the plan lose the class; an entry stays until that worked.
    let mut leaving = Vec::new();
    for old in previous
        .clusters
        .iter()
        .filter(|c| !plan.clusters.contains(&c.cluster))
    {
        if let Err(problem) = delete_from(ctx, &old.cluster, &id, &correlation).await {
            leaving.push(ClusterDeploymentStatus {
                message: Some(format!("removing: {problem}")),
                ..old.clone()
            });
        }
    }

    let now = Time(Timestamp::now());
    let mut clusters: Vec<ClusterDeploymentStatus> = outcomes
        .iter()
        .map(|(cluster, outcome)| cluster_status(ctx, cluster, &id, outcome, &previous, &now))
        .collect();
    clusters.extend(leaving);
    let (phase, desired) = aggregate(&clusters, &plan.clusters);
    let ready = clusters
        .iter()
        .filter(|c| plan.clusters.contains(&c.cluster) && c.phase == Some(Phase::Available))
        .count();
    let status = OClassDeploymentStatus {
        observed_generation: cd.metadata.generation,
        phase: Some(phase),
        clusters_ready: Some(format!("{ready}/{}", plan.clusters.len())),
        plan: Some(plan),
        clusters,
        ..previous.clone()
    };
    if phase == Phase::Degraded && previous.phase != Some(Phase::Degraded) {
        let message = desired
            .iter()
            .find(|d| d.type_ == DEGRADED)
            .map(|d| d.message.clone())
            .unwrap_or_default();
        publish_event(&ctx.recorder, cd, EventType::Warning, "Degraded", message).await;
    }
    write_status(ctx, cd, &previous, status, &desired).await?;
    Ok(Action::requeue(if phase == Phase::Available {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(15)
    }))
}

/// A stable 63-bit hash of a unit, as its revision.
fn revision_of(unit: &pb::DeploymentUnit) -> i64 {
    use prost::Message;
    (fnv1a(&unit.encode_to_vec()) >> 1) as i64
}

/// Which clusters: explicit names plus healthy selector matches, through availability planning.
/// A selector-chosen cluster that turned unreachable keeps its place for the failover grace
/// period, then a healthy match replaces it.
fn plan(
    cd: &OClassDeployment,
    ctx: &Context,
    previous: &OClassDeploymentStatus,
    consistency: ConsistencyModel,
) -> ReplicaPlan {
    let grace = cd
        .spec
        .failover_grace_seconds
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(DEFAULT_FAILOVER_GRACE);
    let was_planned = |name: &str| {
        previous
            .plan
            .as_ref()
            .is_some_and(|p| p.clusters.iter().any(|c| c == name))
    };
    let mut candidates: Vec<Candidate> = cd
        .spec
        .target_clusters
        .iter()
        .map(|name| {
            let cluster = ctx.clusters.get(&ObjectRef::new(name));
            Candidate {
                name: name.clone(),
                availability: cluster.and_then(|c| c.status.as_ref()?.availability),
                explicit: true,
            }
        })
        .collect();
    if let Some(selector) = &cd.spec.cluster_selector {
        for cluster in ctx.clusters.state() {
            let name = cluster.name_any();
            if candidates.iter().any(|c| c.name == name)
                || !matches_selector(selector, cluster.labels())
            {
                continue;
            }
            let status = cluster.status.clone().unwrap_or_default();
            let usable = status.health == ClusterHealth::Healthy
                || (was_planned(&name) && unhealthy_for(&status) < grace);
            if usable {
                candidates.push(Candidate {
                    name,
                    availability: status.availability,
                    explicit: false,
                });
            }
        }
    }
    let target = cd.spec.nfr.as_ref().and_then(|n| n.availability);
    let placement = place(&candidates, target, consistency == ConsistencyModel::Strong);
    ReplicaPlan {
        clusters: placement.clusters,
        replicas_per_cluster: 1,
        expected_availability: Some((placement.expected_availability * 1e6).round() / 1e6),
        reason: placement.reason,
    }
}

/// How long a cluster has not been Ready, from its Ready condition.
fn unhealthy_for(status: &oaas_crds::cluster::OClusterStatus) -> Duration {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY && c.status == "False")
        .and_then(|c| {
            Timestamp::now()
                .duration_since(c.last_transition_time.0)
                .try_into()
                .ok()
        })
        .unwrap_or_default()
}

fn matches_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
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

fn spoke_for(ctx: &Context, cluster: &str) -> Result<Spoke, String> {
    let health = ctx
        .clusters
        .get(&ObjectRef::new(cluster))
        .map(|c| c.status.clone().unwrap_or_default().health);
    match (health, ctx.registry.get(cluster)) {
        (None, _) => Err(format!("OCluster {cluster} does not exist")),
        (Some(ClusterHealth::Unreachable), _) => Err(format!("cluster {cluster} is unreachable")),
        (_, None) => Err(format!("cluster {cluster} is not registered yet")),
        (_, Some(spoke)) => Ok(spoke),
    }
}

/// Calls a spoke with retries on transient failures; each try has the cluster's deadline.
async fn call_with_retries<T, F, Fut>(
    ctx: &Context,
    spoke: &Spoke,
    method: &'static str,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 0;
    loop {
        let started = Instant::now();
        let result = match tokio::time::timeout(spoke.connection.timeout, call()).await {
            Ok(result) => result,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {:?}",
                spoke.connection.timeout
            ))),
        };
        let code = result
            .as_ref()
            .map(|_| tonic::Code::Ok)
            .unwrap_or_else(|s| s.code());
        ctx.metrics
            .observe_call(&spoke.name, method, code, started.elapsed());
        let transient = matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::FailedPrecondition
        );
        if result.is_ok() || !transient || attempt >= spoke.connection.retries {
            return result;
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt.min(5)))).await;
    }
}

fn request<T>(message: T, correlation: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = correlation.parse() {
        request.metadata_mut().insert("x-correlation-id", value);
    }
    request
}

/// Sends the unit unless the spoke already runs this revision; returns the revision.
///
/// Each try expects the revision the spoke last reported (see `expected_revision`), read
/// afresh, so a conflict with a newer write is retried from the current view and a request
/// delayed by a slow spoke cannot roll it back.
async fn deploy_to(
    ctx: &Context,
    cluster: &str,
    unit: pb::DeploymentUnit,
    correlation: &str,
) -> Result<i64, String> {
    let spoke = spoke_for(ctx, cluster)?;
    let revision = unit.revision;
    let reported = || {
        ctx.registry
            .board
            .get(cluster, &unit.id)
            .map(|s| s.revision)
    };
    if reported() == Some(revision) {
        return Ok(revision);
    }
    call_with_retries(ctx, &spoke, "Deploy", || {
        let mut client = spoke.deployments();
        let request = request(
            pb::DeployRequest {
                deployment_unit: Some(unit.clone()),
                expected_revision: reported(),
            },
            correlation,
        );
        async move { client.deploy(request).await }
    })
    .await
    .map_err(|s| format!("Deploy to {cluster}: {} ({:?})", s.message(), s.code()))?;
    Ok(revision)
}

async fn delete_from(
    ctx: &Context,
    cluster: &str,
    id: &str,
    correlation: &str,
) -> Result<(), String> {
    // A cluster that no longer exists holds nothing we can reach: nothing to do.
    if ctx.clusters.get(&ObjectRef::new(cluster)).is_none() {
        return Ok(());
    }
    let spoke = spoke_for(ctx, cluster)?;
    call_with_retries(ctx, &spoke, "DeleteDeployment", || {
        let mut client = spoke.deployments();
        let request = request(
            pb::DeleteDeploymentRequest {
                deployment_id: id.to_string(),
            },
            correlation,
        );
        async move { client.delete_deployment(request).await }
    })
    .await
    .map_err(|s| {
        format!(
            "DeleteDeployment on {cluster}: {} ({:?})",
            s.message(),
            s.code()
        )
    })?;
    Ok(())
}

/// What one target cluster runs, from the board; a failed send or a stale revision shows.
fn cluster_status(
    ctx: &Context,
    cluster: &str,
    id: &str,
    outcome: &Result<i64, String>,
    previous: &OClassDeploymentStatus,
    now: &Time,
) -> ClusterDeploymentStatus {
    let before = previous.clusters.iter().find(|c| c.cluster == cluster);
    let reported = ctx.registry.board.get(cluster, id);
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
    let available: Vec<&str> = of_targets
        .iter()
        .filter(|c| c.phase == Some(Phase::Available))
        .map(|c| c.cluster.as_str())
        .collect();
    let degraded: Vec<String> = of_targets
        .iter()
        .filter(|c| c.phase == Some(Phase::Degraded))
        .map(|c| format!("{}: {}", c.cluster, c.message.clone().unwrap_or_default()))
        .collect();
    let summary = format!("{}/{} clusters available", available.len(), targets.len());
    if targets.is_empty() {
        let message =
            "no cluster matches: check targetClusters, clusterSelector and cluster health"
                .to_string();
        return (
            Phase::Degraded,
            vec![
                Desired::new(READY, false, "NoClusters", message.clone()),
                Desired::new(AVAILABLE, false, "NoClusters", message.clone()),
                Desired::new(PROGRESSING, false, "NoClusters", message.clone()),
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
    if available.len() == targets.len() {
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
        let message = degraded.join("; ");
        return (
            Phase::Degraded,
            vec![
                ready,
                Desired::new(AVAILABLE, false, "ClustersDegraded", summary.clone()),
                Desired::new(PROGRESSING, false, "ClustersDegraded", summary),
                Desired::new(DEGRADED, true, "ClustersDegraded", message),
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

fn blocked_conditions(problem: &Problem) -> Vec<Desired> {
    vec![
        Desired::new(READY, false, problem.reason, problem.message.clone()),
        Desired::new(AVAILABLE, false, problem.reason, problem.message.clone()),
        Desired::new(PROGRESSING, false, problem.reason, problem.message.clone()),
        Desired::new(DEGRADED, true, problem.reason, problem.message.clone()),
    ]
}

async fn write_status(
    ctx: &Context,
    cd: &OClassDeployment,
    previous: &OClassDeploymentStatus,
    mut status: OClassDeploymentStatus,
    desired: &[Desired],
) -> Result<(), Error> {
    let now = Time(Timestamp::now());
    status.observed_generation = cd.metadata.generation;
    status.conditions =
        conditions::merge(&previous.conditions, desired, cd.metadata.generation, &now);
    if &status == previous {
        return Ok(());
    }
    let patch =
        json!({"apiVersion": "oaas.io/v1alpha1", "kind": "OClassDeployment", "status": status});
    Api::<OClassDeployment>::namespaced(ctx.client.clone(), &cd.namespace().unwrap_or_default())
        .patch_status(
            &cd.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Removes the class from every cluster that may hold it, then lets the finalizer go. A
/// cluster that cannot be reached keeps the finalizer (and retries) until it answers or its
/// OCluster is deleted.
async fn cleanup(cd: &OClassDeployment, ctx: &Context) -> Result<Action, Error> {
    let id = deployment_id(cd);
    let correlation = correlation_id(cd);
    let status = cd.status.clone().unwrap_or_default();
    let mut clusters: Vec<String> = status.clusters.iter().map(|c| c.cluster.clone()).collect();
    clusters.extend(status.plan.iter().flat_map(|p| p.clusters.clone()));
    clusters.extend(cd.spec.target_clusters.clone());
    clusters.sort();
    clusters.dedup();
    let results = join_all(
        clusters
            .iter()
            .map(|c| delete_from(ctx, c, &id, &correlation)),
    )
    .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !failures.is_empty() {
        return Err(Error::Spokes(failures.join("; ")));
    }
    info!(deployment = %id, ?clusters, "removed from every cluster");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_cluster(name: &str, phase: Phase, message: &str) -> ClusterDeploymentStatus {
        ClusterDeploymentStatus {
            cluster: name.into(),
            deployment_id: "ns/d".into(),
            phase: Some(phase),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    fn condition(desired: &[Desired], type_: &str) -> Desired {
        desired.iter().find(|d| d.type_ == type_).cloned().unwrap()
    }

    #[test]
    fn every_target_available_is_available() {
        let clusters = [
            mk_cluster("a", Phase::Available, ""),
            mk_cluster("b", Phase::Available, ""),
        ];
        let (phase, desired) = aggregate(&clusters, &["a".into(), "b".into()]);
        assert_eq!(phase, Phase::Available);
        assert!(condition(&desired, AVAILABLE).status);
        assert!(condition(&desired, READY).status);
    }

    #[test]
    fn a_degraded_target_degrades_the_deployment_and_names_it() {
        let clusters = [
            mk_cluster("a", Phase::Available, ""),
            mk_cluster("b", Phase::Degraded, "cluster b is unreachable"),
        ];
        let (phase, desired) = aggregate(&clusters, &["a".into(), "b".into()]);
        assert_eq!(phase, Phase::Degraded);
        assert!(
            condition(&desired, DEGRADED)
                .message
                .contains("b: cluster b is unreachable")
        );
    }

    #[test]
    fn clusters_leaving_the_plan_do_not_count() {
        let clusters = [
            mk_cluster("a", Phase::Available, ""),
            mk_cluster("old", Phase::Degraded, "removing"),
        ];
        assert_eq!(aggregate(&clusters, &["a".into()]).0, Phase::Available);
    }

    #[test]
    fn no_target_is_degraded_with_a_reason() {
        let (phase, desired) = aggregate(&[], &[]);
        assert_eq!(phase, Phase::Degraded);
        assert_eq!(condition(&desired, READY).reason, "NoClusters");
    }

    #[test]
    fn pending_targets_are_progressing() {
        let clusters = [
            mk_cluster("a", Phase::Available, ""),
            mk_cluster("b", Phase::Progressing, ""),
        ];
        let (phase, desired) = aggregate(&clusters, &["a".into(), "b".into()]);
        assert_eq!(phase, Phase::Progressing);
        assert!(condition(&desired, PROGRESSING).status);
        assert_eq!(
            condition(&desired, AVAILABLE).message,
            "1/2 clusters available"
        );
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
            LabelSelector, LabelSelectorRequirement,
        };
        let labels = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let by_label = LabelSelector {
            match_labels: Some(labels.clone()),
            ..Default::default()
        };
        assert!(matches_selector(&by_label, &labels));
        let not_in = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "region".into(),
                operator: "NotIn".into(),
                values: Some(vec!["eu".into()]),
            }]),
            ..Default::default()
        };
        assert!(!matches_selector(&not_in, &labels));
    }

    #[test]
    fn ids_map_back_to_the_object() {
        let r = object_ref_of("team/record").unwrap();
        assert_eq!(
            (r.name.as_str(), r.namespace.as_deref()),
            ("record", Some("team"))
        );
        assert!(object_ref_of("no-slash").is_none());
    }
}
