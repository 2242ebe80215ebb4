//! The Kubernetes client both operators use: kube's own HTTP stack (TLS, timeouts, retries
//! of server errors, credentials, impersonation headers), with a bounded connection pool.
//!
//! kube builds its hyper client with no pool timer and no idle limit, so every connection a
//! burst of requests opens stays open for good: a CRM that deployed 2,000 runtimes, 64
//! reconciles at once, held 192 TLS connections to its API server (~40 KiB of buffers each,
//! and as many on the server's side, times every CRM sharing it). Here at most
//! [`IDLE_CONNECTIONS`] wait idle, each for at most [`IDLE_TIMEOUT`]; a burst still opens
//! what it needs. Left out of kube's stack: its per-request `HTTP` debug spans (our callers
//! log the failures they handle) and the expiry it records for exec-plugin client
//! certificates (`Client::valid_until`, for the caller to check; neither operator does).
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{ClientBuilder, ConfigExt};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// Idle connections kept for the next requests.
pub const IDLE_CONNECTIONS: usize = 8;
/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// In-cluster or kubeconfig credentials; `KUBE_CONTEXT` picks a kubeconfig context, which
/// lets one machine run an operator per local cluster.
pub async fn kube_client() -> anyhow::Result<kube::Client> {
    let config = match std::env::var("KUBE_CONTEXT").ok().filter(|c| !c.is_empty()) {
        Some(context) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("loading kube context {context} (KUBE_CONTEXT)"))?
        }
        None => kube::Config::infer()
            .await
            .context("finding Kubernetes credentials")?,
    };
    client_for(config).context("connecting to the Kubernetes API")
}

/// The client for `config`. A proxy (`proxy-url` in a kubeconfig) is refused, as kube
/// refuses it when built without its proxy features, as ours is.
fn client_for(config: kube::Config) -> anyhow::Result<kube::Client> {
    if let Some(proxy) = &config.proxy_url {
        anyhow::bail!("proxy-url {proxy} is not supported; reach the API server directly");
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut connector =
        hyper_timeout::TimeoutConnector::new(config.rustls_https_connector_with_connector(http)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(IDLE_CONNECTIONS)
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(pool);
    Ok(ClientBuilder::new(service, config.default_namespace).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_refused_with_what_to_do() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        config.proxy_url = Some("http://proxy:3128".parse().unwrap());
        let Err(error) = client_for(config) else {
            panic!("a proxy was accepted");
        };
        let error = error.to_string();
        assert!(
            error.contains("proxy-url http://proxy:3128/ is not supported"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_client_without_a_proxy_is_built() {
        let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        assert!(client_for(config).is_ok());
    }
}
