//! The frame of every reconcile: kube-runtime's finalizer handling (the finalizer is added
//! before the first apply and removed after a successful cleanup) around the controller's
//! own work, timed, its error turned into the controller's own error type and reported to
//! the controller's metrics.
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error, Event, finalizer};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    let result = finalizer(api, name, object, reconcile).await.map_err(wrap);
    observe(started.elapsed(), result.as_ref().err());
    result
}
