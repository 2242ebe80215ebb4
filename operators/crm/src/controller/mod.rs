//! The ClassRuntime controller: read → render (pure) → server-side apply → delete orphaned
//! children → observe → status. Level-triggered: every pass recomputes everything from the
//! resource and the cluster, so a missed event or a restart loses nothing.
//!
//! This module wires the controller up (watches, finalizer, metrics); [`pipeline`] is one
//! pass in order; [`children`] is everything done to the child objects (apply, orphans,
//! observe, cleanup) behind one handle.
mod children;
mod knative;
mod pipeline;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use oaas_crds::ClassRuntime;
use oaas_crds::class_runtime::ClassRuntimeStatus;
use oaas_operator_common::reconcile::with_finalizer;
use oaas_operator_common::status::StatusWriter;
use tracing::{instrument, warn};

use crate::config::Config;
use crate::grpc::Runtimes;
use crate::metrics::Metrics;
use crate::namespaces::{self, Namespaces};
use crate::nfr;
use crate::render::{LABEL_MANAGED_BY, MANAGED_BY};

use children::{ChildStores, Children};

/// The ClassRuntime annotation carries the hub's correlation id of the last Deploy call.
pub use oaas_core::wire::CORRELATION_ANNOTATION;
use oaas_core::wire::{
    CLASS_RUNTIME_CLEANUP_FINALIZER as FINALIZER, CRM_FIELD_MANAGER as FIELD_MANAGER,
};

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

pub struct Context {
    pub client: Client,
    pub config: Config,
    /// The child objects: caches, applied hashes, and the calls that change them.
    children: Children,
    pub metrics: Arc<Metrics>,
    /// The NFR analyzer's latest reports.
    nfr: Arc<nfr::Board>,
    recorder: Recorder,
    /// The spoke namespaces: released when their last runtime goes.
    namespaces: Namespaces,
    /// This CRM's ClassRuntimes as the gRPC side's cache holds them.
    runtimes: Store<ClassRuntime>,
    knative: Arc<knative::KnativeServing>,
    status: StatusWriter<ClassRuntimeStatus>,
}

/// Runs the controller until the process is asked to stop, on the gRPC side's cache of this
/// CRM's runtimes.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>, runtimes: Runtimes) {
    // Runtimes and children in every namespace, but only this CRM's: several may share a
    // cluster (each with its own namespace, which is its identity).
    let crm = config.namespace.clone();
    let owned = namespaces::selector(&crm);
    let managed =
        watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY},{owned}"));
    let (child_stores, child_streams) = ChildStores::watch(&client, managed);
    let board = Arc::new(nfr::Board::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from("oaas-crm")),
        children: Children::new(client.clone(), child_stores),
        namespaces: Namespaces::new(client.clone(), crm),
        runtimes: runtimes.store.clone(),
        config,
        metrics,
        nfr: board.clone(),
        knative: knative::KnativeServing::detect(client.clone()).await,
        status: StatusWriter::new(FIELD_MANAGER),
    });
    let controller = Controller::for_stream(runtimes.applied(), runtimes.store.clone());
    // The analyzer reports on the board and wakes the runtime it reported on.
    let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
    if let Some(settings) = ctx.config.nfr.clone() {
        match nfr::provider::Prometheus::new(&settings.prometheus_url, settings.query_timeout) {
            Ok(prometheus) => {
                let analyzer = nfr::analyzer::Analyzer {
                    provider: Arc::new(prometheus),
                    settings,
                    render: ctx.config.render.clone(),
                    crm: ctx.namespaces.crm().to_string(),
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
        .owns_stream(child_streams.deployments)
        .owns_stream(child_streams.services)
        .owns_stream(child_streams.autoscalers)
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(woken))
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(ctx.config.max_concurrent_reconciles),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[instrument(skip_all, fields(class_runtime = %runtime.name_any(), correlation_id))]
async fn reconcile(runtime: Arc<ClassRuntime>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(id) = runtime.annotations().get(CORRELATION_ANNOTATION) {
        tracing::Span::current().record("correlation_id", id.as_str());
    }
    let api = Api::<ClassRuntime>::namespaced(
        ctx.client.clone(),
        &runtime.namespace().unwrap_or_default(),
    );
    with_finalizer(
        &api,
        FINALIZER,
        runtime,
        |e| Error::Finalizer(Box::new(e)),
        |took, error| {
            ctx.metrics
                .observe_reconcile(took, error.map(Error::metric_label))
        },
        |event| async {
            match event {
                Finalizer::Apply(runtime) => pipeline::apply(&runtime, &ctx).await,
                Finalizer::Cleanup(runtime) => pipeline::cleanup(&runtime, &ctx).await,
            }
        },
    )
    .await
}

fn error_policy(runtime: Arc<ClassRuntime>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(class_runtime = %runtime.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
