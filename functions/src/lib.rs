//! Two tiny HTTP servers that the kind test bed runs as real containers:
//!
//! - `oaas-echo-function`: an OaaS function. It answers every invocation (`POST` on any
//!   path) with the request body, and health on `/healthz` and `/readyz`, on `HTTP_PORT`
//!   (which the CRM sets from the function's `provisionConfig.port`; default 8080).
//! - `odgm-test-double`: a **stand-in** for the object data grid (ODGM), which is not part of
//!   this project. It listens on `ODGM_HTTP_PORT` (which the CRM sets; default 8081) and
//!   reports ready, so that the ODGM Deployment the CRM renders becomes Available on a real
//!   cluster. It stores nothing.
//!
//! Both stop on SIGTERM, so a Pod deletion does not wait for the grace period.

use axum::{Json, Router, body::Bytes, http::StatusCode, routing::get};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};

/// The echo function's routes: health, and any other path echoes a POSTed body.
pub fn echo_routes(name: String) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/readyz", get(ok))
        .fallback(move |body: Bytes| echo(name.clone(), body))
}

/// The ODGM stand-in's routes: health only, and a description of what it is for any other.
pub fn odgm_routes() -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/readyz", get(ok))
        .fallback(|| async {
            (
                StatusCode::NOT_IMPLEMENTED,
                Json(json!({"error": "odgm-test-double stores no objects; it only reports ready"})),
            )
        })
}

async fn ok() -> &'static str {
    "ok"
}

async fn echo(name: String, body: Bytes) -> Json<Value> {
    // A JSON body comes back as JSON; anything else as a string, so every input answers.
    let input = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Json(json!({"function": name, "output": input}))
}

/// The port in the environment variable `var`, else `default`.
pub fn port_from_env(var: &str, default: u16) -> Result<u16, String> {
    parse_port(var, std::env::var(var).ok().as_deref(), default)
}

/// `value` of `var` as a port, `default` when unset; anything else is an error naming `var`.
pub fn parse_port(var: &str, value: Option<&str>, default: u16) -> Result<u16, String> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("{var}={v:?} is not a port number (1-65535)")),
        },
    }
}

/// Serves `routes` on all interfaces at `port` until SIGTERM or Ctrl-C.
pub async fn serve(routes: Router, port: u16) -> std::io::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    axum::serve(listener, routes)
        .with_graceful_shutdown(stopped())
        .await
}

async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
