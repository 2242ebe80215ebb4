//! The PM's Prometheus metrics. One registry per process.
use std::time::Duration;

use oaas_crds::cluster::ClusterHealth;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    cluster: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The route pattern (e.g. /api/v1/packages/{name}), never the raw path: bounded labels.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_failures: Family<ControllerLabels, Counter>,
    reconcile_duration: Histograms<ControllerLabels>,
    fanout_duration: Histograms<ClusterLabels>,
    cluster_healthy: Family<ClusterLabels, Gauge>,
    work_queue_depth: Family<ControllerLabels, Gauge>,
    grpc_calls: Family<CallLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Histograms<RouteLabels>,
    drift_restored: Family<ClusterLabels, Counter>,
}

fn buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(|| Histogram::new(buckets()))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("oaas_pm");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_failures = Family::<ControllerLabels, Counter>::default();
        let reconcile_duration: Histograms<ControllerLabels> = histograms();
        let fanout_duration: Histograms<ClusterLabels> = histograms();
        let cluster_healthy = Family::<ClusterLabels, Gauge>::default();
        let work_queue_depth = Family::<ControllerLabels, Gauge>::default();
        let grpc_calls = Family::<CallLabels, Counter>::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: Histograms<RouteLabels> = histograms();
        let drift_restored = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "drift_restored",
            "Class deployments sent again because a spoke's copy was edited or deleted there, by cluster",
            drift_restored.clone(),
        );
        registry.register("reconciles", "Reconciles by controller", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconciles by controller",
            reconcile_failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile time by controller",
            reconcile_duration.clone(),
        );
        registry.register(
            "fanout_duration_seconds",
            "Time of a Deploy call to a spoke, by cluster",
            fanout_duration.clone(),
        );
        registry.register(
            "cluster_healthy",
            "1 when the cluster is Healthy, else 0",
            cluster_healthy.clone(),
        );
        registry.register(
            "work_queue_depth",
            "Objects whose latest spec change the controller has not reconciled yet",
            work_queue_depth.clone(),
        );
        registry.register(
            "grpc_client_calls",
            "Calls to spokes by cluster, method and status code",
            grpc_calls.clone(),
        );
        registry.register(
            "http_requests",
            "REST requests by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "REST request time by method and route",
            http_duration.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_failures,
            reconcile_duration,
            fanout_duration,
            cluster_healthy,
            work_queue_depth,
            grpc_calls,
            http_requests,
            http_duration,
            drift_restored,
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, controller: &str, took: Duration, failed: bool) {
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.reconcile_failures.get_or_create(&labels).inc();
        }
    }

    pub fn observe_call(&self, cluster: &str, method: &str, code: tonic::Code, took: Duration) {
        let labels = CallLabels {
            cluster: cluster.into(),
            method: method.into(),
            code: format!("{code:?}"),
        };
        self.grpc_calls.get_or_create(&labels).inc();
        if method == "Deploy" {
            self.fanout_duration
                .get_or_create(&ClusterLabels {
                    cluster: cluster.into(),
                })
                .observe(took.as_secs_f64());
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.into(),
                route: route.into(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.into(),
                route: route.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn set_cluster_health(&self, cluster: &str, health: ClusterHealth) {
        let healthy = i64::from(health == ClusterHealth::Healthy);
        self.cluster_healthy
            .get_or_create(&ClusterLabels {
                cluster: cluster.into(),
            })
            .set(healthy);
    }

    pub fn count_drift_restored(&self, cluster: &str) {
        self.drift_restored
            .get_or_create(&ClusterLabels {
                cluster: cluster.into(),
            })
            .inc();
    }

    pub fn set_work_queue_depth(&self, controller: &str, depth: i64) {
        self.work_queue_depth
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .set(depth);
    }

    pub fn forget_cluster(&self, cluster: &str) {
        self.cluster_healthy.remove(&ClusterLabels {
            cluster: cluster.into(),
        });
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
