//! The REST facade (`/api/v1`, the seeds' routes) over the hub's custom resources. Writes
//! become OPackage / OClassDeployment objects on the hub; reads come from the PM's caches
//! (and, for class runtimes, from the spokes' CRMs), so kubectl and REST show the same
//! objects. A write answers once the cache has caught up with it, so a client reads its own
//! writes. The OpenAPI document at `/api/v1/openapi.json` is generated from the handlers.
mod auth;
mod catalog;
mod clusters;
mod deployments;
mod error;
mod extract;
mod middleware;
mod outcome;
mod packages;
mod runtimes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aide::axum::ApiRouter;
use aide::axum::routing::get;
use aide::openapi::{Info, OpenApi};
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use oaas_crds::{OClassDeployment, OCluster, OPackage};
use oaas_operator_common::Synced;
use schemars::JsonSchema;
use serde::Serialize;

use auth::Authenticator;
use error::{ApiError, ApiResult};

use crate::metrics::Metrics;
use crate::spoke_client::SpokeClient;

/// What the handlers share: the hub client, the caches, the spokes and the settings.
pub struct Rest {
    pub client: kube::Client,
    pub packages: Store<OPackage>,
    pub deployments: Store<OClassDeployment>,
    pub clusters: Store<OCluster>,
    pub spokes: SpokeClient,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    authenticator: Authenticator,
    /// The caches above are filled.
    synced: Synced,
    /// Waiting for the leader lease: REST answers, but a Service should send clients to
    /// the leader, whose spokes are connected.
    standby: AtomicBool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Namespace of requests without `?namespace=`.
    pub default_namespace: String,
    /// The only namespace the PM watches, when it watches one.
    pub watch_namespace: Option<String>,
    /// Check bearer tokens (TokenReview) and rights (SubjectAccessReview) on every request.
    pub auth: bool,
    pub body_limit: usize,
    pub timeout: Duration,
    /// Oldest cluster health served as it is (`CRM_HEALTH_CACHE_TTL`): an OCluster whose
    /// last check is older is checked live for the answer, or served marked stale.
    pub health_cache_ttl: Duration,
}

/// The caches REST answers from, and whether they are filled.
pub struct Caches {
    pub packages: Store<OPackage>,
    pub deployments: Store<OClassDeployment>,
    pub clusters: Store<OCluster>,
    pub synced: Synced,
}

impl Rest {
    pub fn new(
        client: kube::Client,
        caches: Caches,
        spokes: SpokeClient,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Arc<Self> {
        let Caches {
            packages,
            deployments,
            clusters,
            synced,
        } = caches;
        Arc::new(Self {
            client,
            packages,
            deployments,
            clusters,
            spokes,
            metrics,
            settings,
            authenticator: Authenticator::default(),
            synced,
            standby: AtomicBool::new(false),
        })
    }

    fn is_ready(&self) -> bool {
        self.synced.now()
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Release);
    }

    /// The namespace a request works in; one the PM does not watch is a client error.
    fn namespace(&self, requested: Option<&str>) -> ApiResult<String> {
        let namespace = requested.unwrap_or(&self.settings.default_namespace);
        if oaas_crds::validation::check_dns_label(namespace).is_err() {
            return Err(ApiError::bad_request(format!(
                "namespace {namespace:?} is not a valid namespace name"
            )));
        }
        match &self.settings.watch_namespace {
            Some(watched) if watched != namespace => Err(ApiError::bad_request(format!(
                "this package manager serves namespace {watched:?} only"
            ))),
            _ => Ok(namespace.to_string()),
        }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// Cached objects of one namespace, by name.
fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut objects = store.state_filter(|o| o.namespace().as_deref() == Some(namespace));
    objects.sort_by_key(|o| o.name_any());
    objects
}

fn page<T>(items: Vec<T>, offset: Option<usize>, limit: Option<usize>) -> Vec<T> {
    items
        .into_iter()
        .skip(offset.unwrap_or(0))
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

/// The routes: `/api/v1/*` (documented), plus `/healthz`, `/readyz` and `/metrics`.
pub fn router(rest: Arc<Rest>) -> axum::Router {
    let mut openapi = OpenApi {
        info: Info {
            title: "OaaS package manager".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: Some(
                "REST facade over the hub's OPackage, OClassDeployment and OCluster resources."
                    .into(),
            ),
            ..Info::default()
        },
        ..OpenApi::default()
    };
    let api = ApiRouter::new()
        .api_route(
            "/api/v1/packages",
            get(packages::list).post(packages::create),
        )
        .api_route(
            "/api/v1/packages/{name}",
            get(packages::get)
                .post(packages::update)
                .put(packages::update)
                .delete(packages::delete),
        )
        .api_route(
            "/api/v1/deployments",
            get(deployments::list).post(deployments::create),
        )
        .api_route(
            "/api/v1/deployments/{key}",
            get(deployments::get).delete(deployments::delete),
        )
        .api_route("/api/v1/deployment-status/{id}", get(deployments::status))
        .api_route("/api/v1/class-runtimes", get(runtimes::list))
        .api_route("/api/v1/class-runtimes/{id}", get(runtimes::get))
        .api_route("/api/v1/deployment-records", get(runtimes::list))
        .api_route("/api/v1/deployment-records/{id}", get(runtimes::get))
        .api_route("/api/v1/clusters", get(clusters::list))
        .api_route("/api/v1/clusters/health", get(clusters::health_all))
        .api_route("/api/v1/clusters/{name}/health", get(clusters::health))
        // Upstream's CLI (`oprc envs`) calls the clusters environments.
        .api_route("/api/v1/envs", get(clusters::list))
        .api_route("/api/v1/envs/health", get(clusters::health_all))
        .api_route("/api/v1/envs/{name}/health", get(clusters::health))
        .api_route("/api/v1/classes", get(catalog::classes))
        .api_route("/api/v1/functions", get(catalog::functions))
        .api_route("/health", get(health))
        .api_route("/api/v1/health", get(health));
    let api = api.finish_api(&mut openapi);
    let openapi = Arc::new(openapi);
    let documented = api
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            rest.clone(),
            auth::authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            rest.clone(),
            middleware::observe,
        ))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(rest.settings.body_limit));
    documented.with_state(rest)
}

#[derive(Serialize, JsonSchema)]
struct Health {
    /// healthy, or unhealthy while the hub caches are not synced.
    status: &'static str,
    service: &'static str,
    version: &'static str,
    /// Whether the caches of the hub's resources are synced.
    storage: StorageHealth,
}

#[derive(Serialize, JsonSchema)]
struct StorageHealth {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

/// Liveness and cache state; 503 until the hub's resources are cached.
async fn health(State(rest): State<Arc<Rest>>) -> ApiResult<Json<Health>> {
    let ready = rest.is_ready();
    let health = Health {
        status: if ready { "healthy" } else { "unhealthy" },
        service: "oaas-pm",
        version: env!("CARGO_PKG_VERSION"),
        storage: StorageHealth {
            status: if ready { "ok" } else { "error" },
            message: (!ready).then_some("the hub's resources are not cached yet"),
        },
    };
    if ready {
        Ok(Json(health))
    } else {
        Err(ApiError::unavailable(
            "the hub's resources are not cached yet",
        ))
    }
}

async fn readyz(State(rest): State<Arc<Rest>>) -> impl IntoResponse {
    if !rest.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    } else if rest.standby.load(Ordering::Acquire) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby: another replica holds the leader lease",
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn metrics(State(rest): State<Arc<Rest>>) -> impl IntoResponse {
    use oaas_operator_common::work_queue_depth;
    let depths = [
        (
            "oclassdeployment",
            work_queue_depth(rest.deployments.state(), |d| {
                d.status.as_ref().and_then(|s| s.observed_generation)
            }),
        ),
        (
            "opackage",
            work_queue_depth(rest.packages.state(), |p| {
                p.status.as_ref().and_then(|s| s.observed_generation)
            }),
        ),
        (
            "ocluster",
            work_queue_depth(rest.clusters.state(), |c| {
                c.status.as_ref().and_then(|s| s.observed_generation)
            }),
        ),
    ];
    for (controller, depth) in depths {
        rest.metrics.set_work_queue_depth(controller, depth);
    }
    oaas_operator_common::metrics_response(rest.metrics.encode())
}

/// How long a write waits for the cache to show it before answering anyway.
const CACHE_WAIT: Duration = Duration::from_secs(3);

/// Waits until `done` holds for the cached copy (or absence) of `name`, so that the writer's
/// next read, served from the cache, sees its write.
async fn until_cached<K>(
    store: &Store<K>,
    namespace: &str,
    name: &str,
    done: impl Fn(Option<&K>) -> bool,
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
    let deadline = tokio::time::Instant::now() + CACHE_WAIT;
    while !done(store.get(&key).as_deref()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether the cache has `written` or something newer. resourceVersions are etcd revisions;
/// comparing them as numbers lets a later concurrent write count too. A deleted object
/// counts: nothing newer can appear.
fn at_least<K: Resource>(cached: Option<&K>, written: &K) -> bool {
    let version = |o: &K| {
        o.meta()
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (cached, version(written)) {
        (Some(cached), Some(written)) => version(cached).is_some_and(|c| c >= written),
        (Some(cached), None) => cached.meta().resource_version == written.meta().resource_version,
        (None, _) => false,
    }
}

/// Whether the object is gone from the cache or marked for deletion.
fn deleting<K: Resource>(cached: Option<&K>) -> bool {
    cached.is_none_or(|o| o.meta().deletion_timestamp.is_some())
}
