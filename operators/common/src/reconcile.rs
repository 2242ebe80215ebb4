//! The frame of every reconcile: kube-runtime's finalizer handling (the finalizer is added
//! before the first apply, in the same pass, and removed after a successful cleanup) around
//! the controller's own work, timed, its error turned into the controller's own error type
//! and reported to the controller's metrics; and how many reconciles a controller runs at once.
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error, Event, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// How many objects a controller reconciles at once. A reconcile mostly waits on API servers
/// and spokes, so this is well above the core count (at 16, a burst of 50 new objects waited
/// in the queue for three rounds); the bound keeps waking every object at once (a cluster
/// changed) from opening thousands of requests together.
pub const CONCURRENCY: u16 = 64;

pub async fn with_finalizer<K, E, E2, F, Fut>(
    api: &Api<K>,
    name: &str,
    object: Arc<K>,
    wrap: impl FnOnce(Error<E>) -> E2,
    observe: impl FnOnce(Duration, Option<&E2>),
    reconcile: F,
) -> Result<Action, E2>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
    E: std::error::Error + 'static,
    F: FnOnce(Event<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
{
    let started = Instant::now();
    let result = match with_finalizer_added(api, name, object).await {
        Ok(object) => finalizer(api, name, object, reconcile).await,
        Err(e) => Err(e),
    }
    .map_err(wrap);
    observe(started.elapsed(), result.as_ref().err());
    result
}

/// The object with finalizer `name`, added now if a live object lacks it. kube-runtime's
/// `finalizer` would add it and end the pass, leaving the apply to the pass the watch
/// brings back: under load that puts every new object through the work queue twice.
async fn with_finalizer_added<K, E>(
    api: &Api<K>,
    name: &str,
    object: Arc<K>,
) -> Result<Arc<K>, Error<E>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
    E: std::error::Error + 'static,
{
    let present = object.finalizers().iter().any(|f| f == name);
    if present || object.meta().deletion_timestamp.is_some() {
        return Ok(object);
    }
    // The test makes the patch fail (and the pass retry) if another writer changed the
    // finalizers since this object was read: the API server does not deduplicate them.
    let patch = if object.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [name]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": object.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": name},
        ])
    };
    let patch = serde_json::from_value(patch).map_err(|_| Error::InvalidFinalizer)?;
    let object_name = object.meta().name.as_deref().ok_or(Error::UnnamedObject)?;
    let patched = api
        .patch(
            object_name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
        .map_err(Error::AddFinalizer)?;
    Ok(Arc::new(patched))
}
