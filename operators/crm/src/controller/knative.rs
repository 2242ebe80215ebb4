//! Whether Knative Serving is installed in the cluster, as discovery last said. A task of
//! its own asks every 30 s, so no reconcile pass waits on discovery: before, a pass asked
//! whenever the last answer was older than 30 s, and a pass reporting a lost workload on a
//! quiet spoke waited that extra API round trip before its status write. A discovery call
//! that fails (not a "no such group") keeps the last answer: read as "not installed", it
//! would turn every Knative runtime Degraded (`KnativeNotInstalled`) until the next call.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;
use tracing::{info, warn};

const GROUP_VERSION: &str = "serving.knative.dev/v1";
const EVERY: Duration = Duration::from_secs(30);

pub struct KnativeServing {
    installed: AtomicBool,
}

impl KnativeServing {
    /// Asks discovery once (a failure there reads as "not installed" until an answer comes),
    /// then keeps asking in the background for as long as the process runs.
    pub async fn detect(client: Client) -> Arc<Self> {
        let first = answer(ask(&client).await);
        if first.is_none() {
            warn!("cannot tell whether Knative Serving is installed yet; taking it as not");
        }
        let probe = Arc::new(Self {
            installed: AtomicBool::new(first.unwrap_or(false)),
        });
        let refreshed = probe.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(EVERY).await;
                refreshed.update(answer(ask(&client).await));
            }
        });
        probe
    }

    pub fn installed(&self) -> bool {
        self.installed.load(Ordering::Relaxed)
    }

    fn update(&self, answer: Option<bool>) {
        let Some(installed) = answer else {
            warn!("discovery of {GROUP_VERSION} failed; keeping the last answer");
            return;
        };
        if self.installed.swap(installed, Ordering::Relaxed) != installed {
            info!(installed, "Knative Serving's presence changed");
        }
    }
}

/// The resources the group serves (their plural names).
async fn ask(client: &Client) -> Result<Vec<String>, kube::Error> {
    let list = client.list_api_group_resources(GROUP_VERSION).await?;
    Ok(list.resources.into_iter().map(|r| r.name).collect())
}

/// What a discovery call says: installed when the group serves `services`, not installed
/// when the API server has no such group, nothing when the call itself failed.
fn answer(discovered: Result<Vec<String>, kube::Error>) -> Option<bool> {
    match discovered {
        Ok(resources) => Some(resources.iter().any(|r| r == "services")),
        Err(kube::Error::Api(status)) if status.code == 404 => Some(false),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        }))
    }

    #[test]
    fn a_group_that_serves_services_is_installed() {
        let discovered = Ok(vec!["configurations".into(), "services".into()]);
        assert_eq!(answer(discovered), Some(true));
        assert_eq!(answer(Ok(vec!["routes".into()])), Some(false));
    }

    #[test]
    fn no_such_group_is_not_installed() {
        assert_eq!(answer(Err(api_error(404))), Some(false));
    }

    #[test]
    fn a_failed_call_says_nothing() {
        assert_eq!(answer(Err(api_error(503))), None);
        assert_eq!(answer(Err(api_error(403))), None);
    }

    #[test]
    fn a_failed_call_keeps_the_last_answer() {
        let probe = KnativeServing {
            installed: AtomicBool::new(true),
        };
        probe.update(None);
        assert!(probe.installed());
        probe.update(Some(false));
        assert!(!probe.installed());
    }
}
