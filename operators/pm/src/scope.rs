//! What this PM looks after: every namespace and cluster, or one namespace's packages and
//! deployments and the OClusters with some labels (several PMs can share a hub that way).
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub namespace: Option<String>,
    pub cluster_selector: Option<String>,
}

impl Scope {
    /// OPackages and OClassDeployments within scope.
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }

    /// Watch settings for OClusters within scope.
    pub fn clusters(&self) -> watcher::Config {
        match &self.cluster_selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        }
    }
}
