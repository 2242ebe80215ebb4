//! The CRM as a real process against a real spoke (API server, controller-manager, scheduler,
//! kwok), driven over gRPC on loopback.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, Client};
use oaas_crds::ClassRuntime;
use oaas_e2e::{
    Crm, TestNamespace, client_for, http_get, image_of, install_all_crds, spoke_contexts, wait_for,
};
use oaas_proto::crm::{GetClusterInfoRequest, crm_info_service_client::CrmInfoServiceClient};
use oaas_proto::deployment::deployment_service_client::DeploymentServiceClient;
use oaas_proto::deployment::{self as pb, deployment_status_event::Kind};
use oaas_proto::package::{FunctionType, ProvisionConfig};
use tonic::transport::Channel;

type Grpc = DeploymentServiceClient<Channel>;

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

fn mk_unit(id: &str) -> pb::DeploymentUnit {
    pb::DeploymentUnit {
        id: id.into(),
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
    let id = "hub.shop-record.spoke-a";

    // Deploy: every child appears with the expected fields, then the class is Available.
    let response = spoke
        .grpc
        .deploy(deploy_request(mk_unit(id), "corr-1"))
        .await?
        .into_inner();
    assert!(response.changed);
    assert_eq!(response.resource_name, "shop-record");
    let status = spoke
        .wait_phase(id, pb::Phase::Available, Duration::from_secs(30))
        .await?;
    assert_eq!(status.functions.len(), 2);
    assert!(status.functions.iter().all(|f| f.ready));
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.r#type == "Available" && c.status == "True")
    );

    let deployments: Api<Deployment> = spoke.api();
    let echo = deployments.get("shop-record-echo").await?;
    assert_eq!(image_of(&echo), "img/echo:1");
    let owner = &echo.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ClassRuntime", "shop-record")
    );
    let labels = echo.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "oaas-crm");
    assert_eq!(labels["app.kubernetes.io/instance"], "shop-record");
    let update = deployments.get("shop-record-record-update").await?;
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
        Some("shop-record-odgm-svc:8081")
    );
    assert!(
        env_value("ODGM_COLLECTION")
            .unwrap()
            .contains("\"partition_count\":2")
    );
    let odgm = deployments.get("shop-record-odgm").await?;
    assert_eq!(odgm.spec.unwrap().replicas, Some(2));
    let services: Api<Service> = spoke.api();
    for name in [
        "shop-record-echo",
        "shop-record-record-update",
        "shop-record-odgm-svc",
    ] {
        services.get(name).await?;
    }
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(spoke.client.clone(), &spoke.ns.name)
        .get("shop-record-echo")
        .await?;
    let hpa_spec = hpa.spec.unwrap();
    assert_eq!((hpa_spec.min_replicas, hpa_spec.max_replicas), (Some(1), 3));
    let runtimes: Api<ClassRuntime> = spoke.api();
    let runtime = runtimes.get("shop-record").await?;
    assert_eq!(
        runtime.metadata.annotations.as_ref().unwrap()["oaas.io/correlation-id"],
        "corr-1"
    );

    // The same unit again writes nothing.
    let before = runtime.metadata.resource_version.clone();
    let again = spoke
        .grpc
        .deploy(deploy_request(mk_unit(id), "corr-2"))
        .await?
        .into_inner();
    assert!(!again.changed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        runtimes.get("shop-record").await?.metadata.resource_version,
        before
    );

    // A new image and min scale change the children.
    let mut changed = mk_unit(id);
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
            let d = deployments.get("shop-record-record-update").await?;
            let done =
                image_of(&d) == "img/update:2" && d.spec.as_ref().unwrap().replicas == Some(3);
            Ok(done.then_some(()))
        },
    )
    .await?;
    spoke
        .wait_phase(id, pb::Phase::Available, Duration::from_secs(30))
        .await?;

    // A deleted child comes back at once.
    deployments
        .delete("shop-record-echo", &Default::default())
        .await?;
    wait_for(
        "the deleted echo Deployment to come back",
        Duration::from_secs(10),
        || async {
            let back = deployments.get_opt("shop-record-echo").await?;
            Ok(back.filter(|d| d.metadata.deletion_timestamp.is_none()))
        },
    )
    .await?;

    // Dropping a function removes its children (orphans are deleted).
    let mut fewer = mk_unit(id);
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
            let gone = deployments
                .get_opt("shop-record-record-update")
                .await?
                .is_none()
                && services
                    .get_opt("shop-record-record-update")
                    .await?
                    .is_none();
            Ok(gone.then_some(()))
        },
    )
    .await?;

    // Delete: every child goes, then the resource; deleting again is fine.
    let deleted = spoke
        .grpc
        .delete_deployment(pb::DeleteDeploymentRequest {
            deployment_id: id.into(),
        })
        .await?;
    assert!(deleted.into_inner().existed);
    wait_for(
        "the ClassRuntime and its children to be gone",
        Duration::from_secs(30),
        || async {
            let runtime_gone = runtimes.get_opt("shop-record").await?.is_none();
            let selector = "app.kubernetes.io/instance=shop-record";
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
            deployment_id: id.into(),
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
            u.odgm.as_mut().unwrap().log_level = "chatty".into()
        }),
    ];
    for (field, break_it) in cases {
        let mut unit = mk_unit("bad");
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
        let mut unit = mk_unit("big");
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

    spoke
        .grpc
        .deploy(deploy_request(mk_unit("first"), "c"))
        .await?;
    let clash = spoke
        .grpc
        .deploy(deploy_request(mk_unit("second"), "c"))
        .await
        .unwrap_err();
    assert_eq!(clash.code(), tonic::Code::AlreadyExists, "{clash:?}");
    assert!(clash.message().contains("belongs to deployment \"first\""));

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

/// A request carrying the revision its sender believed the spoke held: stored only while the
/// spoke holds exactly that one, so a late request cannot roll the spoke back.
#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_deploy_built_from_an_older_view_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-expected").await?;
    let with_image = |image: &str, revision: i64| {
        let mut unit = mk_unit("guarded");
        unit.addons.clear();
        unit.odgm = None;
        unit.functions.truncate(1);
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
    let stored = runtimes.get("shop-record").await?;
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
    let mut unit = mk_unit("too-big");
    unit.addons.clear();
    unit.odgm = None;
    unit.functions.truncate(1);
    unit.functions[0]
        .provision_config
        .as_mut()
        .unwrap()
        .cpu_request = "5000".into();
    spoke.grpc.deploy(deploy_request(unit, "c")).await?;
    let status = spoke
        .wait_phase("too-big", pb::Phase::Degraded, Duration::from_secs(30))
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
async fn watchers_get_a_snapshot_then_every_change() -> anyhow::Result<()> {
    let mut spoke = Spoke::start("crm-watch").await?;
    spoke
        .grpc
        .deploy(deploy_request(mk_unit("watched"), "c"))
        .await?;
    let mut stream = spoke
        .grpc
        .watch_deployment_status(pb::WatchDeploymentStatusRequest {
            deployment_ids: vec!["watched".into()],
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
                assert_eq!(status.deployment_id, "watched");
                saw_available |= status.phase() == pb::Phase::Available;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    spoke
        .grpc
        .delete_deployment(pb::DeleteDeploymentRequest {
            deployment_id: "watched".into(),
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

    let mut info = CrmInfoServiceClient::connect(spoke.crm.endpoint.clone()).await?;
    let info = info
        .get_cluster_info(GetClusterInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(
        (info.node_count, info.ready_nodes),
        oaas_e2e::node_counts(&spoke.client).await?
    );
    assert_eq!(info.availability, 1.0);
    assert!(info.kubernetes_version.starts_with("v1."));
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
async fn the_knative_template_without_knative_serving_degrades_and_says_why() -> anyhow::Result<()>
{
    let mut spoke = Spoke::start("crm-no-knative").await?;
    let mut unit = mk_unit("serverless");
    unit.template = "knative".into();
    spoke.grpc.deploy(deploy_request(unit, "c")).await?;
    let status = spoke
        .wait_phase("serverless", pb::Phase::Degraded, Duration::from_secs(30))
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
    let mut unit = mk_unit("serverless");
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
        || async { Ok(ksvcs.get_opt("shop-record-echo").await?) },
    )
    .await?;
    let annotations = &ksvc.data["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["autoscaling.knative.dev/max-scale"], "3");
    // No Knative controller runs here, so the service never reports Ready: still progressing,
    // while the data grid (a plain Deployment) is rendered as usual.
    let status = spoke
        .wait_phase(
            "serverless",
            pb::Phase::Progressing,
            Duration::from_secs(30),
        )
        .await?;
    assert!(
        status.message.contains("shop-record-echo"),
        "{}",
        status.message
    );
    let deployments: Api<Deployment> = spoke.api();
    assert!(deployments.get_opt("shop-record-echo").await?.is_none());
    assert!(deployments.get_opt("shop-record-odgm").await?.is_some());
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

    // The standby takes the Deploy call; the leader renders it.
    let mut grpc = DeploymentServiceClient::connect(standby.endpoint.clone()).await?;
    grpc.deploy(deploy_request(mk_unit("leader.shop-record"), "corr-leader"))
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    wait_for(
        "the leader to render the class",
        Duration::from_secs(30),
        || async { Ok(deployments.get_opt("shop-record-echo").await?.map(drop)) },
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
    let mut unit = mk_unit("leader.shop-record");
    unit.functions[0]
        .provision_config
        .as_mut()
        .unwrap()
        .container_image = "img/echo:2".into();
    grpc.deploy(deploy_request(unit, "corr-leader-2")).await?;
    wait_for(
        "echo rolled to img/echo:2 by the new leader",
        Duration::from_secs(30),
        || async {
            Ok(
                (image_of(&deployments.get("shop-record-echo").await?) == "img/echo:2")
                    .then_some(()),
            )
        },
    )
    .await?;
    ns.delete().await?;
    drop(standby);
    Ok(())
}
