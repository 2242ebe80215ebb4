//! What the controller last applied to each child, so that a reconcile whose render did not
//! change, against a child nobody else changed since, skips the write. Server-side apply of
//! an unchanged object is a no-op on the server, but still a round trip; with thousands of
//! runtimes those round trips are most of the controller's work.
use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oaas_crds::validation::fnv1a;

use crate::render::{Child, ChildKind};

/// A child as the cache knows it: a fingerprint of its kind, namespace and name. The cache
/// holds an entry per child of every runtime, and keeping these (and the versions) as
/// strings cost ~0.3 KiB per runtime. Two children sharing a fingerprint (about one chance
/// in 10^9 with 100,000 children) would overwrite each other's entry, which costs extra
/// applies; skipping one would also take their render hashes and versions to coincide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildKey(u64);

impl ChildKey {
    pub fn new(kind: ChildKind, namespace: &str, name: &str) -> Self {
        Self(fnv1a(format!("{kind:?}/{namespace}/{name}").as_bytes()))
    }
}

/// Of each child: the hash of the render last applied, and a fingerprint of the version
/// that apply produced.
#[derive(Debug, Default)]
pub struct AppliedCache {
    entries: Mutex<HashMap<ChildKey, (u64, u64)>>,
}

/// A version that changes whenever anyone changes the object's spec: its generation, or
/// its resourceVersion for kinds without one.
pub fn version_of(meta: &ObjectMeta) -> Option<String> {
    meta.generation
        .map(|g| format!("g{g}"))
        .or_else(|| meta.resource_version.as_ref().map(|r| format!("r{r}")))
}

pub fn hash_of(child: &Child) -> u64 {
    fnv1a(child.object.to_string().as_bytes())
}

impl AppliedCache {
    /// True when `hash` is what we last applied and the live object is still the version
    /// that apply produced.
    pub fn is_current(&self, key: &ChildKey, hash: u64, live_version: Option<&str>) -> bool {
        let entries = self.entries.lock().expect("applied cache lock");
        matches!((entries.get(key), live_version), (Some((h, v)), Some(live)) if *h == hash && *v == fnv1a(live.as_bytes()))
    }

    pub fn record(&self, key: ChildKey, hash: u64, version: Option<&str>) {
        let mut entries = self.entries.lock().expect("applied cache lock");
        match version {
            Some(version) => entries.insert(key, (hash, fnv1a(version.as_bytes()))),
            None => entries.remove(&key),
        };
    }

    /// Drops the entry of a deleted child, so the cache does not outgrow the cluster.
    pub fn forget(&self, key: &ChildKey) {
        self.entries.lock().expect("applied cache lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_key() -> ChildKey {
        ChildKey::new(ChildKind::Deployment, "ns", "a")
    }

    #[test]
    fn an_unchanged_render_against_an_untouched_child_is_current() {
        let cache = AppliedCache::default();
        cache.record(mk_key(), 7, Some("g3"));
        assert!(cache.is_current(&mk_key(), 7, Some("g3")));
    }

    #[test]
    fn a_new_render_a_changed_child_or_a_missing_child_is_not_current() {
        let cache = AppliedCache::default();
        assert!(!cache.is_current(&mk_key(), 7, Some("g3")), "never applied");
        cache.record(mk_key(), 7, Some("g3"));
        assert!(
            !cache.is_current(&mk_key(), 8, Some("g3")),
            "render changed"
        );
        assert!(
            !cache.is_current(&mk_key(), 7, Some("g4")),
            "someone edited the child"
        );
        assert!(!cache.is_current(&mk_key(), 7, None), "child deleted");
        for other in [
            ChildKey::new(ChildKind::Service, "ns", "a"),
            ChildKey::new(ChildKind::Deployment, "ns2", "a"),
            ChildKey::new(ChildKind::Deployment, "ns", "b"),
        ] {
            assert!(!cache.is_current(&other, 7, Some("g3")), "another child");
        }
        cache.forget(&mk_key());
        assert!(!cache.is_current(&mk_key(), 7, Some("g3")), "forgotten");
    }

    #[test]
    fn versions_prefer_generation() {
        let meta = ObjectMeta {
            generation: Some(2),
            resource_version: Some("99".into()),
            ..Default::default()
        };
        assert_eq!(version_of(&meta).as_deref(), Some("g2"));
        let meta = ObjectMeta {
            resource_version: Some("99".into()),
            ..Default::default()
        };
        assert_eq!(version_of(&meta).as_deref(), Some("r99"));
    }
}
