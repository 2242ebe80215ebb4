//! The ClassRuntime controller: read → render (pure) → server-side apply → delete orphaned
//! children → observe → status. Level-triggered: every pass recomputes everything from the
//! resource and the cluster, so a missed event or a restart loses nothing.
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use oaas_crds::ClassRuntime;
use oaas_crds::class_runtime::{ClassRuntimeStatus, ResourceRef};
use oaas_crds::common::Phase;
use oaas_crds::conditions;
use serde_json::json;
use tokio::sync::Mutex;
use tracing::{info, instrument, warn};

use oaas_operator_common::publish_event;

use crate::applied::{self, AppliedCache, ChildKey};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::nfr::{self, ConditionChange};
use crate::render::{
    self, ChildKind, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY, RenderContext, Rendered,
};
use crate::state::{self, Observation, Workload};

pub const FINALIZER: &str = "oaas.io/class-runtime-cleanup";
pub const FIELD_MANAGER: &str = "oaas-crm";
/// Annotation carrying the hub's correlation id of the last Deploy call.
pub const CORRELATION_ANNOTATION: &str = "oaas.io/correlation-id";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("children of {0} are still being deleted")]
    ChildrenRemain(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::ChildrenRemain(_) => "children_remain",
        }
    }
}

/// Caches of the children, shared with the observation step so it needs no API calls.
#[derive(Clone)]
pub struct ChildStores {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub autoscalers: Store<HorizontalPodAutoscaler>,
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    pub children: ChildStores,
    pub metrics: Arc<Metrics>,
    /// The NFR analyzer's latest reports.
    nfr: Arc<nfr::Board>,
    applied: AppliedCache,
    recorder: Recorder,
    knative: Mutex<Option<(Instant, bool)>>,
}

impl Context {
    /// Whether Knative Serving is installed; asked of discovery at most every 30 s.
    async fn knative_installed(&self) -> bool {
        let mut cached = self.knative.lock().await;
        if let Some((at, installed)) = *cached
            && at.elapsed() < Duration::from_secs(30)
        {
            return installed;
        }
        let installed = match self
            .client
            .list_api_group_resources("serving.knative.dev/v1")
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.name == "services"),
            Err(_) => false,
        };
        *cached = Some((Instant::now(), installed));
        installed
    }

    fn render_context<'a>(
        &'a self,
        knative_installed: bool,
        enforced: &'a std::collections::BTreeMap<String, u32>,
    ) -> RenderContext<'a> {
        RenderContext {
            profile: self.config.profile,
            features: self.config.features,
            odgm: &self.config.odgm,
            knative_installed,
            enforced,
        }
    }
}

/// Runs the controller until the process is asked to stop.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>) {
    let ns = config.namespace.clone();
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let (deployments, deployment_stream) =
        child_stream::<Deployment>(&client, &ns, managed.clone());
    let (services, service_stream) = child_stream::<Service>(&client, &ns, managed.clone());
    let (autoscalers, hpa_stream) = child_stream::<HorizontalPodAutoscaler>(&client, &ns, managed);
    let board = Arc::new(nfr::Board::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from("oaas-crm")),
        config,
        children: ChildStores {
            deployments,
            services,
            autoscalers,
        },
        metrics,
        nfr: board.clone(),
        applied: AppliedCache::default(),
        knative: Mutex::new(None),
    });
    let controller = Controller::new(
        Api::<ClassRuntime>::namespaced(client.clone(), &ns),
        watcher::Config::default(),
    );
    // The analyzer reports on the board and wakes the runtime it reported on.
    let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
    if let Some(settings) = ctx.config.nfr.clone() {
        match nfr::provider::Prometheus::new(&settings.prometheus_url, settings.query_timeout) {
            Ok(prometheus) => {
                let analyzer = nfr::analyzer::Analyzer {
                    provider: Arc::new(prometheus),
                    settings,
                    config: ctx.config.clone(),
                    board,
                    runtimes: controller.store(),
                    recorder: Recorder::new(client.clone(), Reporter::from("oaas-crm")),
                    metrics: ctx.metrics.clone(),
                    wake,
                    pending: Default::default(),
                };
                tokio::spawn(analyzer.run());
            }
            Err(e) => warn!(error = %e, "the NFR analyzer cannot start"),
        }
    }
    controller
        .owns_stream(deployment_stream)
        .owns_stream(service_stream)
        .owns_stream(hpa_stream)
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(woken))
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

type ChildStream<K> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<K, watcher::Error>> + Send>>;

fn child_stream<K>(client: &Client, ns: &str, config: watcher::Config) -> (Store<K>, ChildStream<K>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::namespaced(client.clone(), ns), config)
        .default_backoff()
        // Managed fields are most of an object and nothing here reads them.
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        // Touched, not applied: a deleted child must wake its owner up so it comes back.
        .touched_objects();
    (reader, Box::pin(stream))
}

#[instrument(skip_all, fields(class_runtime = %runtime.name_any(), correlation_id))]
async fn reconcile(runtime: Arc<ClassRuntime>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(id) = runtime.annotations().get(CORRELATION_ANNOTATION) {
        tracing::Span::current().record("correlation_id", id.as_str());
    }
    let started = Instant::now();
    let api = Api::<ClassRuntime>::namespaced(
        ctx.client.clone(),
        &runtime.namespace().unwrap_or_default(),
    );
    let result = finalizer(&api, FINALIZER, runtime, |event| async {
        match event {
            Finalizer::Apply(runtime) => apply(&runtime, &ctx).await,
            Finalizer::Cleanup(runtime) => cleanup(&runtime, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe_reconcile(
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    result
}

fn error_policy(runtime: Arc<ClassRuntime>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(class_runtime = %runtime.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn apply(runtime: &ClassRuntime, ctx: &Context) -> Result<Action, Error> {
    let name = runtime.name_any();
    let ns = runtime.namespace().unwrap_or_default();
    let status = runtime.status.clone().unwrap_or_default();
    let spec_changed = status.observed_generation != runtime.metadata.generation;
    if spec_changed && status.phase.is_some() {
        write_status(
            ctx,
            runtime,
            &ClassRuntimeStatus {
                phase: Some(Phase::Applying),
                ..status.clone()
            },
        )
        .await?;
    }

    let knative_installed = ctx.knative_installed().await;
    let nfr = nfr::status_for(runtime, ctx.nfr.get(&nfr::key_of(runtime)));
    let enforced = nfr::enforced_replicas(&nfr.applied);
    let rendered = render::render(runtime, &ctx.render_context(knative_installed, &enforced));
    let apply_error = apply_children(ctx, &ns, &rendered).await;
    delete_orphans(ctx, &ns, &name, &rendered, knative_installed).await?;

    let mut observed = observe(ctx, &ns, &rendered, knative_installed).await?;
    observed.apply_error = apply_error;
    let outcome = state::derive(&rendered, &observed);
    let now = Time(Timestamp::now());
    let mut desired_conditions = outcome.conditions.clone();
    let existing_conditions: Vec<_> = match nfr.condition {
        ConditionChange::Set(observed) => {
            desired_conditions.push(observed);
            status.conditions.clone()
        }
        ConditionChange::Remove => status
            .conditions
            .iter()
            .filter(|c| c.type_ != nfr::NFR_OBSERVED)
            .cloned()
            .collect(),
        ConditionChange::Keep => status.conditions.clone(),
    };
    let new_status = ClassRuntimeStatus {
        observed_generation: runtime.metadata.generation,
        phase: Some(outcome.phase),
        conditions: conditions::merge(
            &existing_conditions,
            &desired_conditions,
            runtime.metadata.generation,
            &now,
        ),
        message: Some(outcome.message.clone()),
        template: Some(rendered.template),
        functions_ready: Some(format!(
            "{}/{}",
            outcome.functions.iter().filter(|f| f.ready).count(),
            outcome.functions.len()
        )),
        functions: outcome.functions,
        resources: rendered
            .children
            .iter()
            .map(|c| ResourceRef {
                api_version: c.kind.api_resource().api_version,
                kind: c.kind.api_resource().kind,
                name: c.name.clone(),
            })
            .collect(),
        nfr_recommendations: nfr.recommendations,
        last_applied_recommendations: nfr.applied,
    };
    if new_status != status {
        write_status(ctx, runtime, &new_status).await?;
    }

    if spec_changed && observed.apply_error.is_none() {
        let note = format!(
            "applied {} objects with the {} template",
            rendered.children.len(),
            rendered.template.as_str()
        );
        publish_event(&ctx.recorder, runtime, EventType::Normal, "Applied", note).await;
    }
    if outcome.phase == Phase::Degraded && status.phase != Some(Phase::Degraded) {
        publish_event(
            &ctx.recorder,
            runtime,
            EventType::Warning,
            "Degraded",
            outcome.message,
        )
        .await;
    }
    Ok(match outcome.phase {
        Phase::Available => Action::requeue(Duration::from_secs(300)),
        _ => Action::requeue(ctx.config.progress_requeue),
    })
}

async fn write_status(
    ctx: &Context,
    runtime: &ClassRuntime,
    status: &ClassRuntimeStatus,
) -> Result<(), Error> {
    let api = Api::<ClassRuntime>::namespaced(
        ctx.client.clone(),
        &runtime.namespace().unwrap_or_default(),
    );
    let patch = json!({"apiVersion": "oaas.io/v1alpha1", "kind": "ClassRuntime", "status": status});
    api.patch_status(
        &runtime.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Applies every child; returns the first failure as text for status instead of failing the
/// reconcile, so one bad child is reported while the others still converge.
async fn apply_children(ctx: &Context, ns: &str, rendered: &Rendered) -> Option<String> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut first_error = None;
    for child in &rendered.children {
        let key = ChildKey {
            kind: child.kind,
            namespace: ns.to_string(),
            name: child.name.clone(),
        };
        let hash = applied::hash_of(child);
        if ctx
            .applied
            .is_current(&key, hash, live_version(ctx, &key).as_deref())
        {
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &child.kind.api_resource());
        match api
            .patch(&child.name, &params, &Patch::Apply(&child.object))
            .await
        {
            Ok(applied) => ctx
                .applied
                .record(key, hash, applied::version_of(&applied.metadata)),
            Err(e) => {
                warn!(child = %child.name, kind = ?child.kind, error = %e, "apply failed");
                first_error.get_or_insert_with(|| format!("{:?} {}: {e}", child.kind, child.name));
            }
        }
    }
    first_error
}

/// The live child's version from the caches; Knative Services have no cache and are always
/// applied.
fn live_version(ctx: &Context, key: &ChildKey) -> Option<String> {
    fn from<K: Resource<DynamicType = ()> + Clone>(
        store: &Store<K>,
        key: &ChildKey,
    ) -> Option<String> {
        let object = store.get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))?;
        applied::version_of(object.meta())
    }
    match key.kind {
        ChildKind::Deployment => from(&ctx.children.deployments, key),
        ChildKind::Service => from(&ctx.children.services, key),
        ChildKind::HorizontalPodAutoscaler => from(&ctx.children.autoscalers, key),
        ChildKind::KnativeService => None,
    }
}

/// Deletes labelled children of this runtime that the current render did not produce.
async fn delete_orphans(
    ctx: &Context,
    ns: &str,
    name: &str,
    rendered: &Rendered,
    knative_installed: bool,
) -> Result<(), Error> {
    for kind in ChildKind::ALL {
        if kind == ChildKind::KnativeService && !knative_installed {
            continue;
        }
        for existing in existing_children(ctx, ns, name, kind).await? {
            let wanted = rendered
                .children
                .iter()
                .any(|c| c.kind == kind && c.name == existing);
            if !wanted {
                info!(child = %existing, ?kind, "deleting orphaned child");
                delete_child(ctx, ns, kind, &existing).await?;
            }
        }
    }
    Ok(())
}

/// Names of the children of a kind that belong to runtime `name`, from the caches (or the
/// API for Knative Services, which are rare enough not to need a cache).
async fn existing_children(
    ctx: &Context,
    ns: &str,
    name: &str,
    kind: ChildKind,
) -> Result<Vec<String>, Error> {
    fn owned<K: Resource>(items: Vec<Arc<K>>, ns: &str, name: &str) -> Vec<String> {
        items
            .iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns))
            .filter(|o| {
                o.meta()
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_INSTANCE))
                    .map(String::as_str)
                    == Some(name)
            })
            .filter_map(|o| o.meta().name.clone())
            .collect()
    }
    Ok(match kind {
        ChildKind::Deployment => owned(ctx.children.deployments.state(), ns, name),
        ChildKind::Service => owned(ctx.children.services.state(), ns, name),
        ChildKind::HorizontalPodAutoscaler => owned(ctx.children.autoscalers.state(), ns, name),
        ChildKind::KnativeService => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), ns, &kind.api_resource());
            let selector = format!("{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}");
            api.list(&ListParams::default().labels(&selector))
                .await?
                .items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect()
        }
    })
}

async fn delete_child(ctx: &Context, ns: &str, kind: ChildKind, name: &str) -> Result<(), Error> {
    ctx.applied.forget(&ChildKey {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
    });
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &kind.api_resource());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads the state of every workload the render asked for.
async fn observe(
    ctx: &Context,
    ns: &str,
    rendered: &Rendered,
    knative_installed: bool,
) -> Result<Observation, Error> {
    let mut observation = Observation::default();
    let deployments = rendered
        .functions
        .iter()
        .filter(|f| f.kind == ChildKind::Deployment)
        .map(|f| f.workload.clone())
        .chain(rendered.odgm.iter().map(|o| o.deployment.clone()));
    for name in deployments {
        let key = reflector::ObjectRef::<Deployment>::new(&name).within(ns);
        if let Some(deployment) = ctx.children.deployments.get(&key) {
            let mut workload = deployment_workload(&deployment);
            let settling = age(&deployment) < POD_CHECK_AFTER;
            if (!workload.rolled_out || workload.ready < workload.desired) && !settling {
                workload.failure = workload
                    .failure
                    .or(pod_failure(ctx, ns, &deployment).await?);
            }
            observation.workloads.insert(name, workload);
        }
    }
    let knative_functions = rendered
        .functions
        .iter()
        .filter(|f| f.kind == ChildKind::KnativeService);
    for f in knative_functions.filter(|_| knative_installed) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            ns,
            &ChildKind::KnativeService.api_resource(),
        );
        if let Some(service) = api.get_opt(&f.workload).await? {
            observation.workloads.insert(
                f.workload.clone(),
                knative_workload(&service, f.desired_replicas),
            );
        }
    }
    Ok(observation)
}

/// Pods of a new Deployment need a moment to be scheduled and started; looking at them
/// sooner costs a Pod list per reconcile and finds nothing.
const POD_CHECK_AFTER: Duration = Duration::from_secs(5);

fn age(d: &Deployment) -> Duration {
    d.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or_default()
}

fn deployment_workload(d: &Deployment) -> Workload {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as u32;
    let status = d.status.clone().unwrap_or_default();
    let observed_latest = status.observed_generation >= d.metadata.generation;
    let updated = status.updated_replicas.unwrap_or(0).max(0) as u32;
    let total = status.replicas.unwrap_or(0).max(0) as u32;
    let failure = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| {
            let stuck = c.type_ == "Progressing" && c.status == "False";
            let replica_failure = c.type_ == "ReplicaFailure" && c.status == "True";
            (stuck || replica_failure).then(|| {
                (
                    c.reason.unwrap_or_else(|| c.type_.clone()),
                    c.message.unwrap_or_default(),
                )
            })
        });
    Workload {
        desired,
        ready: status.available_replicas.unwrap_or(0).max(0) as u32,
        rolled_out: observed_latest && updated >= desired && total == updated,
        failure,
    }
}

/// Pod-level reasons a Deployment cannot become ready, found without waiting for its
/// progress deadline: unschedulable Pods and containers that cannot start.
async fn pod_failure(
    ctx: &Context,
    ns: &str,
    deployment: &Deployment,
) -> Result<Option<(String, String)>, Error> {
    let Some(labels) = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
    else {
        return Ok(None);
    };
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&selector.join(",")))
        .await?;
    const STUCK: [&str; 6] = [
        "ErrImagePull",
        "ImagePullBackOff",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "InvalidImageName",
        "CreateContainerError",
    ];
    for pod in pods.items {
        let status = pod.status.unwrap_or_default();
        for c in status.conditions.unwrap_or_default() {
            if c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
            {
                return Ok(Some((
                    "Unschedulable".into(),
                    c.message.unwrap_or_default(),
                )));
            }
        }
        for cs in status.container_statuses.unwrap_or_default() {
            if let Some(waiting) = cs.state.and_then(|s| s.waiting)
                && let Some(reason) = waiting.reason.filter(|r| STUCK.contains(&r.as_str()))
            {
                return Ok(Some((reason, waiting.message.unwrap_or_default())));
            }
        }
    }
    Ok(None)
}

fn knative_workload(service: &DynamicObject, desired: u32) -> Workload {
    let conditions = service.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    let is_ready = ready.is_some_and(|c| c["status"] == "True");
    let failed = ready.filter(|c| c["status"] == "False").map(|c| {
        (
            c["reason"].as_str().unwrap_or("NotReady").to_string(),
            c["message"].as_str().unwrap_or_default().to_string(),
        )
    });
    Workload {
        desired,
        ready: if is_ready { desired } else { 0 },
        rolled_out: is_ready,
        failure: failed,
    }
}

/// Deletes every child, then lets the finalizer go once none is left.
async fn cleanup(runtime: &ClassRuntime, ctx: &Context) -> Result<Action, Error> {
    let name = runtime.name_any();
    let ns = runtime.namespace().unwrap_or_default();
    let knative_installed = ctx.knative_installed().await;
    let selector = format!("{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}");
    let kinds: Vec<ChildKind> = ChildKind::ALL
        .into_iter()
        .filter(|k| *k != ChildKind::KnativeService || knative_installed)
        .collect();
    for kind in &kinds {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &kind.api_resource());
        for child in api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            if child.metadata.deletion_timestamp.is_none() {
                delete_child(ctx, &ns, *kind, &child.name_any()).await?;
            }
        }
    }
    let mut remaining = 0;
    for kind in &kinds {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &kind.api_resource());
        remaining += api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .len();
    }
    if remaining > 0 {
        return Err(Error::ChildrenRemain(name));
    }
    publish_event(
        &ctx.recorder,
        runtime,
        EventType::Normal,
        "Deleted",
        format!("removed every child of {name}"),
    )
    .await;
    Ok(Action::await_change())
}
