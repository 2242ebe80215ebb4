//! Removing ClassRuntimes: one the hub deletes, and one replaced by a newer runtime of the
//! same deployment (moved to another spoke namespace, or named as before ids carried the
//! hub), which goes only once its replacement is Available so that nothing stops serving.
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use oaas_core::tenancy::{CRM_LABEL, REPLACES_ANNOTATION, parse_deployment_id};
use oaas_core::wire::CRM_FIELD_MANAGER;
use oaas_crds::ClassRuntime;
use serde_json::json;
use tracing::info;

/// Deletes `runtime`; returns whether it was there. One made before runtimes carried a CRM's
/// label has its finalizer dropped as well: no CRM watches it, and garbage collection
/// removes its children through their owner references.
pub async fn remove(client: &Client, runtime: &ClassRuntime) -> Result<bool, kube::Error> {
    let namespace = runtime.namespace().unwrap_or_default();
    let name = runtime.name_any();
    let api = Api::<ClassRuntime>::namespaced(client.clone(), &namespace);
    // What is left being deleted (it has finalizers), as the API server holds it.
    let pending = match api.delete(&name, &DeleteParams::default()).await {
        Ok(deleted) => deleted.left(),
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
        Err(e) => return Err(e),
    };
    // Only an old-style runtime (no CRM label at all) has nobody else to run its finalizer.
    // The API server's copy says which: `runtime` may come from the cache, which keeps no
    // labels (`grpc::runtimes::trim`).
    if let Some(pending) = pending
        && !pending.labels().contains_key(CRM_LABEL)
    {
        let patch = json!({"metadata": {"finalizers": null}});
        match api.patch(&name, &params(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Removes the runtimes `runtime` replaces (its `oaas.io/replaces` annotation), then the
/// annotation. Only this CRM's (or old-style) runtimes of the same deployment are touched,
/// whatever the annotation says.
pub async fn replaced(
    client: &Client,
    crm: &str,
    runtime: &ClassRuntime,
) -> Result<(), kube::Error> {
    let Some(replaces) = runtime.annotations().get(REPLACES_ANNOTATION) else {
        return Ok(());
    };
    let id = &runtime.spec.deployment_id;
    let legacy = parse_deployment_id(id).map(|i| i.within_hub()).ok();
    for entry in replaces.split(',') {
        let Some((namespace, name)) = entry.split_once('/') else {
            continue;
        };
        let api = Api::<ClassRuntime>::namespaced(client.clone(), namespace);
        let Some(old) = api.get_opt(name).await? else {
            continue;
        };
        let same_deployment =
            &old.spec.deployment_id == id || Some(&old.spec.deployment_id) == legacy.as_ref();
        let is_itself = old.uid() == runtime.uid();
        let ours = old.labels().get(CRM_LABEL).is_none_or(|owner| owner == crm);
        if same_deployment && ours && !is_itself && remove(client, &old).await? {
            info!(replaced = entry, by = %runtime.name_any(), "replaced runtime removed");
        }
    }
    let patch = json!({"metadata": {"annotations": {REPLACES_ANNOTATION: null}}});
    Api::<ClassRuntime>::namespaced(client.clone(), &runtime.namespace().unwrap_or_default())
        .patch(&runtime.name_any(), &params(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(CRM_FIELD_MANAGER.into()),
        ..Default::default()
    }
}
