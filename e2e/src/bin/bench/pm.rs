//! The whole system: apply → workloads on every spoke, spoke change → hub status, and many
//! class deployments to Available, with the PM's memory.
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use oaas_crds::common::Phase;
use oaas_crds::{OClassDeployment, OCluster, OPackage};
use oaas_e2e::{
    Crm, E2E_CLUSTER_LABEL, Pm, TestNamespace, client_for, hub_context, install_all_crds,
    spoke_contexts, wait_for,
};
use serde_json::json;

use super::{Row, cache, env_number, percentile, rss_mib};

struct Spoke {
    client: Client,
    ns: TestNamespace,
    _crm: Crm,
}

fn mk_package(i: usize) -> anyhow::Result<OPackage> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "oaas.io/v1alpha1", "kind": "OPackage", "metadata": {"name": format!("p{i}")},
        "spec": {
            "classes": [{"key": "C", "functionBindings": [{"name": "f", "functionKey": "f"}]}],
            "functions": [{"key": "f", "provisionConfig": {"containerImage": "img/f:1", "minScale": 1, "maxScale": 1}}]
        }
    }))?)
}

fn mk_deployment(i: usize, clusters: &[String]) -> anyhow::Result<OClassDeployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "oaas.io/v1alpha1", "kind": "OClassDeployment", "metadata": {"name": format!("d{i}")},
        "spec": {"package": format!("p{i}"), "classKey": "C", "targetClusters": clusters}
    }))?)
}

fn available(cd: &OClassDeployment) -> bool {
    cd.status
        .as_ref()
        .is_some_and(|s| s.phase == Some(Phase::Available))
}

pub async fn bench_pm(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let samples = env_number("BENCH_PM_SAMPLES", 50);
    let total = env_number("BENCH_PM_DEPLOYMENTS", 500).max(samples);
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
        let spoke_ns = TestNamespace::create(&client, "bench-pm-spoke").await?;
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
            _crm: crm,
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
        spoke_caches.push(cache(Api::<Deployment>::namespaced(
            spoke.client.clone(),
            &spoke.ns.name,
        )));
    }
    hub_cache.wait_until_ready().await?;
    for (store, _) in &spoke_caches {
        store.wait_until_ready().await?;
    }

    // Apply → the function's Deployment exists in every spoke, one deployment at a time.
    let mut applied = Vec::with_capacity(samples);
    for i in 0..samples {
        packages
            .create(&PostParams::default(), &mk_package(i)?)
            .await?;
        let started = Instant::now();
        deployments
            .create(&PostParams::default(), &mk_deployment(i, &clusters)?)
            .await?;
        let child = format!("p{i}-c-f");
        loop {
            let everywhere = spokes.iter().zip(&spoke_caches).all(|(spoke, (store, _))| {
                store
                    .get(&ObjectRef::new(&child).within(&spoke.ns.name))
                    .is_some()
            });
            if everywhere {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{child} did not reach every spoke"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        applied.push(started.elapsed());
    }
    applied.sort();
    rows.push(Row {
        name: format!("pm: apply → workloads on all spokes, p50 ({samples}, 1 in flight)"),
        value: percentile(&applied, 0.5),
        unit: "ms",
    });
    rows.push(Row {
        name: format!("pm: apply → workloads on all spokes, p99 ({samples}, 1 in flight)"),
        value: percentile(&applied, 0.99),
        unit: "ms",
    });

    // Spoke change → hub status: delete a function's Deployment in the first spoke; the hub
    // sees that cluster leave Available (the CRM puts it back at once).
    wait_for(
        "the sampled deployments Available",
        Duration::from_secs(120),
        || async {
            Ok((0..samples)
                .all(|i| {
                    hub_cache
                        .get(&ObjectRef::new(&format!("d{i}")).within(&ns.name))
                        .is_some_and(|cd| available(&cd))
                })
                .then_some(()))
        },
    )
    .await?;
    let first = &spokes[0];
    let spoke_deployments: Api<Deployment> = Api::namespaced(first.client.clone(), &first.ns.name);
    let mut propagated = Vec::with_capacity(samples);
    for i in 0..samples {
        let key = ObjectRef::new(&format!("d{i}")).within(&ns.name);
        let started = Instant::now();
        spoke_deployments
            .delete(&format!("p{i}-c-f"), &DeleteParams::default())
            .await?;
        loop {
            let cd = hub_cache.get(&key);
            let seen = cd
                .as_ref()
                .and_then(|cd| cd.status.as_ref())
                .is_some_and(|s| {
                    s.clusters
                        .iter()
                        .any(|c| c.cluster == clusters[0] && c.phase != Some(Phase::Available))
                });
            if seen {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "hub never saw d{i} change"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        propagated.push(started.elapsed());
    }
    propagated.sort();
    rows.push(Row {
        name: format!("pm: spoke change → hub status, p50 ({samples})"),
        value: percentile(&propagated, 0.5),
        unit: "ms",
    });
    rows.push(Row {
        name: format!("pm: spoke change → hub status, p99 ({samples})"),
        value: percentile(&propagated, 0.99),
        unit: "ms",
    });

    // Many class deployments × every spoke to Available.
    let started = Instant::now();
    futures::stream::iter(samples..total)
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
    rows.push(Row {
        name: format!("pm: {total} class deployments × {n} spokes to Available"),
        value: started.elapsed().as_secs_f64(),
        unit: "s",
    });
    rows.push(Row {
        name: format!("pm: resident memory with {total} class deployments"),
        value: rss_mib(pm.process.pid()),
        unit: "MiB",
    });

    // Clean up while the operators still run, so every finalizer is honoured.
    let _ = deployments
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await?;
    wait_for(
        "class deployments deleted",
        Duration::from_secs(600),
        || async {
            Ok(deployments
                .list(&Default::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    for name in &clusters {
        oclusters.delete(name, &DeleteParams::default()).await?;
    }
    hub_driver.abort();
    for (_, driver) in spoke_caches {
        driver.abort();
    }
    ns.delete_within(Duration::from_secs(300)).await?;
    for spoke in spokes {
        spoke.ns.delete_within(Duration::from_secs(300)).await?;
    }
    drop(pm);
    Ok(())
}
