//! A deployment unit ↔ the ClassRuntime spec it describes: the hub sends the unit, the
//! spoke checks it field by field and stores the spec.
use std::collections::HashSet;

use oaas_proto::deployment as pb;

use super::*;
use crate::class_runtime::{ClassRuntimeSpec, RuntimeFunction};
use crate::validation::check_key;

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
        telemetry: spec.telemetry.as_ref().map(telemetry_to_proto),
        enforcement_mode: enforcement_to_proto(spec.enforcement_mode) as i32,
        revision: spec.revision.unwrap_or_default(),
        consistency_model: consistency_to_proto(spec.consistency_model) as i32,
        namespace: String::new(),
    }
}

/// The unit that deploys `spec` into spoke `namespace`, its revision a stable 63-bit hash of
/// everything else in it. The hub sends it; the spoke recomputes it from what it holds, so a
/// spec changed on the spoke shows as a hash that differs from the revision (drift).
pub fn unit_with_revision(spec: &ClassRuntimeSpec, namespace: &str) -> pb::DeploymentUnit {
    use prost::Message;
    let mut unit = unit_from_runtime_spec(&ClassRuntimeSpec {
        revision: None,
        ..spec.clone()
    });
    unit.namespace = namespace.to_string();
    unit.revision = (crate::validation::fnv1a(&unit.encode_to_vec()) >> 1) as i64;
    unit
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
    let telemetry = unit
        .telemetry
        .as_ref()
        .map(telemetry_from_proto)
        .transpose()?;
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
        telemetry,
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
