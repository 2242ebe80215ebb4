use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use rand::distr::{Alphanumeric, SampleString};
use std::collections::BTreeMap;

use crate::E2E_LABEL;

/// A randomly named namespace, labelled with the test that owns it. Dropping it does not
/// delete it (async drop is not possible); call [`TestNamespace::delete`] at the end of the
/// test, and `just e2e-clean` removes whatever a failed test left behind.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn create(client: &Client, test: &str) -> anyhow::Result<Self> {
        let suffix = Alphanumeric
            .sample_string(&mut rand::rng(), 6)
            .to_lowercase();
        let name = format!("e2e-{}-{suffix}", test.replace('_', "-"));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(E2E_LABEL.to_string(), test.to_string())])),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(Self {
            name,
            client: client.clone(),
        })
    }

    pub async fn delete(self) -> anyhow::Result<()> {
        Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await?;
        Ok(())
    }
}

/// Deletes every namespace the suite created, in one cluster.
pub async fn delete_all_test_namespaces(client: &Client) -> anyhow::Result<usize> {
    let api = Api::<Namespace>::all(client.clone());
    let list = api.list(&ListParams::default().labels(E2E_LABEL)).await?;
    for ns in &list.items {
        if let Some(name) = &ns.metadata.name {
            api.delete(name, &DeleteParams::default()).await?;
        }
    }
    Ok(list.items.len())
}
