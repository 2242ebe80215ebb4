//! DeploymentService: Deploy writes a ClassRuntime (read-check-write with server-side
//! apply, guarded by the expected revision); delete, get and list answer from the
//! [`Runtimes`] cache (delete falls back to the API); watch streams its change feed.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use oaas_crds::convert::runtime_spec_from_unit;
use oaas_crds::validation::fnv1a;
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
use crate::render::runtime_name;

/// Field manager of the ClassRuntime spec written by Deploy.
const DEPLOY_MANAGER: &str = "oaas-crm-deploy";
/// Label holding a hash of the deployment id (ids may be longer than label values).
const ID_HASH_LABEL: &str = "oaas.io/deployment-id-hash";
/// Reads and writes of one Deploy before it gives up racing other writers.
const CONFLICT_ATTEMPTS: usize = 5;

pub struct DeploymentApi {
    client: Client,
    namespace: String,
    runtimes: Runtimes,
    metrics: Arc<Metrics>,
}

impl DeploymentApi {
    pub fn new(
        client: Client,
        namespace: String,
        runtimes: Runtimes,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            namespace,
            runtimes,
            metrics,
        }
    }

    fn api(&self) -> Api<ClassRuntime> {
        Api::namespaced(self.client.clone(), &self.namespace)
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

    /// Finds a runtime by deployment id in the cache, then in the API (the cache may not have
    /// seen a runtime created a moment ago).
    async fn find_fresh(&self, deployment_id: &str) -> Result<Option<ClassRuntime>, Status> {
        if let Some(runtime) = self.runtimes.find(deployment_id) {
            return Ok(Some((*runtime).clone()));
        }
        let selector = format!("{ID_HASH_LABEL}={}", id_hash(deployment_id));
        let list = self
            .api()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| kube_status("listing ClassRuntimes", e))?;
        Ok(list
            .items
            .into_iter()
            .find(|r| r.spec.deployment_id == deployment_id))
    }

    async fn deploy(
        &self,
        request: pb::DeployRequest,
        correlation_id: &str,
    ) -> Result<pb::DeployResponse, Status> {
        let unit = request
            .deployment_unit
            .ok_or_else(|| Status::invalid_argument("deployment_unit: required"))?;
        let spec =
            runtime_spec_from_unit(&unit).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let name = runtime_name(&spec.package_name, &spec.class_key);
        // A write that expects a revision carries the resourceVersion of the object it was
        // checked against; when something else wrote in between (the controller's status or
        // finalizer, another request), the check runs again on a fresh read.
        for _ in 0..CONFLICT_ATTEMPTS {
            let stored = self
                .store(&name, &spec, request.expected_revision, correlation_id)
                .await?;
            if let Some(response) = stored {
                return Ok(response);
            }
        }
        Err(Status::aborted(format!(
            "ClassRuntime {name} kept changing while this request was stored; retry"
        )))
    }

    /// One read-check-write of a unit; `None` when the write lost a race and must be redone.
    async fn store(
        &self,
        name: &str,
        spec: &ClassRuntimeSpec,
        expected_revision: Option<i64>,
        correlation_id: &str,
    ) -> Result<Option<pb::DeployResponse>, Status> {
        let existing = self
            .api()
            .get_opt(name)
            .await
            .map_err(|e| kube_status("reading ClassRuntime", e))?;
        if let Some(existing) = &existing {
            if existing.spec.deployment_id != spec.deployment_id {
                return Err(Status::already_exists(format!(
                    "ClassRuntime {name} (package {}, class {}) belongs to deployment {:?}, not {:?}; \
                     delete that deployment first or deploy under another package name",
                    spec.package_name,
                    spec.class_key,
                    existing.spec.deployment_id,
                    spec.deployment_id
                )));
            }
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(Status::failed_precondition(format!(
                    "ClassRuntime {name} is being deleted; retry when it is gone"
                )));
            }
            if existing.spec == *spec {
                return Ok(Some(pb::DeployResponse {
                    deployment_id: spec.deployment_id.clone(),
                    resource_name: name.to_string(),
                    changed: false,
                }));
            }
        }
        let held = existing.as_ref().and_then(|r| r.spec.revision).unwrap_or(0);
        if let Some(expected) = expected_revision.filter(|e| *e != held) {
            return Err(Status::aborted(format!(
                "ClassRuntime {name} holds revision {held}, the request expected {expected}: \
                 it was built from an older view; resend from the current one"
            )));
        }
        let mut annotations = serde_json::Map::new();
        if !correlation_id.is_empty() {
            annotations.insert(CORRELATION_ANNOTATION.into(), correlation_id.into());
        }
        let mut patch = json!({
            "apiVersion": "oaas.io/v1alpha1",
            "kind": "ClassRuntime",
            "metadata": {
                "name": name,
                "labels": {ID_HASH_LABEL: id_hash(&spec.deployment_id)},
                "annotations": annotations,
            },
            "spec": spec,
        });
        if expected_revision.is_some()
            && let Some(version) = existing.as_ref().and_then(|r| r.resource_version())
        {
            patch["metadata"]["resourceVersion"] = version.into();
        }
        let written = self
            .api()
            .patch(
                name,
                &PatchParams::apply(DEPLOY_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        match written {
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(None),
            other => other.map_err(|e| kube_status("writing ClassRuntime", e))?,
        };
        info!(%name, deployment_id = %spec.deployment_id, created = existing.is_none(), "deployment stored");
        Ok(Some(pb::DeployResponse {
            deployment_id: spec.deployment_id.clone(),
            resource_name: name.to_string(),
            changed: true,
        }))
    }

    async fn delete(&self, deployment_id: &str) -> Result<pb::DeleteDeploymentResponse, Status> {
        let Some(runtime) = self.find_fresh(deployment_id).await? else {
            return Ok(pb::DeleteDeploymentResponse { existed: false });
        };
        match self
            .api()
            .delete(&runtime.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(pb::DeleteDeploymentResponse { existed: true }),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                Ok(pb::DeleteDeploymentResponse { existed: false })
            }
            Err(e) => Err(kube_status("deleting ClassRuntime", e)),
        }
    }

    fn not_found(deployment_id: &str) -> Status {
        Status::not_found(format!(
            "no deployment with id {deployment_id:?} in this cluster"
        ))
    }
}

/// Short, label-safe hash of a deployment id.
fn id_hash(deployment_id: &str) -> String {
    format!("{:016x}", fnv1a(deployment_id.as_bytes()))
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
