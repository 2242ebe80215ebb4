//! A function's workload: Deployment + Service (+ HPA), or a Knative Service.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use oaas_crds::ClassRuntime;
use oaas_crds::class_runtime::RuntimeFunction;
use oaas_crds::common::{ProvisionConfig, Template};
use oaas_crds::validation::resource_name;
use serde_json::json;

use super::{Base, Child, ChildKind, FunctionPlan, RenderContext, env_var, to_value};

const APP_FUNCTION: &str = "oaas-function";
const DEFAULT_PORT: u32 = 8080;
const DEFAULT_CPU_TARGET: f64 = 80.0;

pub(super) struct OdgmEnv {
    pub service: String,
    pub collections: String,
}

pub(super) struct RenderedFunction {
    pub plan: FunctionPlan,
    pub children: Vec<Child>,
}

pub fn container_port(p: &ProvisionConfig) -> u32 {
    p.port.unwrap_or(DEFAULT_PORT)
}

pub(super) fn render(
    base: &Base,
    runtime: &ClassRuntime,
    f: &RuntimeFunction,
    template: Template,
    ctx: &RenderContext,
    odgm: Option<&OdgmEnv>,
) -> RenderedFunction {
    let name = resource_name(&[base.name, &f.function_key]);
    let component = resource_name(&[&f.function_key]);
    let p = &f.provision_config;
    let port = container_port(p);
    let url = format!("http://{name}.{}.svc.cluster.local:{port}", base.namespace);
    let otel = super::telemetry::otel_env(runtime, f, &name, ctx.settings.otlp.as_ref());
    let container = container(runtime, f, odgm, otel);
    let (min, max) = scale_bounds(p);

    if template == Template::Knative {
        let object = knative_service(base, &name, &component, f, container, min, max);
        let plan = FunctionPlan {
            function_key: f.function_key.clone(),
            workload: name.clone(),
            kind: ChildKind::KnativeService,
            desired_replicas: min,
            url,
        };
        return RenderedFunction {
            plan,
            children: vec![Child {
                kind: ChildKind::KnativeService,
                name,
                object,
            }],
        };
    }

    let floor = min.max(1);
    let replicas = match template {
        Template::Dev => 1,
        _ => ctx
            .enforced
            .get(&f.function_key)
            .map_or(floor, |r| (*r).clamp(floor, max.max(floor))),
    };
    // The spec's bounds decide whether there is an autoscaler, not the enforced replicas:
    // enforcement moves minReplicas, it does not swap the HPA for fixed replicas.
    let hpa = template == Template::K8sDeployment && ctx.settings.features.hpa && max > floor;
    let meta = base.meta(&name, APP_FUNCTION, &component, Some(&f.function_key));
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            // With an autoscaler, replicas belong to it: leaving them out of our apply keeps
            // the two from fighting.
            replicas: (!hpa).then_some(replicas as i32),
            selector: LabelSelector {
                match_labels: Some(base.selector(&component)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(base.labels(APP_FUNCTION, &component, Some(&f.function_key))),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: meta.clone(),
        spec: Some(ServiceSpec {
            selector: Some(base.selector(&component)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: port as i32,
                target_port: Some(IntOrString::Int(port as i32)),
                app_protocol: p
                    .need_http2
                    .unwrap_or(false)
                    .then(|| "kubernetes.io/h2c".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    let mut children = vec![
        Child {
            kind: ChildKind::Deployment,
            name: name.clone(),
            object: to_value(&deployment),
        },
        Child {
            kind: ChildKind::Service,
            name: name.clone(),
            object: to_value(&service),
        },
    ];
    if hpa {
        let target = cpu_target(runtime);
        children.push(Child {
            kind: ChildKind::HorizontalPodAutoscaler,
            name: name.clone(),
            object: to_value(&autoscaler(meta, &name, replicas, max, target)),
        });
    }
    let plan = FunctionPlan {
        function_key: f.function_key.clone(),
        workload: name,
        kind: ChildKind::Deployment,
        desired_replicas: replicas,
        url,
    };
    RenderedFunction { plan, children }
}

/// The CPU utilization (percent of the request) the autoscaler and the NFR analyzer aim at.
pub fn cpu_target(runtime: &ClassRuntime) -> f64 {
    runtime
        .spec
        .nfr
        .as_ref()
        .and_then(|n| n.cpu_utilization_target)
        .unwrap_or(DEFAULT_CPU_TARGET)
}

/// (min, max) replicas: min defaults to 1, max to min.
pub fn scale_bounds(p: &ProvisionConfig) -> (u32, u32) {
    let min = p.min_scale.unwrap_or(1);
    (min, p.max_scale.unwrap_or(min).max(min))
}

fn container(
    runtime: &ClassRuntime,
    f: &RuntimeFunction,
    odgm: Option<&OdgmEnv>,
    otel: BTreeMap<String, String>,
) -> Container {
    let p = &f.provision_config;
    // The platform's variables win over config entries of the same name (seed packages set
    // HTTP_PORT themselves): a name may appear once, or the API server rejects the apply.
    let mut vars = f.config.clone();
    // OpenTelemetry variables are defaults the other way round: a function's config entry of
    // the same name (say OTEL_SERVICE_NAME or OTEL_EXPORTER_OTLP_ENDPOINT) is kept.
    for (name, value) in otel {
        vars.entry(name).or_insert(value);
    }
    vars.insert("OAAS_CLASS_KEY".into(), runtime.spec.class_key.clone());
    vars.insert("OAAS_FUNCTION_KEY".into(), f.function_key.clone());
    vars.insert("OAAS_PACKAGE".into(), runtime.spec.package_name.clone());
    vars.insert("HTTP_PORT".into(), container_port(p).to_string());
    if let Some(odgm) = odgm {
        vars.insert("ODGM_ENABLED".into(), "true".into());
        vars.insert("ODGM_SERVICE".into(), odgm.service.clone());
        vars.insert("ODGM_COLLECTION".into(), odgm.collections.clone());
    }
    let env: Vec<EnvVar> = vars.iter().map(|(k, v)| env_var(k, v)).collect();
    Container {
        name: "function".into(),
        image: p
            .container_image
            .clone()
            .or_else(|| p.wasm_module_url.clone()),
        ports: Some(vec![ContainerPort {
            name: Some(
                if p.need_http2.unwrap_or(false) {
                    "h2c"
                } else {
                    "http"
                }
                .into(),
            ),
            container_port: container_port(p) as i32,
            ..Default::default()
        }]),
        env: Some(env),
        resources: resources(p),
        ..Default::default()
    }
}

fn resources(p: &ProvisionConfig) -> Option<ResourceRequirements> {
    let pairs = |cpu: &Option<String>, memory: &Option<String>| {
        let map: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), Quantity(v.clone()))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let requests = pairs(&p.cpu_request, &p.memory_request);
    let limits = pairs(&p.cpu_limit, &p.memory_limit);
    (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..Default::default()
    })
}

fn autoscaler(
    meta: ObjectMeta,
    name: &str,
    min: u32,
    max: u32,
    cpu_target: f64,
) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: meta,
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: name.into(),
            },
            min_replicas: Some(min as i32),
            max_replicas: max as i32,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(cpu_target.round() as i32),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            behavior: None,
        }),
        status: None,
    }
}

fn knative_service(
    base: &Base,
    name: &str,
    component: &str,
    f: &RuntimeFunction,
    container: Container,
    min: u32,
    max: u32,
) -> serde_json::Value {
    let meta = base.meta(name, APP_FUNCTION, component, Some(&f.function_key));
    let mut annotations = BTreeMap::from([
        (
            "autoscaling.knative.dev/min-scale".to_string(),
            min.to_string(),
        ),
        (
            "autoscaling.knative.dev/max-scale".to_string(),
            max.to_string(),
        ),
    ]);
    if let Some(c) = f.provision_config.max_concurrency {
        annotations.insert("autoscaling.knative.dev/target".into(), c.to_string());
    }
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "template": {
                "metadata": {
                    "labels": base.labels(APP_FUNCTION, component, Some(&f.function_key)),
                    "annotations": annotations,
                },
                "spec": {
                    "containerConcurrency": f.provision_config.max_concurrency.unwrap_or(0),
                    "containers": [container],
                }
            }
        }
    })
}
