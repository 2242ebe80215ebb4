//! The OaaS package and deployment documents: what existing OaaS clients send to `/api/v1`
//! and keep in package files (snake_case fields, SCREAMING_CASE enum values, as in the
//! seeds), and their mapping to and from the hub's OPackage / OClassDeployment resources.
//! Unknown fields are ignored, so documents written for other OaaS versions still load.
pub mod loose;
pub mod mapping;

use std::collections::BTreeMap;

use oaas_crds::common::{ConsistencyModel, EnforcementMode, FunctionType};
use oaas_crds::package::AccessModifier;
use oaas_crds::validation::{KEY_PATTERN, SUBDOMAIN_PATTERN};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An OaaS package: classes, the functions they bind, and optionally deployments of them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Package {
    /// Package name; also the OPackage's name, so a lowercase DNS name such as `shop-app`.
    #[schemars(pattern(SUBDOMAIN_PATTERN))]
    pub name: String,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub metadata: PackageMetadata,
    #[serde(default)]
    pub classes: Vec<Class>,
    #[serde(default)]
    pub functions: Vec<Function>,
    /// Packages (same namespace) whose functions are bound as `<package>.<function>`.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Class deployments; each becomes an OClassDeployment.
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    /// A disabled package keeps its definition but cannot be newly deployed.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct PackageMetadata {
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Class {
    #[schemars(pattern(KEY_PATTERN))]
    pub key: String,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_spec: Option<StateSpec>,
    #[serde(default)]
    pub function_bindings: Vec<FunctionBinding>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct StateSpec {
    #[serde(default)]
    pub key_specs: Vec<KeySpec>,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_provider: Option<String>,
    #[serde(default)]
    pub consistency_model: ConsistencyModel,
    #[serde(default)]
    pub persistent: bool,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serialization_format: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct KeySpec {
    pub name: String,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct FunctionBinding {
    pub name: String,
    /// A function of this package, or `<dependency>.<function>`.
    pub function_key: String,
    #[serde(default)]
    pub access_modifier: AccessModifier,
    #[serde(default)]
    pub stateless: bool,
    #[serde(default)]
    pub parameters: Vec<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Function {
    #[schemars(pattern(KEY_PATTERN))]
    pub key: String,
    #[serde(default)]
    pub function_type: FunctionType,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_config: Option<ProvisionConfig>,
    /// Handed to the function as environment variables; numbers and booleans are accepted.
    #[serde(default, deserialize_with = "loose::string_map")]
    pub config: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct ProvisionConfig {
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_image: Option<String>,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_module_url: Option<String>,
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// 0 or absent: no limit.
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub need_http2: bool,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_scale: Option<u32>,
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_scale: Option<u32>,
}

/// A class of a package deployed to clusters. `condition`, `status` and `created_at` are
/// filled in answers and ignored in requests.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Deployment {
    /// Deployment key; its lowercase DNS form is the OClassDeployment's name.
    #[schemars(pattern(KEY_PATTERN))]
    pub key: String,
    /// Package of the class; inside a package document it defaults to that package.
    #[serde(default)]
    pub package_name: String,
    #[schemars(pattern(KEY_PATTERN))]
    pub class_key: String,
    /// Clusters (OCluster names) to deploy to. Empty: the default cluster, or as many
    /// healthy clusters as the availability target needs.
    #[serde(default, deserialize_with = "loose::null_default")]
    pub target_envs: Vec<String>,
    /// The clusters automatic placement may choose from (empty: any).
    #[serde(default, deserialize_with = "loose::null_default")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub available_envs: Vec<String>,
    #[serde(default)]
    pub nfr_requirements: NfrRequirements,
    /// Cluster → template (dev, edge, k8s_deployment/full, knative) used there.
    #[serde(default, deserialize_with = "loose::string_map")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env_templates: BTreeMap<String, String>,
    #[serde(default)]
    pub functions: Vec<FunctionDeployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odgm: Option<Odgm>,
    /// OpenTelemetry of the functions; absent, null or `enabled: false` means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
    /// Whether spokes analyze NFRs (observe, the default) and apply replica
    /// recommendations (enforce), or neither (off).
    #[serde(default)]
    pub enforcement_mode: EnforcementMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<DeploymentCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatusSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct NfrRequirements {
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_throughput_rps: Option<u32>,
    /// Between 0 (exclusive) and 1, e.g. 0.999.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<f64>,
    /// Percent of the CPU request, 1-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_utilization_target: Option<f64>,
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u32>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct FunctionDeployment {
    pub function_key: String,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the function may run, e.g. edge (kept; placement is per deployment).
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_location: Option<String>,
    /// Kept; the deployment's `nfr_requirements` drive planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_requirement: Option<QosRequirement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_config: Option<ProvisionConfig>,
    #[serde(default, deserialize_with = "loose::string_map")]
    pub config: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct QosRequirement {
    /// Requests per second.
    #[serde(default, deserialize_with = "loose::null_default")]
    pub throughput: u32,
    /// Between 0 and 1, e.g. 0.99.
    #[serde(default)]
    pub availability: f64,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Odgm {
    #[serde(default)]
    pub collections: Vec<String>,
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<u32>,
    #[serde(default, deserialize_with = "loose::opt_number")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_count: Option<u32>,
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_type: Option<String>,
    /// Log filter of the data grid in `RUST_LOG` syntax, e.g. `info` or `debug,h2=info`.
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Cluster → ODGM node ids (kept for OaaS clients).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_node_ids: BTreeMap<String, Vec<u64>>,
}

/// OpenTelemetry of a deployment's functions (`OTEL_*` variables in their containers).
/// Every field may be absent or null, which means its default.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Telemetry {
    /// The master switch (default false): without `enabled: true` nothing is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Export traces (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<bool>,
    /// Export metrics (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<bool>,
    /// Export logs (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<bool>,
    /// Ratio of root traces sampled, 0.0 to 1.0 (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_rate: Option<f64>,
    /// OTEL_SERVICE_NAME of the functions; default: each function's workload name.
    #[serde(default, deserialize_with = "loose::opt_string")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Added to OTEL_RESOURCE_ATTRIBUTES, e.g. {team: shop}; keys are letters, digits,
    /// '.', '_' and '-', not starting with `oaas.`.
    #[serde(default, deserialize_with = "loose::string_map")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_attributes: BTreeMap<String, String>,
}

/// The seeds' coarse deployment state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentCondition {
    Pending,
    Deploying,
    Running,
    Down,
    Deleted,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct DeploymentStatusSummary {
    /// Number of clusters the class runs in.
    pub replication_factor: u32,
    pub selected_envs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_quorum_availability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The namespace each cluster holds the class in (the hub namespace, mapped by the
    /// cluster's namespace prefix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spoke_namespaces: BTreeMap<String, String>,
}
