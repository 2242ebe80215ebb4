//! `bench scale`: the hub with many spokes. Every spoke is a real CRM process with its own
//! OCluster, gRPC port and namespaces; the spokes share the two spoke API servers (spoke `i`
//! uses the `i mod 2`-th), so per-spoke figures include that sharing. OClusters carry
//! `region`, `tier` and `cell` labels; each class deployment selects one cell, three spokes.
//!
//! Phases: register the spokes → all Healthy; apply → workloads on the 3 target spokes, one
//! at a time; spoke change → hub status; all class deployments → Available, against a direct
//! baseline that server-side applies the same rendered objects into the same spoke
//! namespaces and waits for the same readiness; the PM's memory; one CRM holding many
//! ClassRuntimes (memory, time to reconcile all).
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use oaas_crds::{OClassDeployment, OCluster, OPackage};
use oaas_e2e::{
    Crm, E2E_CLUSTER_LABEL, Pm, TestNamespace, client_for, hub_context, install_all_crds,
    spoke_contexts, wait_for,
};
use oaas_proto::deployment::deployment_service_client::DeploymentServiceClient;
use serde_json::{Value, json};

use super::direct_sync::{DIRECT_SYNC, SyncSite, direct_status_sync};
use super::pm::{
    ChangeSite, SYNC_HUB_PART, SYNC_RECREATE_PART, SYNC_REPORT_PART, apply_directly, available,
    delete_all, mk_package, spoke_change, strip_for_apply, sync_stages, until_available,
};
use super::{
    Row, cache, empty, emptying, env_number, fill, percentile, rss_mib, with_peak_rss_mib,
};

/// Spokes each class deployment runs on (one cell).
const PER_CELL: usize = 3;

struct ScaleSpoke {
    /// Index into the spoke API servers (contexts).
    server: usize,
    crm_ns: TestNamespace,
    crm: Crm,
    cluster: String,
    /// The spoke namespace the hub namespace maps to (`s<i>-<hub namespace>`).
    workloads: String,
}

/// The OCluster of spoke `i`: `cell` groups spokes by three (the last, incomplete cell is
/// left without one), `region` and `tier` spread them for selectors.
fn mk_cluster(i: usize, cells: usize, owner: &str, endpoint: &str) -> anyhow::Result<OCluster> {
    let mut labels = json!({E2E_CLUSTER_LABEL: owner, "region": format!("r{}", i % 5),
                            "tier": if i.is_multiple_of(2) { "gold" } else { "silver" }});
    if i / PER_CELL < cells {
        labels["cell"] = json!(format!("c{}", i / PER_CELL));
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "oaas.io/v1alpha1", "kind": "OCluster",
        "metadata": {"name": format!("{owner}-s{i}"), "labels": labels},
        "spec": {"endpoint": endpoint, "namespacePrefix": format!("s{i}-")}
    }))?)
}

fn mk_deployment(name: &str, cell: usize) -> anyhow::Result<OClassDeployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "oaas.io/v1alpha1", "kind": "OClassDeployment", "metadata": {"name": name},
        "spec": {"package": "p0", "classKey": "C",
                 "clusterSelector": {"matchLabels": {"cell": format!("c{cell}")}}}
    }))?)
}

/// Spokes of `cell`.
fn cell_of(spokes: &[ScaleSpoke], cell: usize) -> &[ScaleSpoke] {
    &spokes[cell * PER_CELL..(cell + 1) * PER_CELL]
}

fn ms_rows(rows: &mut Vec<Row>, id: &str, what: &str, mut took: Vec<Duration>) {
    took.sort();
    let n = took.len();
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        rows.push(Row::new(
            format!("{id}_{label}_ms"),
            format!("{what}, {label} ({n})"),
            percentile(&took, p),
            "ms",
        ));
    }
}

/// Waits until the function Deployment of class deployment `name` exists in every spoke of
/// `cell`; how long since `started`.
async fn until_in_cell(
    caches: &[Store<Deployment>],
    spokes: &[ScaleSpoke],
    cell: usize,
    name: &str,
    started: Instant,
) -> anyhow::Result<Duration> {
    let child = format!("{name}-f");
    loop {
        let everywhere = cell_of(spokes, cell).iter().all(|s| {
            caches[s.server]
                .get(&ObjectRef::new(&child).within(&s.workloads))
                .is_some()
        });
        if everywhere {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{child} did not reach cell c{cell}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn bench_scale(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let count = env_number("BENCH_SCALE_SPOKES", 100).max(PER_CELL);
    let total = env_number("BENCH_SCALE_DEPLOYMENTS", 1000);
    let samples = env_number("BENCH_SCALE_SAMPLES", 50);
    let runtimes = env_number("BENCH_SCALE_RUNTIMES", 10_000);
    let cells = count / PER_CELL;
    install_all_crds().await?;
    let hub = client_for(&hub_context()).await?;
    let ns = TestNamespace::create(&hub, "bench-scale").await?;
    let contexts = spoke_contexts();
    let mut clients = Vec::new();
    for context in &contexts {
        clients.push(client_for(context).await?);
    }

    // The spokes' CRMs, each in a namespace of its own (its identity). A CRM reconciles up to
    // 64 runtimes at once (its default) against its spoke's API server; here ~50 CRMs share
    // one, so each gets its share of that: the API server sees the load of one CRM. At 64
    // each, the shared servers timed out most Service creates (504 after ~33 s each).
    let per_server = count.div_ceil(contexts.len());
    let concurrency = 64usize.div_ceil(per_server).to_string();
    let env = [
        ("OPRC_CRM_FEATURES_ODGM", "false"),
        ("OPRC_CRM_PROGRESS_REQUEUE_SECS", "10"),
        ("OPRC_CRM_MAX_CONCURRENT_RECONCILES", concurrency.as_str()),
    ];
    let spokes: Vec<ScaleSpoke> = futures::stream::iter(0..count)
        .map(|i| {
            let (server, ns) = (i % contexts.len(), ns.name.clone());
            let (context, client) = (contexts[server].clone(), clients[server].clone());
            async move {
                let crm_ns =
                    TestNamespace::create_named(&client, "bench-scale", &format!("{ns}-crm{i}"))
                        .await?;
                let crm = Crm::start(&context, &crm_ns.name, &env).await?;
                anyhow::Ok(ScaleSpoke {
                    server,
                    crm_ns,
                    crm,
                    cluster: format!("{ns}-s{i}"),
                    workloads: format!("s{i}-{ns}"),
                })
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let selector = format!("{E2E_CLUSTER_LABEL}={}", ns.name);
    let pm = Pm::start(&hub_context(), &ns.name, &selector).await?;

    // Register every spoke → all Healthy.
    let oclusters: Api<OCluster> = Api::all(hub.clone());
    let started = Instant::now();
    futures::stream::iter(spokes.iter().enumerate())
        .map(|(i, spoke)| {
            let (oclusters, owner) = (oclusters.clone(), ns.name.clone());
            async move {
                let cluster = mk_cluster(i, cells, &owner, &spoke.crm.endpoint)?;
                oclusters.create(&PostParams::default(), &cluster).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    wait_for(
        &format!("{count} spokes Healthy"),
        Duration::from_secs(300),
        || async {
            let healthy = oclusters
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .filter(|c| {
                    c.status.as_ref().map(|s| s.health)
                        == Some(oaas_crds::cluster::ClusterHealth::Healthy)
                })
                .count();
            Ok((healthy >= count).then_some(()))
        },
    )
    .await?;
    rows.push(Row::new(
        "scale.spokes",
        format!(
            "scale: spokes (CRM processes over {} API servers)",
            contexts.len()
        ),
        count as f64,
        "spokes",
    ));
    rows.push(Row::new(
        "scale.spokes_healthy_s",
        format!("scale: {count} spokes registered → all Healthy"),
        started.elapsed().as_secs_f64(),
        "s",
    ));
    // What healthy spokes cost the hub with nothing changing: the PM's health checks (every
    // 10 s each) write only what changed, and refresh the check times at the first check a
    // minute after the last write, so every 60–70 s. The spokes turned Healthy within a
    // second or two of each other: the window starts half a period later, away from their
    // refreshes, and spans two periods, so it holds two refreshes of each spoke.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let window = Duration::from_secs(130);
    rows.push(Row::new(
        "scale.ocluster_writes_per_s_at_rest",
        format!(
            "scale: OCluster status writes on the hub, {count} healthy spokes, nothing changing"
        ),
        super::writes::rate(&hub, &["oclusters/status"], window).await?,
        "writes/s",
    ));

    let packages: Api<OPackage> = Api::namespaced(hub.clone(), &ns.name);
    packages
        .create(&PostParams::default(), &mk_package(0)?)
        .await?;
    let deployments: Api<OClassDeployment> = Api::namespaced(hub.clone(), &ns.name);
    let (hub_cache, hub_driver) = cache(deployments.clone());
    let mut caches = Vec::new();
    let mut drivers = vec![hub_driver];
    for client in &clients {
        let (store, driver) = cache(Api::<Deployment>::all(client.clone()));
        store.wait_until_ready().await?;
        caches.push(store);
        drivers.push(driver);
    }
    hub_cache.wait_until_ready().await?;

    // Apply → workloads on the 3 target spokes, one at a time (each Available before the
    // next), every spoke registered.
    let mut took = Vec::with_capacity(samples);
    for k in 0..samples {
        let name = format!("l{k}");
        let started = Instant::now();
        deployments
            .create(&PostParams::default(), &mk_deployment(&name, k % cells)?)
            .await?;
        took.push(until_in_cell(&caches, &spokes, k % cells, &name, started).await?);
        until_available(&hub_cache, &ObjectRef::new(&name).within(&ns.name)).await?;
    }
    ms_rows(
        rows,
        "scale.apply",
        &format!("scale: apply → workloads on 3 of {count} spokes, 1 in flight"),
        took,
    );

    // Spoke change → hub status, every spoke streaming: a function Deployment deleted in a
    // target spoke; the hub sees that cluster leave Available.
    let mut propagated = Vec::with_capacity(samples);
    for k in 0..samples {
        let target = &cell_of(&spokes, k % cells)[0];
        let site = ChangeSite {
            functions: Api::namespaced(clients[target.server].clone(), &target.workloads),
            cache: &caches[target.server],
            crm: &target.crm.endpoint,
            cluster: &target.cluster,
        };
        let key = ObjectRef::new(&format!("l{k}")).within(&ns.name);
        propagated.push(spoke_change(site, &hub_cache, &key).await?);
    }
    let [whole, recreate, report, hub_part] = sync_stages(&propagated);
    let what = format!("scale: spoke change → hub status, {count} spokes streaming");
    ms_rows(rows, "scale.status_sync", &what, whole);
    for (id, what, took) in [
        ("scale.stage_sync_recreate", SYNC_RECREATE_PART, recreate),
        ("scale.stage_sync_report", SYNC_REPORT_PART, report),
        ("scale.stage_sync_hub", SYNC_HUB_PART, hub_part),
    ] {
        ms_rows(rows, id, &format!("scale: {what}"), took);
    }
    // Its baseline: the same watches and writes, with none of our code in the path, on the
    // first cell's spokes of each spoke API server.
    let sites: Vec<SyncSite> = cell_of(&spokes, 0)[..contexts.len().min(PER_CELL)]
        .iter()
        .map(|spoke| SyncSite {
            spoke: &clients[spoke.server],
            namespace: &spoke.workloads,
            cluster: &spoke.cluster,
        })
        .collect();
    let direct = direct_status_sync(&hub, &ns.name, "l0", &sites, samples).await?;
    let what = format!("scale: {DIRECT_SYNC}, {count} spokes streaming");
    ms_rows(rows, "scale.direct_status_sync", &what, direct);

    // Every class deployment × its 3 spokes → Available.
    let started = Instant::now();
    futures::stream::iter(0..total)
        .map(|k| {
            let deployments = deployments.clone();
            async move {
                let deployment = mk_deployment(&format!("d{k}"), k % cells)?;
                deployments
                    .create(&PostParams::default(), &deployment)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    wait_for(
        &format!("{total} class deployments Available"),
        Duration::from_secs(3600),
        || async {
            Ok((0..total)
                .all(|k| {
                    let key = ObjectRef::new(&format!("d{k}")).within(&ns.name);
                    hub_cache.get(&key).is_some_and(|cd| available(&cd))
                })
                .then_some(()))
        },
    )
    .await?;
    let ours = started.elapsed().as_secs_f64();
    rows.push(Row::new(
        "scale.deployments",
        format!("scale: class deployments, {PER_CELL} spokes each"),
        total as f64,
        "deployments",
    ));
    rows.push(Row::new(
        "scale.all_available_s",
        format!("scale: {total} class deployments × {PER_CELL} spokes → Available"),
        ours,
        "s",
    ));
    rows.push(Row::new(
        "scale.pm_rss_mib",
        format!(
            "scale: PM resident memory, {count} spokes and {} class deployments",
            total + samples
        ),
        rss_mib(pm.process.pid()),
        "MiB",
    ));

    // The direct baseline: what the CRMs rendered, taken out, applied again straight into
    // the same spoke namespaces, until the same readiness.
    let mut rendered: Vec<(usize, Vec<Value>)> = Vec::new();
    for k in 0..total {
        for spoke in cell_of(&spokes, k % cells) {
            let objects = rendered_objects(&clients[spoke.server], &spoke.workloads, k).await?;
            rendered.push((spoke.server, objects));
        }
    }
    delete_all(&deployments, Duration::from_secs(1800)).await?;
    for spoke in &spokes {
        wait_for(
            &format!("namespace {} removed", spoke.workloads),
            Duration::from_secs(300),
            || async {
                let namespaces = Api::<Namespace>::all(clients[spoke.server].clone());
                Ok(namespaces
                    .get_opt(&spoke.workloads)
                    .await?
                    .is_none()
                    .then_some(()))
            },
        )
        .await?;
    }
    let mut direct_namespaces = Vec::new();
    for spoke in spokes.iter().take(cells * PER_CELL) {
        direct_namespaces.push(
            TestNamespace::create_named(&clients[spoke.server], "bench-scale", &spoke.workloads)
                .await?,
        );
    }
    let started = Instant::now();
    let expected = rendered.len();
    futures::stream::iter(rendered)
        .map(|(server, objects)| apply_directly(clients[server].clone(), objects))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    wait_for(
        &format!("{expected} directly applied Deployments available"),
        Duration::from_secs(3600),
        || async {
            let ready = caches
                .iter()
                .flat_map(|c| c.state())
                .filter(|d| {
                    let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
                    direct_namespaces.iter().any(|n| n.name == namespace)
                })
                .filter(|d| {
                    d.status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .is_some_and(|n| n >= 1)
                })
                .count();
            Ok((ready >= expected).then_some(()))
        },
    )
    .await?;
    let direct = started.elapsed().as_secs_f64();
    rows.push(Row::new(
        "scale.direct_all_available_s",
        "scale: direct: the same objects server-side applied → available",
        direct,
        "s",
    ));
    rows.push(Row::new(
        "scale.all_available_ratio_vs_direct",
        "scale: ours / direct, all Available",
        ours / direct,
        "×",
    ));
    futures::stream::iter(direct_namespaces)
        .map(|namespace| namespace.delete_within(Duration::from_secs(900)))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;

    // Deregister and clean up while the PM and the CRMs still run (their finalizers), then
    // one CRM with many ClassRuntimes.
    let registered = ListParams::default().labels(&selector);
    let _ = oclusters
        .delete_collection(&DeleteParams::default(), &registered)
        .await?;
    wait_for("spokes deregistered", Duration::from_secs(300), || async {
        Ok(oclusters
            .list(&registered)
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    for driver in drivers {
        driver.abort();
    }
    ns.delete_within(Duration::from_secs(300)).await?;
    drop(pm);
    futures::stream::iter(spokes)
        .map(|spoke| async move {
            // The CRM runs until its namespace is gone.
            let deleted = spoke.crm_ns.delete_within(Duration::from_secs(300)).await;
            drop(spoke.crm);
            deleted
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    crm_with_many_runtimes(rows, &contexts[0], &clients[0], runtimes).await
}

/// The Deployment and Service rendered for class deployment `d<k>` in `namespace`, ready
/// to be applied again.
async fn rendered_objects(
    client: &Client,
    namespace: &str,
    k: usize,
) -> anyhow::Result<Vec<Value>> {
    let name = format!("d{k}-f");
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(&name)
        .await?;
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get(&name)
        .await?;
    Ok(vec![
        strip_for_apply(serde_json::to_value(deployment)?, namespace),
        strip_for_apply(serde_json::to_value(service)?, namespace),
    ])
}

/// One CRM holding `runtimes` ClassRuntimes: how long until it reconciled all, and its
/// memory then.
async fn crm_with_many_runtimes(
    rows: &mut Vec<Row>,
    context: &str,
    client: &Client,
    runtimes: usize,
) -> anyhow::Result<()> {
    let ns = TestNamespace::create(client, "bench-scale-crm").await?;
    let env = [
        ("OPRC_CRM_FEATURES_ODGM", "false"),
        ("OPRC_CRM_PROGRESS_REQUEUE_SECS", "10"),
    ];
    let crm = Crm::start(context, &ns.name, &env).await?;
    let grpc = DeploymentServiceClient::connect(crm.endpoint.clone()).await?;
    let took = fill(&grpc, client, &ns.name, 0..runtimes).await?;
    rows.push(Row::new(
        "scale.crm_reconcile_10k_s",
        format!("scale: one CRM, {runtimes} ClassRuntimes deployed and reconciled"),
        took.as_secs_f64(),
        "s",
    ));
    rows.push(Row::new(
        "scale.crm_rss_mib_10k",
        format!("scale: CRM resident memory with {runtimes} ClassRuntimes"),
        rss_mib(crm.process.pid()),
        "MiB",
    ));
    let (took, peak) = with_peak_rss_mib(
        crm.process.pid(),
        empty(&grpc, client, &ns.name, 0..runtimes),
    )
    .await;
    rows.push(Row::new(
        "scale.crm_delete_10k_s",
        format!("scale: one CRM, {runtimes} ClassRuntimes deleted (DeleteDeployment) and gone"),
        took?.as_secs_f64(),
        "s",
    ));
    rows.push(Row::new(
        "scale.crm_rss_mib_peak_deleting_10k",
        format!(
            "scale: CRM's largest resident memory while its {runtimes} ClassRuntimes were deleted"
        ),
        peak,
        "MiB",
    ));
    ns.delete_within(emptying(runtimes)).await?;
    drop(crm);
    Ok(())
}
