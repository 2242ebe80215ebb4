//! The REST facade of a PM on the real hub, with a CRM per spoke: every route, every error
//! class, REST and kubectl showing the same objects, and RBAC through TokenReview and
//! SubjectAccessReview.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use oaas_crds::cluster::ClusterHealth;
use oaas_e2e::{
    Answer, Crm, Fleet, Pm, RestClient, TestNamespace, client_for, grant, hub_context, image_of,
    install_all_crds, kubectl, kubectl_with_input, repo_path, wait_cluster_health, wait_for,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The sample OaaS package document, deployed to `clusters`.
fn sample_package(clusters: &[String]) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(repo_path("manifests/samples/oaas-package.yaml"))?;
    Ok(text.replace(
        "target_envs: [spoke-a, spoke-b]",
        &format!("target_envs: [{}]", clusters.join(", ")),
    ))
}

fn expect(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{:#}", answer.body);
    if !status.is_success() {
        assert!(
            answer.body["error"].is_string(),
            "JSON error body: {:#}",
            answer.body
        );
        assert!(answer.body["details"].is_array(), "{:#}", answer.body);
    }
}

fn names(answer: &Answer, field: &str) -> Vec<String> {
    answer
        .body
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_status(rest: &RestClient, key: &str, condition: &str) -> anyhow::Result<Value> {
    let last = std::sync::Mutex::new(Value::Null);
    let reached = wait_for(
        &format!("{key} {condition}"),
        Duration::from_secs(120),
        || async {
            let answer = rest
                .get(&format!("/api/v1/deployment-status/{key}"))
                .await?;
            *last.lock().unwrap() = answer.body.clone();
            Ok((answer.body["status"] == condition).then_some(answer.body))
        },
    )
    .await;
    reached.map_err(|e| anyhow::anyhow!("{e}; last status: {:#}", last.lock().unwrap()))
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn every_route_answers_and_rest_and_kubectl_show_the_same_objects() -> anyhow::Result<()> {
    let mut fleet = Fleet::start("rest", &[], &[]).await?;
    let (hub, ns) = (fleet.hub.clone(), fleet.ns.name.clone());
    let clusters = fleet.cluster_names();
    let rest = RestClient::new(fleet.pm.port);

    let health = rest.get("/health").await?;
    expect(&health, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    let openapi = rest.get("/api/v1/openapi.json").await?;
    expect(&openapi, StatusCode::OK);
    assert!(openapi.body["paths"]["/api/v1/packages/{name}"]["post"].is_object());
    assert!(openapi.body["paths"]["/api/v1/class-runtimes/{id}"]["get"].is_object());

    // A package file posted as YAML becomes an OPackage and an OClassDeployment.
    let created = rest
        .post_yaml("/api/v1/packages", &sample_package(&clusters)?)
        .await?;
    expect(&created, StatusCode::CREATED);
    assert_eq!(created.body["id"], "greeter");
    let version = kubectl(
        &hub,
        &[
            "get",
            "opackage",
            "greeter",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.version}",
        ],
    )?;
    assert_eq!(version, "1.0", "the YAML number is kept as written");
    let targets = kubectl(
        &hub,
        &[
            "get",
            "classdeployment",
            "greeter",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.targetClusters}",
        ],
    )?;
    assert!(targets.contains(&clusters[1]), "{targets}");

    let got = rest.get("/api/v1/packages/greeter").await?;
    expect(&got, StatusCode::OK);
    assert_eq!(got.body["functions"][0]["config"]["HTTP_PORT"], "8080");
    assert_eq!(got.body["deployments"][0]["key"], "greeter");
    let etag = got.headers["etag"].to_str()?.to_string();

    // The reverse: a package applied with kubectl is served by REST.
    let other = "apiVersion: oaas.io/v1alpha1\nkind: OPackage\nmetadata:\n  name: other\nspec:\n  metadata: {tags: [sample]}\n  disabled: true\n";
    kubectl_with_input(&hub, &["apply", "-n", &ns, "-f", "-"], other)?;
    let listed = wait_for(
        "kubectl's package in REST",
        Duration::from_secs(10),
        || async {
            let answer = rest.get("/api/v1/packages?name_pattern=oth*").await?;
            Ok((names(&answer, "name") == ["other"]).then_some(answer))
        },
    )
    .await?;
    assert_eq!(listed.body[0]["disabled"], true);
    let filtered = rest.get("/api/v1/packages?tags=sample,greeting").await?;
    assert_eq!(names(&filtered, "name"), ["greeter"]);
    let enabled = rest.get("/api/v1/packages?disabled=false").await?;
    assert_eq!(names(&enabled, "name"), ["greeter"]);
    let second = rest.get("/api/v1/packages?limit=1&offset=1").await?;
    assert_eq!(names(&second, "name"), ["other"]);

    // Client mistakes: the right status and a JSON body that says what to fix.
    expect(
        &rest
            .post_yaml("/api/v1/packages", &sample_package(&clusters)?)
            .await?,
        StatusCode::CONFLICT,
    );
    let invalid = rest
        .post(
            "/api/v1/packages",
            &json!({"name": "bad", "classes": [{"key": "1st"}]}),
        )
        .await?;
    expect(&invalid, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        invalid.body["details"][0]["field"], "spec.classes[0].key",
        "{:#}",
        invalid.body
    );
    assert!(
        invalid.body["error"]
            .as_str()
            .unwrap()
            .contains("must start with a letter")
    );
    let malformed = rest
        .send(
            Method::POST,
            "/api/v1/packages",
            Some(("application/json", "{\"name\": ".into())),
        )
        .await?;
    expect(&malformed, StatusCode::BAD_REQUEST);
    let mistyped = rest.post("/api/v1/packages", &json!({"name": "x", "functions": [{"key": "f", "provision_config": {"port": "http"}}]})).await?;
    expect(&mistyped, StatusCode::BAD_REQUEST);
    assert_eq!(
        mistyped.body["details"][0]["field"],
        "functions[0].provision_config.port"
    );
    let bad_template = rest
        .post(
            "/api/v1/packages",
            &json!({"name": "x", "deployments": [{"key": "d", "class_key": "C", "env_templates": {"a": "fast"}}]}),
        )
        .await?;
    expect(&bad_template, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad_template.body["details"][0]["field"],
        "deployments[0].env_templates.a"
    );
    let bad_telemetry = rest
        .post(
            "/api/v1/deployments",
            &json!({"key": "d", "package_name": "greeter", "class_key": "Greeter",
                    "telemetry": {"enabled": true, "sampling_rate": 2}}),
        )
        .await?;
    expect(&bad_telemetry, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad_telemetry.body["details"][0]["field"],
        "telemetry.sampling_rate"
    );
    expect(
        &rest
            .send(
                Method::POST,
                "/api/v1/packages",
                Some(("text/plain", "name: x".into())),
            )
            .await?,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    let huge = format!(
        "{{\"name\": \"x\", \"version\": \"{}\"}}",
        "9".repeat(2 * 1024 * 1024)
    );
    // On its own connection: the server answers 413 and closes it without reading the rest.
    expect(
        &RestClient::new(fleet.pm.port)
            .send(
                Method::POST,
                "/api/v1/packages",
                Some(("application/json", huge)),
            )
            .await?,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    expect(
        &rest.get("/api/v1/packages?limit=many").await?,
        StatusCode::BAD_REQUEST,
    );
    expect(
        &rest
            .get("/api/v1/packages?namespace=Not_A_Namespace")
            .await?,
        StatusCode::BAD_REQUEST,
    );
    expect(
        &rest.get("/api/v1/packages/missing").await?,
        StatusCode::NOT_FOUND,
    );
    expect(
        &rest.get("/api/v1/nothing-here").await?,
        StatusCode::NOT_FOUND,
    );
    expect(
        &rest
            .send(Method::PATCH, "/api/v1/packages/greeter", None)
            .await?,
        StatusCode::METHOD_NOT_ALLOWED,
    );
    let renamed = rest
        .post("/api/v1/packages/greeter", &json!({"name": "other"}))
        .await?;
    expect(&renamed, StatusCode::BAD_REQUEST);
    assert_eq!(
        kubectl(
            &hub,
            &[
                "get",
                "opackage",
                "greeter",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.version}"
            ]
        )?,
        "1.0",
        "nothing stored was touched"
    );

    // Update: a new image rolls out; a stale If-Match is a conflict.
    let updated_doc =
        sample_package(&clusters)?.replace("echo-function:0.1.0", "echo-function:0.1.1");
    let updated = rest
        .send(
            Method::PUT,
            "/api/v1/packages/greeter",
            Some(("application/yaml", updated_doc.clone())),
        )
        .await?;
    expect(&updated, StatusCode::OK);
    assert_eq!(updated.body["status"], "updated");
    let stale = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/v1/packages/greeter",
            fleet.pm.port
        ))
        .header("content-type", "application/yaml")
        .header("if-match", &etag)
        .body(updated_doc)
        .send()
        .await?;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    // The new image reaches every spoke before the state below is read: RUNNING seen while
    // a spoke had not taken the update yet would turn DEPLOYING under the test's feet.
    for spoke in &fleet.spokes {
        let spoke_deployments: Api<Deployment> =
            Api::namespaced(spoke.client.clone(), &spoke.ns.name);
        wait_for(
            &format!("echo-function 0.1.1 in {}", spoke.context),
            Duration::from_secs(60),
            || async {
                let d = spoke_deployments.get_opt("greeter-greeter-greet").await?;
                Ok(d.filter(|d| image_of(d).ends_with("echo-function:0.1.1"))
                    .map(drop))
            },
        )
        .await?;
    }

    // Deployments and their state.
    let status = wait_status(&rest, "greeter", "RUNNING").await?;
    assert_eq!(status["clusters_ready"], "2/2");
    expect(
        &rest
            .get(&format!(
                "/api/v1/deployment-status/greeter?cluster={}",
                clusters[0]
            ))
            .await?,
        StatusCode::OK,
    );
    expect(
        &rest
            .get(&format!("/api/v1/deployment-status/{ns}%2Fgreeter"))
            .await?,
        StatusCode::OK,
    );
    expect(
        &rest.get("/api/v1/deployment-status/missing").await?,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        names(
            &rest.get("/api/v1/deployments?package_name=greeter").await?,
            "key"
        ),
        ["greeter"]
    );
    assert_eq!(
        names(
            &rest
                .get(&format!(
                    "/api/v1/deployments?target_cluster={}",
                    clusters[1]
                ))
                .await?,
            "key"
        ),
        ["greeter"]
    );
    assert!(
        names(
            &rest.get("/api/v1/deployments?class_key=Nope").await?,
            "key"
        )
        .is_empty()
    );
    let one = wait_for(
        "GET /deployments/greeter RUNNING",
        Duration::from_secs(60),
        || async {
            let one = rest.get("/api/v1/deployments/greeter").await?;
            Ok((one.status == StatusCode::OK && one.body["condition"] == "RUNNING").then_some(one))
        },
    )
    .await?;
    assert_eq!(one.body["status"]["replication_factor"], 2);

    let eu = json!({"key": "greeter-eu", "package_name": "greeter", "class_key": "Greeter", "target_envs": [clusters[0]], "env_templates": {clusters[0].clone(): "dev"}});
    expect(
        &rest.post("/api/v1/deployments", &eu).await?,
        StatusCode::CREATED,
    );
    let spec = |path: &str| {
        let jsonpath = format!("jsonpath={{.spec.{path}}}");
        kubectl(
            &hub,
            &[
                "get",
                "classdeployment",
                "greeter-eu",
                "-n",
                &ns,
                "-o",
                &jsonpath,
            ],
        )
    };
    let template = || spec(&format!("clusterTemplates.{}", clusters[0]));
    assert_eq!(template()?, "dev");
    // The same key again is an update (upstream's `oprc deploy apply` upserts), here with
    // upstream's fractional CPU target; a stale If-Match is still refused.
    let mut again = eu.clone();
    again["env_templates"] = json!({clusters[0].clone(): "k8s_deployment"});
    again["nfr_requirements"] = json!({"cpu_utilization_target": 0.6});
    let updated = rest.post("/api/v1/deployments", &again).await?;
    expect(&updated, StatusCode::OK);
    assert_eq!(updated.body["status"], "updated", "{:?}", updated.body);
    assert_eq!(template()?, "k8s_deployment");
    assert_eq!(spec("nfr.cpuUtilizationTarget")?, "60");
    let stale = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/v1/deployments",
            fleet.pm.port
        ))
        .header("if-match", "\"1\"")
        .json(&eu)
        .send()
        .await?;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!(template()?, "k8s_deployment", "nothing changed");
    let mut bad = eu.clone();
    bad["key"] = "x".into();
    bad["class_key"] = "Nope".into();
    let no_class = rest.post("/api/v1/deployments", &bad).await?;
    expect(&no_class, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_class.body["details"][0]["field"], "class_key");
    bad["class_key"] = "Greeter".into();
    bad["target_envs"] = json!(["nowhere"]);
    expect(
        &rest.post("/api/v1/deployments", &bad).await?,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    bad["package_name"] = "missing".into();
    expect(
        &rest.post("/api/v1/deployments", &bad).await?,
        StatusCode::NOT_FOUND,
    );

    // Class runtimes, from the spokes.
    let runtimes = wait_for(
        "a runtime in each spoke",
        Duration::from_secs(30),
        || async {
            let answer = rest
                .get("/api/v1/class-runtimes?package_name=greeter&class_key=Greeter")
                .await?;
            let greeter: Vec<Value> = answer
                .body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r["id"] == format!("{ns}/greeter"))
                .collect();
            Ok((greeter.len() == 2).then_some(greeter))
        },
    )
    .await?;
    let mut where_: Vec<&str> = runtimes
        .iter()
        .map(|r| r["cluster_name"].as_str().unwrap())
        .collect();
    where_.sort();
    assert_eq!(where_, [clusters[0].as_str(), clusters[1].as_str()]);
    let one_cluster = rest
        .get(&format!(
            "/api/v1/class-runtimes?cluster={}&status=RUNNING",
            clusters[0]
        ))
        .await?;
    assert!(
        names(&one_cluster, "cluster_name")
            .iter()
            .all(|c| *c == clusters[0])
    );
    let record = rest
        .get(&format!(
            "/api/v1/deployment-records/greeter?cluster={}",
            clusters[1]
        ))
        .await?;
    expect(&record, StatusCode::OK);
    assert_eq!(record.body["cluster_name"], clusters[1].as_str());
    expect(
        &rest.get("/api/v1/class-runtimes/greeter").await?,
        StatusCode::OK,
    );
    expect(
        &rest.get("/api/v1/class-runtimes/missing").await?,
        StatusCode::NOT_FOUND,
    );
    expect(
        &rest.get("/api/v1/class-runtimes?cluster=nowhere").await?,
        StatusCode::NOT_FOUND,
    );

    // Clusters and catalog.
    let listed = rest.get("/api/v1/clusters").await?;
    // Upstream's CLI asks for environments: the same answers under /envs.
    let envs = rest.get("/api/v1/envs").await?;
    expect(&envs, StatusCode::OK);
    assert_eq!(names(&envs, "name"), clusters);
    let env_health = rest
        .get(&format!("/api/v1/envs/{}/health", clusters[0]))
        .await?;
    expect(&env_health, StatusCode::OK);
    expect(&rest.get("/api/v1/envs/health").await?, StatusCode::OK);
    assert_eq!(names(&listed, "name"), clusters);
    assert_eq!(listed.body[0]["health"]["status"], "Healthy");
    assert_eq!(
        rest.get("/api/v1/clusters/health")
            .await?
            .body
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let health = rest
        .get(&format!("/api/v1/clusters/{}/health", clusters[0]))
        .await?;
    let (nodes, _) = oaas_e2e::node_counts(&fleet.spokes[0].client).await?;
    assert_eq!(health.body["node_count"], nodes);
    expect(
        &rest.get("/api/v1/clusters/nowhere/health").await?,
        StatusCode::NOT_FOUND,
    );
    let classes = rest.get("/api/v1/classes?package=greeter").await?;
    assert_eq!(names(&classes, "key"), ["Greeter"]);
    assert_eq!(classes.body[0]["package_name"], "greeter");
    assert_eq!(
        names(&rest.get("/api/v1/functions").await?, "key"),
        ["Greeter.greet"]
    );

    // A spoke that does not answer: 503 when it is needed, a warning when a list misses it.
    let port_b = fleet.spokes[1].crm.port;
    fleet.spokes[1].crm.process.kill();
    wait_cluster_health(
        &fleet.clusters(),
        &clusters[1],
        ClusterHealth::Unreachable,
        Duration::from_secs(15),
    )
    .await?;
    let unavailable = rest
        .get(&format!("/api/v1/class-runtimes?cluster={}", clusters[1]))
        .await?;
    expect(&unavailable, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        unavailable.body["error"]
            .as_str()
            .unwrap()
            .contains(&clusters[1])
    );
    let partial = rest.get("/api/v1/class-runtimes").await?;
    expect(&partial, StatusCode::OK);
    let warning = partial
        .headers
        .get("warning")
        .map(|w| w.to_str().unwrap_or_default().to_string());
    assert!(
        warning.as_deref().is_some_and(|w| w.contains(&clusters[1])),
        "{warning:?}"
    );
    let spoke_b = &mut fleet.spokes[1];
    spoke_b.crm = Crm::start_on(port_b, &spoke_b.context, &spoke_b.ns.name, &[]).await?;
    wait_cluster_health(
        &fleet.clusters(),
        &clusters[1],
        ClusterHealth::Healthy,
        Duration::from_secs(30),
    )
    .await?;

    // Deleting: one cluster of a deployment, then deployments, then the package.
    let removed = rest
        .delete(&format!(
            "/api/v1/deployments/greeter?cluster={}",
            clusters[1]
        ))
        .await?;
    expect(&removed, StatusCode::OK);
    assert_eq!(
        kubectl(
            &hub,
            &[
                "get",
                "classdeployment",
                "greeter",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.targetClusters}"
            ]
        )?,
        format!("[\"{}\"]", clusters[0])
    );
    expect(
        &rest
            .delete(&format!(
                "/api/v1/deployments/greeter?cluster={}",
                clusters[0]
            ))
            .await?,
        StatusCode::CONFLICT,
    );
    let in_use = rest.delete("/api/v1/packages/greeter").await?;
    expect(&in_use, StatusCode::ACCEPTED);
    assert!(
        in_use.body["message"]
            .as_str()
            .unwrap()
            .contains("greeter-eu"),
        "{:#}",
        in_use.body
    );
    for key in ["greeter", "greeter-eu"] {
        let deleted = rest.delete(&format!("/api/v1/deployments/{key}")).await?;
        expect(&deleted, StatusCode::OK);
    }
    wait_for(
        "the package to go once unused",
        Duration::from_secs(60),
        || async {
            Ok(
                (rest.get("/api/v1/packages/greeter").await?.status == StatusCode::NOT_FOUND)
                    .then_some(()),
            )
        },
    )
    .await?;
    expect(
        &rest.delete("/api/v1/packages/other").await?,
        StatusCode::NO_CONTENT,
    );
    expect(
        &rest.delete("/api/v1/packages/other").await?,
        StatusCode::NOT_FOUND,
    );
    expect(
        &rest.delete("/api/v1/deployments/missing").await?,
        StatusCode::NOT_FOUND,
    );

    // Every request above was counted by route.
    let metrics = oaas_e2e::http_get(fleet.pm.port, "/metrics").await?;
    assert!(
        metrics.contains(
            "oaas_pm_http_requests_total{method=\"POST\",route=\"/api/v1/packages\",status=\"201\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/api/v1/class-runtimes\",status=\"503\""),
        "{metrics}"
    );

    fleet.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn with_auth_on_the_hubs_rbac_decides_what_a_token_may_do() -> anyhow::Result<()> {
    install_all_crds().await?;
    let hub = hub_context();
    let ns = TestNamespace::create(&client_for(&hub).await?, "rest-auth").await?;
    let pm = Pm::start_with(
        &hub,
        &ns.name,
        "e2e.oaas.io/none=none",
        &[("OAAS_PM_REST_AUTH", "kubernetes")],
    )
    .await?;
    let rest = RestClient::new(pm.port);
    kubectl_with_input(
        &hub,
        &["apply", "-f", "-"],
        &grant(&ns.name, "reader", "get, list"),
    )?;
    kubectl_with_input(
        &hub,
        &["apply", "-f", "-"],
        &grant(&ns.name, "writer", "get, list, create"),
    )?;
    kubectl_with_input(
        &hub,
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: nobody, namespace: {}}}\n",
            ns.name
        ),
    )?;
    let token = |account: &str| {
        kubectl(&hub, &["create", "token", account, "-n", &ns.name]).map(|t| t.trim().to_string())
    };
    let (reader, writer, nobody) = (
        rest.with_token(&token("reader")?),
        rest.with_token(&token("writer")?),
        rest.with_token(&token("nobody")?),
    );

    expect(&rest.get("/health").await?, StatusCode::OK);
    let anonymous = rest.get("/api/v1/packages").await?;
    expect(&anonymous, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
    expect(
        &rest
            .with_token("not-a-token")
            .get("/api/v1/packages")
            .await?,
        StatusCode::UNAUTHORIZED,
    );

    expect(&reader.get("/api/v1/packages").await?, StatusCode::OK);
    let denied = reader
        .post("/api/v1/packages", &json!({"name": "mine"}))
        .await?;
    expect(&denied, StatusCode::FORBIDDEN);
    let message = denied.body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("may not create opackages.oaas.io") && message.contains("reader"),
        "{message}"
    );
    expect(
        &nobody.get("/api/v1/packages").await?,
        StatusCode::FORBIDDEN,
    );
    expect(
        &reader.get("/api/v1/clusters").await?,
        StatusCode::FORBIDDEN,
    );
    expect(
        &writer
            .post("/api/v1/packages", &json!({"name": "mine"}))
            .await?,
        StatusCode::CREATED,
    );
    expect(&reader.get("/api/v1/packages/mine").await?, StatusCode::OK);
    expect(
        &writer.delete("/api/v1/packages/mine").await?,
        StatusCode::FORBIDDEN,
    );

    // POST /deployments upserts; when it turns out to update, the update verb is needed
    // too, which the writer lacks. (The OCluster only has to exist for the target check.)
    let cluster = format!("{}-auth", ns.name);
    let manifest = oaas_e2e::cluster_manifest(
        &cluster,
        &ns.name,
        ", e2e.oaas.io/none: none",
        "http://127.0.0.1:9",
        "",
    );
    kubectl_with_input(&hub, &["apply", "-f", "-"], &manifest)?;
    let deployment =
        json!({"key": "d", "package_name": "upsert", "class_key": "C", "target_envs": [cluster]});
    let package = json!({"name": "upsert",
        "classes": [{"key": "C", "function_bindings": [{"name": "f", "function_key": "f"}]}],
        "functions": [{"key": "f", "provision_config": {"container_image": "img/f:1"}}],
        "deployments": [deployment.clone()]});
    expect(
        &writer.post("/api/v1/packages", &package).await?,
        StatusCode::CREATED,
    );
    let refused = wait_for("the cluster cached", Duration::from_secs(10), || async {
        let answer = writer.post("/api/v1/deployments", &deployment).await?;
        Ok((answer.status != StatusCode::UNPROCESSABLE_ENTITY).then_some(answer))
    })
    .await?;
    expect(&refused, StatusCode::FORBIDDEN);
    let message = refused.body["error"].as_str().unwrap_or_default();
    assert!(message.contains("may not update"), "{message}");

    // The PM runs until the OCluster and the namespace are gone: it removes its finalizers
    // (the class deployment's once its unreachable cluster is deregistered).
    kubectl(&hub, &["delete", "ocluster", &cluster, "--timeout=30s"])?;
    ns.delete().await?;
    drop(pm);
    Ok(())
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn converted_package_files_apply_with_kubectl() -> anyhow::Result<()> {
    install_all_crds().await?;
    let hub = hub_context();
    let ns = TestNamespace::create(&client_for(&hub).await?, "convert").await?;
    let sample = repo_path("manifests/samples/oaas-package.yaml");
    let output = std::process::Command::new(oaas_e2e::binary("oaas-pm")?)
        .args(["convert", "--namespace", &ns.name])
        .arg(&sample)
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifests = String::from_utf8(output.stdout)?;
    let applied = kubectl_with_input(&hub, &["apply", "-f", "-"], &manifests)?;
    assert!(
        applied.contains("opackage.oaas.io/greeter created"),
        "{applied}"
    );
    assert!(
        applied.contains("oclassdeployment.oaas.io/greeter created"),
        "{applied}"
    );
    let functions = kubectl(
        &hub,
        &[
            "get",
            "opackage",
            "greeter",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.spec.functions[0].config.HTTP_PORT}",
        ],
    )?;
    assert_eq!(functions, "8080");

    // A broken file: the converter names the field and exits non-zero.
    let broken = std::env::temp_dir().join(format!("{}-broken.yaml", ns.name));
    std::fs::write(
        &broken,
        "name: x\nfunctions: [{key: f, provision_config: {max_scale: lots}}]\n",
    )?;
    let output = std::process::Command::new(oaas_e2e::binary("oaas-pm")?)
        .arg("convert")
        .arg(&broken)
        .output()?;
    std::fs::remove_file(&broken)?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("functions[0].provision_config.max_scale"),
        "{stderr}"
    );
    ns.delete().await
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn fifty_concurrent_writers_lose_no_update() -> anyhow::Result<()> {
    install_all_crds().await?;
    let hub = hub_context();
    let ns = TestNamespace::create(&client_for(&hub).await?, "rest-writers").await?;
    let pm = Pm::start_with(&hub, &ns.name, "e2e.oaas.io/none=none", &[]).await?;
    let rest = RestClient::new(pm.port);
    expect(
        &rest
            .post("/api/v1/packages", &json!({"name": "shared"}))
            .await?,
        StatusCode::CREATED,
    );
    // Once the PM's package controller is done with it, only the writers change it.
    kubectl(
        &hub,
        &[
            "wait",
            "-n",
            &ns.name,
            "--for=condition=Ready",
            "opackage/shared",
            "--timeout=30s",
        ],
    )?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/v1/packages/shared", pm.port);

    // All fifty read the same version and write it back: one wins, the others are told.
    let version = rest.get("/api/v1/packages/shared").await?.headers["etag"]
        .to_str()?
        .to_string();
    let writes = (0..50).map(|i| {
        let (http, url, version) = (http.clone(), url.clone(), version.clone());
        async move {
            let body = json!({"name": "shared", "metadata": {"tags": [format!("w{i}")]}});
            let response = http
                .put(&url)
                .header("if-match", version)
                .json(&body)
                .send()
                .await?;
            Ok::<_, anyhow::Error>(response.status())
        }
    });
    let statuses = futures::future::try_join_all(writes).await?;
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, conflicts), (1, 49), "{statuses:?}");

    // Each adds a function with read-modify-write, retrying on 409: every one lands.
    let writers = (0..50).map(|i| {
        let (http, url, rest) = (http.clone(), url.clone(), rest.clone());
        async move {
            for _ in 0..200 {
                let current = rest.get("/api/v1/packages/shared").await?;
                let version = current.headers["etag"].to_str()?.to_string();
                let mut doc = current.body.clone();
                doc["functions"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"key": format!("f{i}"), "function_type": "BUILTIN"}));
                let response = http
                    .put(&url)
                    .header("if-match", version)
                    .json(&doc)
                    .send()
                    .await?;
                match response.status() {
                    StatusCode::OK => return Ok(()),
                    StatusCode::CONFLICT => continue,
                    other => anyhow::bail!("writer {i}: {other}"),
                }
            }
            anyhow::bail!("writer {i} never got its turn")
        }
    });
    futures::future::try_join_all(writers).await?;
    let keys = kubectl(
        &hub,
        &[
            "get",
            "opackage",
            "shared",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.spec.functions[*].key}",
        ],
    )?;
    let functions: Vec<&str> = keys.split_whitespace().collect();
    for i in 0..50 {
        let key = format!("f{i}");
        assert!(
            functions.contains(&key.as_str()),
            "{key} was lost: {functions:?}"
        );
    }
    assert_eq!(functions.len(), 50, "each added once: {functions:?}");
    ns.delete().await?;
    drop(pm);
    Ok(())
}
