use super::*;
use oaas_crds::class_runtime::{ClassRuntimeSpec, RuntimeFunction};
use oaas_crds::common::{NfrRequirements, OdgmSpec, ProvisionConfig};
use serde_json::Value;

fn mk_features(odgm: bool, hpa: bool, knative: bool) -> Features {
    Features {
        odgm,
        knative,
        hpa,
        prometheus: false,
        nfr_enforcement: false,
    }
}

fn mk_odgm_settings() -> OdgmSettings {
    OdgmSettings {
        image: "odgm:test".into(),
        port: 8081,
    }
}

fn mk_function(key: &str, min: u32, max: u32) -> RuntimeFunction {
    RuntimeFunction {
        function_key: key.into(),
        provision_config: ProvisionConfig {
            container_image: Some(format!("img/{key}:1")),
            port: Some(9000),
            cpu_request: Some("100m".into()),
            memory_limit: Some("256Mi".into()),
            min_scale: Some(min),
            max_scale: Some(max),
            ..Default::default()
        },
        config: [("GREETING".to_string(), "hi".to_string())].into(),
        ..Default::default()
    }
}

fn mk_runtime(
    functions: Vec<RuntimeFunction>,
    odgm: bool,
    template: Option<Template>,
) -> ClassRuntime {
    let mut runtime = ClassRuntime::new(
        "shop-record",
        ClassRuntimeSpec {
            deployment_id: "d-1".into(),
            package_name: "shop".into(),
            class_key: "Record".into(),
            functions,
            template,
            addons: if odgm { vec!["odgm".into()] } else { vec![] },
            odgm: odgm.then(|| OdgmSpec {
                collections: vec!["records".into(), "audit".into()],
                partition_count: 4,
                replica_count: 3,
                ..Default::default()
            }),
            nfr: Some(NfrRequirements {
                cpu_utilization_target: Some(65.0),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    runtime.metadata.namespace = Some("apps".into());
    runtime.metadata.uid = Some("uid-1".into());
    runtime
}

fn render_with(
    runtime: &ClassRuntime,
    features: Features,
    profile: Profile,
    knative: bool,
) -> Rendered {
    let settings = Settings {
        profile,
        features,
        odgm: mk_odgm_settings(),
        otlp: None,
    };
    render(
        runtime,
        &RenderContext {
            settings: &settings,
            crm: "crm-ns",
            knative_installed: knative,
            enforced: &Default::default(),
        },
    )
}

fn render_enforced(runtime: &ClassRuntime, hpa: bool, enforced: &[(&str, u32)]) -> Rendered {
    let settings = Settings {
        profile: Profile::Full,
        features: mk_features(false, hpa, false),
        odgm: mk_odgm_settings(),
        otlp: None,
    };
    let enforced = enforced.iter().map(|(k, r)| (k.to_string(), *r)).collect();
    render(
        runtime,
        &RenderContext {
            settings: &settings,
            crm: "crm-ns",
            knative_installed: false,
            enforced: &enforced,
        },
    )
}

#[test]
fn enforced_replicas_become_hpa_min_replicas_or_deployment_replicas_within_bounds() {
    let runtime = mk_runtime(vec![mk_function("echo", 2, 5)], false, None);
    let with_hpa = render_enforced(&runtime, true, &[("echo", 4)]);
    let hpa = child(
        &with_hpa,
        ChildKind::HorizontalPodAutoscaler,
        "shop-record-echo",
    );
    assert_eq!(hpa["spec"]["minReplicas"], 4);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    let at_max = render_enforced(&runtime, true, &[("echo", 5)]);
    assert_eq!(
        child(
            &at_max,
            ChildKind::HorizontalPodAutoscaler,
            "shop-record-echo"
        )["spec"]["minReplicas"],
        5,
        "the autoscaler stays when the enforcer reaches maxScale"
    );

    let without_hpa = render_enforced(&runtime, false, &[("echo", 9)]);
    let deployment = child(&without_hpa, ChildKind::Deployment, "shop-record-echo");
    assert_eq!(deployment["spec"]["replicas"], 5, "clamped to maxScale");
    let below = render_enforced(&runtime, false, &[("echo", 1)]);
    assert_eq!(
        child(&below, ChildKind::Deployment, "shop-record-echo")["spec"]["replicas"],
        2
    );
    let other = render_enforced(&runtime, false, &[("other", 4)]);
    assert_eq!(
        child(&other, ChildKind::Deployment, "shop-record-echo")["spec"]["replicas"],
        2
    );
}

fn child<'a>(rendered: &'a Rendered, kind: ChildKind, name: &str) -> &'a Value {
    &rendered
        .children
        .iter()
        .find(|c| c.kind == kind && c.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no {kind:?} {name} in {:?}",
                rendered
                    .children
                    .iter()
                    .map(|c| &c.name)
                    .collect::<Vec<_>>()
            )
        })
        .object
}

fn env(container: &Value) -> std::collections::BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e.get("value").cloned().unwrap_or(e["valueFrom"].clone()),
            )
        })
        .collect()
}

#[test]
fn a_scalable_function_gets_a_deployment_a_service_and_an_autoscaler() {
    let runtime = mk_runtime(vec![mk_function("Record.echo", 2, 5)], false, None);
    let rendered = render_with(
        &runtime,
        mk_features(false, true, false),
        Profile::Full,
        false,
    );
    assert_eq!(rendered.template, Template::K8sDeployment);
    assert_eq!(rendered.children.len(), 3);

    let deployment = child(&rendered, ChildKind::Deployment, "shop-record-record-echo");
    assert_eq!(deployment["metadata"]["namespace"], "apps");
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    let labels = &deployment["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "oaas-crm");
    assert_eq!(labels["app.kubernetes.io/instance"], "shop-record");
    assert_eq!(labels["app.kubernetes.io/name"], "oaas-function");
    assert_eq!(
        labels["oaas.io/crm"], "crm-ns",
        "the runtime's CRM, whose watches see it"
    );
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "the autoscaler owns replicas"
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "img/Record.echo:1");
    assert_eq!(container["ports"][0]["containerPort"], 9000);
    assert_eq!(container["resources"]["requests"]["cpu"], "100m");
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    let env = env(container);
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["OAAS_FUNCTION_KEY"], "Record.echo");
    assert!(!env.contains_key("ODGM_ENABLED"));
    let names = container["env"].as_array().unwrap().len();
    assert_eq!(names, env.len(), "each variable once");

    let service = child(&rendered, ChildKind::Service, "shop-record-record-echo");
    assert_eq!(service["spec"]["ports"][0]["port"], 9000);
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let hpa = child(
        &rendered,
        ChildKind::HorizontalPodAutoscaler,
        "shop-record-record-echo",
    );
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        65
    );
    assert_eq!(
        rendered.functions[0].url,
        "http://shop-record-record-echo.apps.svc.cluster.local:9000"
    );
}

#[test]
fn config_naming_a_platform_variable_yields_one_entry_with_the_platform_value() {
    let mut function = mk_function("echo", 1, 1);
    function.config.insert("HTTP_PORT".into(), "1234".into());
    let runtime = mk_runtime(vec![function], false, None);
    let rendered = render_with(
        &runtime,
        mk_features(false, true, false),
        Profile::Full,
        false,
    );
    let deployment = child(&rendered, ChildKind::Deployment, "shop-record-echo");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let ports: Vec<&Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "HTTP_PORT")
        .collect();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["value"], "9000", "the port the Service routes to");
}

#[test]
fn a_fixed_scale_function_gets_replicas_and_no_autoscaler() {
    let runtime = mk_runtime(vec![mk_function("echo", 3, 3)], false, None);
    let rendered = render_with(
        &runtime,
        mk_features(false, true, false),
        Profile::Full,
        false,
    );
    assert_eq!(rendered.children.len(), 2);
    assert_eq!(
        child(&rendered, ChildKind::Deployment, "shop-record-echo")["spec"]["replicas"],
        3
    );
}

#[test]
fn without_the_hpa_feature_replicas_follow_min_scale() {
    let runtime = mk_runtime(vec![mk_function("echo", 2, 9)], false, None);
    let rendered = render_with(
        &runtime,
        mk_features(false, false, false),
        Profile::Full,
        false,
    );
    assert!(
        rendered
            .children
            .iter()
            .all(|c| c.kind != ChildKind::HorizontalPodAutoscaler)
    );
    assert_eq!(
        child(&rendered, ChildKind::Deployment, "shop-record-echo")["spec"]["replicas"],
        2
    );
}

#[test]
fn the_dev_template_runs_one_replica() {
    let runtime = mk_runtime(vec![mk_function("echo", 4, 9)], false, Some(Template::Dev));
    let rendered = render_with(
        &runtime,
        mk_features(false, true, false),
        Profile::Full,
        false,
    );
    assert_eq!(rendered.template, Template::Dev);
    assert_eq!(
        child(&rendered, ChildKind::Deployment, "shop-record-echo")["spec"]["replicas"],
        1
    );
    assert_eq!(rendered.children.len(), 2);
}

#[test]
fn odgm_is_its_own_deployment_and_service_and_functions_are_told_where_it_is() {
    let runtime = mk_runtime(
        vec![mk_function("echo", 1, 1), mk_function("update", 1, 1)],
        true,
        None,
    );
    let rendered = render_with(
        &runtime,
        mk_features(true, true, false),
        Profile::Full,
        false,
    );
    let odgm = child(&rendered, ChildKind::Deployment, "shop-record-odgm");
    assert_eq!(odgm["spec"]["replicas"], 3, "replicaCount is honoured");
    let pod = &odgm["spec"]["template"]["spec"];
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    let odgm_env = env(&pod["containers"][0]);
    assert_eq!(odgm_env["ODGM_CLUSTER_ID"], "shop-record");
    assert_eq!(odgm_env["ODGM_MEMBERS"], "1,2,3");
    assert_eq!(
        odgm_env["ODGM_NODE_ID"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let svc = child(&rendered, ChildKind::Service, "shop-record-odgm-svc");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8081);

    let function = child(&rendered, ChildKind::Deployment, "shop-record-echo");
    let containers = function["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "never a sidecar");
    let fn_env = env(&containers[0]);
    assert_eq!(fn_env["ODGM_ENABLED"], "true");
    assert_eq!(fn_env["ODGM_SERVICE"], "shop-record-odgm-svc:8081");
    assert_eq!(fn_env["ODGM_COLLECTION"], odgm_env["ODGM_COLLECTION"]);
    assert_eq!(rendered.odgm.as_ref().unwrap().replicas, 3);
}

#[test]
fn odgm_json_lists_every_collection_with_routes_to_the_functions() {
    let runtime = mk_runtime(vec![mk_function("echo", 1, 1)], true, None);
    let json: Value = serde_json::from_str(&collections_json(
        &runtime,
        runtime.spec.odgm.as_ref().unwrap(),
    ))
    .unwrap();
    let collections = json.as_array().unwrap();
    assert_eq!(collections.len(), 2);
    assert_eq!(collections[0]["name"], "records");
    assert_eq!(collections[0]["partition_count"], 4);
    assert_eq!(collections[0]["replica_count"], 3);
    assert_eq!(collections[0]["shard_type"], "mst");
    assert_eq!(collections[0]["shard_assignments"], serde_json::json!([]));
    assert_eq!(
        collections[0]["invocations"]["fn_routes"]["echo"]["url"],
        "http://shop-record-echo.apps.svc.cluster.local:9000"
    );
}

#[test]
fn odgm_needs_both_the_feature_and_the_addon() {
    let runtime = mk_runtime(vec![mk_function("echo", 1, 1)], true, None);
    let rendered = render_with(
        &runtime,
        mk_features(false, true, false),
        Profile::Full,
        false,
    );
    assert!(rendered.odgm.is_none());
    assert!(rendered.children.iter().all(|c| !c.name.contains("odgm")));
}

#[test]
fn the_knative_template_renders_a_knative_service() {
    let runtime = mk_runtime(
        vec![mk_function("echo", 0, 4)],
        true,
        Some(Template::Knative),
    );
    let rendered = render_with(&runtime, mk_features(true, true, true), Profile::Full, true);
    let ksvc = child(&rendered, ChildKind::KnativeService, "shop-record-echo");
    assert_eq!(ksvc["apiVersion"], "serving.knative.dev/v1");
    let annotations = &ksvc["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["autoscaling.knative.dev/min-scale"], "0");
    assert_eq!(annotations["autoscaling.knative.dev/max-scale"], "4");
    assert!(
        rendered
            .children
            .iter()
            .all(|c| c.kind != ChildKind::HorizontalPodAutoscaler)
    );
    assert!(
        child(&rendered, ChildKind::Deployment, "shop-record-odgm").is_object(),
        "ODGM still renders"
    );
    assert!(rendered.problems.is_empty());
}

#[test]
fn the_knative_template_without_knative_is_a_problem_that_says_so() {
    let runtime = mk_runtime(
        vec![mk_function("echo", 1, 1)],
        false,
        Some(Template::Knative),
    );
    let rendered = render_with(
        &runtime,
        mk_features(false, true, true),
        Profile::Full,
        false,
    );
    assert_eq!(rendered.problems[0].reason, "KnativeNotInstalled");
    assert!(
        rendered.children.is_empty(),
        "nothing to apply Knative Services to"
    );
}

// --- telemetry --------------------------------------------------------------------------------

fn mk_telemetry() -> oaas_crds::telemetry::TelemetrySpec {
    oaas_crds::telemetry::TelemetrySpec {
        enabled: true,
        resource_attributes: [
            ("team".to_string(), "shop".to_string()),
            ("deployment.environment".to_string(), "prod, eu".to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

fn render_otel(runtime: &ClassRuntime, otlp: Option<OtlpExporter>, knative: bool) -> Rendered {
    let settings = Settings {
        profile: Profile::Full,
        features: mk_features(false, false, knative),
        odgm: mk_odgm_settings(),
        otlp,
    };
    render(
        runtime,
        &RenderContext {
            settings: &settings,
            crm: "crm-ns",
            knative_installed: knative,
            enforced: &Default::default(),
        },
    )
}

fn mk_collector() -> OtlpExporter {
    OtlpExporter {
        endpoint: "http://otel-collector.obs:4317".into(),
        protocol: OtlpProtocol::Grpc,
    }
}

fn function_env(rendered: &Rendered, name: &str) -> std::collections::BTreeMap<String, Value> {
    let deployment = child(rendered, ChildKind::Deployment, name);
    env(&deployment["spec"]["template"]["spec"]["containers"][0])
}

fn otel_names(env: &std::collections::BTreeMap<String, Value>) -> Vec<&str> {
    env.keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("OTEL_"))
        .collect()
}

#[test]
fn enabled_telemetry_gives_every_function_the_otel_variables() {
    let mut runtime = mk_runtime(
        vec![
            mk_function("echo", 1, 1),
            mk_function("Record.update", 1, 1),
        ],
        false,
        None,
    );
    runtime.spec.deployment_id = "hub/team/record".into();
    runtime.spec.target_cluster = Some("spoke-a".into());
    runtime.spec.telemetry = Some(mk_telemetry());
    let rendered = render_otel(&runtime, Some(mk_collector()), false);

    let env = function_env(&rendered, "shop-record-echo");
    assert_eq!(
        env["OTEL_SERVICE_NAME"], "shop-record-echo",
        "the workload name"
    );
    assert_eq!(
        env["OTEL_RESOURCE_ATTRIBUTES"],
        "deployment.environment=prod%2C%20eu,oaas.class=Record,oaas.cluster=spoke-a,\
         oaas.deployment.id=hub/team/record,oaas.function=echo,oaas.package=shop,team=shop",
        "sorted by key, user and platform attributes, values encoded"
    );
    assert_eq!(env["OTEL_TRACES_EXPORTER"], "otlp");
    assert_eq!(env["OTEL_METRICS_EXPORTER"], "otlp");
    assert_eq!(env["OTEL_LOGS_EXPORTER"], "none", "logs are off by default");
    assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.1");
    assert_eq!(
        env["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "http://otel-collector.obs:4317"
    );
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc");
    assert_eq!(
        env["GREETING"], "hi",
        "the function's config is still there"
    );

    let update = function_env(&rendered, "shop-record-record-update");
    assert_eq!(update["OTEL_SERVICE_NAME"], "shop-record-record-update");
    assert!(
        update["OTEL_RESOURCE_ATTRIBUTES"]
            .as_str()
            .unwrap()
            .contains("oaas.function=Record.update,")
    );
    assert!(
        rendered.children.iter().all(|c| {
            c.kind != ChildKind::Deployment || c.object.to_string().contains("OTEL_SERVICE_NAME")
        }),
        "every function Deployment"
    );
}

#[test]
fn toggles_rate_and_service_name_are_followed_and_rendering_is_deterministic() {
    let mut runtime = mk_runtime(vec![mk_function("echo", 1, 1)], false, None);
    runtime.spec.telemetry = Some(oaas_crds::telemetry::TelemetrySpec {
        traces: false,
        metrics: false,
        logs: true,
        sampling_rate: 1.0,
        service_name: Some("shop-records".into()),
        ..mk_telemetry()
    });
    let collector = OtlpExporter {
        protocol: OtlpProtocol::HttpProtobuf,
        ..mk_collector()
    };
    let rendered = render_otel(&runtime, Some(collector.clone()), false);
    let env = function_env(&rendered, "shop-record-echo");
    assert_eq!(env["OTEL_SERVICE_NAME"], "shop-records");
    assert_eq!(env["OTEL_TRACES_EXPORTER"], "none");
    assert_eq!(env["OTEL_METRICS_EXPORTER"], "none");
    assert_eq!(env["OTEL_LOGS_EXPORTER"], "otlp");
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "1");
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
    assert_eq!(
        render_otel(&runtime, Some(collector), false),
        rendered,
        "the same runtime renders the same objects"
    );
}

#[test]
fn without_a_collector_setting_everything_but_the_endpoint_is_rendered() {
    let mut runtime = mk_runtime(vec![mk_function("echo", 1, 1)], false, None);
    runtime.spec.telemetry = Some(mk_telemetry());
    let env = function_env(&render_otel(&runtime, None, false), "shop-record-echo");
    assert_eq!(
        otel_names(&env),
        [
            "OTEL_LOGS_EXPORTER",
            "OTEL_METRICS_EXPORTER",
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_SERVICE_NAME",
            "OTEL_TRACES_EXPORTER",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
        ],
        "the SDK's default endpoint and protocol apply"
    );
}

#[test]
fn disabled_or_absent_telemetry_renders_no_otel_variables() {
    let mut runtime = mk_runtime(vec![mk_function("echo", 1, 1)], false, None);
    let absent = function_env(
        &render_otel(&runtime, Some(mk_collector()), false),
        "shop-record-echo",
    );
    assert!(otel_names(&absent).is_empty(), "{absent:?}");
    runtime.spec.telemetry = Some(oaas_crds::telemetry::TelemetrySpec {
        enabled: false,
        ..mk_telemetry()
    });
    let disabled = function_env(
        &render_otel(&runtime, Some(mk_collector()), false),
        "shop-record-echo",
    );
    assert!(otel_names(&disabled).is_empty(), "{disabled:?}");
    assert_eq!(absent, disabled);
}

#[test]
fn a_function_config_entry_wins_over_the_rendered_otel_variable() {
    let mut function = mk_function("echo", 1, 1);
    function
        .config
        .insert("OTEL_SERVICE_NAME".into(), "my-own-name".into());
    function.config.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        "http://sidecar:4317".into(),
    );
    let mut runtime = mk_runtime(vec![function], false, None);
    runtime.spec.telemetry = Some(mk_telemetry());
    let rendered = render_otel(&runtime, Some(mk_collector()), false);
    let deployment = child(&rendered, ChildKind::Deployment, "shop-record-echo");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = env(container);
    assert_eq!(env["OTEL_SERVICE_NAME"], "my-own-name");
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://sidecar:4317");
    assert_eq!(
        env["OTEL_TRACES_EXPORTER"], "otlp",
        "the rest is still rendered"
    );
    assert_eq!(
        container["env"].as_array().unwrap().len(),
        env.len(),
        "each variable once"
    );
}

#[test]
fn knative_functions_get_the_otel_variables_too() {
    let mut runtime = mk_runtime(
        vec![mk_function("echo", 1, 1)],
        false,
        Some(Template::Knative),
    );
    runtime.spec.telemetry = Some(mk_telemetry());
    let rendered = render_otel(&runtime, Some(mk_collector()), true);
    let ksvc = child(&rendered, ChildKind::KnativeService, "shop-record-echo");
    let env = env(&ksvc["spec"]["template"]["spec"]["containers"][0]);
    assert_eq!(env["OTEL_SERVICE_NAME"], "shop-record-echo");
    assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
}
