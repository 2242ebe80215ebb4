//! Rendering: a ClassRuntime in, the Kubernetes objects it needs out. Pure functions: no
//! client, no clock, so every child kind is unit-tested as plain data.
mod function;
mod odgm;
mod settings;
mod telemetry;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::ApiResource;
use oaas_core::tenancy::CRM_LABEL;
use oaas_crds::ClassRuntime;
use oaas_crds::common::Template;
use oaas_crds::validation::resource_name;

use crate::template;

pub use function::{container_port, cpu_target, scale_bounds};
pub use odgm::collections_json;
pub use settings::{Features, OdgmSettings, OtlpExporter, OtlpProtocol, Profile, Settings};

pub const MANAGED_BY: &str = "oaas-crm";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_FUNCTION: &str = "oaas.io/function";
/// The addon name that turns the object data grid on.
pub const ODGM_ADDON: &str = "odgm";

/// What the renderer needs to know about this CRM and cluster: the start-up settings, and
/// what the caller found out for this pass.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    pub settings: &'a Settings,
    /// Whether the Knative Serving CRD is installed in the cluster.
    pub knative_installed: bool,
    /// Replicas the NFR enforcer put in force, by function key (within the scale bounds):
    /// the autoscaler's minReplicas, else the Deployment's replicas.
    pub enforced: &'a std::collections::BTreeMap<String, u32>,
    /// The CRM rendering (its namespace): every runtime it renders carries its `oaas.io/crm`
    /// label, and so must every child, for each CRM sharing a cluster to watch only its own.
    pub crm: &'a str,
}

/// Kinds of child objects the CRM creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    Deployment,
    Service,
    HorizontalPodAutoscaler,
    KnativeService,
}

impl ChildKind {
    pub const ALL: [ChildKind; 4] = [
        ChildKind::Deployment,
        ChildKind::Service,
        ChildKind::HorizontalPodAutoscaler,
        ChildKind::KnativeService,
    ];

    pub fn api_resource(self) -> ApiResource {
        use k8s_openapi::api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler};
        match self {
            ChildKind::Deployment => ApiResource::erase::<Deployment>(&()),
            ChildKind::Service => ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
            ChildKind::HorizontalPodAutoscaler => {
                ApiResource::erase::<HorizontalPodAutoscaler>(&())
            }
            ChildKind::KnativeService => ApiResource {
                group: "serving.knative.dev".into(),
                version: "v1".into(),
                api_version: "serving.knative.dev/v1".into(),
                kind: "Service".into(),
                plural: "services".into(),
            },
        }
    }

    /// The kind of child an object of `api_version` and `kind` is, if it is one.
    pub fn of(api_version: &str, kind: &str) -> Option<ChildKind> {
        Self::ALL.into_iter().find(|k| {
            let resource = k.api_resource();
            resource.api_version == api_version && resource.kind == kind
        })
    }
}

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub kind: ChildKind,
    pub name: String,
    pub object: serde_json::Value,
}

/// Something that keeps the class from running as asked, found while rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderProblem {
    pub reason: &'static str,
    pub message: String,
}

/// Everything a ClassRuntime renders to.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub template: Template,
    pub children: Vec<Child>,
    pub functions: Vec<FunctionPlan>,
    pub odgm: Option<OdgmPlan>,
    pub problems: Vec<RenderProblem>,
}

/// Where a function runs, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionPlan {
    pub function_key: String,
    /// Deployment (or Knative Service) name; also the Service name.
    pub workload: String,
    pub kind: ChildKind,
    pub desired_replicas: u32,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OdgmPlan {
    pub deployment: String,
    pub service: String,
    pub replicas: u32,
}

pub fn render(runtime: &ClassRuntime, ctx: &RenderContext) -> Rendered {
    let name = runtime.metadata.name.clone().unwrap_or_default();
    let namespace = runtime.metadata.namespace.clone().unwrap_or_default();
    let spec = &runtime.spec;
    let template = template::select(
        spec.template,
        ctx.settings.profile,
        spec.nfr.as_ref(),
        ctx.settings.features.knative,
    );
    let owner = runtime.controller_owner_ref(&());
    let base = Base {
        name: &name,
        namespace: &namespace,
        owner: owner.as_ref(),
        crm: ctx.crm,
    };

    let mut problems = Vec::new();
    if template == Template::Knative && !ctx.knative_installed {
        problems.push(RenderProblem {
            reason: "KnativeNotInstalled",
            message: "the knative template needs Knative Serving (serving.knative.dev/v1 Service) \
                      in this cluster; install it or choose another template"
                .into(),
        });
    }

    let odgm_on = ctx.settings.features.odgm && spec.addons.iter().any(|a| a == ODGM_ADDON);
    let odgm_spec = spec.odgm.clone().unwrap_or_default();
    let odgm_names = odgm_on.then(|| odgm::names(&name));
    let collections = odgm_on.then(|| collections_json(runtime, &odgm_spec));

    let mut children = Vec::new();
    let mut functions = Vec::new();
    for f in &spec.functions {
        let odgm_env = odgm_names
            .as_ref()
            .zip(collections.as_ref())
            .map(|((_, svc), json)| function::OdgmEnv {
                service: format!("{svc}:{}", ctx.settings.odgm.port),
                collections: json.clone(),
            });
        let rendered = function::render(&base, runtime, f, template, ctx, odgm_env.as_ref());
        functions.push(rendered.plan);
        // Without Knative Serving there is nothing to apply them to; the problem says so.
        if template != Template::Knative || ctx.knative_installed {
            children.extend(rendered.children);
        }
    }
    let odgm = odgm_names
        .zip(collections)
        .map(|((deployment, service), json)| {
            children.extend(odgm::render(
                &base,
                &odgm_spec,
                &deployment,
                &service,
                &json,
                ctx,
            ));
            OdgmPlan {
                deployment,
                service,
                replicas: odgm_spec.replica_count,
            }
        });
    Rendered {
        template,
        children,
        functions,
        odgm,
        problems,
    }
}

/// What every child shares: its owner and where it lives.
pub(crate) struct Base<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub owner: Option<&'a OwnerReference>,
    /// The CRM that owns the runtime, whose `oaas.io/crm` label every child carries.
    pub crm: &'a str,
}

impl Base<'_> {
    /// Metadata of a child: name, namespace, standard labels, owner.
    pub fn meta(
        &self,
        name: &str,
        app: &str,
        component: &str,
        function: Option<&str>,
    ) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.to_string()),
            labels: Some(self.labels(app, component, function)),
            owner_references: self.owner.map(|o| vec![o.clone()]),
            ..Default::default()
        }
    }

    pub fn labels(
        &self,
        app: &str,
        component: &str,
        function: Option<&str>,
    ) -> BTreeMap<String, String> {
        let mut labels = self.selector(component);
        labels.insert(LABEL_NAME.into(), app.into());
        labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        if let Some(f) = function {
            labels.insert(LABEL_FUNCTION.into(), resource_name(&[f]));
        }
        labels.insert(CRM_LABEL.into(), self.crm.into());
        labels
    }

    /// Labels that select a component's Pods; never change for the component's life.
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_INSTANCE.to_string(), self.name.to_string()),
            (LABEL_COMPONENT.to_string(), component.to_string()),
        ])
    }
}

fn to_value<T: serde::Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).expect("Kubernetes objects always serialize")
}

fn env_var(name: &str, value: &str) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

#[cfg(test)]
mod tests;
