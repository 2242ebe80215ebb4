//! Runs the project's binaries as real processes for end-to-end tests.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Path of a workspace binary built alongside the running executable: next to it (a bench
/// binary in `target/<profile>/`) or one level up (a test in `target/<profile>/deps/`).
/// `just test`, `just e2e` and `just bench` build the binaries first.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    let candidates = [Some(dir), dir.parent()];
    candidates
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "{name} is missing next to {}: run `cargo build --workspace --bins`",
                exe.display()
            )
        })
}

/// A free TCP port on loopback (bound, then released, so a child process can take it),
/// never one this process handed out before: the system may offer a port again as soon as
/// it is released, and two of a bench's 100 CRMs were once given the same one (the second
/// exited, and its readiness check was answered by the first).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().expect("port list lock");
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A running binary, killed when dropped. Its output goes to `target/e2e-logs/<name>.log`.
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    /// Starts one of the workspace's binaries.
    pub fn start(
        binary_name: &str,
        log_name: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::spawn(&binary(binary_name)?, &[], log_name, env)
    }

    /// Starts any program; its log goes next to the workspace binaries' logs.
    pub fn spawn(
        path: &std::path::Path,
        args: &[&str],
        log_name: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let log_dir = binary("oaas-crm")?.parent().unwrap().join("e2e-logs");
        std::fs::create_dir_all(&log_dir)?;
        let log = log_dir.join(format!("{log_name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(path)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        Ok(Self { child, log })
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a Pod; returns whether the process exited in `within`.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<bool> {
        self.signal("TERM")?;
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(false)
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing until `resume`, so every
    /// request to it waits (a server far slower than any deadline).
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// SIGCONT: a paused process goes on, and answers what queued up meanwhile.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} {} failed", self.child.id());
        Ok(())
    }

    /// Whether the process is still running (it has neither exited nor been killed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Established TCP connections the process opened, i.e. whose local port is none of
    /// its `listening` ones: for a CRM, those to its API server.
    pub fn outbound_connections(&self, listening: &[u16]) -> anyhow::Result<usize> {
        let pid = self.pid();
        let mut sockets = std::collections::HashSet::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
            let target = std::fs::read_link(fd?.path())?;
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                sockets.insert(inode.to_string());
            }
        }
        let mut count = 0;
        for table in ["tcp", "tcp6"] {
            let table = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))?;
            for line in table.lines().skip(1) {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(state), Some(inode)) =
                    (fields.get(1), fields.get(3), fields.get(9))
                else {
                    continue;
                };
                let port = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                let established = *state == "01";
                if established
                    && sockets.contains(*inode)
                    && port.is_some_and(|p| !listening.contains(&p))
                {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Waits until GET `path` on loopback `port` answers 200; fails at once if the process
    /// exits first ([`Exited`]).
    pub async fn until_serving(
        &mut self,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if http_status(port, path).await.ok() == Some(200) {
                return Ok(());
            }
            if !self.running() {
                return Err(Exited {
                    log: self.log.clone(),
                }
                .into());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {path} on port {port} (log: {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A server process exited before it served.
#[derive(Debug)]
pub struct Exited {
    pub log: PathBuf,
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exited before serving (log: {})", self.log.display())
    }
}

impl std::error::Error for Exited {}

impl Exited {
    fn port_taken(&self) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains("Address already in use"))
    }
}

/// Starts a server on new free ports until it binds them: a port found free can be taken
/// (by any process's outgoing connection) before the server binds it, and it then exits.
async fn on_free_ports<T, F, Fut>(mut start: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    for _ in 1..3 {
        match start().await {
            Err(e) if e.downcast_ref::<Exited>().is_some_and(Exited::port_taken) => continue,
            done => return done,
        }
    }
    start().await
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HTTP status of GET `path` on loopback `port`, with a plain HTTP/1.1 request.
pub async fn http_status(port: u16, path: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")
}

/// Body of GET `path` on loopback `port`.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// A class runtime manager watching one namespace of one cluster. It serves plaintext
/// unless `extra_env` gives it TLS files (with `OPRC_CRM_PLAINTEXT=false`); its probes and
/// metrics are also on a plaintext `ops_port`.
pub struct Crm {
    pub process: Process,
    pub port: u16,
    pub ops_port: u16,
    pub endpoint: String,
}

impl Crm {
    /// Starts `oaas-crm` for `context`/`namespace` and waits until it is ready.
    pub async fn start(
        context: &str,
        namespace: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        on_free_ports(|| Self::start_on(free_port(), context, namespace, extra_env)).await
    }

    /// Starts on a given port, e.g. to bring back a CRM that was stopped.
    pub async fn start_on(
        port: u16,
        context: &str,
        namespace: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let ops_port = free_port();
        let mut env = vec![
            ("KUBE_CONTEXT", context.to_string()),
            ("OPRC_CRM_K8S_NAMESPACE", namespace.to_string()),
            ("OPRC_CRM_CLUSTER_NAME", context.to_string()),
            ("OPRC_CRM_BIND_ADDRESS", "127.0.0.1".to_string()),
            ("HTTP_PORT", port.to_string()),
            ("OPRC_CRM_PROGRESS_REQUEUE_SECS", "2".to_string()),
            ("OPRC_CRM_PLAINTEXT", "true".to_string()),
            ("OPRC_CRM_OPS_PORT", ops_port.to_string()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
        let process = Process::start("oaas-crm", &format!("crm-{context}-{namespace}"), &env)?;
        let mut crm = Self {
            process,
            port,
            ops_port,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        crm.process
            .until_serving(ops_port, "/readyz", Duration::from_secs(30))
            .await
            .context("oaas-crm")?;
        Ok(crm)
    }
}

/// A package manager on the hub, scoped to one namespace and to OClusters with one label.
pub struct Pm {
    pub process: Process,
    pub port: u16,
}

impl Pm {
    pub async fn start(
        context: &str,
        namespace: &str,
        cluster_selector: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(context, namespace, cluster_selector, &[]).await
    }

    /// Starts with more settings, e.g. `OAAS_PM_REST_AUTH`. REST requests default to
    /// `namespace`; returns once its caches are synced (`/health`), leading or not.
    pub async fn start_with(
        context: &str,
        namespace: &str,
        cluster_selector: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        on_free_ports(|| {
            Self::start_on(free_port(), context, namespace, cluster_selector, extra_env)
        })
        .await
    }

    async fn start_on(
        port: u16,
        context: &str,
        namespace: &str,
        cluster_selector: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut env = vec![
            ("KUBE_CONTEXT", context.to_string()),
            ("OAAS_PM_WATCH_NAMESPACE", namespace.to_string()),
            ("OAAS_PM_REST_NAMESPACE", namespace.to_string()),
            ("OAAS_PM_CLUSTER_SELECTOR", cluster_selector.to_string()),
            ("SERVER_PORT", port.to_string()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
        let mut process = Process::start("oaas-pm", &format!("pm-{namespace}"), &env)?;
        process
            .until_serving(port, "/health", Duration::from_secs(30))
            .await
            .context("oaas-pm")?;
        Ok(Self { process, port })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_port_is_handed_out_twice() {
        let mut ports: Vec<u16> = (0..500).map(|_| super::free_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 500);
    }
}
