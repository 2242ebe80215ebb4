//! The CRM as a real process against a real spoke (API server, controller-manager, scheduler,
//! kwok), driven over gRPC on loopback.
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use oaas_crds::ClassRuntime;
use oaas_crds::convert::{runtime_spec_from_unit, unit_with_revision};
use oaas_e2e::{
    Crm, TestNamespace, client_for, http_get, image_of, install_all_crds, spoke_contexts, wait_for,
};
use oaas_proto::crm::{GetClusterInfoRequest, crm_info_service_client::CrmInfoServiceClient};
use oaas_proto::deployment::deployment_service_client::DeploymentServiceClient;
use oaas_proto::deployment::{self as pb, deployment_status_event::Kind};
use oaas_proto::package::{FunctionType, ProvisionConfig};
use tonic::transport::Channel;

type Grpc = DeploymentServiceClient<Channel>;

/// The hub these tests stand in for: the first part of every deployment id they send.
const HUB: &str = "e2e";
/// Labels and annotations of the spoke's tenancy (`oaas_core::tenancy`).
const CRM_LABEL: &str = "oaas.io/crm";
const SERVES_ANNOTATION: &str = "oaas.io/serves";
const CREATED_BY_CRM_ANNOTATION: &str = "oaas.io/created-by-crm";

struct Spoke {
    client: Client,
    ns: TestNamespace,
    crm: Crm,
    grpc: Grpc,
}

impl Spoke {
    async fn start(test: &str) -> anyhow::Result<Self> {
        Self::start_in(0, test).await
    }

    async fn start_in(spoke: usize, test: &str) -> anyhow::Result<Self> {
        install_all_crds().await?;
        let context = spoke_contexts().remove(spoke);
        let client = client_for(&context).await?;
        let ns = TestNamespace::create(&client, test).await?;
        let crm = Crm::start(&context, &ns.name, &[]).await?;
        let grpc = DeploymentServiceClient::connect(crm.endpoint.clone()).await?;
        Ok(Self {
            client,
            ns,
            crm,
            grpc,
        })
    }

    /// The id of a class deployment `name` in the hub namespace of the CRM's namespace's name.
    fn id(&self, name: &str) -> String {
        deployment_id(&self.ns.name, name)
    }

    /// A unit of the class deployment `name`, deployed into the CRM's own namespace.
    fn unit(&self, name: &str) -> pb::DeploymentUnit {
        mk_unit(&self.ns.name, name)
    }

    async fn status(&self, id: &str) -> anyhow::Result<pb::DeploymentStatus> {
        let request = pb::GetDeploymentStatusRequest {
            deployment_id: id.into(),
        };
        Ok(self
            .grpc
            .clone()
            .get_deployment_status(request)
            .await?
            .into_inner())
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn wait_phase(
        &self,
        id: &str,
        phase: pb::Phase,
        timeout: Duration,
    ) -> anyhow::Result<pb::DeploymentStatus> {
        let grpc = self.grpc.clone();
        wait_for(&format!("deployment {id} {phase:?}"), timeout, || {
            let mut grpc = grpc.clone();
            async move {
                let request = pb::GetDeploymentStatusRequest {
                    deployment_id: id.into(),
                };
                match grpc.get_deployment_status(request).await {
                    Ok(status) => {
                        let status = status.into_inner();
                        Ok((status.phase() == phase).then_some(status))
                    }
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                    Err(s) => Err(s.into()),
                }
            }
        })
        .await
    }
}

fn condition<'a>(
    status: &'a pb::DeploymentStatus,
    type_: &str,
) -> &'a oaas_proto::common::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.r#type == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn mk_function(key: &str, image: &str, min: u32, max: u32) -> pb::FunctionDeploymentSpec {
    pb::FunctionDeploymentSpec {
        function_key: key.into(),
        function_type: FunctionType::Custom as i32,
        provision_config: Some(ProvisionConfig {
            container_image: image.into(),
            port: 8080,
            min_scale: min,
            max_scale: max,
            cpu_request: "50m".into(),
            ..Default::default()
        }),
        config: [("GREETING".to_string(), "hello".to_string())].into(),
        ..Default::default()
    }
}

/// `<hub>/<namespace>/<name>` of the class deployment `name` in hub namespace `ns`.
fn deployment_id(ns: &str, name: &str) -> String {
    format!("{HUB}/{ns}/{name}")
}

/// A unit of class deployment `name` of hub namespace `ns`, deployed into spoke namespace
/// `ns` (the hub namespace maps to the namespace of its own name).
fn mk_unit(ns: &str, name: &str) -> pb::DeploymentUnit {
    pb::DeploymentUnit {
        id: deployment_id(ns, name),
        namespace: ns.into(),
        package_name: "shop".into(),
        class_key: "Record".into(),
        target_cluster: "spoke-a".into(),
        functions: vec![
            mk_function("echo", "img/echo:1", 1, 3),
            mk_function("Record.update", "img/update:1", 2, 2),
        ],
        addons: vec!["odgm".into()],
        odgm: Some(pb::OdgmConfig {
            collections: vec!["records".into()],
            partition_count: 2,
            replica_count: 2,
            shard_type: "mst".into(),
            log_level: String::new(),
        }),
        nfr_requirements: Some(oaas_proto::common::NfrRequirements {
            cpu_utilization_target: Some(60.0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The unit cut down to its first function, without the data grid: one Deployment to watch.
fn one_function(mut unit: pb::DeploymentUnit) -> pb::DeploymentUnit {
    unit.addons.clear();
    unit.odgm = None;
    unit.functions.truncate(1);
    unit
}

/// The unit with the revision the hub gives it: a hash of everything else in it, which the
/// spoke recomputes from what it stores (`spec_hash`).
fn with_hub_revision(mut unit: pb::DeploymentUnit) -> pb::DeploymentUnit {
    let spec = runtime_spec_from_unit(&unit).expect("a valid unit");
    unit.revision = unit_with_revision(&spec, &unit.namespace).revision;
    unit
}

fn deploy_request(
    unit: pb::DeploymentUnit,
    correlation: &str,
) -> tonic::Request<pb::DeployRequest> {
    let mut request = tonic::Request::new(pb::DeployRequest {
        deployment_unit: Some(unit),
        expected_revision: None,
    });
    request
        .metadata_mut()
        .insert("x-correlation-id", correlation.parse().unwrap());
    request
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_class_is_deployed_updated_redeployed_and_deleted() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-lifecycle").await?;
    // The runtime is named from the id's name part, not from the package and class.
    let id = spoke.id("cart");
    let ns = spoke.ns.name.clone();
    let unit = with_hub_revision(spoke.unit("cart"));

    // Deploy: every child appears with the expected fields, then the class is Available.
    let response = spoke
        .grpc
        .deploy(deploy_request(unit.clone(), "corr-1"))
        .await?
        .into_inner();
    assert!(response.changed);
    assert_eq!(response.deployment_id, id);
    assert_eq!(response.resource_name, format!("{ns}/cart"));
    let status = spoke
        .wait_phase(&id, pb::Phase::Available, Duration::from_secs(30))
        .await?;
    assert_eq!(status.functions.len(), 2);
    assert!(status.functions.iter().all(|f| f.ready));
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.r#type == "Available" && c.status == "True")
    );
    // The spoke hashes what it holds as the hub does: no drift.
    assert_eq!(status.revision, unit.revision);
    assert_eq!(status.spec_hash, status.revision);

    let deployments: Api<Deployment> = spoke.api();
    let echo = deployments.get("cart-echo").await?;
    assert_eq!(image_of(&echo), "img/echo:1");
    let owner = &echo.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ClassRuntime", "cart")
    );
    let labels = echo.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "oaas-crm");
    assert_eq!(labels["app.kubernetes.io/instance"], "cart");
    assert_eq!(labels[CRM_LABEL], ns, "children carry the CRM's label");
    let update = deployments.get("cart-record-update").await?;
    assert_eq!(update.spec.as_ref().unwrap().replicas, Some(2));
    let env = update.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let env_value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(env_value("GREETING").as_deref(), Some("hello"));
    assert_eq!(env_value("ODGM_ENABLED").as_deref(), Some("true"));
    assert_eq!(
        env_value("ODGM_SERVICE").as_deref(),
        Some("cart-odgm-svc:8081")
    );
    assert!(
        env_value("ODGM_COLLECTION")
            .unwrap()
            .contains("\"partition_count\":2")
    );
    let odgm = deployments.get("cart-odgm").await?;
    assert_eq!(odgm.spec.unwrap().replicas, Some(2));
    let services: Api<Service> = spoke.api();
    for name in ["cart-echo", "cart-record-update", "cart-odgm-svc"] {
        let service = services.get(name).await?;
        assert_eq!(service.labels()[CRM_LABEL], ns, "{name}");
    }
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(spoke.client.clone(), &spoke.ns.name)
        .get("cart-echo")
        .await?;
    assert_eq!(hpa.labels()[CRM_LABEL], ns);
    let hpa_spec = hpa.spec.unwrap();
    assert_eq!((hpa_spec.min_replicas, hpa_spec.max_replicas), (Some(1), 3));
    let runtimes: Api<ClassRuntime> = spoke.api();
    let runtime = runtimes.get("cart").await?;
    assert_eq!(runtime.spec.deployment_id, id);
    assert_eq!(
        runtime.metadata.annotations.as_ref().unwrap()["oaas.io/correlation-id"],
        "corr-1"
    );
    let labels = runtime.labels();
    assert_eq!(labels[CRM_LABEL], ns);
    assert_eq!(labels["oaas.io/hub-namespace"], ns);
    assert!(
        !labels["oaas.io/deployment-id-hash"].is_empty(),
        "{labels:?}"
    );
    // The CRM's own namespace now serves the deployment's hub namespace.
    let namespaces: Api<Namespace> = Api::all(spoke.client.clone());
    assert_eq!(
        namespaces
            .get(&ns)
            .await?
            .annotations()
            .get(SERVES_ANNOTATION),
        Some(&format!("{HUB}/{ns}"))
    );

    // The same unit again writes nothing.
    let before = runtime.metadata.resource_version.clone();
    let again = spoke
        .grpc
        .deploy(deploy_request(unit.clone(), "corr-2"))
        .await?
        .into_inner();
    assert!(!again.changed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        runtimes.get("cart").await?.metadata.resource_version,
        before
    );

    // The spec changed by hand on the spoke shows as drift (its hash is no longer the
    // revision); the same unit again puts the whole spec back.
    let by_hand = serde_json::json!([{
        "op": "replace",
        "path": "/spec/functions/0/provisionConfig/containerImage",
        "value": "img/echo:by-hand",
    }]);
    runtimes
        .patch(
            "cart",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(by_hand)?),
        )
        .await?;
    wait_for("the drift to show", Duration::from_secs(10), || async {
        let status = spoke.status(&id).await?;
        Ok((status.spec_hash != status.revision).then_some(()))
    })
    .await?;
    let repaired = spoke
        .grpc
        .deploy(deploy_request(unit.clone(), "corr-repair"))
        .await?
        .into_inner();
    assert!(repaired.changed, "the drifted spec was rewritten");
    let restored = runtimes.get("cart").await?;
    assert_eq!(
        restored.spec.functions[0]
            .provision_config
            .container_image
            .as_deref(),
        Some("img/echo:1")
    );
    wait_for("the drift to be gone", Duration::from_secs(10), || async {
        let status = spoke.status(&id).await?;
        Ok((status.spec_hash == unit.revision).then_some(()))
    })
    .await?;

    // A new image and min scale change the children.
    let mut changed = spoke.unit("cart");
    changed.functions[1] = mk_function("Record.update", "img/update:2", 3, 3);
    assert!(
        spoke
            .grpc
            .deploy(deploy_request(changed, "corr-3"))
            .await?
            .into_inner()
            .changed
    );
    wait_for(
        "the update function to roll to image 2 with 3 replicas",
        Duration::from_secs(30),
        || async {
            let d = deployments.get("cart-record-update").await?;
            let done =
                image_of(&d) == "img/update:2" && d.spec.as_ref().unwrap().replicas == Some(3);
            Ok(done.then_some(()))
        },
    )
    .await?;
    spoke
        .wait_phase(&id, pb::Phase::Available, Duration::from_secs(30))
        .await?;

    // A deleted child comes back at once.
    deployments.delete("cart-echo", &Default::default()).await?;
    wait_for(
        "the deleted echo Deployment to come back",
        Duration::from_secs(10),
        || async {
            let back = deployments.get_opt("cart-echo").await?;
            Ok(back.filter(|d| d.metadata.deletion_timestamp.is_none()))
        },
    )
    .await?;

    // Dropping a function removes its children (orphans are deleted).
    let mut fewer = spoke.unit("cart");
    fewer.functions.truncate(1);
    assert!(
        spoke
            .grpc
            .deploy(deploy_request(fewer, "corr-4"))
            .await?
            .into_inner()
            .changed
    );
    wait_for(
        "the dropped function's Deployment and Service to go",
        Duration::from_secs(30),
        || async {
            let gone = deployments.get_opt("cart-record-update").await?.is_none()
                && services.get_opt("cart-record-update").await?.is_none();
            Ok(gone.then_some(()))
        },
    )
    .await?;

    // Delete: every child goes, then the resource; deleting again is fine.
    let deleted = spoke
        .grpc
        .delete_deployment(pb::DeleteDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await?;
    assert!(deleted.into_inner().existed);
    wait_for(
        "the ClassRuntime and its children to be gone",
        Duration::from_secs(30),
        || async {
            let runtime_gone = runtimes.get_opt("cart").await?.is_none();
            let selector = "app.kubernetes.io/instance=cart";
            let children = deployments
                .list(&ListParams::default().labels(selector))
                .await?
                .items
                .len()
                + services
                    .list(&ListParams::default().labels(selector))
                    .await?
                    .items
                    .len();
            Ok((runtime_gone && children == 0).then_some(()))
        },
    )
    .await?;
    let again = spoke
        .grpc
        .delete_deployment(pb::DeleteDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await?;
    assert!(!again.into_inner().existed);

    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(
        spoke.client.clone(),
        &spoke.ns.name,
    )
    .list(&ListParams::default())
    .await?;
    let reasons: Vec<_> = events
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(reasons.iter().any(|r| r == "Applied"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Deleted"), "{reasons:?}");

    let metrics = http_get(spoke.crm.port, "/metrics").await?;
    assert!(
        metrics.contains("oaas_crm_grpc_requests_total{method=\"Deploy\",code=\"Ok\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("oaas_crm_reconciles_total"));
    spoke.ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn bad_requests_get_canonical_codes_that_name_the_problem() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-invalid").await?;
    type Breakage = fn(&mut pb::DeploymentUnit);
    let cases: Vec<(&str, Breakage)> = vec![
        ("deployment_unit.id", |u| u.id.clear()),
        ("deployment_unit.id", |u| u.id = "team/record".into()),
        ("deployment_unit.namespace", |u| u.namespace.clear()),
        ("deployment_unit.namespace", |u| {
            u.namespace = "Not_A_Namespace".into()
        }),
        ("deployment_unit.package_name", |u| u.package_name.clear()),
        ("deployment_unit.class_key", |u| {
            u.class_key = "not a key".into()
        }),
        ("deployment_unit.functions[0].function_key", |u| {
            u.functions[0].function_key = "x/y".into()
        }),
        ("deployment_unit.functions[1].function_key", |u| {
            u.functions[1].function_key = "echo".into()
        }),
        (
            "deployment_unit.functions[0].provision_config.container_image",
            |u| {
                u.functions[0]
                    .provision_config
                    .as_mut()
                    .unwrap()
                    .container_image
                    .clear()
            },
        ),
        (
            "deployment_unit.functions[0].provision_config.min_scale",
            |u| u.functions[0].provision_config.as_mut().unwrap().min_scale = 7,
        ),
        ("deployment_unit.template", |u| {
            u.template = "serverful".into()
        }),
        ("deployment_unit.nfr_requirements.availability", |u| {
            u.nfr_requirements.as_mut().unwrap().availability = Some(0.0)
        }),
        ("deployment_unit.odgm.log_level", |u| {
            u.odgm.as_mut().unwrap().log_level = "debug,h2=chatty".into()
        }),
        ("deployment_unit.telemetry.sampling_rate", |u| {
            u.telemetry = Some(pb::TelemetryConfig {
                enabled: true,
                sampling_rate: Some(1.5),
                ..Default::default()
            })
        }),
        ("deployment_unit.telemetry.resource_attributes.a,b", |u| {
            u.telemetry = Some(pb::TelemetryConfig {
                enabled: true,
                resource_attributes: [("a,b".to_string(), "x".to_string())].into(),
                ..Default::default()
            })
        }),
    ];
    for (field, break_it) in cases {
        let mut unit = spoke.unit("bad");
        break_it(&mut unit);
        let status = spoke
            .grpc
            .deploy(deploy_request(unit, "bad"))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{field}: {status:?}"
        );
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    // An id that is not `<hub>/<namespace>/<name>` says the form it must have.
    for bad in [
        "",
        "record",
        "team/record",
        "hub//record",
        "hub/team/",
        "a/b/c/d",
    ] {
        let mut unit = spoke.unit("bad");
        unit.id = bad.into();
        let status = spoke
            .grpc
            .deploy(deploy_request(unit, "bad"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert!(
            status.message().starts_with("deployment_unit.id")
                && status.message().contains("<hub>/<namespace>/<name>"),
            "{bad:?}: {}",
            status.message()
        );
    }
    // Size limits: a request over the gRPC limit (4 MiB) is refused before it is read; a
    // value over the schema's limit is refused by the API server, naming the field.
    let limits = [
        (
            5 << 20,
            tonic::Code::OutOfRange,
            "the limit is: 4194304 bytes",
        ),
        (64 << 10, tonic::Code::InvalidArgument, "config"),
    ];
    for (bytes, code, says) in limits {
        let mut unit = spoke.unit("big");
        unit.functions[0]
            .config
            .insert("BLOB".into(), "x".repeat(bytes));
        let status = spoke
            .grpc
            .deploy(deploy_request(unit, "c"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{bytes} bytes: {status:?}");
        assert!(status.message().contains(says), "{bytes} bytes: {status:?}");
    }

    let missing = spoke
        .grpc
        .deploy(pb::DeployRequest {
            deployment_unit: None,
            expected_revision: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);

    // Two deployments of the same package and class both deploy: each runtime is named from
    // its own id.
    let runtimes: Api<ClassRuntime> = spoke.api();
    for name in ["first", "second"] {
        let response = spoke
            .grpc
            .deploy(deploy_request(spoke.unit(name), "c"))
            .await?
            .into_inner();
        assert!(response.changed, "{name}");
        assert_eq!(response.resource_name, format!("{}/{name}", spoke.ns.name));
        assert_eq!(runtimes.get(name).await?.spec.deployment_id, spoke.id(name));
    }
    let stored = || async {
        let list = runtimes.list(&ListParams::default()).await?;
        anyhow::Ok(
            list.items
                .iter()
                .map(|r| (r.name_any(), r.metadata.generation, r.spec.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let before = stored().await?;
    assert_eq!(before.len(), 2);

    // A deployment of the same name from another hub namespace, mapped into this spoke
    // namespace too: the namespace serves one hub namespace only, so it is refused before
    // anything is stored.
    let tenant = format!("{HUB}/{}", spoke.ns.name);
    let mut intruder = spoke.unit("first");
    intruder.id = format!("{HUB}/other-team/first");
    let says = format!("already serves hub namespace {tenant}");
    let mut grpc = spoke.grpc.clone();
    expect_refused(
        &mut grpc,
        intruder.clone(),
        tonic::Code::FailedPrecondition,
        &says,
    )
    .await;
    assert_eq!(stored().await?, before, "nothing stored changed");
    let namespaces: Api<Namespace> = Api::all(spoke.client.clone());
    assert_eq!(
        namespaces
            .get(&spoke.ns.name)
            .await?
            .annotations()
            .get(SERVES_ANNOTATION),
        Some(&tenant),
        "the namespace still serves its hub namespace"
    );

    // Even with the namespace handed to that hub namespace by hand, a runtime of another
    // deployment under the same name is never overwritten.
    let handed = serde_json::json!({"metadata": {"annotations": {
        SERVES_ANNOTATION: format!("{HUB}/other-team"),
    }}});
    namespaces
        .patch(
            &spoke.ns.name,
            &PatchParams::default(),
            &Patch::Merge(&handed),
        )
        .await?;
    let clash = spoke
        .grpc
        .deploy(deploy_request(intruder, "c"))
        .await
        .unwrap_err();
    assert_eq!(clash.code(), tonic::Code::AlreadyExists, "{clash:?}");
    assert!(
        clash
            .message()
            .contains(&format!("belongs to deployment {:?}", spoke.id("first"))),
        "{}",
        clash.message()
    );
    assert_eq!(stored().await?, before, "nothing stored changed");

    let unknown = pb::GetDeploymentStatusRequest {
        deployment_id: "nope".into(),
    };
    assert_eq!(
        spoke
            .grpc
            .get_deployment_status(unknown)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    let unknown = pb::GetClassRuntimeRequest {
        deployment_id: "nope".into(),
    };
    assert_eq!(
        spoke
            .grpc
            .get_class_runtime(unknown)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    spoke.ns.delete().await?;
    Ok(())
}

/// A spoke namespace other than the CRM's own: an existing one is used only once handed over
/// by label (and released, not deleted, when its last runtime goes); a missing one is
/// created as the CRM's and removed with its last runtime.
#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_foreign_namespace_is_refused_and_an_owned_one_is_created_and_removed()
-> anyhow::Result<()> {
    let spoke = Spoke::start("crm-tenancy").await?;
    let foreign = TestNamespace::create(&spoke.client, "crm-tenancy-foreign").await?;
    let created = format!("{}-created", spoke.ns.name);
    let result = foreign_and_created_namespaces(&spoke, &foreign.name, &created).await;
    // Whatever the test got to, cleaned up while the CRM still runs its finalizers.
    let namespaces: Api<Namespace> = Api::all(spoke.client.clone());
    if namespaces.get_opt(&created).await?.is_some() {
        namespaces.delete(&created, &Default::default()).await?;
        wait_gone(&namespaces, &created).await?;
    }
    foreign.delete().await?;
    spoke.ns.delete().await?;
    result
}

async fn wait_gone(namespaces: &Api<Namespace>, name: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("namespace {name} to be deleted"),
        Duration::from_secs(60),
        || async { Ok(namespaces.get_opt(name).await?.is_none().then_some(())) },
    )
    .await
}

/// Deploys `unit`, which must be refused with `code` and a message that contains `says`.
async fn expect_refused(grpc: &mut Grpc, unit: pb::DeploymentUnit, code: tonic::Code, says: &str) {
    let refused = grpc
        .deploy(deploy_request(unit, "c"))
        .await
        .expect_err("the deploy must be refused");
    assert_eq!(refused.code(), code, "{refused:?}");
    assert!(refused.message().contains(says), "{}", refused.message());
}

async fn foreign_and_created_namespaces(
    spoke: &Spoke,
    foreign: &str,
    created: &str,
) -> anyhow::Result<()> {
    let crm = spoke.ns.name.as_str();
    let mut grpc = spoke.grpc.clone();
    let namespaces: Api<Namespace> = Api::all(spoke.client.clone());
    let runtimes_in = |ns: &str| Api::<ClassRuntime>::namespaced(spoke.client.clone(), ns);

    // An existing namespace without the CRM's label is someone else's: refused, with the fix.
    let unit = mk_unit(foreign, "cart");
    let says = format!("kubectl label namespace {foreign} {CRM_LABEL}={crm}");
    expect_refused(
        &mut grpc,
        unit.clone(),
        tonic::Code::FailedPrecondition,
        &says,
    )
    .await;
    assert!(
        runtimes_in(foreign)
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );
    let untouched = namespaces.get(foreign).await?;
    assert!(!untouched.labels().contains_key(CRM_LABEL));
    assert!(!untouched.annotations().contains_key(SERVES_ANNOTATION));

    // Handed over by that label, it is used; once its last runtime goes it is released for
    // another hub namespace, not deleted (the CRM did not create it).
    let hand_over = serde_json::json!({"metadata": {"labels": {CRM_LABEL: crm}}});
    namespaces
        .patch(foreign, &PatchParams::default(), &Patch::Merge(&hand_over))
        .await?;
    let response = grpc
        .deploy(deploy_request(unit.clone(), "c"))
        .await?
        .into_inner();
    assert_eq!(response.resource_name, format!("{foreign}/cart"));
    let taken = namespaces.get(foreign).await?;
    assert_eq!(
        taken.annotations().get(SERVES_ANNOTATION),
        Some(&format!("{HUB}/{foreign}"))
    );
    assert!(!taken.annotations().contains_key(CREATED_BY_CRM_ANNOTATION));
    let id = deployment_id(foreign, "cart");
    assert!(
        grpc.delete_deployment(pb::DeleteDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await?
        .into_inner()
        .existed
    );
    wait_for(
        &format!("{foreign} released by the CRM"),
        Duration::from_secs(30),
        || async {
            let gone = runtimes_in(foreign).get_opt("cart").await?.is_none();
            let ns = namespaces.get(foreign).await?;
            let released = ns.metadata.deletion_timestamp.is_none()
                && !ns.annotations().contains_key(SERVES_ANNOTATION);
            Ok((gone && released).then_some(()))
        },
    )
    .await?;

    // A namespace that does not exist yet is created as the CRM's, serving the deployment's
    // hub namespace; the runtime in it is reconciled like any other.
    assert!(namespaces.get_opt(created).await?.is_none());
    let response = grpc
        .deploy(deploy_request(mk_unit(created, "cart"), "c"))
        .await?
        .into_inner();
    assert!(response.changed);
    assert_eq!(response.resource_name, format!("{created}/cart"));
    let namespace = namespaces.get(created).await?;
    assert_eq!(
        namespace.labels().get(CRM_LABEL).map(String::as_str),
        Some(crm)
    );
    assert_eq!(
        namespace.annotations().get(SERVES_ANNOTATION),
        Some(&format!("{HUB}/{created}"))
    );
    assert!(
        namespace
            .annotations()
            .contains_key(CREATED_BY_CRM_ANNOTATION)
    );
    let id = deployment_id(created, "cart");
    spoke
        .wait_phase(&id, pb::Phase::Available, Duration::from_secs(30))
        .await?;
    let echo = Api::<Deployment>::namespaced(spoke.client.clone(), created)
        .get("cart-echo")
        .await?;
    assert_eq!(echo.labels()[CRM_LABEL], crm);

    // While another runtime is there, one that goes leaves the namespace in place.
    grpc.deploy(deploy_request(mk_unit(created, "cart2"), "c2"))
        .await?;
    assert!(
        grpc.delete_deployment(pb::DeleteDeploymentRequest { deployment_id: id })
            .await?
            .into_inner()
            .existed
    );
    wait_for(
        &format!("cart's runtime gone from {created}"),
        Duration::from_secs(30),
        || async {
            Ok(runtimes_in(created)
                .get_opt("cart")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    let kept = namespaces.get(created).await?;
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "cart2 still holds {created}"
    );

    // Its last runtimes deleted together, the namespace goes too: each of them that goes
    // while the others are still being deleted leaves it to the last.
    let last = ["cart2", "cart3", "cart4"];
    for name in &last[1..] {
        grpc.deploy(deploy_request(mk_unit(created, name), "c"))
            .await?;
    }
    let deletes = last.iter().map(|name| {
        let mut grpc = grpc.clone();
        let deployment_id = deployment_id(created, name);
        async move {
            grpc.delete_deployment(pb::DeleteDeploymentRequest { deployment_id })
                .await
        }
    });
    for deleted in futures::future::try_join_all(deletes).await? {
        assert!(deleted.into_inner().existed);
    }
    wait_gone(&namespaces, created).await
}

/// A request carrying the revision its sender believed the spoke held: stored only while the
/// spoke holds exactly that one, so a late request cannot roll the spoke back.
#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_deploy_built_from_an_older_view_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-expected").await?;
    let guarded = spoke.unit("guarded");
    let with_image = |image: &str, revision: i64| {
        let mut unit = one_function(guarded.clone());
        unit.functions[0]
            .provision_config
            .as_mut()
            .unwrap()
            .container_image = image.into();
        unit.revision = revision;
        unit
    };
    let send = |unit: pb::DeploymentUnit, expected: Option<i64>| pb::DeployRequest {
        deployment_unit: Some(unit),
        expected_revision: expected,
    };
    // Expecting a revision where nothing is stored yet is refused; expecting none creates.
    let absent = spoke
        .grpc
        .deploy(send(with_image("img/echo:1", 1), Some(7)))
        .await
        .unwrap_err();
    assert_eq!(absent.code(), tonic::Code::Aborted, "{absent:?}");
    spoke
        .grpc
        .deploy(send(with_image("img/echo:1", 1), Some(0)))
        .await?;
    spoke
        .grpc
        .deploy(send(with_image("img/echo:3", 3), Some(1)))
        .await?;
    // Revision 2 was built when the spoke held 1; it arrives after 3 and must not land.
    let late = spoke
        .grpc
        .deploy(send(with_image("img/echo:2", 2), Some(1)))
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::Aborted, "{late:?}");
    assert!(
        late.message()
            .contains("holds revision 3, the request expected 1"),
        "{}",
        late.message()
    );
    // Resending what the spoke already holds succeeds whatever it expected.
    let same = spoke
        .grpc
        .deploy(send(with_image("img/echo:3", 3), Some(1)))
        .await?
        .into_inner();
    assert!(!same.changed);
    let runtimes: Api<ClassRuntime> = spoke.api();
    let stored = runtimes.get("guarded").await?;
    assert_eq!(stored.spec.revision, Some(3));
    assert_eq!(
        stored.spec.functions[0]
            .provision_config
            .container_image
            .as_deref(),
        Some("img/echo:3")
    );
    spoke.ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_workload_that_cannot_be_scheduled_degrades_with_a_reason() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-degraded").await?;
    let mut unit = one_function(spoke.unit("too-big"));
    unit.functions[0]
        .provision_config
        .as_mut()
        .unwrap()
        .cpu_request = "5000".into();
    spoke.grpc.deploy(deploy_request(unit, "c")).await?;
    let status = spoke
        .wait_phase(
            &spoke.id("too-big"),
            pb::Phase::Degraded,
            Duration::from_secs(30),
        )
        .await?;
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "Unschedulable");
    assert!(
        degraded.message.contains("Insufficient cpu"),
        "{}",
        degraded.message
    );
    spoke.ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_lost_workload_is_reported_while_its_repair_still_hangs() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-loss").await?;
    let unit = one_function(spoke.unit("lost"));
    let id = spoke.id("lost");
    spoke.grpc.deploy(deploy_request(unit, "c")).await?;
    spoke
        .wait_phase(&id, pb::Phase::Available, Duration::from_secs(30))
        .await?;

    // Deployments created in the test's namespace now wait on a webhook that never answers,
    // until the API server gives up on it.
    let webhook = HangingWebhook::register(&spoke.client, &spoke.ns.name).await?;
    let deployments = spoke.api::<Deployment>();
    deployments
        .delete("lost-echo", &DeleteParams::default())
        .await?;
    // Well before the API server gives up on the webhook, which the repair waits for.
    let status = wait_for(
        "the runtime to report the lost Deployment",
        Duration::from_secs(HangingWebhook::TIMEOUT_SECONDS as u64 / 2),
        || async {
            let status = spoke.status(&id).await?;
            Ok((status.phase() != pb::Phase::Available).then_some(status))
        },
    )
    .await?;
    assert_eq!(status.phase(), pb::Phase::Progressing, "{status:?}");
    assert!(
        deployments.get_opt("lost-echo").await?.is_none(),
        "the repair got through the webhook, so this shows nothing about the order"
    );

    webhook.remove(&spoke.client).await?;
    spoke
        .wait_phase(&id, pb::Phase::Available, Duration::from_secs(60))
        .await?;
    spoke.ns.delete().await?;
    Ok(())
}

/// A validating webhook for Deployment creates in one namespace whose server accepts the
/// API server's connections and never answers them: a create there hangs for the webhook's
/// timeout, then fails.
struct HangingWebhook {
    name: String,
    server: tokio::task::JoinHandle<()>,
}

impl HangingWebhook {
    /// How long a create hangs: the API server's TLS handshake with a webhook gives up after
    /// 10 s whatever the webhook's own timeout says.
    const TIMEOUT_SECONDS: i32 = 10;

    async fn register(client: &Client, namespace: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        let name = format!("oaas-e2e-hang-{namespace}");
        let configuration: ValidatingWebhookConfiguration = serde_json::from_value(
            serde_json::json!({
                "metadata": {"name": name},
                "webhooks": [{
                    "name": "hang.e2e.oaas.io",
                    "clientConfig": {"url": format!("https://127.0.0.1:{port}/")},
                    "rules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
                               "resources": ["deployments"], "scope": "Namespaced"}],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": Self::TIMEOUT_SECONDS,
                }],
            }),
        )?;
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &configuration)
            .await?;
        // The API server takes the new webhook up a moment later: until a create (a dry run)
        // hangs, it does not hold creates yet.
        let probe: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "probe"},
            "spec": {"selector": {"matchLabels": {"app": "probe"}},
                     "template": {"metadata": {"labels": {"app": "probe"}},
                                  "spec": {"containers": [{"name": "c", "image": "probe"}]}}},
        }))?;
        let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        wait_for(
            "the webhook to hold creates",
            Duration::from_secs(30),
            || async {
                let create = deployments.create(&dry_run, &probe);
                Ok(tokio::time::timeout(Duration::from_secs(1), create)
                    .await
                    .is_err()
                    .then_some(()))
            },
        )
        .await?;
        Ok(Self { name, server })
    }

    async fn remove(self, client: &Client) -> anyhow::Result<()> {
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await?;
        self.server.abort();
        Ok(())
    }
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn watchers_get_a_snapshot_then_every_change() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-watch").await?;
    let id = spoke.id("watched");
    spoke
        .grpc
        .deploy(deploy_request(spoke.unit("watched"), "c"))
        .await?;
    let mut stream = spoke
        .grpc
        .watch_deployment_status(pb::WatchDeploymentStatusRequest {
            deployment_ids: vec![id.clone()],
        })
        .await?
        .into_inner();
    let mut saw_snapshot_end = false;
    let mut saw_available = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(saw_snapshot_end && saw_available) {
        let event = tokio::time::timeout_at(deadline, stream.message())
            .await??
            .expect("stream open");
        match event.kind() {
            Kind::SnapshotComplete => saw_snapshot_end = true,
            Kind::Upserted => {
                let status = event.status.unwrap();
                assert_eq!(status.deployment_id, id);
                saw_available |= status.phase() == pb::Phase::Available;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    spoke
        .grpc
        .delete_deployment(pb::DeleteDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await??
            .expect("stream open");
        if event.kind() == Kind::Deleted {
            break;
        }
    }

    spoke.ns.delete().await?;
    Ok(())
}

/// The only test here that adds a Node: the counts of the others would race with it.
#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn cluster_info_counts_the_nodes_and_follows_them_as_they_come_and_go() -> anyhow::Result<()>
{
    let spoke = Spoke::start("crm-info").await?;
    let info = CrmInfoServiceClient::connect(spoke.crm.endpoint.clone()).await?;
    let ask = || {
        let mut info = info.clone();
        async move {
            let info = info.get_cluster_info(GetClusterInfoRequest {}).await?;
            anyhow::Ok(info.into_inner())
        }
    };
    let before = oaas_e2e::node_counts(&spoke.client).await?;
    let first = ask().await?;
    assert_eq!((first.node_count, first.ready_nodes), before);
    assert_eq!(first.availability, 1.0);
    assert!(first.kubernetes_version.starts_with("v1."));

    // A Node that is not Ready (no kubelet reports for it), tainted so nothing lands on it.
    let nodes = Api::<Node>::all(spoke.client.clone());
    let name = format!("{}-extra", spoke.ns.name);
    let extra: Node = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": { "taints": [{ "key": "oaas.io/e2e", "effect": "NoSchedule" }] },
    }))?;
    nodes.create(&PostParams::default(), &extra).await?;
    let followed = async {
        let (total, ready) = before;
        wait_for(
            "the new Node counted, not Ready",
            Duration::from_secs(10),
            || async {
                let now = ask().await?;
                Ok(((now.node_count, now.ready_nodes) == (total + 1, ready)).then_some(()))
            },
        )
        .await?;
        nodes.delete(&name, &DeleteParams::default()).await?;
        wait_for(
            "the Node gone from the counts",
            Duration::from_secs(10),
            || async {
                let now = ask().await?;
                Ok(((now.node_count, now.ready_nodes) == before).then_some(()))
            },
        )
        .await
    }
    .await;
    if followed.is_err() {
        let _ = nodes.delete(&name, &DeleteParams::default()).await;
    }
    followed?;
    let channel = Channel::from_shared(spoke.crm.endpoint.clone())?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "oaas.deployment.DeploymentService".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        serving.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    spoke.ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn twenty_deploys_at_once_share_one_connection_to_the_api_server() -> anyhow::Result<()> {
    let spoke = Spoke::start("crm-h2").await?;
    let names: Vec<String> = (0..20).map(|i| format!("burst{i}")).collect();
    futures::future::try_join_all(names.iter().map(|name| {
        let mut grpc = spoke.grpc.clone();
        let request = deploy_request(spoke.unit(name), name);
        async move { grpc.deploy(request).await }
    }))
    .await?;
    for name in &names {
        let id = spoke.id(name);
        spoke
            .wait_phase(&id, pb::Phase::Available, Duration::from_secs(60))
            .await?;
    }
    // Its watches and the 20 reconciles, over HTTP/2 (HTTP/1.1 needs a connection per
    // request in flight: one per watch alone).
    let crm = &spoke.crm;
    let connections = crm
        .process
        .outbound_connections(&[crm.port, crm.ops_port])?;
    assert_eq!(connections, 1, "connections from the CRM to its API server");
    spoke.ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_knative_template_without_knative_serving_degrades_and_says_why() -> anyhow::Result<()>
{
    let mut spoke = Spoke::start("crm-no-knative").await?;
    let mut unit = spoke.unit("serverless");
    unit.template = "knative".into();
    spoke.grpc.deploy(deploy_request(unit, "c")).await?;
    let status = spoke
        .wait_phase(
            &spoke.id("serverless"),
            pb::Phase::Degraded,
            Duration::from_secs(30),
        )
        .await?;
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.reason, "KnativeNotInstalled");
    assert!(
        degraded.message.contains("Knative Serving"),
        "{}",
        degraded.message
    );
    spoke.ns.delete().await?;
    Ok(())
}

/// The Knative Serving `Service` CRD alone (no Knative controller): enough for the API server
/// to store what the CRM renders.
fn knative_service_crd() -> anyhow::Result<
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "services.serving.knative.dev"},
        "spec": {
            "group": "serving.knative.dev",
            "names": {"kind": "Service", "plural": "services", "singular": "service", "shortNames": ["ksvc"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))?)
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_knative_template_renders_a_knative_service_when_serving_is_installed()
-> anyhow::Result<()> {
    let context = spoke_contexts().remove(1);
    oaas_e2e::install_crds(&client_for(&context).await?, &[knative_service_crd()?]).await?;
    let mut spoke = Spoke::start_in(1, "crm-knative").await?;
    let mut unit = spoke.unit("serverless");
    unit.template = "knative".into();
    spoke.grpc.deploy(deploy_request(unit, "c")).await?;
    let resource = kube::api::ApiResource {
        group: "serving.knative.dev".into(),
        version: "v1".into(),
        api_version: "serving.knative.dev/v1".into(),
        kind: "Service".into(),
        plural: "services".into(),
    };
    let ksvcs: Api<kube::api::DynamicObject> =
        Api::namespaced_with(spoke.client.clone(), &spoke.ns.name, &resource);
    let ksvc = wait_for(
        "the Knative Service of echo",
        Duration::from_secs(30),
        || async { Ok(ksvcs.get_opt("serverless-echo").await?) },
    )
    .await?;
    let annotations = &ksvc.data["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["autoscaling.knative.dev/max-scale"], "3");
    // No Knative controller runs here, so the service never reports Ready: still progressing,
    // while the data grid (a plain Deployment) is rendered as usual.
    let status = spoke
        .wait_phase(
            &spoke.id("serverless"),
            pb::Phase::Progressing,
            Duration::from_secs(30),
        )
        .await?;
    assert!(
        status.message.contains("serverless-echo"),
        "{}",
        status.message
    );
    let deployments: Api<Deployment> = spoke.api();
    assert!(deployments.get_opt("serverless-echo").await?.is_none());
    assert!(deployments.get_opt("serverless-odgm").await?.is_some());
    spoke.ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_crm_exits_promptly_on_sigterm() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-sigterm").await?;
    assert!(
        spoke.crm.process.terminate(Duration::from_secs(5))?,
        "oaas-crm ignored SIGTERM"
    );
    spoke.ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_crm_whose_port_is_taken_exits_naming_the_address() -> anyhow::Result<()> {
    let context = spoke_contexts().remove(0);
    let client = client_for(&context).await?;
    let ns = TestNamespace::create(&client, "crm-port-taken").await?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let error = Crm::start_on(port, &context, &ns.name, &[])
        .await
        .err()
        .context("the CRM started on a taken port")?;
    let exited = error
        .downcast_ref::<oaas_e2e::Exited>()
        .with_context(|| format!("not an early exit: {error:#}"))?;
    let log = std::fs::read_to_string(&exited.log)?;
    let named = format!("binding 127.0.0.1:{port} (OPRC_CRM_BIND_ADDRESS/HTTP_PORT)");
    assert!(log.contains(&named), "{log}");
    assert!(log.contains("Address already in use"), "{log}");
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn of_two_crms_both_serve_grpc_one_reconciles_and_the_other_takes_over() -> anyhow::Result<()>
{
    install_all_crds().await?;
    let context = spoke_contexts().remove(0);
    let client = client_for(&context).await?;
    let ns = TestNamespace::create(&client, "crm-leader").await?;
    let env = [
        ("OPRC_CRM_LEADER_ELECTION", "true"),
        ("OPRC_CRM_LEASE_DURATION_SECS", "4"),
    ];
    let mut leader = Crm::start(&context, &ns.name, &env).await?;
    let standby = Crm::start(&context, &ns.name, &env).await?;
    let holder = || oaas_e2e::lease_holder(&client, &ns.name, "oaas-crm");
    assert!(
        holder()
            .await?
            .ends_with(&format!("-{}", leader.process.pid()))
    );

    // The standby takes the Deploy call; the leader renders it. The id's name is no DNS
    // label, so the runtime gets a readable one with a hash of it.
    let mut grpc = DeploymentServiceClient::connect(standby.endpoint.clone()).await?;
    let resource = grpc
        .deploy(deploy_request(
            mk_unit(&ns.name, "leader.shop-record"),
            "corr-leader",
        ))
        .await?
        .into_inner()
        .resource_name;
    let runtime = resource
        .strip_prefix(&format!("{}/", ns.name))
        .unwrap_or_else(|| panic!("{resource} is not in {}", ns.name))
        .to_string();
    assert!(runtime.starts_with("leader-shop-record-"), "{runtime}");
    let echo = format!("{runtime}-echo");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    wait_for(
        "the leader to render the class",
        Duration::from_secs(30),
        || async { Ok(deployments.get_opt(&echo).await?.map(drop)) },
    )
    .await?;
    let metrics = http_get(standby.port, "/metrics").await?;
    assert!(
        metrics.contains("oaas_crm_reconciles_total 0"),
        "the standby reconciled: {metrics}"
    );

    // The leader dies; the standby takes the lease and reconciles the next change.
    leader.process.kill();
    wait_for(
        "the standby to hold the lease",
        Duration::from_secs(20),
        || async {
            Ok(holder()
                .await?
                .ends_with(&format!("-{}", standby.process.pid()))
                .then_some(()))
        },
    )
    .await?;
    let mut unit = mk_unit(&ns.name, "leader.shop-record");
    unit.functions[0]
        .provision_config
        .as_mut()
        .unwrap()
        .container_image = "img/echo:2".into();
    grpc.deploy(deploy_request(unit, "corr-leader-2")).await?;
    wait_for(
        "echo rolled to img/echo:2 by the new leader",
        Duration::from_secs(30),
        || async { Ok((image_of(&deployments.get(&echo).await?) == "img/echo:2").then_some(())) },
    )
    .await?;
    ns.delete().await?;
    drop(standby);
    Ok(())
}

/// A runtime stored before ids carried the hub (named `<package>-<class>` in the CRM's own
/// namespace, id `<namespace>/<name>`, without the CRM's label) is replaced by the runtime of
/// the new id: its children keep serving until the new runtime is Available, then it goes
/// and garbage collection takes its children.
#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_runtime_named_the_old_way_is_replaced_without_a_gap() -> anyhow::Result<()> {
    let spoke = Spoke::start("crm-legacy").await?;
    let result = legacy_runtime_replaced(&spoke).await;
    // Whatever the test got to: the legacy runtime's finalizer has nobody to run it.
    let runtimes: Api<ClassRuntime> = spoke.api();
    if runtimes.get_opt(LEGACY_RUNTIME).await?.is_some() {
        let patch = serde_json::json!({"metadata": {"finalizers": null}});
        runtimes
            .patch(
                LEGACY_RUNTIME,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    spoke.ns.delete().await?;
    result
}

/// `oaas_crds::validation::resource_name(&["shop", "Record"])`: how runtimes were named.
const LEGACY_RUNTIME: &str = "shop-record";
const LEGACY_CHILD: &str = "shop-record-legacy";

async fn legacy_runtime_replaced(spoke: &Spoke) -> anyhow::Result<()> {
    let ns = spoke.ns.name.as_str();
    assert_eq!(
        oaas_crds::validation::resource_name(&["shop", "Record"]),
        LEGACY_RUNTIME
    );
    let runtimes: Api<ClassRuntime> = spoke.api();
    let deployments: Api<Deployment> = spoke.api();

    // The legacy runtime as the CRM stored it, and a child owned by it.
    let legacy_id = format!("{ns}/cart");
    let mut spec = runtime_spec_from_unit(&spoke.unit("cart")).expect("a valid unit");
    spec.deployment_id = legacy_id.clone();
    let mut legacy = ClassRuntime::new(LEGACY_RUNTIME, spec);
    legacy.metadata.labels = Some(
        [(
            "oaas.io/deployment-id-hash".to_string(),
            oaas_core::tenancy::id_hash(&legacy_id),
        )]
        .into(),
    );
    legacy.metadata.finalizers = Some(vec!["oaas.io/class-runtime-cleanup".into()]);
    let legacy = runtimes.create(&Default::default(), &legacy).await?;
    let child: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": LEGACY_CHILD,
            "labels": {"app.kubernetes.io/managed-by": "oaas-crm"},
            "ownerReferences": [{
                "apiVersion": "oaas.io/v1alpha1",
                "kind": "ClassRuntime",
                "name": LEGACY_RUNTIME,
                "uid": legacy.uid().expect("a stored object has a uid"),
                "controller": true,
            }],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": LEGACY_CHILD}},
            "template": {
                "metadata": {"labels": {"app": LEGACY_CHILD}},
                "spec": {"containers": [{"name": "echo", "image": "img/echo:legacy"}]},
            },
        },
    }))?;
    deployments.create(&Default::default(), &child).await?;
    wait_for(
        "the legacy Deployment to be ready",
        Duration::from_secs(30),
        || async {
            let d = deployments.get(LEGACY_CHILD).await?;
            let ready = d.status.and_then(|s| s.ready_replicas) == Some(1);
            Ok(ready.then_some(()))
        },
    )
    .await?;

    // The deployment under its new id: a new runtime named from the id, naming the one it
    // replaces.
    let id = spoke.id("cart");
    let response = spoke
        .grpc
        .clone()
        .deploy(deploy_request(spoke.unit("cart"), "corr-legacy"))
        .await?
        .into_inner();
    assert!(response.changed);
    assert_eq!(response.resource_name, format!("{ns}/cart"));
    let cart = runtimes.get("cart").await?;
    assert_eq!(cart.spec.deployment_id, id);
    assert_eq!(
        cart.annotations().get("oaas.io/replaces"),
        Some(&format!("{ns}/{LEGACY_RUNTIME}")),
        "{:?}",
        cart.annotations()
    );

    // Until the new runtime is Available, the legacy child keeps serving. It is looked at
    // before the new runtime at each poll (both read from the API server), so a child found
    // gone while the runtime read after it is not yet Available is a gap.
    let mut gaps = Vec::new();
    let mut polls = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        polls += 1;
        let child = deployments.get_opt(LEGACY_CHILD).await?;
        let serving = child
            .as_ref()
            .is_some_and(|d| d.metadata.deletion_timestamp.is_none());
        let old = runtimes.get_opt(LEGACY_RUNTIME).await?;
        let old_kept = old
            .as_ref()
            .is_some_and(|r| r.metadata.deletion_timestamp.is_none());
        let cart = runtimes.get("cart").await?;
        let status = cart.status.clone().unwrap_or_default();
        let available = status.phase == Some(oaas_crds::common::Phase::Available)
            && status.observed_generation == cart.metadata.generation;
        if available {
            break;
        }
        if !serving || !old_kept {
            gaps.push(format!(
                "poll {polls}: legacy Deployment {}, legacy runtime {}, cart {:?}",
                if serving { "there" } else { "gone" },
                if old_kept { "there" } else { "gone" },
                status.phase
            ));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "cart not Available within 60s: {:?} {:?}",
            status.phase,
            status.message
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gaps.is_empty(),
        "the legacy runtime stopped serving before its replacement was Available: {gaps:#?}"
    );
    assert!(
        polls > 1,
        "cart was Available at the first look: no gap could be seen"
    );

    // Then the legacy runtime goes, its child with it (garbage collection), and the new
    // runtime no longer names it.
    wait_for(
        "the legacy runtime and its child to go, and the replaces annotation with them",
        Duration::from_secs(30),
        || async {
            let runtime_gone = runtimes.get_opt(LEGACY_RUNTIME).await?.is_none();
            let child_gone = deployments.get_opt(LEGACY_CHILD).await?.is_none();
            let cart = runtimes.get("cart").await?;
            let unannotated = !cart.annotations().contains_key("oaas.io/replaces");
            Ok((runtime_gone && child_gone && unannotated).then_some(()))
        },
    )
    .await?;
    let cart = runtimes.get("cart").await?;
    assert!(cart.metadata.deletion_timestamp.is_none());
    for name in ["cart-echo", "cart-record-update", "cart-odgm"] {
        let d = deployments.get(name).await?;
        assert!(d.metadata.deletion_timestamp.is_none(), "{name}");
    }
    let status = spoke
        .wait_phase(&id, pb::Phase::Available, Duration::from_secs(30))
        .await?;
    assert_eq!(status.deployment_id, id);

    // Deleting the deployment removes the new runtime.
    let deleted = spoke
        .grpc
        .clone()
        .delete_deployment(pb::DeleteDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await?;
    assert!(deleted.into_inner().existed);
    wait_for(
        "the new runtime and its children to go",
        Duration::from_secs(30),
        || async {
            let gone = runtimes.get_opt("cart").await?.is_none()
                && deployments
                    .list(&ListParams::default().labels("app.kubernetes.io/instance=cart"))
                    .await?
                    .items
                    .is_empty();
            Ok(gone.then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// The OTEL_* variables of the container of Deployment `name`, once it exists.
async fn otel_env_of(
    deployments: &Api<Deployment>,
    name: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let deployment = deployments.get(name).await?;
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    Ok(env
        .into_iter()
        .filter(|e| e.name.starts_with("OTEL_"))
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn telemetry_puts_otel_variables_on_function_pods_and_disabled_removes_them()
-> anyhow::Result<()> {
    install_all_crds().await?;
    let context = spoke_contexts().remove(0);
    let client = client_for(&context).await?;
    let ns = TestNamespace::create(&client, "crm-otel").await?;
    let collector = "http://otel-collector.observability:4317";
    let crm = Crm::start(
        &context,
        &ns.name,
        &[("OPRC_CRM_OTEL_EXPORTER_ENDPOINT", collector)],
    )
    .await?;
    let grpc = DeploymentServiceClient::connect(crm.endpoint.clone()).await?;
    let mut spoke = Spoke {
        client,
        ns,
        crm,
        grpc,
    };
    let id = spoke.id("traced");
    let mut unit = one_function(spoke.unit("traced"));
    unit.functions[0]
        .config
        .insert("OTEL_TRACES_SAMPLER_ARG".into(), "0.5".into());
    unit.telemetry = Some(pb::TelemetryConfig {
        enabled: true,
        traces: Some(true),
        metrics: Some(false),
        logs: Some(false),
        sampling_rate: Some(0.25),
        service_name: String::new(),
        resource_attributes: [("team".to_string(), "shop, eu".to_string())].into(),
    });
    let unit = with_hub_revision(unit);
    spoke
        .grpc
        .deploy(deploy_request(unit.clone(), "otel-1"))
        .await?;
    let status = spoke
        .wait_phase(&id, pb::Phase::Available, Duration::from_secs(30))
        .await?;
    assert_eq!(
        status.spec_hash, status.revision,
        "the stored telemetry hashes as the hub's: no drift"
    );
    assert_eq!(status.revision, unit.revision);

    let deployments: Api<Deployment> = spoke.api();
    let env = otel_env_of(&deployments, "traced-echo").await?;
    let expected_attributes = format!(
        "oaas.class=Record,oaas.cluster=spoke-a,oaas.deployment.id={id},oaas.function=echo,\
         oaas.package=shop,team=shop%2C%20eu"
    );
    let expected: std::collections::BTreeMap<String, String> = [
        ("OTEL_SERVICE_NAME", "traced-echo"),
        ("OTEL_RESOURCE_ATTRIBUTES", expected_attributes.as_str()),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        // The function's own config entry wins over the block's 0.25.
        ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expected);
    let runtime = Api::<ClassRuntime>::namespaced(spoke.client.clone(), &spoke.ns.name)
        .get("traced")
        .await?;
    let stored = runtime.spec.telemetry.expect("stored on the ClassRuntime");
    assert!(stored.enabled && stored.traces && !stored.metrics);
    assert_eq!(stored.sampling_rate, 0.25);

    // Turned off: the next render drops every OTEL_* variable but the function's own.
    let mut off = unit.clone();
    off.telemetry.as_mut().unwrap().enabled = false;
    let off = with_hub_revision(off);
    assert_ne!(off.revision, unit.revision);
    spoke.grpc.deploy(deploy_request(off, "otel-2")).await?;
    let left = wait_for("OTEL_* variables removed", Duration::from_secs(30), || {
        let deployments = deployments.clone();
        async move {
            let env = otel_env_of(&deployments, "traced-echo").await?;
            Ok((env.len() == 1).then_some(env))
        }
    })
    .await?;
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["OTEL_TRACES_SAMPLER_ARG"],
        "only the function's config entry"
    );
    spoke.ns.delete().await?;
    Ok(())
}
