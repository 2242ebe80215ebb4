//! oaas-pm: the package manager on the hub. Runs the OCluster, OPackage and
//! OClassDeployment controllers and serves /healthz, /readyz and /metrics.
#![forbid(unsafe_code)]

mod bootstrap;
mod breaker;
mod cluster_controller;
mod config;
mod deployment_controller;
mod metrics;
mod package_controller;
mod planning;
mod registry;
mod resolve;
mod scope;
mod triggers;

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::routing::get;
use kube::Api;
use kube::runtime::watcher;
use oaas_crds::{OClassDeployment, OCluster, OPackage};
use tracing::info;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::scope::Scope;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("spokes did not answer: {0}")]
    Spokes(String),
    #[error("still used by {0}")]
    InUse(String),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    oaas_operator_common::init_tracing(config.json_logs);
    let client = oaas_operator_common::kube_client().await?;
    bootstrap::apply(&client, &config.namespace, &config.clusters).await?;

    let metrics = Arc::new(Metrics::default());
    let scope = Scope {
        namespace: config.watch_namespace.clone(),
        cluster_selector: config.cluster_selector.clone(),
    };
    let packages = triggers::cache(scope.api::<OPackage>(&client), watcher::Config::default());
    let clusters = triggers::cache(Api::<OCluster>::all(client.clone()), scope.clusters());
    let (registry, changed) = registry::Registry::new();

    let cluster_ctx = cluster_controller::Context {
        client: client.clone(),
        scope: scope.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(cluster_controller::run(Arc::new(cluster_ctx)));
    let (deployments, deployment_changes) = triggers::spec_changes(
        scope.api::<OClassDeployment>(&client),
        watcher::Config::default(),
    );
    let package_ctx = package_controller::Context {
        client: client.clone(),
        scope: scope.clone(),
        packages: packages.clone(),
        deployments,
        metrics: metrics.clone(),
    };
    tokio::spawn(package_controller::run(
        Arc::new(package_ctx),
        deployment_changes,
    ));
    let deployment_ctx = deployment_controller::Context::new(
        client.clone(),
        scope,
        registry,
        packages,
        clusters,
        metrics.clone(),
    );
    let deployments = tokio::spawn(deployment_controller::run(
        Arc::new(deployment_ctx),
        changed,
    ));

    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                oaas_operator_common::metrics_response(metrics.encode())
            }),
        )
        .with_state(metrics);
    let address = format!("{}:{}", config.server_host, config.server_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("listening on {address} (SERVER_HOST/SERVER_PORT)"))?;
    info!(%address, "oaas-pm serving HTTP");
    tokio::select! {
        served = axum::serve(listener, app).with_graceful_shutdown(oaas_operator_common::shutdown_signal()) => {
            served.context("serving HTTP")?
        }
        _ = deployments => info!("controllers stopped"),
    }
    Ok(())
}
