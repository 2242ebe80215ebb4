//! The gRPC face of the CRM: DeploymentService (backed by ClassRuntime resources and an
//! informer cache of them) and the cluster info service.
//!
//! [`runtimes`] is the cache and its change feed (what the status calls and the watch stream
//! read), [`deploy`] the DeploymentService (Deploy, delete, get, list, watch), [`info`] the
//! cluster info service.
mod deploy;
mod info;
mod runtimes;

use tonic::{Request, Status};

pub use deploy::DeploymentApi;
pub use info::InfoApi;
pub use runtimes::Runtimes;

pub use oaas_core::wire::CORRELATION_HEADER;

/// Maps a Kubernetes API error to the canonical gRPC code.
fn kube_status(context: &str, error: kube::Error) -> Status {
    let message = format!("{context}: {error}");
    match &error {
        kube::Error::Api(e) => match e.code {
            400 | 422 => Status::invalid_argument(message),
            404 => Status::not_found(message),
            409 => Status::aborted(message),
            403 | 401 => Status::permission_denied(message),
            429 => Status::resource_exhausted(message),
            504 => Status::deadline_exceeded(message),
            _ => Status::unavailable(message),
        },
        _ => Status::unavailable(message),
    }
}

fn correlation_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
