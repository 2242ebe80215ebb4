//! The object data grid (ODGM) of a class: its own Deployment and Service (never a
//! sidecar), and the collection JSON handed to it and to the functions.
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use oaas_crds::ClassRuntime;
use oaas_crds::common::OdgmSpec;
use oaas_crds::validation::resource_name;
use serde_json::{Map, Value, json};

use super::{Base, Child, ChildKind, RenderContext, container_port, env_var, to_value};

const APP_ODGM: &str = "oaas-odgm";
const COMPONENT: &str = "odgm";

/// (Deployment, Service) names: `<class>-odgm` and `<class>-odgm-svc`.
pub(super) fn names(runtime_name: &str) -> (String, String) {
    (
        resource_name(&[runtime_name, "odgm"]),
        resource_name(&[runtime_name, "odgm-svc"]),
    )
}

/// `ODGM_COLLECTION`: a JSON array with one create-collection request per collection,
/// routing each function of the class to its Service.
pub fn collections_json(runtime: &ClassRuntime, odgm: &OdgmSpec) -> String {
    let name = runtime.metadata.name.as_deref().unwrap_or_default();
    let namespace = runtime.metadata.namespace.as_deref().unwrap_or_default();
    let routes: Map<String, Value> = runtime
        .spec
        .functions
        .iter()
        .map(|f| {
            let service = resource_name(&[name, &f.function_key]);
            let port = container_port(&f.provision_config);
            let url = format!("http://{service}.{namespace}.svc.cluster.local:{port}");
            (
                f.function_key.clone(),
                json!({"url": url, "stateless": f.stateless, "standby": false}),
            )
        })
        .collect();
    let collections: Vec<Value> = odgm
        .collections
        .iter()
        .map(|collection| {
            json!({
                "name": collection,
                "partition_count": odgm.partition_count,
                "replica_count": odgm.replica_count,
                "shard_type": odgm.shard_type,
                "shard_assignments": [],
                "options": {},
                "invocations": {"fn_routes": routes},
            })
        })
        .collect();
    Value::Array(collections).to_string()
}

pub(super) fn render(
    base: &Base,
    odgm: &OdgmSpec,
    deployment_name: &str,
    service_name: &str,
    collections: &str,
    ctx: &RenderContext,
) -> Vec<Child> {
    let port = i32::from(ctx.settings.odgm.port);
    let members: Vec<String> = (1..=odgm.replica_count).map(|i| i.to_string()).collect();
    let env = vec![
        env_var("ODGM_CLUSTER_ID", base.name),
        env_var("ODGM_COLLECTION", collections),
        env_var("ODGM_MEMBERS", &members.join(",")),
        env_var("ODGM_HTTP_PORT", &port.to_string()),
        env_var("ODGM_LOG", odgm.log_level.as_deref().unwrap_or("info")),
        // Pods of a Deployment have no ordinal; the Pod name is the stable node id.
        EnvVar {
            name: "ODGM_NODE_ID".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        },
    ];
    let deployment = Deployment {
        metadata: base.meta(deployment_name, APP_ODGM, COMPONENT, None),
        spec: Some(DeploymentSpec {
            replicas: Some(odgm.replica_count as i32),
            selector: LabelSelector {
                match_labels: Some(base.selector(COMPONENT)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(base.labels(APP_ODGM, COMPONENT, None)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "odgm".into(),
                        image: Some(ctx.settings.odgm.image.clone()),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".into()),
                            container_port: port,
                            ..Default::default()
                        }]),
                        env: Some(env),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: base.meta(service_name, APP_ODGM, COMPONENT, None),
        spec: Some(ServiceSpec {
            selector: Some(base.selector(COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::Int(port)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    vec![
        Child {
            kind: ChildKind::Deployment,
            name: deployment_name.into(),
            object: to_value(&deployment),
        },
        Child {
            kind: ChildKind::Service,
            name: service_name.into(),
            object: to_value(&service),
        },
    ]
}
