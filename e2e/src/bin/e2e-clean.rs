//! Deletes what failed e2e runs left behind: test namespaces in the hub and every spoke, and
//! the test OClusters on the hub (their finalizer's PM is gone, so it is dropped first).
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use oaas_crds::OCluster;
use oaas_e2e::{client_for, delete_all_test_namespaces, hub_context, spoke_contexts};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let hub = client_for(&hub_context()).await?;
    let clusters = Api::<OCluster>::all(hub);
    let leftovers = clusters
        .list(&ListParams::default().labels(oaas_e2e::E2E_CLUSTER_LABEL))
        .await?;
    for cluster in &leftovers {
        let unfinalize = Patch::Merge(json!({"metadata": {"finalizers": null}}));
        clusters
            .patch(&cluster.name_any(), &PatchParams::default(), &unfinalize)
            .await?;
        clusters
            .delete(&cluster.name_any(), &DeleteParams::default())
            .await?;
    }
    println!(
        "{}: deleted {} test OClusters",
        hub_context(),
        leftovers.items.len()
    );
    for context in std::iter::once(hub_context()).chain(spoke_contexts()) {
        let client = client_for(&context).await?;
        let deleted = delete_all_test_namespaces(&client).await?;
        println!("{context}: deleted {deleted} test namespaces");
    }
    Ok(())
}
