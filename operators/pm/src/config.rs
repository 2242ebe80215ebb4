//! Configuration from the environment. The seeds' CRM settings (`CRM_CLUSTERS_JSON`,
//! `CRM_CLUSTERS` + `CRM_CLUSTER_<NAME>_*`, `CRM_DEFAULT_URL`) describe spokes; the PM turns
//! them into OCluster resources at start-up. Invalid values stop start-up with a message.
use std::collections::{BTreeMap, HashMap};

pub use oaas_operator_common::env::ConfigError;
use oaas_operator_common::env::Env;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server_host: String,
    pub server_port: u16,
    /// Tokio worker threads (`SERVER_WORKERS`); unset, tokio's default (one per CPU).
    pub workers: Option<usize>,
    /// Namespace for Secrets made from env-configured credentials.
    pub namespace: String,
    /// Spokes to register, from the CRM_* variables (empty when none are set).
    pub clusters: Vec<ClusterConfig>,
    pub json_logs: bool,
    /// Only OPackages and OClassDeployments of this namespace (default: all namespaces).
    pub watch_namespace: Option<String>,
    /// Only OClusters with these labels, e.g. `fleet=eu` (default: all).
    pub cluster_selector: Option<String>,
    /// This hub's name in every spoke (`OAAS_PM_HUB_NAME`); unset, the uid of the hub's
    /// kube-system namespace, which is unique per cluster.
    pub hub_name: Option<String>,
    pub rest: crate::rest::Settings,
    /// How often a health check that changed nothing refreshes an OCluster's `lastChecked`
    /// (`CRM_HEALTH_REPORT_INTERVAL`); any change is written at once.
    pub health_report_interval: std::time::Duration,
    /// Lead through a Lease so that several replicas can run (`OAAS_PM_LEADER_ELECTION`).
    pub leader: Option<oaas_operator_common::leader::Settings>,
}

/// One spoke as the environment describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterConfig {
    pub name: String,
    pub url: String,
    pub timeout_seconds: u32,
    pub retry_attempts: u32,
    pub health_check_interval_seconds: u32,
    pub failure_threshold: u32,
    pub circuit_open_seconds: u32,
    pub api_key: Option<String>,
    pub tls: Option<TlsFiles>,
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsFiles {
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub insecure: bool,
}

/// A hub name is the first part of every deployment id (`<hub>/<namespace>/<name>`).
fn hub_name(env: &Env) -> Result<Option<String>, ConfigError> {
    let Some(name) = env.get("OAAS_PM_HUB_NAME") else {
        return Ok(None);
    };
    if let Err(problem) = oaas_crds::validation::check_dns_label(name) {
        return Err(env.error("OAAS_PM_HUB_NAME", name, &format!("{problem}, e.g. hub-eu")));
    }
    Ok(Some(name.to_string()))
}

fn error(variable: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(variable, problem)
}

/// Where each listed cluster's variables live: `CRM_CLUSTER_<NAME>_URL` and so on, `<NAME>`
/// being the cluster's name in upper case with other characters as `_`.
const CLUSTER_VARIABLES: &str = "CRM_CLUSTER_<NAME>_";

/// Settings every cluster inherits unless its own entry says otherwise.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    timeout: u32,
    retries: u32,
    interval: u32,
    threshold: u32,
    open: u32,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env::new(vars);
        check_storage(&env)?;
        let defaults = Defaults {
            timeout: env.number("CRM_DEFAULT_TIMEOUT", 30)?,
            retries: env.number("CRM_DEFAULT_RETRY_ATTEMPTS", 3)?,
            interval: env.number("CRM_HEALTH_CHECK_INTERVAL", 10)?,
            threshold: env.number("CRM_CIRCUIT_BREAKER_FAILURE_THRESHOLD", 3)?,
            open: env.number("CRM_CIRCUIT_BREAKER_TIMEOUT", 15)?,
        };
        let mut clusters = if let Some(json) = env.get("CRM_CLUSTERS_JSON") {
            from_json(json, defaults)?
        } else if let Some(list) = env.get("CRM_CLUSTERS") {
            from_list(&env, list, defaults)?
        } else if let Some(url) = env.get("CRM_DEFAULT_URL") {
            vec![ClusterConfig {
                name: "default".into(),
                url: url.into(),
                ..defaults.cluster()
            }]
        } else {
            Vec::new()
        };
        validate(&clusters)?;
        mark_default(&mut clusters, env.get("CRM_DEFAULT_CLUSTER"))?;
        Ok(Config {
            server_host: env.get_or("SERVER_HOST", "127.0.0.1").into(),
            server_port: env.number("SERVER_PORT", 8080)?,
            workers: workers(&env)?,
            namespace: env.get_or("OAAS_PM_NAMESPACE", "oaas-system").into(),
            clusters,
            json_logs: env.flag("OAAS_PM_LOG_JSON", false)?,
            watch_namespace: env.string("OAAS_PM_WATCH_NAMESPACE"),
            cluster_selector: env.string("OAAS_PM_CLUSTER_SELECTOR"),
            hub_name: hub_name(&env)?,
            rest: rest_settings(&env)?,
            health_report_interval: env.seconds("CRM_HEALTH_REPORT_INTERVAL", 60)?,
            leader: leader_settings(&env)?,
        })
    }
}

/// `SERVER_WORKERS`: a positive number of runtime worker threads, or unset.
fn workers(env: &Env) -> Result<Option<usize>, ConfigError> {
    let workers: Result<Option<usize>, _> = env.optional_number("SERVER_WORKERS");
    match workers {
        Ok(Some(0)) => Err(env.error(
            "SERVER_WORKERS",
            "0",
            "must be at least 1, or unset for one per CPU",
        )),
        Ok(workers) => Ok(workers),
        Err(e) => Err(ConfigError {
            problem: "must be a whole number of threads, at least 1, or unset for one per CPU"
                .into(),
            ..e
        }),
    }
}

/// `STORAGE_TYPE`: the seeds' PM kept its state in memory or etcd; this one keeps every
/// package and deployment as custom resources in the hub's API server, so only a value
/// meaning that is accepted.
fn check_storage(env: &Env) -> Result<(), ConfigError> {
    let Some(value) = env.get("STORAGE_TYPE") else {
        return Ok(());
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "hub" | "kubernetes" | "crd" => Ok(()),
        _ => Err(env.error(
            "STORAGE_TYPE",
            value,
            "this package manager stores everything as custom resources in the hub's \
             Kubernetes API server (its etcd is the store); there is no other storage to \
             choose: unset STORAGE_TYPE (or set it to hub)",
        )),
    }
}

fn leader_settings(
    env: &Env,
) -> Result<Option<oaas_operator_common::leader::Settings>, ConfigError> {
    if !env.flag("OAAS_PM_LEADER_ELECTION", false)? {
        return Ok(None);
    }
    let duration: u64 = env.number("OAAS_PM_LEASE_DURATION_SECS", 15)?;
    if duration < 3 {
        return Err(error(
            "OAAS_PM_LEASE_DURATION_SECS",
            "must be at least 3 seconds",
        ));
    }
    let namespace = env
        .get("OAAS_PM_LEASE_NAMESPACE")
        .or(env.get("OAAS_PM_NAMESPACE"))
        .unwrap_or("oaas-system");
    Ok(Some(oaas_operator_common::leader::Settings {
        namespace: namespace.into(),
        name: env.get_or("OAAS_PM_LEASE_NAME", "oaas-pm").into(),
        identity: oaas_operator_common::leader::default_identity(),
        duration: std::time::Duration::from_secs(duration),
    }))
}

fn rest_settings(env: &Env) -> Result<crate::rest::Settings, ConfigError> {
    let auth = match env.get_or("OAAS_PM_REST_AUTH", "none") {
        "none" => false,
        "kubernetes" => true,
        other => {
            return Err(error(
                "OAAS_PM_REST_AUTH",
                format!("{other:?} is not an option; use none or kubernetes"),
            ));
        }
    };
    let namespace = env.get_or("OAAS_PM_REST_NAMESPACE", "default");
    oaas_crds::validation::check_dns_label(namespace)
        .map_err(|p| error("OAAS_PM_REST_NAMESPACE", p))?;
    Ok(crate::rest::Settings {
        default_namespace: namespace.into(),
        watch_namespace: env.string("OAAS_PM_WATCH_NAMESPACE"),
        auth,
        body_limit: env.number("OAAS_PM_REST_BODY_LIMIT_BYTES", 1024 * 1024)?,
        timeout: env.seconds("OAAS_PM_REST_TIMEOUT_SECONDS", 30)?,
        health_cache_ttl: env.seconds("CRM_HEALTH_CACHE_TTL", 15)?,
    })
}

impl Defaults {
    fn cluster(self) -> ClusterConfig {
        ClusterConfig {
            timeout_seconds: self.timeout,
            retry_attempts: self.retries,
            health_check_interval_seconds: self.interval,
            failure_threshold: self.threshold,
            circuit_open_seconds: self.open,
            ..Default::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCluster {
    name: Option<String>,
    url: Option<String>,
    timeout: Option<u32>,
    retry_attempts: Option<u32>,
    api_key: Option<String>,
    tls: Option<JsonTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTls {
    enabled: Option<bool>,
    ca_cert: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
    insecure: Option<bool>,
}

/// Object form `{"prod": {"url": ...}}` or array form `[{"name": "prod", "url": ...}]`.
fn from_json(json: &str, defaults: Defaults) -> Result<Vec<ClusterConfig>, ConfigError> {
    const VAR: &str = "CRM_CLUSTERS_JSON";
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| error(VAR, format!("not valid JSON: {e}")))?;
    let entries: Vec<(String, serde_json::Value)> = match value {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let name = item.get("name").and_then(|n| n.as_str()).map(String::from);
                name.map(|n| (n, item))
                    .ok_or_else(|| error(VAR, format!("entry {i} has no \"name\"")))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(error(
                VAR,
                "must be an object of clusters by name, or an array of clusters",
            ));
        }
    };
    entries
        .into_iter()
        .map(|(name, value)| {
            let c: JsonCluster = serde_json::from_value(value)
                .map_err(|e| error(VAR, format!("cluster {name:?}: {e}")))?;
            if c.name.as_ref().is_some_and(|n| n != &name) {
                return Err(error(
                    VAR,
                    format!("cluster {name:?} has a different \"name\" inside"),
                ));
            }
            let tls = c.tls.and_then(|t| {
                (t.enabled != Some(false)).then(|| TlsFiles {
                    ca_cert: t.ca_cert,
                    client_cert: t.client_cert,
                    client_key: t.client_key,
                    insecure: t.insecure.unwrap_or(false),
                })
            });
            Ok(ClusterConfig {
                url: c
                    .url
                    .ok_or_else(|| error(VAR, format!("cluster {name:?} has no \"url\"")))?,
                timeout_seconds: c.timeout.unwrap_or(defaults.timeout),
                retry_attempts: c.retry_attempts.unwrap_or(defaults.retries),
                api_key: c.api_key,
                tls,
                name,
                ..defaults.cluster()
            })
        })
        .collect()
}

fn from_list(env: &Env, list: &str, defaults: Defaults) -> Result<Vec<ClusterConfig>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let cluster = env.scope(CLUSTER_VARIABLES, name);
            let url = cluster.require(
                "URL",
                &format!("required for cluster {name:?} listed in CRM_CLUSTERS"),
            )?;
            let tls_files = TlsFiles {
                ca_cert: cluster.string("TLS_CA_CERT_PATH"),
                client_cert: cluster.string("TLS_CLIENT_CERT_PATH"),
                client_key: cluster.string("TLS_CLIENT_KEY_PATH"),
                insecure: cluster.flag("TLS_INSECURE", false)?,
            };
            // TLS is on when asked for, or inferred from any TLS_* setting unless turned off.
            let any_tls = tls_files != TlsFiles::default();
            let tls_on = cluster.optional_flag("TLS_ENABLED")?.unwrap_or(any_tls);
            Ok(ClusterConfig {
                name: name.into(),
                url: url.into(),
                timeout_seconds: cluster.number("TIMEOUT", defaults.timeout)?,
                retry_attempts: cluster.number("RETRY_ATTEMPTS", defaults.retries)?,
                api_key: cluster.string("API_KEY"),
                tls: tls_on.then_some(tls_files),
                ..defaults.cluster()
            })
        })
        .collect()
}

fn validate(clusters: &[ClusterConfig]) -> Result<(), ConfigError> {
    let mut seen = BTreeMap::new();
    for c in clusters {
        let valid = !c.name.is_empty()
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if !valid {
            return Err(error(
                "CRM cluster name",
                format!("{:?} must match [A-Za-z0-9_-]+", c.name),
            ));
        }
        if let Some(previous) = seen.insert(resource_name(&c.name), &c.name) {
            return Err(error(
                "CRM cluster name",
                format!("{:?} and {:?} name the same cluster", previous, c.name),
            ));
        }
        if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
            return Err(error(
                format!("url of cluster {:?}", c.name),
                format!("{:?} must start with http:// or https://", c.url),
            ));
        }
    }
    Ok(())
}

/// CRM_DEFAULT_CLUSTER if set and defined; else a cluster named `default`; else the first.
fn mark_default(
    clusters: &mut [ClusterConfig],
    requested: Option<&str>,
) -> Result<(), ConfigError> {
    let index = match requested {
        Some(name) => Some(
            clusters
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| {
                    error(
                        "CRM_DEFAULT_CLUSTER",
                        format!("{name:?} is not one of the configured clusters"),
                    )
                })?,
        ),
        None => clusters
            .iter()
            .position(|c| c.name == "default")
            .or((!clusters.is_empty()).then_some(0)),
    };
    if let Some(i) = index {
        clusters[i].default = true;
    }
    Ok(())
}

/// The OCluster name for a configured cluster: lowercase, `_` as `-`.
pub fn resource_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests;
