//! Helpers for end-to-end tests against real clusters.
//!
//! The suite only needs kube contexts, so it runs the same on the local control planes
//! (`just cluster-up`) and on kind (`kind/create.sh`). Contexts come from the environment:
//! `OAAS_HUB_CONTEXT` (default `oaas-hub`) and `OAAS_SPOKE_CONTEXTS` (comma separated,
//! default `oaas-spoke-a,oaas-spoke-b`); the kubeconfig from `KUBECONFIG`.
//!
//! What differs between the two comes from the cluster, not from constants: node counts
//! ([`node_counts`]), an image a Pod can run ([`runnable_image`]). The suites that run their
//! own operator processes name placeholder images (`img/<name>:<n>`) that only kwok's fake
//! kubelet "runs"; they stay on the loopback clusters (docs/testing.md says why).
#![forbid(unsafe_code)]

mod cluster_facts;
mod crds;
mod fleet;
mod namespace;
mod process;
mod prometheus;
mod rest;
mod wait;

pub use cluster_facts::{node_counts, runnable_image};
pub use crds::{install_all_crds, install_crds};
pub use fleet::{
    Fleet, FleetSpoke, cluster_health, cluster_manifest, samples, wait_available,
    wait_cluster_health,
};
pub use namespace::{TestNamespace, delete_all_test_namespaces};
pub use process::{Crm, Exited, Pm, Process, binary, free_port, http_get, http_status};
pub use prometheus::{Exporter, Prometheus};
pub use rest::{Answer, RestClient};
pub use wait::wait_for;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Label carried by every namespace the suite creates, so leftovers can be cleaned by label.
pub const E2E_LABEL: &str = "e2e.oaas.io/test";

/// Label of OClusters a test registers on the hub (its value names the test's namespace).
pub const E2E_CLUSTER_LABEL: &str = "e2e.oaas.io/pm";

/// Path of a file in the repository, for tests that read manifests.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Runs kubectl (from PATH) against a context and returns its stdout, or its stderr as error.
pub fn kubectl(context: &str, args: &[&str]) -> anyhow::Result<String> {
    kubectl_with_input(context, args, "")
}

/// Runs kubectl with `input` on its standard input (e.g. `apply -f -`).
pub fn kubectl_with_input(context: &str, args: &[&str], input: &str) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("kubectl")
        .arg("--context")
        .arg(context)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (is it on PATH? `just test` puts it there)")?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        anyhow::bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Stops (`"stop"`) or starts (`"start"`) one component, such as `kube-apiserver`, of the
/// cluster behind a kube context, for fault tests. The command is `hack/cluster.sh` for the
/// local clusters, or the one in `OAAS_E2E_CONTROL_PLANE` (`kind/create.sh` on kind); it is
/// called as `<command> stop|start CLUSTER COMPONENT`, CLUSTER being the context without
/// its `oaas-` prefix.
pub fn control_plane(action: &str, context: &str, component: &str) -> anyhow::Result<()> {
    let command = std::env::var("OAAS_E2E_CONTROL_PLANE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_path("hack/cluster.sh"));
    let cluster = context.strip_prefix("oaas-").unwrap_or(context);
    let output = std::process::Command::new("bash")
        .arg(&command)
        .args([action, cluster, component])
        .output()
        .with_context(|| format!("running {}", command.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {action} {cluster} {component}: {}",
        command.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Who holds the Lease `name` in `namespace` (empty when nobody does).
pub async fn lease_holder(client: &Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), namespace);
    let lease = leases.get(name).await?;
    Ok(lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default())
}

/// The image of a Deployment's first container.
pub fn image_of(d: &k8s_openapi::api::apps::v1::Deployment) -> String {
    let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    pod.and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Name of the hub's kube context.
pub fn hub_context() -> String {
    std::env::var("OAAS_HUB_CONTEXT").unwrap_or_else(|_| "oaas-hub".into())
}

/// Names of the spokes' kube contexts.
pub fn spoke_contexts() -> Vec<String> {
    std::env::var("OAAS_SPOKE_CONTEXTS")
        .unwrap_or_else(|_| "oaas-spoke-a,oaas-spoke-b".into())
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A client for one kube context of the kubeconfig in `KUBECONFIG`.
pub async fn client_for(context: &str) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read().context("reading the kubeconfig named by KUBECONFIG")?;
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("kube context {context} (run `just cluster-up`?)"))?;
    Ok(Client::try_from(config)?)
}

/// A Role and RoleBinding for a ServiceAccount in `ns`, granting `verbs` on OPackages.
pub fn grant(ns: &str, account: &str, verbs: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {account}, namespace: {ns}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {account}, namespace: {ns}}}\n\
         rules: [{{apiGroups: [oaas.io], resources: [opackages, classdeployments], verbs: [{verbs}]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {account}, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {account}}}\n\
         subjects: [{{kind: ServiceAccount, name: {account}, namespace: {ns}}}]\n"
    )
}
