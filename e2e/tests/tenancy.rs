//! Tenancy on the hub and both spokes: the same class deployed from two hub namespaces and
//! under two names, each in its own spoke namespace and untouched by the others; a mapping
//! into a namespace the CRM does not own is refused; drift on a spoke is put back.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client, ResourceExt};
use oaas_core::tenancy::{CRM_LABEL, SERVES_ANNOTATION, dns_label};
use oaas_crds::validation::resource_name;
use oaas_crds::{ClassRuntime, OClassDeployment};
use oaas_e2e::{
    Fleet, Pm, TestNamespace, cluster_manifest, http_get, kubectl, kubectl_with_input, samples,
    wait_available, wait_for,
};

/// A renamed copy of the sample: with its namespace, far over 63 characters, and too long
/// to be a spoke object's name as it is.
const LONG_NAME: &str = "record-copy-with-a-name-long-enough-to-need-a-hash-on-the-spoke-side";

/// resourceVersions of what a spoke holds for one deployment: its ClassRuntime and its
/// function's Deployment (named by the CRM from the runtime's name and the function key).
async fn versions(client: &Client, ns: &str, runtime: &str) -> anyhow::Result<[String; 2]> {
    let runtimes: Api<ClassRuntime> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let echo = deployments.get(&resource_name(&[runtime, "echo"])).await?;
    Ok([
        runtimes
            .get(runtime)
            .await?
            .resource_version()
            .unwrap_or_default(),
        echo.resource_version().unwrap_or_default(),
    ])
}

async fn gone(client: &Client, ns: &str, runtime: &str) -> anyhow::Result<bool> {
    let runtimes: Api<ClassRuntime> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let echo = resource_name(&[runtime, "echo"]);
    Ok(runtimes.get_opt(runtime).await?.is_none() && deployments.get_opt(&echo).await?.is_none())
}

fn apply(hub: &str, ns: &str, manifest: &str) -> anyhow::Result<()> {
    kubectl_with_input(hub, &["apply", "-n", ns, "-f", "-"], manifest).map(drop)
}

fn delete_deployment(hub: &str, ns: &str, name: &str) -> anyhow::Result<()> {
    let object = format!("classdeployment/{name}");
    kubectl(hub, &["delete", "-n", ns, &object, "--timeout=60s"]).map(drop)
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn two_hub_namespaces_and_a_renamed_copy_share_the_spokes_each_in_its_own_namespace()
-> anyhow::Result<()> {
    let fleet = Fleet::start("tenancy", &[], &[]).await?;
    let (hub, team_a) = (fleet.hub.clone(), fleet.ns.name.clone());
    // A second team: its own hub namespace and PM (a PM watches one namespace here), the
    // same hub and spokes. On the spokes, its namespace does not exist yet.
    let team_b_ns = TestNamespace::create(&fleet.hub_client, "tenancy-b").await?;
    let team_b = team_b_ns.name.clone();
    let selector = format!("{}={team_a}", oaas_e2e::E2E_CLUSTER_LABEL);
    let pm_b = Pm::start_with(&hub, &team_b, &selector, &[]).await?;

    let (package, deployment) = samples(&fleet.cluster_names())?;
    let copy = deployment.replace("name: record", &format!("name: {LONG_NAME}"));
    for (ns, manifests) in [
        (&team_a, vec![&package, &deployment, &copy]),
        (&team_b, vec![&package, &deployment]),
    ] {
        for manifest in manifests {
            apply(&hub, ns, manifest)?;
        }
    }
    for (ns, name) in [
        (&team_a, "record"),
        (&team_a, LONG_NAME),
        (&team_b, "record"),
    ] {
        wait_available(&hub, ns, name)?;
        let listed = kubectl(&hub, &["get", "classdeployment", name, "-n", ns])?;
        assert!(listed.contains("2/2"), "{ns}/{name}: {listed}");
    }
    // kubectl shows where each cluster holds it.
    let mapped = kubectl(
        &hub,
        &[
            "get",
            "classdeployment",
            "record",
            "-n",
            &team_b,
            "-o=jsonpath={.status.clusters[*].namespace}",
        ],
    )?;
    assert_eq!(mapped, format!("{team_b} {team_b}"));

    // Each tenant's workloads in its own spoke namespace; the long name made a DNS label.
    let long_runtime = dns_label(LONG_NAME);
    assert!(
        long_runtime.len() <= 63 && long_runtime != LONG_NAME,
        "{long_runtime}"
    );
    let mut before = Vec::new();
    for spoke in &fleet.spokes {
        let namespaces: Api<Namespace> = Api::all(spoke.client.clone());
        let created = namespaces.get(&team_b).await?;
        assert_eq!(
            created.labels().get(CRM_LABEL),
            Some(&team_a),
            "{}",
            spoke.context
        );
        let serves = created
            .annotations()
            .get(SERVES_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        assert!(
            serves.ends_with(&format!("/{team_b}")),
            "{}: serves {serves}",
            spoke.context
        );
        before.push((
            versions(&spoke.client, &team_a, "record").await?,
            versions(&spoke.client, &team_b, "record").await?,
        ));
        versions(&spoke.client, &team_a, &long_runtime).await?;
    }

    // Deleting the copy leaves the others Available, their spoke objects untouched.
    delete_deployment(&hub, &team_a, LONG_NAME)?;
    for spoke in &fleet.spokes {
        let what = format!("{long_runtime} gone from {}", spoke.context);
        wait_for(&what, Duration::from_secs(30), || async {
            Ok(gone(&spoke.client, &team_a, &long_runtime)
                .await?
                .then_some(()))
        })
        .await?;
    }
    // Deleting team B's deployment removes the spoke namespace the CRM made for it.
    delete_deployment(&hub, &team_b, "record")?;
    for spoke in &fleet.spokes {
        let namespaces: Api<Namespace> = Api::all(spoke.client.clone());
        let what = format!("namespace {team_b} gone from {}", spoke.context);
        wait_for(&what, Duration::from_secs(60), || async {
            Ok(namespaces.get_opt(&team_b).await?.is_none().then_some(()))
        })
        .await?;
    }
    for (spoke, (a_before, _)) in fleet.spokes.iter().zip(&before) {
        let a_after = versions(&spoke.client, &team_a, "record").await?;
        assert_eq!(
            &a_after, a_before,
            "team A's objects in {} were touched",
            spoke.context
        );
    }
    wait_available(&hub, &team_a, "record")?;

    team_b_ns.delete().await?;
    drop(pm_b);
    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_mapping_into_a_namespace_the_crm_does_not_own_or_that_serves_another_team_is_refused()
-> anyhow::Result<()> {
    let fleet = Fleet::start("refused", &[], &[]).await?;
    let (hub, ns) = (fleet.hub.clone(), fleet.ns.name.clone());
    let spoke = &fleet.spokes[0];
    let (package, deployment) = samples(&fleet.cluster_names())?;
    apply(&hub, &ns, &package)?;
    apply(&hub, &ns, &deployment)?;
    wait_available(&hub, &ns, "record")?;
    let before = versions(&spoke.client, &ns, "record").await?;

    // Two more OClusters for the first spoke's CRM: one maps this namespace into a namespace
    // nobody handed over; the other maps a namespace of a second hub (a PM with another hub
    // name, on a namespace whose name the prefix completes) into this namespace's own spoke
    // namespace, which serves this hub namespace already.
    let foreign = TestNamespace::create_named(&spoke.client, "refused", &format!("f-{ns}")).await?;
    let second_ns = ns
        .strip_prefix("e2e-")
        .expect("test namespaces start with e2e-");
    let second = TestNamespace::create_named(&fleet.hub_client, "refused", second_ns).await?;
    let (foreign_cluster, shared_cluster) = (format!("{ns}-foreign"), format!("{ns}-shared"));
    for (name, prefix) in [(&foreign_cluster, "f-"), (&shared_cluster, "e2e-")] {
        let extra = format!("  namespacePrefix: {prefix}\n");
        let manifest = cluster_manifest(name, &ns, "", &spoke.crm.endpoint, &extra);
        kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
    }
    let targets = format!("targetClusters: [{}]", fleet.cluster_names().join(", "));
    let retarget =
        |cluster: &str| deployment.replace(&targets, &format!("targetClusters: [{cluster}]"));
    let into_foreign = retarget(&foreign_cluster).replace("name: record", "name: into-foreign");
    apply(&hub, &ns, &into_foreign)?;
    let selector = format!("{}={ns}", oaas_e2e::E2E_CLUSTER_LABEL);
    let other_hub = [("OAAS_PM_HUB_NAME", "second-hub")];
    let pm_second = Pm::start_with(&hub, second_ns, &selector, &other_hub).await?;
    apply(&hub, second_ns, &package)?;
    apply(&hub, second_ns, &retarget(&shared_cluster))?;

    let message_of = |namespace: &str, name: &str| {
        kubectl(
            &hub,
            &[
                "get",
                "classdeployment",
                name,
                "-n",
                namespace,
                "-o=jsonpath={.status.clusters[0].message}",
            ],
        )
    };
    wait_for(
        "the foreign namespace refused",
        Duration::from_secs(30),
        || async {
            let message = message_of(&ns, "into-foreign")?;
            Ok(message
                .contains("does not belong to this class runtime manager")
                .then_some(message))
        },
    )
    .await
    .map(|m| assert!(m.contains("kubectl label namespace"), "{m}"))?;
    wait_for(
        "the shared namespace refused",
        Duration::from_secs(30),
        || async {
            let message = message_of(second_ns, "record")?;
            let refused = message.contains("already serves hub namespace")
                && message.contains(&format!("cannot also serve second-hub/{second_ns}"));
            Ok(refused.then_some(message))
        },
    )
    .await?;

    // Nothing running was touched, and nothing went into the foreign namespace.
    assert_eq!(versions(&spoke.client, &ns, "record").await?, before);
    let in_foreign: Api<ClassRuntime> = Api::namespaced(spoke.client.clone(), &foreign.name);
    assert!(in_foreign.list(&Default::default()).await?.items.is_empty());
    wait_available(&hub, &ns, "record")?;

    delete_deployment(&hub, &ns, "into-foreign")?;
    delete_deployment(&hub, second_ns, "record")?;
    for cluster in [&foreign_cluster, &shared_cluster] {
        kubectl(&hub, &["delete", "ocluster", cluster, "--timeout=30s"])?;
    }
    second.delete().await?;
    drop(pm_second);
    foreign.delete().await?;
    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_class_runtime_edited_or_deleted_on_a_spoke_is_put_back_with_a_drifted_event()
-> anyhow::Result<()> {
    let fleet = Fleet::start("drift", &[], &[]).await?;
    let (hub, ns) = (fleet.hub.clone(), fleet.ns.name.clone());
    let (package, deployment) = samples(&fleet.cluster_names())?;
    apply(&hub, &ns, &package)?;
    apply(&hub, &ns, &deployment)?;
    wait_available(&hub, &ns, "record")?;
    let (edited, deleted) = (&fleet.spokes[0], &fleet.spokes[1]);
    let runtimes_edited: Api<ClassRuntime> = Api::namespaced(edited.client.clone(), &ns);
    let original = runtimes_edited.get("record").await?.spec;
    assert!(
        original.functions[1].config.is_empty(),
        "the edit below adds a field"
    );

    // A hand edit of the spec (and a field added by hand) on one spoke...
    let patch = "[{\"op\":\"replace\",\"path\":\"/spec/functions/0/provisionConfig/containerImage\",\"value\":\"img/hand-edited:1\"},\
                  {\"op\":\"add\",\"path\":\"/spec/functions/1/config\",\"value\":{\"HAND\":\"made\"}}]";
    let edited_at = std::time::Instant::now();
    kubectl(
        &edited.context,
        &[
            "patch",
            "classruntime",
            "record",
            "-n",
            &ns,
            "--type=json",
            "-p",
            patch,
        ],
    )?;
    // ...is put back within the health interval (1 s here): the spec as the hub sent it.
    wait_for("the edit put back", Duration::from_secs(10), || async {
        let runtime = runtimes_edited.get("record").await?;
        Ok((runtime.spec == original).then_some(()))
    })
    .await?;
    eprintln!("a hand edit put back after {:?}", edited_at.elapsed());

    // A hand delete on the other spoke comes back too.
    let runtimes_deleted: Api<ClassRuntime> = Api::namespaced(deleted.client.clone(), &ns);
    let uid = runtimes_deleted.get("record").await?.uid();
    let deleted_at = std::time::Instant::now();
    kubectl(
        &deleted.context,
        &[
            "delete",
            "classruntime",
            "record",
            "-n",
            &ns,
            "--wait=false",
        ],
    )?;
    wait_for(
        "the deleted runtime back",
        Duration::from_secs(30),
        || async {
            let runtime = runtimes_deleted.get_opt("record").await?;
            Ok(runtime
                .filter(|r| r.uid() != uid && r.metadata.deletion_timestamp.is_none())
                .map(drop))
        },
    )
    .await?;
    eprintln!("a hand delete put back after {:?}", deleted_at.elapsed());
    wait_available(&hub, &ns, "record")?;

    // The hub said so: an event per spoke and the metric.
    wait_for(
        "a Drifted event per spoke",
        Duration::from_secs(10),
        || async {
            let selector = "--field-selector=reason=Drifted";
            let messages = "-o=jsonpath={.items[*].message}";
            let events = kubectl(&hub, &["get", "events", "-n", &ns, selector, messages])?;
            let each = fleet.spokes.iter().all(|spoke| {
                events.contains(&format!("cluster {} was edited or deleted", spoke.cluster))
            });
            Ok(each.then_some(()))
        },
    )
    .await?;
    let metrics = http_get(fleet.pm.port, "/metrics").await?;
    for spoke in &fleet.spokes {
        let line = format!(
            "oaas_pm_drift_restored_total{{cluster=\"{}\"}} 1",
            spoke.cluster
        );
        assert!(metrics.contains(&line), "no {line:?} in the PM's metrics");
    }
    let cd: Api<OClassDeployment> = Api::namespaced(fleet.hub_client.clone(), &ns);
    assert!(cd.get("record").await?.status.is_some());
    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_new_namespace_prefix_moves_a_deployment_without_a_gap() -> anyhow::Result<()> {
    let fleet = Fleet::start("moved", &[], &[]).await?;
    let (hub, ns) = (fleet.hub.clone(), fleet.ns.name.clone());
    let (package, deployment) = samples(&fleet.cluster_names())?;
    apply(&hub, &ns, &package)?;
    apply(&hub, &ns, &deployment)?;
    wait_available(&hub, &ns, "record")?;
    let spoke = &fleet.spokes[0];
    let moved_to = format!("p-{ns}");

    // A prefix on spoke-a's OCluster: the deployment moves to `p-<namespace>` there.
    let patch = r#"{"spec":{"namespacePrefix":"p-"}}"#;
    let ocluster = format!("ocluster/{}", spoke.cluster);
    kubectl(&hub, &["patch", &ocluster, "--type=merge", "-p", patch])?;
    // The old runtime keeps its workloads until the new one is Available: at every look,
    // one of the two is Available.
    let old: Api<ClassRuntime> = Api::namespaced(spoke.client.clone(), &ns);
    let new: Api<ClassRuntime> = Api::namespaced(spoke.client.clone(), &moved_to);
    let available = |r: Option<ClassRuntime>| {
        r.and_then(|r| r.status)
            .is_some_and(|s| s.phase == Some(oaas_crds::common::Phase::Available))
    };
    wait_for("the move to finish", Duration::from_secs(60), || async {
        let (old_runtime, new_runtime) =
            (old.get_opt("record").await?, new.get_opt("record").await?);
        let gone = old_runtime.is_none();
        assert!(
            available(old_runtime) || available(new_runtime.clone()),
            "neither the old nor the new runtime serves"
        );
        Ok((gone && available(new_runtime)).then_some(()))
    })
    .await?;
    wait_for(
        "the hub to show the new namespace",
        Duration::from_secs(30),
        || async {
            let jsonpath = "-o=jsonpath={.status.clusters[*].namespace}";
            let mapped = kubectl(
                &hub,
                &["get", "classdeployment", "record", "-n", &ns, jsonpath],
            )?;
            Ok(mapped.split(' ').any(|n| n == moved_to).then_some(()))
        },
    )
    .await?;
    wait_available(&hub, &ns, "record")?;
    let namespaces: Api<Namespace> = Api::all(spoke.client.clone());
    fleet.delete().await?;
    // Deleting the deployment removed the namespace the CRM made for the move.
    wait_for(
        "the moved-to namespace gone",
        Duration::from_secs(60),
        || async { Ok(namespaces.get_opt(&moved_to).await?.is_none().then_some(())) },
    )
    .await
}
