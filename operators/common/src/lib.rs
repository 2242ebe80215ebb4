//! Process plumbing the PM and the CRM share: how they find the Kubernetes API, set up logs,
//! answer /metrics, and learn that they should stop.
#![forbid(unsafe_code)]

mod client;
pub mod env;
pub mod leader;
pub mod reconcile;
pub mod status;
mod synced;

pub use client::kube_client;
pub use synced::Synced;

use axum::http::header;
use axum::response::IntoResponse;

/// Logs to stderr, as text or JSON; `RUST_LOG` sets levels (default:
/// [`default_log_filter`]).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_env_var("RUST_LOG")
        .try_from_env()
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(default_log_filter(cfg!(debug_assertions)))
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Our own crates' log targets (crate names with `_`).
const OWN_TARGETS: [&str; 6] = [
    "oaas_pm",
    "oaas_crm",
    "oaas_operator_common",
    "oaas_core",
    "oaas_crds",
    "oaas_proto",
];

/// Levels when `RUST_LOG` is unset or invalid: `info`; a debug build (`cargo run`, dev)
/// also logs our own crates at `debug`, dependencies staying at `info`.
pub fn default_log_filter(debug_build: bool) -> String {
    let mut filter = String::from("info");
    if debug_build {
        for target in OWN_TARGETS {
            filter.push_str(&format!(",{target}=debug"));
        }
    }
    filter
}

/// A /metrics answer in the OpenMetrics text format.
pub fn metrics_response(text: String) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Work-queue depth as the operators report it: how many objects carry a spec change their
/// controller has not reconciled yet (`metadata.generation` ahead of the generation the
/// status says it observed). kube-runtime keeps its own queue private; this is the backlog
/// that queue exists to drain, read from the cache when /metrics is scraped.
pub fn work_queue_depth<K: kube::Resource>(
    objects: impl IntoIterator<Item = std::sync::Arc<K>>,
    observed_generation: impl Fn(&K) -> Option<i64>,
) -> i64 {
    let behind = objects
        .into_iter()
        .filter(|o| o.meta().generation.is_some() && o.meta().generation != observed_generation(o))
        .count();
    i64::try_from(behind).unwrap_or(i64::MAX)
}

/// Resolves on SIGTERM (how Kubernetes stops a Pod) or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

/// Records an event on `object`, with the reason as its action too; a failure to record is
/// logged, never fatal (events are for people, not for the reconcile).
pub async fn publish_event<K>(
    recorder: &kube::runtime::events::Recorder,
    object: &K,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
) where
    K: kube::Resource<DynamicType = ()>,
{
    publish_related_event(recorder, object, None, type_, reason, note).await
}

/// An event about `object` that also names a `related` object (e.g. the cluster it
/// happened in): events of the same reason about different related objects stay apart
/// instead of counting as repeats of the first.
pub async fn publish_related_event<K>(
    recorder: &kube::runtime::events::Recorder,
    object: &K,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
) where
    K: kube::Resource<DynamicType = ()>,
{
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: related,
    };
    if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_builds_log_our_crates_at_debug_and_release_builds_at_info() {
        assert_eq!(default_log_filter(false), "info");
        let debug = default_log_filter(true);
        assert!(debug.starts_with("info,"), "{debug}");
        for target in [
            "oaas_pm=debug",
            "oaas_crm=debug",
            "oaas_operator_common=debug",
        ] {
            assert!(debug.split(',').any(|d| d == target), "{target} in {debug}");
        }
        assert!(
            !debug.contains("kube"),
            "dependencies stay at info: {debug}"
        );
        // It parses as a filter.
        tracing_subscriber::EnvFilter::try_new(&debug).unwrap();
    }
}
