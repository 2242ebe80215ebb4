//! `OClassDeployment`: one class of a package deployed to one or more spokes (hub).
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    EnforcementMode, FunctionConfig, NfrRequirements, OdgmSpec, Phase, ProvisionConfig,
    ReplicaRecommendation, Template,
};
use crate::telemetry::TelemetrySpec;

/// Deploys one class of an `OPackage` (same namespace) to the spokes named in
/// `targetClusters` and/or matched by `clusterSelector` (neither: the default cluster, or
/// healthy clusters chosen for availability). The package manager plans how many
/// clusters are needed for the availability target, sends each a deployment unit, and
/// reports their state in `status.clusters` and the `Available`, `Progressing`, `Degraded`
/// and `Ready` conditions (`kubectl wait --for=condition=Available` works).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "oaas.io",
    version = "v1alpha1",
    kind = "OClassDeployment",
    doc = "Deploys one class of an OPackage to one or more spoke clusters.",
    plural = "classdeployments",
    singular = "classdeployment",
    shortname = "ocd",
    shortname = "cdep",
    category = "oaas",
    namespaced,
    status = "OClassDeploymentStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".spec.package"}"#,
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.classKey"}"#,
    printcolumn = r#"{"name":"Clusters","type":"string","description":"target clusters whose runtime is Available / target clusters","jsonPath":".status.clustersReady"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.functions.all(f, self.functions.exists_one(g, g.functionKey == f.functionKey))")
    .message("each functionKey may be overridden only once").field_path(".functions"))]
pub struct OClassDeploymentSpec {
    /// Name of the OPackage, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub package: String,
    /// Key of the class in the package to deploy.
    #[schemars(length(min = 1, max = 63))]
    pub class_key: String,
    /// OCluster names to deploy to. Named clusters are never replaced on failover.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub target_clusters: Vec<String>,
    /// Labels of OClusters to deploy to, e.g. {matchLabels: {region: eu}}. Clusters chosen
    /// this way are replaced by healthy matching ones when they stay unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    /// Clusters automatic placement may choose from: selector matches and, with neither
    /// targetClusters nor clusterSelector, every healthy cluster (empty: any cluster). A
    /// deployment without targets goes to the OCluster marked `default` when there is one
    /// (and it is allowed here), else to as many healthy clusters as its availability needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub available_clusters: Vec<String>,
    /// Target environment name handed to the spokes, e.g. production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub target_env: Option<String>,
    /// Rendering template; unset lets each spoke choose from its profile and the NFRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// Template per cluster (OCluster name → template); wins over `template` there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub cluster_templates: BTreeMap<String, Template>,
    /// Non-functional requirements: availability drives how many clusters are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfr: Option<NfrRequirements>,
    /// Per-function changes to the package's provision config and config.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub functions: Vec<FunctionOverride>,
    /// Object data grid settings; unset means the class gets no data grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odgm: Option<OdgmSpec>,
    /// OpenTelemetry of the functions (OTEL_* variables in their containers); unset or
    /// enabled: false means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySpec>,
    /// Whether spokes analyze NFRs (observe) and apply replica recommendations (enforce).
    #[serde(default)]
    pub enforcement_mode: EnforcementMode,
    /// Seconds a selector-chosen cluster may stay unreachable before it is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub failover_grace_seconds: Option<u32>,
}

/// Changes to one function of the class for this deployment only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionOverride {
    #[schemars(length(min = 1, max = 253))]
    pub function_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_config: Option<ProvisionConfig>,
    /// Merged over the function's config; keys here win.
    #[serde(default, skip_serializing_if = "FunctionConfig::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 32768}))]
    pub config: FunctionConfig,
    /// What the function does here, for people (kept for OaaS clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Where the function may run, e.g. edge or cloud (kept for OaaS clients; placement
    /// is per class deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub available_location: Option<String>,
    /// The function's quality-of-service requirement (kept for OaaS clients; the class
    /// deployment's `nfr` drives planning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_requirement: Option<QosRequirement>,
}

/// Throughput and availability one function needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QosRequirement {
    /// Requests per second.
    #[serde(default)]
    pub throughput: u32,
    /// Between 0 and 1, e.g. 0.99.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub availability: f64,
}

/// Observed state of a class deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OClassDeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Available, Progressing, Degraded and Ready.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Target clusters whose runtime is Available, out of all targets, e.g. 2/2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters_ready: Option<String>,
    /// Where and how many replicas the package manager decided to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ReplicaPlan>,
    /// One entry per target cluster.
    #[serde(default)]
    pub clusters: Vec<ClusterDeploymentStatus>,
}

/// The package manager's placement decision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaPlan {
    /// Clusters the class runs in.
    pub clusters: Vec<String>,
    /// Replicas per function in each cluster (the functions' minScale, raised if needed).
    pub replicas_per_cluster: u32,
    /// Probability that a majority of the chosen clusters is up, when they report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_availability: Option<f64>,
    /// Why these clusters, in words.
    #[serde(default)]
    pub reason: String,
}

/// State of the class in one target cluster, as its CRM reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDeploymentStatus {
    pub cluster: String,
    /// Deployment id used with the cluster's CRM (stable across retries and restarts).
    pub deployment_id: String,
    /// The namespace in that cluster this deployment's namespace maps to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Revision of the deployment unit the cluster runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default)]
    pub ready_functions: u32,
    #[serde(default)]
    pub total_functions: u32,
    /// The cluster's latest NFR recommendations.
    #[serde(default)]
    pub recommendations: Vec<ReplicaRecommendation>,
}
