//! oaas-pm: the package manager on the hub. Runs the OCluster, OPackage and
//! OClassDeployment controllers and serves the REST facade (/api/v1), /healthz, /readyz and
//! /metrics. `oaas-pm convert <file>` turns OaaS package files into manifests offline.
#![forbid(unsafe_code)]

mod bootstrap;
mod breaker;
mod cluster_controller;
mod config;
mod convert;
mod deployment_controller;
mod document;
mod error;
mod insecure_tls;
mod metrics;
mod package_controller;
mod registry;
mod rest;
mod scope;
mod spoke_client;
mod triggers;

use std::sync::Arc;

use anyhow::Context as _;
use kube::Api;
use kube::runtime::watcher;
use oaas_crds::{OClassDeployment, OCluster, OPackage};
use tracing::info;

use oaas_core::wire::PM_FIELD_MANAGER;
use oaas_operator_common::leader;
use oaas_operator_common::status::StatusWriter;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::scope::Scope;

pub use error::Error;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "convert") {
        return convert::run(&args[1..]);
    }
    let config = Config::from_env()?;
    runtime(config.workers)?.block_on(run(config))
}

/// The multi-threaded runtime, with `SERVER_WORKERS` worker threads when set.
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.build().context("starting the async runtime")
}

async fn run(config: Config) -> anyhow::Result<()> {
    oaas_operator_common::init_tracing(config.json_logs);
    if let Some(workers) = config.workers {
        info!(workers, "runtime worker threads (SERVER_WORKERS)");
    }
    let client = oaas_operator_common::kube_client().await?;
    bootstrap::apply(&client, &config.namespace, &config.clusters).await?;

    let metrics = Arc::new(Metrics::default());
    let scope = Scope {
        namespace: config.watch_namespace.clone(),
        cluster_selector: config.cluster_selector.clone(),
    };
    let packages = triggers::cache(scope.api::<OPackage>(&client), watcher::Config::default());
    let clusters = triggers::cache(Api::<OCluster>::all(client.clone()), scope.clusters());
    let hub = hub_name(&client, config.hub_name.clone()).await?;
    info!(%hub, "this hub's name in the spokes");
    let (registry, changed) = registry::Registry::new(hub);

    // The class deployment cache serves REST on every replica; only the leader's
    // controllers use the change stream.
    let deployment_store = triggers::cache(
        scope.api::<OClassDeployment>(&client),
        watcher::Config::default(),
    );
    // Controllers and REST read these caches: nothing reconciles or answers from them until
    // they are filled (a package not yet cached would look missing).
    let synced = oaas_operator_common::Synced::after({
        let (packages, deployments, clusters) =
            (packages.clone(), deployment_store.clone(), clusters.clone());
        async move {
            tokio::try_join!(
                packages.wait_until_ready(),
                deployments.wait_until_ready(),
                clusters.wait_until_ready(),
            )
            .is_ok()
        }
    });
    let caches = rest::Caches {
        packages: packages.clone(),
        deployments: deployment_store.clone(),
        clusters: clusters.clone(),
        synced: synced.clone(),
    };
    let spokes = spoke_client::SpokeClient::new(registry.clone(), metrics.clone());
    let rest = rest::Rest::new(
        client.clone(),
        caches,
        spokes.clone(),
        metrics.clone(),
        config.rest.clone(),
    );
    rest.set_standby(config.leader.is_some());

    let controllers = leader::lead(client.clone(), config.leader.clone(), {
        let (client, rest) = (client.clone(), rest.clone());
        move || async move {
            synced.wait().await;
            rest.set_standby(false);
            let cluster_ctx = cluster_controller::Context {
                client: client.clone(),
                scope: scope.clone(),
                registry: registry.clone(),
                spokes,
                metrics: metrics.clone(),
                status: StatusWriter::new(PM_FIELD_MANAGER),
                report_interval: config.health_report_interval,
            };
            tokio::spawn(cluster_controller::run(Arc::new(cluster_ctx)));
            let package_ctx = package_controller::Context {
                client: client.clone(),
                scope: scope.clone(),
                packages: packages.clone(),
                deployments: deployment_store,
                metrics: metrics.clone(),
                status: StatusWriter::new(PM_FIELD_MANAGER),
            };
            let deployment_changes = triggers::generation_changes(
                scope.api::<OClassDeployment>(&client),
                watcher::Config::default(),
            );
            tokio::spawn(package_controller::run(
                Arc::new(package_ctx),
                deployment_changes,
            ));
            let deployment_ctx = deployment_controller::Context::new(
                client, scope, registry, packages, clusters, metrics,
            );
            deployment_controller::run(Arc::new(deployment_ctx), changed).await
        }
    });

    let app = rest::router(rest);
    let address = format!("{}:{}", config.server_host, config.server_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("listening on {address} (SERVER_HOST/SERVER_PORT)"))?;
    info!(%address, "oaas-pm serving HTTP");
    tokio::select! {
        served = axum::serve(listener, app).with_graceful_shutdown(oaas_operator_common::shutdown_signal()) => {
            served.context("serving HTTP")?
        }
        result = controllers => {
            result?;
            info!("controllers stopped");
        }
    }
    if let Some(settings) = &config.leader {
        leader::Elector::release(client, settings).await;
    }
    Ok(())
}

/// This hub's name: configured, or the uid of its kube-system namespace (unique per
/// cluster and stable for the cluster's life).
async fn hub_name(client: &kube::Client, configured: Option<String>) -> anyhow::Result<String> {
    if let Some(name) = configured {
        return Ok(name);
    }
    let namespace = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get("kube-system")
        .await
        .context(
            "reading the kube-system namespace's uid as this hub's name (or set OAAS_PM_HUB_NAME)",
        )?;
    namespace
        .metadata
        .uid
        .context("the kube-system namespace has no uid; set OAAS_PM_HUB_NAME")
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_workers_sets_the_runtime_worker_threads() {
        let runtime = super::runtime(Some(3)).unwrap();
        assert_eq!(runtime.metrics().num_workers(), 3);
        assert!(super::runtime(None).unwrap().metrics().num_workers() >= 1);
    }
}
