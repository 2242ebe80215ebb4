//! The REST facade of a PM on the hub: create throughput, and reads of a package list with
//! many packages present (requests/s, p50, p99), several clients at once.
use std::time::{Duration, Instant};

use futures::StreamExt;
use oaas_e2e::{Pm, RestClient, TestNamespace, client_for, hub_context, install_all_crds};
use serde_json::json;

use super::{Row, env_number, percentile, rss_mib};

fn mk_package(i: usize) -> serde_json::Value {
    json!({
        "name": format!("pkg-{i:04}"),
        "version": "1.0",
        "metadata": {"author": "bench", "tags": ["bench"]},
        "classes": [{"key": "C", "function_bindings": [{"name": "f", "function_key": "f"}]}],
        "functions": [{"key": "f", "provision_config": {"container_image": "img/f:1", "min_scale": 1}}]
    })
}

/// `clients` loops of GET `path` for `for_how_long`: (requests per second, sorted latencies).
async fn load(
    port: u16,
    path: &str,
    clients: usize,
    for_how_long: Duration,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}{path}");
    let started = Instant::now();
    let workers = (0..clients).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < for_how_long {
                let sent = Instant::now();
                let response = http.get(&url).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "GET {url}: {}",
                    response.status()
                );
                response.bytes().await?;
                latencies.push(sent.elapsed());
            }
            Ok(latencies)
        })
    });
    let mut latencies = Vec::new();
    for worker in futures::future::join_all(workers).await {
        latencies.extend(worker??);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok((rate, latencies))
}

pub async fn bench_rest(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let packages = env_number("BENCH_REST_PACKAGES", 1000);
    let clients = env_number("BENCH_REST_CLIENTS", 8);
    let seconds = env_number("BENCH_REST_SECONDS", 10) as u64;
    install_all_crds().await?;
    let hub = hub_context();
    let ns = TestNamespace::create(&client_for(&hub).await?, "bench-rest").await?;
    // No spokes: this measures the facade, the hub and the caches.
    let pm = Pm::start_with(&hub, &ns.name, "e2e.oaas.io/none=none", &[]).await?;
    let rest = RestClient::new(pm.port);

    let started = Instant::now();
    let mut created = futures::stream::iter(0..packages)
        .map(|i| {
            let rest = rest.clone();
            async move { rest.post("/api/v1/packages", &mk_package(i)).await }
        })
        .buffer_unordered(clients);
    while let Some(answer) = created.next().await {
        let answer = answer?;
        anyhow::ensure!(answer.status.as_u16() == 201, "create: {:#}", answer.body);
    }
    let took = started.elapsed().as_secs_f64();
    rows.push(Row::new(
        "rest.create_packages_rps",
        format!("rest: POST /packages, {packages} packages, {clients} clients"),
        packages as f64 / took,
        "req/s",
    ));

    let window = Duration::from_secs(seconds);
    for (id, what, path) in [
        (
            "rest.list_packages",
            format!("GET /packages (all {packages})"),
            "/api/v1/packages".to_string(),
        ),
        (
            "rest.page_packages",
            format!("GET /packages?limit=20 ({packages} present)"),
            "/api/v1/packages?limit=20&offset=500".to_string(),
        ),
        (
            "rest.get_package",
            "GET /packages/{name}".to_string(),
            "/api/v1/packages/pkg-0500".to_string(),
        ),
    ] {
        let (rate, latencies) = load(pm.port, &path, clients, window).await?;
        rows.push(Row::new(
            format!("{id}_rps"),
            format!("rest: {what}, {clients} clients"),
            rate,
            "req/s",
        ));
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            rows.push(Row::new(
                format!("{id}_{label}_ms"),
                format!("rest: {what}, {label}"),
                percentile(&latencies, p),
                "ms",
            ));
        }
    }
    rows.push(Row::new(
        "rest.pm_rss_mib",
        format!("rest: PM resident memory with {packages} packages"),
        rss_mib(pm.process.pid()),
        "MiB",
    ));
    // The PM runs until the namespace is gone: it removes its finalizers.
    ns.delete_within(Duration::from_secs(600)).await?;
    drop(pm);
    Ok(())
}
