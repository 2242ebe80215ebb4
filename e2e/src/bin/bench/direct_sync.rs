//! The direct baseline of spoke change → hub status: the same path with none of our code in
//! it. A relay in the bench process watches a spoke namespace's Deployments; when one is
//! deleted it writes a ClassRuntime's status there while it creates the Deployment again; it
//! watches that ClassRuntime, and when it leaves Available writes the hub's status of a class
//! deployment. That is what ours does at the least (the CRM's watch of the deletion, its
//! status write beside its repair; its ClassRuntime watch feeding the PM; the PM's status
//! write; the bench's hub watch), on the same kinds of objects, copied from the real ones
//! into namespaces that no operator watches. What ours takes beyond it is the operators' own
//! time; what the baseline takes is the API servers'.
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use oaas_crds::common::Phase;
use oaas_crds::{ClassRuntime, OClassDeployment};
use oaas_e2e::{TestNamespace, wait_for};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::cache;
use super::pm::{strip_for_apply, until_available, until_hub_sees};

/// The rows' name.
pub const DIRECT_SYNC: &str =
    "direct: spoke change → hub status, the same watches and status writes without our code";

/// Where the change is made: a spoke, the namespace holding the real class deployment's
/// runtime and function there, and the spoke's name on the hub.
pub struct SyncSite<'a> {
    pub spoke: &'a Client,
    pub namespace: &'a str,
    pub cluster: &'a str,
}

/// `samples` changes carried to the hub by the relay, the sites taken in turn: for each,
/// the time from the Deployment's delete until the hub's cache shows that cluster no longer
/// Available. `name` is a class deployment in `hub_namespace` that runs on every site.
pub async fn direct_status_sync(
    hub: &Client,
    hub_namespace: &str,
    name: &str,
    sites: &[SyncSite<'_>],
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let real: OClassDeployment = Api::namespaced(hub.clone(), hub_namespace)
        .get(name)
        .await?;
    let hub_ns = TestNamespace::create(hub, "bench-sync").await?;
    let deployments: Api<OClassDeployment> = Api::namespaced(hub.clone(), &hub_ns.name);
    let (hub_cache, hub_driver) = cache(deployments.clone());
    let mut relays = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        relays.push(Relay::start(site, name, &real, &deployments, &format!("{name}-{i}")).await?);
    }
    hub_cache.wait_until_ready().await?;
    let mut took = Vec::with_capacity(samples);
    for k in 0..samples {
        let relay = &relays[k % relays.len()];
        relay.reset().await?;
        until_available(&hub_cache, &relay.key).await?;
        let started = Instant::now();
        relay
            .functions
            .delete(relay.function_name(), &DeleteParams::default())
            .await?;
        took.push(until_hub_sees(&hub_cache, &relay.key, &relay.cluster, started).await?);
    }
    hub_driver.abort();
    for relay in relays {
        relay.stop().await?;
    }
    hub_ns.delete_within(Duration::from_secs(120)).await?;
    Ok(took)
}

/// One site's copies (a function Deployment and its ClassRuntime in a namespace of their
/// own, a class deployment on the hub) and the two watches that relay a deletion.
struct Relay {
    ns: TestNamespace,
    functions: Api<Deployment>,
    function: Deployment,
    runtimes: Api<ClassRuntime>,
    runtime: String,
    hub: Api<OClassDeployment>,
    key: ObjectRef<OClassDeployment>,
    cluster: String,
    /// The real class deployment's status (Available), to go back to between samples.
    available: Value,
    watches: [JoinHandle<()>; 2],
}

impl Relay {
    async fn start(
        site: &SyncSite<'_>,
        name: &str,
        real: &OClassDeployment,
        hub: &Api<OClassDeployment>,
        hub_name: &str,
    ) -> anyhow::Result<Self> {
        let ns = TestNamespace::create(site.spoke, "bench-sync").await?;

        // Copies without labels: no CRM selects them.
        let real_function = Api::<Deployment>::namespaced(site.spoke.clone(), site.namespace)
            .get(&format!("{name}-f"))
            .await?;
        let mut function = strip_for_apply(serde_json::to_value(real_function)?, &ns.name);
        function["metadata"]["labels"] = Value::Null;
        let function: Deployment = serde_json::from_value(function)?;
        let functions = Api::<Deployment>::namespaced(site.spoke.clone(), &ns.name);
        functions.create(&PostParams::default(), &function).await?;
        let real_runtime = Api::<ClassRuntime>::namespaced(site.spoke.clone(), site.namespace)
            .get(name)
            .await?;
        let runtimes = Api::<ClassRuntime>::namespaced(site.spoke.clone(), &ns.name);
        runtimes
            .create(
                &PostParams::default(),
                &ClassRuntime::new(name, real_runtime.spec.clone()),
            )
            .await?;
        set_status(&runtimes, name, json!(real_runtime.status)).await?;
        hub.create(
            &PostParams::default(),
            &OClassDeployment::new(hub_name, real.spec.clone()),
        )
        .await?;
        let available = json!(real.status);
        set_status(hub, hub_name, available.clone()).await?;

        // The hub's status once this site's runtime left Available.
        let mut lost = real.status.clone().unwrap_or_default();
        lost.phase = Some(Phase::Progressing);
        for cluster in lost
            .clusters
            .iter_mut()
            .filter(|c| c.cluster == site.cluster)
        {
            cluster.phase = Some(Phase::Progressing);
        }
        let lost = json!(lost);

        // A deletion is reported while the Deployment is put back, as the CRM does.
        let (runtime, status_writer) = (name.to_string(), runtimes.clone());
        let (repairer, copy) = (functions.clone(), function.clone());
        let (deletions, deletions_listed) = follow(functions.clone(), move |event| {
            let (runtimes, runtime) = (status_writer.clone(), runtime.clone());
            let (functions, function) = (repairer.clone(), copy.clone());
            async move {
                if let watcher::Event::Delete(_) = event {
                    let create = PostParams::default();
                    let (reported, repaired) = tokio::join!(
                        set_status(&runtimes, &runtime, json!({"phase": Phase::Progressing})),
                        functions.create(&create, &function)
                    );
                    reported?;
                    repaired?;
                }
                Ok(())
            }
        });
        let (hub_writer, hub_target) = (hub.clone(), hub_name.to_string());
        let (reports, reports_listed) = follow(runtimes.clone(), move |event| {
            let (hub, name, lost) = (hub_writer.clone(), hub_target.clone(), lost.clone());
            async move {
                if let watcher::Event::Apply(runtime) = event
                    && runtime.status.and_then(|s| s.phase) != Some(Phase::Available)
                {
                    set_status(&hub, &name, lost).await?;
                }
                Ok(())
            }
        });
        deletions_listed.await?;
        reports_listed.await?;
        Ok(Self {
            ns,
            functions,
            function,
            runtimes,
            runtime: name.to_string(),
            hub: hub.clone(),
            key: ObjectRef::new(hub_name).within(hub.namespace().unwrap_or_default()),
            cluster: site.cluster.to_string(),
            available,
            watches: [deletions, reports],
        })
    }

    fn function_name(&self) -> &str {
        self.function.metadata.name.as_deref().unwrap_or_default()
    }

    /// Back to the state before a change: the runtime and the hub Available, the function
    /// (which the relay put back) there.
    async fn reset(&self) -> anyhow::Result<()> {
        set_status(
            &self.runtimes,
            &self.runtime,
            json!({"phase": Phase::Available}),
        )
        .await?;
        set_status(&self.hub, &self.key.name, self.available.clone()).await?;
        wait_for(
            "the relay to put the function back",
            Duration::from_secs(30),
            || async {
                let function = self.functions.get_opt(self.function_name()).await?;
                Ok(function.is_some().then_some(()))
            },
        )
        .await
    }

    async fn stop(self) -> anyhow::Result<()> {
        for watch in self.watches {
            watch.abort();
        }
        self.ns.delete_within(Duration::from_secs(120)).await
    }
}

async fn set_status<K>(api: &Api<K>, name: &str, status: Value) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = Patch::Merge(json!({"status": status}));
    api.patch_status(name, &PatchParams::default(), &patch)
        .await?;
    Ok(())
}

/// Runs `act` on each event of `api`'s watch, in order, in a task of its own; the receiver
/// fires once the watch has listed what is there (so no later change is missed).
fn follow<K, F, Fut>(api: Api<K>, act: F) -> (JoinHandle<()>, oneshot::Receiver<()>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    F: Fn(watcher::Event<K>) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let (listed, on_listed) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut listed = Some(listed);
        let events = watcher(api, watcher::Config::default()).default_backoff();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = listed.take() {
                        let _ = listed.send(());
                    }
                }
                Ok(event) => {
                    if let Err(err) = act(event).await {
                        eprintln!("direct status sync relay: {err:#}");
                    }
                }
                Err(err) => eprintln!("direct status sync relay's watch: {err}"),
            }
        }
    });
    (task, on_listed)
}
