//! Turns spokes described by the environment (CRM_* variables) into OCluster resources, and
//! their API keys and TLS files into Secrets the OClusters reference. Server-side apply with
//! its own field manager: re-running changes nothing, and fields set by others stay.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use oaas_crds::OCluster;
use oaas_crds::cluster::{ClusterTls, OClusterSpec, SecretKeySelector, SecretRef};
use tracing::info;

use crate::config::{ClusterConfig, resource_name};

use oaas_core::wire::PM_BOOTSTRAP_FIELD_MANAGER as FIELD_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("reading {path} for cluster {cluster}: {source}")]
    File {
        cluster: String,
        path: String,
        source: std::io::Error,
    },
    #[error("writing cluster {cluster}: {source}")]
    Kube {
        cluster: String,
        source: kube::Error,
    },
}

pub async fn apply(
    client: &Client,
    namespace: &str,
    clusters: &[ClusterConfig],
) -> Result<(), BootstrapError> {
    if clusters.is_empty() {
        return Ok(());
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let kube_error = |cluster: &str| {
        let cluster = cluster.to_string();
        move |source| BootstrapError::Kube {
            cluster: cluster.clone(),
            source,
        }
    };
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &params, &Patch::Apply(&ns))
        .await
        .map_err(kube_error("(namespace)"))?;
    for c in clusters {
        let name = resource_name(&c.name);
        let secret_name = format!("oaas-cluster-{name}");
        let data = secret_data(c)?;
        // With TLS the OCluster references the Secret even when it holds nothing (TLS
        // without verification and without a client certificate needs no file).
        if !data.is_empty() || c.tls.is_some() {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(secret_name.clone()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            Api::<Secret>::namespaced(client.clone(), namespace)
                .patch(&secret_name, &params, &Patch::Apply(&secret))
                .await
                .map_err(kube_error(&c.name))?;
        }
        let secret_ref = SecretRef {
            name: secret_name.clone(),
            namespace: namespace.into(),
        };
        let spec = OClusterSpec {
            endpoint: c.url.clone(),
            tls: c.tls.as_ref().map(|tls| ClusterTls {
                secret_ref: secret_ref.clone(),
                server_name: None,
                insecure_skip_verify: tls.insecure,
            }),
            credentials: c.api_key.as_ref().map(|_| SecretKeySelector {
                name: secret_name.clone(),
                namespace: namespace.into(),
                key: "token".into(),
            }),
            timeout_seconds: c.timeout_seconds,
            retry_attempts: c.retry_attempts,
            health_check_interval_seconds: c.health_check_interval_seconds,
            failure_threshold: c.failure_threshold,
            circuit_open_seconds: c.circuit_open_seconds,
            availability: None,
            default: c.default,
            namespace_prefix: String::new(),
        };
        Api::<OCluster>::all(client.clone())
            .patch(&name, &params, &Patch::Apply(&OCluster::new(&name, spec)))
            .await
            .map_err(kube_error(&c.name))?;
        info!(cluster = %name, endpoint = %c.url, "registered spoke from the environment");
    }
    Ok(())
}

fn secret_data(c: &ClusterConfig) -> Result<BTreeMap<String, ByteString>, BootstrapError> {
    let mut data = BTreeMap::new();
    if let Some(key) = &c.api_key {
        data.insert("token".into(), ByteString(key.clone().into_bytes()));
    }
    if let Some(tls) = &c.tls {
        for (key, path) in [
            ("ca.crt", &tls.ca_cert),
            ("tls.crt", &tls.client_cert),
            ("tls.key", &tls.client_key),
        ] {
            if let Some(path) = path {
                let bytes = std::fs::read(path).map_err(|source| BootstrapError::File {
                    cluster: c.name.clone(),
                    path: path.clone(),
                    source,
                })?;
                data.insert(key.into(), ByteString(bytes));
            }
        }
    }
    Ok(data)
}
