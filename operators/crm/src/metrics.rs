//! The CRM's Prometheus metrics: reconciles, gRPC calls, NFR analyses and enforcements. One
//! registry per process.
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

pub struct Metrics {
    registry: Registry,
    work_queue_depth: Family<ControllerLabels, Gauge>,
    nfr_analyses: Family<OutcomeLabels, Counter>,
    nfr_enforcements: Family<TargetLabels, Counter>,
    reconcile_duration: Histogram,
    reconciles: Counter,
    reconcile_failures: Family<ErrorLabels, Counter>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_duration: Family<MethodLabels, Histogram>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("oaas_crm");
        let reconcile_duration = Histogram::new(latency_buckets());
        let reconciles = Counter::default();
        let work_queue_depth = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "work_queue_depth",
            "ClassRuntimes whose latest spec change the controller has not reconciled yet",
            work_queue_depth.clone(),
        );
        let reconcile_failures = Family::<ErrorLabels, Counter>::default();
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        let grpc_duration = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile a ClassRuntime",
            reconcile_duration.clone(),
        );
        registry.register("reconciles", "ClassRuntime reconciles", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed ClassRuntime reconciles by error",
            reconcile_failures.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC requests served by method and status code",
            grpc_requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC request latency by method",
            grpc_duration.clone(),
        );
        let nfr_analyses = Family::<OutcomeLabels, Counter>::default();
        let nfr_enforcements = Family::<TargetLabels, Counter>::default();
        registry.register(
            "nfr_analyses",
            "NFR analyses of a ClassRuntime by outcome (the NfrObserved reason)",
            nfr_analyses.clone(),
        );
        registry.register(
            "nfr_enforcements",
            "Replica changes the NFR enforcer applied, by target kind",
            nfr_enforcements.clone(),
        );
        Self {
            registry,
            work_queue_depth,
            nfr_analyses,
            nfr_enforcements,
            reconcile_duration,
            reconciles,
            reconcile_failures,
            grpc_requests,
            grpc_duration,
        }
    }
}

impl Metrics {
    pub fn set_work_queue_depth(&self, depth: i64) {
        self.work_queue_depth
            .get_or_create(&ControllerLabels {
                controller: "classruntime".into(),
            })
            .set(depth);
    }

    pub fn observe_reconcile(&self, took: Duration, error: Option<&str>) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Some(error) = error {
            self.reconcile_failures
                .get_or_create(&ErrorLabels {
                    error: error.into(),
                })
                .inc();
        }
    }

    pub fn observe_grpc(&self, method: &str, code: tonic::Code, took: Duration) {
        let code = format!("{code:?}");
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                method: method.into(),
                code,
            })
            .inc();
        self.grpc_duration
            .get_or_create(&MethodLabels {
                method: method.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn observe_analysis(&self, outcome: &str) {
        self.nfr_analyses
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn observe_enforcement(&self, target_kind: &str) {
        self.nfr_enforcements
            .get_or_create(&TargetLabels {
                target_kind: target_kind.into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
