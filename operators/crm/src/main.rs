//! oaas-crm: the class runtime manager of a spoke cluster. One process serves gRPC
//! (DeploymentService, CrmInfoService, grpc.health.v1) and HTTP (/healthz, /readyz, /metrics)
//! on one port, and runs the ClassRuntime controller.
#![forbid(unsafe_code)]

mod applied;
mod config;
mod controller;
mod grpc;
mod metrics;
mod namespaces;
mod nfr;
mod nodes;
mod render;
mod retire;
mod state;
mod template;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;
use oaas_crds::ClassRuntime;
use oaas_proto::crm::crm_info_service_server::CrmInfoServiceServer;
use oaas_proto::deployment::deployment_service_server::DeploymentServiceServer;
use tonic::service::interceptor::InterceptedService;
use tracing::info;

use crate::config::Config;
use crate::metrics::Metrics;

/// mimalloc rather than glibc's malloc: the CRM holds many small cached objects, and the
/// reconciles on every worker thread churn short-lived ones between them; glibc keeps the
/// freed pages of each thread's arena resident. With 10,000 ClassRuntimes: 101–103 MiB
/// resident with glibc (`MALLOC_ARENA_MAX=2` too), 88.8 MiB with mimalloc 2 (the `v2`
/// feature; mimalloc 3 did worse). docs/benchmarks.md, eighth part.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    ready: oaas_operator_common::Synced,
    runtimes: Store<ClassRuntime>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    oaas_operator_common::init_tracing(config.json_logs);
    let client = oaas_operator_common::kube_client().await?;
    // Reachable with these credentials, or a clear error now rather than failed calls later.
    client
        .apiserver_version()
        .await
        .context("asking the Kubernetes API server for its version")?;
    let metrics = Arc::new(Metrics::default());

    let (runtimes, watch) = grpc::Runtimes::start(&client, &config.namespace);
    tokio::spawn(watch);
    let runtime_cache = runtimes.store.clone();
    let ready = runtimes.synced.clone();
    let controllers = oaas_operator_common::leader::lead(client.clone(), config.leader.clone(), {
        let (client, config, metrics) = (client.clone(), config.clone(), metrics.clone());
        let runtimes = runtimes.clone();
        move || controller::run(client, config, metrics, runtimes.clone())
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DeploymentServiceServer<grpc::DeploymentApi>>()
        .await;
    let deployment = grpc::DeploymentApi::new(
        client.clone(),
        namespaces::Namespaces::new(client.clone(), config.namespace.clone()),
        runtimes,
        metrics.clone(),
    );
    let info_api = grpc::InfoApi::new(client.clone(), config.clone(), nodes::watch(&client));
    let http = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(state): State<HttpState>| async move {
                let depth = oaas_operator_common::work_queue_depth(state.runtimes.state(), |r| {
                    r.status.as_ref().and_then(|s| s.observed_generation)
                });
                state.metrics.set_work_queue_depth(depth);
                oaas_operator_common::metrics_response(state.metrics.encode())
            }),
        )
        .with_state(HttpState {
            metrics,
            ready,
            runtimes: runtime_cache,
        });
    let auth = transport::BearerCheck::from_file(config.token_file.as_deref())
        .context("OPRC_CRM_AUTH_TOKEN_FILE")?;
    let routes = tonic::service::Routes::new(InterceptedService::new(health_service, auth.clone()))
        .add_service(InterceptedService::new(
            DeploymentServiceServer::new(deployment)
                .max_decoding_message_size(config.grpc_max_message_bytes),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            CrmInfoServiceServer::new(info_api)
                .max_decoding_message_size(config.grpc_max_message_bytes),
            auth,
        ))
        .into_axum_router()
        .merge(http.clone());

    let addr: SocketAddr = format!("{}:{}", config.bind_address, config.http_port)
        .parse()
        .with_context(|| {
            format!(
                "OPRC_CRM_BIND_ADDRESS/HTTP_PORT do not form an address: {}",
                config.bind_address
            )
        })?;
    let transport = match &config.transport {
        transport::Transport::Plaintext => "plaintext",
        transport::Transport::Tls {
            client_ca: None, ..
        } => "TLS",
        transport::Transport::Tls { .. } => "mutual TLS",
    };
    // Bound here rather than by tonic, whose error names neither the address nor the cause.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} (OPRC_CRM_BIND_ADDRESS/HTTP_PORT)"))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // Every port is bound before "serving" is logged: a port that turns out to be taken
    // then fails the start, rather than a CRM that said it serves exiting a moment later.
    if let Some(port) = config.ops_port {
        let listener = tokio::net::TcpListener::bind((config.bind_address.as_str(), port))
            .await
            .with_context(|| format!("binding OPRC_CRM_OPS_PORT {port}"))?;
        info!(port, "serving /healthz, /readyz and /metrics in plaintext");
        tokio::spawn(async move { axum::serve(listener, http).await });
    }
    info!(%addr, transport, namespace = %config.namespace, profile = ?config.render.profile, "oaas-crm serving gRPC and HTTP");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = config
        .transport
        .server_tls()
        .context("OPRC_CRM_TLS_* files")?
    {
        server = server
            .tls_config(tls)
            .context("OPRC_CRM_TLS_* files do not hold a usable certificate and key")?;
    }
    let server = server
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(routes))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served.context("serving gRPC/HTTP")?,
        led = controllers => {
            led?;
        }
        () = oaas_operator_common::shutdown_signal() => {
            // Stop accepting; give in-flight calls a moment, but do not wait for clients that
            // hold connections or status watches open: they reconnect to another replica.
            let _ = stop.send(());
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
        }
    }
    if let Some(settings) = &config.leader {
        oaas_operator_common::leader::Elector::release(client, settings).await;
    }
    Ok(())
}

/// How long in-flight requests may finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.now() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "ClassRuntime cache not synced yet",
        )
    }
}
