//! Deletes what failed e2e runs left behind: test namespaces in the hub and every spoke, the
//! test OClusters on the hub (their finalizer's PM is gone, so it is dropped first), and the
//! ClusterRoles and ClusterRoleBindings the RBAC test labelled.
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
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
        let labelled = ListParams::default().labels(oaas_e2e::E2E_LABEL);
        let roles = Api::<ClusterRole>::all(client.clone());
        let bindings = Api::<ClusterRoleBinding>::all(client);
        let (role_names, binding_names) = (
            roles.list(&labelled).await?.items,
            bindings.list(&labelled).await?.items,
        );
        for role in &role_names {
            roles
                .delete(&role.name_any(), &DeleteParams::default())
                .await?;
        }
        for binding in &binding_names {
            bindings
                .delete(&binding.name_any(), &DeleteParams::default())
                .await?;
        }
        println!(
            "{context}: deleted {} test ClusterRoles and {} ClusterRoleBindings",
            role_names.len(),
            binding_names.len()
        );
    }
    Ok(())
}
