use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use oaas_crds::{ClassRuntime, OClassDeployment, OPackage};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

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
        Self::create_named(client, test, &name).await
    }

    /// A namespace of the given name (e.g. the same as the test's hub namespace, in a spoke).
    pub async fn create_named(client: &Client, test: &str, name: &str) -> anyhow::Result<Self> {
        let name = name.to_string();
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

    /// Deletes the namespace and waits until it is gone, so that finalizers of what it held
    /// ran while the test's operators were still up.
    pub async fn delete(self) -> anyhow::Result<()> {
        self.delete_within(Duration::from_secs(60)).await
    }

    pub async fn delete_within(self, timeout: Duration) -> anyhow::Result<()> {
        let api = Api::<Namespace>::all(self.client);
        api.delete(&self.name, &DeleteParams::default()).await?;
        let what = format!("namespace {} to be deleted", self.name);
        crate::wait_for(&what, timeout, || async {
            Ok(api.get_opt(&self.name).await?.is_none().then_some(()))
        })
        .await
    }
}

/// Deletes every namespace the suite created, in one cluster. Our resources left there by a
/// test whose operators are gone lose their finalizers first, or the namespace could never go.
pub async fn delete_all_test_namespaces(client: &Client) -> anyhow::Result<usize> {
    let api = Api::<Namespace>::all(client.clone());
    let list = api.list(&ListParams::default().labels(E2E_LABEL)).await?;
    for ns in &list.items {
        let Some(name) = &ns.metadata.name else {
            continue;
        };
        // Our resources there keep finalizers whose operators are gone; a CRD that is not
        // installed in this cluster just lists nothing.
        let kinds = [
            ApiResource::erase::<ClassRuntime>(&()),
            ApiResource::erase::<OClassDeployment>(&()),
            ApiResource::erase::<OPackage>(&()),
        ];
        for kind in kinds {
            let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), name, &kind);
            let Ok(items) = objects.list(&ListParams::default()).await else {
                continue;
            };
            for object in items {
                let patch = Patch::Merge(json!({"metadata": {"finalizers": null}}));
                objects
                    .patch(&object.name_any(), &PatchParams::default(), &patch)
                    .await?;
            }
        }
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(list.items.len())
}
