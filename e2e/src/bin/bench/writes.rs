//! API writes our components make for one class deployment on every spoke, from the API
//! servers' own request counters (`apiserver_request_total`), which machine noise does not
//! move. Only what our components write is counted: the OClassDeployment (less the bench's
//! create) and its package's status on the hub; ClassRuntimes, namespaces and the workloads'
//! main resources on the spokes (Kubernetes' own controllers write only their status
//! subresources there); and the events our operators report (listed, since the scheduler and
//! controllers report events too).
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use oaas_crds::{OClassDeployment, OPackage};
use oaas_e2e::wait_for;

use super::Row;
use super::pm::{Spoke, available, mk_deployment, mk_package};

/// Write verbs as the API server counts them (server-side apply is `APPLY`).
const WRITES: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

/// Resources whose writes on the hub are ours, as `resource/subresource` (`*`: any): the
/// class deployment, and its package's status, which names the deployments using it.
const HUB: [&str; 2] = ["classdeployments/*", "opackages/status"];
/// The same on a spoke.
const SPOKE: [&str; 5] = [
    "classruntimes/*",
    "namespaces/",
    "deployments/",
    "services/",
    "horizontalpodautoscalers/",
];

/// Write requests by `resource/subresource`, from a `/metrics` text.
pub fn writes_by_resource(metrics: &str) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"'))
                .unwrap_or_default()
        };
        if !WRITES.contains(&label("verb")) {
            continue;
        }
        let key = format!("{}/{}", label("resource"), label("subresource"));
        *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// How many of the writes counted in `before` → `after` fall under `ours`.
fn ours(ours: &[&str], before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> f64 {
    let counted = |key: &str| {
        ours.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(resource) => key.starts_with(resource),
            None => key == *pattern,
        })
    };
    after
        .iter()
        .filter(|(key, _)| counted(key))
        .map(|(key, n)| n - before.get(key).copied().unwrap_or(0.0))
        .sum()
}

async fn scrape(client: &Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(writes_by_resource(&client.request_text(request).await?))
}

/// Writes a second to `resources` (as in [`ours`]) on `client`'s API server over `window`.
pub async fn rate(client: &Client, resources: &[&str], window: Duration) -> anyhow::Result<f64> {
    let before = scrape(client).await?;
    tokio::time::sleep(window).await;
    let after = scrape(client).await?;
    Ok(ours(resources, &before, &after) / window.as_secs_f64())
}

/// Writes of the events our operators reported in `namespace` (a repeated event is one
/// write per occurrence).
async fn our_events(client: &Client, namespace: &str) -> anyhow::Result<f64> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|e| {
            e.reporting_controller
                .as_deref()
                .is_some_and(|c| c.starts_with("oaas-"))
        })
        .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1)) as f64)
        .sum())
}

/// Deploys one class to every spoke with nothing else in flight, waits until it is
/// Available and has settled, and reports the writes it took.
pub async fn per_deployment(
    rows: &mut Vec<Row>,
    hub: &Client,
    namespace: &str,
    spokes: &[Spoke],
    clusters: &[String],
) -> anyhow::Result<()> {
    const WARM_UP: usize = 999_998;
    const ONE: usize = 999_999;
    let packages: Api<OPackage> = Api::namespaced(hub.clone(), namespace);
    let deployments: Api<OClassDeployment> = Api::namespaced(hub.clone(), namespace);
    for i in [WARM_UP, ONE] {
        packages
            .create(&PostParams::default(), &mk_package(i)?)
            .await?;
    }
    // The first deployment in a namespace also claims the spoke namespaces: once per
    // namespace, not per deployment, so it is not counted.
    deployments
        .create(&PostParams::default(), &mk_deployment(WARM_UP, clusters)?)
        .await?;
    let warm_up = format!("d{WARM_UP}");
    wait_for(
        "the warm-up class deployment Available",
        Duration::from_secs(60),
        || async { Ok(available(&deployments.get(&warm_up).await?).then_some(())) },
    )
    .await?;
    let before_events = our_events(hub, namespace).await?;
    let hub_before = scrape(hub).await?;
    let mut spokes_before = Vec::new();
    for spoke in spokes {
        let events = our_events(&spoke.client, &spoke.ns.name).await?;
        spokes_before.push((scrape(&spoke.client).await?, events));
    }
    let deployment = mk_deployment(ONE, clusters)?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let name = format!("d{ONE}");
    let started = Instant::now();
    wait_for(
        "the measured class deployment Available",
        Duration::from_secs(60),
        || async { Ok(available(&deployments.get(&name).await?).then_some(())) },
    )
    .await?;
    // Let late writes (the last status, events) land: a counter that stops short of them
    // would flatter us.
    tokio::time::sleep(Duration::from_secs(3).max(started.elapsed())).await;

    let hub_writes = ours(&HUB, &hub_before, &scrape(hub).await?) - 1.0 // the bench's create
        + our_events(hub, namespace).await?
        - before_events;
    let mut spoke_writes = Vec::new();
    for (spoke, (before, events_before)) in spokes.iter().zip(&spokes_before) {
        let after = scrape(&spoke.client).await?;
        let events = our_events(&spoke.client, &spoke.ns.name).await? - events_before;
        spoke_writes.push(ours(&SPOKE, before, &after) + events);
    }
    let n = spokes.len();
    let total = hub_writes + spoke_writes.iter().sum::<f64>();
    rows.push(Row::new(
        format!("pm.api_writes_per_deployment_{n}_spokes"),
        format!("pm: API writes by our components for one class deployment on {n} spokes, events included"),
        total,
        "writes",
    ));
    rows.push(Row::new(
        "pm.api_writes_hub",
        "pm: … of which on the hub",
        hub_writes,
        "writes",
    ));
    rows.push(Row::new(
        "pm.api_writes_per_spoke",
        "pm: … on each spoke (mean)",
        spoke_writes.iter().sum::<f64>() / n.max(1) as f64,
        "writes",
    ));

    for name in [name, warm_up] {
        deployments.delete(&name, &DeleteParams::default()).await?;
        wait_for(
            &format!("{name} removed"),
            Duration::from_secs(60),
            || async { Ok(deployments.get_opt(&name).await?.is_none().then_some(())) },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_requests_are_counted_by_resource() {
        let metrics = r#"# HELP apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="oaas.io",resource="classruntimes",scope="resource",subresource="",verb="APPLY",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="oaas.io",resource="classruntimes",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="status",verb="PUT",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="",verb="GET",version="v1"} 40
"#;
        let counts = writes_by_resource(metrics);
        assert_eq!(counts["classruntimes/"], 3.0);
        assert_eq!(counts["classruntimes/status"], 2.0);
        assert_eq!(counts["deployments/status"], 7.0);
        assert!(!counts.contains_key("deployments/"), "reads are not writes");
        let none = BTreeMap::new();
        assert_eq!(
            ours(&SPOKE, &none, &counts),
            5.0,
            "not the controller's status"
        );
    }
}
