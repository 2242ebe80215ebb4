//! The Kubernetes client both operators use: kube's own HTTP stack (TLS, timeouts, retries
//! of server errors, credentials, impersonation headers), speaking HTTP/2 where the API
//! server offers it, with a bounded connection pool.
//!
//! kube speaks HTTP/1.1 only, so every request in flight holds a connection of its own: a
//! burst of 64 reconciles opens dozens of TLS connections (a handshake each, on both sides)
//! and 64 watches hold 64. Over HTTP/2, as client-go talks to API servers, all of them share
//! one connection; kube leaves HTTP/2 out for the sake of exec/attach/port-forward upgrades,
//! which these operators do not use. The connection is pinged while idle, so one that died
//! without a word (a silent network partition) fails its requests and watches within
//! [`KEEP_ALIVE`] + [`KEEP_ALIVE_TIMEOUT`] rather than at the watch's own timeout minutes later.
//!
//! kube also builds its hyper client with no pool timer and no idle limit, so every
//! connection a burst of HTTP/1.1 requests opens stays open for good (192 to the API server
//! in a CRM that had deployed 2,000 runtimes, ~40 KiB of buffers each, and as many on the
//! server's side). Here at most [`IDLE_CONNECTIONS`] wait idle, each for at most
//! [`IDLE_TIMEOUT`]. Left out of kube's stack: its per-request `HTTP` debug spans (our
//! callers log the failures they handle) and the expiry it records for exec-plugin client
//! certificates (`Client::valid_until`, for the caller to check; neither operator does).
use std::time::Duration;

use anyhow::Context as _;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{ClientBuilder, ConfigExt};
use rustls::pki_types::ServerName;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// Idle connections kept for the next requests.
pub const IDLE_CONNECTIONS: usize = 8;
/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long an HTTP/2 connection may be silent before it is pinged (client-go: 30 s)...
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// ...and how long the answer may take before the connection counts as dead (client-go: 15 s).
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(15);
/// What the server may send on the connection before we read it, all streams together (as
/// client-go's transport: 1 GiB). hyper's default, 5 MiB, is two or three streams' worth (2 MiB
/// each): watches whose readers fall behind for a moment would stall every other request on
/// the one connection, Lease renewals included. Nothing is held unless a reader lags.
const CONNECTION_WINDOW: u32 = 1 << 30;

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
    // HTTP/2 writes a request as several frames; with Nagle's algorithm on, a frame after the
    // first waits for the server's delayed ACK (40 ms on Linux) before it is sent.
    http.set_nodelay(true);
    let mut connector = hyper_timeout::TimeoutConnector::new(https_connector(&config, http)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(IDLE_CONNECTIONS)
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(KEEP_ALIVE)
        .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
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

/// TLS as kube sets it up (`ConfigExt::rustls_https_connector_with_connector`: the
/// kubeconfig's CA, client identity and `tls-server-name`), offering HTTP/2 as well as
/// HTTP/1.1 (ALPN).
fn https_connector(
    config: &kube::Config,
    http: HttpConnector,
) -> anyhow::Result<HttpsConnector<HttpConnector>> {
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .with_context(|| format!("tls-server-name {name:?} is not a valid name"))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_all_versions().wrap_connector(http))
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

    /// The hub's API server, as the kubeconfig (`KUBECONFIG`) names it, with the server name
    /// its certificate must carry set to `name`.
    async fn hub_config_naming(name: &str) -> kube::Config {
        let context = std::env::var("OAAS_HUB_CONTEXT").unwrap_or_else(|_| "oaas-hub".into());
        let options = kube::config::KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let mut config = kube::Config::from_kubeconfig(&options)
            .await
            .unwrap_or_else(|e| panic!("kube context {context} (run `just cluster-up`?): {e}"));
        config.tls_server_name = Some(name.into());
        config
    }

    /// `tls-server-name` is what the server's certificate is checked against, not the URL's
    /// host: the loopback API servers' certificate names `kubernetes` (hack/cluster.sh) but
    /// not `elsewhere.example`, and both are reached at https://127.0.0.1:<port>.
    #[tokio::test]
    #[ignore = "needs the local clusters (just cluster-up)"]
    async fn the_tls_server_name_is_the_name_the_certificate_must_carry() {
        let named = client_for(hub_config_naming("kubernetes").await).unwrap();
        let version = named.apiserver_version().await;
        assert!(
            version.is_ok(),
            "refused a name the certificate carries: {version:?}"
        );

        let unnamed = client_for(hub_config_naming("elsewhere.example").await).unwrap();
        let Err(error) = unnamed.apiserver_version().await else {
            panic!("accepted a certificate that does not name elsewhere.example");
        };
        let chain = format!("{:?}", anyhow::Error::from(error));
        assert!(
            chain.contains(r#"not valid for name "elsewhere.example""#),
            "{chain}"
        );
    }
}
