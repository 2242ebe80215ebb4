//! The OPackage controller: checks what the schema cannot (dependencies exist, no cycles,
//! qualified bindings resolve) and reports it in `Ready`. Deleting a package that class
//! deployments still use waits: the finalizer holds, and `Ready` says InUse and names them.
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use oaas_core::wire::PACKAGE_IN_USE_FINALIZER;
use oaas_crds::conditions::{self, Desired, READY};
use oaas_crds::package::OPackageStatus;
use oaas_crds::{OClassDeployment, OPackage};
use oaas_operator_common::status::StatusWriter;
use tracing::instrument;

use crate::Error;
use crate::error::with_finalizer;
use crate::metrics::Metrics;
use crate::scope::Scope;
use crate::triggers::spec_changes;
use oaas_core::resolve::check_package;

pub struct Context {
    pub client: Client,
    pub scope: Scope,
    pub packages: Store<OPackage>,
    /// Who uses which package.
    pub deployments: Store<OClassDeployment>,
    pub metrics: Arc<Metrics>,
    pub status: StatusWriter<OPackageStatus>,
}

/// `deployment_changes` yields class deployments whose spec changed (they may have started
/// or stopped using a package); their status changes do not concern packages.
pub async fn run(
    ctx: Arc<Context>,
    deployment_changes: impl futures::Stream<Item = Result<OClassDeployment, watcher::Error>>
    + Send
    + 'static,
) {
    let (store, changes) = spec_changes(
        ctx.scope.api::<OPackage>(&ctx.client),
        watcher::Config::default(),
    );
    Controller::for_stream(changes, store)
        // Who uses a package changes with class deployments.
        .watches_stream(deployment_changes, |cd| {
            Some(
                ObjectRef::<OPackage>::new(&cd.spec.package)
                    .within(&cd.namespace().unwrap_or_default()),
            )
        })
        .shutdown_on_signal()
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_secs(5)),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[instrument(skip_all, fields(package = %package.name_any()))]
async fn reconcile(package: Arc<OPackage>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api =
        Api::<OPackage>::namespaced(ctx.client.clone(), &package.namespace().unwrap_or_default());
    let metrics = &ctx.metrics;
    with_finalizer(
        &api,
        PACKAGE_IN_USE_FINALIZER,
        package,
        metrics,
        "opackage",
        |event| async {
            match event {
                Finalizer::Apply(p) => check(&p, &ctx).await,
                Finalizer::Cleanup(p) => release(&p, &ctx).await,
            }
        },
    )
    .await
}

/// Class deployments in the package's namespace that name it, as namespace/name.
fn users(ctx: &Context, package: &OPackage) -> Vec<String> {
    let namespace = package.namespace();
    let mut users: Vec<String> = ctx
        .deployments
        .state()
        .iter()
        .filter(|cd| cd.namespace() == namespace && cd.spec.package == package.name_any())
        .map(|cd| format!("{}/{}", cd.namespace().unwrap_or_default(), cd.name_any()))
        .collect();
    users.sort();
    users
}

async fn check(package: &OPackage, ctx: &Context) -> Result<Action, Error> {
    let namespace = package.namespace().unwrap_or_default();
    let lookup = |name: &str| {
        ctx.packages
            .get(&ObjectRef::new(name).within(&namespace))
            .map(|p| (*p).clone())
    };
    let previous = ctx.status.current(package, package.status.as_ref());
    let (ready, resolved) = match check_package(package, &lookup) {
        Ok(dependencies) => (
            Desired::new(READY, true, "Valid", "dependencies and bindings resolve"),
            dependencies,
        ),
        Err(problem) => (
            Desired::new(READY, false, problem.reason, problem.message),
            Vec::new(),
        ),
    };
    let status = OPackageStatus {
        class_count: Some(package.spec.classes.len() as u32),
        function_count: Some(package.spec.functions.len() as u32),
        resolved_dependencies: resolved,
        used_by: users(ctx, package),
        ..previous.clone()
    };
    write_status(ctx, package, &previous, status, ready).await?;
    // Dependencies may appear or change at any time; look again now and then.
    Ok(Action::requeue(Duration::from_secs(30)))
}

async fn release(package: &OPackage, ctx: &Context) -> Result<Action, Error> {
    let users = users(ctx, package);
    if users.is_empty() {
        ctx.status.forget(package);
        return Ok(Action::await_change());
    }
    let previous = ctx.status.current(package, package.status.as_ref());
    let message = format!(
        "deletion waits until these class deployments are gone: {}",
        users.join(", ")
    );
    let status = OPackageStatus {
        used_by: users.clone(),
        ..previous.clone()
    };
    write_status(
        ctx,
        package,
        &previous,
        status,
        Desired::new(READY, false, "InUse", message),
    )
    .await?;
    Err(Error::InUse(users.join(", ")))
}

async fn write_status(
    ctx: &Context,
    package: &OPackage,
    previous: &OPackageStatus,
    mut status: OPackageStatus,
    ready: Desired,
) -> Result<(), Error> {
    let now = Time(Timestamp::now());
    status.observed_generation = package.metadata.generation;
    status.conditions = conditions::merge(
        &previous.conditions,
        &[ready],
        package.metadata.generation,
        &now,
    );
    let api = Api::namespaced(ctx.client.clone(), &package.namespace().unwrap_or_default());
    ctx.status.write(&api, package, previous, status).await?;
    Ok(())
}
