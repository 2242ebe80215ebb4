//! `ClassRuntime`: one class deployed in one spoke, written by the CRM from a deployment unit.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    ConsistencyModel, EnforcementMode, FunctionConfig, FunctionType, NfrRequirements, OdgmSpec,
    Phase, ProvisionConfig, ReplicaRecommendation, Template,
};
use crate::telemetry::TelemetrySpec;

/// One class running in this cluster: its functions, template, add-ons (ODGM) and NFR
/// settings. The CRM renders it into Deployments, Services, autoscalers, an ODGM
/// Deployment/Service and Knative Services, and reports their state here.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "oaas.io",
    version = "v1alpha1",
    kind = "ClassRuntime",
    doc = "One class running in this cluster, rendered into workloads by the class runtime manager.",
    plural = "classruntimes",
    shortname = "crt",
    category = "oaas",
    namespaced,
    status = "ClassRuntimeStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".spec.packageName"}"#,
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.classKey"}"#,
    printcolumn = r#"{"name":"Template","type":"string","jsonPath":".status.template"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"ready functions / functions","jsonPath":".status.functionsReady"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.functions.all(f, self.functions.exists_one(g, g.functionKey == f.functionKey))")
    .message("function keys must be unique").field_path(".functions"))]
pub struct ClassRuntimeSpec {
    /// Deployment id given by the hub; fixed for the life of the resource.
    #[x_kube(validation = Rule::new("self == oldSelf").message("deploymentId cannot be changed"))]
    #[schemars(length(min = 1, max = 253))]
    pub deployment_id: String,
    #[schemars(length(min = 1, max = 253))]
    pub package_name: String,
    #[x_kube(validation = Rule::new(crate::validation::KEY_RULE).message(crate::validation::KEY_MESSAGE))]
    #[schemars(length(max = 63))]
    pub class_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_env: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub functions: Vec<RuntimeFunction>,
    /// Explicit template; unset lets the CRM choose by its profile and the NFRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// Add-ons, e.g. [odgm].
    #[serde(default)]
    #[schemars(length(max = 8), inner(length(min = 1, max = 63)))]
    pub addons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odgm: Option<OdgmSpec>,
    /// OpenTelemetry of the functions; unset or enabled: false means no OTEL_* variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfr: Option<NfrRequirements>,
    #[serde(default)]
    pub enforcement_mode: EnforcementMode,
    #[serde(default)]
    pub consistency_model: ConsistencyModel,
    /// Version of the deployment unit as the hub built it (changes with any change to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

/// A function of the class, fully resolved (package definition plus overrides).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeFunction {
    #[x_kube(validation = Rule::new(crate::validation::KEY_RULE).message(crate::validation::KEY_MESSAGE))]
    #[schemars(length(max = 63))]
    pub function_key: String,
    #[serde(default)]
    pub function_type: FunctionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub provision_config: ProvisionConfig,
    #[serde(default, skip_serializing_if = "FunctionConfig::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 32768}))]
    pub config: FunctionConfig,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stateless: bool,
}

/// Observed state of a class runtime.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassRuntimeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Available, Progressing, Degraded, and NfrObserved when the analyzer runs.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The template the CRM rendered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// Ready functions / functions, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions_ready: Option<String>,
    #[serde(default)]
    pub functions: Vec<FunctionRuntimeStatus>,
    /// Every object the CRM created for this class.
    #[serde(default)]
    pub resources: Vec<ResourceRef>,
    #[serde(default)]
    pub nfr_recommendations: Vec<ReplicaRecommendation>,
    #[serde(default)]
    pub last_applied_recommendations: Vec<AppliedRecommendation>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRuntimeStatus {
    pub function_key: String,
    pub ready: bool,
    #[serde(default)]
    pub ready_replicas: u32,
    #[serde(default)]
    pub desired_replicas: u32,
    /// Service that routes to the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// In-cluster URL of the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// A replica recommendation the enforcer applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedRecommendation {
    pub function_key: String,
    pub replicas: u32,
    /// HorizontalPodAutoscaler (minReplicas) or Deployment (replicas).
    pub target_kind: String,
    pub applied_at: Time,
}
