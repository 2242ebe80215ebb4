//! The main watch of each controller: a cache of the objects, and a stream that yields an
//! object only when its spec (generation) or finalizers changed. A controller's own status
//! writes then do not wake it up again, which would otherwise turn a status that changes on
//! every pass (a cluster's lastSeen) into a busy loop.
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};
use oaas_crds::OCluster;

/// What a watch can follow and a cache can hold.
pub trait Watched:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + serde::de::DeserializeOwned
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static
{
}

/// A cache of what `api` sees (managed fields dropped: nothing reads them) and the stream of
/// applied objects that keeps it current; the stream must be polled.
fn reflected<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    (reader, stream)
}

/// A cache kept current in the background.
pub fn cache<K>(api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: Watched,
{
    let (reader, stream) = reflected(api, config);
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader
}

pub fn spec_changes<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Watched,
{
    let (reader, stream) = reflected(api, config);
    let changes = stream.predicate_filter(
        predicates::generation.combine(predicates::finalizers),
        Default::default(),
    );
    (reader, changes)
}

/// OClusters whose placement-relevant state changed: spec, labels, health or availability.
/// Their `lastSeen` moves with every refresh of the check times (`CRM_HEALTH_REPORT_INTERVAL`)
/// and must not re-plan every deployment.
pub fn cluster_placement_changes(
    api: Api<OCluster>,
    config: watcher::Config,
) -> impl Stream<Item = Result<OCluster, watcher::Error>> + Send + 'static {
    watcher(api, config)
        .default_backoff()
        .touched_objects()
        .predicate_filter(placement_hash, Default::default())
}

fn placement_hash(cluster: &OCluster) -> Option<u64> {
    let status = cluster.status.clone().unwrap_or_default();
    let key = format!(
        "{:?}|{:?}|{:?}|{:?}",
        cluster.metadata.generation,
        cluster.labels(),
        status.health,
        status.availability.map(f64::to_bits)
    );
    Some(oaas_crds::validation::fnv1a(key.as_bytes()))
}

/// Objects whose spec changed (or that were deleted), without a cache.
pub fn generation_changes<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    watcher(api, config)
        .default_backoff()
        .touched_objects()
        .predicate_filter(predicates::generation, Default::default())
}

/// Passes each object on once `cache` holds that version of it (or after a second, if the
/// cache lags further): a reconcile it triggers then reads what triggered it, not the
/// version before.
pub fn after_cached<K>(
    changes: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    cache: Store<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    changes.then(move |change| {
        let cache = cache.clone();
        async move {
            if let Ok(object) = &change {
                let wanted = object.resource_version();
                let key = kube::runtime::reflector::ObjectRef::from_obj(object);
                for _ in 0..100 {
                    if cache.get(&key).and_then(|o| o.resource_version()) == wanted {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            change
        }
    })
}
