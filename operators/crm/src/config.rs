//! Configuration from the environment, as the seeds describe. Invalid values fail start-up
//! with a message that names the variable.
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::transport::Transport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Edge,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Port serving gRPC and HTTP (/healthz, /readyz, /metrics).
    pub http_port: u16,
    pub bind_address: String,
    /// How that port is served: TLS, mutual TLS, or plaintext when asked for.
    pub transport: Transport,
    /// A second port, always plaintext, with only /healthz, /readyz and /metrics: for
    /// kubelet probes and scrapers when the main port requires client certificates.
    pub ops_port: Option<u16>,
    /// File with the bearer token every gRPC call must carry (`OPRC_CRM_AUTH_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
    /// Largest gRPC request accepted; larger ones get OUT_OF_RANGE with both sizes.
    pub grpc_max_message_bytes: usize,
    /// Namespace where ClassRuntimes and their workloads live.
    pub namespace: String,
    /// Name of this cluster, reported to the hub.
    pub cluster_name: String,
    pub profile: Profile,
    pub features: Features,
    /// Fixed availability to report instead of ready/total nodes.
    pub availability_override: Option<f64>,
    pub odgm: OdgmSettings,
    /// How often to re-check workloads that are not yet Available.
    pub progress_requeue: Duration,
    pub json_logs: bool,
    /// The NFR analyzer's settings, when `OPRC_CRM_FEATURES_PROMETHEUS` is on.
    pub nfr: Option<crate::nfr::Settings>,
    /// Lead through a Lease in the namespace so that several replicas can run: all serve
    /// gRPC, only the leader reconciles and analyzes (`OPRC_CRM_LEADER_ELECTION`).
    pub leader: Option<oaas_operator_common::leader::Settings>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub odgm: bool,
    pub knative: bool,
    pub hpa: bool,
    pub prometheus: bool,
    pub nfr_enforcement: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OdgmSettings {
    pub image: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration: {variable}={value:?}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub problem: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let profile = match env.get("OPRC_CRM_PROFILE").unwrap_or("full") {
            "dev" => Profile::Dev,
            "edge" => Profile::Edge,
            "full" | "prod" => Profile::Full,
            other => return Err(env.error("OPRC_CRM_PROFILE", other, "use dev, edge or full")),
        };
        let full = profile == Profile::Full;
        let features = Features {
            odgm: env.flag("OPRC_CRM_FEATURES_ODGM", profile != Profile::Dev)?,
            knative: env.flag("OPRC_CRM_FEATURES_KNATIVE", false)?,
            hpa: env.flag("OPRC_CRM_FEATURES_HPA", full)?,
            prometheus: env.flag("OPRC_CRM_FEATURES_PROMETHEUS", false)?,
            nfr_enforcement: env.flag("OPRC_CRM_FEATURES_NFR_ENFORCEMENT", false)?,
        };
        let availability_override = match env.get("OPRC_CRM_AVAILABILITY") {
            None => None,
            Some(raw) => match raw.parse::<f64>() {
                Ok(a) if a > 0.0 && a <= 1.0 => Some(a),
                _ => {
                    return Err(env.error(
                        "OPRC_CRM_AVAILABILITY",
                        raw,
                        "must be a number greater than 0 and at most 1",
                    ));
                }
            },
        };
        let namespace = env
            .get("OPRC_CRM_K8S_NAMESPACE")
            .unwrap_or("default")
            .to_string();
        if namespace.is_empty() {
            return Err(env.error("OPRC_CRM_K8S_NAMESPACE", "", "must name a namespace"));
        }
        Ok(Config {
            http_port: env.number("HTTP_PORT", 8088)?,
            transport: transport(&env)?,
            ops_port: env
                .get("OPRC_CRM_OPS_PORT")
                .map(|_| env.number("OPRC_CRM_OPS_PORT", 0))
                .transpose()?,
            token_file: env.get("OPRC_CRM_AUTH_TOKEN_FILE").map(PathBuf::from),
            grpc_max_message_bytes: env.number("OPRC_CRM_GRPC_MAX_MESSAGE_BYTES", 4 << 20)?,
            bind_address: env
                .get("OPRC_CRM_BIND_ADDRESS")
                .unwrap_or("0.0.0.0")
                .to_string(),
            namespace: namespace.clone(),
            cluster_name: env
                .get("OPRC_CRM_CLUSTER_NAME")
                .unwrap_or("default")
                .to_string(),
            profile,
            features,
            availability_override,
            odgm: OdgmSettings {
                image: env
                    .get("OPRC_CRM_ODGM_IMAGE")
                    .unwrap_or("ghcr.io/pawissanutt/oaas/odgm:latest")
                    .to_string(),
                port: env.number("OPRC_CRM_ODGM_PORT", 8081)?,
            },
            progress_requeue: Duration::from_secs(
                env.number("OPRC_CRM_PROGRESS_REQUEUE_SECS", 10)?,
            ),
            json_logs: env.flag("OPRC_CRM_LOG_JSON", false)?,
            leader: if env.flag("OPRC_CRM_LEADER_ELECTION", false)? {
                let duration: u64 = env.number("OPRC_CRM_LEASE_DURATION_SECS", 15)?;
                if duration < 3 {
                    let value = duration.to_string();
                    return Err(env.error(
                        "OPRC_CRM_LEASE_DURATION_SECS",
                        &value,
                        "must be at least 3",
                    ));
                }
                Some(oaas_operator_common::leader::Settings {
                    namespace: namespace.clone(),
                    name: env.get("OPRC_CRM_LEASE_NAME").unwrap_or("oaas-crm").into(),
                    identity: oaas_operator_common::leader::default_identity(),
                    duration: Duration::from_secs(duration),
                })
            } else {
                None
            },
            nfr: if features.prometheus {
                Some(nfr_settings(&env, features.nfr_enforcement)?)
            } else {
                None
            },
        })
    }
}

/// TLS unless plaintext is asked for explicitly; a half-configured TLS is an error.
fn transport(env: &Env) -> Result<Transport, ConfigError> {
    let file = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let (cert, key, client_ca) = (
        file("OPRC_CRM_TLS_CERT_FILE"),
        file("OPRC_CRM_TLS_KEY_FILE"),
        file("OPRC_CRM_TLS_CLIENT_CA_FILE"),
    );
    if env.flag("OPRC_CRM_PLAINTEXT", false)? {
        if cert.is_some() || key.is_some() || client_ca.is_some() {
            return Err(env.error(
                "OPRC_CRM_PLAINTEXT",
                "true",
                "TLS files are set too: choose TLS (unset OPRC_CRM_PLAINTEXT) or plaintext \
                 (unset OPRC_CRM_TLS_*)",
            ));
        }
        return Ok(Transport::Plaintext);
    }
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Transport::Tls {
            cert,
            key,
            client_ca,
        }),
        (Some(_), None) => Err(env.error(
            "OPRC_CRM_TLS_KEY_FILE",
            "",
            "OPRC_CRM_TLS_CERT_FILE is set: give the file with its private key (PEM)",
        )),
        (None, Some(_)) => Err(env.error(
            "OPRC_CRM_TLS_CERT_FILE",
            "",
            "OPRC_CRM_TLS_KEY_FILE is set: give the file with the server certificate (PEM)",
        )),
        (None, None) => Err(env.error(
            "OPRC_CRM_TLS_CERT_FILE",
            "",
            "the CRM serves TLS: give OPRC_CRM_TLS_CERT_FILE and OPRC_CRM_TLS_KEY_FILE (and \
             OPRC_CRM_TLS_CLIENT_CA_FILE to require client certificates), or set \
             OPRC_CRM_PLAINTEXT=true to serve without TLS",
        )),
    }
}

fn nfr_settings(env: &Env, enforcement: bool) -> Result<crate::nfr::Settings, ConfigError> {
    use crate::nfr::{DEFAULT_CPU_QUERY, DEFAULT_MEMORY_QUERY, Settings, decide};
    let prometheus_url = env.get("OPRC_CRM_PROMETHEUS_URL").ok_or_else(|| {
        env.error(
            "OPRC_CRM_PROMETHEUS_URL",
            "",
            "OPRC_CRM_FEATURES_PROMETHEUS is on: give the Prometheus base URL, e.g. http://prometheus:9090",
        )
    })?;
    if !prometheus_url.starts_with("http://") && !prometheus_url.starts_with("https://") {
        return Err(env.error(
            "OPRC_CRM_PROMETHEUS_URL",
            prometheus_url,
            "must be an http(s) URL",
        ));
    }
    let seconds = |name: &str, default: u64| -> Result<Duration, ConfigError> {
        match env.number(name, default)? {
            0 => Err(env.error(name, "0", "must be at least 1 second")),
            n => Ok(Duration::from_secs(n)),
        }
    };
    let step = seconds("OPRC_CRM_NFR_STEP_SECS", 30)?;
    let window = seconds("OPRC_CRM_NFR_WINDOW_SECS", 300)?;
    if window < step {
        return Err(env.error(
            "OPRC_CRM_NFR_WINDOW_SECS",
            &window.as_secs().to_string(),
            "must be at least OPRC_CRM_NFR_STEP_SECS",
        ));
    }
    let max_step_text = env.get("OPRC_CRM_ENFORCEMENT_MAX_STEP").unwrap_or("50%");
    let max_step = decide::Step::parse(max_step_text).ok_or_else(|| {
        env.error(
            "OPRC_CRM_ENFORCEMENT_MAX_STEP",
            max_step_text,
            "give replicas (e.g. 2) or a percent of the current replicas (e.g. 50%), more than 0",
        )
    })?;
    Ok(Settings {
        prometheus_url: prometheus_url.to_string(),
        interval: seconds("OPRC_CRM_ANALYZER_INTERVAL_SECS", 60)?,
        window,
        step,
        rate_window: seconds("OPRC_CRM_NFR_RATE_WINDOW_SECS", 120)?,
        query_timeout: seconds("OPRC_CRM_PROMETHEUS_TIMEOUT_SECS", 5)?,
        cpu_query: env
            .get("OPRC_CRM_NFR_CPU_QUERY")
            .unwrap_or(DEFAULT_CPU_QUERY)
            .to_string(),
        memory_query: env
            .get("OPRC_CRM_NFR_MEMORY_QUERY")
            .unwrap_or(DEFAULT_MEMORY_QUERY)
            .to_string(),
        enforcement,
        safeguards: decide::Safeguards {
            stability: Duration::from_secs(env.number("OPRC_CRM_ENFORCEMENT_STABILITY_SECS", 300)?),
            cooldown: Duration::from_secs(env.number("OPRC_CRM_ENFORCEMENT_COOLDOWN_SECS", 600)?),
            max_step,
        },
    })
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn error(&self, variable: &str, value: &str, problem: &str) -> ConfigError {
        ConfigError {
            variable: variable.into(),
            value: value.into(),
            problem: problem.into(),
        }
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(self.error(name, other, "use true or false")),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| self.error(name, raw, "must be a whole number in range")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables given, on a plaintext port unless they say otherwise.
    fn mk_vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let plaintext = [("OPRC_CRM_PLAINTEXT", "true")];
        plaintext
            .iter()
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn transport_of(pairs: &[(&str, &str)]) -> Result<Transport, ConfigError> {
        let vars = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_vars(&vars.collect()).map(|c| c.transport)
    }

    #[test]
    fn tls_is_the_default_and_plaintext_must_be_asked_for() {
        let missing = transport_of(&[]).unwrap_err();
        assert_eq!(missing.variable, "OPRC_CRM_TLS_CERT_FILE");
        assert!(
            missing.problem.contains("OPRC_CRM_PLAINTEXT=true"),
            "{missing}"
        );
        assert_eq!(
            transport_of(&[("OPRC_CRM_PLAINTEXT", "true")]),
            Ok(Transport::Plaintext)
        );
        let files = [
            ("OPRC_CRM_TLS_CERT_FILE", "/tls/tls.crt"),
            ("OPRC_CRM_TLS_KEY_FILE", "/tls/tls.key"),
        ];
        assert_eq!(
            transport_of(&files),
            Ok(Transport::Tls {
                cert: "/tls/tls.crt".into(),
                key: "/tls/tls.key".into(),
                client_ca: None,
            })
        );
        let mutual = [
            files[0],
            files[1],
            ("OPRC_CRM_TLS_CLIENT_CA_FILE", "/tls/ca.crt"),
        ];
        assert!(matches!(
            transport_of(&mutual),
            Ok(Transport::Tls {
                client_ca: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn half_or_conflicting_tls_settings_name_what_to_fix() {
        let only_cert = transport_of(&[("OPRC_CRM_TLS_CERT_FILE", "/c")]).unwrap_err();
        assert_eq!(only_cert.variable, "OPRC_CRM_TLS_KEY_FILE");
        let only_key = transport_of(&[("OPRC_CRM_TLS_KEY_FILE", "/k")]).unwrap_err();
        assert_eq!(only_key.variable, "OPRC_CRM_TLS_CERT_FILE");
        let both = transport_of(&[
            ("OPRC_CRM_PLAINTEXT", "true"),
            ("OPRC_CRM_TLS_CLIENT_CA_FILE", "/ca"),
        ])
        .unwrap_err();
        assert_eq!(both.variable, "OPRC_CRM_PLAINTEXT");
    }

    #[test]
    fn defaults_follow_the_full_profile() {
        let config = Config::from_vars(&mk_vars(&[])).unwrap();
        assert_eq!(config.http_port, 8088);
        assert_eq!(config.namespace, "default");
        assert_eq!(config.profile, Profile::Full);
        assert!(config.features.odgm && config.features.hpa && !config.features.knative);
    }

    #[test]
    fn dev_profile_turns_odgm_and_hpa_off_unless_asked() {
        let dev = Config::from_vars(&mk_vars(&[("OPRC_CRM_PROFILE", "dev")])).unwrap();
        assert!(!dev.features.odgm && !dev.features.hpa);
        let with_odgm = Config::from_vars(&mk_vars(&[
            ("OPRC_CRM_PROFILE", "dev"),
            ("OPRC_CRM_FEATURES_ODGM", "true"),
        ]))
        .unwrap();
        assert!(with_odgm.features.odgm);
    }

    #[test]
    fn the_analyzer_needs_prometheus_and_sane_windows() {
        let on = [("OPRC_CRM_FEATURES_PROMETHEUS", "true")];
        let err = Config::from_vars(&mk_vars(&on)).unwrap_err();
        assert_eq!(err.variable, "OPRC_CRM_PROMETHEUS_URL");
        let url = ("OPRC_CRM_PROMETHEUS_URL", "http://127.0.0.1:9090");
        let nfr = Config::from_vars(&mk_vars(&[on[0], url]))
            .unwrap()
            .nfr
            .unwrap();
        assert_eq!(nfr.interval, Duration::from_secs(60));
        assert_eq!(
            nfr.safeguards.max_step,
            crate::nfr::decide::Step::Percent(50)
        );
        assert!(!nfr.enforcement, "enforcement is a separate gate");
        for (var, value) in [
            ("OPRC_CRM_PROMETHEUS_URL", "prometheus:9090"),
            ("OPRC_CRM_NFR_WINDOW_SECS", "10"),
            ("OPRC_CRM_ANALYZER_INTERVAL_SECS", "0"),
            ("OPRC_CRM_ENFORCEMENT_MAX_STEP", "0%"),
        ] {
            let err = Config::from_vars(&mk_vars(&[on[0], url, (var, value)])).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
        assert!(Config::from_vars(&mk_vars(&[])).unwrap().nfr.is_none());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("HTTP_PORT", "eighty"),
            ("HTTP_PORT", "70000"),
            ("OPRC_CRM_PROFILE", "huge"),
            ("OPRC_CRM_FEATURES_KNATIVE", "maybe"),
            ("OPRC_CRM_AVAILABILITY", "1.5"),
        ] {
            let err = Config::from_vars(&mk_vars(&[(var, value)])).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
