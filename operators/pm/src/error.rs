//! What a PM reconcile can fail with; the controllers' error policies retry all of them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("spokes did not answer: {0}")]
    Spokes(String),
    #[error("still used by {0}")]
    InUse(String),
}

/// The frame of every PM reconcile: the finalizer, errors as [`Error`], the reconcile counted
/// under `controller` in the metrics.
pub async fn with_finalizer<K, F, Fut>(
    api: &kube::Api<K>,
    finalizer: &str,
    object: std::sync::Arc<K>,
    metrics: &crate::metrics::Metrics,
    controller: &str,
    reconcile: F,
) -> Result<kube::runtime::controller::Action, Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    F: FnOnce(kube::runtime::finalizer::Event<K>) -> Fut,
    Fut: Future<Output = Result<kube::runtime::controller::Action, Error>>,
{
    oaas_operator_common::reconcile::with_finalizer(
        api,
        finalizer,
        object,
        |e| Error::Finalizer(Box::new(e)),
        |took, error| metrics.observe_reconcile(controller, took, error.is_some()),
        reconcile,
    )
    .await
}
