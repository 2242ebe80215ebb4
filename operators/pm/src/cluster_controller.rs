//! The OCluster controller: keeps a channel per spoke in the registry, checks its health on
//! an interval (grpc.health.v1 + CRM info) behind a circuit breaker, and reports Healthy,
//! Degraded or Unreachable with node counts, availability and versions.
//!
//! A check that finds what the status already says is not written, except to refresh its
//! times (`lastChecked`, `lastSeen`) every `report_interval`: with 100 spokes checked every
//! 10 s, writing each check would be 10 writes a second on the hub that change nothing but a
//! time (Kubernetes moved node heartbeats out of Node status for the same reason). The
//! registry holds every check's status for the REST facade.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::Event as Finalizer;
use kube::{Client, ResourceExt};
use oaas_core::wire::CLUSTER_REGISTRY_FINALIZER;
use oaas_crds::OCluster;
use oaas_crds::cluster::{CircuitState, ClusterHealth, ClusterTls, OClusterStatus};
use oaas_crds::conditions::{self, Desired, READY};
use oaas_operator_common::status::StatusWriter;
use tracing::{info, instrument, warn};

use crate::Error;
use crate::error::with_finalizer;
use crate::metrics::Metrics;
use crate::registry::{Connection, Registry, Spoke, TlsMaterial};
use crate::scope::Scope;
use crate::spoke_client::SpokeClient;
use crate::triggers::spec_changes;

pub struct Context {
    pub client: Client,
    pub scope: Scope,
    pub registry: Arc<Registry>,
    pub spokes: SpokeClient,
    pub metrics: Arc<Metrics>,
    pub status: StatusWriter<OClusterStatus>,
    /// How often a check that changed nothing refreshes the status's times
    /// (`CRM_HEALTH_REPORT_INTERVAL`).
    pub report_interval: Duration,
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
    let metrics = &ctx.metrics;
    with_finalizer(
        &api,
        CLUSTER_REGISTRY_FINALIZER,
        cluster,
        metrics,
        "ocluster",
        |event| async {
            match event {
                Finalizer::Apply(cluster) => check(&cluster, &ctx).await,
                Finalizer::Cleanup(cluster) => {
                    info!(cluster = %cluster.name_any(), "unregistering spoke");
                    ctx.registry.forget(&cluster.name_any());
                    ctx.metrics.forget_cluster(&cluster.name_any());
                    ctx.status.forget(cluster.as_ref());
                    Ok(Action::await_change())
                }
            }
        },
    )
    .await
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
            let ca = file("ca.crt");
            if ca.is_none() && !tls.insecure_skip_verify {
                return Err(format!(
                    "TLS Secret {namespace}/{name} has no ca.crt (the CA of the CRM's certificate)"
                ));
            }
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
                insecure: tls.insecure_skip_verify,
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
    let previous = ctx.status.current(cluster, cluster.status.as_ref());

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
                last_checked: Some(Time(Timestamp::now())),
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
    let mut breaker = ctx.registry.breaker(&name);
    let outcome = if breaker.allow(now, open_for) {
        let result = ctx.spokes.probe(&spoke).await.map_err(|e| e.to_string());
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
    ctx.registry.set_breaker(&name, breaker.clone());

    let mut status = OClusterStatus {
        observed_generation: cluster.metadata.generation,
        circuit: breaker.state,
        consecutive_failures: breaker.consecutive_failures,
        last_checked: Some(Time(Timestamp::now())),
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
            let (health, why) = probe.verdict();
            status.health = health;
            status.message = why.map(String::from);
            match why {
                None => Desired::new(
                    READY,
                    true,
                    "Healthy",
                    "the CRM answers and its cluster has ready nodes",
                ),
                Some(why) => Desired::new(READY, false, "Degraded", why),
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

/// Whether the CRM's certificate is verified: `TLSVerified`, for clusters with `spec.tls`.
/// False while `insecureSkipVerify` is set, so the shortcut stays visible on the OCluster.
pub const TLS_VERIFIED: &str = "TLSVerified";

fn tls_condition(tls: Option<&ClusterTls>) -> Option<Desired> {
    let tls = tls?;
    Some(if tls.insecure_skip_verify {
        Desired::new(
            TLS_VERIFIED,
            false,
            "InsecureSkipVerify",
            "spec.tls.insecureSkipVerify is set: the CRM's certificate is not verified, so \
             anyone on the path can pose as the CRM; for testing only (unset it and put the \
             CA in ca.crt)",
        )
    } else {
        Desired::new(
            TLS_VERIFIED,
            true,
            "Verified",
            "the CRM's certificate is verified against ca.crt",
        )
    })
}

/// The conditions after this check: `ready`, and `TLSVerified` while the cluster uses TLS
/// (dropped when it no longer does).
fn merged_conditions(
    cluster: &OCluster,
    previous: &[Condition],
    ready: Desired,
    now: &Time,
) -> Vec<Condition> {
    let tls = tls_condition(cluster.spec.tls.as_ref());
    let kept: Vec<Condition> = previous
        .iter()
        .filter(|c| tls.is_some() || c.type_ != TLS_VERIFIED)
        .cloned()
        .collect();
    let desired: Vec<Desired> = std::iter::once(ready).chain(tls).collect();
    conditions::merge(&kept, &desired, cluster.metadata.generation, now)
}

/// Whether a check's status is written: when it says something `stored` does not, besides
/// the check times, or when the stored `lastChecked` is `report_interval` old. The API keeps
/// whole seconds, so a stored time is up to a second earlier than the check it records: the
/// age is taken from the second after it, lest the times be refreshed early.
fn worth_writing(
    stored: &OClusterStatus,
    next: &OClusterStatus,
    report_interval: Duration,
    now: Timestamp,
) -> bool {
    let without_times = |s: &OClusterStatus| OClusterStatus {
        last_checked: None,
        last_seen: None,
        ..s.clone()
    };
    if without_times(stored) != without_times(next) {
        return true;
    }
    let reported = stored.last_checked.as_ref().map(|t| t.0);
    let age = |at: Timestamp| now.duration_since(at).unsigned_abs();
    report_interval.is_zero()
        || reported.is_none_or(|at| age(at) >= report_interval + Duration::from_secs(1))
}

async fn write_status(
    ctx: &Context,
    cluster: &OCluster,
    previous: &OClusterStatus,
    mut status: OClusterStatus,
    ready: Desired,
) -> Result<(), Error> {
    let now = Timestamp::now();
    status.conditions = merged_conditions(cluster, &previous.conditions, ready, &Time(now));
    ctx.registry
        .record_check(&cluster.name_any(), status.clone());
    if !worth_writing(previous, &status, ctx.report_interval, now) {
        return Ok(());
    }
    let health = (previous.health, status.health);
    let api = Api::<OCluster>::all(ctx.client.clone());
    if ctx.status.write(&api, cluster, previous, status).await? && health.0 != health.1 {
        info!(cluster = %cluster.name_any(), from = ?health.0, to = ?health.1, "cluster health changed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oaas_crds::cluster::{OClusterSpec, SecretRef};

    fn mk_cluster(tls: Option<ClusterTls>) -> OCluster {
        OCluster::new(
            "spoke-a",
            OClusterSpec {
                endpoint: "https://crm:8088".into(),
                tls,
                ..Default::default()
            },
        )
    }

    fn mk_tls(insecure_skip_verify: bool) -> ClusterTls {
        ClusterTls {
            secret_ref: SecretRef {
                name: "s".into(),
                namespace: "ns".into(),
            },
            server_name: None,
            insecure_skip_verify,
        }
    }

    fn ready() -> Desired {
        Desired::new(READY, true, "Healthy", "ok")
    }

    fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        conditions.iter().find(|c| c.type_ == type_)
    }

    fn checked(at: i64, health: ClusterHealth) -> OClusterStatus {
        let at = Some(Time(Timestamp::from_second(at).unwrap()));
        OClusterStatus {
            health,
            last_checked: at.clone(),
            last_seen: at,
            ..Default::default()
        }
    }

    #[test]
    fn a_check_is_written_when_it_finds_a_change_or_the_times_are_a_report_interval_old() {
        let every = Duration::from_secs(60);
        let now = |s| Timestamp::from_second(s).unwrap();
        let stored = checked(100, ClusterHealth::Healthy);
        let same = checked(130, ClusterHealth::Healthy);
        assert!(
            !worth_writing(&stored, &same, every, now(130)),
            "only the times moved"
        );
        // Stored at 100 (whole seconds), the check it records ran in [100, 101).
        assert!(
            !worth_writing(&stored, &same, every, now(160)),
            "maybe not a minute yet"
        );
        assert!(
            worth_writing(&stored, &same, every, now(161)),
            "times a minute old"
        );
        let changed = checked(130, ClusterHealth::Degraded);
        assert!(
            worth_writing(&stored, &changed, every, now(130)),
            "health changed"
        );
        let counted = OClusterStatus {
            ready_nodes: Some(2),
            ..same.clone()
        };
        assert!(
            worth_writing(&stored, &counted, every, now(130)),
            "nodes changed"
        );
        assert!(
            worth_writing(&OClusterStatus::default(), &same, every, now(130)),
            "never written"
        );
        assert!(
            worth_writing(&stored, &same, Duration::ZERO, now(100)),
            "an interval of 0"
        );
    }

    #[test]
    fn insecure_skip_verify_shows_as_tls_verified_false() {
        let now = Time(Timestamp::now());
        let insecure = merged_conditions(&mk_cluster(Some(mk_tls(true))), &[], ready(), &now);
        let tls = condition(&insecure, TLS_VERIFIED).expect("a TLSVerified condition");
        assert_eq!(
            (tls.status.as_str(), tls.reason.as_str()),
            ("False", "InsecureSkipVerify")
        );
        assert!(tls.message.contains("testing only"), "{}", tls.message);
        assert!(conditions::is_true(&insecure, READY));

        let verified =
            merged_conditions(&mk_cluster(Some(mk_tls(false))), &insecure, ready(), &now);
        let tls = condition(&verified, TLS_VERIFIED).unwrap();
        assert_eq!(
            (tls.status.as_str(), tls.reason.as_str()),
            ("True", "Verified")
        );

        // Plaintext: no TLS to verify, and a TLSVerified left from before goes.
        let plaintext = merged_conditions(&mk_cluster(None), &insecure, ready(), &now);
        assert!(condition(&plaintext, TLS_VERIFIED).is_none());
        assert!(condition(&plaintext, READY).is_some());
    }
}
