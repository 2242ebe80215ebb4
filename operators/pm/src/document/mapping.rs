//! Document ↔ resource mapping. Requests are checked here only for what the API server
//! cannot express in these terms (which document field is wrong); everything else is left
//! to the CRD schema and CEL rules, so REST and kubectl reject the same things.
use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::ObjectMeta;
use oaas_crds::class_deployment::{self as cd, FunctionOverride};
use oaas_crds::common::{self, OdgmSpec, Phase, Template};
use oaas_crds::package::{self as crd, OPackageSpec};
use oaas_crds::telemetry::{TelemetrySpec, check_telemetry};
use oaas_crds::validation::check_log_filter;
use oaas_crds::validation::resource_name;
use oaas_crds::{OClassDeployment, OClassDeploymentSpec, OPackage};

use super::{
    Class, Deployment, DeploymentCondition, DeploymentStatusSummary, Function, FunctionBinding,
    FunctionDeployment, KeySpec, NfrRequirements, Odgm, Package, PackageMetadata, ProvisionConfig,
    QosRequirement, StateSpec, Telemetry,
};

/// The deployment key as written, kept on the OClassDeployment whose name is its DNS form.
pub const KEY_ANNOTATION: &str = "oaas.io/key";

/// A document field that cannot become a resource, and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {problem}")]
pub struct MappingError {
    pub field: String,
    pub problem: String,
}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> MappingError {
    MappingError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Name of the OClassDeployment for a deployment key.
pub fn deployment_name(key: &str) -> String {
    resource_name(&[key])
}

/// The package and its deployments as resources in `namespace`.
pub fn package_resources(
    doc: &Package,
    namespace: &str,
) -> Result<(OPackage, Vec<OClassDeployment>), MappingError> {
    let deployments = doc
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut d = d.clone();
            if d.package_name.is_empty() {
                d.package_name = doc.name.clone();
            }
            deployment_resource(&d, namespace)
                .map_err(|e| problem(format!("deployments[{i}].{}", e.field), e.problem))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((package_resource(doc, namespace), deployments))
}

pub fn package_resource(doc: &Package, namespace: &str) -> OPackage {
    let spec = OPackageSpec {
        version: doc.version.clone(),
        metadata: Some(crd::PackageMetadata {
            author: doc.metadata.author.clone(),
            description: doc.metadata.description.clone(),
            tags: doc.metadata.tags.clone(),
        })
        .filter(|m| *m != crd::PackageMetadata::default()),
        classes: doc.classes.iter().map(class_spec).collect(),
        functions: doc.functions.iter().map(function_spec).collect(),
        dependencies: doc.dependencies.clone(),
        disabled: doc.disabled,
    };
    let mut package = OPackage::new(&doc.name, spec);
    package.metadata.namespace = Some(namespace.to_string());
    package
}

fn class_spec(class: &Class) -> crd::ClassSpec {
    crd::ClassSpec {
        key: class.key.clone(),
        description: class.description.clone(),
        state_spec: class.state_spec.as_ref().map(|s| crd::StateSpec {
            key_specs: s
                .key_specs
                .iter()
                .map(|k| crd::KeySpec {
                    name: k.name.clone(),
                    key_type: k.key_type.clone(),
                })
                .collect(),
            default_provider: s.default_provider.clone(),
            consistency_model: s.consistency_model,
            persistent: s.persistent,
            serialization_format: s.serialization_format.clone(),
        }),
        function_bindings: class
            .function_bindings
            .iter()
            .map(|b| crd::FunctionBinding {
                name: b.name.clone(),
                function_key: b.function_key.clone(),
                access_modifier: b.access_modifier,
                stateless: b.stateless,
                parameters: b.parameters.clone(),
            })
            .collect(),
        disabled: class.disabled,
    }
}

fn function_spec(function: &Function) -> crd::FunctionSpec {
    crd::FunctionSpec {
        key: function.key.clone(),
        function_type: function.function_type,
        description: function.description.clone(),
        provision_config: function.provision_config.as_ref().map(provision_spec),
        config: function.config.clone(),
    }
}

fn provision_spec(p: &ProvisionConfig) -> common::ProvisionConfig {
    common::ProvisionConfig {
        container_image: p.container_image.clone(),
        wasm_module_url: p.wasm_module_url.clone(),
        port: p.port,
        // The seeds write "no limit" as 0; the resource leaves the field out.
        max_concurrency: p.max_concurrency.filter(|c| *c > 0),
        need_http2: p.need_http2.then_some(true),
        cpu_request: p.cpu_request.clone(),
        memory_request: p.memory_request.clone(),
        cpu_limit: p.cpu_limit.clone(),
        memory_limit: p.memory_limit.clone(),
        min_scale: p.min_scale,
        max_scale: p.max_scale,
    }
}

pub fn deployment_resource(
    doc: &Deployment,
    namespace: &str,
) -> Result<OClassDeployment, MappingError> {
    if doc.key.trim().is_empty() {
        return Err(problem("key", "give the deployment a key, e.g. record-eu"));
    }
    if doc.package_name.is_empty() {
        return Err(problem("package_name", "name the package of the class"));
    }
    let spec = OClassDeploymentSpec {
        package: doc.package_name.clone(),
        class_key: doc.class_key.clone(),
        target_clusters: doc.target_envs.clone(),
        cluster_selector: None,
        available_clusters: doc.available_envs.clone(),
        target_env: None,
        template: None,
        cluster_templates: cluster_templates(doc)?,
        nfr: nfr_spec(&doc.nfr_requirements)?,
        functions: doc
            .functions
            .iter()
            .map(|f| FunctionOverride {
                function_key: f.function_key.clone(),
                provision_config: f.provision_config.as_ref().map(provision_spec),
                config: f.config.clone(),
                description: f.description.clone(),
                available_location: f.available_location.clone(),
                qos_requirement: f.qos_requirement.as_ref().map(|q| cd::QosRequirement {
                    throughput: q.throughput,
                    availability: q.availability,
                }),
            })
            .collect(),
        odgm: doc.odgm.as_ref().map(odgm_spec).transpose()?,
        telemetry: doc.telemetry.as_ref().map(telemetry_spec).transpose()?,
        enforcement_mode: doc.enforcement_mode,
        failover_grace_seconds: None,
    };
    let mut deployment = OClassDeployment::new(&deployment_name(&doc.key), spec);
    deployment.metadata = ObjectMeta {
        namespace: Some(namespace.to_string()),
        annotations: Some([(KEY_ANNOTATION.to_string(), doc.key.clone())].into()),
        ..deployment.metadata
    };
    Ok(deployment)
}

fn cluster_templates(doc: &Deployment) -> Result<BTreeMap<String, Template>, MappingError> {
    doc.env_templates
        .iter()
        .map(|(cluster, name)| {
            Template::parse(name)
                .map(|template| (cluster.clone(), template))
                .ok_or_else(|| {
                    problem(
                        format!("env_templates.{cluster}"),
                        format!(
                            "unknown template {name:?}; use dev, edge, k8s_deployment (full) or knative"
                        ),
                    )
                })
        })
        .collect()
}

fn nfr_spec(nfr: &NfrRequirements) -> Result<Option<common::NfrRequirements>, MappingError> {
    let cpu = nfr
        .cpu_utilization_target
        .map(|target| {
            cpu_percent(target).ok_or_else(|| {
                problem(
                    "nfr_requirements.cpu_utilization_target",
                    format!(
                        "{target} is neither a fraction in (0, 1] nor a percentage in 1-100; e.g. 0.6 or 60"
                    ),
                )
            })
        })
        .transpose()?;
    Ok(Some(common::NfrRequirements {
        availability: nfr.availability,
        min_throughput_rps: nfr.min_throughput_rps,
        max_latency_ms: nfr.max_latency_ms,
        cpu_utilization_target: cpu,
    })
    .filter(|n| *n != common::NfrRequirements::default()))
}

/// A CPU utilization target in percent (1-100), or `None` when it is out of range.
/// Upstream's documents give a fraction (0.6), the seeds a percentage (60): a value of at
/// most 1 is a fraction. Rounded to a millionth, so 0.29 is 29, not 28.999999999999996.
pub fn cpu_percent(target: f64) -> Option<f64> {
    let percent = if target <= 1.0 {
        target * 100.0
    } else {
        target
    };
    let percent = (percent * 1e6).round() / 1e6;
    (1.0..=100.0).contains(&percent).then_some(percent)
}

fn odgm_spec(odgm: &Odgm) -> Result<OdgmSpec, MappingError> {
    let defaults = OdgmSpec::default();
    // Upstream writes a tracing filter here (`debug,h2=info`); it reaches ODGM as given.
    let log_level = odgm.log.as_deref().map(str::trim).map(String::from);
    if let Some(filter) = &log_level {
        check_log_filter(filter).map_err(|e| problem("odgm.log", e))?;
    }
    Ok(OdgmSpec {
        collections: odgm.collections.clone(),
        partition_count: odgm.partition_count.unwrap_or(defaults.partition_count),
        replica_count: odgm.replica_count.unwrap_or(defaults.replica_count),
        shard_type: odgm.shard_type.clone().unwrap_or(defaults.shard_type),
        log_level,
        env_node_ids: odgm.env_node_ids.clone(),
    })
}

/// Unset fields take the resource's defaults. Checked here, so the error names the document
/// field (`telemetry.sampling_rate`) rather than the resource's.
fn telemetry_spec(t: &Telemetry) -> Result<TelemetrySpec, MappingError> {
    let defaults = TelemetrySpec::default();
    let spec = TelemetrySpec {
        enabled: t.enabled.unwrap_or(defaults.enabled),
        traces: t.traces.unwrap_or(defaults.traces),
        metrics: t.metrics.unwrap_or(defaults.metrics),
        logs: t.logs.unwrap_or(defaults.logs),
        sampling_rate: t.sampling_rate.unwrap_or(defaults.sampling_rate),
        service_name: t
            .service_name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(String::from),
        resource_attributes: t.resource_attributes.clone(),
    };
    check_telemetry(&spec).map_err(|p| problem(format!("telemetry.{}", p.field), p.message))?;
    Ok(spec)
}

fn telemetry_document(t: &TelemetrySpec) -> Telemetry {
    Telemetry {
        enabled: Some(t.enabled),
        traces: Some(t.traces),
        metrics: Some(t.metrics),
        logs: Some(t.logs),
        sampling_rate: Some(t.sampling_rate),
        service_name: t.service_name.clone(),
        resource_attributes: t.resource_attributes.clone(),
    }
}

/// The package document of a resource; `deployments` are the class deployments using it.
pub fn package_document(package: &OPackage, deployments: Vec<Deployment>) -> Package {
    let spec = &package.spec;
    let metadata = spec.metadata.clone().unwrap_or_default();
    Package {
        name: package.name_any(),
        version: spec.version.clone(),
        metadata: PackageMetadata {
            author: metadata.author,
            description: metadata.description,
            tags: metadata.tags,
        },
        classes: spec.classes.iter().map(class_document).collect(),
        functions: spec.functions.iter().map(function_document).collect(),
        dependencies: spec.dependencies.clone(),
        deployments,
        disabled: spec.disabled,
    }
}

pub fn class_document(class: &crd::ClassSpec) -> Class {
    Class {
        key: class.key.clone(),
        description: class.description.clone(),
        state_spec: class.state_spec.as_ref().map(|s| StateSpec {
            key_specs: s
                .key_specs
                .iter()
                .map(|k| KeySpec {
                    name: k.name.clone(),
                    key_type: k.key_type.clone(),
                })
                .collect(),
            default_provider: s.default_provider.clone(),
            consistency_model: s.consistency_model,
            persistent: s.persistent,
            serialization_format: s.serialization_format.clone(),
        }),
        function_bindings: class
            .function_bindings
            .iter()
            .map(|b| FunctionBinding {
                name: b.name.clone(),
                function_key: b.function_key.clone(),
                access_modifier: b.access_modifier,
                stateless: b.stateless,
                parameters: b.parameters.clone(),
            })
            .collect(),
        disabled: class.disabled,
    }
}

pub fn function_document(function: &crd::FunctionSpec) -> Function {
    Function {
        key: function.key.clone(),
        function_type: function.function_type,
        description: function.description.clone(),
        provision_config: function.provision_config.as_ref().map(provision_document),
        config: function.config.clone(),
    }
}

fn provision_document(p: &common::ProvisionConfig) -> ProvisionConfig {
    ProvisionConfig {
        container_image: p.container_image.clone(),
        wasm_module_url: p.wasm_module_url.clone(),
        port: p.port,
        max_concurrency: p.max_concurrency,
        need_http2: p.need_http2.unwrap_or(false),
        cpu_request: p.cpu_request.clone(),
        memory_request: p.memory_request.clone(),
        cpu_limit: p.cpu_limit.clone(),
        memory_limit: p.memory_limit.clone(),
        min_scale: p.min_scale,
        max_scale: p.max_scale,
    }
}

pub fn deployment_document(deployment: &OClassDeployment) -> Deployment {
    let spec = &deployment.spec;
    let status = deployment.status.clone().unwrap_or_default();
    let nfr = spec.nfr.clone().unwrap_or_default();
    let key = deployment
        .annotations()
        .get(KEY_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| deployment.name_any());
    let condition = if deployment.metadata.deletion_timestamp.is_some() {
        DeploymentCondition::Deleted
    } else {
        condition_of(status.phase.unwrap_or_default())
    };
    let last_error = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| c.message.clone());
    let plan = status.plan.clone().unwrap_or_default();
    Deployment {
        key,
        package_name: spec.package.clone(),
        class_key: spec.class_key.clone(),
        target_envs: spec.target_clusters.clone(),
        available_envs: spec.available_clusters.clone(),
        nfr_requirements: NfrRequirements {
            min_throughput_rps: nfr.min_throughput_rps,
            availability: nfr.availability,
            cpu_utilization_target: nfr.cpu_utilization_target,
            max_latency_ms: nfr.max_latency_ms,
        },
        // The deployment-wide template shows under each named cluster; a cluster's own wins.
        env_templates: spec
            .target_clusters
            .iter()
            .filter_map(|c| Some((c.clone(), spec.template?)))
            .chain(spec.cluster_templates.clone())
            .map(|(cluster, t)| (cluster, t.as_str().to_string()))
            .collect(),
        functions: spec
            .functions
            .iter()
            .map(|f| FunctionDeployment {
                function_key: f.function_key.clone(),
                description: f.description.clone(),
                available_location: f.available_location.clone(),
                qos_requirement: f.qos_requirement.as_ref().map(|q| QosRequirement {
                    throughput: q.throughput,
                    availability: q.availability,
                }),
                provision_config: f.provision_config.as_ref().map(provision_document),
                config: f.config.clone(),
            })
            .collect(),
        odgm: spec.odgm.as_ref().map(|o| Odgm {
            collections: o.collections.clone(),
            partition_count: Some(o.partition_count),
            replica_count: Some(o.replica_count),
            shard_type: Some(o.shard_type.clone()),
            log: o.log_level.clone(),
            env_node_ids: o.env_node_ids.clone(),
        }),
        telemetry: spec.telemetry.as_ref().map(telemetry_document),
        enforcement_mode: spec.enforcement_mode,
        condition: Some(condition),
        status: Some(DeploymentStatusSummary {
            replication_factor: plan.clusters.len() as u32,
            selected_envs: plan.clusters,
            achieved_quorum_availability: plan.expected_availability,
            last_error,
            spoke_namespaces: status
                .clusters
                .iter()
                .filter_map(|c| Some((c.cluster.clone(), c.namespace.clone()?)))
                .collect(),
        }),
        created_at: deployment
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(String::from)),
    }
}

/// The seeds' coarse condition for a phase.
pub fn condition_of(phase: Phase) -> DeploymentCondition {
    match phase {
        Phase::Pending => DeploymentCondition::Pending,
        Phase::Applying | Phase::Progressing => DeploymentCondition::Deploying,
        Phase::Available => DeploymentCondition::Running,
        Phase::Degraded => DeploymentCondition::Down,
        Phase::Deleting => DeploymentCondition::Deleted,
    }
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
