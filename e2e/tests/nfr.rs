//! The NFR analyzer and enforcer of a CRM on a real spoke, fed by a real Prometheus that
//! scrapes a small exporter standing in for cAdvisor. Short windows keep it quick:
//! analysis every second over 6 s, a 3 s stability window, a 4 s cooldown, one replica per
//! step.
use std::time::{Duration, Instant};

use anyhow::Context as _;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{Api, Client};
use oaas_crds::class_runtime::ClassRuntimeStatus;
use oaas_crds::{ClassRuntime, OClassDeployment};
use oaas_e2e::{
    Crm, Exporter, Fleet, Prometheus, TestNamespace, client_for, image_of, install_all_crds,
    kubectl, kubectl_with_input, spoke_contexts, wait_for,
};
use oaas_proto::deployment::deployment_service_client::DeploymentServiceClient;
use oaas_proto::deployment::{self as pb, EnforcementMode};
use oaas_proto::package::{FunctionType, ProvisionConfig};

const STABILITY: Duration = Duration::from_secs(3);
const COOLDOWN: Duration = Duration::from_secs(4);
/// Timestamps in status have whole seconds.
const ROUNDING: Duration = Duration::from_secs(1);
const MIB: f64 = 1024.0 * 1024.0;

struct Setup {
    client: Client,
    ns: TestNamespace,
    context: String,
    exporter: Exporter,
    prometheus: Prometheus,
    crm: Crm,
    grpc: DeploymentServiceClient<tonic::transport::Channel>,
}

impl Setup {
    async fn start(test: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        install_all_crds().await?;
        let context = spoke_contexts().remove(0);
        let client = client_for(&context).await?;
        let ns = TestNamespace::create(&client, test).await?;
        let exporter = Exporter::start().await?;
        let prometheus = Prometheus::start(test, &[exporter.port]).await?;
        let crm = Self::crm(&context, &ns.name, &prometheus.url, extra_env).await?;
        let grpc = DeploymentServiceClient::connect(crm.endpoint.clone()).await?;
        Ok(Self {
            client,
            ns,
            context,
            exporter,
            prometheus,
            crm,
            grpc,
        })
    }

    async fn crm(
        context: &str,
        ns: &str,
        prometheus: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Crm> {
        let mut env = fast_nfr_env(prometheus);
        env.extend_from_slice(extra_env);
        Crm::start(context, ns, &env).await
    }

    /// Deploys into the CRM's namespace; returns the name of the runtime stored there.
    async fn deploy(&mut self, unit: pb::DeploymentUnit) -> anyhow::Result<String> {
        let response = self
            .grpc
            .deploy(pb::DeployRequest {
                deployment_unit: Some(unit),
                expected_revision: None,
            })
            .await?;
        let resource = response.into_inner().resource_name;
        let name = resource
            .strip_prefix(&format!("{}/", self.ns.name))
            .with_context(|| format!("{resource} is not in {}", self.ns.name))?;
        Ok(name.to_string())
    }

    /// The id of the class deployment `name` of the hub namespace mapped to the CRM's.
    fn id(&self, name: &str) -> String {
        format!("e2e/{}/{name}", self.ns.name)
    }

    /// One function, 100m CPU requested, 1..=max replicas, target 50% CPU; the class
    /// deployment `name`, deployed into the CRM's namespace.
    fn unit(
        &self,
        name: &str,
        class: &str,
        mode: EnforcementMode,
        max: u32,
        image: &str,
    ) -> pb::DeploymentUnit {
        pb::DeploymentUnit {
            id: self.id(name),
            namespace: self.ns.name.clone(),
            ..mk_unit(class, mode, max, image)
        }
    }

    fn runtimes(&self) -> Api<ClassRuntime> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// The workload of the runtime's only function, once the CRM reports it, and pods of it
    /// using `cores` of CPU (the exporter's numbers, scraped by Prometheus).
    async fn load(&self, runtime: &str, cores: f64) -> anyhow::Result<String> {
        let workload = wait_for(
            &format!("{runtime} rendered"),
            Duration::from_secs(30),
            || async {
                let status = self
                    .runtimes()
                    .get(runtime)
                    .await?
                    .status
                    .unwrap_or_default();
                Ok(status.functions.first().and_then(|f| f.service.clone()))
            },
        )
        .await?;
        self.exporter.set(
            &self.ns.name,
            &format!("{workload}-7d9f8-abcde"),
            cores,
            100.0 * MIB,
        );
        Ok(workload)
    }

    async fn status(&self, runtime: &str) -> anyhow::Result<ClassRuntimeStatus> {
        Ok(self
            .runtimes()
            .get(runtime)
            .await?
            .status
            .unwrap_or_default())
    }

    async fn delete(self) -> anyhow::Result<()> {
        // The CRM keeps running while the namespace goes, so it removes its finalizers.
        self.ns.delete().await?;
        drop(self.crm);
        Ok(())
    }
}

/// CRM settings for quick NFR tests: analysis every second over 6 s, a 3 s stability window,
/// a 4 s cooldown, one replica per change.
fn fast_nfr_env(prometheus: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("OPRC_CRM_FEATURES_PROMETHEUS", "true"),
        ("OPRC_CRM_PROMETHEUS_URL", prometheus),
        ("OPRC_CRM_FEATURES_NFR_ENFORCEMENT", "true"),
        ("OPRC_CRM_FEATURES_ODGM", "false"),
        ("OPRC_CRM_ANALYZER_INTERVAL_SECS", "1"),
        ("OPRC_CRM_NFR_WINDOW_SECS", "6"),
        ("OPRC_CRM_NFR_STEP_SECS", "1"),
        ("OPRC_CRM_NFR_RATE_WINDOW_SECS", "4"),
        ("OPRC_CRM_PROMETHEUS_TIMEOUT_SECS", "2"),
        ("OPRC_CRM_ENFORCEMENT_STABILITY_SECS", "3"),
        ("OPRC_CRM_ENFORCEMENT_COOLDOWN_SECS", "4"),
        ("OPRC_CRM_ENFORCEMENT_MAX_STEP", "1"),
    ]
}

/// One function, 100m CPU requested, 1..=max replicas, target 50% CPU (no id or namespace:
/// see [`Setup::unit`]).
fn mk_unit(class: &str, mode: EnforcementMode, max: u32, image: &str) -> pb::DeploymentUnit {
    pb::DeploymentUnit {
        package_name: "nfr".into(),
        class_key: class.into(),
        functions: vec![pb::FunctionDeploymentSpec {
            function_key: "work".into(),
            function_type: FunctionType::Custom as i32,
            provision_config: Some(ProvisionConfig {
                container_image: image.into(),
                cpu_request: "100m".into(),
                min_scale: 1,
                max_scale: max,
                ..Default::default()
            }),
            ..Default::default()
        }],
        nfr_requirements: Some(oaas_proto::common::NfrRequirements {
            cpu_utilization_target: Some(50.0),
            ..Default::default()
        }),
        template: "k8s_deployment".into(),
        enforcement_mode: mode as i32,
        ..Default::default()
    }
}

fn nfr_condition(status: &ClassRuntimeStatus) -> Option<(String, String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "NfrObserved")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls `replicas` until it reaches `last`; each distinct value with when it was first seen.
async fn watch_steps<F, Fut>(last: u32, replicas: F) -> anyhow::Result<Vec<(u32, Instant)>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<u32>>,
{
    let mut seen: Vec<(u32, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let now = replicas().await?;
        if seen.last().map(|(r, _)| *r) != Some(now) {
            seen.push((now, Instant::now()));
        }
        if now == last {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "replicas never reached {last}: {:?}",
        seen.iter().map(|(r, _)| r).collect::<Vec<_>>()
    )
}

/// The steps go up one at a time, the first after the stability window, the next ones each
/// after the cooldown.
fn assert_safe_steps(steps: &[(u32, Instant)], recommended_at: Instant, expected: &[u32]) {
    let values: Vec<u32> = steps.iter().map(|(r, _)| *r).collect();
    assert_eq!(values, expected, "one replica per change");
    let first_change = steps[1].1;
    assert!(
        first_change.duration_since(recommended_at) + ROUNDING >= STABILITY,
        "the first change came {:?} after the recommendation, inside the stability window",
        first_change.duration_since(recommended_at)
    );
    for pair in steps[1..].windows(2) {
        let gap = pair[1].1.duration_since(pair[0].1);
        assert!(
            gap + ROUNDING >= COOLDOWN,
            "changes {gap:?} apart, inside the cooldown"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn enforce_mode_raises_hpa_min_replicas_safely_and_observe_mode_changes_nothing()
-> anyhow::Result<()> {
    let mut setup = Setup::start("nfr-hpa", &[]).await?;
    let busy = setup
        .deploy(setup.unit("busy", "Busy", EnforcementMode::Enforce, 5, "img/work:1"))
        .await?;
    let calm = setup
        .deploy(setup.unit("calm", "Calm", EnforcementMode::Observe, 5, "img/work:1"))
        .await?;
    let busy_workload = setup.load(&busy, 0.3).await?;
    let calm_workload = setup.load(&calm, 0.3).await?;

    // 0.3 cores over one replica at 100m requested and a 50% target: 6 replicas, capped at 5.
    let (recommendation, recommended_at) = wait_for(
        "a recommendation for busy",
        Duration::from_secs(60),
        || async {
            let status = setup.status(&busy).await?;
            Ok(status
                .nfr_recommendations
                .first()
                .cloned()
                .filter(|r| r.recommended_replicas == 5)
                .map(|r| (r, Instant::now())))
        },
    )
    .await?;
    assert_eq!(recommendation.function_key, "work");
    assert_eq!(recommendation.recommended_memory.as_deref(), Some("120Mi"));
    let autoscalers: Api<HorizontalPodAutoscaler> =
        Api::namespaced(setup.client.clone(), &setup.ns.name);
    let min_replicas = || async {
        let hpa = autoscalers.get(&busy_workload).await?;
        Ok(hpa.spec.and_then(|s| s.min_replicas).unwrap_or_default() as u32)
    };
    let steps = watch_steps(5, min_replicas).await?;
    assert_safe_steps(&steps, recommended_at, &[1, 2, 3, 4, 5]);
    // For the one replica of `calm`, once the window holds only the steady load, the CPU
    // request that meets the target is 0.3 / 50% = 600m (give or take rate()'s
    // extrapolation). `busy` now spreads the same load over 5 replicas.
    let settled = wait_for(
        "the CPU recommendation to settle",
        Duration::from_secs(30),
        || async {
            let status = setup.status(&calm).await?;
            Ok(status.nfr_recommendations.first().cloned().filter(|r| {
                let millicores = r
                    .recommended_cpu
                    .as_deref()
                    .and_then(|c| c.strip_suffix('m'))
                    .and_then(|m| m.parse::<u32>().ok());
                millicores.is_some_and(|m| (570..=630).contains(&m))
            }))
        },
    )
    .await?;
    assert!(
        settled
            .reason
            .contains("bounded by minScale..maxScale 1..5"),
        "{}",
        settled.reason
    );

    // The controller applies the HPA first and records it in status right after.
    let status = wait_for(
        "status to record the last change",
        Duration::from_secs(10),
        || async {
            let status = setup.status(&busy).await?;
            let recorded = status
                .last_applied_recommendations
                .first()
                .map(|a| a.replicas);
            Ok((recorded == Some(5)).then_some(status))
        },
    )
    .await?;
    let applied = &status.last_applied_recommendations[0];
    assert_eq!(applied.target_kind, "HorizontalPodAutoscaler");
    let (observed, reason, _) = nfr_condition(&status).expect("NfrObserved");
    assert_eq!((observed.as_str(), reason.as_str()), ("True", "Analyzed"));
    // Events of the same reason form a series: the first change's note stays.
    let events = kubectl(
        &setup.context,
        &[
            "get",
            "events",
            "-n",
            &setup.ns.name,
            "--field-selector",
            &format!("involvedObject.name={busy},reason=Enforced"),
            "-o",
            "jsonpath={.items[*].message}",
        ],
    )?;
    assert!(events.contains("1 → 2 replicas toward 5"), "{events}");

    let metrics = oaas_e2e::http_get(setup.crm.port, "/metrics").await?;
    assert!(
        metrics
            .contains("oaas_crm_nfr_enforcements_total{target_kind=\"HorizontalPodAutoscaler\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oaas_crm_nfr_analyses_total{outcome=\"Analyzed\"}"),
        "{metrics}"
    );

    // What the hub gets from this spoke carries the recommendation.
    let reported = setup
        .grpc
        .get_deployment_status(pb::GetDeploymentStatusRequest {
            deployment_id: setup.id("busy"),
        })
        .await?
        .into_inner();
    assert_eq!(reported.recommendations[0].recommended_replicas, 5);
    assert!(reported.recommendations[0].recommended_cpu.ends_with('m'));

    // Observe mode: the same recommendation, nothing changed.
    let calm_status = setup.status(&calm).await?;
    assert_eq!(calm_status.nfr_recommendations[0].recommended_replicas, 5);
    assert!(calm_status.last_applied_recommendations.is_empty());
    let calm_hpa = autoscalers.get(&calm_workload).await?;
    assert_eq!(calm_hpa.spec.and_then(|s| s.min_replicas), Some(1));

    // Prometheus goes away: the condition says so, the enforcer holds, reconciling goes on.
    setup.prometheus.process.kill();
    wait_for(
        "NfrObserved False once Prometheus is gone",
        Duration::from_secs(30),
        || async {
            let status = setup.status(&calm).await?;
            Ok(
                nfr_condition(&status)
                    .filter(|(s, r, _)| s == "False" && r == "MetricsUnavailable"),
            )
        },
    )
    .await?;
    setup
        .deploy(setup.unit("calm", "Calm", EnforcementMode::Observe, 5, "img/work:2"))
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(setup.client.clone(), &setup.ns.name);
    wait_for(
        "calm rolled to img/work:2",
        Duration::from_secs(30),
        || async {
            Ok((image_of(&deployments.get(&calm_workload).await?) == "img/work:2").then_some(()))
        },
    )
    .await?;
    assert_eq!(
        min_replicas().await?,
        5,
        "the replicas in force stay while metrics are missing"
    );

    setup.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn without_an_autoscaler_the_enforcer_sets_deployment_replicas_until_the_mode_changes()
-> anyhow::Result<()> {
    let mut setup = Setup::start("nfr-deploy", &[("OPRC_CRM_FEATURES_HPA", "false")]).await?;
    let runtime = setup
        .deploy(setup.unit(
            "steady",
            "Steady",
            EnforcementMode::Enforce,
            3,
            "img/work:1",
        ))
        .await?;
    let workload = setup.load(&runtime, 0.3).await?;
    let recommended_at = wait_for("a recommendation", Duration::from_secs(60), || async {
        let status = setup.status(&runtime).await?;
        Ok(status
            .nfr_recommendations
            .first()
            .filter(|r| r.recommended_replicas == 3)
            .map(|_| Instant::now()))
    })
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(setup.client.clone(), &setup.ns.name);
    let replicas = || async {
        let d = deployments.get(&workload).await?;
        Ok(d.spec.and_then(|s| s.replicas).unwrap_or_default() as u32)
    };
    let steps = watch_steps(3, replicas).await?;
    assert_safe_steps(&steps, recommended_at, &[1, 2, 3]);
    let status = setup.status(&runtime).await?;
    assert_eq!(
        status.last_applied_recommendations[0].target_kind,
        "Deployment"
    );
    let autoscalers: Api<HorizontalPodAutoscaler> =
        Api::namespaced(setup.client.clone(), &setup.ns.name);
    assert!(autoscalers.get_opt(&workload).await?.is_none());

    // Back to observe: the enforcer's replicas go, the spec's bounds rule again.
    setup
        .deploy(setup.unit(
            "steady",
            "Steady",
            EnforcementMode::Observe,
            3,
            "img/work:1",
        ))
        .await?;
    wait_for(
        "replicas back to minScale",
        Duration::from_secs(30),
        || async { Ok((replicas().await? == 1).then_some(())) },
    )
    .await?;
    assert!(
        setup
            .status(&runtime)
            .await?
            .last_applied_recommendations
            .is_empty()
    );

    // Off: no analysis, no condition, no recommendations.
    setup
        .deploy(setup.unit("steady", "Steady", EnforcementMode::Off, 3, "img/work:1"))
        .await?;
    wait_for("NfrObserved gone", Duration::from_secs(30), || async {
        let status = setup.status(&runtime).await?;
        Ok(
            (nfr_condition(&status).is_none() && status.nfr_recommendations.is_empty())
                .then_some(()),
        )
    })
    .await?;
    setup.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn the_hub_shows_each_spokes_latest_recommendation() -> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    let prometheus = Prometheus::start("nfr-hub", &[exporter.port]).await?;
    let fleet = Fleet::start("nfr-hub", &[], &fast_nfr_env(&prometheus.url)).await?;
    let (hub, ns) = (fleet.hub.clone(), fleet.ns.name.clone());
    let manifests = format!(
        "apiVersion: oaas.io/v1alpha1\nkind: OPackage\nmetadata: {{name: shop}}\nspec:\n  classes: [{{key: Cart, functionBindings: [{{name: add, functionKey: add}}]}}]\n  functions: [{{key: add, provisionConfig: {{containerImage: img/add:1, cpuRequest: 100m, minScale: 1, maxScale: 4}}}}]\n---\napiVersion: oaas.io/v1alpha1\nkind: OClassDeployment\nmetadata: {{name: cart}}\nspec:\n  package: shop\n  classKey: Cart\n  targetClusters: [{}]\n  template: k8s_deployment\n  nfr: {{cpuUtilizationTarget: 50}}\n  enforcementMode: observe\n",
        fleet.cluster_names().join(", ")
    );
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], &manifests)?;
    kubectl(
        &hub,
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Available",
            "classdeployment/cart",
            "--timeout=60s",
        ],
    )?;

    // Each spoke's pods of `add` use 0.2 cores: 4 replicas at 100m and 50%.
    for spoke in &fleet.spokes {
        let runtimes: Api<ClassRuntime> = Api::namespaced(spoke.client.clone(), &spoke.ns.name);
        let runtime = runtimes.list(&Default::default()).await?.items.remove(0);
        let workload = runtime.status.unwrap_or_default().functions[0]
            .service
            .clone()
            .unwrap_or_default();
        exporter.set(
            &spoke.ns.name,
            &format!("{workload}-5c6d7-xyz12"),
            0.2,
            64.0 * MIB,
        );
    }
    let deployments: Api<OClassDeployment> = Api::namespaced(fleet.hub_client.clone(), &ns);
    let clusters = wait_for(
        "every spoke's recommendation on the hub",
        Duration::from_secs(60),
        || async {
            let status = deployments.get("cart").await?.status.unwrap_or_default();
            let all = status.clusters.len() == fleet.spokes.len()
                && status.clusters.iter().all(|c| {
                    c.recommendations
                        .first()
                        .is_some_and(|r| r.recommended_replicas == 4)
                });
            Ok(all.then_some(status.clusters))
        },
    )
    .await?;
    for cluster in clusters {
        let recommendation = &cluster.recommendations[0];
        assert_eq!(recommendation.function_key, "add", "{}", cluster.cluster);
        assert!(
            recommendation.reason.contains("50% target"),
            "{}",
            recommendation.reason
        );
    }
    fleet.delete().await
}
