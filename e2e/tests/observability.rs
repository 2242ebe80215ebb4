//! What an operator of the system watches: after a deployment flows through, the PM's and the
//! CRMs' /metrics carry the key series with real values, and JSON logs are JSON.
use std::time::Duration;

use oaas_e2e::{Fleet, RestClient, http_get, kubectl, kubectl_with_input};

/// The sum of every sample of `name` whose labels include all of `labels` (`key="value"`);
/// `None` when there is no such series.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| label_text.contains(l)))
                .then(|| value.parse().ok())
                .flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn positive(metrics: &str, name: &str, labels: &[&str]) {
    let value = sample(metrics, name, labels);
    assert!(
        value.is_some_and(|v| v > 0.0),
        "{name}{labels:?} = {value:?} in:\n{metrics}"
    );
}

#[tokio::test]
#[ignore = "needs the local clusters: run `just test`"]
async fn after_a_deployment_the_key_series_have_values_and_logs_are_json() -> anyhow::Result<()> {
    let fleet = Fleet::start("observability", &[("OAAS_PM_LOG_JSON", "true")], &[]).await?;
    let targets = fleet.cluster_names().join(", ");
    let manifests = format!(
        "apiVersion: oaas.io/v1alpha1\nkind: OPackage\nmetadata: {{name: obs}}\nspec:\n  classes: [{{key: C, functionBindings: [{{name: f, functionKey: f}}]}}]\n  functions: [{{key: f, provisionConfig: {{containerImage: img/f:1, minScale: 1, maxScale: 1}}}}]\n---\napiVersion: oaas.io/v1alpha1\nkind: OClassDeployment\nmetadata: {{name: obs}}\nspec: {{package: obs, classKey: C, targetClusters: [{targets}]}}\n"
    );
    let ns = &fleet.ns.name;
    kubectl_with_input(&fleet.hub, &["apply", "-n", ns, "-f", "-"], &manifests)?;
    let available = "--for=condition=Available";
    kubectl(
        &fleet.hub,
        &[
            "wait",
            "-n",
            ns,
            available,
            "classdeployment/obs",
            "--timeout=90s",
        ],
    )?;
    let listed = RestClient::new(fleet.pm.port)
        .get("/api/v1/deployments")
        .await?;
    assert_eq!(listed.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pm = http_get(fleet.pm.port, "/metrics").await?;
    for controller in ["oclassdeployment", "opackage", "ocluster"] {
        let label = format!("controller=\"{controller}\"");
        positive(&pm, "oaas_pm_reconciles_total", &[&label]);
        positive(&pm, "oaas_pm_reconcile_duration_seconds_count", &[&label]);
        let depth = sample(&pm, "oaas_pm_work_queue_depth", &[&label]);
        assert_eq!(depth, Some(0.0), "nothing waits once all is reconciled");
    }
    positive(
        &pm,
        "oaas_pm_http_requests_total",
        &["route=\"/api/v1/deployments\""],
    );
    positive(&pm, "oaas_pm_http_request_duration_seconds_count", &[]);
    for spoke in &fleet.spokes {
        let cluster = format!("cluster=\"{}\"", spoke.cluster);
        positive(&pm, "oaas_pm_cluster_healthy", &[&cluster]);
        positive(
            &pm,
            "oaas_pm_grpc_client_calls_total",
            &[&cluster, "method=\"Deploy\"", "code=\"Ok\""],
        );
        positive(&pm, "oaas_pm_fanout_duration_seconds_count", &[&cluster]);

        let crm = http_get(spoke.crm.ops_port, "/metrics").await?;
        positive(&crm, "oaas_crm_reconciles_total", &[]);
        positive(&crm, "oaas_crm_reconcile_duration_seconds_count", &[]);
        positive(&crm, "oaas_crm_grpc_requests_total", &["method=\"Deploy\""]);
        positive(
            &crm,
            "oaas_crm_grpc_request_duration_seconds_count",
            &["method=\"Deploy\""],
        );
        let depth = sample(
            &crm,
            "oaas_crm_work_queue_depth",
            &["controller=\"classruntime\""],
        );
        assert_eq!(depth, Some(0.0), "{}: nothing waits", spoke.context);
    }

    let log = std::fs::read_to_string(&fleet.pm.process.log)?;
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let entry: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("a log line that is not JSON ({e}): {line}"))?;
        assert!(
            entry.get("level").is_some() && entry.get("timestamp").is_some(),
            "{line}"
        );
    }

    fleet.delete().await
}
