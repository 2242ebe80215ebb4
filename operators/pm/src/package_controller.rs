//! The OPackage controller: checks what the schema cannot (dependencies exist, no cycles,
//! qualified bindings resolve) and reports it in `Ready`. Deleting a package that class
//! deployments still use waits: the finalizer holds, and `Ready` says InUse and names them.
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use oaas_crds::conditions::{self, Desired, READY};
use oaas_crds::package::OPackageStatus;
use oaas_crds::{OClassDeployment, OPackage};
use serde_json::json;
use tracing::instrument;

use crate::Error;
use crate::metrics::Metrics;
use crate::resolve::check_package;
use crate::scope::Scope;
use crate::triggers::spec_changes;

pub const FINALIZER: &str = "oaas.io/package-in-use";
const FIELD_MANAGER: &str = "oaas-pm";

pub struct Context {
    pub client: Client,
    pub scope: Scope,
    pub packages: Store<OPackage>,
    /// Who uses which package.
    pub deployments: Store<OClassDeployment>,
    pub metrics: Arc<Metrics>,
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
    let started = Instant::now();
    let result = finalizer(&api, FINALIZER, package, |event| async {
        match event {
            Finalizer::Apply(p) => check(&p, &ctx).await,
            Finalizer::Cleanup(p) => release(&p, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .observe_reconcile("opackage", started.elapsed(), result.is_err());
    result
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
    let previous = package.status.clone().unwrap_or_default();
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
        return Ok(Action::await_change());
    }
    let previous = package.status.clone().unwrap_or_default();
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
    if &status == previous {
        return Ok(());
    }
    let patch = json!({"apiVersion": "oaas.io/v1alpha1", "kind": "OPackage", "status": status});
    Api::<OPackage>::namespaced(ctx.client.clone(), &package.namespace().unwrap_or_default())
        .patch_status(
            &package.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}
