//! The system as users deploy it, on kind (`just kind-up`): the PM and the CRMs run as Pods
//! from images built here, function and ODGM Pods run in real containers, the hub reaches
//! the spokes across the kind Docker network.
//!
//! Built only with the `kind` feature and run by `just e2e-kind` (KUBECONFIG = the kind
//! clusters' kubeconfig), one test at a time: one of them deletes a spoke's CRM Pods.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use oaas_crds::OCluster;
use oaas_crds::cluster::ClusterHealth;
use oaas_e2e::{
    RestClient, TestNamespace, client_for, grant, hub_context, kubectl, kubectl_with_input,
    repo_path, spoke_contexts, wait_for,
};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Where kind/overlays put the operators.
const SYSTEM_NS: &str = "oaas-system";
/// Where the sample's workloads run in the spokes: the hub namespace it is applied in
/// (`default`, handed over to the CRMs by kind-up), mapped to the same name.
const SAMPLE_NS: &str = "default";
/// The PM's REST facade: its Service's NodePort, mapped to the host by kind/hub.yaml.
const REST_PORT: u16 = 30080;
const ROLLOUT: Duration = Duration::from_secs(180);

/// A Pod that runs, Ready, in real containers (containerd), and is not going away.
fn ready_in_containerd(p: &Pod) -> bool {
    let status = p.status.as_ref();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            !cs.is_empty()
                && cs.iter().all(|c| {
                    c.ready
                        && c.container_id
                            .as_deref()
                            .is_some_and(|id| id.starts_with("containerd://"))
                })
        });
    running && containers && p.metadata.deletion_timestamp.is_none()
}

async fn pods(client: &Client, ns: &str, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let list = ListParams::default().labels(selector);
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&list)
        .await?
        .items)
}

/// Every Pod matching `selector` in `ns`, once there are some and all are
/// [`ready_in_containerd`].
async fn pods_running_in_containerd(
    client: &Client,
    ns: &str,
    selector: &str,
) -> anyhow::Result<Option<Vec<Pod>>> {
    let pods = pods(client, ns, selector).await?;
    Ok((!pods.is_empty() && pods.iter().all(ready_in_containerd)).then_some(pods))
}

/// Every Pod runs the image built here (kind-up pins a tag of the build it loaded).
fn assert_images(pods: &[Pod], prefix: &str, context: &str) {
    for pod in pods {
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone());
        assert!(
            image.as_deref().is_some_and(|i| i.starts_with(prefix)),
            "{context}: {image:?}"
        );
    }
}

fn wait_available(context: &str, ns: &str, name: &str) -> anyhow::Result<()> {
    kubectl(
        context,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=Available",
            &format!("classdeployment/{name}"),
            &format!("--timeout={}s", ROLLOUT.as_secs()),
        ],
    )
    .map(drop)
}

/// The sample package (manifests/samples/package.yaml) named `package`.
fn sample_package_named(package: &str) -> anyhow::Result<String> {
    let sample = std::fs::read_to_string(repo_path("manifests/samples/package.yaml"))?;
    Ok(sample.replace("name: example\n", &format!("name: {package}\n")))
}

/// The sample package and class deployment, unchanged, in hub namespace `ns`.
fn sample_in(ns: &str) -> anyhow::Result<()> {
    let hub = hub_context();
    for file in [
        "manifests/samples/package.yaml",
        "manifests/samples/classdeployment.yaml",
    ] {
        let manifest = std::fs::read_to_string(repo_path(file))?;
        kubectl_with_input(&hub, &["apply", "-n", ns, "-f", "-"], &manifest)?;
    }
    Ok(())
}

/// The Deployments the sample's Record class becomes on a spoke: two functions and ODGM.
/// (The runtime is named after the class deployment, `record`.)
const RECORD_WORKLOADS: [&str; 3] = ["record-echo", "record-record-update", "record-odgm"];

#[tokio::test]
#[ignore = "needs the kind clusters: run `just e2e-kind`"]
async fn the_sample_runs_in_real_containers_on_both_spokes() -> anyhow::Result<()> {
    let hub = hub_context();
    wait_available(&hub, "default", "record")?;

    // The PM runs in the hub from the image built here. With leader election only the
    // leader is Ready (the standby answers 503 on /readyz by design).
    let hub_client = client_for(&hub).await?;
    let pm = "app.kubernetes.io/name=oaas-pm";
    let pm_pods = wait_for("a Ready PM in containerd", ROLLOUT, || async {
        let pods = pods(&hub_client, SYSTEM_NS, pm).await?;
        Ok(pods.iter().any(ready_in_containerd).then_some(pods))
    })
    .await?;
    assert_images(&pm_pods, "ghcr.io/oaas/oaas-pm:", &hub);

    let clusters: Api<OCluster> = Api::all(hub_client.clone());
    for context in spoke_contexts() {
        let spoke = client_for(&context).await?;
        let crms = wait_for(&format!("CRM Pods in {context}"), ROLLOUT, || {
            pods_running_in_containerd(&spoke, SYSTEM_NS, "app.kubernetes.io/name=oaas-crm")
        })
        .await?;
        assert_images(&crms, "ghcr.io/oaas/oaas-crm:", &context);

        // Two functions and the data grid, each a Deployment with every replica Ready, each
        // Pod a real container.
        let deployments: Api<Deployment> = Api::namespaced(spoke.clone(), SAMPLE_NS);
        for name in RECORD_WORKLOADS {
            let d = wait_for(&format!("{name} ready in {context}"), ROLLOUT, || async {
                let d = deployments.get(name).await?;
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let ready = d
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                Ok((want >= 1 && ready == want).then_some(d))
            })
            .await?;
            let labels = d
                .spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.clone())
                .unwrap_or_default();
            let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let selector = selector.join(",");
            wait_for(&format!("{name}'s Pods in {context}"), ROLLOUT, || {
                pods_running_in_containerd(&spoke, SAMPLE_NS, &selector)
            })
            .await?;
        }

        // An invocation reaches the echo function's container through its Service (the
        // spoke's API server proxies it across the Pod network).
        let answer = kubectl_with_input(
            &context,
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/{SAMPLE_NS}/services/record-echo:http/proxy/invoke"),
                "-f",
                "-",
            ],
            r#"{"greeting": "hello from the e2e test"}"#,
        )?;
        let answer: Value = serde_json::from_str(&answer)?;
        assert_eq!(
            answer["output"]["greeting"], "hello from the e2e test",
            "{answer}"
        );
        assert_eq!(answer["function"], "echo", "{answer}");

        // The hub reports the spoke's real node count, not a constant.
        let nodes = Api::<Node>::all(spoke.clone())
            .list(&ListParams::default())
            .await?;
        let name = context
            .strip_prefix("oaas-")
            .unwrap_or(&context)
            .to_string();
        let status = clusters.get(&name).await?.status.unwrap_or_default();
        assert_eq!(status.health, ClusterHealth::Healthy, "{name}: {status:?}");
        assert_eq!(status.node_count, Some(nodes.items.len() as u32), "{name}");
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs the kind clusters: run `just e2e-kind`"]
async fn the_rest_facade_answers_through_the_hubs_service() -> anyhow::Result<()> {
    let hub = hub_context();
    let ns = TestNamespace::create(&client_for(&hub).await?, "kind-rest").await?;
    let rest = RestClient::new(REST_PORT);

    // Open routes answer without a token; the API asks for one (the hub overlay keeps the
    // base's OAAS_PM_REST_AUTH=kubernetes).
    let health = wait_for("the PM's REST facade on the NodePort", ROLLOUT, || async {
        Ok(rest
            .get("/health")
            .await
            .ok()
            .filter(|a| a.status == StatusCode::OK))
    })
    .await?;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        rest.get("/api/v1/packages").await?.status,
        StatusCode::UNAUTHORIZED
    );

    // A reader's token, checked by the hub's TokenReview and SubjectAccessReview.
    kubectl_with_input(
        &hub,
        &["apply", "-f", "-"],
        &grant(&ns.name, "reader", "get, list"),
    )?;
    let package = format!("rest-{}", &ns.name[ns.name.len() - 6..]);
    kubectl_with_input(
        &hub,
        &["apply", "-n", &ns.name, "-f", "-"],
        &sample_package_named(&package)?,
    )?;
    let token = kubectl(&hub, &["create", "token", "reader", "-n", &ns.name])?;
    let reader = rest.with_token(token.trim());
    let answer = wait_for(
        "the package through REST",
        Duration::from_secs(30),
        || async {
            let a = reader
                .get(&format!("/api/v1/packages/{package}?namespace={}", ns.name))
                .await?;
            Ok((a.status == StatusCode::OK).then_some(a))
        },
    )
    .await?;
    assert_eq!(answer.body["name"], package.as_str(), "{:?}", answer.body);
    let denied = reader.get("/api/v1/packages?namespace=default").await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{:?}", denied.body);

    ns.delete().await
}

#[tokio::test]
#[ignore = "needs the kind clusters: run `just e2e-kind`"]
async fn a_deleted_crm_pod_comes_back_and_deleting_a_class_deployment_removes_its_workloads()
-> anyhow::Result<()> {
    let hub = hub_context();
    let hub_client = client_for(&hub).await?;
    let ns = TestNamespace::create(&hub_client, "kind-crm").await?;
    // The sample again, unchanged, beside the one in `default`: in its own spoke namespace.
    sample_in(&ns.name)?;
    wait_available(&hub, &ns.name, "record")?;

    // Every CRM Pod of spoke-b goes; its Deployment brings new ones.
    let spoke_b = spoke_contexts()
        .into_iter()
        .nth(1)
        .expect("two spoke contexts");
    let spoke = client_for(&spoke_b).await?;
    let before: Vec<String> =
        pods_running_in_containerd(&spoke, SYSTEM_NS, "app.kubernetes.io/name=oaas-crm")
            .await?
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
    kubectl(
        &spoke_b,
        &[
            "delete",
            "pod",
            "-n",
            SYSTEM_NS,
            "-l",
            "app.kubernetes.io/name=oaas-crm",
            "--wait=false",
        ],
    )?;
    wait_for(&format!("new CRM Pods in {spoke_b}"), ROLLOUT, || async {
        let pods = pods_running_in_containerd(&spoke, SYSTEM_NS, "app.kubernetes.io/name=oaas-crm")
            .await?;
        Ok(pods.filter(|pods| {
            pods.iter()
                .all(|p| !before.contains(p.metadata.uid.as_ref().unwrap_or(&String::new())))
        }))
    })
    .await?;
    let name = spoke_b
        .strip_prefix("oaas-")
        .unwrap_or(&spoke_b)
        .to_string();
    let clusters: Api<OCluster> = Api::all(hub_client.clone());
    wait_for(&format!("{name} Healthy again"), ROLLOUT, || async {
        let health = clusters.get(&name).await?.status.map(|s| s.health);
        Ok((health == Some(ClusterHealth::Healthy)).then_some(()))
    })
    .await?;

    // The new CRM works: a changed function configuration reaches spoke-b, and the class
    // deployment is Available again.
    let patch = r#"{"spec":{"functions":[{"functionKey":"echo","config":{"GREETING":"again"}}]}}"#;
    kubectl(
        &hub,
        &[
            "patch",
            "-n",
            &ns.name,
            "classdeployment/record",
            "--type=merge",
            "-p",
            patch,
        ],
    )?;
    let deployments: Api<Deployment> = Api::namespaced(spoke.clone(), &ns.name);
    let echo = "record-echo";
    wait_for(&format!("GREETING=again in {spoke_b}"), ROLLOUT, || async {
        let d = deployments.get(echo).await?;
        let env = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.containers.into_iter().next())
            .and_then(|c| c.env)
            .unwrap_or_default();
        Ok(env
            .iter()
            .any(|e| e.name == "GREETING" && e.value.as_deref() == Some("again"))
            .then_some(()))
    })
    .await?;
    wait_available(&hub, &ns.name, "record")?;

    // Deleting the class deployment removes its workloads from both spokes.
    kubectl(
        &hub,
        &[
            "delete",
            "-n",
            &ns.name,
            "classdeployment/record",
            "--timeout=120s",
        ],
    )?;
    for context in spoke_contexts() {
        // Its workloads and Pods go, and with them the spoke namespace the CRM made; the
        // sample in `default` keeps running.
        let client = client_for(&context).await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        wait_for(
            &format!("namespace {} gone from {context}", ns.name),
            ROLLOUT,
            || async { Ok(namespaces.get_opt(&ns.name).await?.is_none().then_some(())) },
        )
        .await?;
        let sample: Api<Deployment> = Api::namespaced(client, SAMPLE_NS);
        for name in RECORD_WORKLOADS {
            assert!(sample.get_opt(name).await?.is_some(), "{name} in {context}");
        }
    }
    wait_available(&hub, SAMPLE_NS, "record")?;
    ns.delete().await
}
