//! Configuration from the environment, as the seeds describe. Invalid values fail start-up
//! with a message that names the variable. Only parsing lives here: the settings the
//! renderer needs are its own types (`render::Settings`), built here.
use std::collections::HashMap;
use std::time::Duration;

pub use oaas_operator_common::env::ConfigError;
use oaas_operator_common::env::Env;

use crate::render::{self, Features, OdgmSettings, OtlpExporter, OtlpProtocol, Profile};
use crate::transport::Transport;

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
    pub token_file: Option<std::path::PathBuf>,
    /// Largest gRPC request accepted; larger ones get OUT_OF_RANGE with both sizes.
    pub grpc_max_message_bytes: usize,
    /// Namespace where ClassRuntimes and their workloads live.
    pub namespace: String,
    /// Name of this cluster, reported to the hub.
    pub cluster_name: String,
    /// Profile, features and data grid: what every render starts from.
    pub render: render::Settings,
    /// Fixed availability to report instead of ready/total nodes.
    pub availability_override: Option<f64>,
    /// How often to re-check workloads that are not yet Available.
    pub progress_requeue: Duration,
    /// How many ClassRuntimes are reconciled at once.
    pub max_concurrent_reconciles: u16,
    pub json_logs: bool,
    /// The NFR analyzer's settings, when `OPRC_CRM_FEATURES_PROMETHEUS` is on.
    pub nfr: Option<crate::nfr::Settings>,
    /// Lead through a Lease in the namespace so that several replicas can run: all serve
    /// gRPC, only the leader reconciles and analyzes (`OPRC_CRM_LEADER_ELECTION`).
    pub leader: Option<oaas_operator_common::leader::Settings>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env::new(vars);
        let render = render_settings(&env)?;
        let availability_override = match env.get("OPRC_CRM_AVAILABILITY") {
            None => None,
            Some(raw) => match raw.trim().parse::<f64>() {
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
        let namespace = env.get_or("OPRC_CRM_K8S_NAMESPACE", "default").to_string();
        Ok(Config {
            http_port: env.number("HTTP_PORT", 8088)?,
            transport: transport(&env)?,
            ops_port: env.optional_number("OPRC_CRM_OPS_PORT")?,
            token_file: env.path("OPRC_CRM_AUTH_TOKEN_FILE"),
            grpc_max_message_bytes: env.number("OPRC_CRM_GRPC_MAX_MESSAGE_BYTES", 4 << 20)?,
            bind_address: env.get_or("OPRC_CRM_BIND_ADDRESS", "0.0.0.0").to_string(),
            cluster_name: env.get_or("OPRC_CRM_CLUSTER_NAME", "default").to_string(),
            availability_override,
            progress_requeue: env.seconds("OPRC_CRM_PROGRESS_REQUEUE_SECS", 10)?,
            max_concurrent_reconciles: match env.number(
                "OPRC_CRM_MAX_CONCURRENT_RECONCILES",
                oaas_operator_common::reconcile::CONCURRENCY,
            )? {
                0 => {
                    return Err(env.error(
                        "OPRC_CRM_MAX_CONCURRENT_RECONCILES",
                        "0",
                        "must be at least 1",
                    ));
                }
                n => n,
            },
            json_logs: env.flag("OPRC_CRM_LOG_JSON", false)?,
            leader: leader_settings(&env, &namespace)?,
            nfr: if render.features.prometheus {
                Some(nfr_settings(&env, render.features.nfr_enforcement)?)
            } else {
                None
            },
            namespace,
            render,
        })
    }
}

/// Profile, features and the data grid; the profile decides the features' defaults.
fn render_settings(env: &Env) -> Result<render::Settings, ConfigError> {
    let profile = match env.get_or("OPRC_CRM_PROFILE", "full") {
        "dev" => Profile::Dev,
        "edge" => Profile::Edge,
        "full" | "prod" => Profile::Full,
        other => return Err(env.error("OPRC_CRM_PROFILE", other, "use dev, edge or full")),
    };
    let full = profile == Profile::Full;
    Ok(render::Settings {
        profile,
        features: Features {
            odgm: env.flag("OPRC_CRM_FEATURES_ODGM", profile != Profile::Dev)?,
            knative: env.flag("OPRC_CRM_FEATURES_KNATIVE", false)?,
            hpa: env.flag("OPRC_CRM_FEATURES_HPA", full)?,
            prometheus: env.flag("OPRC_CRM_FEATURES_PROMETHEUS", false)?,
            nfr_enforcement: env.flag("OPRC_CRM_FEATURES_NFR_ENFORCEMENT", false)?,
        },
        odgm: OdgmSettings {
            image: env
                .get_or(
                    "OPRC_CRM_ODGM_IMAGE",
                    "ghcr.io/pawissanutt/oaas/odgm:latest",
                )
                .to_string(),
            port: env.number("OPRC_CRM_ODGM_PORT", 8081)?,
        },
        otlp: otlp_exporter(env)?,
    })
}

/// The collector function containers with telemetry on are pointed at; none when the
/// endpoint is unset (the SDKs' localhost default then applies).
fn otlp_exporter(env: &Env) -> Result<Option<OtlpExporter>, ConfigError> {
    let protocol = env.get("OPRC_CRM_OTEL_EXPORTER_PROTOCOL");
    let Some(endpoint) = env.get("OPRC_CRM_OTEL_EXPORTER_ENDPOINT") else {
        return match protocol {
            None => Ok(None),
            Some(_) => Err(env.error(
                "OPRC_CRM_OTEL_EXPORTER_ENDPOINT",
                "",
                "OPRC_CRM_OTEL_EXPORTER_PROTOCOL is set: give the collector's URL too, e.g. \
                 http://otel-collector.observability:4317, or unset the protocol",
            )),
        };
    };
    let endpoint = endpoint.trim();
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    if !host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace)) {
        return Err(env.error(
            "OPRC_CRM_OTEL_EXPORTER_ENDPOINT",
            endpoint,
            "must be an http:// or https:// URL of an OTLP collector, e.g. \
             http://otel-collector.observability:4317",
        ));
    }
    let protocol = match protocol.map(str::trim) {
        None => OtlpProtocol::Grpc,
        Some(name) => OtlpProtocol::parse(name).ok_or_else(|| {
            env.error(
                "OPRC_CRM_OTEL_EXPORTER_PROTOCOL",
                name,
                "use grpc, http/protobuf or http/json",
            )
        })?,
    };
    Ok(Some(OtlpExporter {
        endpoint: endpoint.to_string(),
        protocol,
    }))
}

fn leader_settings(
    env: &Env,
    namespace: &str,
) -> Result<Option<oaas_operator_common::leader::Settings>, ConfigError> {
    if !env.flag("OPRC_CRM_LEADER_ELECTION", false)? {
        return Ok(None);
    }
    let duration: u64 = env.number("OPRC_CRM_LEASE_DURATION_SECS", 15)?;
    if duration < 3 {
        let value = duration.to_string();
        return Err(env.error("OPRC_CRM_LEASE_DURATION_SECS", &value, "must be at least 3"));
    }
    Ok(Some(oaas_operator_common::leader::Settings {
        namespace: namespace.to_string(),
        name: env.get_or("OPRC_CRM_LEASE_NAME", "oaas-crm").into(),
        identity: oaas_operator_common::leader::default_identity(),
        duration: Duration::from_secs(duration),
    }))
}

/// TLS unless plaintext is asked for explicitly; a half-configured TLS is an error.
fn transport(env: &Env) -> Result<Transport, ConfigError> {
    let (cert, key, client_ca) = (
        env.path("OPRC_CRM_TLS_CERT_FILE"),
        env.path("OPRC_CRM_TLS_KEY_FILE"),
        env.path("OPRC_CRM_TLS_CLIENT_CA_FILE"),
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
    let prometheus_url = env.require(
        "OPRC_CRM_PROMETHEUS_URL",
        "OPRC_CRM_FEATURES_PROMETHEUS is on: give the Prometheus base URL, e.g. http://prometheus:9090",
    )?;
    if !prometheus_url.starts_with("http://") && !prometheus_url.starts_with("https://") {
        return Err(env.error(
            "OPRC_CRM_PROMETHEUS_URL",
            prometheus_url,
            "must be an http(s) URL",
        ));
    }
    let step = env.positive_seconds("OPRC_CRM_NFR_STEP_SECS", 30)?;
    let window = env.positive_seconds("OPRC_CRM_NFR_WINDOW_SECS", 300)?;
    if window < step {
        return Err(env.error(
            "OPRC_CRM_NFR_WINDOW_SECS",
            &window.as_secs().to_string(),
            "must be at least OPRC_CRM_NFR_STEP_SECS",
        ));
    }
    let max_step_text = env.get_or("OPRC_CRM_ENFORCEMENT_MAX_STEP", "50%");
    let max_step = decide::Step::parse(max_step_text).ok_or_else(|| {
        env.error(
            "OPRC_CRM_ENFORCEMENT_MAX_STEP",
            max_step_text,
            "give replicas (e.g. 2) or a percent of the current replicas (e.g. 50%), more than 0",
        )
    })?;
    Ok(Settings {
        prometheus_url: prometheus_url.to_string(),
        interval: env.positive_seconds("OPRC_CRM_ANALYZER_INTERVAL_SECS", 60)?,
        window,
        step,
        rate_window: env.positive_seconds("OPRC_CRM_NFR_RATE_WINDOW_SECS", 120)?,
        query_timeout: env.positive_seconds("OPRC_CRM_PROMETHEUS_TIMEOUT_SECS", 5)?,
        cpu_query: env
            .get_or("OPRC_CRM_NFR_CPU_QUERY", DEFAULT_CPU_QUERY)
            .to_string(),
        memory_query: env
            .get_or("OPRC_CRM_NFR_MEMORY_QUERY", DEFAULT_MEMORY_QUERY)
            .to_string(),
        enforcement,
        safeguards: decide::Safeguards {
            stability: env.seconds("OPRC_CRM_ENFORCEMENT_STABILITY_SECS", 300)?,
            cooldown: env.seconds("OPRC_CRM_ENFORCEMENT_COOLDOWN_SECS", 600)?,
            max_step,
        },
    })
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
        assert_eq!(config.render.profile, Profile::Full);
        assert_eq!(config.max_concurrent_reconciles, 64);
        assert!(
            config.render.features.odgm
                && config.render.features.hpa
                && !config.render.features.knative
        );
    }

    #[test]
    fn reconcile_concurrency_is_at_least_one() {
        let var = "OPRC_CRM_MAX_CONCURRENT_RECONCILES";
        let two = Config::from_vars(&mk_vars(&[(var, "2")])).unwrap();
        assert_eq!(two.max_concurrent_reconciles, 2);
        for bad in ["0", "many", "-1"] {
            let err = Config::from_vars(&mk_vars(&[(var, bad)])).unwrap_err();
            assert_eq!(err.variable, var, "{bad}: {err}");
        }
    }

    #[test]
    fn dev_profile_turns_odgm_and_hpa_off_unless_asked() {
        let dev = Config::from_vars(&mk_vars(&[("OPRC_CRM_PROFILE", "dev")])).unwrap();
        assert!(!dev.render.features.odgm && !dev.render.features.hpa);
        let with_odgm = Config::from_vars(&mk_vars(&[
            ("OPRC_CRM_PROFILE", "dev"),
            ("OPRC_CRM_FEATURES_ODGM", "true"),
        ]))
        .unwrap();
        assert!(with_odgm.render.features.odgm);
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
    fn the_otel_collector_is_optional_and_checked_when_given() {
        let none = Config::from_vars(&mk_vars(&[])).unwrap();
        assert_eq!(
            none.render.otlp, None,
            "no endpoint: the SDK default applies"
        );
        let endpoint = (
            "OPRC_CRM_OTEL_EXPORTER_ENDPOINT",
            "http://otel-collector.obs:4317",
        );
        let grpc = Config::from_vars(&mk_vars(&[endpoint])).unwrap();
        assert_eq!(
            grpc.render.otlp,
            Some(OtlpExporter {
                endpoint: "http://otel-collector.obs:4317".into(),
                protocol: OtlpProtocol::Grpc,
            })
        );
        let http = Config::from_vars(&mk_vars(&[
            endpoint,
            ("OPRC_CRM_OTEL_EXPORTER_PROTOCOL", "http/protobuf"),
        ]))
        .unwrap();
        assert_eq!(
            http.render.otlp.unwrap().protocol,
            OtlpProtocol::HttpProtobuf
        );
        for (pairs, variable) in [
            (
                vec![("OPRC_CRM_OTEL_EXPORTER_ENDPOINT", "otel-collector:4317")],
                "OPRC_CRM_OTEL_EXPORTER_ENDPOINT",
            ),
            (
                vec![("OPRC_CRM_OTEL_EXPORTER_ENDPOINT", "http://")],
                "OPRC_CRM_OTEL_EXPORTER_ENDPOINT",
            ),
            (
                vec![endpoint, ("OPRC_CRM_OTEL_EXPORTER_PROTOCOL", "udp")],
                "OPRC_CRM_OTEL_EXPORTER_PROTOCOL",
            ),
            (
                vec![("OPRC_CRM_OTEL_EXPORTER_PROTOCOL", "grpc")],
                "OPRC_CRM_OTEL_EXPORTER_ENDPOINT",
            ),
        ] {
            let err = Config::from_vars(&mk_vars(&pairs)).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
            assert!(
                err.problem.contains("e.g.") || err.problem.contains("use grpc"),
                "{err}"
            );
        }
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
