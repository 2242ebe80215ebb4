//! Status writes for every controller: server-side apply of the status subresource, skipped
//! when it would change nothing.
//!
//! "Would change nothing" is judged against the freshest status this process knows: the one
//! it last wrote for the object (each controller is the only writer of its kind's status),
//! else the cached object's. A cache that has not caught up with our last write would
//! otherwise make a needed write look like a no-op: Degraded written, the recovery computed
//! from a cached copy that still says Available, the write skipped as "unchanged" — and the
//! API keeps saying Degraded until something else changes.
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub struct StatusWriter<S> {
    field_manager: &'static str,
    /// The last status written, by object uid.
    written: Mutex<HashMap<String, S>>,
    /// When this process last wrote each object's status, by uid.
    written_at: Mutex<HashMap<String, Instant>>,
}

impl<S: Clone + PartialEq + Default + Serialize + DeserializeOwned> StatusWriter<S> {
    pub fn new(field_manager: &'static str) -> Self {
        Self {
            field_manager,
            written: Mutex::default(),
            written_at: Mutex::default(),
        }
    }

    /// Whether this process wrote `object`'s status less than `window` ago.
    pub fn wrote_within<K: Resource>(&self, object: &K, window: Duration) -> bool {
        self.written_at
            .lock()
            .expect("status memory lock")
            .get(&key(object))
            .is_some_and(|at| at.elapsed() < window)
    }

    /// The status `object` has now: what this process last wrote for it, else `cached`.
    /// Once the cache shows that write, the cache is as fresh and the write is forgotten, so
    /// only writes the cache has not caught up with yet are held.
    pub fn current<K: Resource>(&self, object: &K, cached: Option<&S>) -> S {
        let mut written = self.written.lock().expect("status memory lock");
        let key = key(object);
        match written.get(&key) {
            Some(last) if Some(last) != cached => last.clone(),
            Some(_) => {
                written.remove(&key);
                cached.cloned().unwrap_or_default()
            }
            None => cached.cloned().unwrap_or_default(),
        }
    }

    /// Applies `status` unless it equals `current` (from [`Self::current`]); whether it wrote.
    pub async fn write<K>(
        &self,
        api: &Api<K>,
        object: &K,
        current: &S,
        status: S,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        if &status == current {
            return Ok(false);
        }
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &object.name_any(),
            &PatchParams::apply(self.field_manager).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        self.written
            .lock()
            .expect("status memory lock")
            .insert(key(object), as_stored(status));
        self.written_at
            .lock()
            .expect("status memory lock")
            .insert(key(object), Instant::now());
        Ok(true)
    }

    /// Drops what is remembered of a deleted object.
    pub fn forget<K: Resource>(&self, object: &K) {
        let key = key(object);
        self.written
            .lock()
            .expect("status memory lock")
            .remove(&key);
        self.written_at
            .lock()
            .expect("status memory lock")
            .remove(&key);
    }
}

/// `status` as the API gives it back. The API keeps times to the second: a status remembered
/// with finer times would never equal the cache's copy, so it would be held (one per object)
/// until the next write instead of being forgotten once the cache shows it.
fn as_stored<S: Serialize + DeserializeOwned>(status: S) -> S {
    serde_json::to_value(&status)
        .and_then(serde_json::from_value)
        .unwrap_or(status)
}

/// The uid: a deleted and recreated object with the same name starts afresh.
fn key<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            object.meta().namespace.clone().unwrap_or_default(),
            object.meta().name.clone().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn mk_object(uid: &str) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.name = Some("x".into());
        object.metadata.uid = Some(uid.into());
        object
    }

    #[test]
    fn the_last_written_status_wins_over_a_stale_cache() {
        let writer = StatusWriter::<String>::new("test");
        let object = mk_object("u1");
        assert_eq!(writer.current(&object, Some(&"cached".into())), "cached");
        writer
            .written
            .lock()
            .unwrap()
            .insert("u1".into(), "written".into());
        assert_eq!(writer.current(&object, Some(&"cached".into())), "written");
        assert_eq!(writer.current(&mk_object("u2"), None), "", "another object");
        writer.forget(&object);
        assert_eq!(writer.current(&object, Some(&"cached".into())), "cached");
    }

    #[test]
    fn a_write_is_held_only_until_the_cache_shows_it() {
        let writer = StatusWriter::<String>::new("test");
        let object = mk_object("u1");
        writer
            .written
            .lock()
            .unwrap()
            .insert("u1".into(), "written".into());
        assert_eq!(writer.current(&object, Some(&"written".into())), "written");
        assert!(
            writer.written.lock().unwrap().is_empty(),
            "caught up: dropped"
        );
        assert_eq!(writer.current(&object, Some(&"newer".into())), "newer");
    }

    #[test]
    fn a_write_is_remembered_as_the_api_stores_it() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let written: k8s_openapi::jiff::Timestamp =
            "2026-12-03T10:00:00.123456789Z".parse().unwrap();
        let stored: k8s_openapi::jiff::Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        assert_eq!(as_stored(Some(Time(written))), Some(Time(stored)));
    }
}
