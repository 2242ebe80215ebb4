//! CrmInfoService: this cluster's name, versions, node counts and availability.
use kube::Client;
use oaas_proto::crm::{
    ClusterInfo, GetClusterInfoRequest, crm_info_service_server::CrmInfoService,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::kube_status;
use crate::config::Config;
use crate::nodes::{self, NodeCounts};

/// Node counts and availability of this cluster.
pub struct InfoApi {
    client: Client,
    config: Config,
    /// The counts the Node watch knows (`None`: listed per call).
    nodes: watch::Receiver<Option<NodeCounts>>,
}

impl InfoApi {
    pub fn new(client: Client, config: Config, nodes: watch::Receiver<Option<NodeCounts>>) -> Self {
        Self {
            client,
            config,
            nodes,
        }
    }
}

#[tonic::async_trait]
impl CrmInfoService for InfoApi {
    async fn get_cluster_info(
        &self,
        _: Request<GetClusterInfoRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        // Asked on every call, though it hardly ever changes: the answer proves the API server
        // reachable now (the Node watch keeps its last counts while it retries), and costs it
        // next to nothing (no storage read).
        let version = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| kube_status("asking the Kubernetes API server for its version", e))?;
        let known = *self.nodes.borrow();
        let NodeCounts { total, ready } = match known {
            Some(counts) => counts,
            None => nodes::list(&self.client)
                .await
                .map_err(|e| kube_status("listing Nodes", e))?,
        };
        let availability = self.config.availability_override.unwrap_or(if total == 0 {
            0.0
        } else {
            f64::from(ready) / f64::from(total)
        });
        Ok(Response::new(ClusterInfo {
            cluster_name: self.config.cluster_name.clone(),
            crm_version: env!("CARGO_PKG_VERSION").to_string(),
            kubernetes_version: version.git_version,
            node_count: total,
            ready_nodes: ready,
            availability,
        }))
    }
}
