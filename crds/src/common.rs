//! Spec types shared by several resources: how a function runs, NFRs, ODGM, templates.
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What kind of function this is. CUSTOM functions run a container image, WASM functions a
/// WebAssembly module; the others are executed by the platform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum FunctionType {
    Builtin,
    #[default]
    Custom,
    Macro,
    Logical,
    Wasm,
}

/// How a function runs: image or module, port, concurrency, resources and scale bounds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.minScale) || !has(self.maxScale) || self.minScale <= self.maxScale"
).message("minScale must not be greater than maxScale"))]
pub struct ProvisionConfig {
    /// Container image of the function, e.g. ghcr.io/acme/echo:1.0. Required for CUSTOM functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub container_image: Option<String>,
    /// URL of the WebAssembly module. Required for WASM functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub wasm_module_url: Option<String>,
    /// Port the function listens on (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    /// Maximum concurrent requests per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
    /// Whether the function needs HTTP/2 (h2c).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_http2: Option<bool>,
    /// CPU request, a Kubernetes quantity such as 100m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub cpu_request: Option<String>,
    /// Memory request, a Kubernetes quantity such as 128Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub memory_request: Option<String>,
    /// CPU limit, a Kubernetes quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub cpu_limit: Option<String>,
    /// Memory limit, a Kubernetes quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub memory_limit: Option<String>,
    /// Fewest replicas. The hub's replica planning may raise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_scale: Option<u32>,
    /// Most replicas. An autoscaler is rendered when maxScale is greater than minScale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_scale: Option<u32>,
}

impl ProvisionConfig {
    /// Fields set in `overrides` win over the fields of `self`.
    pub fn merged_with(&self, overrides: &ProvisionConfig) -> ProvisionConfig {
        fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        ProvisionConfig {
            container_image: pick(&overrides.container_image, &self.container_image),
            wasm_module_url: pick(&overrides.wasm_module_url, &self.wasm_module_url),
            port: pick(&overrides.port, &self.port),
            max_concurrency: pick(&overrides.max_concurrency, &self.max_concurrency),
            need_http2: pick(&overrides.need_http2, &self.need_http2),
            cpu_request: pick(&overrides.cpu_request, &self.cpu_request),
            memory_request: pick(&overrides.memory_request, &self.memory_request),
            cpu_limit: pick(&overrides.cpu_limit, &self.cpu_limit),
            memory_limit: pick(&overrides.memory_limit, &self.memory_limit),
            min_scale: pick(&overrides.min_scale, &self.min_scale),
            max_scale: pick(&overrides.max_scale, &self.max_scale),
        }
    }
}

/// Non-functional requirements. Unset fields mean "no requirement".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NfrRequirements {
    /// Target availability, greater than 0 and at most 1 (e.g. 0.999). Drives how many
    /// clusters the hub deploys to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("availability must be greater than 0 and at most 1, e.g. 0.99"))]
    pub availability: Option<f64>,
    /// Minimum sustained throughput in requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_throughput_rps: Option<u32>,
    /// Maximum acceptable latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u32>,
    /// Target CPU utilization in percent of the request (1-100); used by the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub cpu_utilization_target: Option<f64>,
}

/// Settings of the class's object data grid (ODGM), rendered as its own Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OdgmSpec {
    /// Collections to create, one per name.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub collections: Vec<String>,
    /// Partitions per collection (at least 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub partition_count: u32,
    /// Replicas per partition and of the ODGM Deployment (at least 1).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    pub replica_count: u32,
    /// Shard type, e.g. mst (default) or raft.
    #[serde(default = "default_shard_type")]
    #[schemars(length(min = 1, max = 32))]
    pub shard_type: String,
    /// Log filter of the ODGM process in `RUST_LOG` syntax: a level or target=level
    /// directives, e.g. `info` (the default) or `debug,h2=info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::validation::LOG_FILTER_RULE).message(crate::validation::LOG_FILTER_MESSAGE))]
    #[schemars(length(max = 512))]
    pub log_level: Option<String>,
    /// Cluster → ODGM node ids, as OaaS clients send them (`odgm.env_node_ids`). Kept for
    /// them; the data grid this project renders numbers its nodes itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub env_node_ids: BTreeMap<String, Vec<u64>>,
}

impl Default for OdgmSpec {
    fn default() -> Self {
        Self {
            collections: Vec::new(),
            partition_count: 1,
            replica_count: 1,
            shard_type: default_shard_type(),
            log_level: None,
            env_node_ids: BTreeMap::new(),
        }
    }
}

fn one() -> u32 {
    1
}

fn default_shard_type() -> String {
    "mst".into()
}

/// Whether the spoke analyzes NFRs and applies its replica recommendations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementMode {
    /// Do not even analyze.
    Off,
    /// Analyze and report recommendations in status; change nothing.
    #[default]
    Observe,
    /// Apply replica recommendations, with stability window, cooldown and bounded steps.
    Enforce,
}

/// How a class's functions are rendered in a spoke.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// One replica each, small requests: for development.
    Dev,
    /// Small footprint for edge clusters.
    Edge,
    /// Deployment + Service per function, HPA when scale bounds allow.
    K8sDeployment,
    /// A Knative Service per function (needs Knative Serving in the spoke).
    Knative,
}

impl Template {
    pub const ALL: [Template; 4] = [
        Template::Dev,
        Template::Edge,
        Template::K8sDeployment,
        Template::Knative,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Template::Dev => "dev",
            Template::Edge => "edge",
            Template::K8sDeployment => "k8s_deployment",
            Template::Knative => "knative",
        }
    }

    /// Parses a template name; `full` is the seeds' alias of `k8s_deployment`.
    pub fn parse(name: &str) -> Option<Template> {
        match name {
            "dev" => Some(Template::Dev),
            "edge" => Some(Template::Edge),
            "k8s_deployment" | "full" => Some(Template::K8sDeployment),
            "knative" => Some(Template::Knative),
            _ => None,
        }
    }
}

/// Consistency of a class's state. STRONG raises the number of clusters to 2f+1.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsistencyModel {
    #[default]
    None,
    ReadYourWrite,
    BoundedStaleness,
    Strong,
}

/// Free-form configuration handed to a function as environment variables.
pub type FunctionConfig = BTreeMap<String, String>;

/// Lifecycle phase of a class runtime (spoke) and of a class deployment (hub).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Applying,
    Progressing,
    Available,
    Degraded,
    Deleting,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Applying => "Applying",
            Phase::Progressing => "Progressing",
            Phase::Available => "Available",
            Phase::Degraded => "Degraded",
            Phase::Deleting => "Deleting",
        }
    }
}

/// What the NFR analyzer recommends for one function: replicas (applied in enforce mode),
/// and CPU and memory requests (observe only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRecommendation {
    pub function_key: String,
    pub current_replicas: u32,
    /// Within the function's minScale..maxScale.
    pub recommended_replicas: u32,
    /// Why, in words: which metric against which target.
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// CPU request per replica that would put the observed use at the utilization target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_cpu: Option<String>,
    /// Memory request per replica: the observed working set plus 20% headroom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_memory: Option<String>,
}
