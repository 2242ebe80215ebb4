//! The OClassDeployment controller, as a pipeline: **gather** what the hub knows into plain
//! data (the deployment, its resolved class, the clusters, what the spokes report) →
//! **decide** (`oaas_core::decide`, pure) → **act** (send the units and removals through
//! the [`SpokeClient`]) → **record** (status, conditions, events). The spokes' status
//! streams fill the registry's board and trigger this reconcile; OCluster and OPackage
//! changes trigger it too.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use oaas_core::decide::{self, Acted, Decision, Held, Inputs, Plan};
use oaas_core::placement::ClusterView;
use oaas_core::resolve::{Packages, Problem, ResolvedClass, resolve_class};
use oaas_core::rollout::{PROGRESS_HOLD, Rollout, only_progress};
use oaas_core::tenancy;
use oaas_core::wire::{CORRELATION_ANNOTATION, SPOKE_CLEANUP_FINALIZER};
use oaas_crds::class_deployment::{OClassDeploymentSpec, OClassDeploymentStatus};
use oaas_crds::cluster::OClusterStatus;
use oaas_crds::common::Phase;
use oaas_crds::conditions::{self, READY};
use oaas_crds::{OClassDeployment, OCluster, OPackage};
use oaas_operator_common::status::StatusWriter;
use oaas_operator_common::{publish_event, publish_related_event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::{debug, info, instrument, warn};

use crate::Error;
use crate::error::with_finalizer;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::scope::Scope;
use crate::spoke_client::SpokeClient;
use crate::triggers::{after_cached, cluster_placement_changes, generation_changes, spec_changes};

pub struct Context {
    pub client: Client,
    pub scope: Scope,
    pub registry: Arc<Registry>,
    pub spokes: SpokeClient,
    pub packages: Store<OPackage>,
    pub clusters: Store<OCluster>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub status: StatusWriter<OClassDeploymentStatus>,
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
        Self {
            recorder: Recorder::new(client.clone(), Reporter::from("oaas-pm")),
            spokes: SpokeClient::new(registry.clone(), metrics.clone()),
            status: StatusWriter::new(oaas_core::wire::PM_FIELD_MANAGER),
            client,
            scope,
            registry,
            packages,
            clusters,
            metrics,
        }
    }
}

/// The id a class deployment has in every spoke: stable across retries and restarts.
pub fn deployment_id(hub: &str, cd: &OClassDeployment) -> String {
    tenancy::deployment_id(hub, &cd.namespace().unwrap_or_default(), &cd.name_any())
}

/// The class deployment of an id of this hub's.
fn object_ref_of(hub: &str, id: &str) -> Option<ObjectRef<OClassDeployment>> {
    let id = tenancy::parse_deployment_id(id)
        .ok()
        .filter(|id| id.hub == hub)?;
    Some(ObjectRef::new(id.name).within(id.namespace))
}

pub async fn run(ctx: Arc<Context>, changed: mpsc::UnboundedReceiver<String>) {
    let hub = ctx.registry.hub().to_string();
    let (deployments, changes) = spec_changes(
        ctx.scope.api::<OClassDeployment>(&ctx.client),
        watcher::Config::default(),
    );
    let controller = Controller::for_stream(changes, deployments.clone());
    let for_clusters = deployments.clone();
    let for_packages = deployments.clone();
    let cluster_changes = cluster_placement_changes(
        Api::<OCluster>::all(ctx.client.clone()),
        ctx.scope.clusters(),
    );
    controller
        // Cluster health and availability change plans: look at every deployment again,
        // once the clusters cache that reconcile reads has the change too.
        .watches_stream(
            after_cached(cluster_changes, ctx.clusters.clone()),
            move |_| {
                for_clusters
                    .state()
                    .iter()
                    .map(|cd| ObjectRef::from_obj(cd.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A package changed: its deployments look again, once the packages cache that
        // reconcile reads has the change too.
        .watches_stream(
            after_cached(
                generation_changes(
                    ctx.scope.api::<OPackage>(&ctx.client),
                    watcher::Config::default(),
                ),
                ctx.packages.clone(),
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
        .reconcile_on(UnboundedReceiverStream::new(changed).filter_map(move |id| {
            let found = object_ref_of(&hub, &id);
            async move { found }
        }))
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(oaas_operator_common::reconcile::CONCURRENCY),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(cd: Arc<OClassDeployment>, error: &Error, _: Arc<Context>) -> Action {
    warn!(deployment = %cd.name_any(), %error, "class deployment reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

#[instrument(skip_all, fields(deployment = %deployment_id(ctx.registry.hub(), &cd)))]
async fn reconcile(cd: Arc<OClassDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api = Api::<OClassDeployment>::namespaced(
        ctx.client.clone(),
        &cd.namespace().unwrap_or_default(),
    );
    let metrics = &ctx.metrics;
    with_finalizer(
        &api,
        SPOKE_CLEANUP_FINALIZER,
        cd,
        metrics,
        "oclassdeployment",
        |event| async {
            match event {
                Finalizer::Apply(cd) => apply(&cd, &ctx).await,
                Finalizer::Cleanup(cd) => cleanup(&cd, &ctx).await,
            }
        },
    )
    .await
}

async fn apply(cd: &OClassDeployment, ctx: &Context) -> Result<Action, Error> {
    let inputs = gather(cd, ctx);
    let rollout = match decide::decide(&inputs) {
        Decision::Blocked(rollout) => {
            record(cd, ctx, &inputs, rollout).await?;
            // A package that seems missing may only be late: the packages cache and the
            // watch that wakes this deployment recover separately after an API server
            // outage, so look again soon rather than wait for the next change.
            return Ok(Action::requeue(Duration::from_secs(20)));
        }
        Decision::Rollout(plan) => {
            let (acted, changed) = act(cd, ctx, &inputs.id, &plan).await;
            // Told after the sends, which it would otherwise delay by a write.
            if plan.replanned {
                let note = format!("clusters {:?}: {}", plan.plan.clusters, plan.plan.reason);
                publish_event(&ctx.recorder, cd, EventType::Normal, "Planned", note).await;
            }
            report_restores(cd, ctx, &plan, &changed).await;
            decide::finish(&inputs, plan, acted)
        }
    };
    let phase = rollout.phase();
    record(cd, ctx, &inputs, rollout).await?;
    Ok(Action::requeue(if phase == Phase::Available {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(15)
    }))
}

/// What the hub knows now, as plain data.
fn gather(cd: &OClassDeployment, ctx: &Context) -> Inputs {
    let id = deployment_id(ctx.registry.hub(), cd);
    let namespace = cd.namespace().unwrap_or_default();
    let lookup = |name: &str| {
        ctx.packages
            .get(&ObjectRef::new(name).within(&namespace))
            .map(|p| (*p).clone())
    };
    let resolved = resolve(&cd.spec, &namespace, lookup(&cd.spec.package), &lookup);
    let now = Timestamp::now();
    let clusters = cluster_views(ctx, now);
    let reported = clusters
        .iter()
        .filter_map(|c| {
            let status = ctx.registry.board.get(&c.name, &id)?;
            let held = Held {
                revision: status.revision,
                spec_hash: status.spec_hash,
            };
            Some((c.name.clone(), held))
        })
        .collect();
    Inputs {
        namespace,
        generation: cd.metadata.generation,
        spec: cd.spec.clone(),
        resolved,
        clusters,
        reported,
        previous: ctx.status.current(cd, cd.status.as_ref()),
        now: Time(now),
        id,
    }
}

/// What a deployment runs, or why it cannot run: its package must exist and be enabled,
/// and so must its class. A disabled package or class blocks the rollout as a missing one
/// does: nothing is sent or removed (runtimes already in the spokes stay as they are) and
/// the status says why, until it is enabled again.
fn resolve(
    spec: &OClassDeploymentSpec,
    namespace: &str,
    package: Option<OPackage>,
    packages: &impl Packages,
) -> Result<ResolvedClass, Problem> {
    let name = &spec.package;
    let Some(package) = package else {
        return Err(Problem {
            reason: "PackageNotFound",
            message: format!("OPackage {namespace}/{name} does not exist"),
        });
    };
    if package.spec.disabled {
        return Err(Problem {
            reason: "PackageDisabled",
            message: format!(
                "OPackage {namespace}/{name} is disabled: set its spec.disabled to false to \
                 roll out its classes"
            ),
        });
    }
    let key = &spec.class_key;
    if package
        .spec
        .classes
        .iter()
        .any(|c| &c.key == key && c.disabled)
    {
        return Err(Problem {
            reason: "ClassDisabled",
            message: format!(
                "class {key} of OPackage {namespace}/{name} is disabled: set disabled to false \
                 on class {key} in the package's spec.classes to roll it out"
            ),
        });
    }
    resolve_class(spec, &package, packages)
}

/// A view of every OCluster the hub knows.
fn cluster_views(ctx: &Context, now: Timestamp) -> Vec<ClusterView> {
    ctx.clusters
        .state()
        .iter()
        .map(|c| cluster_view(c, ctx, now))
        .collect()
}

fn cluster_view(cluster: &OCluster, ctx: &Context, now: Timestamp) -> ClusterView {
    let name = cluster.name_any();
    let status = cluster.status.clone().unwrap_or_default();
    ClusterView {
        connected: ctx.registry.get(&name).is_some(),
        labels: cluster.labels().clone(),
        health: status.health,
        availability: status.availability,
        unready_for: unready_for(&status, now),
        namespace_prefix: cluster.spec.namespace_prefix.clone(),
        default: cluster.spec.default,
        ready_nodes: status.ready_nodes,
        name,
    }
}

/// How long a cluster has not been Ready, from its Ready condition.
fn unready_for(status: &OClusterStatus, now: Timestamp) -> Duration {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY && c.status == "False")
        .and_then(|c| now.duration_since(c.last_transition_time.0).try_into().ok())
        .unwrap_or_default()
}

/// Sends the units and removes the class from clusters that left the plan, concurrently.
/// Also returns the clusters where a send changed what the spoke held.
async fn act(
    cd: &OClassDeployment,
    ctx: &Context,
    id: &str,
    plan: &Plan,
) -> (Acted, BTreeSet<String>) {
    let correlation = correlation_id(cd);
    let sends = join_all(plan.sends.iter().map(|(cluster, unit)| {
        let expected = || ctx.registry.board.get(cluster, id).map(|s| s.revision);
        let correlation = &correlation;
        async move {
            let outcome = ctx
                .spokes
                .deploy(cluster, unit, expected, correlation)
                .await
                .map_err(|e| e.to_string());
            (cluster.clone(), outcome)
        }
    }));
    let removals = join_all(plan.removals.iter().map(|cluster| {
        let correlation = &correlation;
        async move {
            let outcome = ctx.spokes.delete(cluster, id, correlation).await;
            (cluster.clone(), outcome)
        }
    }));
    let (sent, removed) = tokio::join!(sends, removals);
    let failed_removals = removed
        .into_iter()
        .filter_map(|(cluster, outcome)| Some((cluster, outcome.err()?.to_string())))
        .collect();
    // Read after the sends: a fast spoke has reported the new revision already.
    let reported = plan
        .plan
        .clusters
        .iter()
        .filter_map(|c| Some((c.clone(), ctx.registry.board.get(c, id)?)))
        .collect();
    let changed = sent
        .iter()
        .filter(|(_, outcome)| outcome.as_ref().is_ok_and(|changed| *changed))
        .map(|(cluster, _)| cluster.clone())
        .collect();
    let sent = sent
        .into_iter()
        .map(|(cluster, outcome)| {
            let revision = plan
                .sends
                .iter()
                .find(|(c, _)| *c == cluster)
                .map(|(_, u)| u.revision);
            (cluster, outcome.map(|_| revision.unwrap_or_default()))
        })
        .collect();
    let acted = Acted {
        sent,
        failed_removals,
        reported,
    };
    (acted, changed)
}

/// A send that changed what a spoke held, where the hub knew it held this revision already:
/// the spoke's copy had been edited or deleted there, and is now put back.
async fn report_restores(
    cd: &OClassDeployment,
    ctx: &Context,
    plan: &Plan,
    changed: &BTreeSet<String>,
) {
    for cluster in plan.restores.intersection(changed) {
        ctx.metrics.count_drift_restored(cluster);
        let note =
            format!("the copy in cluster {cluster} was edited or deleted there; sent it again");
        warn!(deployment = %deployment_id(ctx.registry.hub(), cd), %cluster, "drift restored");
        let related = ctx
            .clusters
            .get(&ObjectRef::new(cluster))
            .map(|c| kube::Resource::object_ref(c.as_ref(), &()));
        publish_related_event(
            &ctx.recorder,
            cd,
            related,
            EventType::Warning,
            "Drifted",
            note,
        )
        .await;
    }
}

/// Writes the status (when it changed) and says what changed in events.
async fn record(
    cd: &OClassDeployment,
    ctx: &Context,
    inputs: &Inputs,
    rollout: Rollout,
) -> Result<(), Error> {
    let previous = &inputs.previous;
    let phase = rollout.phase();
    if phase == Phase::Degraded && previous.phase != Some(Phase::Degraded) {
        let message = rollout.degraded_message().unwrap_or_default().to_string();
        publish_event(&ctx.recorder, cd, EventType::Warning, "Degraded", message).await;
    }
    let mut status = rollout.status;
    status.observed_generation = cd.metadata.generation;
    status.conditions = conditions::merge(
        &previous.conditions,
        &rollout.conditions,
        cd.metadata.generation,
        &inputs.now,
    );
    debug!(?phase, clusters = ?status.clusters.iter().map(|c| (&c.cluster, c.phase)).collect::<Vec<_>>(), "reconciled");
    if only_progress(previous, &status) && ctx.status.wrote_within(cd, PROGRESS_HOLD) {
        debug!("progress held back; written with the next change or look");
        return Ok(());
    }
    let api = Api::namespaced(ctx.client.clone(), &cd.namespace().unwrap_or_default());
    ctx.status.write(&api, cd, previous, status).await?;
    Ok(())
}

fn correlation_id(cd: &OClassDeployment) -> String {
    cd.annotations()
        .get(CORRELATION_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| cd.uid().unwrap_or_default())
}

/// Removes the class from every cluster that may hold it, then lets the finalizer go. A
/// cluster that cannot be reached keeps the finalizer (and retries) until it answers or its
/// OCluster is deleted.
async fn cleanup(cd: &OClassDeployment, ctx: &Context) -> Result<Action, Error> {
    let id = deployment_id(ctx.registry.hub(), cd);
    let correlation = correlation_id(cd);
    let status = ctx.status.current(cd, cd.status.as_ref());
    let clusters = cluster_views(ctx, Timestamp::now());
    let targets = decide::cleanup_targets(&cd.spec, &status, &clusters);
    let results = join_all(targets.iter().map(|(cluster, reachable)| async {
        reachable.clone()?;
        ctx.spokes
            .delete(cluster, &id, &correlation)
            .await
            .map_err(|e| e.to_string())
    }))
    .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !failures.is_empty() {
        return Err(Error::Spokes(failures.join("; ")));
    }
    ctx.status.forget(cd);
    let clusters: Vec<&str> = targets.iter().map(|(c, _)| c.as_str()).collect();
    info!(deployment = %id, ?clusters, "removed from every cluster");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn mk_package(package_disabled: bool, class_disabled: bool) -> OPackage {
        use oaas_crds::package::{ClassSpec, OPackageSpec};
        OPackage::new(
            "shop",
            OPackageSpec {
                classes: vec![
                    ClassSpec {
                        key: "Cart".into(),
                        disabled: class_disabled,
                        ..Default::default()
                    },
                    ClassSpec {
                        key: "Order".into(),
                        ..Default::default()
                    },
                ],
                disabled: package_disabled,
                ..Default::default()
            },
        )
    }

    fn mk_spec(class: &str) -> OClassDeploymentSpec {
        OClassDeploymentSpec {
            package: "shop".into(),
            class_key: class.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_disabled_class_is_not_rolled_out_and_says_how_to_enable_it() {
        let none = |_: &str| None::<OPackage>;
        let problem = resolve(
            &mk_spec("Cart"),
            "team",
            Some(mk_package(false, true)),
            &none,
        )
        .unwrap_err();
        assert_eq!(problem.reason, "ClassDisabled");
        for part in ["class Cart", "OPackage team/shop", "disabled to false"] {
            assert!(
                problem.message.contains(part),
                "{part}: {}",
                problem.message
            );
        }
        // The package's other classes still roll out; so does the class once enabled.
        assert!(
            resolve(
                &mk_spec("Order"),
                "team",
                Some(mk_package(false, true)),
                &none
            )
            .is_ok()
        );
        assert!(
            resolve(
                &mk_spec("Cart"),
                "team",
                Some(mk_package(false, false)),
                &none
            )
            .is_ok()
        );
        // A disabled package blocks every class, and is named first.
        let problem = resolve(
            &mk_spec("Cart"),
            "team",
            Some(mk_package(true, true)),
            &none,
        )
        .unwrap_err();
        assert_eq!(problem.reason, "PackageDisabled");
        assert!(problem.message.contains("spec.disabled to false"));
        let problem = resolve(&mk_spec("Cart"), "team", None, &none).unwrap_err();
        assert_eq!(problem.reason, "PackageNotFound");
    }

    #[test]
    fn ids_map_back_to_the_object() {
        let r = object_ref_of("hub", "hub/team/record").unwrap();
        assert_eq!(
            (r.name.as_str(), r.namespace.as_deref()),
            ("record", Some("team"))
        );
        assert!(object_ref_of("hub", "other-hub/team/record").is_none());
        assert!(object_ref_of("hub", "team/record").is_none());
    }

    #[test]
    fn a_cluster_is_unready_since_its_ready_condition_turned_false() {
        let since = Timestamp::from_second(1_800_000_000).unwrap();
        let ready = |status: &str| OClusterStatus {
            conditions: vec![Condition {
                type_: READY.into(),
                status: status.into(),
                last_transition_time: Time(since),
                message: String::new(),
                observed_generation: None,
                reason: "Unreachable".into(),
            }],
            ..Default::default()
        };
        let later = since + Duration::from_secs(42);
        assert_eq!(unready_for(&ready("False"), later), Duration::from_secs(42));
        assert_eq!(unready_for(&ready("True"), later), Duration::ZERO);
        assert_eq!(
            unready_for(&OClusterStatus::default(), later),
            Duration::ZERO
        );
    }
}
