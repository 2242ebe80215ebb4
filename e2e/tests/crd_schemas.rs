//! The CRDs against the real hub and spoke API servers: they install, the samples apply,
//! kubectl shows useful output, and every kind of mistake is rejected with a message that
//! names the field and the problem.
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Resource};
use oaas_crds::{ClassRuntime, OClassDeployment, OCluster, OPackage};
use oaas_e2e::{
    TestNamespace, client_for, hub_context, install_all_crds, kubectl, repo_path, spoke_contexts,
};
use serde_json::{Value, json};

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn samples_apply_and_kubectl_shows_them() -> anyhow::Result<()> {
    install_all_crds().await?;
    let hub = hub_context();
    let ns = TestNamespace::create(&client_for(&hub).await?, "samples").await?;
    for sample in ["package.yaml", "classdeployment.yaml"] {
        let path = repo_path(&format!("manifests/samples/{sample}"));
        kubectl(
            &hub,
            &["apply", "-n", &ns.name, "-f", path.to_str().unwrap()],
        )?;
    }
    let clusters = repo_path("manifests/samples/clusters.yaml");
    kubectl(
        &hub,
        &[
            "apply",
            "--dry-run=server",
            "-f",
            clusters.to_str().unwrap(),
        ],
    )?;

    let deployments = kubectl(&hub, &["get", "classdeployments", "-n", &ns.name])?;
    for column in [
        "NAME", "PACKAGE", "CLASS", "CLUSTERS", "PHASE", "AGE", "record", "example",
    ] {
        assert!(
            deployments.contains(column),
            "{column} missing from:\n{deployments}"
        );
    }
    let everything = kubectl(&hub, &["get", "oaas", "-n", &ns.name])?;
    assert!(
        everything.contains("opackage.oaas.io/example"),
        "{everything}"
    );
    assert!(
        everything.contains("classdeployment.oaas.io/record"),
        "{everything}"
    );

    let explain = kubectl(&hub, &["explain", "opackage.spec.classes"])?;
    for text in [
        "functionBindings",
        "stateSpec",
        "Functions callable on objects of this class",
    ] {
        assert!(explain.contains(text), "{text} missing from:\n{explain}");
    }
    ns.delete().await?;
    Ok(())
}

fn mk_package(spec: Value) -> Value {
    json!({"apiVersion": "oaas.io/v1alpha1", "kind": "OPackage", "metadata": {"name": "bad"}, "spec": spec})
}

fn mk_echo_package_with(function: Value) -> Value {
    mk_package(json!({
        "classes": [{"key": "Echo", "functionBindings": [{"name": "echo", "functionKey": "echo"}]}],
        "functions": [function]
    }))
}

fn mk_deployment(extra: Value) -> Value {
    let mut spec =
        json!({"package": "example", "classKey": "Record", "targetClusters": ["spoke-a"]});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({"apiVersion": "oaas.io/v1alpha1", "kind": "OClassDeployment", "metadata": {"name": "bad"}, "spec": spec})
}

fn mk_cluster(spec: Value) -> Value {
    json!({"apiVersion": "oaas.io/v1alpha1", "kind": "OCluster", "metadata": {"name": "bad-cluster"}, "spec": spec})
}

fn image(key: &str) -> Value {
    json!({"key": key, "functionType": "CUSTOM", "provisionConfig": {"containerImage": "img:1"}})
}

/// One mistake each, and the words the API server's answer must contain.
fn invalid_manifests() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        (
            "duplicate class keys",
            mk_package(json!({"classes": [{"key": "A"}, {"key": "A"}]})),
            vec!["spec.classes", "class keys must be unique"],
        ),
        (
            "duplicate function keys",
            mk_package(json!({"functions": [image("f"), image("f")]})),
            vec!["spec.functions", "function keys must be unique"],
        ),
        (
            "binding to a function that does not exist",
            mk_package(json!({
                "classes": [{"key": "Echo", "functionBindings": [{"name": "run", "functionKey": "missing"}]}],
                "functions": [image("echo")]
            })),
            vec![
                "spec.classes",
                "every function binding must name a function of this package",
            ],
        ),
        (
            "binding to a package that is not a dependency",
            mk_package(json!({
                "classes": [{"key": "Echo", "functionBindings": [{"name": "run", "functionKey": "other.fn"}]}],
                "dependencies": ["base"]
            })),
            vec![
                "spec.classes",
                "<dependency>.<function> of a listed dependency",
            ],
        ),
        (
            "class key that cannot become a name",
            mk_package(json!({"classes": [{"key": "1st class"}]})),
            vec!["spec.classes[0].key", "must start with a letter"],
        ),
        (
            "function key with a slash",
            mk_package(json!({"functions": [image("a/b")]})),
            vec!["spec.functions[0].key", "must start with a letter"],
        ),
        (
            "CUSTOM function without an image",
            mk_echo_package_with(json!({"key": "echo", "functionType": "CUSTOM"})),
            vec![
                "spec.functions[0].provisionConfig",
                "CUSTOM function needs provisionConfig.containerImage",
            ],
        ),
        (
            "WASM function without a module",
            mk_echo_package_with(
                json!({"key": "echo", "functionType": "WASM", "provisionConfig": {}}),
            ),
            vec![
                "spec.functions[0].provisionConfig",
                "WASM function needs provisionConfig.wasmModuleUrl",
            ],
        ),
        (
            "minScale above maxScale",
            mk_echo_package_with(
                json!({"key": "echo", "provisionConfig": {"containerImage": "i", "minScale": 5, "maxScale": 2}}),
            ),
            vec![
                "spec.functions[0].provisionConfig",
                "minScale must not be greater than maxScale",
            ],
        ),
        (
            "unknown function type",
            mk_echo_package_with(json!({"key": "echo", "functionType": "PYTHON"})),
            vec![
                "spec.functions[0].functionType",
                "Unsupported value: \"PYTHON\"",
            ],
        ),
        (
            "port out of range",
            mk_echo_package_with(
                json!({"key": "echo", "provisionConfig": {"containerImage": "i", "port": 70000}}),
            ),
            vec![
                "spec.functions[0].provisionConfig.port",
                "less than or equal to 65535",
            ],
        ),
        (
            "availability above 1",
            mk_deployment(json!({"nfr": {"availability": 1.5}})),
            vec![
                "spec.nfr.availability",
                "availability must be greater than 0 and at most 1",
            ],
        ),
        (
            "availability of 0",
            mk_deployment(json!({"nfr": {"availability": 0}})),
            vec![
                "spec.nfr.availability",
                "availability must be greater than 0 and at most 1",
            ],
        ),
        (
            "zero partitions",
            mk_deployment(json!({"odgm": {"partitionCount": 0}})),
            vec!["spec.odgm.partitionCount", "greater than or equal to 1"],
        ),
        (
            "zero ODGM replicas",
            mk_deployment(json!({"odgm": {"replicaCount": 0}})),
            vec!["spec.odgm.replicaCount", "greater than or equal to 1"],
        ),
        (
            "an ODGM log filter that is not RUST_LOG syntax",
            mk_deployment(json!({"odgm": {"logLevel": "debug; rm -rf"}})),
            vec!["spec.odgm.logLevel", "e.g. info or debug,h2=info"],
        ),
        (
            "an unknown template for one cluster",
            mk_deployment(json!({"clusterTemplates": {"a": "lambda"}})),
            vec!["spec.clusterTemplates.a", "Unsupported value: \"lambda\""],
        ),
        (
            "a function's QoS availability above 1",
            mk_deployment(
                json!({"functions": [{"functionKey": "echo", "qosRequirement": {"availability": 2}}]}),
            ),
            vec![
                "spec.functions[0].qosRequirement.availability",
                "less than or equal to 1",
            ],
        ),
        (
            "unknown enforcement mode",
            mk_deployment(json!({"enforcementMode": "always"})),
            vec!["spec.enforcementMode", "Unsupported value: \"always\""],
        ),
        (
            "unknown template",
            mk_deployment(json!({"template": "lambda"})),
            vec!["spec.template", "Unsupported value: \"lambda\""],
        ),
        (
            "missing class key",
            json!({"apiVersion": "oaas.io/v1alpha1", "kind": "OClassDeployment", "metadata": {"name": "bad"},
                   "spec": {"package": "example", "targetClusters": ["a"]}}),
            vec!["spec.classKey", "Required value"],
        ),
        (
            "the same function overridden twice",
            mk_deployment(json!({"functions": [{"functionKey": "echo"}, {"functionKey": "echo"}]})),
            vec![
                "spec.functions",
                "each functionKey may be overridden only once",
            ],
        ),
        (
            "cluster endpoint without a scheme",
            mk_cluster(json!({"endpoint": "crm.example:8088"})),
            vec![
                "spec.endpoint",
                "endpoint must be an http:// or https:// URL",
            ],
        ),
        (
            "cluster availability above 1",
            mk_cluster(json!({"endpoint": "http://crm:8088", "availability": 2})),
            vec![
                "spec.availability",
                "availability must be greater than 0 and at most 1",
            ],
        ),
        (
            "telemetry sampling rate above 1",
            mk_deployment(json!({"telemetry": {"enabled": true, "samplingRate": 1.5}})),
            vec![
                "spec.telemetry.samplingRate",
                "samplingRate must be between 0 and 1",
            ],
        ),
        (
            "telemetry resource attribute key with a comma",
            mk_deployment(json!({"telemetry": {"resourceAttributes": {"a,b": "x"}}})),
            vec![
                "spec.telemetry.resourceAttributes",
                "keys must be 1-128 letters, digits",
            ],
        ),
        (
            "telemetry resource attribute under the platform's oaas. prefix",
            mk_deployment(json!({"telemetry": {"resourceAttributes": {"oaas.class": "x"}}})),
            vec![
                "spec.telemetry.resourceAttributes",
                "keys starting with 'oaas.' are set by the platform",
            ],
        ),
        (
            "telemetry service name with a leading space",
            mk_deployment(json!({"telemetry": {"serviceName": " shop"}})),
            vec!["spec.telemetry.serviceName", "printable ASCII"],
        ),
    ]
}

fn api_resource_of(kind: &str) -> ApiResource {
    match kind {
        "OPackage" => ApiResource::erase::<OPackage>(&()),
        "OClassDeployment" => ApiResource::erase::<OClassDeployment>(&()),
        "OCluster" => ApiResource::erase::<OCluster>(&()),
        other => panic!("no ApiResource for {other}"),
    }
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn invalid_manifests_are_rejected_with_a_message_naming_the_field() -> anyhow::Result<()> {
    install_all_crds().await?;
    let client = client_for(&hub_context()).await?;
    let ns = TestNamespace::create(&client, "invalid").await?;
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let cases = invalid_manifests();
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (what, manifest, expected) in cases {
        let object: DynamicObject = serde_json::from_value(manifest.clone())?;
        let resource = api_resource_of(manifest["kind"].as_str().unwrap());
        let api: Api<DynamicObject> = if manifest["kind"] == "OCluster" {
            Api::all_with(client.clone(), &resource)
        } else {
            Api::namespaced_with(client.clone(), &ns.name, &resource)
        };
        match api.create(&dry_run, &object).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) => {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|e| !status.message.contains(*e))
                    .collect();
                if status.code != 422 || !missing.is_empty() {
                    failures.push(format!(
                        "{what}: HTTP {} {:?} lacks {missing:?}",
                        status.code, status.message
                    ));
                }
            }
            Err(other) => failures.push(format!("{what}: {other}")),
        }
    }
    ns.delete().await?;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_class_runtime_keeps_its_deployment_id() -> anyhow::Result<()> {
    install_all_crds().await?;
    let spoke = spoke_contexts().remove(0);
    let client = client_for(&spoke).await?;
    let ns = TestNamespace::create(&client, "immutable-id").await?;
    let api = Api::<ClassRuntime>::namespaced(client.clone(), &ns.name);
    let mut runtime: ClassRuntime = serde_json::from_value(json!({
        "apiVersion": "oaas.io/v1alpha1", "kind": "ClassRuntime", "metadata": {"name": "record"},
        "spec": {"deploymentId": "d-1", "packageName": "example", "classKey": "Record"}
    }))?;
    let created = api.create(&PostParams::default(), &runtime).await?;
    runtime.metadata.resource_version = created.meta().resource_version.clone();
    runtime.spec.deployment_id = "d-2".into();
    let err = api
        .replace("record", &PostParams::default(), &runtime)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("deploymentId cannot be changed"),
        "{err}"
    );
    ns.delete().await?;
    Ok(())
}
