//! PM ↔ CRM over mutual TLS on loopback, with a bearer token: certificates from
//! `hack/crm-certs.sh` (what `just up` uses), a CRM that requires client certificates from
//! its CA, and the PM reading CA, client certificate and key from the OCluster's Secret.
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Api;
use oaas_crds::OCluster;
use oaas_crds::cluster::ClusterHealth;
use oaas_e2e::{
    Crm, E2E_CLUSTER_LABEL, Pm, RestClient, TestNamespace, client_for, cluster_manifest, free_port,
    hub_context, install_all_crds, kubectl, kubectl_with_input, repo_path, spoke_contexts,
    wait_cluster_health, wait_for,
};
use oaas_proto::crm::GetClusterInfoRequest;
use oaas_proto::crm::crm_info_service_client::CrmInfoServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const TOKEN: &str = "e2e-bearer-token";

/// A CA with a CRM server certificate and a PM client certificate, in a fresh directory.
fn certificates(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("oaas-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = std::process::Command::new("bash")
        .arg(repo_path("hack/crm-certs.sh"))
        .arg(&dir)
        .status()?;
    anyhow::ensure!(status.success(), "hack/crm-certs.sh failed");
    Ok(dir)
}

/// Waits until OCluster `name` fails its checks; returns the message saying why.
async fn failure_of(clusters: &Api<OCluster>, name: &str) -> anyhow::Result<String> {
    wait_for(
        &format!("OCluster {name} to fail its checks"),
        Duration::from_secs(30),
        || async {
            let status = clusters.get(name).await?.status.unwrap_or_default();
            Ok(
                (status.health != ClusterHealth::Healthy && status.consecutive_failures > 0)
                    .then_some(status.message.unwrap_or_default()),
            )
        },
    )
    .await
}

fn pem(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).expect("a certificate file")
}

/// A channel to `endpoint` trusting `ca`'s CA, presenting `client`'s PM certificate if any.
async fn channel(endpoint: &str, ca: &Path, client: Option<&Path>) -> anyhow::Result<Channel> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(ca, "ca.crt")));
    if let Some(dir) = client {
        tls = tls.identity(Identity::from_pem(pem(dir, "pm.crt"), pem(dir, "pm.key")));
    }
    Ok(Endpoint::from_shared(endpoint.to_string())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

/// The outcome of one info call with the token, as a short description.
async fn info_call(channel: anyhow::Result<Channel>, token: Option<&str>) -> Result<(), String> {
    let channel = channel.map_err(|e| format!("connect: {e:?}"))?;
    let mut request = tonic::Request::new(GetClusterInfoRequest {});
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("a header value");
        request.metadata_mut().insert("authorization", value);
    }
    CrmInfoServiceClient::new(channel)
        .get_cluster_info(request)
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_pm_reaches_a_crm_over_mutual_tls_and_clients_without_a_valid_certificate_are_refused()
-> anyhow::Result<()> {
    install_all_crds().await?;
    let certs = certificates("tls")?;
    let rogue = certificates("tls-rogue")?;
    let token_file = certs.join("token");
    std::fs::write(&token_file, TOKEN)?;

    let context = spoke_contexts().remove(0);
    let spoke = client_for(&context).await?;
    let spoke_ns = TestNamespace::create(&spoke, "tls-spoke").await?;
    let port = free_port();
    let file = |name: &str| certs.join(name).display().to_string();
    let tls_env = [
        ("OPRC_CRM_PLAINTEXT", "false".to_string()),
        ("OPRC_CRM_TLS_CERT_FILE", file("crm.crt")),
        ("OPRC_CRM_TLS_KEY_FILE", file("crm.key")),
        ("OPRC_CRM_TLS_CLIENT_CA_FILE", file("ca.crt")),
        ("OPRC_CRM_AUTH_TOKEN_FILE", file("token")),
    ];
    let env: Vec<(&str, &str)> = tls_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _crm = Crm::start_on(port, &context, &spoke_ns.name, &env).await?;
    let endpoint = format!("https://127.0.0.1:{port}");

    // Direct clients: only the right certificate and the right token get an answer.
    let valid = info_call(channel(&endpoint, &certs, Some(&certs)).await, Some(TOKEN)).await;
    assert_eq!(
        valid,
        Ok(()),
        "a client with the PM certificate and the token"
    );
    let no_token = info_call(channel(&endpoint, &certs, Some(&certs)).await, None).await;
    assert!(
        no_token
            .as_ref()
            .is_err_and(|e| e.starts_with("Unauthenticated")),
        "{no_token:?}"
    );
    // These are refused in the TLS handshake, before any call is read (with TLS 1.3 the
    // client learns it on its first call), so never as far as the token check.
    let refused_by_tls = |outcome: &Result<(), String>| {
        outcome
            .as_ref()
            .is_err_and(|e| !e.starts_with("Unauthenticated"))
    };
    let no_cert = info_call(channel(&endpoint, &certs, None).await, Some(TOKEN)).await;
    assert!(
        refused_by_tls(&no_cert),
        "a client without a certificate: {no_cert:?}"
    );
    let other_ca = info_call(channel(&endpoint, &certs, Some(&rogue)).await, Some(TOKEN)).await;
    assert!(
        refused_by_tls(&other_ca),
        "a certificate of another CA: {other_ca:?}"
    );
    let plaintext = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(anyhow::Error::from);
    let plaintext = info_call(plaintext, Some(TOKEN)).await;
    assert!(
        refused_by_tls(&plaintext),
        "a plaintext client: {plaintext:?}"
    );

    // The PM, from OClusters: one with the PM's certificate and token, one with a
    // certificate of another CA.
    let hub = hub_context();
    let hub_client = client_for(&hub).await?;
    let ns = TestNamespace::create(&hub_client, "tls").await?;
    for (secret, dir) in [("crm-tls", &certs), ("rogue-tls", &rogue)] {
        let (ca, crt, key) = (
            format!("--from-file=ca.crt={}", certs.join("ca.crt").display()),
            format!("--from-file=tls.crt={}", dir.join("pm.crt").display()),
            format!("--from-file=tls.key={}", dir.join("pm.key").display()),
        );
        kubectl(
            &hub,
            &[
                "create", "secret", "generic", secret, "-n", &ns.name, &ca, &crt, &key,
            ],
        )?;
    }
    let literal = format!("--from-literal=token={TOKEN}");
    kubectl(
        &hub,
        &[
            "create",
            "secret",
            "generic",
            "crm-token",
            "-n",
            &ns.name,
            &literal,
        ],
    )?;
    let trusted = format!("{}-trusted", ns.name);
    let untrusted = format!("{}-untrusted", ns.name);
    let spec = |secret: &str| {
        format!(
            "  tls: {{secretRef: {{name: {secret}, namespace: {ns}}}}}\n  credentials: {{name: crm-token, namespace: {ns}}}\n",
            ns = ns.name
        )
    };
    for (cluster, secret) in [(&trusted, "crm-tls"), (&untrusted, "rogue-tls")] {
        let manifest = cluster_manifest(cluster, &ns.name, "", &endpoint, &spec(secret));
        kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
    }
    let selector = format!("{E2E_CLUSTER_LABEL}={}", ns.name);
    let _pm = Pm::start_with(&hub, &ns.name, &selector, &[]).await?;
    let clusters = Api::<OCluster>::all(hub_client.clone());
    wait_cluster_health(
        &clusters,
        &trusted,
        ClusterHealth::Healthy,
        Duration::from_secs(30),
    )
    .await?;
    let refused = failure_of(&clusters, &untrusted).await?;
    assert!(!refused.is_empty(), "the failure is explained");

    // A class deployed through the mutual-TLS channel becomes Available.
    let package = format!(
        "apiVersion: oaas.io/v1alpha1\nkind: OPackage\nmetadata: {{name: tls}}\nspec:\n  classes: [{{key: C, functionBindings: [{{name: f, functionKey: f}}]}}]\n  functions: [{{key: f, provisionConfig: {{containerImage: img/f:1, minScale: 1, maxScale: 1}}}}]\n---\napiVersion: oaas.io/v1alpha1\nkind: OClassDeployment\nmetadata: {{name: tls}}\nspec: {{package: tls, classKey: C, targetClusters: [{trusted}]}}\n"
    );
    kubectl_with_input(&hub, &["apply", "-n", &ns.name, "-f", "-"], &package)?;
    kubectl(
        &hub,
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Available",
            "classdeployment/tls",
            "--timeout=90s",
        ],
    )?;

    kubectl(
        &hub,
        &[
            "delete",
            "classdeployment",
            "tls",
            "-n",
            &ns.name,
            "--timeout=60s",
        ],
    )?;
    for cluster in [&trusted, &untrusted] {
        kubectl(&hub, &["delete", "ocluster", cluster, "--timeout=30s"])?;
    }
    ns.delete().await?;
    spoke_ns.delete().await?;
    let _ = std::fs::remove_dir_all(&certs);
    let _ = std::fs::remove_dir_all(&rogue);
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn an_untrusted_crm_certificate_is_accepted_only_with_insecure_skip_verify()
-> anyhow::Result<()> {
    install_all_crds().await?;
    // The CRM's certificate is signed by `certs`' CA; the hub only has another CA's.
    let certs = certificates("tls-insecure")?;
    let rogue = certificates("tls-insecure-rogue")?;

    let context = spoke_contexts().remove(0);
    let spoke = client_for(&context).await?;
    let spoke_ns = TestNamespace::create(&spoke, "tls-insecure-spoke").await?;
    let port = free_port();
    let file = |name: &str| certs.join(name).display().to_string();
    let tls_env = [
        ("OPRC_CRM_PLAINTEXT", "false".to_string()),
        ("OPRC_CRM_TLS_CERT_FILE", file("crm.crt")),
        ("OPRC_CRM_TLS_KEY_FILE", file("crm.key")),
    ];
    let env: Vec<(&str, &str)> = tls_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _crm = Crm::start_on(port, &context, &spoke_ns.name, &env).await?;
    // A name the certificate does not carry: skipping verification skips this check too.
    let endpoint = format!("https://localhost:{port}");

    let hub = hub_context();
    let hub_client = client_for(&hub).await?;
    let ns = TestNamespace::create(&hub_client, "tls-insecure").await?;
    let ca = format!("--from-file=ca.crt={}", rogue.join("ca.crt").display());
    kubectl(
        &hub,
        &[
            "create", "secret", "generic", "other-ca", "-n", &ns.name, &ca,
        ],
    )?;
    kubectl(
        &hub,
        &["create", "secret", "generic", "no-files", "-n", &ns.name],
    )?;
    let strict = format!("{}-strict", ns.name);
    let skip = format!("{}-skip", ns.name);
    for (cluster, tls) in [
        (&strict, "{secretRef: {name: other-ca, namespace: NS}}"),
        (
            &skip,
            "{secretRef: {name: no-files, namespace: NS}, insecureSkipVerify: true}",
        ),
    ] {
        let extra = format!("  tls: {}\n", tls.replace("NS", &ns.name));
        let manifest = cluster_manifest(cluster, &ns.name, "", &endpoint, &extra);
        kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
    }
    let selector = format!("{E2E_CLUSTER_LABEL}={}", ns.name);
    // Every REST health answer is checked live (a TTL of 0).
    let pm = Pm::start_with(&hub, &ns.name, &selector, &[("CRM_HEALTH_CACHE_TTL", "0")]).await?;
    let clusters = Api::<OCluster>::all(hub_client.clone());
    wait_cluster_health(
        &clusters,
        &skip,
        ClusterHealth::Healthy,
        Duration::from_secs(30),
    )
    .await?;
    let tls_condition = |cluster: &oaas_crds::OCluster| {
        let status = cluster.status.clone().unwrap_or_default();
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "TLSVerified")
            .map(|c| (c.status, c.reason))
    };
    assert_eq!(
        tls_condition(&clusters.get(&skip).await?),
        Some(("False".into(), "InsecureSkipVerify".into())),
        "the shortcut shows on the OCluster"
    );
    let refused = failure_of(&clusters, &strict).await?;
    assert!(
        refused.to_lowercase().contains("certificate") || refused.contains("UnknownIssuer"),
        "the failure names the certificate: {refused}"
    );
    assert_eq!(
        tls_condition(&clusters.get(&strict).await?),
        Some(("True".into(), "Verified".into()))
    );

    // REST: a live answer for the cluster it can reach, the cached one marked stale for the
    // one it cannot.
    let rest = RestClient::new(pm.port);
    let live = rest.get(&format!("/api/v1/clusters/{skip}/health")).await?;
    assert_eq!(live.body["status"], "Healthy", "{:?}", live.body);
    assert_eq!(live.body["stale"], false, "{:?}", live.body);
    assert_eq!(live.body["age_seconds"], 0, "{:?}", live.body);
    let stale = rest.get(&format!("/api/v1/envs/{strict}/health")).await?;
    assert_eq!(stale.body["stale"], true, "{:?}", stale.body);
    let reason = stale.body["stale_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("CRM_HEALTH_CACHE_TTL"), "{reason}");

    for cluster in [&strict, &skip] {
        kubectl(&hub, &["delete", "ocluster", cluster, "--timeout=30s"])?;
    }
    ns.delete().await?;
    spoke_ns.delete().await?;
    let _ = std::fs::remove_dir_all(&certs);
    let _ = std::fs::remove_dir_all(&rogue);
    Ok(())
}
