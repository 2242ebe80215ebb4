//! Benchmarks against real clusters. Prints one table and writes it as JSON
//! (`target/bench.json`, or the path in `BENCH_OUT`). Numbers are reported, never asserted.
//!
//!   bench [all]      everything below
//!   bench crm        the class runtime manager on the first spoke
//!   bench pm         the whole system: the PM on the hub, a CRM on each spoke
//!   bench rest       the PM's REST facade on the hub
//!   bench scale      100 spokes (CRM processes sharing the spoke API servers), 1,000
//!                    class deployments on 3 spokes each, one CRM with 10,000 runtimes
//!   bench scale pm   several groups (run in the order above)
//!
//! Sizes come from the environment: `BENCH_CRM_UNITS` (latency samples, default 200),
//! `BENCH_CRM_RUNTIMES` (ClassRuntimes for the memory figure, default 2000),
//! `BENCH_PM_SAMPLES` (latency samples, default 50) and `BENCH_PM_DEPLOYMENTS` (class
//! deployments for the scale figure, default 500), `BENCH_REST_PACKAGES` (default 1000),
//! `BENCH_REST_CLIENTS` (concurrent clients, default 8), `BENCH_REST_SECONDS` (per read
//! measure, default 10), `BENCH_SCALE_SPOKES` (default 100), `BENCH_SCALE_DEPLOYMENTS`
//! (default 1000), `BENCH_SCALE_SAMPLES` (latency samples, default 50) and
//! `BENCH_SCALE_RUNTIMES` (one CRM's ClassRuntimes, default 10000).
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use oaas_crds::ClassRuntime;
use oaas_e2e::{Crm, TestNamespace, client_for, install_all_crds, spoke_contexts, wait_for};
use oaas_proto::deployment::deployment_service_client::DeploymentServiceClient;
use oaas_proto::deployment::{self as pb};
use oaas_proto::package::{FunctionType, ProvisionConfig};
use serde_json::json;

#[path = "bench/direct_sync.rs"]
mod direct_sync;
#[path = "bench/pm.rs"]
mod pm;
#[path = "bench/rest.rs"]
mod rest;
#[path = "bench/scale.rs"]
mod scale;
#[path = "bench/writes.rs"]
mod writes;

pub struct Row {
    /// Stable across runs and sizes' defaults, e.g. `pm.apply_p99_ms_inflight1`: what
    /// dashboards and comparisons key on (the name may change wording).
    id: String,
    name: String,
    value: f64,
    unit: &'static str,
}

impl Row {
    /// A measured row, also logged at once (stderr) so a long run shows its progress and a
    /// run cut short keeps what it measured.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        let row = Self {
            id: id.into(),
            name: name.into(),
            value,
            unit,
        };
        eprintln!(
            "measured {} = {:.1} {} ({})",
            row.id, row.value, row.unit, row.name
        );
        row
    }
}

pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Adds p50 and p99 rows (ids `<id>_p50_ms_inflight<n>` and `_p99_`); returns the p50 in
/// milliseconds.
pub fn latencies(
    rows: &mut Vec<Row>,
    id: &str,
    what: &str,
    mut took: Vec<Duration>,
    in_flight: usize,
) -> f64 {
    took.sort();
    let n = took.len();
    let p50 = percentile(&took, 0.5);
    let flight = if in_flight > 1 {
        format!(", {in_flight} in flight")
    } else {
        String::new()
    };
    for (label, value) in [("p50", p50), ("p99", percentile(&took, 0.99))] {
        rows.push(Row::new(
            format!("{id}_{label}_ms_inflight{in_flight}"),
            format!("{what}, {label} ({n}{flight})"),
            value,
            "ms",
        ));
    }
    p50
}

/// The deployment id of bench runtime `i` in `ns`.
fn unit_id(ns: &str, i: usize) -> String {
    format!("bench/{ns}/bench-c{i}")
}

/// The unit of class deployment `bench-c<i>` of hub namespace `ns`, deployed into spoke
/// namespace `ns` (the CRM's); its runtime is named `bench-c<i>` after the id.
fn mk_unit(ns: &str, i: usize) -> pb::DeploymentUnit {
    pb::DeploymentUnit {
        id: unit_id(ns, i),
        namespace: ns.into(),
        package_name: "bench".into(),
        class_key: format!("C{i}"),
        functions: vec![pb::FunctionDeploymentSpec {
            function_key: "fn".into(),
            function_type: FunctionType::Custom as i32,
            provision_config: Some(ProvisionConfig {
                container_image: "img/fn:1".into(),
                min_scale: 1,
                max_scale: 1,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Resident memory of a process in MiB, from /proc.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// What `work` returns, and the largest resident memory (MiB) of process `pid` while it
/// ran, sampled every 100 ms: what a memory limit must allow, where [`rss_mib`] after the
/// work says what is kept.
pub async fn with_peak_rss_mib<T>(pid: u32, work: impl Future<Output = T>) -> (T, f64) {
    let sample = move || (rss_mib(pid) * 1024.0) as u64;
    let peak_kib = Arc::new(AtomicU64::new(sample()));
    let sampler = tokio::spawn({
        let peak_kib = peak_kib.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                peak_kib.fetch_max(sample(), Ordering::Relaxed);
            }
        }
    });
    let done = work.await;
    sampler.abort();
    peak_kib.fetch_max(sample(), Ordering::Relaxed);
    (done, peak_kib.load(Ordering::Relaxed) as f64 / 1024.0)
}

pub fn cache<K>(api: Api<K>) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let driver = tokio::spawn(async move {
        stream.for_each(|_| futures::future::ready(())).await;
    });
    (reader, driver)
}

async fn bench_crm(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let units = env_number("BENCH_CRM_UNITS", 200);
    let runtimes = env_number("BENCH_CRM_RUNTIMES", 2000).max(units);
    install_all_crds().await?;
    let context = spoke_contexts().remove(0);
    let client = client_for(&context).await?;
    let ns = TestNamespace::create(&client, "bench-crm").await?;
    // The CRM's own defaults, not the short re-check interval the tests use.
    let env = [
        ("OPRC_CRM_FEATURES_ODGM", "false"),
        ("OPRC_CRM_PROGRESS_REQUEUE_SECS", "10"),
    ];
    let crm = Crm::start(&context, &ns.name, &env).await?;
    let grpc = DeploymentServiceClient::connect(crm.endpoint.clone()).await?;
    let (deployments, d_driver) = cache(Api::<Deployment>::namespaced(client.clone(), &ns.name));
    let (services, s_driver) = cache(Api::<Service>::namespaced(client.clone(), &ns.name));
    deployments.wait_until_ready().await?;
    services.wait_until_ready().await?;

    // Deploy → every child applied, one unit at a time so queueing does not inflate latency.
    let mut took = Vec::with_capacity(units);
    for i in 0..units {
        let started = Instant::now();
        let unit = mk_unit(&ns.name, i);
        grpc.clone()
            .deploy(pb::DeployRequest {
                deployment_unit: Some(unit),
                expected_revision: None,
            })
            .await?;
        let child = format!("bench-c{i}-fn");
        loop {
            let deployment = deployments
                .get(&ObjectRef::new(&child).within(&ns.name))
                .is_some();
            let service = services
                .get(&ObjectRef::new(&child).within(&ns.name))
                .is_some();
            if deployment && service {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{child} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(started.elapsed());
    }
    latencies(
        rows,
        "crm.deploy",
        "crm: Deploy → children applied",
        took,
        1,
    );

    // Memory with many ClassRuntimes: deploy the rest, wait until all reconciled.
    let took = fill(&grpc, &client, &ns.name, units..runtimes).await?;
    rows.push(Row::new(
        "crm.runtimes_reconciled_s",
        format!("crm: {runtimes} ClassRuntimes deployed and reconciled"),
        took.as_secs_f64(),
        "s",
    ));
    rows.push(Row::new(
        "crm.rss_mib",
        format!("crm: resident memory with {runtimes} ClassRuntimes"),
        rss_mib(crm.process.pid()),
        "MiB",
    ));
    // Over HTTP/2 every request and watch shares one connection (over HTTP/1.1, the client
    // keeps at most 8 idle ones after a burst).
    rows.push(Row::new(
        "crm.api_connections",
        format!("crm: connections to its API server after {runtimes} ClassRuntimes"),
        crm.process
            .outbound_connections(&[crm.port, crm.ops_port])? as f64,
        "connections",
    ));

    let (took, peak) = with_peak_rss_mib(
        crm.process.pid(),
        empty(&grpc, &client, &ns.name, 0..runtimes),
    )
    .await;
    rows.push(Row::new(
        "crm.runtimes_deleted_s",
        format!("crm: {runtimes} ClassRuntimes deleted (DeleteDeployment) and gone"),
        took?.as_secs_f64(),
        "s",
    ));
    rows.push(Row::new(
        "crm.rss_mib_peak_deleting",
        format!("crm: largest resident memory while its {runtimes} ClassRuntimes were deleted"),
        peak,
        "MiB",
    ));

    for driver in [d_driver, s_driver] {
        driver.abort();
    }
    ns.delete_within(emptying(runtimes)).await?;
    drop(crm);
    Ok(())
}

/// How long `runtimes` ClassRuntimes may take to go: 0.3 s each (one CRM goes 60 a second
/// with 2,000 and 24 a second with 10,000), never less than 10 minutes.
pub fn emptying(runtimes: usize) -> Duration {
    Duration::from_secs((runtimes as u64 * 3 / 10).max(600))
}

/// Makes the gRPC call `call(i)` for each bench runtime `i` of `range`, 32 at a time; the
/// first failure ends it.
async fn each_32_at_once<T, Call>(
    range: std::ops::Range<usize>,
    call: impl FnMut(usize) -> Call,
) -> Result<(), tonic::Status>
where
    Call: Future<Output = Result<T, tonic::Status>>,
{
    futures::stream::iter(range)
        .map(call)
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Deletes runtimes `range` of `namespace` through the CRM's DeleteDeployment, as the hub does
/// when their class deployments go, and waits until no ClassRuntime is left there; returns how
/// long that took. Deleting the namespace with thousands of runtimes in it instead leaves
/// them to the namespace controller, whose one `deletecollection` per kind then runs out of
/// the API server's time and is retried with backoff (10,000 runtimes: 941 gone in 7 minutes).
pub async fn empty(
    grpc: &DeploymentServiceClient<tonic::transport::Channel>,
    client: &kube::Client,
    namespace: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let count = range.len();
    each_32_at_once(range, |i| {
        let mut grpc = grpc.clone();
        let deployment_id = unit_id(namespace, i);
        async move {
            grpc.delete_deployment(pb::DeleteDeploymentRequest { deployment_id })
                .await
        }
    })
    .await?;
    let api = Api::<ClassRuntime>::namespaced(client.clone(), namespace);
    wait_for(
        &format!("the {count} ClassRuntimes of {namespace} to go"),
        emptying(count),
        || async {
            let left = api.list_metadata(&ListParams::default().limit(1)).await?;
            Ok(left.items.is_empty().then_some(()))
        },
    )
    .await?;
    Ok(started.elapsed())
}

/// Deploys units `range` into `namespace` through a CRM, 32 at a time, and waits until it
/// reconciled every ClassRuntime there; how long that took.
pub async fn fill(
    grpc: &DeploymentServiceClient<tonic::transport::Channel>,
    client: &kube::Client,
    namespace: &str,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    each_32_at_once(range.clone(), |i| {
        let mut grpc = grpc.clone();
        let unit = mk_unit(namespace, i);
        async move {
            grpc.deploy(pb::DeployRequest {
                deployment_unit: Some(unit),
                expected_revision: None,
            })
            .await
        }
    })
    .await?;
    let (store, driver) = cache(Api::<ClassRuntime>::namespaced(client.clone(), namespace));
    let reconciled = |r: &Arc<ClassRuntime>| {
        r.status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .is_some()
    };
    let done = wait_for(
        &format!("{} ClassRuntimes reconciled", range.end),
        Duration::from_secs(1800),
        || async {
            let count = store.state().iter().filter(|r| reconciled(r)).count();
            Ok((count >= range.end).then_some(()))
        },
    )
    .await;
    driver.abort();
    done.map(|()| started.elapsed())
}

fn print_and_save(rows: &[Row]) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(10);
    println!("\nbenchmarks on {cores} cores\n");
    let id_width = rows.iter().map(|r| r.id.len()).max().unwrap_or(10);
    println!(
        "{:width$}  {:>10}  {:6}  {:id_width$}",
        "measure", "value", "unit", "id"
    );
    for row in rows {
        println!(
            "{:width$}  {:>10.1}  {:6}  {:id_width$}",
            row.name, row.value, row.unit, row.id
        );
    }
    let json = json!({
        "cores": cores,
        "rows": rows.iter().map(|r| json!({"id": r.id, "name": r.name, "value": r.value, "unit": r.unit})).collect::<Vec<_>>(),
    });
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench.json".into());
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    println!("\nwritten to {out}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    const GROUPS: [&str; 4] = ["crm", "pm", "rest", "scale"];
    let mut asked: Vec<String> = std::env::args().skip(1).collect();
    if asked.is_empty() || asked.iter().any(|a| a == "all") {
        asked = GROUPS.iter().map(|g| g.to_string()).collect();
    }
    if let Some(unknown) = asked.iter().find(|a| !GROUPS.contains(&a.as_str())) {
        anyhow::bail!(
            "unknown benchmark {unknown:?}; use {} or all",
            GROUPS.join(", ")
        );
    }
    let mut rows = Vec::new();
    let mut outcome = Ok(());
    for group in GROUPS.iter().filter(|g| asked.iter().any(|a| a == *g)) {
        outcome = match *group {
            "crm" => bench_crm(&mut rows).await,
            "pm" => pm::bench_pm(&mut rows).await,
            "rest" => rest::bench_rest(&mut rows).await,
            _ => scale::bench_scale(&mut rows).await,
        };
        if outcome.is_err() {
            break;
        }
    }
    // A failed phase still leaves the rows measured before it.
    print_and_save(&rows)?;
    outcome
}
