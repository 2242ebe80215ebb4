//! The OCluster controller: keeps a channel per spoke in the registry, checks its health on
//! an interval (grpc.health.v1 + CRM info) behind a circuit breaker, and reports Healthy,
//! Degraded or Unreachable with node counts, availability and versions.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Client, ResourceExt};
use oaas_crds::OCluster;
use oaas_crds::cluster::{CircuitState, ClusterHealth, OClusterStatus};
use oaas_crds::conditions::{self, Desired, READY};
use oaas_proto::crm::GetClusterInfoRequest;
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::Error;
use crate::metrics::Metrics;
use crate::registry::{Connection, Registry, Spoke, TlsMaterial};
use crate::scope::Scope;
use crate::triggers::spec_changes;

pub const FINALIZER: &str = "oaas.io/cluster-registry";
const FIELD_MANAGER: &str = "oaas-pm";

pub struct Context {
    pub client: Client,
    pub scope: Scope,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

pub async fn run(ctx: Arc<Context>) {
    let (store, changes) = spec_changes(
        Api::<OCluster>::all(ctx.client.clone()),
        ctx.scope.clusters(),
    );
    Controller::for_stream(changes, store)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(cluster: Arc<OCluster>, error: &Error, _: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), %error, "cluster reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[instrument(skip_all, fields(cluster = %cluster.name_any()))]
async fn reconcile(cluster: Arc<OCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api = Api::<OCluster>::all(ctx.client.clone());
    let started = Instant::now();
    let result = finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            Finalizer::Apply(cluster) => check(&cluster, &ctx).await,
            Finalizer::Cleanup(cluster) => {
                info!(cluster = %cluster.name_any(), "unregistering spoke");
                ctx.registry.remove(&cluster.name_any());
                ctx.metrics.forget_cluster(&cluster.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .observe_reconcile("ocluster", started.elapsed(), result.is_err());
    result
}

/// What one health check found.
struct Probe {
    serving: bool,
    info: oaas_proto::crm::ClusterInfo,
}

async fn probe(spoke: &Spoke) -> Result<Probe, String> {
    let deadline = spoke.connection.timeout.min(Duration::from_secs(5));
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    let health = tokio::time::timeout(deadline, spoke.health().check(check))
        .await
        .map_err(|_| {
            format!(
                "no answer from {} within {deadline:?}",
                spoke.connection.endpoint
            )
        })?
        .map_err(|s| format!("health check: {} ({:?})", s.message(), s.code()))?;
    let serving = health.into_inner().status()
        == tonic_health::pb::health_check_response::ServingStatus::Serving;
    // A CRM that answers but cannot reach its own API server cannot deploy anything: the
    // cluster is as unreachable as if the CRM were silent.
    let info = tokio::time::timeout(
        deadline,
        spoke.info().get_cluster_info(GetClusterInfoRequest {}),
    )
    .await
    .map_err(|_| {
        format!(
            "no cluster info from {} within {deadline:?}",
            spoke.connection.endpoint
        )
    })?
    .map_err(|s| format!("cluster info: {} ({:?})", s.message(), s.code()))?
    .into_inner();
    Ok(Probe { serving, info })
}

/// The data of a Secret the OCluster references.
async fn secret_data(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, ByteString>, String> {
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
    Ok(secret.data.unwrap_or_default())
}

/// How to reach the cluster: its spec plus the token and TLS files from its Secrets.
async fn connection(ctx: &Context, cluster: &OCluster) -> Result<Connection, String> {
    let spec = &cluster.spec;
    let token = match &spec.credentials {
        None => None,
        Some(selector) => {
            let data = secret_data(ctx, &selector.namespace, &selector.name).await?;
            let value = data.get(&selector.key).ok_or_else(|| {
                format!(
                    "credentials Secret {}/{} has no key {:?}",
                    selector.namespace, selector.name, selector.key
                )
            })?;
            let token = String::from_utf8(value.0.clone())
                .map_err(|_| "the bearer token is not UTF-8".to_string())?;
            Some(token.trim().to_string())
        }
    };
    let tls = match &spec.tls {
        None => None,
        Some(tls) => {
            let (namespace, name) = (&tls.secret_ref.namespace, &tls.secret_ref.name);
            let data = secret_data(ctx, namespace, name).await?;
            let file = |key: &str| data.get(key).map(|v| v.0.clone());
            let ca = file("ca.crt").ok_or_else(|| {
                format!(
                    "TLS Secret {namespace}/{name} has no ca.crt (the CA of the CRM's certificate)"
                )
            })?;
            let identity = match (file("tls.crt"), file("tls.key")) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(format!(
                        "TLS Secret {namespace}/{name}: mutual TLS needs both tls.crt and tls.key"
                    ));
                }
            };
            Some(TlsMaterial {
                ca,
                identity,
                server_name: tls.server_name.clone(),
            })
        }
    };
    Ok(Connection {
        endpoint: spec.endpoint.clone(),
        timeout: Duration::from_secs(spec.timeout_seconds.into()),
        retries: spec.retry_attempts,
        token,
        tls,
    })
}

async fn check(cluster: &OCluster, ctx: &Context) -> Result<Action, Error> {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let interval = Duration::from_secs(spec.health_check_interval_seconds.into());
    let open_for = Duration::from_secs(spec.circuit_open_seconds.into());
    let previous = cluster.status.clone().unwrap_or_default();

    let spoke = match connection(ctx, cluster)
        .await
        .and_then(|connection| Spoke::new(&name, connection))
    {
        Ok(spoke) => spoke,
        Err(problem) => {
            ctx.registry.remove(&name);
            let status = OClusterStatus {
                health: ClusterHealth::Unknown,
                message: Some(problem.clone()),
                ..previous.clone()
            };
            write_status(
                ctx,
                cluster,
                &previous,
                status,
                Desired::new(READY, false, "InvalidConfiguration", problem),
            )
            .await?;
            return Ok(Action::requeue(interval));
        }
    };
    ctx.registry.upsert(spoke.clone());

    let now = Instant::now();
    let mut breaker = ctx
        .registry
        .breakers
        .lock()
        .expect("breaker lock")
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let outcome = if breaker.allow(now, open_for) {
        let result = probe(&spoke).await;
        match &result {
            Ok(_) => breaker.success(),
            Err(_) => breaker.failure(now, spec.failure_threshold),
        }
        Some(result)
    } else {
        None
    };
    let next_check = breaker
        .wait(Instant::now(), open_for)
        .map(|w| w.min(interval))
        .unwrap_or(interval);
    ctx.registry
        .breakers
        .lock()
        .expect("breaker lock")
        .insert(name.clone(), breaker.clone());

    let mut status = OClusterStatus {
        observed_generation: cluster.metadata.generation,
        circuit: breaker.state,
        consecutive_failures: breaker.consecutive_failures,
        ..previous.clone()
    };
    let ready = match outcome {
        Some(Ok(probe)) => {
            status.last_seen = Some(Time(Timestamp::now()));
            let info = &probe.info;
            status.node_count = Some(info.node_count);
            status.ready_nodes = Some(info.ready_nodes);
            status.nodes = Some(format!("{}/{}", info.ready_nodes, info.node_count));
            status.crm_version = Some(info.crm_version.clone()).filter(|v| !v.is_empty());
            status.kubernetes_version =
                Some(info.kubernetes_version.clone()).filter(|v| !v.is_empty());
            status.availability = spec.availability.or(Some(info.availability));
            let has_nodes = info.ready_nodes > 0;
            if probe.serving && has_nodes {
                status.health = ClusterHealth::Healthy;
                status.message = None;
                Desired::new(
                    READY,
                    true,
                    "Healthy",
                    "the CRM answers and its cluster has ready nodes",
                )
            } else {
                let why = if probe.serving {
                    "the CRM reports no ready nodes"
                } else {
                    "the CRM is not serving"
                };
                status.health = ClusterHealth::Degraded;
                status.message = Some(why.into());
                Desired::new(READY, false, "Degraded", why)
            }
        }
        Some(Err(problem)) => {
            status.health = if breaker.state == CircuitState::Open {
                ClusterHealth::Unreachable
            } else {
                ClusterHealth::Degraded
            };
            status.message = Some(problem.clone());
            let reason = if breaker.state == CircuitState::Open {
                "Unreachable"
            } else {
                "CheckFailed"
            };
            Desired::new(READY, false, reason, problem)
        }
        None => {
            status.health = ClusterHealth::Unreachable;
            let message = format!(
                "circuit open after {} failed checks; next probe soon",
                breaker.consecutive_failures
            );
            status.message = Some(message.clone());
            Desired::new(READY, false, "Unreachable", message)
        }
    };
    ctx.metrics.set_cluster_health(&name, status.health);
    write_status(ctx, cluster, &previous, status, ready).await?;
    Ok(Action::requeue(next_check))
}

async fn write_status(
    ctx: &Context,
    cluster: &OCluster,
    previous: &OClusterStatus,
    mut status: OClusterStatus,
    ready: Desired,
) -> Result<(), Error> {
    let now = Time(Timestamp::now());
    status.conditions = conditions::merge(
        &previous.conditions,
        &[ready],
        cluster.metadata.generation,
        &now,
    );
    if &status == previous {
        return Ok(());
    }
    if status.health != previous.health {
        info!(cluster = %cluster.name_any(), from = ?previous.health, to = ?status.health, "cluster health changed");
    }
    let patch = json!({"apiVersion": "oaas.io/v1alpha1", "kind": "OCluster", "status": status});
    Api::<OCluster>::all(ctx.client.clone())
        .patch_status(
            &cluster.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}
