//! Conversions between the custom resources and the protobuf contract, in one place.
//!
//! Resource → protobuf never fails. Protobuf → resource validates what the API server would
//! (and a little more), because a gRPC caller gets no CRD schema: errors name the field.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use oaas_proto::{common as pbc, deployment as pb, package as pbp};
use std::collections::HashSet;

use crate::class_runtime::{
    ClassRuntimeSpec, ClassRuntimeStatus, FunctionRuntimeStatus, RuntimeFunction,
};
use crate::common::*;
use crate::package::*;
use crate::validation::check_key;

/// A field of a protobuf message and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

// --- time and conditions --------------------------------------------------------------------

pub fn time_to_proto(time: &Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.0.as_second(),
        nanos: time.0.subsec_nanosecond(),
    }
}

pub fn time_from_proto(ts: &prost_types::Timestamp) -> Option<Time> {
    Timestamp::new(ts.seconds, ts.nanos).ok().map(Time)
}

pub fn condition_to_proto(c: &Condition) -> pbc::Condition {
    pbc::Condition {
        r#type: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: Some(time_to_proto(&c.last_transition_time)),
        observed_generation: c.observed_generation.unwrap_or_default(),
    }
}

pub fn condition_from_proto(c: &pbc::Condition) -> Condition {
    Condition {
        type_: c.r#type.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c
            .last_transition_time
            .as_ref()
            .and_then(time_from_proto)
            .unwrap_or(Time(Timestamp::UNIX_EPOCH)),
        observed_generation: (c.observed_generation != 0).then_some(c.observed_generation),
    }
}

// --- enums ----------------------------------------------------------------------------------

pub fn function_type_to_proto(t: FunctionType) -> pbp::FunctionType {
    match t {
        FunctionType::Builtin => pbp::FunctionType::Builtin,
        FunctionType::Custom => pbp::FunctionType::Custom,
        FunctionType::Macro => pbp::FunctionType::Macro,
        FunctionType::Logical => pbp::FunctionType::Logical,
        FunctionType::Wasm => pbp::FunctionType::Wasm,
    }
}

/// Unspecified means CUSTOM, the default of the resource.
pub fn function_type_from_proto(t: pbp::FunctionType) -> FunctionType {
    match t {
        pbp::FunctionType::Builtin => FunctionType::Builtin,
        pbp::FunctionType::Unspecified | pbp::FunctionType::Custom => FunctionType::Custom,
        pbp::FunctionType::Macro => FunctionType::Macro,
        pbp::FunctionType::Logical => FunctionType::Logical,
        pbp::FunctionType::Wasm => FunctionType::Wasm,
    }
}

pub fn consistency_to_proto(c: ConsistencyModel) -> pbp::ConsistencyModel {
    match c {
        ConsistencyModel::None => pbp::ConsistencyModel::None,
        ConsistencyModel::ReadYourWrite => pbp::ConsistencyModel::ReadYourWrite,
        ConsistencyModel::BoundedStaleness => pbp::ConsistencyModel::BoundedStaleness,
        ConsistencyModel::Strong => pbp::ConsistencyModel::Strong,
    }
}

pub fn consistency_from_proto(c: pbp::ConsistencyModel) -> ConsistencyModel {
    match c {
        pbp::ConsistencyModel::Unspecified | pbp::ConsistencyModel::None => ConsistencyModel::None,
        pbp::ConsistencyModel::ReadYourWrite => ConsistencyModel::ReadYourWrite,
        pbp::ConsistencyModel::BoundedStaleness => ConsistencyModel::BoundedStaleness,
        pbp::ConsistencyModel::Strong => ConsistencyModel::Strong,
    }
}

pub fn access_to_proto(a: AccessModifier) -> pbp::AccessModifier {
    match a {
        AccessModifier::Public => pbp::AccessModifier::Public,
        AccessModifier::Internal => pbp::AccessModifier::Internal,
        AccessModifier::Private => pbp::AccessModifier::Private,
    }
}

pub fn access_from_proto(a: pbp::AccessModifier) -> AccessModifier {
    match a {
        pbp::AccessModifier::Unspecified | pbp::AccessModifier::Public => AccessModifier::Public,
        pbp::AccessModifier::Internal => AccessModifier::Internal,
        pbp::AccessModifier::Private => AccessModifier::Private,
    }
}

pub fn enforcement_to_proto(m: EnforcementMode) -> pb::EnforcementMode {
    match m {
        EnforcementMode::Off => pb::EnforcementMode::Off,
        EnforcementMode::Observe => pb::EnforcementMode::Observe,
        EnforcementMode::Enforce => pb::EnforcementMode::Enforce,
    }
}

/// Unspecified means observe, the default of the resource.
pub fn enforcement_from_proto(m: pb::EnforcementMode) -> EnforcementMode {
    match m {
        pb::EnforcementMode::Off => EnforcementMode::Off,
        pb::EnforcementMode::Unspecified | pb::EnforcementMode::Observe => EnforcementMode::Observe,
        pb::EnforcementMode::Enforce => EnforcementMode::Enforce,
    }
}

pub fn phase_to_proto(p: Phase) -> pb::Phase {
    match p {
        Phase::Pending => pb::Phase::Pending,
        Phase::Applying => pb::Phase::Applying,
        Phase::Progressing => pb::Phase::Progressing,
        Phase::Available => pb::Phase::Available,
        Phase::Degraded => pb::Phase::Degraded,
        Phase::Deleting => pb::Phase::Deleting,
    }
}

pub fn phase_from_proto(p: pb::Phase) -> Option<Phase> {
    match p {
        pb::Phase::Unspecified => None,
        pb::Phase::Pending => Some(Phase::Pending),
        pb::Phase::Applying => Some(Phase::Applying),
        pb::Phase::Progressing => Some(Phase::Progressing),
        pb::Phase::Available => Some(Phase::Available),
        pb::Phase::Degraded => Some(Phase::Degraded),
        pb::Phase::Deleting => Some(Phase::Deleting),
    }
}

// --- provision config, NFRs, ODGM -----------------------------------------------------------

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn non_zero(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

pub fn provision_to_proto(p: &ProvisionConfig) -> pbp::ProvisionConfig {
    pbp::ProvisionConfig {
        container_image: p.container_image.clone().unwrap_or_default(),
        wasm_module_url: p.wasm_module_url.clone().unwrap_or_default(),
        port: p.port.unwrap_or_default(),
        max_concurrency: p.max_concurrency.unwrap_or_default(),
        need_http2: p.need_http2.unwrap_or_default(),
        cpu_request: p.cpu_request.clone().unwrap_or_default(),
        memory_request: p.memory_request.clone().unwrap_or_default(),
        cpu_limit: p.cpu_limit.clone().unwrap_or_default(),
        memory_limit: p.memory_limit.clone().unwrap_or_default(),
        min_scale: p.min_scale.unwrap_or_default(),
        max_scale: p.max_scale.unwrap_or_default(),
    }
}

/// Zero values are "not set", except scale bounds: minScale 0 is meaningful only when
/// maxScale is set (scale to zero), so it is kept then.
pub fn provision_from_proto(p: &pbp::ProvisionConfig) -> ProvisionConfig {
    ProvisionConfig {
        container_image: non_empty(&p.container_image),
        wasm_module_url: non_empty(&p.wasm_module_url),
        port: non_zero(p.port),
        max_concurrency: non_zero(p.max_concurrency),
        need_http2: p.need_http2.then_some(true),
        cpu_request: non_empty(&p.cpu_request),
        memory_request: non_empty(&p.memory_request),
        cpu_limit: non_empty(&p.cpu_limit),
        memory_limit: non_empty(&p.memory_limit),
        min_scale: if p.max_scale != 0 {
            Some(p.min_scale)
        } else {
            non_zero(p.min_scale)
        },
        max_scale: non_zero(p.max_scale),
    }
}

pub fn nfr_to_proto(n: &NfrRequirements) -> pbc::NfrRequirements {
    pbc::NfrRequirements {
        max_latency_ms: n.max_latency_ms,
        min_throughput_rps: n.min_throughput_rps,
        availability: n.availability,
        cpu_utilization_target: n.cpu_utilization_target,
    }
}

pub fn nfr_from_proto(n: &pbc::NfrRequirements) -> NfrRequirements {
    NfrRequirements {
        max_latency_ms: n.max_latency_ms,
        min_throughput_rps: n.min_throughput_rps,
        availability: n.availability,
        cpu_utilization_target: n.cpu_utilization_target,
    }
}

pub fn odgm_to_proto(o: &OdgmSpec) -> pb::OdgmConfig {
    pb::OdgmConfig {
        collections: o.collections.clone(),
        partition_count: o.partition_count,
        replica_count: o.replica_count,
        shard_type: o.shard_type.clone(),
        log_level: o
            .log_level
            .map(|l| l.as_str().to_string())
            .unwrap_or_default(),
    }
}

pub fn odgm_from_proto(o: &pb::OdgmConfig) -> Result<OdgmSpec, FieldError> {
    let log_level = match o.log_level.as_str() {
        "" => None,
        "error" => Some(LogLevel::Error),
        "warn" => Some(LogLevel::Warn),
        "info" => Some(LogLevel::Info),
        "debug" => Some(LogLevel::Debug),
        "trace" => Some(LogLevel::Trace),
        other => {
            return Err(field_error(
                "deployment_unit.odgm.log_level",
                format!("unknown log level {other:?}; use error, warn, info, debug or trace"),
            ));
        }
    };
    let defaults = OdgmSpec::default();
    Ok(OdgmSpec {
        collections: o.collections.clone(),
        partition_count: non_zero(o.partition_count).unwrap_or(defaults.partition_count),
        replica_count: non_zero(o.replica_count).unwrap_or(defaults.replica_count),
        shard_type: non_empty(&o.shard_type).unwrap_or(defaults.shard_type),
        log_level,
    })
}

// --- deployment unit ↔ ClassRuntime spec ----------------------------------------------------

pub fn unit_from_runtime_spec(spec: &ClassRuntimeSpec) -> pb::DeploymentUnit {
    pb::DeploymentUnit {
        id: spec.deployment_id.clone(),
        package_name: spec.package_name.clone(),
        class_key: spec.class_key.clone(),
        target_cluster: spec.target_cluster.clone().unwrap_or_default(),
        functions: spec
            .functions
            .iter()
            .map(runtime_function_to_proto)
            .collect(),
        target_env: spec.target_env.clone().unwrap_or_default(),
        nfr_requirements: spec.nfr.as_ref().map(nfr_to_proto),
        created_at: None,
        template: spec
            .template
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        addons: spec.addons.clone(),
        odgm: spec.odgm.as_ref().map(odgm_to_proto),
        enforcement_mode: enforcement_to_proto(spec.enforcement_mode) as i32,
        revision: spec.revision.unwrap_or_default(),
        consistency_model: consistency_to_proto(spec.consistency_model) as i32,
    }
}

fn runtime_function_to_proto(f: &RuntimeFunction) -> pb::FunctionDeploymentSpec {
    pb::FunctionDeploymentSpec {
        function_key: f.function_key.clone(),
        function_type: function_type_to_proto(f.function_type) as i32,
        description: f.description.clone().unwrap_or_default(),
        provision_config: Some(provision_to_proto(&f.provision_config)),
        config: f.config.clone().into_iter().collect(),
        stateless: f.stateless,
    }
}

/// Validates a deployment unit and turns it into the spec of a ClassRuntime.
pub fn runtime_spec_from_unit(unit: &pb::DeploymentUnit) -> Result<ClassRuntimeSpec, FieldError> {
    if unit.id.trim().is_empty() {
        return Err(field_error("deployment_unit.id", "must not be empty"));
    }
    if unit.id.len() > 253 {
        return Err(field_error(
            "deployment_unit.id",
            "must be at most 253 characters",
        ));
    }
    if unit.package_name.trim().is_empty() {
        return Err(field_error(
            "deployment_unit.package_name",
            "must not be empty",
        ));
    }
    check_key(&unit.class_key).map_err(|m| field_error("deployment_unit.class_key", m))?;
    let mut seen = HashSet::new();
    let mut functions = Vec::with_capacity(unit.functions.len());
    for (i, f) in unit.functions.iter().enumerate() {
        let field = |name: &str| format!("deployment_unit.functions[{i}].{name}");
        check_key(&f.function_key).map_err(|m| field_error(field("function_key"), m))?;
        if !seen.insert(f.function_key.as_str()) {
            return Err(field_error(
                field("function_key"),
                format!("function {:?} appears more than once", f.function_key),
            ));
        }
        let function_type = pbp::FunctionType::try_from(f.function_type)
            .map_err(|_| field_error(field("function_type"), "unknown function type"))?;
        let function_type = function_type_from_proto(function_type);
        let provision = f
            .provision_config
            .as_ref()
            .map(provision_from_proto)
            .unwrap_or_default();
        check_provision(function_type, &provision)
            .map_err(|(name, m)| field_error(field(&format!("provision_config.{name}")), m))?;
        functions.push(RuntimeFunction {
            function_key: f.function_key.clone(),
            function_type,
            description: non_empty(&f.description),
            provision_config: provision,
            config: f.config.clone().into_iter().collect(),
            stateless: f.stateless,
        });
    }
    let template = match unit.template.as_str() {
        "" => None,
        name => Some(Template::parse(name).ok_or_else(|| {
            field_error(
                "deployment_unit.template",
                format!("unknown template {name:?}; use dev, edge, k8s_deployment or knative"),
            )
        })?),
    };
    let nfr = unit.nfr_requirements.as_ref().map(nfr_from_proto);
    if let Some(a) = nfr.as_ref().and_then(|n| n.availability)
        && !(a > 0.0 && a <= 1.0)
    {
        return Err(field_error(
            "deployment_unit.nfr_requirements.availability",
            "must be greater than 0 and at most 1, e.g. 0.99",
        ));
    }
    let odgm = unit.odgm.as_ref().map(odgm_from_proto).transpose()?;
    let enforcement = pb::EnforcementMode::try_from(unit.enforcement_mode).map_err(|_| {
        field_error(
            "deployment_unit.enforcement_mode",
            "unknown enforcement mode",
        )
    })?;
    let consistency = pbp::ConsistencyModel::try_from(unit.consistency_model).map_err(|_| {
        field_error(
            "deployment_unit.consistency_model",
            "unknown consistency model",
        )
    })?;
    Ok(ClassRuntimeSpec {
        deployment_id: unit.id.clone(),
        package_name: unit.package_name.clone(),
        class_key: unit.class_key.clone(),
        target_cluster: non_empty(&unit.target_cluster),
        target_env: non_empty(&unit.target_env),
        functions,
        template,
        addons: unit.addons.clone(),
        odgm,
        nfr,
        enforcement_mode: enforcement_from_proto(enforcement),
        consistency_model: consistency_from_proto(consistency),
        revision: (unit.revision != 0).then_some(unit.revision),
    })
}

/// The checks the CRD schema makes on a provision config, for input that bypasses it.
/// Returns the offending field name and the message.
pub fn check_provision(
    function_type: FunctionType,
    p: &ProvisionConfig,
) -> Result<(), (&'static str, String)> {
    if function_type == FunctionType::Custom
        && p.container_image.as_deref().unwrap_or("").is_empty()
    {
        return Err((
            "container_image",
            "a CUSTOM function needs a container image".into(),
        ));
    }
    if function_type == FunctionType::Wasm && p.wasm_module_url.as_deref().unwrap_or("").is_empty()
    {
        return Err((
            "wasm_module_url",
            "a WASM function needs a module URL".into(),
        ));
    }
    if let (Some(min), Some(max)) = (p.min_scale, p.max_scale)
        && min > max
    {
        return Err((
            "min_scale",
            format!("min_scale {min} is greater than max_scale {max}"),
        ));
    }
    if let Some(port) = p.port
        && !(1..=65535).contains(&port)
    {
        return Err(("port", format!("port {port} is not between 1 and 65535")));
    }
    Ok(())
}

// --- ClassRuntime status ↔ deployment status ------------------------------------------------

pub fn deployment_status_to_proto(
    deployment_id: &str,
    status: &ClassRuntimeStatus,
    revision: Option<i64>,
) -> pb::DeploymentStatus {
    pb::DeploymentStatus {
        deployment_id: deployment_id.to_string(),
        phase: status
            .phase
            .map(phase_to_proto)
            .unwrap_or(pb::Phase::Unspecified) as i32,
        conditions: status.conditions.iter().map(condition_to_proto).collect(),
        functions: status
            .functions
            .iter()
            .map(|f| pb::FunctionStatus {
                function_key: f.function_key.clone(),
                ready: f.ready,
                ready_replicas: f.ready_replicas,
                desired_replicas: f.desired_replicas,
                service: f.service.clone().unwrap_or_default(),
                url: f.url.clone().unwrap_or_default(),
                message: f.message.clone().unwrap_or_default(),
            })
            .collect(),
        message: status.message.clone().unwrap_or_default(),
        observed_generation: status.observed_generation.unwrap_or_default(),
        revision: revision.unwrap_or_default(),
        recommendations: status
            .nfr_recommendations
            .iter()
            .map(recommendation_to_proto)
            .collect(),
        updated_at: None,
    }
}

pub fn functions_status_from_proto(status: &pb::DeploymentStatus) -> Vec<FunctionRuntimeStatus> {
    status
        .functions
        .iter()
        .map(|f| FunctionRuntimeStatus {
            function_key: f.function_key.clone(),
            ready: f.ready,
            ready_replicas: f.ready_replicas,
            desired_replicas: f.desired_replicas,
            service: non_empty(&f.service),
            url: non_empty(&f.url),
            message: non_empty(&f.message),
        })
        .collect()
}

pub fn recommendation_to_proto(r: &ReplicaRecommendation) -> pb::ReplicaRecommendation {
    pb::ReplicaRecommendation {
        function_key: r.function_key.clone(),
        current_replicas: r.current_replicas,
        recommended_replicas: r.recommended_replicas,
        reason: r.reason.clone(),
        observed_at: r.observed_at.as_ref().map(time_to_proto),
        recommended_cpu: r.recommended_cpu.clone().unwrap_or_default(),
        recommended_memory: r.recommended_memory.clone().unwrap_or_default(),
    }
}

pub fn recommendation_from_proto(r: &pb::ReplicaRecommendation) -> ReplicaRecommendation {
    ReplicaRecommendation {
        function_key: r.function_key.clone(),
        current_replicas: r.current_replicas,
        recommended_replicas: r.recommended_replicas,
        reason: r.reason.clone(),
        observed_at: r.observed_at.as_ref().and_then(time_from_proto),
        recommended_cpu: non_empty(&r.recommended_cpu),
        recommended_memory: non_empty(&r.recommended_memory),
    }
}

// --- package ↔ protobuf package model -------------------------------------------------------

pub fn package_to_proto(name: &str, spec: &OPackageSpec) -> pbp::OPackage {
    let metadata = spec.metadata.clone().unwrap_or_default();
    pbp::OPackage {
        name: name.to_string(),
        version: spec.version.clone().unwrap_or_default(),
        metadata: Some(pbp::PackageMetadata {
            author: metadata.author.unwrap_or_default(),
            description: metadata.description.unwrap_or_default(),
            tags: metadata.tags,
        }),
        classes: spec.classes.iter().map(class_to_proto).collect(),
        functions: spec
            .functions
            .iter()
            .map(|f| pbp::OFunction {
                key: f.key.clone(),
                function_type: function_type_to_proto(f.function_type) as i32,
                description: f.description.clone().unwrap_or_default(),
                provision_config: f.provision_config.as_ref().map(provision_to_proto),
                config: f.config.clone().into_iter().collect(),
            })
            .collect(),
        dependencies: spec.dependencies.clone(),
        disabled: spec.disabled,
    }
}

fn class_to_proto(c: &ClassSpec) -> pbp::OClass {
    pbp::OClass {
        key: c.key.clone(),
        description: c.description.clone().unwrap_or_default(),
        state_spec: c.state_spec.as_ref().map(|s| pbp::StateSpecification {
            key_specs: s
                .key_specs
                .iter()
                .map(|k| pbp::KeySpecification {
                    name: k.name.clone(),
                    key_type: k.key_type.clone().unwrap_or_default(),
                })
                .collect(),
            default_provider: s.default_provider.clone().unwrap_or_default(),
            consistency_model: consistency_to_proto(s.consistency_model) as i32,
            persistent: s.persistent,
            serialization_format: s.serialization_format.clone().unwrap_or_default(),
        }),
        function_bindings: c
            .function_bindings
            .iter()
            .map(|b| pbp::FunctionBinding {
                name: b.name.clone(),
                function_key: b.function_key.clone(),
                access_modifier: access_to_proto(b.access_modifier) as i32,
                stateless: b.stateless,
                parameters: b.parameters.clone(),
            })
            .collect(),
        disabled: c.disabled,
    }
}

/// The package name and spec of a protobuf package. Enum values out of range fall back to
/// the resource defaults; the API server validates everything else when the spec is stored.
pub fn package_from_proto(p: &pbp::OPackage) -> (String, OPackageSpec) {
    let metadata = p.metadata.clone().unwrap_or_default();
    let spec = OPackageSpec {
        version: non_empty(&p.version),
        metadata: Some(PackageMetadata {
            author: non_empty(&metadata.author),
            description: non_empty(&metadata.description),
            tags: metadata.tags,
        })
        .filter(|m| m != &PackageMetadata::default()),
        classes: p.classes.iter().map(class_from_proto).collect(),
        functions: p
            .functions
            .iter()
            .map(|f| FunctionSpec {
                key: f.key.clone(),
                function_type: function_type_from_proto(f.function_type()),
                description: non_empty(&f.description),
                provision_config: f.provision_config.as_ref().map(provision_from_proto),
                config: f.config.clone().into_iter().collect(),
            })
            .collect(),
        dependencies: p.dependencies.clone(),
        disabled: p.disabled,
    };
    (p.name.clone(), spec)
}

fn class_from_proto(c: &pbp::OClass) -> ClassSpec {
    ClassSpec {
        key: c.key.clone(),
        description: non_empty(&c.description),
        state_spec: c.state_spec.as_ref().map(|s| StateSpec {
            key_specs: s
                .key_specs
                .iter()
                .map(|k| KeySpec {
                    name: k.name.clone(),
                    key_type: non_empty(&k.key_type),
                })
                .collect(),
            default_provider: non_empty(&s.default_provider),
            consistency_model: consistency_from_proto(s.consistency_model()),
            persistent: s.persistent,
            serialization_format: non_empty(&s.serialization_format),
        }),
        function_bindings: c
            .function_bindings
            .iter()
            .map(|b| FunctionBinding {
                name: b.name.clone(),
                function_key: b.function_key.clone(),
                access_modifier: access_from_proto(b.access_modifier()),
                stateless: b.stateless,
                parameters: b.parameters.clone(),
            })
            .collect(),
        disabled: c.disabled,
    }
}
