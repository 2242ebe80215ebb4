//! DeploymentService: Deploy writes a ClassRuntime (read-check-write, guarded by the
//! expected revision) into the spoke namespace the hub mapped the deployment to, claiming
//! that namespace first; delete, get and list answer from the [`Runtimes`] cache (delete
//! falls back to the API); watch streams its change feed.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use oaas_core::tenancy::{
    self, CRM_LABEL, HUB_NAMESPACE_LABEL, ID_HASH_LABEL, REPLACES_ANNOTATION, id_hash,
    parse_deployment_id,
};
use oaas_core::wire::CLASS_RUNTIME_CLEANUP_FINALIZER;
use oaas_crds::convert::runtime_spec_from_unit;
use oaas_crds::validation::check_dns_label;
use oaas_crds::{ClassRuntime, ClassRuntimeSpec};
use oaas_proto::deployment::{self as pb, deployment_service_server::DeploymentService};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument, info, info_span};

use super::runtimes::{Runtimes, info_of, status_of, stream_changes};
use super::{correlation_id, kube_status};
use crate::controller::CORRELATION_ANNOTATION;
use crate::metrics::Metrics;
use crate::namespaces::{self, ClaimError, Namespaces};
use crate::retire;

/// Field manager of the ClassRuntime spec written by Deploy.
const DEPLOY_MANAGER: &str = "oaas-crm-deploy";
/// Reads and writes of one Deploy before it gives up racing other writers.
const CONFLICT_ATTEMPTS: usize = 5;

pub struct DeploymentApi {
    client: Client,
    namespaces: Namespaces,
    runtimes: Runtimes,
    metrics: Arc<Metrics>,
}

/// What a Deploy read before it writes: the runtime under the target's name, and (when
/// read ahead) every runtime of the deployment id, which a new runtime replaces; that
/// lookup's failure matters only if the runtime turns out to be new.
struct Read {
    existing: Option<ClassRuntime>,
    replaces: Option<Result<Vec<ClassRuntime>, Status>>,
}

/// Where a unit goes: its ClassRuntime's namespace and name.
struct Target {
    namespace: String,
    name: String,
    /// `<hub>/<hub namespace>`: what the namespace must serve.
    tenant: String,
    hub_namespace: String,
}

impl DeploymentApi {
    pub fn new(
        client: Client,
        namespaces: Namespaces,
        runtimes: Runtimes,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            namespaces,
            runtimes,
            metrics,
        }
    }

    fn api(&self, namespace: &str) -> Api<ClassRuntime> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Runs a handler in a span carrying the correlation id, and counts it in the metrics.
    async fn observed<T>(
        &self,
        method: &'static str,
        correlation_id: String,
        handler: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let span = info_span!("grpc", method, correlation_id = %correlation_id);
        let result = handler.instrument(span).await;
        let code = result
            .as_ref()
            .map(|_| Code::Ok)
            .unwrap_or_else(|s| s.code());
        self.metrics.observe_grpc(method, code, started.elapsed());
        result
    }

    /// Every runtime of a deployment id, from the cache, else from the API (the cache may not
    /// have seen a runtime created a moment ago), plus one left from before ids carried the
    /// hub. More than one while a deployment moves to another namespace or name.
    async fn find_all(&self, deployment_id: &str) -> Result<Vec<ClassRuntime>, Status> {
        let cached: Vec<ClassRuntime> = self
            .runtimes
            .find_all(deployment_id)
            .into_iter()
            .map(|r| (*r).clone())
            .collect();
        // Both lists at once: this runs before a new runtime's write.
        let (found, old_style) = tokio::join!(
            async {
                if !cached.is_empty() {
                    return Ok(cached);
                }
                // Only this CRM's: another CRM in the cluster may hold the same id.
                let ours = namespaces::selector(self.namespaces.crm());
                self.list_by_id(Api::all(self.client.clone()), deployment_id, Some(&ours))
                    .await
            },
            async {
                let Ok(id) = parse_deployment_id(deployment_id) else {
                    return Ok(Vec::new());
                };
                let legacy = self.api(self.namespaces.crm());
                self.list_by_id(legacy, &id.within_hub(), None).await
            },
        );
        let mut found = found?;
        found.extend(
            old_style?
                .into_iter()
                .filter(|r| !r.labels().contains_key(CRM_LABEL)),
        );
        Ok(found)
    }

    async fn list_by_id(
        &self,
        api: Api<ClassRuntime>,
        deployment_id: &str,
        also: Option<&str>,
    ) -> Result<Vec<ClassRuntime>, Status> {
        let mut selector = format!("{ID_HASH_LABEL}={}", id_hash(deployment_id));
        if let Some(also) = also {
            selector = format!("{selector},{also}");
        }
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| kube_status("listing ClassRuntimes", e))?;
        Ok(list
            .items
            .into_iter()
            .filter(|r| r.spec.deployment_id == deployment_id)
            .collect())
    }

    fn target(unit: &pb::DeploymentUnit) -> Result<Target, Status> {
        let id = parse_deployment_id(&unit.id)
            .map_err(|e| Status::invalid_argument(format!("deployment_unit.id: {e}")))?;
        if unit.namespace.is_empty() {
            return Err(Status::invalid_argument(
                "deployment_unit.namespace: required: the spoke namespace to deploy into \
                 (a hub older than this CRM does not send it; upgrade the hub)",
            ));
        }
        check_dns_label(&unit.namespace)
            .map_err(|e| Status::invalid_argument(format!("deployment_unit.namespace: {e}")))?;
        Ok(Target {
            namespace: unit.namespace.clone(),
            name: tenancy::runtime_name(&id),
            tenant: id.tenant(),
            hub_namespace: id.namespace.to_string(),
        })
    }

    async fn deploy(
        &self,
        request: pb::DeployRequest,
        correlation_id: &str,
    ) -> Result<pb::DeployResponse, Status> {
        let unit = request
            .deployment_unit
            .ok_or_else(|| Status::invalid_argument("deployment_unit: required"))?;
        let target = Self::target(&unit)?;
        let spec =
            runtime_spec_from_unit(&unit).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // A write that expects a revision carries the resourceVersion of the object it was
        // checked against; when something else wrote in between (the controller's status or
        // finalizer, another request), the check runs again on a fresh read.
        for _ in 0..CONFLICT_ATTEMPTS {
            // The namespace check and the reads go out at once: one round trip before the
            // write instead of up to four. A deployment this CRM's cache does not know is
            // likely new, and a new one needs the runtimes it replaces.
            let likely_new = self.runtimes.find(&spec.deployment_id).is_none();
            let (claimed, existing, replaces) = tokio::join!(
                self.namespaces.claim(&target.namespace, &target.tenant),
                self.read(&target),
                async {
                    if likely_new {
                        Some(self.find_all(&spec.deployment_id).await)
                    } else {
                        None
                    }
                },
            );
            match claimed {
                Ok(()) => {}
                Err(ClaimError::Raced) => continue,
                Err(ClaimError::Kube(e)) => return Err(kube_status("claiming the namespace", e)),
                Err(e @ ClaimError::Refused(_)) => {
                    return Err(Status::failed_precondition(e.to_string()));
                }
                Err(e @ ClaimError::Terminating(_)) => {
                    return Err(Status::unavailable(e.to_string()));
                }
            }
            let read = Read {
                existing: existing?,
                replaces,
            };
            let stored = self
                .store(
                    &target,
                    &spec,
                    read,
                    request.expected_revision,
                    correlation_id,
                )
                .await?;
            if let Some(response) = stored {
                return Ok(response);
            }
        }
        Err(Status::aborted(format!(
            "ClassRuntime {}/{} kept changing while this request was stored; retry",
            target.namespace, target.name
        )))
    }

    /// The runtime stored under the target's name, read from the API (not the cache: the
    /// check before a write must see the latest).
    async fn read(&self, target: &Target) -> Result<Option<ClassRuntime>, Status> {
        self.api(&target.namespace)
            .get_opt(&target.name)
            .await
            .map_err(|e| kube_status("reading ClassRuntime", e))
    }

    /// The check-write half of a unit's read-check-write; `None` when the write lost a race
    /// and must be redone.
    async fn store(
        &self,
        target: &Target,
        spec: &ClassRuntimeSpec,
        Read { existing, replaces }: Read,
        expected_revision: Option<i64>,
        correlation_id: &str,
    ) -> Result<Option<pb::DeployResponse>, Status> {
        let Target {
            namespace, name, ..
        } = target;
        let api = self.api(namespace);
        let response = |changed| {
            Some(pb::DeployResponse {
                deployment_id: spec.deployment_id.clone(),
                resource_name: format!("{namespace}/{name}"),
                changed,
            })
        };
        if let Some(existing) = &existing {
            if existing.spec.deployment_id != spec.deployment_id {
                return Err(Status::already_exists(format!(
                    "ClassRuntime {namespace}/{name} belongs to deployment {:?}, not {:?}; \
                     their names map to the same spoke name: rename one of them",
                    existing.spec.deployment_id, spec.deployment_id
                )));
            }
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(Status::failed_precondition(format!(
                    "ClassRuntime {namespace}/{name} is being deleted; retry when it is gone"
                )));
            }
            if existing.spec == *spec {
                return Ok(response(false));
            }
        }
        // The revision the hub sees for this id: of the runtime here, or, while the deployment
        // moves here from another namespace, of the one it replaces.
        let held = match &existing {
            Some(runtime) => runtime.spec.revision,
            None => self
                .runtimes
                .find(&spec.deployment_id)
                .and_then(|r| r.spec.revision),
        }
        .unwrap_or(0);
        if let Some(expected) = expected_revision.filter(|e| *e != held) {
            return Err(Status::aborted(format!(
                "ClassRuntime {namespace}/{name} holds revision {held}, the request expected \
                 {expected}: it was built from an older view; resend from the current one"
            )));
        }
        let written = match &existing {
            None => {
                let replaces = match replaces {
                    Some(replaces) => replaces?,
                    None => self.find_all(&spec.deployment_id).await?,
                };
                self.create(target, spec, &replaces, correlation_id).await
            }
            Some(existing) => {
                // The whole spec is replaced, so that fields someone added by hand go too;
                // the resourceVersion makes it conditional on the object just checked.
                let mut ops = vec![json!({"op": "replace", "path": "/spec", "value": spec})];
                if expected_revision.is_some() {
                    ops.push(json!({"op": "replace", "path": "/metadata/resourceVersion",
                        "value": existing.resource_version()}));
                }
                if !correlation_id.is_empty() {
                    ops.push(annotation_op(
                        existing,
                        CORRELATION_ANNOTATION,
                        correlation_id,
                    ));
                }
                let patch: json_patch::Patch =
                    serde_json::from_value(json!(ops)).expect("a valid JSON patch");
                let params = PatchParams {
                    field_manager: Some(DEPLOY_MANAGER.into()),
                    ..Default::default()
                };
                api.patch(name, &params, &Patch::<()>::Json(patch))
                    .await
                    .map(drop)
            }
        };
        match written {
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(None),
            other => other.map_err(|e| kube_status("writing ClassRuntime", e))?,
        };
        info!(%namespace, %name, deployment_id = %spec.deployment_id, created = existing.is_none(), "deployment stored");
        Ok(response(true))
    }

    /// Creates the runtime, naming the runtimes of the same deployment it replaces (under an
    /// older name or namespace): the controller removes them once it is Available.
    async fn create(
        &self,
        target: &Target,
        spec: &ClassRuntimeSpec,
        replaces: &[ClassRuntime],
        correlation_id: &str,
    ) -> Result<(), kube::Error> {
        let replaces: Vec<String> = replaces
            .iter()
            .map(|r| format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()))
            .collect();
        let mut annotations = serde_json::Map::new();
        if !correlation_id.is_empty() {
            annotations.insert(CORRELATION_ANNOTATION.into(), correlation_id.into());
        }
        if !replaces.is_empty() {
            annotations.insert(REPLACES_ANNOTATION.into(), replaces.join(",").into());
        }
        let patch = json!({
            "apiVersion": "oaas.io/v1alpha1",
            "kind": "ClassRuntime",
            "metadata": {
                "name": target.name,
                "labels": {
                    ID_HASH_LABEL: id_hash(&spec.deployment_id),
                    HUB_NAMESPACE_LABEL: target.hub_namespace,
                    CRM_LABEL: self.namespaces.crm(),
                },
                "annotations": annotations,
                // With its finalizer from the start, the controller's first pass renders
                // instead of spending a round trip (and a watch event) on adding it.
                "finalizers": [CLASS_RUNTIME_CLEANUP_FINALIZER],
            },
            "spec": spec,
        });
        self.api(&target.namespace)
            .patch(
                &target.name,
                &PatchParams::apply(DEPLOY_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(drop)
    }

    async fn delete(&self, deployment_id: &str) -> Result<pb::DeleteDeploymentResponse, Status> {
        let runtimes = self.find_all(deployment_id).await?;
        let mut existed = false;
        for runtime in &runtimes {
            existed |= retire::remove(&self.client, runtime)
                .await
                .map_err(|e| kube_status("deleting ClassRuntime", e))?;
        }
        Ok(pb::DeleteDeploymentResponse { existed })
    }

    fn not_found(deployment_id: &str) -> Status {
        Status::not_found(format!(
            "no deployment with id {deployment_id:?} in this cluster"
        ))
    }
}

/// A JSON patch op that sets one annotation (creating the map when the object has none).
fn annotation_op(runtime: &ClassRuntime, key: &str, value: &str) -> serde_json::Value {
    if runtime.metadata.annotations.is_none() {
        return json!({"op": "add", "path": "/metadata/annotations", "value": {key: value}});
    }
    let escaped = key.replace('~', "~0").replace('/', "~1");
    json!({"op": "add", "path": format!("/metadata/annotations/{escaped}"), "value": value})
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::DeploymentStatusEvent, Status>> + Send>>;

#[tonic::async_trait]
impl DeploymentService for DeploymentApi {
    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::DeployResponse>, Status> {
        let correlation = correlation_id(&request);
        self.observed(
            "Deploy",
            correlation.clone(),
            self.deploy(request.into_inner(), &correlation),
        )
        .await
        .map(Response::new)
    }

    async fn get_deployment_status(
        &self,
        request: Request<pb::GetDeploymentStatusRequest>,
    ) -> Result<Response<pb::DeploymentStatus>, Status> {
        let correlation = correlation_id(&request);
        let id = request.into_inner().deployment_id;
        self.observed("GetDeploymentStatus", correlation, async {
            self.runtimes
                .find(&id)
                .map(|r| status_of(&r))
                .ok_or_else(|| Self::not_found(&id))
        })
        .await
        .map(Response::new)
    }

    async fn delete_deployment(
        &self,
        request: Request<pb::DeleteDeploymentRequest>,
    ) -> Result<Response<pb::DeleteDeploymentResponse>, Status> {
        let correlation = correlation_id(&request);
        let id = request.into_inner().deployment_id;
        self.observed("DeleteDeployment", correlation, self.delete(&id))
            .await
            .map(Response::new)
    }

    async fn list_class_runtimes(
        &self,
        request: Request<pb::ListClassRuntimesRequest>,
    ) -> Result<Response<pb::ListClassRuntimesResponse>, Status> {
        let correlation = correlation_id(&request);
        let filter = request.into_inner();
        self.observed("ListClassRuntimes", correlation, async {
            let mut items: Vec<pb::ClassRuntimeInfo> = self
                .runtimes
                .store
                .state()
                .iter()
                .filter(|r| {
                    filter.package_name.is_empty() || r.spec.package_name == filter.package_name
                })
                .filter(|r| filter.class_key.is_empty() || r.spec.class_key == filter.class_key)
                .map(|r| info_of(r))
                .collect();
            items.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(pb::ListClassRuntimesResponse { items })
        })
        .await
        .map(Response::new)
    }

    async fn get_class_runtime(
        &self,
        request: Request<pb::GetClassRuntimeRequest>,
    ) -> Result<Response<pb::ClassRuntimeInfo>, Status> {
        let correlation = correlation_id(&request);
        let id = request.into_inner().deployment_id;
        self.observed("GetClassRuntime", correlation, async {
            self.runtimes
                .find(&id)
                .map(|r| info_of(&r))
                .ok_or_else(|| Self::not_found(&id))
        })
        .await
        .map(Response::new)
    }

    type WatchDeploymentStatusStream = WatchStream;

    async fn watch_deployment_status(
        &self,
        request: Request<pb::WatchDeploymentStatusRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let correlation = correlation_id(&request);
        let ids = request.into_inner().deployment_ids;
        self.observed("WatchDeploymentStatus", correlation, async {
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(stream_changes(self.runtimes.clone(), ids, tx));
            Ok(Box::pin(ReceiverStream::new(rx)) as WatchStream)
        })
        .await
        .map(Response::new)
    }
}
