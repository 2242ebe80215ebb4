//! The whole system: the PM on the hub and a CRM on each spoke, as processes, driven with
//! kubectl on the hub.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use oaas_crds::cluster::ClusterHealth;
use oaas_crds::{ClassRuntime, OClassDeployment, OCluster};
use oaas_e2e::{
    Crm, Pm, TestNamespace, client_for, hub_context, image_of, install_all_crds, kubectl,
    kubectl_with_input, repo_path, spoke_contexts, wait_for,
};

/// The sample package, and the sample class deployment pointed at this test's clusters.
fn samples(clusters: &[String]) -> anyhow::Result<(String, String)> {
    let package = std::fs::read_to_string(repo_path("manifests/samples/package.yaml"))?;
    let deployment = std::fs::read_to_string(repo_path("manifests/samples/classdeployment.yaml"))?
        .replace(
            "targetClusters: [spoke-a, spoke-b]",
            &format!("targetClusters: [{}]", clusters.join(", ")),
        );
    Ok((package, deployment))
}

async fn cluster_health(api: &Api<OCluster>, name: &str) -> anyhow::Result<ClusterHealth> {
    Ok(api.get(name).await?.status.unwrap_or_default().health)
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_class_deployment_reaches_both_spokes_survives_a_lost_crm_and_is_removed()
-> anyhow::Result<()> {
    install_all_crds().await?;
    let hub = hub_context();
    let hub_client = client_for(&hub).await?;
    let ns = TestNamespace::create(&hub_client, "pm").await?;
    let selector = format!("{}={}", oaas_e2e::E2E_CLUSTER_LABEL, ns.name);

    // A CRM per spoke, each in a namespace of its own.
    let mut spokes = Vec::new();
    for context in spoke_contexts() {
        let client = client_for(&context).await?;
        let spoke_ns = TestNamespace::create(&client, "pm-spoke").await?;
        let crm = Crm::start(&context, &spoke_ns.name, &[]).await?;
        spokes.push((context, client, spoke_ns, crm));
    }
    let cluster_names: Vec<String> = spokes
        .iter()
        .map(|(c, ..)| format!("{}-{}", ns.name, c.trim_start_matches("oaas-")))
        .collect();
    for ((_, _, _, crm), name) in spokes.iter().zip(&cluster_names) {
        let manifest = format!(
            "apiVersion: oaas.io/v1alpha1\nkind: OCluster\nmetadata:\n  name: {name}\n  labels: {{{}: {}}}\nspec:\n  endpoint: {}\n  timeoutSeconds: 3\n  healthCheckIntervalSeconds: 1\n  failureThreshold: 2\n  circuitOpenSeconds: 2\n",
            oaas_e2e::E2E_CLUSTER_LABEL,
            ns.name,
            crm.endpoint
        );
        kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
    }
    let _pm = Pm::start(&hub, &ns.name, &selector).await?;
    let clusters: Api<OCluster> = Api::all(hub_client.clone());
    for name in &cluster_names {
        wait_for(
            &format!("{name} Healthy"),
            Duration::from_secs(30),
            || async {
                Ok(
                    (cluster_health(&clusters, name).await? == ClusterHealth::Healthy)
                        .then_some(()),
                )
            },
        )
        .await?;
    }

    // Apply the sample package and class deployment with kubectl; wait for Available.
    let (package, deployment) = samples(&cluster_names)?;
    kubectl_with_input(&hub, &["apply", "-n", &ns.name, "-f", "-"], &package)?;
    kubectl_with_input(&hub, &["apply", "-n", &ns.name, "-f", "-"], &deployment)?;
    kubectl(
        &hub,
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Available",
            "classdeployment/record",
            "--timeout=60s",
        ],
    )?;
    let listed = kubectl(&hub, &["get", "classdeployments", "-n", &ns.name])?;
    assert!(
        listed.contains("2/2") && listed.contains("Available"),
        "{listed}"
    );
    for (context, client, spoke_ns, _) in &spokes {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &spoke_ns.name);
        let echo = deployments.get("example-record-echo").await?;
        assert_eq!(
            image_of(&echo),
            "ghcr.io/oaas-io/functions/echo:1.0.0",
            "{context}"
        );
        assert!(
            deployments.get_opt("example-record-odgm").await?.is_some(),
            "{context} has the data grid"
        );
    }

    // A new image in the package rolls both spokes.
    let updated = package.replace("functions/echo:1.0.0", "functions/echo:1.1.0");
    kubectl_with_input(&hub, &["apply", "-n", &ns.name, "-f", "-"], &updated)?;
    for (context, client, spoke_ns, _) in &spokes {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &spoke_ns.name);
        wait_for(
            &format!("echo 1.1.0 in {context}"),
            Duration::from_secs(30),
            || async {
                let d = deployments.get("example-record-echo").await?;
                Ok((image_of(&d) == "ghcr.io/oaas-io/functions/echo:1.1.0").then_some(()))
            },
        )
        .await?;
    }
    kubectl(
        &hub,
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Available",
            "classdeployment/record",
            "--timeout=60s",
        ],
    )?;

    // Losing spoke-b's CRM: its OCluster turns Unreachable and the deployment Degraded.
    let deployments: Api<OClassDeployment> = Api::namespaced(hub_client.clone(), &ns.name);
    let port_b = spokes[1].3.port;
    spokes[1].3.process.kill();
    let lost = std::time::Instant::now();
    wait_for("spoke-b Unreachable", Duration::from_secs(10), || async {
        Ok(
            (cluster_health(&clusters, &cluster_names[1]).await? == ClusterHealth::Unreachable)
                .then_some(()),
        )
    })
    .await?;
    println!("spoke-b Unreachable after {:?}", lost.elapsed());
    let degraded = wait_for("record Degraded", Duration::from_secs(20), || async {
        let cd = deployments.get("record").await?;
        let status = cd.status.unwrap_or_default();
        Ok(status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True"))
    })
    .await?;
    assert!(
        degraded.message.contains(&cluster_names[1]),
        "{}",
        degraded.message
    );

    // It comes back on the same address; everything recovers with no manual step.
    let (context_b, _, spoke_ns_b, _) = &spokes[1];
    let crm_b = Crm::start_on(port_b, context_b, &spoke_ns_b.name, &[]).await?;
    spokes[1].3 = crm_b;
    wait_for("spoke-b Healthy again", Duration::from_secs(30), || async {
        Ok(
            (cluster_health(&clusters, &cluster_names[1]).await? == ClusterHealth::Healthy)
                .then_some(()),
        )
    })
    .await?;
    kubectl(
        &hub,
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Available",
            "classdeployment/record",
            "--timeout=60s",
        ],
    )?;

    // Deleting the class deployment removes it from both spokes.
    kubectl(
        &hub,
        &[
            "delete",
            "-n",
            &ns.name,
            "classdeployment/record",
            "--timeout=60s",
        ],
    )?;
    for (context, client, spoke_ns, _) in &spokes {
        let runtimes: Api<ClassRuntime> = Api::namespaced(client.clone(), &spoke_ns.name);
        wait_for(
            &format!("ClassRuntime gone from {context}"),
            Duration::from_secs(30),
            || async {
                Ok(runtimes
                    .list(&Default::default())
                    .await?
                    .items
                    .is_empty()
                    .then_some(()))
            },
        )
        .await?;
    }

    for name in &cluster_names {
        kubectl(&hub, &["delete", "ocluster", name])?;
    }
    ns.delete().await?;
    for (_, _, spoke_ns, _) in spokes {
        spoke_ns.delete().await?;
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_selector_chosen_cluster_that_stays_unreachable_is_replaced() -> anyhow::Result<()> {
    install_all_crds().await?;
    let hub = hub_context();
    let hub_client = client_for(&hub).await?;
    let ns = TestNamespace::create(&hub_client, "failover").await?;
    let selector = format!("{}={}", oaas_e2e::E2E_CLUSTER_LABEL, ns.name);

    // Two CRMs on the first spoke, in two namespaces, registered as two clusters; the first
    // is more available, so a target of 0.5 places the class there alone.
    let context = spoke_contexts().remove(0);
    let spoke = client_for(&context).await?;
    let mut crms = Vec::new();
    for (suffix, availability) in [("best", 0.99), ("spare", 0.95)] {
        let spoke_ns = TestNamespace::create(&spoke, "failover-spoke").await?;
        let crm = Crm::start(&context, &spoke_ns.name, &[]).await?;
        let manifest = format!(
            "apiVersion: oaas.io/v1alpha1\nkind: OCluster\nmetadata:\n  name: {}-{suffix}\n  labels: {{{}: {}, tier: gold}}\nspec:\n  endpoint: {}\n  availability: {availability}\n  timeoutSeconds: 3\n  healthCheckIntervalSeconds: 1\n  failureThreshold: 2\n  circuitOpenSeconds: 2\n",
            ns.name,
            oaas_e2e::E2E_CLUSTER_LABEL,
            ns.name,
            crm.endpoint
        );
        kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
        crms.push((spoke_ns, crm));
    }
    let (best, spare) = (format!("{}-best", ns.name), format!("{}-spare", ns.name));
    let _pm = Pm::start(&hub, &ns.name, &selector).await?;

    let (package, _) = samples(&[])?;
    kubectl_with_input(&hub, &["apply", "-n", &ns.name, "-f", "-"], &package)?;
    let deployment = "apiVersion: oaas.io/v1alpha1\nkind: OClassDeployment\nmetadata:\n  name: thumbs\nspec:\n  package: example\n  classKey: Thumbnail\n  clusterSelector: {matchLabels: {tier: gold}}\n  nfr: {availability: 0.5}\n  failoverGraceSeconds: 2\n";
    kubectl_with_input(&hub, &["apply", "-n", &ns.name, "-f", "-"], deployment)?;
    kubectl(
        &hub,
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Available",
            "classdeployment/thumbs",
            "--timeout=60s",
        ],
    )?;
    let deployments: Api<OClassDeployment> = Api::namespaced(hub_client.clone(), &ns.name);
    let planned = |cd: &OClassDeployment| {
        cd.status
            .clone()
            .unwrap_or_default()
            .plan
            .unwrap_or_default()
            .clusters
    };
    assert_eq!(
        planned(&deployments.get("thumbs").await?),
        std::slice::from_ref(&best)
    );

    // The chosen cluster goes away: after the grace period the spare takes over.
    crms[0].1.process.kill();
    let moved = wait_for(
        "the class to move to the spare cluster",
        Duration::from_secs(30),
        || async {
            let cd = deployments.get("thumbs").await?;
            let status = cd.status.clone().unwrap_or_default();
            let on_spare = planned(&cd) == std::slice::from_ref(&spare)
                && status.phase == Some(oaas_crds::common::Phase::Available);
            Ok(on_spare.then_some(cd))
        },
    )
    .await?;
    assert_eq!(moved.status.unwrap().clusters_ready.as_deref(), Some("1/1"));
    let runtimes: Api<ClassRuntime> = Api::namespaced(spoke.clone(), &crms[1].0.name);
    assert_eq!(
        runtimes.list(&Default::default()).await?.items.len(),
        1,
        "the spare runs the class"
    );

    // The lost cluster is deregistered (so the deployment no longer waits for it), then the
    // deployment is deleted, then the rest.
    kubectl(&hub, &["delete", "ocluster", &best, "--timeout=30s"])?;
    kubectl(
        &hub,
        &[
            "delete",
            "-n",
            &ns.name,
            "classdeployment/thumbs",
            "--timeout=60s",
        ],
    )?;
    kubectl(&hub, &["delete", "ocluster", &spare, "--timeout=30s"])?;
    ns.delete().await?;
    // The lost CRM's namespace still holds its ClassRuntime: a CRM must run its finalizer.
    let (lost_ns, lost_crm) = crms.remove(0);
    drop(lost_crm);
    let _revived = Crm::start(&context, &lost_ns.name, &[]).await?;
    lost_ns.delete().await?;
    for (spoke_ns, _crm) in crms {
        spoke_ns.delete().await?;
    }
    Ok(())
}
