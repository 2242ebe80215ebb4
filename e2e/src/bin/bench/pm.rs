//! The whole system: apply → workloads on every spoke (one at a time and many at once),
//! against the baseline of applying the same objects straight to the spokes with server-side
//! apply; spoke change → hub status; many class deployments to Available; the PM's and the
//! CRMs' memory.
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, TypeMeta,
};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use oaas_crds::common::Phase;
use oaas_crds::{ClassRuntime, OClassDeployment, OCluster, OPackage};
use oaas_e2e::{
    Crm, E2E_CLUSTER_LABEL, Pm, TestNamespace, client_for, hub_context, install_all_crds,
    spoke_contexts, wait_for,
};
use oaas_proto::deployment as pb;
use oaas_proto::deployment::deployment_service_client::DeploymentServiceClient;
use serde_json::{Value, json};

use super::direct_sync::{DIRECT_SYNC, SyncSite, direct_status_sync};
use super::{Row, cache, env_number, latencies, rss_mib, writes};

pub struct Spoke {
    pub client: Client,
    pub ns: TestNamespace,
    crm: Crm,
}

pub fn mk_package(i: usize) -> anyhow::Result<OPackage> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "oaas.io/v1alpha1", "kind": "OPackage", "metadata": {"name": format!("p{i}")},
        "spec": {
            "classes": [{"key": "C", "functionBindings": [{"name": "f", "functionKey": "f"}]}],
            "functions": [{"key": "f", "provisionConfig": {"containerImage": "img/f:1", "minScale": 1, "maxScale": 1}}]
        }
    }))?)
}

pub fn mk_deployment(i: usize, clusters: &[String]) -> anyhow::Result<OClassDeployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "oaas.io/v1alpha1", "kind": "OClassDeployment", "metadata": {"name": format!("d{i}")},
        "spec": {"package": format!("p{i}"), "classKey": "C", "targetClusters": clusters}
    }))?)
}

pub fn available(cd: &OClassDeployment) -> bool {
    cd.status
        .as_ref()
        .is_some_and(|s| s.phase == Some(Phase::Available))
}

pub async fn bench_pm(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let samples = env_number("BENCH_PM_SAMPLES", 50);
    let total = env_number("BENCH_PM_DEPLOYMENTS", 500).max(2 * samples);
    install_all_crds().await?;
    let hub = client_for(&hub_context()).await?;
    let ns = TestNamespace::create(&hub, "bench-pm").await?;
    let env = [
        ("OPRC_CRM_FEATURES_ODGM", "false"),
        ("OPRC_CRM_PROGRESS_REQUEUE_SECS", "10"),
    ];
    let mut spokes = Vec::new();
    let mut clusters = Vec::new();
    let oclusters: Api<OCluster> = Api::all(hub.clone());
    for context in spoke_contexts() {
        let client = client_for(&context).await?;
        // Named as the hub namespace, which maps to it: the CRM's own namespace.
        let spoke_ns = TestNamespace::create_named(&client, "bench-pm", &ns.name).await?;
        let crm = Crm::start(&context, &spoke_ns.name, &env).await?;
        let name = format!("{}-{}", ns.name, context.trim_start_matches("oaas-"));
        let cluster: OCluster = serde_json::from_value(json!({
            "apiVersion": "oaas.io/v1alpha1", "kind": "OCluster",
            "metadata": {"name": name, "labels": {E2E_CLUSTER_LABEL: ns.name}},
            "spec": {"endpoint": crm.endpoint, "healthCheckIntervalSeconds": 2}
        }))?;
        oclusters.create(&PostParams::default(), &cluster).await?;
        clusters.push(name);
        spokes.push(Spoke {
            client,
            ns: spoke_ns,
            crm,
        });
    }
    let pm = Pm::start(
        &hub_context(),
        &ns.name,
        &format!("{E2E_CLUSTER_LABEL}={}", ns.name),
    )
    .await?;
    for name in &clusters {
        wait_for(
            &format!("{name} Healthy"),
            Duration::from_secs(30),
            || async {
                let status = oclusters.get(name).await?.status.unwrap_or_default();
                Ok((status.health == oaas_crds::cluster::ClusterHealth::Healthy).then_some(()))
            },
        )
        .await?;
    }
    let packages: Api<OPackage> = Api::namespaced(hub.clone(), &ns.name);
    let deployments: Api<OClassDeployment> = Api::namespaced(hub.clone(), &ns.name);
    let (hub_cache, hub_driver) = cache(deployments.clone());
    let mut spoke_caches = Vec::new();
    for spoke in &spokes {
        let (client, ns) = (&spoke.client, &spoke.ns.name);
        spoke_caches.push(SpokeCaches {
            runtimes: cache(Api::namespaced(client.clone(), ns)),
            workloads: cache(Api::namespaced(client.clone(), ns)),
        });
    }
    hub_cache.wait_until_ready().await?;
    for caches in &spoke_caches {
        caches.runtimes.0.wait_until_ready().await?;
        caches.workloads.0.wait_until_ready().await?;
    }

    // API writes for one class deployment, measured alone before any load.
    writes::per_deployment(rows, &hub, &ns.name, &spokes, &clusters).await?;

    // Apply → the function's Deployment exists in every spoke: one deployment at a time, then
    // `samples` at once (their packages exist beforehand in both cases).
    let create_packages = |range: std::ops::Range<usize>| {
        let packages = packages.clone();
        async move {
            for i in range {
                packages
                    .create(&PostParams::default(), &mk_package(i)?)
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    let create_deployment = |i: usize| {
        let (deployments, clusters) = (deployments.clone(), clusters.clone());
        async move {
            let started = Instant::now();
            deployments
                .create(&PostParams::default(), &mk_deployment(i, &clusters)?)
                .await?;
            anyhow::Ok((format!("d{i}"), started))
        }
    };
    create_packages(0..samples).await?;
    let mut one_at_a_time = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = create_deployment(i).await?;
        one_at_a_time.extend(until_everywhere(&spokes, &spoke_caches, vec![started]).await?);
    }
    create_packages(samples..2 * samples).await?;
    let all_at_once =
        futures::future::try_join_all((samples..2 * samples).map(create_deployment)).await?;
    let all_at_once = until_everywhere(&spokes, &spoke_caches, all_at_once).await?;
    let what = "pm: apply → workloads on all spokes";
    let ours = [
        latencies(rows, "pm.apply", what, workloads(&one_at_a_time), 1),
        latencies(rows, "pm.apply", what, workloads(&all_at_once), samples),
    ];
    // Where that time goes: the hub's part (until the ClassRuntime is on every spoke), then
    // the spokes' part (until its workload is).
    for (arrivals, in_flight) in [(&one_at_a_time, 1), (&all_at_once, samples)] {
        let hub_part = arrivals.iter().map(|a| a.runtime).collect();
        let what = "pm: of which apply → ClassRuntime on all spokes (hub and PM)";
        latencies(rows, "pm.stage_runtime", what, hub_part, in_flight);
        let spoke_part = arrivals.iter().map(|a| a.workload - a.runtime).collect();
        let what = "pm: of which ClassRuntime → workload on all spokes (CRMs)";
        latencies(rows, "pm.stage_workload", what, spoke_part, in_flight);
    }

    // The baseline: the same objects the CRM made, applied straight to every spoke with
    // server-side apply, as a tool that skips the hub would.
    let direct = direct_baseline(rows, &spokes, samples).await?;
    for ((ours, direct), in_flight) in ours.iter().zip(&direct).zip([1, samples]) {
        rows.push(Row::new(
            format!("pm.ratio_vs_direct_p50_inflight{in_flight}"),
            format!("pm: ours / direct apply, p50 ({in_flight} in flight)"),
            ours / direct,
            "×",
        ));
    }

    // Spoke change → hub status: delete a function's Deployment in the first spoke; the hub
    // sees that cluster leave Available (the CRM puts it back at once).
    let first = &spokes[0];
    let mut propagated = Vec::with_capacity(samples);
    for i in 0..samples {
        let site = ChangeSite {
            functions: Api::namespaced(first.client.clone(), &first.ns.name),
            cache: &spoke_caches[0].workloads.0,
            crm: &first.crm.endpoint,
            cluster: &clusters[0],
        };
        let key = ObjectRef::new(&format!("d{i}")).within(&ns.name);
        propagated.push(spoke_change(site, &hub_cache, &key).await?);
    }
    let [whole, recreate, report, hub_part] = sync_stages(&propagated);
    latencies(
        rows,
        "pm.status_sync",
        "pm: spoke change → hub status",
        whole,
        1,
    );
    for (id, what, took) in [
        ("pm.stage_sync_recreate", SYNC_RECREATE_PART, recreate),
        ("pm.stage_sync_report", SYNC_REPORT_PART, report),
        ("pm.stage_sync_hub", SYNC_HUB_PART, hub_part),
    ] {
        latencies(rows, id, &format!("pm: {what}"), took, 1);
    }
    // Its baseline: the same watches and writes, with none of our code in the path.
    let site = SyncSite {
        spoke: &first.client,
        namespace: &first.ns.name,
        cluster: &clusters[0],
    };
    let direct = direct_status_sync(&hub, &ns.name, "d0", &[site], samples).await?;
    latencies(rows, "direct.status_sync", DIRECT_SYNC, direct, 1);

    // Many class deployments × every spoke to Available.
    let started = Instant::now();
    futures::stream::iter(2 * samples..total)
        .map(|i| {
            let (packages, deployments, clusters) =
                (packages.clone(), deployments.clone(), clusters.clone());
            async move {
                packages
                    .create(&PostParams::default(), &mk_package(i)?)
                    .await?;
                deployments
                    .create(&PostParams::default(), &mk_deployment(i, &clusters)?)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    wait_for(
        &format!("{total} class deployments Available"),
        Duration::from_secs(1200),
        || async {
            let state = hub_cache.state();
            Ok((state.iter().filter(|cd| available(cd)).count() >= total).then_some(()))
        },
    )
    .await?;
    let n = spokes.len();
    rows.push(Row::new(
        "pm.all_available_s",
        format!("pm: {total} class deployments × {n} spokes to Available"),
        started.elapsed().as_secs_f64(),
        "s",
    ));
    rows.push(Row::new(
        "pm.pm_rss_mib",
        format!("pm: resident memory with {total} class deployments"),
        rss_mib(pm.process.pid()),
        "MiB",
    ));
    for (spoke, context) in spokes.iter().zip(spoke_contexts()) {
        rows.push(Row::new(
            format!("pm.crm_rss_mib.{context}"),
            format!("crm: resident memory with {total} class runtimes ({context})"),
            rss_mib(spoke.crm.process.pid()),
            "MiB",
        ));
    }

    // Clean up while the operators still run, so every finalizer is honoured.
    delete_all(&deployments, Duration::from_secs(600)).await?;
    for name in &clusters {
        oclusters.delete(name, &DeleteParams::default()).await?;
    }
    hub_driver.abort();
    for caches in spoke_caches {
        caches.runtimes.1.abort();
        caches.workloads.1.abort();
    }
    ns.delete_within(Duration::from_secs(300)).await?;
    for spoke in spokes {
        spoke.ns.delete_within(Duration::from_secs(300)).await?;
    }
    drop(pm);
    Ok(())
}

/// One spoke change followed to the hub, each time since the change: until the spoke's CRM
/// reported it on the status stream the PM follows, until the hub's status showed it, and
/// (beside that path: the CRM reports a loss while it repairs it) until the CRM had put the
/// Deployment back.
pub struct Propagation {
    pub recreated: Duration,
    pub reported: Duration,
    pub seen: Duration,
}

pub const SYNC_RECREATE_PART: &str =
    "beside it, change → the CRM has put the Deployment back (the report does not wait for it)";
pub const SYNC_REPORT_PART: &str =
    "of which change → the CRM reports it (its pass, its status write and watch)";
pub const SYNC_HUB_PART: &str = "of which CRM report → hub status (PM, hub API server)";

/// The whole and its parts, as the `SYNC_*_PART`s name them.
pub fn sync_stages(propagated: &[Propagation]) -> [Vec<Duration>; 4] {
    let part = |f: fn(&Propagation) -> Duration| propagated.iter().map(f).collect();
    [
        part(|p| p.seen),
        part(|p| p.recreated),
        part(|p| p.reported),
        part(|p| p.seen.saturating_sub(p.reported)),
    ]
}

/// Where a spoke change is made: a spoke namespace of function Deployments (and a cache of
/// them), its CRM and its cluster's name on the hub.
pub struct ChangeSite<'a> {
    pub functions: Api<Deployment>,
    pub cache: &'a Store<Deployment>,
    pub crm: &'a str,
    pub cluster: &'a str,
}

/// Once the hub sees class deployment `key` Available, deletes its function Deployment at
/// `site` and follows the change until the hub's status shows that cluster no longer
/// Available.
pub async fn spoke_change(
    site: ChangeSite<'_>,
    hub_cache: &Store<OClassDeployment>,
    key: &ObjectRef<OClassDeployment>,
) -> anyhow::Result<Propagation> {
    use oaas_proto::deployment::deployment_status_event::Kind;
    until_available(hub_cache, key).await?;
    let mut stream = DeploymentServiceClient::connect(site.crm.to_string())
        .await?
        .watch_deployment_status(pb::WatchDeploymentStatusRequest::default())
        .await?
        .into_inner();
    // The snapshot first: the state before the change.
    while stream
        .message()
        .await?
        .context("status stream ended")?
        .kind()
        != Kind::SnapshotComplete
    {}
    let namespace = key.namespace.as_deref().unwrap_or_default();
    let id_suffix = format!("/{namespace}/{}", key.name);
    let function = ObjectRef::new(&format!("{}-f", key.name))
        .within(site.functions.namespace().unwrap_or_default());
    let before = site
        .cache
        .get(&function)
        .and_then(|d| d.metadata.uid.clone());
    let started = Instant::now();
    site.functions
        .delete(&function.name, &DeleteParams::default())
        .await?;
    let reported = tokio::spawn(async move {
        while let Some(event) = stream.message().await? {
            let changed = event.status.is_some_and(|s| {
                s.deployment_id.ends_with(&id_suffix) && s.phase() != pb::Phase::Available
            });
            if changed {
                return Ok(started.elapsed());
            }
        }
        anyhow::bail!("status stream ended")
    });
    let cache = site.cache.clone();
    let recreated = tokio::spawn(async move {
        loop {
            let uid = cache.get(&function).map(|d| d.metadata.uid.clone());
            if uid.is_some_and(|uid| uid != before) {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "never put back"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let seen = until_hub_sees(hub_cache, key, site.cluster, started).await?;
    let reported = tokio::time::timeout(Duration::from_secs(30), reported)
        .await
        .with_context(|| format!("the CRM never reported {} change", key.name))???;
    let recreated = recreated
        .await?
        .with_context(|| format!("the CRM did not put {}-f back", key.name))?;
    Ok(Propagation {
        recreated,
        reported,
        seen,
    })
}

/// Waits until the hub's status of `key` shows `cluster` no longer Available; how long
/// since `started`.
pub async fn until_hub_sees(
    hub_cache: &Store<OClassDeployment>,
    key: &ObjectRef<OClassDeployment>,
    cluster: &str,
    started: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let seen = hub_cache
            .get(key)
            .and_then(|cd| cd.status.clone())
            .is_some_and(|s| {
                s.clusters
                    .iter()
                    .any(|c| c.cluster == cluster && c.phase != Some(Phase::Available))
            });
        if seen {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "hub never saw {} change",
            key.name
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until the hub sees `key` Available: a sample taken then meets a settled system,
/// not the aftermath of the one before (a rollout in the spokes, status writes on both
/// sides), and so measures one change, not a stream of them.
pub async fn until_available(
    hub_cache: &Store<OClassDeployment>,
    key: &ObjectRef<OClassDeployment>,
) -> anyhow::Result<()> {
    wait_for(
        &format!("{} Available", key.name),
        Duration::from_secs(60),
        || async {
            Ok(hub_cache
                .get(key)
                .is_some_and(|cd| available(&cd))
                .then_some(()))
        },
    )
    .await
}

/// Deletes every class deployment of the namespace and waits until they are gone (the
/// PM removed them from the spokes).
pub async fn delete_all(
    deployments: &Api<OClassDeployment>,
    within: Duration,
) -> anyhow::Result<()> {
    let _ = deployments
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await?;
    wait_for("class deployments deleted", within, || async {
        Ok(deployments
            .list(&Default::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await
}

/// A spoke namespace's ClassRuntimes and Deployments, each cached with its watch task.
struct SpokeCaches {
    runtimes: (Store<ClassRuntime>, tokio::task::JoinHandle<()>),
    workloads: (Store<Deployment>, tokio::task::JoinHandle<()>),
}

/// When a class deployment had arrived on every spoke, since its apply: its ClassRuntime,
/// then its function's Deployment.
struct Arrival {
    runtime: Duration,
    workload: Duration,
}

fn workloads(arrivals: &[Arrival]) -> Vec<Duration> {
    arrivals.iter().map(|a| a.workload).collect()
}

/// Waits until each named class deployment's function Deployment exists on every spoke;
/// when it and its ClassRuntime got there.
async fn until_everywhere(
    spokes: &[Spoke],
    caches: &[SpokeCaches],
    pending: Vec<(String, Instant)>,
) -> anyhow::Result<Vec<Arrival>> {
    let runtime_everywhere = |name: &str| {
        spokes.iter().zip(caches).all(|(spoke, caches)| {
            let runtime = ObjectRef::new(name).within(&spoke.ns.name);
            caches.runtimes.0.get(&runtime).is_some()
        })
    };
    let workload_everywhere = |name: &str| {
        spokes.iter().zip(caches).all(|(spoke, caches)| {
            let child = ObjectRef::new(&format!("{name}-f")).within(&spoke.ns.name);
            caches.workloads.0.get(&child).is_some()
        })
    };
    let mut pending: Vec<_> = pending
        .into_iter()
        .map(|(name, started)| (name, started, None))
        .collect();
    let mut arrived = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let now = Instant::now();
        pending.retain_mut(|(name, started, runtime)| {
            if runtime.is_none() && runtime_everywhere(name) {
                *runtime = Some(now - *started);
            }
            let Some(runtime) = *runtime else { return true };
            if !workload_everywhere(name) {
                return true;
            }
            arrived.push(Arrival {
                runtime,
                workload: now - *started,
            });
            false
        });
        if let Some((name, started, _)) = pending.first() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "{name} did not reach every spoke"
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(arrived)
}

/// The workloads the CRM made for class `i` on a spoke (Deployments, Services, autoscalers
/// of its instance), as server-side-apply bodies for `namespace`.
async fn workloads_of(spoke: &Spoke, i: usize, namespace: &str) -> anyhow::Result<Vec<Value>> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance=d{i}"));
    let client = &spoke.client;
    let ns = &spoke.ns.name;
    let mut objects = Vec::new();
    for d in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&selector)
        .await?
    {
        objects.push(serde_json::to_value(d)?);
    }
    for s in Api::<Service>::namespaced(client.clone(), ns)
        .list(&selector)
        .await?
    {
        objects.push(serde_json::to_value(s)?);
    }
    let autoscalers = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    for h in autoscalers.list(&selector).await? {
        objects.push(serde_json::to_value(h)?);
    }
    Ok(objects
        .into_iter()
        .map(|object| strip_for_apply(object, namespace))
        .collect())
}

/// A stored object as a server-side-apply body for `namespace`: its name and labels, its
/// spec without what the API server allocates, no status.
pub fn strip_for_apply(mut object: Value, namespace: &str) -> Value {
    let metadata = &object["metadata"];
    let metadata =
        json!({"name": metadata["name"], "namespace": namespace, "labels": metadata["labels"]});
    object["metadata"] = metadata;
    let fields = object.as_object_mut().expect("an object");
    fields.remove("status");
    if let Some(spec) = fields.get_mut("spec").and_then(Value::as_object_mut) {
        for allocated in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(allocated);
        }
    }
    object
}

/// Server-side applies `objects` in order; how long until the API server stored all.
pub async fn apply_directly(client: Client, objects: Vec<Value>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for object in objects {
        let types: TypeMeta = serde_json::from_value(object.clone())?;
        let resource = ApiResource::from_gvk(&GroupVersionKind::try_from(&types)?);
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
            .patch(
                &name,
                &PatchParams::apply("oaas-bench-direct").force(),
                &Patch::Apply(&object),
            )
            .await?;
    }
    Ok(started.elapsed())
}

/// The classes `0..samples` applied one at a time, then `samples..2 * samples` at once,
/// straight to every spoke (in parallel); p50 in milliseconds of each.
async fn direct_baseline(
    rows: &mut Vec<Row>,
    spokes: &[Spoke],
    samples: usize,
) -> anyhow::Result<[f64; 2]> {
    let mut targets = Vec::new();
    for spoke in spokes {
        targets.push(TestNamespace::create(&spoke.client, "bench-direct").await?);
    }
    let mut bodies = Vec::new();
    for i in 0..2 * samples {
        let mut per_spoke = Vec::new();
        for (spoke, target) in spokes.iter().zip(&targets) {
            per_spoke.push((
                spoke.client.clone(),
                workloads_of(spoke, i, &target.name).await?,
            ));
        }
        bodies.push(per_spoke);
    }
    // One class on every spoke: done when the slowest spoke is.
    let apply_class = |per_spoke: Vec<(Client, Vec<Value>)>| async move {
        let took = futures::future::try_join_all(
            per_spoke
                .into_iter()
                .map(|(client, objects)| apply_directly(client, objects)),
        )
        .await?;
        anyhow::Ok(took.into_iter().max().unwrap_or_default())
    };
    let mut bodies = bodies.into_iter();
    let mut one_at_a_time = Vec::with_capacity(samples);
    for per_spoke in bodies.by_ref().take(samples) {
        one_at_a_time.push(apply_class(per_spoke).await?);
    }
    let all_at_once = futures::future::try_join_all(bodies.map(apply_class)).await?;
    let what = "direct: server-side apply of the same objects to all spokes";
    let p50 = [
        latencies(rows, "direct.apply", what, one_at_a_time, 1),
        latencies(rows, "direct.apply", what, all_at_once, samples),
    ];
    for target in targets {
        target.delete_within(Duration::from_secs(300)).await?;
    }
    Ok(p50)
}
