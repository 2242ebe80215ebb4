//! Conversions between the custom resources and the protobuf contract, in one place.
//!
//! Resource → protobuf never fails. Protobuf → resource validates what the API server would
//! (and a little more), because a gRPC caller gets no CRD schema: errors name the field.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use oaas_proto::{common as pbc, deployment as pb, package as pbp};

use crate::class_runtime::{ClassRuntimeStatus, FunctionRuntimeStatus};
use crate::common::*;
use crate::package::*;
use crate::telemetry::{TelemetrySpec, check_telemetry};
mod unit;
pub use unit::{
    check_provision, runtime_spec_from_unit, unit_from_runtime_spec, unit_with_revision,
};

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

// --- provision config, NFRs, ODGM, telemetry -----------------------------------------------

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
        log_level: o.log_level.clone().unwrap_or_default(),
    }
}

pub fn odgm_from_proto(o: &pb::OdgmConfig) -> Result<OdgmSpec, FieldError> {
    let log_level = non_empty(&o.log_level);
    if let Some(filter) = &log_level {
        crate::validation::check_log_filter(filter)
            .map_err(|e| field_error("deployment_unit.odgm.log_level", e))?;
    }
    let defaults = OdgmSpec::default();
    Ok(OdgmSpec {
        collections: o.collections.clone(),
        partition_count: non_zero(o.partition_count).unwrap_or(defaults.partition_count),
        replica_count: non_zero(o.replica_count).unwrap_or(defaults.replica_count),
        shard_type: non_empty(&o.shard_type).unwrap_or(defaults.shard_type),
        log_level,
        // Kept on the hub for OaaS clients; not part of what a spoke runs.
        env_node_ids: Default::default(),
    })
}

/// Every field is sent, so the spoke never falls back on its defaults for a hub's unit.
pub fn telemetry_to_proto(t: &TelemetrySpec) -> pb::TelemetryConfig {
    pb::TelemetryConfig {
        enabled: t.enabled,
        traces: Some(t.traces),
        metrics: Some(t.metrics),
        logs: Some(t.logs),
        sampling_rate: Some(t.sampling_rate),
        service_name: t.service_name.clone().unwrap_or_default(),
        resource_attributes: t.resource_attributes.clone(),
    }
}

/// Unset optional fields take the resource's defaults; the block is checked as the CRD
/// schema would check it.
pub fn telemetry_from_proto(t: &pb::TelemetryConfig) -> Result<TelemetrySpec, FieldError> {
    let defaults = TelemetrySpec::default();
    let spec = TelemetrySpec {
        enabled: t.enabled,
        traces: t.traces.unwrap_or(defaults.traces),
        metrics: t.metrics.unwrap_or(defaults.metrics),
        logs: t.logs.unwrap_or(defaults.logs),
        sampling_rate: t.sampling_rate.unwrap_or(defaults.sampling_rate),
        service_name: non_empty(&t.service_name),
        resource_attributes: t.resource_attributes.clone(),
    };
    check_telemetry(&spec)
        .map_err(|p| field_error(format!("deployment_unit.telemetry.{}", p.field), p.message))?;
    Ok(spec)
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
        // Set by the spoke, which knows the namespace the spec lives in.
        spec_hash: 0,
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
