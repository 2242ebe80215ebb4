//! CrmInfoService: this cluster's name, versions, node counts and availability.
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use oaas_proto::crm::{
    ClusterInfo, GetClusterInfoRequest, crm_info_service_server::CrmInfoService,
};
use tonic::{Request, Response, Status};

use super::kube_status;
use crate::config::Config;

/// Node counts and availability of this cluster.
pub struct InfoApi {
    client: Client,
    config: Config,
    kubernetes_version: String,
}

impl InfoApi {
    pub fn new(client: Client, config: Config, kubernetes_version: String) -> Self {
        Self {
            client,
            config,
            kubernetes_version,
        }
    }
}

#[tonic::async_trait]
impl CrmInfoService for InfoApi {
    async fn get_cluster_info(
        &self,
        _: Request<GetClusterInfoRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| kube_status("listing Nodes", e))?;
        let total = nodes.items.len() as u32;
        let ready = nodes
            .items
            .iter()
            .filter(|n| {
                let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count() as u32;
        let availability = self.config.availability_override.unwrap_or(if total == 0 {
            0.0
        } else {
            f64::from(ready) / f64::from(total)
        });
        Ok(Response::new(ClusterInfo {
            cluster_name: self.config.cluster_name.clone(),
            crm_version: env!("CARGO_PKG_VERSION").to_string(),
            kubernetes_version: self.kubernetes_version.clone(),
            node_count: total,
            ready_nodes: ready,
            availability,
        }))
    }
}
