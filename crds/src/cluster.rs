//! `OCluster`: a registered spoke and how to reach its CRM (hub, cluster-scoped).
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A spoke cluster whose class runtime manager (CRM) the package manager deploys to. Put
/// region, environment and similar facts in `metadata.labels`: class deployments select
/// clusters by them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "oaas.io",
    version = "v1alpha1",
    kind = "OCluster",
    doc = "A spoke cluster registered with the hub, reached through its class runtime manager.",
    plural = "oclusters",
    shortname = "ocl",
    category = "oaas",
    status = "OClusterStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.health"}"#,
    printcolumn = r#"{"name":"Nodes","type":"string","description":"ready/total nodes","jsonPath":".status.nodes"}"#,
    printcolumn = r#"{"name":"Availability","type":"number","jsonPath":".status.availability"}"#,
    printcolumn = r#"{"name":"CRM","type":"string","jsonPath":".status.crmVersion"}"#,
    printcolumn = r#"{"name":"Last Seen","type":"date","jsonPath":".status.lastSeen"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OClusterSpec {
    /// gRPC endpoint of the cluster's CRM, e.g. https://crm.spoke-a.example:8088.
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/\\\\s]+(:[0-9]+)?/?$')")
        .message("endpoint must be an http:// or https:// URL with a host and optional port, e.g. https://crm.example:8088"))]
    #[schemars(length(max = 2048))]
    pub endpoint: String,
    /// TLS towards the CRM: CA to trust and, for mutual TLS, a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTls>,
    /// Bearer token sent with every call, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretKeySelector>,
    /// Deadline of each call to the CRM, in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
    /// Retries of a failed call before it counts as a failure.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retry_attempts: u32,
    /// Seconds between health checks.
    #[serde(default = "default_health_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub health_check_interval_seconds: u32,
    /// Consecutive failed checks that open the circuit (cluster Unreachable).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
    /// Seconds an open circuit waits before probing again.
    #[serde(default = "default_open_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub circuit_open_seconds: u32,
    /// Fixed availability of this cluster in (0, 1]; unset uses what the CRM reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("availability must be greater than 0 and at most 1, e.g. 0.99"))]
    pub availability: Option<f64>,
    /// Where class deployments without targetClusters or clusterSelector go (several marked:
    /// all of them). `CRM_DEFAULT_CLUSTER` marks the env-configured one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Put before each hub namespace's name to name its namespace in this cluster (none:
    /// the same name). Give each hub sharing a cluster its own prefix. Changing it moves
    /// every class deployment to the new namespaces (each old runtime goes once its
    /// replacement is Available).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[a-z0-9]([-a-z0-9]*)?$')")
        .message("namespacePrefix must be lowercase letters, digits and '-', starting with a letter or digit, e.g. hub-eu-"))]
    #[schemars(length(max = 40))]
    pub namespace_prefix: String,
}

fn default_timeout() -> u32 {
    30
}
fn default_retries() -> u32 {
    3
}
fn default_health_interval() -> u32 {
    10
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_open_seconds() -> u32 {
    15
}

/// TLS settings. The Secret holds `ca.crt` and, for mutual TLS, `tls.crt` and `tls.key`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTls {
    pub secret_ref: SecretRef,
    /// Name to verify the CRM's certificate against, when it differs from the endpoint host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// For testing only: accept any certificate the CRM presents (its signature of the
    /// handshake is still checked, but not who issued it nor the name in it), so `ca.crt` may
    /// be left out. Anyone on the path can then pose as the CRM; the OCluster shows the
    /// condition `TLSVerified` False (reason `InsecureSkipVerify`) while this is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Key in the Secret's data (default token).
    #[serde(default = "default_token_key")]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClusterHealth {
    #[default]
    Unknown,
    /// Health checks pass and the CRM reports its cluster.
    Healthy,
    /// The CRM answers but is not serving, or some checks fail.
    Degraded,
    /// The circuit is open: the CRM did not answer `failureThreshold` times in a row.
    Unreachable,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

/// Observed state of a spoke.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub health: ClusterHealth,
    #[serde(default)]
    pub circuit: CircuitState,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Last time the CRM answered a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// Last time the PM checked the cluster, whether or not the CRM answered: how old
    /// `health` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes: Option<u32>,
    /// Ready/total nodes, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// Probability that the cluster is up, used by replica planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ready: the cluster can take deployments.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
