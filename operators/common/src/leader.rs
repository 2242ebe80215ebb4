//! Leader election on a `coordination.k8s.io` Lease, so two replicas of an operator can run:
//! the holder reconciles, the other waits and takes over once the holder stops renewing.
//! Expiry is judged by how long *this* process has seen the lease unchanged (as client-go
//! does), never by comparing clocks of different machines. Writes carry the resourceVersion
//! read, so of two candidates racing for an expired lease exactly one wins.
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub namespace: String,
    pub name: String,
    /// Who this process is, e.g. the Pod name; unique among the candidates.
    pub identity: String,
    /// How long a lease nobody renews stays held.
    pub duration: Duration,
}

impl Settings {
    /// Renew well within the duration, as client-go does (a third of it).
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }
}

/// The identity of this process: `POD_NAME` when set (Kubernetes), else host name and pid.
pub fn default_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
}

/// What this process last saw of the lease, and when it changed.
struct Observed {
    holder: Option<String>,
    renewed: Option<Timestamp>,
    since: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    settings: Settings,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(client: Client, settings: Settings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&mut self) {
        info!(lease = %self.settings.name, identity = %self.settings.identity, "waiting to lead");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.settings.name, "leading");
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, "leader election: the lease could not be read or written")
                }
            }
            tokio::time::sleep(self.settings.renew_every()).await;
        }
    }

    /// Keeps renewing; resolves when leadership is lost (not renewed for the whole duration,
    /// or taken by another candidate). The caller must stop leading then.
    pub async fn keep_renewing(mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_every()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.settings.name, "another candidate holds the lease");
                    return;
                }
                Err(e) => warn!(error = %e, "leader election: renewing failed"),
            }
            if last_renewed.elapsed() >= self.settings.duration {
                warn!(lease = %self.settings.name, "the lease was not renewed in time");
                return;
            }
        }
    }

    /// One round: take the lease if free or expired, renew it if ours. Whether we hold it.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let me = self.settings.identity.clone();
        let duration = self.settings.duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renewed != renewed);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renewed,
                since: Instant::now(),
            });
        }
        let held_for =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration).max(1) as u64);
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|o| o.since.elapsed() >= held_for);
        let ours = holder.as_deref() == Some(me.as_str());
        if !ours && holder.is_some() && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(duration),
            acquire_time: if ours {
                spec.acquire_time
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..spec
        });
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote first: they renewed or took it.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up at once (on a clean stop), so another candidate need not wait.
    pub async fn release(client: Client, settings: &Settings) {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let Ok(Some(mut lease)) = api.get_opt(&settings.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
            return;
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            ..spec
        });
        if let Err(e) = api
            .replace(&settings.name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, "leader election: releasing the lease failed");
        }
    }
}

/// Runs `work` as the leader: without settings at once; with them once the lease is held,
/// until `work` ends or the lease is lost. Losing it is an error: the process should exit,
/// so that a restart competes again rather than two replicas reconciling at once.
pub async fn lead<F>(
    client: Client,
    settings: Option<Settings>,
    work: impl FnOnce() -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    let Some(settings) = settings else {
        work().await;
        return Ok(());
    };
    let mut elector = Elector::new(client, settings);
    elector.acquire().await;
    tokio::select! {
        () = elector.keep_renewing() => anyhow::bail!("lost the leader lease"),
        () = work() => Ok(()),
    }
}
