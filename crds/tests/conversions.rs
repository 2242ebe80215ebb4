//! Resource ↔ protobuf conversions round-trip, and bad deployment units name their field.
use oaas_crds::class_runtime::{
    ClassRuntimeSpec, ClassRuntimeStatus, FunctionRuntimeStatus, RuntimeFunction,
};
use oaas_crds::common::*;
use oaas_crds::convert::*;
use oaas_proto::deployment as pb;

fn mk_runtime_spec() -> ClassRuntimeSpec {
    ClassRuntimeSpec {
        deployment_id: "default.record.spoke-a".into(),
        package_name: "example".into(),
        class_key: "Record".into(),
        target_cluster: Some("spoke-a".into()),
        target_env: Some("production".into()),
        functions: vec![
            RuntimeFunction {
                function_key: "echo".into(),
                function_type: FunctionType::Custom,
                description: Some("Returns its input.".into()),
                provision_config: ProvisionConfig {
                    container_image: Some("ghcr.io/x/echo:1".into()),
                    port: Some(8080),
                    max_concurrency: Some(10),
                    need_http2: Some(true),
                    cpu_request: Some("50m".into()),
                    memory_request: Some("64Mi".into()),
                    cpu_limit: Some("1".into()),
                    memory_limit: Some("256Mi".into()),
                    min_scale: Some(0),
                    max_scale: Some(3),
                    ..Default::default()
                },
                config: [("A".to_string(), "1".to_string())].into(),
                stateless: true,
            },
            RuntimeFunction {
                function_key: "Record.wasm".into(),
                function_type: FunctionType::Wasm,
                provision_config: ProvisionConfig {
                    wasm_module_url: Some("https://m.example/f.wasm".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        ],
        template: Some(Template::Knative),
        addons: vec!["odgm".into()],
        odgm: Some(OdgmSpec {
            collections: vec!["records".into()],
            partition_count: 4,
            replica_count: 3,
            shard_type: "raft".into(),
            log_level: Some("debug,h2=info".into()),
            ..Default::default()
        }),
        telemetry: Some(oaas_crds::telemetry::TelemetrySpec {
            enabled: true,
            traces: true,
            metrics: false,
            logs: true,
            sampling_rate: 0.25,
            service_name: Some("shop-records".into()),
            resource_attributes: [("team".to_string(), "shop, eu".to_string())].into(),
        }),
        nfr: Some(NfrRequirements {
            availability: Some(0.999),
            min_throughput_rps: Some(100),
            max_latency_ms: Some(50),
            cpu_utilization_target: Some(70.0),
        }),
        enforcement_mode: EnforcementMode::Enforce,
        consistency_model: ConsistencyModel::Strong,
        revision: Some(7),
    }
}

#[test]
fn class_runtime_spec_round_trips_through_a_deployment_unit() {
    let spec = mk_runtime_spec();
    let unit = unit_from_runtime_spec(&spec);
    assert_eq!(runtime_spec_from_unit(&unit).unwrap(), spec);
}

#[test]
fn a_minimal_unit_gets_the_resource_defaults() {
    let unit = pb::DeploymentUnit {
        id: "d".into(),
        package_name: "p".into(),
        class_key: "C".into(),
        ..Default::default()
    };
    let spec = runtime_spec_from_unit(&unit).unwrap();
    assert_eq!(spec.enforcement_mode, EnforcementMode::Observe);
    assert_eq!(spec.consistency_model, ConsistencyModel::None);
    assert_eq!(spec.template, None);
    assert_eq!(spec.odgm, None);
    assert_eq!(spec.telemetry, None);
}

#[test]
fn a_telemetry_block_without_optional_fields_gets_the_resource_defaults() {
    let unit = pb::DeploymentUnit {
        id: "d".into(),
        package_name: "p".into(),
        class_key: "C".into(),
        telemetry: Some(pb::TelemetryConfig {
            enabled: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let telemetry = runtime_spec_from_unit(&unit).unwrap().telemetry.unwrap();
    assert_eq!(
        telemetry,
        oaas_crds::telemetry::TelemetrySpec {
            enabled: true,
            ..Default::default()
        }
    );
}

#[test]
fn the_revision_covers_telemetry() {
    let mut spec = mk_runtime_spec();
    let with = unit_with_revision(&spec, "ns").revision;
    spec.telemetry.as_mut().unwrap().sampling_rate = 0.5;
    let changed = unit_with_revision(&spec, "ns").revision;
    assert_ne!(with, changed, "a telemetry change is a new revision");
    spec.telemetry = None;
    let unit = unit_with_revision(&spec, "ns");
    assert!(unit.telemetry.is_none());
    assert_ne!(unit.revision, changed);
}

#[test]
fn status_round_trips_through_deployment_status() {
    let status = ClassRuntimeStatus {
        phase: Some(Phase::Degraded),
        observed_generation: Some(3),
        message: Some("echo: 0/1 ready".into()),
        functions: vec![FunctionRuntimeStatus {
            function_key: "echo".into(),
            ready: false,
            ready_replicas: 0,
            desired_replicas: 1,
            service: Some("record-echo".into()),
            url: Some("http://record-echo.default.svc:8080".into()),
            message: Some("waiting".into()),
        }],
        nfr_recommendations: vec![ReplicaRecommendation {
            function_key: "echo".into(),
            current_replicas: 1,
            recommended_replicas: 2,
            reason: "cpu 90% > 70%".into(),
            observed_at: None,
            recommended_cpu: Some("250m".into()),
            recommended_memory: Some("192Mi".into()),
        }],
        ..Default::default()
    };
    let proto = deployment_status_to_proto("d", &status, Some(7));
    assert_eq!(proto.phase(), pb::Phase::Degraded);
    assert_eq!(proto.revision, 7);
    assert_eq!(phase_from_proto(proto.phase()), status.phase);
    assert_eq!(functions_status_from_proto(&proto), status.functions);
    assert_eq!(
        recommendation_from_proto(&proto.recommendations[0]),
        status.nfr_recommendations[0]
    );
}

fn mk_valid_unit() -> pb::DeploymentUnit {
    unit_from_runtime_spec(&mk_runtime_spec())
}

#[test]
fn invalid_units_name_the_field_at_fault() {
    type Breakage = Box<dyn Fn(&mut pb::DeploymentUnit)>;
    let cases: Vec<(&str, Breakage)> = vec![
        ("deployment_unit.id", Box::new(|u| u.id.clear())),
        (
            "deployment_unit.package_name",
            Box::new(|u| u.package_name = " ".into()),
        ),
        (
            "deployment_unit.class_key",
            Box::new(|u| u.class_key = "1bad".into()),
        ),
        (
            "deployment_unit.functions[0].function_key",
            Box::new(|u| u.functions[0].function_key = "a b".into()),
        ),
        (
            "deployment_unit.functions[1].function_key",
            Box::new(|u| u.functions[1].function_key = "echo".into()),
        ),
        (
            "deployment_unit.functions[0].provision_config.container_image",
            Box::new(|u| {
                u.functions[0]
                    .provision_config
                    .as_mut()
                    .unwrap()
                    .container_image
                    .clear()
            }),
        ),
        (
            "deployment_unit.functions[1].provision_config.wasm_module_url",
            Box::new(|u| {
                u.functions[1]
                    .provision_config
                    .as_mut()
                    .unwrap()
                    .wasm_module_url
                    .clear()
            }),
        ),
        (
            "deployment_unit.functions[0].provision_config.min_scale",
            Box::new(|u| u.functions[0].provision_config.as_mut().unwrap().min_scale = 9),
        ),
        (
            "deployment_unit.functions[0].provision_config.port",
            Box::new(|u| u.functions[0].provision_config.as_mut().unwrap().port = 70000),
        ),
        (
            "deployment_unit.functions[0].function_type",
            Box::new(|u| u.functions[0].function_type = 99),
        ),
        (
            "deployment_unit.template",
            Box::new(|u| u.template = "lambda".into()),
        ),
        (
            "deployment_unit.nfr_requirements.availability",
            Box::new(|u| u.nfr_requirements.as_mut().unwrap().availability = Some(1.5)),
        ),
        (
            "deployment_unit.odgm.log_level",
            Box::new(|u| u.odgm.as_mut().unwrap().log_level = "debug,h2=loud".into()),
        ),
        (
            "deployment_unit.enforcement_mode",
            Box::new(|u| u.enforcement_mode = 42),
        ),
        (
            "deployment_unit.telemetry.sampling_rate",
            Box::new(|u| u.telemetry.as_mut().unwrap().sampling_rate = Some(1.5)),
        ),
        (
            "deployment_unit.telemetry.resource_attributes.bad key",
            Box::new(|u| {
                u.telemetry
                    .as_mut()
                    .unwrap()
                    .resource_attributes
                    .insert("bad key".into(), "v".into());
            }),
        ),
        (
            "deployment_unit.telemetry.service_name",
            Box::new(|u| u.telemetry.as_mut().unwrap().service_name = " x".into()),
        ),
    ];
    for (field, break_it) in cases {
        let mut unit = mk_valid_unit();
        break_it(&mut unit);
        let err = runtime_spec_from_unit(&unit).expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert!(!err.message.is_empty());
    }
}
