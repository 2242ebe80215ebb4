use super::*;

const SEED_PACKAGE: &str = r#"
name: e2e-test-pkg
version: 1.0
metadata:
  tags: ["e2e", "test"]
  author: "E2E Test Suite"
classes:
  - key: TestRecord
    function_bindings:
      - access_modifier: PUBLIC
        function_key: TestRecord.echo
        stateless: true
        name: echo
        parameters: []
    state_spec:
      consistency_model: NONE
functions:
  - key: TestRecord.echo
    function_type: CUSTOM
    provision_config:
      container_image: ghcr.io/pawissanutt/oaas-rs/echo-fn:dev-alpha
      max_concurrency: 0
    config:
      HTTP_PORT: 8080
      RUST_LOG: info
dependencies: []
deployments:
  - key: E2EClass
    class_key: TestRecord
    target_envs: [oaas-1]
    env_templates: {oaas-1: full}
    odgm:
      log: debug
"#;

fn seed_package() -> Package {
    serde_yaml::from_str(SEED_PACKAGE).unwrap()
}

#[test]
fn a_seed_package_file_becomes_a_package_and_its_deployments() {
    let (package, deployments) = package_resources(&seed_package(), "shop").unwrap();
    assert_eq!(package.metadata.name.as_deref(), Some("e2e-test-pkg"));
    assert_eq!(package.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(package.spec.version.as_deref(), Some("1.0"));
    let function = &package.spec.functions[0];
    assert_eq!(function.config["HTTP_PORT"], "8080");
    let provision = function.provision_config.as_ref().unwrap();
    assert_eq!(provision.max_concurrency, None, "0 means no limit");
    assert_eq!(provision.need_http2, None);

    let [deployment] = deployments.as_slice() else {
        panic!("one deployment expected")
    };
    assert_eq!(deployment.metadata.name.as_deref(), Some("e2eclass"));
    assert_eq!(deployment.annotations()[KEY_ANNOTATION], "E2EClass");
    assert_eq!(
        deployment.spec.package, "e2e-test-pkg",
        "defaults to the package"
    );
    assert_eq!(deployment.spec.target_clusters, ["oaas-1"]);
    assert_eq!(
        deployment.spec.cluster_templates,
        std::collections::BTreeMap::from([("oaas-1".to_string(), Template::K8sDeployment)])
    );
    let odgm = deployment.spec.odgm.as_ref().unwrap();
    assert_eq!(odgm.log_level.as_deref(), Some("debug"));
    assert_eq!((odgm.partition_count, odgm.replica_count), (1, 1));
    assert_eq!(deployment.spec.nfr, None);
}

#[test]
fn documents_round_trip_through_resources() {
    let doc = seed_package();
    let (package, deployments) = package_resources(&doc, "shop").unwrap();
    let back_deployments: Vec<Deployment> = deployments.iter().map(deployment_document).collect();
    let back = package_document(&package, back_deployments);
    assert_eq!(back.name, doc.name);
    assert_eq!(back.version, doc.version);
    assert_eq!(back.metadata, doc.metadata);
    assert_eq!(back.classes, doc.classes);
    let mut functions = doc.functions.clone();
    functions[0]
        .provision_config
        .as_mut()
        .unwrap()
        .max_concurrency = None;
    assert_eq!(back.functions, functions);
    let deployment = &back.deployments[0];
    assert_eq!(deployment.key, "E2EClass");
    assert_eq!(deployment.env_templates["oaas-1"], "k8s_deployment");
    assert_eq!(deployment.condition, Some(DeploymentCondition::Pending));
    assert_eq!(
        deployment.odgm.as_ref().unwrap().log.as_deref(),
        Some("debug")
    );
}

#[test]
fn a_cpu_target_of_at_most_one_is_a_fraction_and_above_one_a_percentage() {
    let cases = [
        (0.6, Some(60.0)),
        (0.29, Some(29.0)),
        (1.0, Some(100.0)),
        (0.05, Some(5.0)),
        (60.0, Some(60.0)),
        (1.5, Some(1.5)),
        (0.0, None),
        (0.001, None),
        (250.0, None),
    ];
    for (given, percent) in cases {
        assert_eq!(cpu_percent(given), percent, "{given}");
    }
}

#[test]
fn a_deployment_document_shows_where_each_cluster_holds_it() {
    let (_, mut deployments) = package_resources(&seed_package(), "shop").unwrap();
    let mut deployment = deployments.remove(0);
    let held = |cluster: &str, namespace: Option<&str>| {
        oaas_crds::class_deployment::ClusterDeploymentStatus {
            cluster: cluster.into(),
            namespace: namespace.map(String::from),
            ..Default::default()
        }
    };
    deployment.status = Some(oaas_crds::class_deployment::OClassDeploymentStatus {
        clusters: vec![held("oaas-1", Some("shop")), held("oaas-2", None)],
        ..Default::default()
    });
    let summary = deployment_document(&deployment).status.unwrap();
    assert_eq!(
        summary.spoke_namespaces,
        std::collections::BTreeMap::from([("oaas-1".to_string(), "shop".to_string())])
    );
}

#[test]
fn deployment_problems_name_the_document_field() {
    let mut doc = seed_package();
    doc.deployments[0].target_envs.clear();
    doc.deployments[0].available_envs = vec!["a".into(), "b".into()];
    let (_, deployments) = package_resources(&doc, "ns").unwrap();
    assert!(
        deployments[0].spec.target_clusters.is_empty(),
        "no targets: the PM places it"
    );
    assert_eq!(deployments[0].spec.available_clusters, ["a", "b"]);

    let mut d = doc.deployments[0].clone();
    d.package_name = "e2e-test-pkg".into();
    d.env_templates = [("a".into(), "dev".into()), ("b".into(), "edge".into())].into();
    let templates = deployment_resource(&d, "ns")
        .unwrap()
        .spec
        .cluster_templates;
    assert_eq!(templates["a"], Template::Dev);
    assert_eq!(templates["b"], Template::Edge);
    d.env_templates = [("a".into(), "fast".into())].into();
    let err = deployment_resource(&d, "ns").unwrap_err();
    assert_eq!(err.field, "env_templates.a");
    assert!(err.problem.contains("unknown template \"fast\""), "{err}");

    let mut d = doc.deployments[0].clone();
    d.package_name = "e2e-test-pkg".into();
    // Upstream's tracing filters pass as given; a directive with no valid level does not.
    d.odgm.as_mut().unwrap().log = Some("debug,h2=info".into());
    let odgm = deployment_resource(&d, "ns").unwrap().spec.odgm.unwrap();
    assert_eq!(odgm.log_level.as_deref(), Some("debug,h2=info"));
    d.odgm.as_mut().unwrap().log = Some("debug,h2=loud".into());
    assert_eq!(deployment_resource(&d, "ns").unwrap_err().field, "odgm.log");
    d.package_name.clear();
    assert_eq!(
        deployment_resource(&d, "ns").unwrap_err().field,
        "package_name"
    );
    d.key = " ".into();
    assert_eq!(deployment_resource(&d, "ns").unwrap_err().field, "key");
}

#[test]
fn phases_map_to_the_seeds_conditions() {
    assert_eq!(condition_of(Phase::Available), DeploymentCondition::Running);
    assert_eq!(
        condition_of(Phase::Progressing),
        DeploymentCondition::Deploying
    );
    assert_eq!(
        condition_of(Phase::Applying),
        DeploymentCondition::Deploying
    );
    assert_eq!(condition_of(Phase::Degraded), DeploymentCondition::Down);
    assert_eq!(condition_of(Phase::Pending), DeploymentCondition::Pending);
    assert_eq!(condition_of(Phase::Deleting), DeploymentCondition::Deleted);
}

/// A deployment as upstream's CLI sends it: explicit nulls, capitalised enums, fields this
/// project keeps without acting on them.
const UPSTREAM_DEPLOYMENT: &str = r#"{
  "key": "records", "package_name": "shop", "class_key": "Record",
  "target_envs": null, "available_envs": ["edge-1", "core-1"],
  "nfr_requirements": {"max_latency_ms": null, "min_throughput_rps": null,
                       "availability": 0.99, "cpu_utilization_target": 0.7},
  "env_templates": {"edge-1": "edge"},
  "functions": [{"function_key": "echo", "description": "Echoes", "available_location": "edge",
                 "qos_requirement": {"throughput": 100, "availability": 0.9},
                 "provision_config": null, "config": {}}],
  "condition": "PENDING",
  "odgm": {"collections": ["records"], "partition_count": 2, "replica_count": null,
           "shard_type": null, "env_node_ids": {"edge-1": [1, 2]}, "log": "debug,h2=info"},
  "status": null, "created_at": null, "updated_at": null
}"#;

#[test]
fn upstream_deployment_fields_are_kept() {
    let doc: Deployment = serde_json::from_str(UPSTREAM_DEPLOYMENT).unwrap();
    let resource = deployment_resource(&doc, "shop").unwrap();
    let spec = &resource.spec;
    assert!(spec.target_clusters.is_empty());
    assert_eq!(spec.available_clusters, ["edge-1", "core-1"]);
    let nfr = spec.nfr.as_ref().unwrap();
    assert_eq!(nfr.cpu_utilization_target, Some(70.0));
    let odgm = spec.odgm.as_ref().unwrap();
    assert_eq!(odgm.env_node_ids["edge-1"], [1, 2]);
    assert_eq!(odgm.partition_count, 2);

    let back = deployment_document(&resource);
    assert_eq!(back.available_envs, doc.available_envs);
    assert_eq!(back.env_templates, doc.env_templates);
    assert_eq!(back.functions[0].description.as_deref(), Some("Echoes"));
    assert_eq!(
        back.functions[0].available_location.as_deref(),
        Some("edge")
    );
    assert_eq!(
        back.functions[0].qos_requirement,
        doc.functions[0].qos_requirement
    );
    assert_eq!(back.odgm.unwrap().env_node_ids, odgm.env_node_ids);
}

// --- telemetry ------------------------------------------------------------------------------

fn telemetry_deployment(telemetry: &str) -> Deployment {
    serde_json::from_str(&format!(
        r#"{{"key": "records", "package_name": "shop", "class_key": "Record",
            "target_envs": ["edge-1"], "telemetry": {telemetry}}}"#
    ))
    .unwrap()
}

#[test]
fn an_upstream_telemetry_block_with_nulls_gets_the_defaults() {
    let doc = telemetry_deployment(
        r#"{"enabled": true, "traces": null, "metrics": null, "logs": null,
            "sampling_rate": null, "service_name": null, "resource_attributes": null}"#,
    );
    let spec = deployment_resource(&doc, "shop").unwrap().spec;
    assert_eq!(
        spec.telemetry,
        Some(oaas_crds::telemetry::TelemetrySpec {
            enabled: true,
            ..Default::default()
        })
    );
    let telemetry = spec.telemetry.unwrap();
    assert!(telemetry.traces && telemetry.metrics && !telemetry.logs);
    assert_eq!(telemetry.sampling_rate, 0.1);

    for absent in ["null", "{}"] {
        let spec = deployment_resource(&telemetry_deployment(absent), "shop")
            .unwrap()
            .spec;
        let enabled = spec.telemetry.as_ref().is_some_and(|t| t.enabled);
        assert!(!enabled, "{absent}: telemetry stays off");
    }
    let spec = deployment_resource(&telemetry_deployment("null"), "shop")
        .unwrap()
        .spec;
    assert_eq!(spec.telemetry, None, "null is no block");
    let blank = telemetry_deployment(r#"{"enabled": true, "service_name": " "}"#);
    let telemetry = deployment_resource(&blank, "shop").unwrap().spec.telemetry;
    assert_eq!(telemetry.unwrap().service_name, None, "blank is unset");
}

#[test]
fn a_package_file_telemetry_block_maps_to_the_resource_and_back() {
    let yaml = format!(
        "{SEED_PACKAGE}    telemetry:\n      enabled: true\n      traces: true\n      metrics: false\n      \
         logs: true\n      sampling_rate: 0.25\n      service_name: shop-records\n      \
         resource_attributes: {{team: shop, tier: 1}}\n"
    );
    let doc: Package = serde_yaml::from_str(&yaml).unwrap();
    let (_, deployments) = package_resources(&doc, "shop").unwrap();
    let telemetry = deployments[0].spec.telemetry.clone().unwrap();
    assert_eq!(
        telemetry,
        oaas_crds::telemetry::TelemetrySpec {
            enabled: true,
            traces: true,
            metrics: false,
            logs: true,
            sampling_rate: 0.25,
            service_name: Some("shop-records".into()),
            resource_attributes: [
                ("team".to_string(), "shop".to_string()),
                ("tier".to_string(), "1".to_string()),
            ]
            .into(),
        }
    );
    let back = deployment_document(&deployments[0]).telemetry.unwrap();
    assert_eq!(back, doc.deployments[0].telemetry.clone().unwrap());
    let json = serde_json::to_value(deployment_document(&deployments[0])).unwrap();
    assert_eq!(json["telemetry"]["sampling_rate"], 0.25, "snake_case out");
    assert_eq!(json["telemetry"]["resource_attributes"]["team"], "shop");
}

#[test]
fn telemetry_problems_name_the_document_field_and_what_to_change() {
    let cases = [
        (
            r#"{"enabled": true, "sampling_rate": 1.5}"#,
            "telemetry.sampling_rate",
            "between 0 and 1",
        ),
        (
            r#"{"sampling_rate": -0.5}"#,
            "telemetry.sampling_rate",
            "e.g. 0.1",
        ),
        (
            r#"{"resource_attributes": {"bad key": "x"}}"#,
            "telemetry.resource_attributes.bad key",
            "letters, digits",
        ),
        (
            r#"{"resource_attributes": {"oaas.function": "x"}}"#,
            "telemetry.resource_attributes.oaas.function",
            "rename the key",
        ),
        (
            r#"{"service_name": "caf\u00e9"}"#,
            "telemetry.service_name",
            "e.g. shop-records",
        ),
    ];
    for (block, field, says) in cases {
        let err = deployment_resource(&telemetry_deployment(block), "shop").unwrap_err();
        assert_eq!(err.field, field, "{block}: {err}");
        assert!(err.problem.contains(says), "{block}: {err}");
    }
    let yaml = format!("{SEED_PACKAGE}    telemetry: {{sampling_rate: 2}}\n");
    let doc: Package = serde_yaml::from_str(&yaml).unwrap();
    let err = package_resources(&doc, "shop").unwrap_err();
    assert_eq!(err.field, "deployments[0].telemetry.sampling_rate");
}
