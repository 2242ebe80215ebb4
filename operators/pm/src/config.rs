//! Configuration from the environment. The seeds' CRM settings (`CRM_CLUSTERS_JSON`,
//! `CRM_CLUSTERS` + `CRM_CLUSTER_<NAME>_*`, `CRM_DEFAULT_URL`) describe spokes; the PM turns
//! them into OCluster resources at start-up. Invalid values stop start-up with a message.
use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server_host: String,
    pub server_port: u16,
    /// Namespace for Secrets made from env-configured credentials.
    pub namespace: String,
    /// Spokes to register, from the CRM_* variables (empty when none are set).
    pub clusters: Vec<ClusterConfig>,
    pub json_logs: bool,
    /// Only OPackages and OClassDeployments of this namespace (default: all namespaces).
    pub watch_namespace: Option<String>,
    /// Only OClusters with these labels, e.g. `fleet=eu` (default: all).
    pub cluster_selector: Option<String>,
    pub rest: crate::rest::Settings,
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

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

fn error(variable: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.into(),
        problem: problem.into(),
    }
}

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
        let env = Env(vars);
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
            server_host: env.get("SERVER_HOST").unwrap_or("127.0.0.1").into(),
            server_port: env.number("SERVER_PORT", 8080)?,
            namespace: env.get("OAAS_PM_NAMESPACE").unwrap_or("oaas-system").into(),
            clusters,
            json_logs: env.flag("OAAS_PM_LOG_JSON", false)?,
            watch_namespace: env.get("OAAS_PM_WATCH_NAMESPACE").map(String::from),
            cluster_selector: env.get("OAAS_PM_CLUSTER_SELECTOR").map(String::from),
            rest: rest_settings(&env)?,
            leader: leader_settings(&env)?,
        })
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
        name: env.get("OAAS_PM_LEASE_NAME").unwrap_or("oaas-pm").into(),
        identity: oaas_operator_common::leader::default_identity(),
        duration: std::time::Duration::from_secs(duration),
    }))
}

fn rest_settings(env: &Env) -> Result<crate::rest::Settings, ConfigError> {
    let auth = match env.get("OAAS_PM_REST_AUTH").unwrap_or("none") {
        "none" => false,
        "kubernetes" => true,
        other => {
            return Err(error(
                "OAAS_PM_REST_AUTH",
                format!("{other:?} is not an option; use none or kubernetes"),
            ));
        }
    };
    let namespace = env.get("OAAS_PM_REST_NAMESPACE").unwrap_or("default");
    oaas_crds::validation::check_dns_label(namespace)
        .map_err(|p| error("OAAS_PM_REST_NAMESPACE", p))?;
    Ok(crate::rest::Settings {
        default_namespace: namespace.into(),
        watch_namespace: env.get("OAAS_PM_WATCH_NAMESPACE").map(String::from),
        auth,
        body_limit: env.number("OAAS_PM_REST_BODY_LIMIT_BYTES", 1024 * 1024)?,
        timeout: std::time::Duration::from_secs(env.number("OAAS_PM_REST_TIMEOUT_SECONDS", 30)?),
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

/// Variable prefix of a cluster: its name in upper case, other characters as `_`.
pub fn env_prefix(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CRM_CLUSTER_{upper}_")
}

fn from_list(env: &Env, list: &str, defaults: Defaults) -> Result<Vec<ClusterConfig>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let prefix = env_prefix(name);
            let var = |suffix: &str| format!("{prefix}{suffix}");
            let url = env.get(&var("URL")).ok_or_else(|| {
                error(
                    var("URL"),
                    format!("required for cluster {name:?} listed in CRM_CLUSTERS"),
                )
            })?;
            let tls_files = TlsFiles {
                ca_cert: env.get(&var("TLS_CA_CERT_PATH")).map(String::from),
                client_cert: env.get(&var("TLS_CLIENT_CERT_PATH")).map(String::from),
                client_key: env.get(&var("TLS_CLIENT_KEY_PATH")).map(String::from),
                insecure: env.flag(&var("TLS_INSECURE"), false)?,
            };
            // TLS is on when asked for, or inferred from any TLS_* setting unless turned off.
            let any_tls = tls_files != TlsFiles::default();
            let tls_on = env.optional_flag(&var("TLS_ENABLED"))?.unwrap_or(any_tls);
            Ok(ClusterConfig {
                name: name.into(),
                url: url.into(),
                timeout_seconds: env.number(&var("TIMEOUT"), defaults.timeout)?,
                retry_attempts: env.number(&var("RETRY_ATTEMPTS"), defaults.retries)?,
                api_key: env.get(&var("API_KEY")).map(String::from),
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

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn optional_flag(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("true" | "1" | "yes" | "on") => Ok(Some(true)),
            Some("false" | "0" | "no" | "off") => Ok(Some(false)),
            Some(other) => Err(error(name, format!("{other:?}: use true or false"))),
        }
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.optional_flag(name)?.unwrap_or(default))
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| error(name, format!("{raw:?}: must be a whole number in range"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn leader_election_is_off_unless_asked_and_its_lease_is_configurable() {
        assert_eq!(parse(&[]).unwrap().leader, None);
        let on = parse(&[
            ("OAAS_PM_LEADER_ELECTION", "true"),
            ("OAAS_PM_NAMESPACE", "ops"),
        ])
        .unwrap();
        let lease = on.leader.unwrap();
        assert_eq!(
            (lease.namespace.as_str(), lease.name.as_str()),
            ("ops", "oaas-pm")
        );
        assert_eq!(lease.duration, std::time::Duration::from_secs(15));
        let err = parse(&[
            ("OAAS_PM_LEADER_ELECTION", "true"),
            ("OAAS_PM_LEASE_DURATION_SECS", "1"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "OAAS_PM_LEASE_DURATION_SECS");
        let err = parse(&[("OAAS_PM_REST_AUTH", "basic")]).unwrap_err();
        assert_eq!(err.variable, "OAAS_PM_REST_AUTH");
        let err = parse(&[("OAAS_PM_REST_NAMESPACE", "Not_Valid")]).unwrap_err();
        assert_eq!(err.variable, "OAAS_PM_REST_NAMESPACE");
    }

    fn names(config: &Config) -> Vec<&str> {
        config.clusters.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn nothing_set_means_no_clusters_and_the_default_address() {
        let config = parse(&[]).unwrap();
        assert!(config.clusters.is_empty());
        assert_eq!(
            (config.server_host.as_str(), config.server_port),
            ("127.0.0.1", 8080)
        );
    }

    #[test]
    fn default_url_makes_one_default_cluster() {
        let config = parse(&[
            ("CRM_DEFAULT_URL", "http://crm:8088"),
            ("CRM_DEFAULT_TIMEOUT", "7"),
        ])
        .unwrap();
        assert_eq!(names(&config), ["default"]);
        assert!(config.clusters[0].default);
        assert_eq!(config.clusters[0].timeout_seconds, 7);
    }

    #[test]
    fn json_object_form() {
        let json = r#"{"prod": {"url": "http://crm-prod:8088"}, "staging": {"url": "http://crm-stg:8088", "retry_attempts": 5}}"#;
        let config = parse(&[
            ("CRM_CLUSTERS_JSON", json),
            ("CRM_DEFAULT_CLUSTER", "staging"),
        ])
        .unwrap();
        assert_eq!(names(&config), ["prod", "staging"]);
        assert_eq!(config.clusters[1].retry_attempts, 5);
        assert!(config.clusters[1].default && !config.clusters[0].default);
    }

    #[test]
    fn json_array_form_with_tls() {
        let json = r#"[{"name": "prod", "url": "https://crm-prod:8088", "timeout": 30, "retry_attempts": 3, "tls": {"ca_cert": "/path/ca.pem"}}]"#;
        let config = parse(&[("CRM_CLUSTERS_JSON", json)]).unwrap();
        let tls = config.clusters[0].tls.as_ref().unwrap();
        assert_eq!(tls.ca_cert.as_deref(), Some("/path/ca.pem"));
        assert!(config.clusters[0].default, "first cluster is the default");
    }

    #[test]
    fn json_wins_over_the_list_and_the_default_url() {
        let config = parse(&[
            ("CRM_CLUSTERS_JSON", r#"{"a": {"url": "http://a:1"}}"#),
            ("CRM_CLUSTERS", "b"),
            ("CRM_CLUSTER_B_URL", "http://b:1"),
            ("CRM_DEFAULT_URL", "http://c:1"),
        ])
        .unwrap();
        assert_eq!(names(&config), ["a"]);
    }

    #[test]
    fn list_with_prefixes_and_inferred_tls() {
        let config = parse(&[
            ("CRM_CLUSTERS", "default, prod,edge-eu"),
            ("CRM_CLUSTER_DEFAULT_URL", "http://d:1"),
            ("CRM_CLUSTER_PROD_URL", "https://p:1"),
            ("CRM_CLUSTER_PROD_API_KEY", "secret"),
            ("CRM_CLUSTER_PROD_TIMEOUT", "9"),
            ("CRM_CLUSTER_EDGE_EU_URL", "https://e:1"),
            ("CRM_CLUSTER_EDGE_EU_TLS_CA_CERT_PATH", "/ca.pem"),
        ])
        .unwrap();
        assert_eq!(names(&config), ["default", "prod", "edge-eu"]);
        assert!(config.clusters[0].default, "the cluster named default");
        assert_eq!(config.clusters[1].api_key.as_deref(), Some("secret"));
        assert_eq!(config.clusters[1].timeout_seconds, 9);
        assert!(config.clusters[1].tls.is_none());
        assert_eq!(
            config.clusters[2].tls.as_ref().unwrap().ca_cert.as_deref(),
            Some("/ca.pem")
        );
    }

    #[test]
    fn tls_can_be_turned_off_explicitly() {
        let config = parse(&[
            ("CRM_CLUSTERS", "a"),
            ("CRM_CLUSTER_A_URL", "http://a:1"),
            ("CRM_CLUSTER_A_TLS_CA_CERT_PATH", "/ca.pem"),
            ("CRM_CLUSTER_A_TLS_ENABLED", "false"),
        ])
        .unwrap();
        assert!(config.clusters[0].tls.is_none());
    }

    #[test]
    fn prefixes_uppercase_and_replace_other_characters() {
        assert_eq!(env_prefix("edge-eu.1"), "CRM_CLUSTER_EDGE_EU_1_");
        assert_eq!(resource_name("Edge_EU"), "edge-eu");
    }

    #[test]
    fn mistakes_fail_with_the_variable_named() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("CRM_CLUSTERS_JSON", "{not json")],
                "CRM_CLUSTERS_JSON",
            ),
            (
                vec![("CRM_CLUSTERS_JSON", r#"{"a": {}}"#)],
                "CRM_CLUSTERS_JSON",
            ),
            (
                vec![("CRM_CLUSTERS_JSON", r#"[{"url": "http://a:1"}]"#)],
                "CRM_CLUSTERS_JSON",
            ),
            (
                vec![(
                    "CRM_CLUSTERS_JSON",
                    r#"{"a": {"url": "http://a:1", "colour": 1}}"#,
                )],
                "CRM_CLUSTERS_JSON",
            ),
            (vec![("CRM_CLUSTERS_JSON", "42")], "CRM_CLUSTERS_JSON"),
            (vec![("CRM_CLUSTERS", "a")], "CRM_CLUSTER_A_URL"),
            (
                vec![
                    ("CRM_CLUSTERS", "a b"),
                    ("CRM_CLUSTER_A_B_URL", "http://x:1"),
                ],
                "CRM cluster name",
            ),
            (
                vec![(
                    "CRM_CLUSTERS_JSON",
                    r#"{"a_b": {"url": "http://x:1"}, "a-b": {"url": "http://y:1"}}"#,
                )],
                "CRM cluster name",
            ),
            (
                vec![("CRM_DEFAULT_URL", "crm:8088")],
                "url of cluster \"default\"",
            ),
            (
                vec![
                    ("CRM_DEFAULT_URL", "http://x:1"),
                    ("CRM_DEFAULT_CLUSTER", "prod"),
                ],
                "CRM_DEFAULT_CLUSTER",
            ),
            (
                vec![
                    ("CRM_DEFAULT_URL", "http://x:1"),
                    ("CRM_DEFAULT_TIMEOUT", "soon"),
                ],
                "CRM_DEFAULT_TIMEOUT",
            ),
            (
                vec![
                    ("CRM_CLUSTERS", "a"),
                    ("CRM_CLUSTER_A_URL", "http://a:1"),
                    ("CRM_CLUSTER_A_TLS_ENABLED", "maybe"),
                ],
                "CRM_CLUSTER_A_TLS_ENABLED",
            ),
            (vec![("SERVER_PORT", "99999")], "SERVER_PORT"),
        ];
        for (vars, variable) in cases {
            let err = parse(&vars).unwrap_err();
            assert_eq!(err.variable, variable, "{vars:?}: {err}");
        }
    }
}
