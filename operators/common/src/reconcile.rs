//! The frame of every reconcile: kube-runtime's finalizer handling (the finalizer is added
//! before the first apply, in the same pass, and removed after a successful cleanup) around
//! the controller's own work, timed, its error turned into the controller's own error type
//! and reported to the controller's metrics; and how many reconciles a controller runs at once.
use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, LazyLock, Mutex};
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
    let uid = object.meta().uid.clone().unwrap_or_default();
    let deleting = object.meta().deletion_timestamp.is_some();
    if deleting && RELEASED.lock().expect("not poisoned").contains(&uid) {
        return Ok(Action::await_change());
    }
    let releases = deleting && object.finalizers().iter().any(|f| f == name);
    let result = match with_finalizer_added(api, name, object).await {
        Ok(object) => finalizer(api, name, object, reconcile).await,
        Err(e) => Err(e),
    };
    let result = match result {
        // Removing the finalizer found the object gone: what removing it was for.
        Err(Error::RemoveFinalizer(kube::Error::Api(e))) if e.code == 404 => {
            Ok(Action::await_change())
        }
        other => other,
    };
    if releases && result.is_ok() {
        RELEASED
            .lock()
            .expect("not poisoned")
            .insert(uid, Instant::now());
    }
    let result = result.map_err(wrap);
    observe(started.elapsed(), result.as_ref().err());
    result
}

/// Objects whose finalizer this process removed after their cleanup, by uid. A pass queued
/// while the cleanup ran (the children it deleted wake their owner) starts from a cached copy
/// that still shows the finalizer; without this it would clean up a second time (calls and an
/// event again) and then fail to remove the finalizer from an object that is gone.
static RELEASED: LazyLock<Mutex<Released>> = LazyLock::new(Default::default);

/// How long a released object is remembered: far longer than its deletion takes to reach a
/// cache, short enough that deleting thousands of objects costs little memory.
const RELEASED_FOR: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Released {
    uids: HashSet<String>,
    /// The same uids, oldest first, with when each was released.
    order: VecDeque<(Instant, String)>,
}

impl Released {
    fn contains(&self, uid: &str) -> bool {
        self.uids.contains(uid)
    }

    fn insert(&mut self, uid: String, now: Instant) {
        while let Some((at, _)) = self.order.front()
            && now.duration_since(*at) > RELEASED_FOR
        {
            if let Some((_, old)) = self.order.pop_front() {
                self.uids.remove(&old);
            }
        }
        if !uid.is_empty() && self.uids.insert(uid.clone()) {
            self.order.push_back((now, uid));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_object_is_remembered_until_long_after_its_deletion_shows() {
        let mut released = Released::default();
        let start = Instant::now();
        released.insert("a".into(), start);
        released.insert("a".into(), start + Duration::from_secs(1));
        released.insert(String::new(), start);
        assert!(released.contains("a"));
        assert!(!released.contains("b"));
        assert!(
            !released.contains(""),
            "an object without a uid is never skipped"
        );
        assert_eq!(released.order.len(), 1, "each uid once");

        let later = start + RELEASED_FOR + Duration::from_secs(1);
        released.insert("b".into(), later);
        assert!(!released.contains("a"), "forgotten after RELEASED_FOR");
        assert!(released.contains("b"));
        assert_eq!(released.order.len(), 1);
    }
}
