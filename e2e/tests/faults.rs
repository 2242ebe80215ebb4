//! Faults during rollouts: a CRM or the PM killed with SIGKILL while 50 class deployments
//! roll out to both spokes, then started again. Each test ends with everything Available and
//! every spoke running each class exactly once: nothing lost, nothing duplicated.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use oaas_crds::common::Phase;
use oaas_crds::{ClassRuntime, OClassDeployment};
use oaas_e2e::{Crm, Fleet, Pm, kubectl_with_input, wait_for};

const DEPLOYMENTS: usize = 50;

/// A package per deployment: a spoke names a ClassRuntime after its package and class.
fn manifests(clusters: &[String]) -> String {
    (0..DEPLOYMENTS)
        .map(|i| {
            format!(
                "apiVersion: oaas.io/v1alpha1\nkind: OPackage\nmetadata: {{name: p{i}}}\nspec:\n  classes: [{{key: C, functionBindings: [{{name: f, functionKey: f}}]}}]\n  functions: [{{key: f, provisionConfig: {{containerImage: img/f:1, minScale: 1, maxScale: 1}}}}]\n---\napiVersion: oaas.io/v1alpha1\nkind: OClassDeployment\nmetadata: {{name: d{i}}}\nspec: {{package: p{i}, classKey: C, targetClusters: [{}]}}\n---\n",
                clusters.join(", ")
            )
        })
        .collect()
}

async fn available(fleet: &Fleet) -> anyhow::Result<usize> {
    let deployments: Api<OClassDeployment> =
        Api::namespaced(fleet.hub_client.clone(), &fleet.ns.name);
    let list = deployments.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(Phase::Available))
        })
        .count())
}

/// Waits until at least `count` class deployments are Available; how many were.
async fn wait_available(fleet: &Fleet, count: usize) -> anyhow::Result<usize> {
    let last = std::sync::Mutex::new(0);
    let what = format!("{count} class deployments Available");
    let done = wait_for(&what, Duration::from_secs(300), || async {
        let now = available(fleet).await?;
        *last.lock().unwrap() = now;
        Ok((now >= count).then_some(now))
    })
    .await;
    match done {
        Ok(n) => Ok(n),
        Err(e) => {
            let lagging = not_available(fleet).await.unwrap_or_default();
            let n = *last.lock().unwrap();
            anyhow::bail!("{e}; {n} of {DEPLOYMENTS} Available; not Available: {lagging}")
        }
    }
}

/// Each class deployment that is not Available, with its phase and each cluster's phase and
/// message: what a timeout needs to say to be looked into.
async fn not_available(fleet: &Fleet) -> anyhow::Result<String> {
    let deployments: Api<OClassDeployment> =
        Api::namespaced(fleet.hub_client.clone(), &fleet.ns.name);
    let list = deployments.list(&ListParams::default()).await?;
    let lagging: Vec<String> = list
        .items
        .iter()
        .filter_map(|d| {
            let status = d.status.clone().unwrap_or_default();
            (status.phase != Some(Phase::Available)).then(|| {
                let clusters: Vec<String> = status
                    .clusters
                    .iter()
                    .map(|c| format!("{}: {:?} {:?}", c.cluster, c.phase, c.message))
                    .collect();
                format!(
                    "{} {:?} [{}]",
                    d.name_any(),
                    status.phase,
                    clusters.join("; ")
                )
            })
        })
        .collect();
    Ok(lagging.join(", "))
}

/// Applies the 50; returns once the rollout is under way but not done.
async fn start_rollout(fleet: &Fleet) -> anyhow::Result<()> {
    let apply = ["apply", "-n", &fleet.ns.name, "-f", "-"];
    kubectl_with_input(&fleet.hub, &apply, &manifests(&fleet.cluster_names()))?;
    let reached = wait_available(fleet, 3).await?;
    assert!(
        reached < DEPLOYMENTS,
        "the fault must come mid rollout ({reached} Available)"
    );
    Ok(())
}

/// Every spoke runs each class once: one ClassRuntime per deployment id, one Deployment each.
async fn assert_each_spoke_runs_each_class_once(fleet: &Fleet) -> anyhow::Result<()> {
    for spoke in &fleet.spokes {
        let runtimes: Api<ClassRuntime> = Api::namespaced(spoke.client.clone(), &spoke.ns.name);
        let mut ids: Vec<String> = runtimes
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|r| r.spec.deployment_id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), DEPLOYMENTS, "{}: {ids:?}", spoke.context);
        let workloads: Api<Deployment> = Api::namespaced(spoke.client.clone(), &spoke.ns.name);
        let functions = workloads
            .list(&ListParams::default().labels("app.kubernetes.io/name=oaas-function"))
            .await?
            .items
            .len();
        assert_eq!(
            functions, DEPLOYMENTS,
            "{}: one Deployment per class",
            spoke.context
        );
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_crm_killed_during_fifty_rollouts_comes_back_and_every_class_runs_once()
-> anyhow::Result<()> {
    let mut fleet = Fleet::start("fault-crm", &[], &[]).await?;
    start_rollout(&fleet).await?;
    let port = fleet.spokes[1].crm.port;
    fleet.spokes[1].crm.process.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spoke = &mut fleet.spokes[1];
    spoke.crm = Crm::start_on(port, &spoke.context, &spoke.ns.name, &[]).await?;
    wait_available(&fleet, DEPLOYMENTS).await?;
    assert_each_spoke_runs_each_class_once(&fleet).await?;
    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_pm_killed_mid_fan_out_restarts_and_every_class_runs_once() -> anyhow::Result<()> {
    let mut fleet = Fleet::start("fault-pm", &[], &[]).await?;
    start_rollout(&fleet).await?;
    fleet.pm.process.kill();
    let selector = format!("{}={}", oaas_e2e::E2E_CLUSTER_LABEL, fleet.ns.name);
    fleet.pm = Pm::start_with(&fleet.hub, &fleet.ns.name, &selector, &[]).await?;
    wait_available(&fleet, DEPLOYMENTS).await?;
    assert_each_spoke_runs_each_class_once(&fleet).await?;
    fleet.delete().await
}
