//! The spokes the PM talks to: one gRPC channel per OCluster, its breaker and health, and a
//! status watch per spoke that keeps a board of every deployment's latest status there.
//! The board lets the class deployment controller aggregate status without calling spokes.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use oaas_crds::cluster::OClusterStatus;
use oaas_proto::crm::crm_info_service_client::CrmInfoServiceClient;
use oaas_proto::deployment::deployment_service_client::DeploymentServiceClient;
use oaas_proto::deployment::{self as pb, deployment_status_event::Kind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, warn};

use crate::breaker::Breaker;
use crate::insecure_tls::AnyCertificate;

/// Adds the cluster's bearer token, when it has one, to every call.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<AsciiMetadataValue>,
}

impl Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

pub type Grpc = InterceptedService<Channel, Auth>;

/// Largest answer taken from a spoke: a listing of every class runtime of a big spoke can
/// pass gRPC's default 4 MiB (requests stay small and within the CRM's limit).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// TLS towards a spoke, from the Secret its OCluster references.
#[derive(Clone, PartialEq)]
pub struct TlsMaterial {
    /// PEM of the CA that signed the CRM's certificate (unused when `insecure`).
    pub ca: Option<Vec<u8>>,
    /// PEM certificate and key presented to the CRM (mutual TLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify the CRM's certificate against instead of the endpoint's host.
    pub server_name: Option<String>,
    /// Accept any certificate from the CRM (`insecureSkipVerify`, testing only).
    pub insecure: bool,
}

/// Everything a spoke's channel is built from: a change to any of it replaces the channel.
#[derive(Clone, PartialEq)]
pub struct Connection {
    pub endpoint: String,
    pub timeout: Duration,
    pub retries: u32,
    pub token: Option<String>,
    pub tls: Option<TlsMaterial>,
}

/// How to reach one spoke.
#[derive(Clone)]
pub struct Spoke {
    pub name: String,
    pub connection: Connection,
    channel: Channel,
    auth: Auth,
}

impl Spoke {
    /// A lazily connecting channel. An `https://` endpoint needs the TLS material; plaintext
    /// is used only for an `http://` endpoint, which must then come without it.
    pub fn new(name: &str, connection: Connection) -> Result<Self, String> {
        let endpoint = &connection.endpoint;
        let mut channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?
            .connect_timeout(connection.timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        match (endpoint.starts_with("https://"), &connection.tls) {
            (true, Some(tls)) => {
                let mut config = ClientTlsConfig::new();
                if let Some((cert, key)) = &tls.identity {
                    config = config.identity(Identity::from_pem(cert, key));
                }
                if let Some(server_name) = &tls.server_name {
                    config = config.domain_name(server_name.clone());
                }
                channel = match (&tls.ca, tls.insecure) {
                    (_, true) => {
                        channel.tls_config_with_verifier(config, AnyCertificate::verifier())
                    }
                    (Some(ca), false) => {
                        channel.tls_config(config.ca_certificate(Certificate::from_pem(ca)))
                    }
                    (None, false) => {
                        return Err("no CA to verify the CRM's certificate with: put ca.crt \
                                    in the TLS Secret"
                            .into());
                    }
                }
                .map_err(|e| format!("TLS settings: {e}"))?;
            }
            (true, None) => {
                return Err(format!(
                    "endpoint {endpoint} is https://: reference a Secret with ca.crt (and \
                     tls.crt/tls.key for mutual TLS) in spec.tls"
                ));
            }
            (false, Some(_)) => {
                return Err(format!(
                    "spec.tls is set but endpoint {endpoint} is plaintext: use https://, or \
                     remove spec.tls to talk plaintext on purpose"
                ));
            }
            (false, None) => {}
        }
        let token = connection
            .token
            .as_deref()
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
            .transpose()
            .map_err(|_| "the bearer token has characters not allowed in a header".to_string())?;
        Ok(Self {
            name: name.into(),
            channel: channel.connect_lazy(),
            auth: Auth { token },
            connection,
        })
    }

    pub fn deployments(&self) -> DeploymentServiceClient<Grpc> {
        DeploymentServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    pub fn info(&self) -> CrmInfoServiceClient<Grpc> {
        CrmInfoServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn health(&self) -> tonic_health::pb::health_client::HealthClient<Grpc> {
        tonic_health::pb::health_client::HealthClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
    }
}

/// Latest status of every deployment in every spoke, as their watches report it.
#[derive(Default)]
pub struct StatusBoard {
    entries: RwLock<HashMap<(String, String), pb::DeploymentStatus>>,
}

impl StatusBoard {
    pub fn get(&self, cluster: &str, deployment_id: &str) -> Option<pb::DeploymentStatus> {
        let entries = self.entries.read().expect("status board lock");
        entries
            .get(&(cluster.to_string(), deployment_id.to_string()))
            .cloned()
    }

    /// Records what a spoke reported; whether that differs from what it reported before.
    fn set(&self, cluster: &str, status: pb::DeploymentStatus) -> bool {
        let mut entries = self.entries.write().expect("status board lock");
        let key = (cluster.to_string(), status.deployment_id.clone());
        entries.insert(key, status.clone()).as_ref() != Some(&status)
    }

    fn remove(&self, cluster: &str, deployment_id: &str) {
        let mut entries = self.entries.write().expect("status board lock");
        entries.remove(&(cluster.to_string(), deployment_id.to_string()));
    }

    /// Drops entries of a cluster that a fresh snapshot did not mention.
    fn retain_cluster(
        &self,
        cluster: &str,
        seen: &std::collections::HashSet<String>,
    ) -> Vec<String> {
        let mut entries = self.entries.write().expect("status board lock");
        let gone: Vec<String> = entries
            .keys()
            .filter(|(c, id)| c == cluster && !seen.contains(id))
            .map(|(_, id)| id.clone())
            .collect();
        for id in &gone {
            entries.remove(&(cluster.to_string(), id.clone()));
        }
        gone
    }
}

pub struct Registry {
    /// This hub's name: the first part of the ids of its deployments.
    hub: String,
    spokes: RwLock<HashMap<String, Spoke>>,
    watches: Mutex<HashMap<String, JoinHandle<()>>>,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// The status each cluster's last health check found, written to its OCluster or not
    /// (the check times are written only every so often): what the REST facade answers.
    checks: Mutex<HashMap<String, OClusterStatus>>,
    pub board: Arc<StatusBoard>,
    /// Deployment ids whose status changed in some spoke, for the class deployment controller.
    changed: mpsc::UnboundedSender<String>,
}

impl Registry {
    pub fn new(hub: String) -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (changed, receiver) = mpsc::unbounded_channel();
        let registry = Self {
            hub,
            spokes: RwLock::default(),
            watches: Mutex::default(),
            breakers: Mutex::default(),
            checks: Mutex::default(),
            board: Arc::default(),
            changed,
        };
        (Arc::new(registry), receiver)
    }

    pub fn hub(&self) -> &str {
        &self.hub
    }

    pub fn get(&self, name: &str) -> Option<Spoke> {
        self.spokes
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// Registers (or replaces, when its endpoint or settings changed) a spoke and starts
    /// watching its deployments' status.
    pub fn upsert(&self, spoke: Spoke) {
        let unchanged = self
            .get(&spoke.name)
            .is_some_and(|s| s.connection == spoke.connection);
        if unchanged {
            return;
        }
        info!(cluster = %spoke.name, endpoint = %spoke.connection.endpoint, "registering spoke");
        if spoke.connection.tls.as_ref().is_some_and(|t| t.insecure) {
            warn!(
                cluster = %spoke.name,
                "insecureSkipVerify: the CRM's certificate is not verified (testing only)"
            );
        }
        let watch = tokio::spawn(watch_statuses(
            format!("{}/", self.hub),
            spoke.clone(),
            self.board.clone(),
            self.changed.clone(),
        ));
        if let Some(old) = self
            .watches
            .lock()
            .expect("watch lock")
            .insert(spoke.name.clone(), watch)
        {
            old.abort();
        }
        self.spokes
            .write()
            .expect("registry lock")
            .insert(spoke.name.clone(), spoke);
    }

    /// The cluster's circuit breaker (closed for a cluster never checked).
    pub fn breaker(&self, name: &str) -> Breaker {
        let breakers = self.breakers.lock().expect("breaker lock");
        breakers.get(name).cloned().unwrap_or_default()
    }

    pub fn set_breaker(&self, name: &str, breaker: Breaker) {
        let mut breakers = self.breakers.lock().expect("breaker lock");
        breakers.insert(name.to_string(), breaker);
    }

    /// Whether calls to the cluster are cut off until its next health check.
    pub fn circuit_open(&self, name: &str) -> bool {
        self.breaker(name).state == oaas_crds::cluster::CircuitState::Open
    }

    pub fn record_check(&self, name: &str, status: OClusterStatus) {
        let mut checks = self.checks.lock().expect("check lock");
        checks.insert(name.to_string(), status);
    }

    /// The status the cluster's last health check by this process found.
    pub fn last_check(&self, name: &str) -> Option<OClusterStatus> {
        self.checks.lock().expect("check lock").get(name).cloned()
    }

    /// Forgets the cluster's channel, status stream and circuit; its last check stays
    /// (a cluster with invalid settings is unregistered but still checked).
    pub fn remove(&self, name: &str) {
        if let Some(watch) = self.watches.lock().expect("watch lock").remove(name) {
            watch.abort();
        }
        self.spokes.write().expect("registry lock").remove(name);
        self.breakers.lock().expect("breaker lock").remove(name);
    }

    /// Forgets everything of a cluster that is gone.
    pub fn forget(&self, name: &str) {
        self.remove(name);
        self.checks.lock().expect("check lock").remove(name);
    }
}

/// Follows a spoke's status stream for as long as the spoke is registered, reconnecting
/// with a capped backoff. Each change lands on the board and names its deployment.
async fn watch_statuses(
    ours: String,
    spoke: Spoke,
    board: Arc<StatusBoard>,
    changed: mpsc::UnboundedSender<String>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match follow(&ours, &spoke, &board, &changed).await {
            Ok(()) => debug!(cluster = %spoke.name, "status stream ended; reconnecting"),
            Err(status) => {
                debug!(cluster = %spoke.name, %status, "status stream failed; reconnecting")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// `ours` is the id prefix of this hub's deployments: a spoke shared with other hubs reports
/// theirs too, which this hub neither keeps nor acts on.
async fn follow(
    ours: &str,
    spoke: &Spoke,
    board: &StatusBoard,
    changed: &mpsc::UnboundedSender<String>,
) -> Result<(), tonic::Status> {
    let mut stream = spoke
        .deployments()
        .watch_deployment_status(pb::WatchDeploymentStatusRequest {
            deployment_ids: vec![],
        })
        .await?
        .into_inner();
    let mut snapshot = Some(std::collections::HashSet::new());
    while let Some(event) = stream.message().await? {
        let kind = event.kind();
        if kind != Kind::SnapshotComplete
            && !event
                .status
                .as_ref()
                .is_some_and(|s| s.deployment_id.starts_with(ours))
        {
            continue;
        }
        match (kind, event.status) {
            (Kind::Upserted, Some(status)) => {
                if let Some(seen) = snapshot.as_mut() {
                    seen.insert(status.deployment_id.clone());
                }
                // After the snapshot (which wakes every deployment it names: the connection
                // may be new), a spoke reports every event of its runtimes (finalizers,
                // annotations); only a new state is worth a reconcile.
                let id = status.deployment_id.clone();
                let in_snapshot = snapshot.is_some();
                if board.set(&spoke.name, status) || in_snapshot {
                    let _ = changed.send(id);
                }
            }
            (Kind::Deleted, Some(status)) => {
                board.remove(&spoke.name, &status.deployment_id);
                let _ = changed.send(status.deployment_id);
            }
            (Kind::SnapshotComplete, _) => {
                if let Some(seen) = snapshot.take() {
                    for id in board.retain_cluster(&spoke.name, &seen) {
                        let _ = changed.send(id);
                    }
                }
            }
            (kind, _) => warn!(cluster = %spoke.name, ?kind, "unexpected status event"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_connection(tls: Option<TlsMaterial>) -> Connection {
        Connection {
            endpoint: "https://127.0.0.1:9".into(),
            timeout: Duration::from_millis(200),
            retries: 0,
            token: None,
            tls,
        }
    }

    #[tokio::test]
    async fn an_https_spoke_needs_a_ca_unless_verification_is_skipped() {
        let tls = |insecure| TlsMaterial {
            ca: None,
            identity: None,
            server_name: None,
            insecure,
        };
        assert!(Spoke::new("a", mk_connection(Some(tls(true)))).is_ok());
        let problem = Spoke::new("a", mk_connection(Some(tls(false)))).err();
        assert!(problem.is_some_and(|p| p.contains("ca.crt")));
    }
}
