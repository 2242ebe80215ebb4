//! Upstream's OaaS CLI (`oprc`, pawissanutt/oaas-rs `tools/oprc-cli`) against the REST
//! facade: its request sequences replayed as it sends them — JSON as upstream's models
//! serialize it (explicit nulls, capitalised enums, a tracing filter in `odgm.log`,
//! `telemetry`, `env_templates`) — ending with the class running on the spokes and its
//! function Pods carrying the OpenTelemetry environment. Also: a deployment without targets
//! lands on the default cluster.
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use oaas_crds::ClassRuntime;
use oaas_e2e::{Answer, Fleet, RestClient, kubectl, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const COLLECTOR: &str = "http://otel-collector.observability:4317";

/// A package as `oprc package apply` posts it: upstream's serde output of the file.
fn upstream_package(clusters: &[String]) -> Value {
    json!({
        "name": "shop",
        "version": "0.2.0",
        "metadata": {"author": null, "description": null, "tags": ["upstream"],
                     "created_at": null, "updated_at": null},
        "classes": [{
            "key": "Record",
            "description": null,
            "state_spec": {"key_specs": [], "default_provider": "memory",
                           "consistency_model": "NONE", "persistent": false,
                           "serialization_format": "JSON"},
            "function_bindings": [{"name": "echo", "function_key": "echo",
                                   "access_modifier": "PUBLIC", "stateless": true,
                                   "parameters": []}],
            "disabled": false
        }],
        "functions": [{
            "key": "echo",
            "function_type": "CUSTOM",
            "description": "Echoes its input",
            "provision_config": {"container_image": "ghcr.io/oaas/echo-function:0.1.0",
                                 "port": 8080, "max_concurrency": 0, "need_http2": false,
                                 "cpu_request": null, "memory_request": null,
                                 "cpu_limit": null, "memory_limit": null,
                                 "min_scale": null, "max_scale": null},
            "config": {"HTTP_PORT": "8080"}
        }],
        "dependencies": [],
        "deployments": [upstream_deployment("records", clusters)],
        "disabled": false
    })
}

/// A deployment as `oprc deploy apply` posts it.
fn upstream_deployment(key: &str, clusters: &[String]) -> Value {
    let templates: serde_json::Map<String, Value> = clusters
        .iter()
        .map(|c| (c.clone(), json!("k8s_deployment")))
        .collect();
    json!({
        "key": key,
        "package_name": "shop",
        "class_key": "Record",
        "target_envs": clusters,
        "available_envs": [],
        "nfr_requirements": {"max_latency_ms": null, "min_throughput_rps": null,
                             "availability": null, "cpu_utilization_target": 0.7},
        "env_templates": templates,
        "functions": [{"function_key": "echo", "description": "Echoes",
                       "available_location": "cloud",
                       "qos_requirement": {"throughput": 50, "availability": 0.9},
                       "provision_config": null, "config": {}}],
        "condition": "PENDING",
        "odgm": {"collections": ["records"], "partition_count": 1, "replica_count": null,
                 "shard_type": null, "env_node_ids": {}, "log": "debug,h2=info"},
        "telemetry": {"enabled": true, "traces": true, "metrics": null, "logs": null,
                      "sampling_rate": 0.25, "service_name": null,
                      "resource_attributes": {"team": "shop"}},
        "status": null,
        "created_at": null,
        "updated_at": null
    })
}

fn expect(answer: &Answer, status: StatusCode, what: &str) {
    assert_eq!(answer.status, status, "{what}: {:#}", answer.body);
}

/// `oprc package apply F [--overwrite] [--apply-deployments]`: whether it wrote the package.
async fn package_apply(
    rest: &RestClient,
    package: &Value,
    overwrite: bool,
    apply_deployments: bool,
) -> anyhow::Result<bool> {
    let name = package["name"].as_str().unwrap_or_default();
    let existing = rest.get(&format!("/api/v1/packages/{name}")).await?;
    match existing.status {
        StatusCode::NOT_FOUND => {
            let created = rest.post("/api/v1/packages", package).await?;
            expect(&created, StatusCode::CREATED, "package apply (new)");
        }
        StatusCode::OK if overwrite => {
            let updated = rest
                .post(&format!("/api/v1/packages/{name}"), package)
                .await?;
            expect(&updated, StatusCode::OK, "package apply --overwrite");
        }
        StatusCode::OK => return Ok(false), // the CLI stops: "already exists"
        other => anyhow::bail!("GET package answered {other}: {:#}", existing.body),
    }
    if apply_deployments {
        for deployment in package["deployments"].as_array().into_iter().flatten() {
            let applied = rest.post("/api/v1/deployments", deployment).await?;
            assert!(
                applied.status.is_success(),
                "--apply-deployments after the package made them: {:#}",
                applied.body
            );
        }
    }
    Ok(true)
}

/// `oprc package delete F -d`.
async fn package_delete(rest: &RestClient, package: &Value) -> anyhow::Result<()> {
    for deployment in package["deployments"].as_array().into_iter().flatten() {
        let key = deployment["key"].as_str().unwrap_or_default();
        let deleted = rest.delete(&format!("/api/v1/deployments/{key}")).await?;
        assert!(
            deleted.status.is_success() || deleted.status == StatusCode::NOT_FOUND,
            "{:#}",
            deleted.body
        );
    }
    let name = package["name"].as_str().unwrap_or_default();
    let deleted = rest.delete(&format!("/api/v1/packages/{name}")).await?;
    assert!(deleted.status.is_success(), "{:#}", deleted.body);
    Ok(())
}

async fn wait_running(rest: &RestClient, key: &str) -> anyhow::Result<Value> {
    wait_for(
        &format!("{key} RUNNING"),
        Duration::from_secs(120),
        || async {
            let answer = rest.get(&format!("/api/v1/deployments/{key}")).await?;
            Ok((answer.body["condition"] == "RUNNING").then_some(answer.body))
        },
    )
    .await
}

/// The environment of the function Pods of runtime `records` in a spoke namespace.
async fn function_pod_env(client: &Client, ns: &str) -> anyhow::Result<Vec<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels("oaas.io/function=echo");
    wait_for("function Pods", Duration::from_secs(60), || async {
        let list = pods.list(&selector).await?;
        let env: Vec<(String, String)> = list
            .items
            .iter()
            .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter()))
            .flat_map(|c| c.env.iter().flatten())
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        Ok((!env.is_empty()).then_some(env))
    })
    .await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn upstream_cli_request_sequences_deploy_with_telemetry() -> anyhow::Result<()> {
    let crm_env = [("OPRC_CRM_OTEL_EXPORTER_ENDPOINT", COLLECTOR)];
    let fleet = Fleet::start("upstream-cli", &[], &crm_env).await?;
    let clusters = fleet.cluster_names();
    let rest = RestClient::new(fleet.pm.port);

    // oprc envs list
    let envs = rest.get("/api/v1/envs").await?;
    expect(&envs, StatusCode::OK, "envs list");
    let listed = envs.body.to_string();
    assert!(clusters.iter().all(|c| listed.contains(c)), "{listed}");

    // oprc package apply F --apply-deployments; again without --overwrite (the CLI stops);
    // again with it.
    let package = upstream_package(&clusters);
    assert!(package_apply(&rest, &package, false, true).await?);
    assert!(!package_apply(&rest, &package, false, true).await?);
    assert!(package_apply(&rest, &package, true, true).await?);

    // oprc deploy apply F --overwrite, twice: both succeed (upsert).
    let deployment = upstream_deployment("records", &clusters);
    for round in ["first", "second"] {
        let applied = rest.post("/api/v1/deployments", &deployment).await?;
        expect(&applied, StatusCode::OK, round);
    }

    let running = wait_running(&rest, "records").await?;
    assert_eq!(running["odgm"]["log"], "debug,h2=info", "{running:#}");
    assert_eq!(running["telemetry"]["sampling_rate"], 0.25, "{running:#}");
    assert_eq!(running["functions"][0]["available_location"], "cloud");
    assert_eq!(running["nfr_requirements"]["cpu_utilization_target"], 70.0);
    for spoke in &fleet.spokes {
        let env = function_pod_env(&spoke.client, &spoke.ns.name).await?;
        let value = |name: &str| {
            env.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(value("OTEL_EXPORTER_OTLP_ENDPOINT"), COLLECTOR, "{env:?}");
        assert_eq!(value("OTEL_TRACES_SAMPLER_ARG"), "0.25", "{env:?}");
        assert!(!value("OTEL_SERVICE_NAME").is_empty(), "{env:?}");
        assert!(
            value("OTEL_RESOURCE_ATTRIBUTES").contains("team=shop"),
            "{env:?}"
        );
    }

    // oprc package delete F -d: the class leaves every spoke.
    package_delete(&rest, &package).await?;
    for spoke in &fleet.spokes {
        let runtimes: Api<ClassRuntime> = Api::namespaced(spoke.client.clone(), &spoke.ns.name);
        wait_for("runtime removed", Duration::from_secs(60), || async {
            Ok(runtimes.get_opt("records").await?.is_none().then_some(()))
        })
        .await?;
    }
    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn a_deployment_without_targets_lands_on_the_default_cluster() -> anyhow::Result<()> {
    let fleet = Fleet::start("untargeted", &[], &[]).await?;
    let clusters = fleet.cluster_names();
    let rest = RestClient::new(fleet.pm.port);
    let default = &clusters[1];
    kubectl(
        &fleet.hub,
        &[
            "patch",
            "ocluster",
            default,
            "--type=merge",
            "-p",
            r#"{"spec":{"default":true}}"#,
        ],
    )?;
    let mut package = upstream_package(&[]);
    package["deployments"] = json!([]);
    assert!(package_apply(&rest, &package, false, false).await?);

    let mut deployment = upstream_deployment("anywhere", &[]);
    deployment["target_envs"] = Value::Null;
    deployment["env_templates"] = json!({});
    let created = rest.post("/api/v1/deployments", &deployment).await?;
    expect(&created, StatusCode::CREATED, "untargeted deploy");

    let running = wait_running(&rest, "anywhere").await?;
    assert_eq!(
        running["status"]["selected_envs"],
        json!([default]),
        "{running:#}"
    );
    let plan = kubectl(
        &fleet.hub,
        &[
            "get",
            "classdeployment",
            "anywhere",
            "-n",
            &fleet.ns.name,
            "-o",
            "jsonpath={.status.plan.reason}",
        ],
    )?;
    assert!(plan.starts_with("default cluster"), "{plan}");
    for spoke in &fleet.spokes {
        let runtimes: Api<ClassRuntime> = Api::namespaced(spoke.client.clone(), &spoke.ns.name);
        let held = runtimes.get_opt("anywhere").await?.is_some();
        assert_eq!(held, &spoke.cluster == default, "{}", spoke.cluster);
    }
    fleet.delete().await
}
