//! What a test may assume about a cluster, read from the cluster rather than written as
//! constants, so the suite runs on kwok's fake Nodes and on kind's real one alike.
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};

async fn nodes(client: &Client) -> anyhow::Result<Vec<Node>> {
    let api = Api::<Node>::all(client.clone());
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Nodes in the cluster, and how many of them are Ready.
pub async fn node_counts(client: &Client) -> anyhow::Result<(u32, u32)> {
    let nodes = nodes(client).await?;
    let ready = nodes
        .iter()
        .filter(|n| {
            let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    Ok((nodes.len() as u32, ready as u32))
}

/// An image a Pod in this cluster can run without a registry: the pause image its Nodes
/// already hold (a real kubelet lists it in `status.images`), else the usual pause name,
/// which kwok's fake kubelet "runs" without pulling anything.
pub async fn runnable_image(client: &Client) -> anyhow::Result<String> {
    let held = nodes(client)
        .await?
        .iter()
        .filter_map(|n| n.status.as_ref()?.images.as_ref())
        .flatten()
        .flat_map(|image| image.names.iter().flatten())
        .find(|name| name.contains("/pause:") && !name.contains('@'))
        .cloned();
    Ok(held.unwrap_or_else(|| "registry.k8s.io/pause:3.10".into()))
}
