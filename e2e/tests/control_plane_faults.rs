//! Faults of the parts every other test depends on: a spoke's API server stopped and started
//! again, the hub's API server restarted, a spoke that answers slower than the deadline.
//! Each test ends with the system converged: every class Available on every spoke, running
//! the latest package, once.
//!
//! Stopping an API server disturbs whatever else uses that cluster, so these tests run one at
//! a time (`SERIAL`) in a test binary of their own (cargo runs test binaries one after the
//! other). The clusters' components are stopped and started by `oaas_e2e::control_plane`.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::ListParams;
use oaas_crds::cluster::ClusterHealth;
use oaas_crds::common::Phase;
use oaas_crds::{ClassRuntime, OClassDeployment};
use oaas_e2e::{
    Fleet, FleetSpoke, Pm, control_plane, image_of, kubectl_with_input, wait_cluster_health,
    wait_for,
};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Packages p0..p{count}, each with one class deployed to every cluster of the fleet.
fn apply_classes(fleet: &Fleet, count: usize, image: &str) -> anyhow::Result<()> {
    let targets = fleet.cluster_names().join(", ");
    let manifests: String = (0..count)
        .map(|i| {
            format!(
                "apiVersion: oaas.io/v1alpha1\nkind: OPackage\nmetadata: {{name: p{i}}}\nspec:\n  classes: [{{key: C, functionBindings: [{{name: f, functionKey: f}}]}}]\n  functions: [{{key: f, provisionConfig: {{containerImage: \"{image}\", minScale: 1, maxScale: 1}}}}]\n---\napiVersion: oaas.io/v1alpha1\nkind: OClassDeployment\nmetadata: {{name: d{i}}}\nspec: {{package: p{i}, classKey: C, targetClusters: [{targets}]}}\n---\n"
            )
        })
        .collect();
    kubectl_with_input(
        &fleet.hub,
        &["apply", "-n", &fleet.ns.name, "-f", "-"],
        &manifests,
    )?;
    Ok(())
}

async fn class_deployments(fleet: &Fleet) -> anyhow::Result<Vec<OClassDeployment>> {
    let api: Api<OClassDeployment> = Api::namespaced(fleet.hub_client.clone(), &fleet.ns.name);
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Waits until all `count` class deployments are in `phase`, each checked by `also`.
async fn wait_all(
    fleet: &Fleet,
    count: usize,
    phase: Phase,
    also: impl Fn(&OClassDeployment) -> bool,
) -> anyhow::Result<()> {
    wait_for(
        &format!("{count} class deployments {phase:?}"),
        Duration::from_secs(180),
        || async {
            let all = class_deployments(fleet).await?;
            let matching = all
                .iter()
                .filter(|cd| cd.status.as_ref().and_then(|s| s.phase) == Some(phase) && also(cd));
            Ok((all.len() == count && matching.count() == count).then_some(()))
        },
    )
    .await
}

/// The Degraded condition's message of a class deployment.
fn degraded_message(cd: &OClassDeployment) -> String {
    let conditions = cd.status.as_ref().map(|s| s.conditions.as_slice());
    conditions
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The functions' Deployments of a spoke, by name, with their images.
async fn images(spoke: &FleetSpoke) -> anyhow::Result<BTreeMap<String, String>> {
    let api: Api<Deployment> = Api::namespaced(spoke.client.clone(), &spoke.ns.name);
    let selector = ListParams::default().labels("app.kubernetes.io/name=oaas-function");
    Ok(api
        .list(&selector)
        .await?
        .items
        .iter()
        .map(|d| (d.metadata.name.clone().unwrap_or_default(), image_of(d)))
        .collect())
}

async fn wait_images(spoke: &FleetSpoke, count: usize, image: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("{count} functions on {} running {image}", spoke.context),
        Duration::from_secs(120),
        || async {
            let images = images(spoke).await?;
            Ok((images.len() == count && images.values().all(|i| i == image)).then_some(()))
        },
    )
    .await
}

/// Converged: every class Available, and every spoke holds each class once, on `image`, at
/// the revision the hub reports for it (the hub's status may trail the spoke for a moment:
/// a class Available at its previous revision counts as Available until it re-rolls).
async fn assert_converged(fleet: &Fleet, count: usize, image: &str) -> anyhow::Result<()> {
    wait_all(fleet, count, Phase::Available, |_| true).await?;
    for spoke in &fleet.spokes {
        wait_images(spoke, count, image).await?;
    }
    wait_for(
        "the hub reporting the revision each spoke holds",
        Duration::from_secs(60),
        || async {
            let deployments = class_deployments(fleet).await?;
            for spoke in &fleet.spokes {
                let runtimes: Api<ClassRuntime> =
                    Api::namespaced(spoke.client.clone(), &spoke.ns.name);
                let runtimes = runtimes.list(&ListParams::default()).await?.items;
                assert_eq!(
                    runtimes.len(),
                    count,
                    "{}: one ClassRuntime per class",
                    spoke.context
                );
                for runtime in runtimes {
                    let on_hub = deployments
                        .iter()
                        .flat_map(|cd| cd.status.iter().flat_map(|s| s.clusters.iter()))
                        .find(|c| {
                            c.cluster == spoke.cluster
                                && c.deployment_id == runtime.spec.deployment_id
                        })
                        .and_then(|c| c.revision);
                    if on_hub != runtime.spec.revision {
                        return Ok(None);
                    }
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_spoke_whose_api_server_stops_turns_unreachable_and_catches_up_when_it_returns()
-> anyhow::Result<()> {
    const CLASSES: usize = 3;
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::start("cp-spoke-api", &[], &[]).await?;
    apply_classes(&fleet, CLASSES, "img/f:1")?;
    wait_all(&fleet, CLASSES, Phase::Available, |_| true).await?;

    let (up, down) = (&fleet.spokes[0], &fleet.spokes[1]);
    control_plane("stop", &down.context, "kube-apiserver")?;
    let while_down = async {
        let within = Duration::from_secs(60);
        wait_cluster_health(
            &fleet.clusters(),
            &down.cluster,
            ClusterHealth::Unreachable,
            within,
        )
        .await?;
        wait_all(&fleet, CLASSES, Phase::Degraded, |cd| {
            degraded_message(cd).contains(&format!("cluster {} is unreachable", down.cluster))
        })
        .await?;
        // A change made meanwhile reaches the spoke that is up at once.
        apply_classes(&fleet, CLASSES, "img/f:2")?;
        wait_images(up, CLASSES, "img/f:2").await
    }
    .await;
    control_plane("start", &down.context, "kube-apiserver")?;
    while_down?;

    let within = Duration::from_secs(60);
    wait_cluster_health(
        &fleet.clusters(),
        &down.cluster,
        ClusterHealth::Healthy,
        within,
    )
    .await?;
    assert_converged(&fleet, CLASSES, "img/f:2").await?;
    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_leading_pm_resumes_its_watches_after_the_hub_api_server_restarts() -> anyhow::Result<()>
{
    const CLASSES: usize = 3;
    let _serial = SERIAL.lock().await;
    let mut fleet = Fleet::start("cp-hub-api", &[], &[]).await?;
    // A PM that leads through a Lease: the outage is shorter than the lease, so it must keep
    // leading (and running) through it.
    fleet.pm.process.kill();
    let selector = format!("{}={}", oaas_e2e::E2E_CLUSTER_LABEL, fleet.ns.name);
    let leader = [
        ("OAAS_PM_LEADER_ELECTION", "true"),
        ("OAAS_PM_LEASE_NAMESPACE", fleet.ns.name.as_str()),
        ("OAAS_PM_LEASE_DURATION_SECS", "30"),
    ];
    fleet.pm = Pm::start_with(&fleet.hub, &fleet.ns.name, &selector, &leader).await?;
    apply_classes(&fleet, 1, "img/f:1")?;
    wait_all(&fleet, 1, Phase::Available, |_| true).await?;

    control_plane("stop", &fleet.hub, "kube-apiserver")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    control_plane("start", &fleet.hub, "kube-apiserver")?;

    // After the restart a changed package and two new class deployments are all reconciled:
    // the PM's watches of packages, class deployments and clusters came back.
    apply_classes(&fleet, CLASSES, "img/f:2")?;
    assert_converged(&fleet, CLASSES, "img/f:2").await?;
    assert!(
        fleet.pm.process.running(),
        "the PM kept running through the outage"
    );
    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_spoke_slower_than_the_deadline_degrades_alone_and_converges_on_the_latest_package()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::start("cp-slow", &[], &[]).await?;
    apply_classes(&fleet, 1, "img/f:1")?;
    wait_all(&fleet, 1, Phase::Available, |_| true).await?;

    // The CRM stops answering (its OCluster's deadline is 3 s) while two package changes are
    // made; afterwards it answers everything that queued up, late.
    let (fast, slow) = (&fleet.spokes[0], &fleet.spokes[1]);
    slow.crm.process.pause()?;
    let while_slow = async {
        apply_classes(&fleet, 1, "img/f:2")?;
        wait_images(fast, 1, "img/f:2").await?;
        wait_all(&fleet, 1, Phase::Degraded, |cd| {
            degraded_message(cd).contains(&slow.cluster)
        })
        .await?;
        apply_classes(&fleet, 1, "img/f:3")?;
        wait_images(fast, 1, "img/f:3").await
    }
    .await;
    slow.crm.process.resume()?;
    while_slow?;

    assert_converged(&fleet, 1, "img/f:3").await?;
    // The late answers changed nothing after that.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_converged(&fleet, 1, "img/f:3").await?;
    fleet.delete().await
}
