//! A real Prometheus for the NFR tests, and a small exporter it scrapes: the exporter serves
//! the container metrics the kubelet's cAdvisor would (`container_cpu_usage_seconds_total`
//! growing at a chosen number of cores, `container_memory_working_set_bytes`), for pods the
//! test names, since kwok's fake kubelets serve none.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Process, free_port, http_status, wait_for};

/// Prometheus from the Debian package (`hack/bootstrap.sh` installs it), on loopback,
/// scraping `targets` every second, with its data in a temporary directory.
pub struct Prometheus {
    pub process: Process,
    pub port: u16,
    pub url: String,
    data: PathBuf,
}

impl Prometheus {
    pub async fn start(name: &str, targets: &[u16]) -> anyhow::Result<Self> {
        let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("prometheus is not installed: run hack/bootstrap.sh")?;
        let port = free_port();
        let data = std::env::temp_dir().join(format!("oaas-prometheus-{name}-{port}"));
        std::fs::create_dir_all(&data)?;
        let targets: Vec<String> = targets
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: containers\n    honor_labels: true\n    static_configs: [{{targets: [{}]}}]\n",
            targets.join(", ")
        );
        let config_file = data.join("prometheus.yml");
        std::fs::write(&config_file, config)?;
        let args = [
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", data.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::spawn(&binary, &args, &format!("prometheus-{name}"), &[])?;
        let log = process.log.display().to_string();
        wait_for(
            &format!("prometheus ready (log: {log})"),
            Duration::from_secs(30),
            || async { Ok((http_status(port, "/-/ready").await.ok() == Some(200)).then_some(())) },
        )
        .await?;
        Ok(Self {
            process,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data,
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[derive(Default)]
struct Container {
    cores: f64,
    cpu_seconds: f64,
    memory_bytes: f64,
    updated: Option<Instant>,
}

/// Serves container metrics for the pods set with [`Exporter::set`].
pub struct Exporter {
    pub port: u16,
    containers: Arc<Mutex<BTreeMap<(String, String), Container>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let containers: Arc<Mutex<BTreeMap<(String, String), Container>>> = Arc::default();
        let shared = containers.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let body = render(&shared);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                });
            }
        });
        Ok(Self {
            port,
            containers,
            server,
        })
    }

    /// From now on, `pod` in `namespace` uses `cores` of CPU and `memory_bytes` of memory.
    pub fn set(&self, namespace: &str, pod: &str, cores: f64, memory_bytes: f64) {
        let mut containers = self.containers.lock().unwrap();
        let container = containers
            .entry((namespace.to_string(), pod.to_string()))
            .or_default();
        advance(container);
        container.cores = cores;
        container.memory_bytes = memory_bytes;
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Counts the CPU seconds used since the last look.
fn advance(container: &mut Container) {
    let now = Instant::now();
    if let Some(then) = container.updated {
        container.cpu_seconds += container.cores * now.duration_since(then).as_secs_f64();
    }
    container.updated = Some(now);
}

fn render(containers: &Mutex<BTreeMap<(String, String), Container>>) -> String {
    let mut containers = containers.lock().unwrap();
    let mut cpu = String::from("# TYPE container_cpu_usage_seconds_total counter\n");
    let mut memory = String::from("# TYPE container_memory_working_set_bytes gauge\n");
    for ((namespace, pod), container) in containers.iter_mut() {
        advance(container);
        let labels = format!("namespace=\"{namespace}\",pod=\"{pod}\",container=\"function\"");
        cpu.push_str(&format!(
            "container_cpu_usage_seconds_total{{{labels}}} {}\n",
            container.cpu_seconds
        ));
        memory.push_str(&format!(
            "container_memory_working_set_bytes{{{labels}}} {}\n",
            container.memory_bytes
        ));
    }
    cpu + &memory
}
