//! The deployment manifests against the real API servers: both kustomize bases pass a
//! server-side dry run, and the PM and the CRM run their main flows with exactly the rights
//! those bases grant them (a ServiceAccount token each, nothing else).
use std::path::PathBuf;
use std::time::Duration;

use oaas_crds::cluster::ClusterHealth;
use oaas_e2e::{
    Crm, E2E_CLUSTER_LABEL, E2E_LABEL, Pm, RestClient, TestNamespace, client_for, cluster_manifest,
    free_port, hub_context, install_all_crds, kubectl, kubectl_with_input, repo_path,
    spoke_contexts, wait_cluster_health, wait_for,
};

const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// A base rendered into `namespace` instead of its own (its Namespace objects dropped, so a
/// dry run finds the namespace), with the names of everything prefixed by the namespace and
/// labelled with it, so that tests cannot collide and leftovers can be found.
fn render_into(base: &str, namespace: &str) -> anyhow::Result<Vec<serde_yaml::Value>> {
    // (CRDs keep their names: kustomize leaves them unprefixed.)
    let dir = std::env::temp_dir().join(format!("oaas-e2e-kustomize-{namespace}"));
    std::fs::create_dir_all(&dir)?;
    // kustomize only takes relative paths to a base.
    let depth = dir.components().count() - 1;
    let absolute = repo_path(base).canonicalize()?;
    let base_path = PathBuf::from("../".repeat(depth)).join(absolute.strip_prefix("/")?);
    let overlay = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{base}]\nnamespace: {namespace}\nnamePrefix: {namespace}-\nlabels:\n  - pairs: {{{E2E_LABEL}: {namespace}}}\npatches:\n  - target: {{kind: Namespace}}\n    patch: |-\n      $patch: delete\n      apiVersion: v1\n      kind: Namespace\n      metadata: {{name: any}}\n",
        base = base_path.display()
    );
    std::fs::write(dir.join("kustomization.yaml"), overlay)?;
    let rendered = std::process::Command::new("kubectl")
        .args(["kustomize"])
        .arg(&dir)
        .output()?;
    std::fs::remove_dir_all(&dir)?;
    anyhow::ensure!(
        rendered.status.success(),
        "kubectl kustomize {base}: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8(rendered.stdout)?;
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let object = serde::Deserialize::deserialize(document)?;
        if object != serde_yaml::Value::Null {
            objects.push(object);
        }
    }
    Ok(objects)
}

fn kind(object: &serde_yaml::Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn to_stream(objects: &[serde_yaml::Value]) -> anyhow::Result<String> {
    let mut stream = String::new();
    for object in objects {
        stream.push_str("---\n");
        stream.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(stream)
}

/// Server-side dry run of `base` on `context`, in a test namespace; the output lists every
/// object the API server accepted.
async fn dry_run(base: &str, context: &str) -> anyhow::Result<()> {
    let client = client_for(context).await?;
    let ns = TestNamespace::create(&client, "manifests").await?;
    let objects = render_into(base, &ns.name)?;
    let kinds: Vec<&str> = objects.iter().map(kind).collect();
    for expected in [
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(
            kinds.contains(&expected),
            "{base} has a {expected}: {kinds:?}"
        );
    }
    let args = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e-dry-run",
        "--dry-run=server",
        "-f",
        "-",
    ];
    let out = kubectl_with_input(context, &args, &to_stream(&objects)?)?;
    assert_eq!(
        out.lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count(),
        objects.len(),
        "every object of {base} passes: {out}"
    );
    // The Namespace objects left out above, on their own.
    let namespaces = repo_path(base).join("namespace.yaml").display().to_string();
    kubectl(context, &["apply", "--dry-run=server", "-f", &namespaces])?;
    ns.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn both_kustomize_bases_pass_a_server_side_dry_run() -> anyhow::Result<()> {
    install_all_crds().await?;
    dry_run("manifests/hub", &hub_context()).await?;
    for spoke in spoke_contexts() {
        dry_run("manifests/spoke", &spoke).await?;
    }
    Ok(())
}

/// A kubeconfig with one context, `as-sa`, that authenticates to `context`'s API server
/// with the token of ServiceAccount `account` only.
fn service_account_kubeconfig(
    context: &str,
    namespace: &str,
    account: &str,
) -> anyhow::Result<PathBuf> {
    let view = |path: &str| {
        let jsonpath = format!("-o=jsonpath={{.clusters[0].cluster.{path}}}");
        kubectl(context, &["config", "view", "--raw", "--minify", &jsonpath])
    };
    let (server, ca) = (view("server")?, view("certificate-authority-data")?);
    let token = kubectl(
        context,
        &["create", "token", account, "-n", namespace, "--duration=1h"],
    )?;
    let file = std::env::temp_dir().join(format!("oaas-e2e-{namespace}-{account}.kubeconfig"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: as-sa\nclusters: [{{name: c, cluster: {{server: \"{server}\", certificate-authority-data: \"{ca}\"}}}}]\nusers: [{{name: sa, user: {{token: \"{}\"}}}}]\ncontexts: [{{name: as-sa, context: {{cluster: c, user: sa, namespace: {namespace}}}}}]\n",
            token.trim()
        ),
    )?;
    Ok(file)
}

/// Applies the RBAC objects of `base` into `namespace`; returns them, to delete afterwards.
fn apply_rbac(base: &str, context: &str, namespace: &str) -> anyhow::Result<String> {
    let objects = render_into(base, namespace)?;
    let rbac: Vec<_> = objects
        .into_iter()
        .filter(|o| RBAC_KINDS.contains(&kind(o)))
        .collect();
    let stream = to_stream(&rbac)?;
    kubectl_with_input(context, &["apply", "-f", "-"], &stream)?;
    Ok(stream)
}

/// Lines of an operator's log that show the API server refusing it something.
fn refusals(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .map(String::from)
        .collect()
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_pm_and_the_crm_do_their_work_with_exactly_the_rights_of_the_manifests()
-> anyhow::Result<()> {
    install_all_crds().await?;
    let hub = hub_context();
    let hub_client = client_for(&hub).await?;
    let ns = TestNamespace::create(&hub_client, "rbac").await?;
    let spoke = spoke_contexts().remove(0);
    let spoke_client = client_for(&spoke).await?;
    // The CRM's namespace has the hub namespace's name: the one the class deployment maps to.
    let spoke_ns = TestNamespace::create_named(&spoke_client, "rbac", &ns.name).await?;

    // The spoke: the CRM as its ServiceAccount, leading through its Lease, requiring a token.
    let crm_rbac = apply_rbac("manifests/spoke", &spoke, &spoke_ns.name)?;
    let crm_account = format!("{}-oaas-crm", spoke_ns.name);
    let crm_config = service_account_kubeconfig(&spoke, &spoke_ns.name, &crm_account)?;
    let token_file = std::env::temp_dir().join(format!("oaas-e2e-{}-token", ns.name));
    std::fs::write(&token_file, "rbac-token")?;
    let crm_env = [
        ("KUBECONFIG", crm_config.display().to_string()),
        ("OPRC_CRM_LEADER_ELECTION", "true".into()),
        ("OPRC_CRM_LEASE_DURATION_SECS", "4".into()),
        ("OPRC_CRM_AUTH_TOKEN_FILE", token_file.display().to_string()),
    ];
    let crm_env: Vec<(&str, &str)> = crm_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let crm = Crm::start_on(free_port(), "as-sa", &spoke_ns.name, &crm_env).await?;

    // The hub: the PM as its ServiceAccount, leading, with REST auth on, reading the CRM's
    // token from a Secret in its own namespace.
    let pm_rbac = apply_rbac("manifests/hub", &hub, &ns.name)?;
    let pm_account = format!("{}-oaas-pm", ns.name);
    let pm_config = service_account_kubeconfig(&hub, &ns.name, &pm_account)?;
    let literal = "--from-literal=token=rbac-token";
    kubectl(
        &hub,
        &[
            "create",
            "secret",
            "generic",
            "crm-token",
            "-n",
            &ns.name,
            literal,
        ],
    )?;
    let cluster = format!("{}-spoke", ns.name);
    let credentials = format!(
        "  credentials: {{name: crm-token, namespace: {}}}\n",
        ns.name
    );
    let manifest = cluster_manifest(&cluster, &ns.name, "", &crm.endpoint, &credentials);
    kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
    let pm_env = [
        ("KUBECONFIG", pm_config.display().to_string()),
        ("OAAS_PM_NAMESPACE", ns.name.clone()),
        ("OAAS_PM_LEADER_ELECTION", "true".into()),
        ("OAAS_PM_LEASE_DURATION_SECS", "4".into()),
        ("OAAS_PM_REST_AUTH", "kubernetes".into()),
    ];
    let pm_env: Vec<(&str, &str)> = pm_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let selector = format!("{E2E_CLUSTER_LABEL}={}", ns.name);
    let pm = Pm::start_with("as-sa", &ns.name, &selector, &pm_env).await?;
    let clusters = kube::Api::<oaas_crds::OCluster>::all(hub_client.clone());
    wait_cluster_health(
        &clusters,
        &cluster,
        ClusterHealth::Healthy,
        Duration::from_secs(30),
    )
    .await?;

    // REST with auth: a TokenReview and a SubjectAccessReview per request.
    let token = kubectl(&hub, &["create", "token", &pm_account, "-n", &ns.name])?;
    let rest = RestClient::new(pm.port).with_token(token.trim());
    let listed = rest.get("/api/v1/packages").await?;
    assert_eq!(listed.status, 200, "{:?}", listed.body);

    // Deploy, change, delete: every write of both operators.
    let package = |image: &str| {
        format!(
            "apiVersion: oaas.io/v1alpha1\nkind: OPackage\nmetadata: {{name: rbac}}\nspec:\n  classes: [{{key: C, functionBindings: [{{name: f, functionKey: f}}]}}]\n  functions: [{{key: f, provisionConfig: {{containerImage: \"{image}\", minScale: 1, maxScale: 3}}}}]\n---\napiVersion: oaas.io/v1alpha1\nkind: OClassDeployment\nmetadata: {{name: rbac}}\nspec: {{package: rbac, classKey: C, targetClusters: [{cluster}]}}\n"
        )
    };
    let apply = ["apply", "-n", &ns.name, "-f", "-"];
    kubectl_with_input(&hub, &apply, &package("img/f:1"))?;
    let available = "--for=condition=Available";
    let wait = [
        "wait",
        "-n",
        &ns.name,
        available,
        "classdeployment/rbac",
        "--timeout=90s",
    ];
    kubectl(&hub, &wait)?;
    kubectl_with_input(&hub, &apply, &package("img/f:2"))?;
    let image = "-o=jsonpath={.spec.template.spec.containers[0].image}";
    wait_for(
        "the new image on the spoke",
        Duration::from_secs(60),
        || async {
            let now = kubectl(
                &spoke,
                &["get", "deployment", "rbac-f", "-n", &spoke_ns.name, image],
            );
            Ok((now.ok().as_deref() == Some("img/f:2")).then_some(()))
        },
    )
    .await?;
    for (context, namespace, reason) in [
        (&hub, &ns.name, "Planned"),
        (&spoke, &spoke_ns.name, "Applied"),
    ] {
        let reasons = "-o=jsonpath={.items[*].reason}";
        let reasons = kubectl(
            context,
            &["get", "events.events.k8s.io", "-n", namespace, reasons],
        )?;
        assert!(
            reasons.contains(reason),
            "{reason} event in {namespace}: {reasons}"
        );
    }
    kubectl(
        &hub,
        &[
            "delete",
            "classdeployment",
            "rbac",
            "-n",
            &ns.name,
            "--timeout=60s",
        ],
    )?;
    let kinds = "classruntimes,deployments,services";
    wait_for("the spoke to be clean", Duration::from_secs(60), || async {
        let left = kubectl(&spoke, &["get", kinds, "-n", &spoke_ns.name, "-o=name"])?;
        Ok(left.trim().is_empty().then_some(()))
    })
    .await?;

    let refused = [refusals(&pm.process.log), refusals(&crm.process.log)].concat();
    assert!(
        refused.is_empty(),
        "an operator was refused something: {refused:#?}"
    );

    // While the PM runs: it holds finalizers on both.
    kubectl(
        &hub,
        &[
            "delete",
            "opackage",
            "rbac",
            "-n",
            &ns.name,
            "--timeout=30s",
        ],
    )?;
    kubectl(&hub, &["delete", "ocluster", &cluster, "--timeout=30s"])?;
    drop(pm);
    drop(crm);
    kubectl_with_input(&hub, &["delete", "-f", "-"], &pm_rbac)?;
    kubectl_with_input(&spoke, &["delete", "-f", "-"], &crm_rbac)?;
    for file in [&crm_config, &pm_config, &token_file] {
        let _ = std::fs::remove_file(file);
    }
    ns.delete().await?;
    spoke_ns.delete().await
}
