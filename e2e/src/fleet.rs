//! A whole system for one test: a hub namespace, a CRM per spoke registered on the hub as an
//! OCluster labelled for the test, and a PM scoped to that namespace and those clusters. Each
//! CRM runs in a spoke namespace of the hub namespace's name: the one the hub namespace maps
//! to (no prefix), and the CRM's own, so the test's workloads land there.
use std::time::Duration;

use kube::{Api, Client};
use oaas_crds::OCluster;
use oaas_crds::cluster::ClusterHealth;

use crate::{
    Crm, E2E_CLUSTER_LABEL, Pm, TestNamespace, client_for, hub_context, install_all_crds, kubectl,
    kubectl_with_input, repo_path, spoke_contexts, wait_for,
};

pub struct FleetSpoke {
    pub context: String,
    pub client: Client,
    pub ns: TestNamespace,
    pub crm: Crm,
    /// Name of its OCluster on the hub.
    pub cluster: String,
}

pub struct Fleet {
    pub hub: String,
    pub hub_client: Client,
    pub ns: TestNamespace,
    pub spokes: Vec<FleetSpoke>,
    pub pm: Pm,
}

/// An OCluster for a test's PM (`owner` is the test's hub namespace) with quick health
/// checks; `extra_spec` adds spec lines such as `availability: 0.9`.
pub fn cluster_manifest(
    name: &str,
    owner: &str,
    labels: &str,
    endpoint: &str,
    extra_spec: &str,
) -> String {
    format!(
        "apiVersion: oaas.io/v1alpha1\nkind: OCluster\nmetadata:\n  name: {name}\n  labels: {{{E2E_CLUSTER_LABEL}: {owner}{labels}}}\nspec:\n  endpoint: {endpoint}\n  timeoutSeconds: 3\n  healthCheckIntervalSeconds: 1\n  failureThreshold: 2\n  circuitOpenSeconds: 2\n{extra_spec}"
    )
}

/// The sample package and class deployment (`manifests/samples`), the deployment targeting
/// `clusters`.
pub fn samples(clusters: &[String]) -> anyhow::Result<(String, String)> {
    let package = std::fs::read_to_string(repo_path("manifests/samples/package.yaml"))?;
    let deployment = std::fs::read_to_string(repo_path("manifests/samples/classdeployment.yaml"))?
        .replace(
            "targetClusters: [spoke-a, spoke-b]",
            &format!("targetClusters: [{}]", clusters.join(", ")),
        );
    Ok((package, deployment))
}

/// Waits (up to a minute) until a class deployment is Available, as `kubectl wait` does.
pub fn wait_available(context: &str, namespace: &str, deployment: &str) -> anyhow::Result<()> {
    kubectl(
        context,
        &[
            "wait",
            "-n",
            namespace,
            "--for=condition=Available",
            &format!("classdeployment/{deployment}"),
            "--timeout=60s",
        ],
    )
    .map(drop)
}

pub async fn cluster_health(api: &Api<OCluster>, name: &str) -> anyhow::Result<ClusterHealth> {
    Ok(api.get(name).await?.status.unwrap_or_default().health)
}

pub async fn wait_cluster_health(
    api: &Api<OCluster>,
    name: &str,
    health: ClusterHealth,
    within: Duration,
) -> anyhow::Result<()> {
    wait_for(&format!("{name} {health:?}"), within, || async {
        Ok((cluster_health(api, name).await? == health).then_some(()))
    })
    .await
}

impl Fleet {
    /// Starts it all and waits until every cluster is Healthy. `pm_env` and `crm_env` add
    /// settings of the PM and of every CRM.
    pub async fn start(
        test: &str,
        pm_env: &[(&str, &str)],
        crm_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        install_all_crds().await?;
        let hub = hub_context();
        let hub_client = client_for(&hub).await?;
        let ns = TestNamespace::create(&hub_client, test).await?;
        let mut spokes = Vec::new();
        for context in spoke_contexts() {
            let client = client_for(&context).await?;
            let spoke_ns = TestNamespace::create_named(&client, test, &ns.name).await?;
            let crm = Crm::start(&context, &spoke_ns.name, crm_env).await?;
            let cluster = format!("{}-{}", ns.name, context.trim_start_matches("oaas-"));
            let manifest = cluster_manifest(&cluster, &ns.name, "", &crm.endpoint, "");
            kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
            spokes.push(FleetSpoke {
                context,
                client,
                ns: spoke_ns,
                crm,
                cluster,
            });
        }
        let selector = format!("{E2E_CLUSTER_LABEL}={}", ns.name);
        let pm = Pm::start_with(&hub, &ns.name, &selector, pm_env).await?;
        let fleet = Self {
            hub,
            hub_client,
            ns,
            spokes,
            pm,
        };
        for spoke in &fleet.spokes {
            wait_cluster_health(
                &fleet.clusters(),
                &spoke.cluster,
                ClusterHealth::Healthy,
                Duration::from_secs(30),
            )
            .await?;
        }
        Ok(fleet)
    }

    pub fn clusters(&self) -> Api<OCluster> {
        Api::all(self.hub_client.clone())
    }

    pub fn cluster_names(&self) -> Vec<String> {
        self.spokes.iter().map(|s| s.cluster.clone()).collect()
    }

    /// Deletes the class deployments (the PM removes them from the spokes), deregisters the
    /// clusters and deletes the namespaces; the operators run until the end, so every
    /// finalizer runs.
    pub async fn delete(self) -> anyhow::Result<()> {
        let all = "--all";
        let delete = [
            "delete",
            "classdeployments",
            all,
            "-n",
            &self.ns.name,
            "--timeout=180s",
        ];
        kubectl(&self.hub, &delete)?;
        for spoke in &self.spokes {
            kubectl(
                &self.hub,
                &["delete", "ocluster", &spoke.cluster, "--timeout=30s"],
            )?;
        }
        self.ns.delete().await?;
        for spoke in self.spokes {
            spoke.ns.delete().await?;
        }
        Ok(())
    }
}
