//! The whole system: the PM on the hub and a CRM on each spoke, as processes, driven with
//! kubectl on the hub.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, ResourceExt};
use oaas_crds::cluster::ClusterHealth;
use oaas_crds::{ClassRuntime, OClassDeployment};
use oaas_e2e::{
    Crm, Fleet, FleetSpoke, Pm, RestClient, TestNamespace, client_for, cluster_manifest,
    hub_context, image_of, install_all_crds, kubectl, kubectl_with_input, samples, spoke_contexts,
    wait_available, wait_cluster_health, wait_for,
};

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_class_deployment_reaches_both_spokes_survives_a_lost_crm_and_is_removed()
-> anyhow::Result<()> {
    let mut fleet = Fleet::start("pm", &[], &[]).await?;
    let (hub, ns) = (fleet.hub.clone(), fleet.ns.name.clone());
    let cluster_names = fleet.cluster_names();
    let clusters = fleet.clusters();
    let hub_client = fleet.hub_client.clone();

    // Apply the sample package and class deployment with kubectl; wait for Available.
    let (package, deployment) = samples(&cluster_names)?;
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &package)?;
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &deployment)?;
    wait_available(&hub, &ns, "record")?;
    let listed = kubectl(&hub, &["get", "classdeployments", "-n", &ns])?;
    assert!(
        listed.contains("2/2") && listed.contains("Available"),
        "{listed}"
    );
    for FleetSpoke {
        context,
        client,
        ns: spoke_ns,
        ..
    } in &fleet.spokes
    {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &spoke_ns.name);
        let echo = deployments.get("record-echo").await?;
        assert_eq!(
            image_of(&echo),
            "ghcr.io/oaas/echo-function:0.1.0",
            "{context}"
        );
        assert!(
            deployments.get_opt("record-odgm").await?.is_some(),
            "{context} has the data grid"
        );
    }

    // A new image in the package rolls both spokes.
    let updated = package.replace("echo-function:0.1.0", "echo-function:0.1.1");
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &updated)?;
    wait_echo_rolled_out(&fleet, Duration::from_secs(30)).await?;
    wait_available(&hub, &ns, "record")?;

    // Losing spoke-b's CRM: its OCluster turns Unreachable and the deployment Degraded.
    let deployments: Api<OClassDeployment> = Api::namespaced(hub_client.clone(), &ns);
    let port_b = fleet.spokes[1].crm.port;
    fleet.spokes[1].crm.process.kill();
    let lost = std::time::Instant::now();
    wait_cluster_health(
        &clusters,
        &cluster_names[1],
        ClusterHealth::Unreachable,
        Duration::from_secs(10),
    )
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
    let spoke_b = &mut fleet.spokes[1];
    spoke_b.crm = Crm::start_on(port_b, &spoke_b.context, &spoke_b.ns.name, &[]).await?;
    wait_cluster_health(
        &clusters,
        &cluster_names[1],
        ClusterHealth::Healthy,
        Duration::from_secs(30),
    )
    .await?;
    wait_available(&hub, &ns, "record")?;

    // Disabling the class blocks its rollout, as a disabled package does: the deployment
    // says why and how to enable it, and what runs in the spokes stays. Enabled, it is
    // Available again.
    let class_disabled = updated.replace(
        "    - key: Record\n",
        "    - key: Record\n      disabled: true\n",
    );
    assert_ne!(class_disabled, updated, "the sample has class Record");
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &class_disabled)?;
    let blocked = wait_for("record ClassDisabled", Duration::from_secs(20), || async {
        let cd = deployments.get("record").await?;
        let status = cd.status.unwrap_or_default();
        Ok(status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "ClassDisabled"))
    })
    .await?;
    assert!(
        blocked.message.contains("class Record") && blocked.message.contains("disabled to false"),
        "{}",
        blocked.message
    );
    for FleetSpoke {
        context,
        client,
        ns: spoke_ns,
        ..
    } in &fleet.spokes
    {
        let runtimes: Api<ClassRuntime> = Api::namespaced(client.clone(), &spoke_ns.name);
        let running = runtimes.list(&Default::default()).await?.items.len();
        assert_eq!(
            running, 1,
            "the runtime in {context} stays while the class is disabled"
        );
    }
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &updated)?;
    wait_available(&hub, &ns, "record")?;

    // Deleting the class deployment removes it from both spokes.
    kubectl(
        &hub,
        &[
            "delete",
            "-n",
            &ns,
            "classdeployment/record",
            "--timeout=60s",
        ],
    )?;
    for FleetSpoke {
        context,
        client,
        ns: spoke_ns,
        ..
    } in &fleet.spokes
    {
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
    // Each was cleaned up once: no later pass, started from a cached copy, tried again and
    // failed on the finalizer already removed.
    let logs = std::iter::once(&fleet.pm.process.log)
        .chain(fleet.spokes.iter().map(|s| &s.crm.process.log));
    for log in logs {
        let text = std::fs::read_to_string(log)?;
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("failed to remove finalizer"))
            .collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", log.display());
    }

    fleet.delete().await
}

/// Waits until the sample's echo function runs image 0.1.1 in every spoke.
async fn wait_echo_rolled_out(fleet: &Fleet, within: Duration) -> anyhow::Result<()> {
    for spoke in &fleet.spokes {
        let deployments: Api<Deployment> = Api::namespaced(spoke.client.clone(), &spoke.ns.name);
        wait_for(
            &format!("echo 0.1.1 in {}", spoke.context),
            within,
            || async {
                let d = deployments.get("record-echo").await?;
                Ok((image_of(&d) == "ghcr.io/oaas/echo-function:0.1.1").then_some(()))
            },
        )
        .await?;
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
    // is more available, so a target of 0.5 places the class there alone. Each OCluster maps
    // the hub namespace into its CRM's namespace by a prefix.
    let context = spoke_contexts().remove(0);
    let spoke = client_for(&context).await?;
    let mut crms = Vec::new();
    for (suffix, availability) in [("best", 0.99), ("spare", 0.95)] {
        let spoke_name = format!("{suffix}-{}", ns.name);
        let spoke_ns = TestNamespace::create_named(&spoke, "failover", &spoke_name).await?;
        let crm = Crm::start(&context, &spoke_ns.name, &[]).await?;
        let manifest = cluster_manifest(
            &format!("{}-{suffix}", ns.name),
            &ns.name,
            ", tier: gold",
            &crm.endpoint,
            &format!("  availability: {availability}\n  namespacePrefix: {suffix}-\n"),
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
    wait_available(&hub, &ns.name, "thumbs")?;
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

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn of_two_pms_one_leads_and_the_other_takes_over_when_it_dies() -> anyhow::Result<()> {
    let lease_env = |ns: &str| {
        vec![
            ("OAAS_PM_LEADER_ELECTION", "true".to_string()),
            ("OAAS_PM_LEASE_NAMESPACE", ns.to_string()),
            ("OAAS_PM_LEASE_DURATION_SECS", "4".to_string()),
        ]
    };
    // The fleet's PM starts first and takes the lease; a second one stands by.
    let hub_client = client_for(&hub_context()).await?;
    let lease_ns = TestNamespace::create(&hub_client, "leader-lease").await?;
    let env = lease_env(&lease_ns.name);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut fleet = Fleet::start("leader", &env, &[]).await?;
    let (hub, ns) = (fleet.hub.clone(), fleet.ns.name.clone());
    let selector = format!("{}={ns}", oaas_e2e::E2E_CLUSTER_LABEL);
    let standby = Pm::start_with(&hub, &ns, &selector, &env).await?;
    let holder = || oaas_e2e::lease_holder(&hub_client, &lease_ns.name, "oaas-pm");
    let first = fleet.pm.process.pid();
    assert!(
        holder().await?.ends_with(&format!("-{first}")),
        "{}",
        holder().await?
    );
    assert_eq!(
        oaas_e2e::http_status(standby.port, "/readyz").await?,
        503,
        "a standby is not ready"
    );

    let (package, deployment) = samples(&fleet.cluster_names())?;
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &package)?;
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &deployment)?;
    wait_available(&hub, &ns, "record")?;
    let metrics = oaas_e2e::http_get(standby.port, "/metrics").await?;
    assert!(
        !metrics.contains("oaas_pm_reconciles_total{"),
        "the standby reconciled nothing while the leader lived: {metrics}"
    );

    // The leader dies without a word; the standby takes over once the lease runs out.
    fleet.pm.process.kill();
    let killed = std::time::Instant::now();
    let second = standby.process.pid();
    wait_for(
        "the standby to hold the lease",
        Duration::from_secs(20),
        || async {
            Ok(holder()
                .await?
                .ends_with(&format!("-{second}"))
                .then_some(()))
        },
    )
    .await?;
    println!("takeover after {:?} (lease duration 4 s)", killed.elapsed());
    assert_eq!(oaas_e2e::http_status(standby.port, "/readyz").await?, 200);

    // It reconciles: a new image in the package reaches both spokes.
    let updated = package.replace("echo-function:0.1.0", "echo-function:0.1.1");
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &updated)?;
    wait_echo_rolled_out(&fleet, Duration::from_secs(60)).await?;
    wait_available(&hub, &ns, "record")?;
    // The standby, now leading, runs the finalizers while everything goes.
    fleet.delete().await?;
    lease_ns.delete().await?;
    drop(standby);
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_check_that_finds_no_change_refreshes_the_status_only_every_report_interval()
-> anyhow::Result<()> {
    // Checks every second (the fleet's OClusters), times refreshed every 4 s.
    let fleet = Fleet::start("pm-report", &[("CRM_HEALTH_REPORT_INTERVAL", "4")], &[]).await?;
    let clusters = fleet.clusters();
    let name = &fleet.spokes[0].cluster;
    let mut versions = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        versions.insert(clusters.get(name).await?.resource_version());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nine checks; the first version seen, then a refresh every 4–6 s: 2 or 3 versions.
    assert!(
        (2..=3).contains(&versions.len()),
        "{} versions of the OCluster in 9 s of checks that changed nothing",
        versions.len()
    );

    // The REST facade answers from the last check, not from the last refresh.
    let rest = RestClient::new(fleet.pm.port);
    let health = rest.get(&format!("/api/v1/clusters/{name}/health")).await?;
    assert_eq!(health.body["status"], "Healthy", "{}", health.body);
    let age = health.body["age_seconds"].as_u64().unwrap_or(u64::MAX);
    assert!(age <= 2, "the answer is {age} s old: {}", health.body);
    fleet.delete().await
}
