//! `OPackage`: a package of classes and the functions they bind (hub).
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ConsistencyModel, FunctionConfig, FunctionType, ProvisionConfig};

/// A package of OaaS classes and functions. Per-object rules (unique keys, bindings that
/// resolve, scale bounds) are checked by the API server; rules that span objects
/// (dependencies exist, no cycles) by the package manager, which reports them in `Ready`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "oaas.io",
    version = "v1alpha1",
    kind = "OPackage",
    doc = "A package of OaaS classes and the functions they bind.",
    plural = "opackages",
    shortname = "opkg",
    category = "oaas",
    namespaced,
    status = "OPackageStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Classes","type":"integer","jsonPath":".status.classCount"}"#,
    printcolumn = r#"{"name":"Functions","type":"integer","jsonPath":".status.functionCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.classes.all(c, self.classes.exists_one(d, d.key == c.key))"
).message("class keys must be unique within the package").field_path(".classes"))]
#[x_kube(validation = Rule::new(
    "self.functions.all(f, self.functions.exists_one(g, g.key == f.key))"
).message("function keys must be unique within the package").field_path(".functions"))]
#[x_kube(validation = Rule::new(
    "self.classes.all(c, c.functionBindings.all(b, self.functions.exists(f, f.key == b.functionKey) || self.dependencies.exists(d, b.functionKey.startsWith(d + '.'))))"
).message("every function binding must name a function of this package, or <dependency>.<function> of a listed dependency").field_path(".classes"))]
pub struct OPackageSpec {
    /// Version of the package, e.g. 1.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub version: Option<String>,
    /// Who wrote the package and what it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PackageMetadata>,
    /// Classes of the package.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub classes: Vec<ClassSpec>,
    /// Functions the classes bind.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub functions: Vec<FunctionSpec>,
    /// Names of packages (in the same namespace) whose functions this package binds as
    /// `<package>.<function>`.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub dependencies: Vec<String>,
    /// A disabled package keeps its definition but cannot be newly deployed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub tags: Vec<String>,
}

/// A class: its state and the functions bound to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassSpec {
    /// Key of the class, e.g. Record. Turned into Kubernetes names by lowercasing and
    /// replacing '.' and '_' with '-'.
    #[x_kube(validation = Rule::new(crate::validation::KEY_RULE).message(crate::validation::KEY_MESSAGE))]
    #[schemars(length(max = 63))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// How the class's object state is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_spec: Option<StateSpec>,
    /// Functions callable on objects of this class.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub function_bindings: Vec<FunctionBinding>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl ClassSpec {
    pub fn consistency(&self) -> ConsistencyModel {
        self.state_spec
            .as_ref()
            .map(|s| s.consistency_model)
            .unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateSpec {
    /// Keys of the object state.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub key_specs: Vec<KeySpec>,
    /// Storage provider used when a key names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub default_provider: Option<String>,
    /// Consistency of the state. STRONG makes the hub place the class on 2f+1 clusters.
    #[serde(default)]
    pub consistency_model: ConsistencyModel,
    /// Whether the state survives restarts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub persistent: bool,
    /// Serialization format of the state, e.g. json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub serialization_format: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySpec {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub key_type: Option<String>,
}

/// A function bound to a class under a name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionBinding {
    /// Name the function is called by on the class.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Key of a function of this package, or `<dependency>.<function>`.
    #[schemars(length(min = 1, max = 127))]
    pub function_key: String,
    #[serde(default)]
    pub access_modifier: AccessModifier,
    /// Whether the function runs without object state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stateless: bool,
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    pub parameters: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccessModifier {
    #[default]
    Public,
    Internal,
    Private,
}

/// A function: what it is and how it runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.functionType != 'CUSTOM' || (has(self.provisionConfig) && has(self.provisionConfig.containerImage) && self.provisionConfig.containerImage != '')"
).message("a CUSTOM function needs provisionConfig.containerImage").field_path(".provisionConfig"))]
#[x_kube(validation = Rule::new(
    "self.functionType != 'WASM' || (has(self.provisionConfig) && has(self.provisionConfig.wasmModuleUrl) && self.provisionConfig.wasmModuleUrl != '')"
).message("a WASM function needs provisionConfig.wasmModuleUrl").field_path(".provisionConfig"))]
pub struct FunctionSpec {
    /// Key of the function, e.g. echo or Record.echo.
    #[x_kube(validation = Rule::new(crate::validation::KEY_RULE).message(crate::validation::KEY_MESSAGE))]
    #[schemars(length(max = 63))]
    pub key: String,
    #[serde(default)]
    pub function_type: FunctionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_config: Option<ProvisionConfig>,
    /// Configuration handed to the function as environment variables.
    #[serde(default, skip_serializing_if = "FunctionConfig::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 32768}))]
    pub config: FunctionConfig,
}

/// Observed state of a package.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OPackageStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when every cross-object check passed; its reason says which failed.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_count: Option<u32>,
    /// Dependencies that were found, as namespace/name.
    #[serde(default)]
    pub resolved_dependencies: Vec<String>,
    /// OClassDeployments that use this package; deletion waits until there are none.
    #[serde(default)]
    pub used_by: Vec<String>,
}
