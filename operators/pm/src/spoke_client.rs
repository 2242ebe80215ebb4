//! Every call the PM makes to a spoke's CRM: the class deployment controller's Deploy and
//! Delete, the REST facade's class-runtime reads, and the cluster controller's health
//! probe. One place owns the deadline, the retries, the circuit breaker, the correlation id
//! and the call metrics, so the callers cannot disagree on them.
use std::sync::Arc;
use std::time::{Duration, Instant};

use oaas_core::wire::CORRELATION_HEADER;
use oaas_crds::cluster::{ClusterHealth, OClusterStatus};
use oaas_proto::crm::{ClusterInfo, GetClusterInfoRequest};
use oaas_proto::deployment as pb;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::metrics::Metrics;
use crate::registry::{Registry, Spoke};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpokeError {
    #[error("cluster {0} is not registered yet")]
    NotRegistered(String),
    #[error("cluster {0} is unreachable (circuit open)")]
    CircuitOpen(String),
    #[error("{method} on {cluster}: no answer within {timeout:?}")]
    Timeout {
        cluster: String,
        method: &'static str,
        timeout: Duration,
    },
    #[error("{method} on {cluster}: {message} ({code:?})")]
    Failed {
        cluster: String,
        method: &'static str,
        code: tonic::Code,
        message: String,
    },
}

impl SpokeError {
    fn code(&self) -> tonic::Code {
        match self {
            Self::Timeout { .. } => tonic::Code::DeadlineExceeded,
            Self::Failed { code, .. } => *code,
            Self::NotRegistered(_) | Self::CircuitOpen(_) => tonic::Code::Unavailable,
        }
    }

    /// Worth another try: the spoke may answer differently in a moment. (A cluster not
    /// registered or cut off by its breaker changes only with its next health check.)
    fn transient(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Failed { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Aborted
                    | tonic::Code::FailedPrecondition
            ),
            Self::NotRegistered(_) | Self::CircuitOpen(_) => false,
        }
    }
}

/// Whether a call may be tried again after a transient failure.
#[derive(Clone, Copy, PartialEq)]
enum Retries {
    /// As many times as the OCluster's `retryAttempts` say (controllers).
    AsConfigured,
    /// Once: someone is waiting for the answer (REST).
    None,
}

/// What one health check found.
pub struct Probe {
    pub serving: bool,
    pub info: ClusterInfo,
}

impl Probe {
    /// Healthy when the CRM serves and its cluster has ready nodes; else Degraded, and why.
    pub fn verdict(&self) -> (ClusterHealth, Option<&'static str>) {
        match (self.serving, self.info.ready_nodes > 0) {
            (true, true) => (ClusterHealth::Healthy, None),
            (true, false) => (
                ClusterHealth::Degraded,
                Some("the CRM reports no ready nodes"),
            ),
            (false, _) => (ClusterHealth::Degraded, Some("the CRM is not serving")),
        }
    }
}

#[derive(Clone)]
pub struct SpokeClient {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

impl SpokeClient {
    pub fn new(registry: Arc<Registry>, metrics: Arc<Metrics>) -> Self {
        Self { registry, metrics }
    }

    /// This hub's name: the first part of its deployment ids.
    pub fn hub(&self) -> &str {
        self.registry.hub()
    }

    /// Sends a unit; returns whether the spoke changed anything. Each try expects the
    /// revision the spoke last reported, read afresh by `expected`, so a conflict with a
    /// newer write is retried from the current view and a request delayed by a slow spoke
    /// cannot roll it back.
    pub async fn deploy(
        &self,
        cluster: &str,
        unit: &pb::DeploymentUnit,
        expected: impl Fn() -> Option<i64>,
        correlation: &str,
    ) -> Result<bool, SpokeError> {
        self.call(cluster, "Deploy", Retries::AsConfigured, |spoke| {
            let mut client = spoke.deployments();
            let message = pb::DeployRequest {
                deployment_unit: Some(unit.clone()),
                expected_revision: expected(),
            };
            let request = request(message, spoke, Some(correlation));
            async move { client.deploy(request).await }
        })
        .await
        .map(|response| response.changed)
    }

    pub async fn delete(
        &self,
        cluster: &str,
        id: &str,
        correlation: &str,
    ) -> Result<(), SpokeError> {
        self.call(
            cluster,
            "DeleteDeployment",
            Retries::AsConfigured,
            |spoke| {
                let mut client = spoke.deployments();
                let message = pb::DeleteDeploymentRequest {
                    deployment_id: id.to_string(),
                };
                let request = request(message, spoke, Some(correlation));
                async move { client.delete_deployment(request).await }
            },
        )
        .await
        .map(drop)
    }

    pub async fn list_class_runtimes(
        &self,
        cluster: &str,
        message: pb::ListClassRuntimesRequest,
    ) -> Result<pb::ListClassRuntimesResponse, SpokeError> {
        self.call(cluster, "ListClassRuntimes", Retries::None, |spoke| {
            let mut client = spoke.deployments();
            let request = request(message.clone(), spoke, None);
            async move { client.list_class_runtimes(request).await }
        })
        .await
    }

    /// The class runtime of a deployment, `None` when the spoke has none.
    pub async fn get_class_runtime(
        &self,
        cluster: &str,
        deployment_id: &str,
    ) -> Result<Option<pb::ClassRuntimeInfo>, SpokeError> {
        let answer = self
            .call(cluster, "GetClassRuntime", Retries::None, |spoke| {
                let mut client = spoke.deployments();
                let message = pb::GetClassRuntimeRequest {
                    deployment_id: deployment_id.to_string(),
                };
                let request = request(message, spoke, None);
                async move { client.get_class_runtime(request).await }
            })
            .await;
        match answer {
            Ok(info) => Ok(Some(info)),
            Err(SpokeError::Failed {
                code: tonic::Code::NotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A health check: grpc.health.v1 and the CRM's cluster info, each within the cluster's
    /// deadline (at most 5 s). It ignores the breaker: the cluster controller decides when
    /// to probe, and a probe is how an open circuit closes again.
    pub async fn probe(&self, spoke: &Spoke) -> Result<Probe, SpokeError> {
        let deadline = spoke.connection.timeout.min(Duration::from_secs(5));
        let health = self
            .attempt(spoke, "Check", deadline, |spoke| {
                let mut client = spoke.health();
                let request = request(HealthCheckRequest::default(), spoke, None);
                async move { client.check(request).await }
            })
            .await?;
        let info = self
            .attempt(spoke, "GetClusterInfo", deadline, |spoke| {
                let mut client = spoke.info();
                let request = request(GetClusterInfoRequest {}, spoke, None);
                async move { client.get_cluster_info(request).await }
            })
            .await?;
        Ok(Probe {
            serving: health.status() == ServingStatus::Serving,
            info,
        })
    }

    /// The status this process's last health check of `cluster` found (none: this replica
    /// is not the leader, or has not checked it yet).
    pub fn last_check(&self, cluster: &str) -> Option<OClusterStatus> {
        self.registry.last_check(cluster)
    }

    /// A health check on behalf of the REST facade, when the last one is too old: like
    /// [`Self::probe`], but not through an open circuit nor to a cluster not registered
    /// (this replica is not the leader, or the cluster's settings are invalid).
    pub async fn refresh(&self, cluster: &str) -> Result<Probe, SpokeError> {
        let spoke = self.callable(cluster)?;
        self.probe(&spoke).await
    }

    /// The registered spoke `cluster`, unless its circuit is open.
    fn callable(&self, cluster: &str) -> Result<Spoke, SpokeError> {
        if self.registry.circuit_open(cluster) {
            return Err(SpokeError::CircuitOpen(cluster.to_string()));
        }
        self.registry
            .get(cluster)
            .ok_or_else(|| SpokeError::NotRegistered(cluster.to_string()))
    }

    /// A call to a registered spoke whose circuit is not open, retried on transient
    /// failures with a capped exponential backoff.
    async fn call<T, F, Fut>(
        &self,
        cluster: &str,
        method: &'static str,
        retries: Retries,
        mut call: F,
    ) -> Result<T, SpokeError>
    where
        F: FnMut(&Spoke) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let spoke = self.callable(cluster)?;
        let tries = match retries {
            Retries::AsConfigured => spoke.connection.retries + 1,
            Retries::None => 1,
        };
        let mut attempt = 1;
        loop {
            let result = self
                .attempt(&spoke, method, spoke.connection.timeout, &mut call)
                .await;
            match result {
                Err(e) if e.transient() && attempt < tries => {
                    tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt.min(5)))).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One try within `deadline`, measured.
    async fn attempt<T, F, Fut>(
        &self,
        spoke: &Spoke,
        method: &'static str,
        deadline: Duration,
        call: F,
    ) -> Result<T, SpokeError>
    where
        F: FnOnce(&Spoke) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let result = match tokio::time::timeout(deadline, call(spoke)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(SpokeError::Failed {
                cluster: spoke.name.clone(),
                method,
                code: status.code(),
                message: status.message().to_string(),
            }),
            Err(_) => Err(SpokeError::Timeout {
                cluster: spoke.name.clone(),
                method,
                timeout: deadline,
            }),
        };
        let code = result
            .as_ref()
            .map_or_else(SpokeError::code, |_| tonic::Code::Ok);
        self.metrics
            .observe_call(&spoke.name, method, code, started.elapsed());
        result
    }
}

/// A request with the cluster's deadline (which the CRM sees too) and the correlation id.
fn request<M>(message: M, spoke: &Spoke, correlation: Option<&str>) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(spoke.connection.timeout);
    if let Some(value) = correlation.and_then(|c| c.parse().ok()) {
        request.metadata_mut().insert(CORRELATION_HEADER, value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::Breaker;
    use crate::registry::Connection;

    /// A spoke registered at an address where nothing listens: any attempted call would
    /// fail with Unavailable and count in the call metrics.
    fn mk_client() -> SpokeClient {
        let (registry, _changes) = Registry::new("hub".into());
        let connection = Connection {
            endpoint: "http://127.0.0.1:9".into(),
            timeout: Duration::from_millis(200),
            retries: 0,
            token: None,
            tls: None,
        };
        registry.upsert(Spoke::new("spoke-a", connection).unwrap());
        SpokeClient::new(registry, Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn a_deploy_to_a_cluster_whose_circuit_is_open_is_not_attempted() {
        let client = mk_client();
        let mut breaker = Breaker::default();
        breaker.failure(Instant::now(), 1);
        client.registry.set_breaker("spoke-a", breaker);
        let unit = pb::DeploymentUnit::default();
        let answer = client.deploy("spoke-a", &unit, || None, "c1").await;
        assert_eq!(answer, Err(SpokeError::CircuitOpen("spoke-a".into())));
        assert!(
            !client.metrics.encode().contains("cluster=\"spoke-a\""),
            "no call went out:\n{}",
            client.metrics.encode()
        );
        // With the circuit closed, the same deploy is attempted (and fails: nothing listens).
        client.registry.set_breaker("spoke-a", Breaker::default());
        let answer = client.deploy("spoke-a", &unit, || None, "c1").await;
        assert!(matches!(
            answer,
            Err(SpokeError::Failed { .. } | SpokeError::Timeout { .. })
        ));
        assert!(client.metrics.encode().contains("method=\"Deploy\""));
    }

    #[tokio::test]
    async fn a_refresh_goes_through_neither_an_open_circuit_nor_to_an_unknown_cluster() {
        let client = mk_client();
        assert!(matches!(
            client.refresh("spoke-z").await,
            Err(SpokeError::NotRegistered(_))
        ));
        let mut breaker = Breaker::default();
        breaker.failure(Instant::now(), 1);
        client.registry.set_breaker("spoke-a", breaker);
        assert!(matches!(
            client.refresh("spoke-a").await,
            Err(SpokeError::CircuitOpen(_))
        ));
    }

    #[tokio::test]
    async fn an_unknown_cluster_is_named() {
        let answer = mk_client().delete("spoke-z", "ns/d", "c1").await;
        assert_eq!(answer, Err(SpokeError::NotRegistered("spoke-z".into())));
    }
}
