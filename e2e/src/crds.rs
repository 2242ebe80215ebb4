use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::wait_for;

/// Installs CRDs with server-side apply and waits until each is Established.
pub async fn install_crds(
    client: &Client,
    crds: &[CustomResourceDefinition],
) -> anyhow::Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = PatchParams::apply("oaas-e2e").force();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd)).await?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        wait_for(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            || async {
                let crd = api.get(&name).await?;
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                Ok(conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

/// Installs the hub CRDs in the hub and the spoke CRDs in every spoke.
pub async fn install_all_crds() -> anyhow::Result<()> {
    install_crds(
        &crate::client_for(&crate::hub_context()).await?,
        &oaas_crds::hub_crds(),
    )
    .await?;
    for context in crate::spoke_contexts() {
        install_crds(
            &crate::client_for(&context).await?,
            &oaas_crds::spoke_crds(),
        )
        .await?;
    }
    Ok(())
}
