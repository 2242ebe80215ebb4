//! The local (or kind) clusters behave like real Kubernetes: the hub answers and each
//! spoke schedules a Deployment's Pods onto its Nodes (kwok's, or kind's real one) and
//! reports them Ready.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use oaas_e2e::{TestNamespace, client_for, hub_context, runnable_image, spoke_contexts, wait_for};

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn hub_answers_version_and_lists_namespaces() -> anyhow::Result<()> {
    let client = client_for(&hub_context()).await?;
    let version = client.apiserver_version().await?;
    assert_eq!(version.major, "1");
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await?;
    assert!(
        namespaces
            .items
            .iter()
            .any(|ns| ns.metadata.name.as_deref() == Some("kube-system"))
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn each_spoke_runs_a_three_replica_deployment_to_ready() -> anyhow::Result<()> {
    let spokes = spoke_contexts();
    assert!(!spokes.is_empty(), "OAAS_SPOKE_CONTEXTS names no spoke");
    for context in spokes {
        let client = client_for(&context).await?;
        let ns = TestNamespace::create(&client, "three-replicas").await?;
        let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
        let image = runnable_image(&client).await?;
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        }))?;
        deployments
            .patch(
                "web",
                &PatchParams::apply("oaas-e2e").force(),
                &Patch::Apply(&deployment),
            )
            .await?;

        let pods = Api::<Pod>::namespaced(client.clone(), &ns.name);
        let ready = wait_for(
            &format!("3 Ready Pods of deployment web in {context}"),
            Duration::from_secs(90),
            || async {
                let list = pods.list(&ListParams::default().labels("app=web")).await?;
                let ready = list.items.iter().filter(|p| is_ready(p)).count();
                Ok((ready == 3).then_some(ready))
            },
        )
        .await?;
        assert_eq!(ready, 3);
        ns.delete().await?;
    }
    Ok(())
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
