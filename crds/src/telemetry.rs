//! OpenTelemetry settings of a class deployment: whether its functions export traces,
//! metrics and logs over OTLP, how traces are sampled, and what the telemetry is labelled
//! with. The spoke turns them into the standard `OTEL_*` variables of every function
//! container; the collector's address is the spoke's (`OPRC_CRM_OTEL_EXPORTER_ENDPOINT`).
//!
//! The CRD schema checks the block with CEL rules; [`check_telemetry`] makes the same checks
//! for input that bypasses the API server (gRPC units, REST documents), naming the field.
use kube::KubeSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Sampling rate when none is given: one root trace in ten.
pub const DEFAULT_SAMPLING_RATE: f64 = 0.1;
/// Longest service name.
pub const MAX_SERVICE_NAME_LEN: usize = 255;
/// Most resource attributes.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 32;
/// Longest resource attribute key.
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 128;
/// Longest resource attribute value.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 255;
/// Resource attribute keys starting with this are the spoke's own (oaas.class, ...).
pub const RESERVED_ATTRIBUTE_PREFIX: &str = "oaas.";

/// CEL rule of `samplingRate`.
pub const SAMPLING_RATE_RULE: &str = "self >= 0.0 && self <= 1.0";
/// Message of [`SAMPLING_RATE_RULE`].
pub const SAMPLING_RATE_MESSAGE: &str =
    "samplingRate must be between 0 and 1 (a ratio of root traces), e.g. 0.1 for one in ten";
/// CEL rule of `serviceName`: printable ASCII, no space at either end.
pub const SERVICE_NAME_RULE: &str = "self.matches('^[[:graph:]]([[:print:]]*[[:graph:]])?$')";
/// Message of [`SERVICE_NAME_RULE`].
pub const SERVICE_NAME_MESSAGE: &str = "serviceName must be 1-255 printable ASCII characters without a space at either end, e.g. shop-records";
/// CEL rule of the keys of `resourceAttributes`.
pub const ATTRIBUTE_KEY_RULE: &str =
    "self.all(k, size(k) <= 128 && k.matches('^[A-Za-z0-9_.-]+$'))";
/// Message of [`ATTRIBUTE_KEY_RULE`].
pub const ATTRIBUTE_KEY_MESSAGE: &str = "resourceAttributes keys must be 1-128 letters, digits, '.', '_' or '-', e.g. team or deployment.environment";
/// CEL rule keeping users off the spoke's own attribute keys.
pub const RESERVED_ATTRIBUTE_RULE: &str =
    "self.all(k, !k.startsWith('oaas.') && k != 'service.name')";
/// Message of [`RESERVED_ATTRIBUTE_RULE`].
pub const RESERVED_ATTRIBUTE_MESSAGE: &str = "resourceAttributes keys starting with 'oaas.' are set by the platform and service.name comes from serviceName; rename the key or use serviceName";

/// OpenTelemetry of the class's functions. `enabled` is the master switch: without
/// `enabled: true` (or without the block) function containers get no `OTEL_*` variables.
/// Attribute values may hold any characters: the spoke percent-encodes `,`, `=`, `%`,
/// spaces and non-ASCII characters in `OTEL_RESOURCE_ATTRIBUTES`, as the OpenTelemetry
/// specification provides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySpec {
    /// Export telemetry at all (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Export traces (default true).
    #[serde(default = "yes")]
    pub traces: bool,
    /// Export metrics (default true).
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Export logs (default false).
    #[serde(default)]
    pub logs: bool,
    /// Ratio of root traces sampled, 0 to 1 (default 0.1); child spans follow their parent.
    #[serde(default = "default_sampling_rate")]
    #[x_kube(validation = Rule::new(SAMPLING_RATE_RULE).message(SAMPLING_RATE_MESSAGE))]
    pub sampling_rate: f64,
    /// OTEL_SERVICE_NAME of every function of the class; unset: each function's workload
    /// name (<runtime>-<function>, e.g. shop-record-echo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(SERVICE_NAME_RULE).message(SERVICE_NAME_MESSAGE))]
    #[schemars(length(min = 1, max = 255))]
    pub service_name: Option<String>,
    /// Extra resource attributes, e.g. {team: shop}. The spoke adds oaas.package,
    /// oaas.class, oaas.function, oaas.deployment.id and oaas.cluster itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(ATTRIBUTE_KEY_RULE).message(ATTRIBUTE_KEY_MESSAGE))]
    #[x_kube(validation = Rule::new(RESERVED_ATTRIBUTE_RULE).message(RESERVED_ATTRIBUTE_MESSAGE))]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 255}))]
    pub resource_attributes: BTreeMap<String, String>,
}

impl Default for TelemetrySpec {
    fn default() -> Self {
        Self {
            enabled: false,
            traces: true,
            metrics: true,
            logs: false,
            sampling_rate: DEFAULT_SAMPLING_RATE,
            service_name: None,
            resource_attributes: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_sampling_rate() -> f64 {
    DEFAULT_SAMPLING_RATE
}

/// A telemetry field and what is wrong with it. `field` is the snake_case name under the
/// block (`sampling_rate`, `resource_attributes.team`), for callers to prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryProblem {
    pub field: String,
    pub message: String,
}

fn telemetry_problem(field: impl Into<String>, message: impl Into<String>) -> TelemetryProblem {
    TelemetryProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// The checks of the CRD schema, for input that bypasses it.
pub fn check_telemetry(t: &TelemetrySpec) -> Result<(), TelemetryProblem> {
    if !(0.0..=1.0).contains(&t.sampling_rate) {
        return Err(telemetry_problem(
            "sampling_rate",
            format!(
                "{} is not between 0 and 1; give a ratio of root traces, e.g. 0.1 for one in ten",
                t.sampling_rate
            ),
        ));
    }
    if let Some(name) = &t.service_name {
        let bytes = name.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_SERVICE_NAME_LEN
            && bytes.iter().all(|b| (b' '..=b'~').contains(b))
            && bytes[0] != b' '
            && bytes[bytes.len() - 1] != b' ';
        if !ok {
            return Err(telemetry_problem(
                "service_name",
                format!(
                    "{name:?} is not a service name: use 1-255 printable ASCII characters without a space at either end, e.g. shop-records"
                ),
            ));
        }
    }
    if t.resource_attributes.len() > MAX_RESOURCE_ATTRIBUTES {
        return Err(telemetry_problem(
            "resource_attributes",
            format!(
                "{} attributes given; at most {MAX_RESOURCE_ATTRIBUTES} are allowed",
                t.resource_attributes.len()
            ),
        ));
    }
    for (key, value) in &t.resource_attributes {
        let field = format!("resource_attributes.{key}");
        let key_ok = !key.is_empty()
            && key.len() <= MAX_ATTRIBUTE_KEY_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !key_ok {
            return Err(telemetry_problem(
                field,
                format!(
                    "key {key:?} must be 1-128 letters, digits, '.', '_' or '-', e.g. team or deployment.environment"
                ),
            ));
        }
        if key.starts_with(RESERVED_ATTRIBUTE_PREFIX) || key == "service.name" {
            return Err(telemetry_problem(
                field,
                format!(
                    "key {key:?} is reserved: keys starting with 'oaas.' are set by the platform and service.name comes from service_name; rename the key"
                ),
            ));
        }
        if value.chars().count() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(telemetry_problem(
                field,
                format!("the value must be at most {MAX_ATTRIBUTE_VALUE_LEN} characters"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_telemetry() -> TelemetrySpec {
        TelemetrySpec {
            enabled: true,
            service_name: Some("shop records".into()),
            resource_attributes: [
                ("team".to_string(), "shop, eu=1 %".to_string()),
                ("deployment.environment".to_string(), "prod".to_string()),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_block_takes_the_documented_defaults() {
        let t: TelemetrySpec = serde_json::from_str("{}").unwrap();
        assert_eq!(t, TelemetrySpec::default());
        assert!(!t.enabled && t.traces && t.metrics && !t.logs);
        assert_eq!(t.sampling_rate, 0.1);
        let t: TelemetrySpec =
            serde_json::from_str(r#"{"enabled": true, "samplingRate": 1, "logs": true}"#).unwrap();
        assert!(t.enabled && t.logs && t.traces);
        assert_eq!(t.sampling_rate, 1.0);
    }

    #[test]
    fn valid_blocks_pass() {
        assert_eq!(check_telemetry(&mk_telemetry()), Ok(()));
        for rate in [0.0, 0.5, 1.0] {
            let t = TelemetrySpec {
                sampling_rate: rate,
                ..mk_telemetry()
            };
            assert_eq!(check_telemetry(&t), Ok(()), "{rate}");
        }
    }

    #[test]
    fn bad_fields_are_named_with_what_to_change() {
        let cases: Vec<(&str, TelemetrySpec)> = vec![
            (
                "sampling_rate",
                TelemetrySpec {
                    sampling_rate: 1.5,
                    ..mk_telemetry()
                },
            ),
            (
                "sampling_rate",
                TelemetrySpec {
                    sampling_rate: -0.1,
                    ..mk_telemetry()
                },
            ),
            (
                "sampling_rate",
                TelemetrySpec {
                    sampling_rate: f64::NAN,
                    ..mk_telemetry()
                },
            ),
            (
                "service_name",
                TelemetrySpec {
                    service_name: Some(String::new()),
                    ..mk_telemetry()
                },
            ),
            (
                "service_name",
                TelemetrySpec {
                    service_name: Some(" padded".into()),
                    ..mk_telemetry()
                },
            ),
            (
                "service_name",
                TelemetrySpec {
                    service_name: Some("x".repeat(256)),
                    ..mk_telemetry()
                },
            ),
            (
                "resource_attributes.bad key",
                TelemetrySpec {
                    resource_attributes: [("bad key".to_string(), "v".to_string())].into(),
                    ..mk_telemetry()
                },
            ),
            (
                "resource_attributes.a=b",
                TelemetrySpec {
                    resource_attributes: [("a=b".to_string(), "v".to_string())].into(),
                    ..mk_telemetry()
                },
            ),
            (
                "resource_attributes.oaas.class",
                TelemetrySpec {
                    resource_attributes: [("oaas.class".to_string(), "v".to_string())].into(),
                    ..mk_telemetry()
                },
            ),
            (
                "resource_attributes.service.name",
                TelemetrySpec {
                    resource_attributes: [("service.name".to_string(), "v".to_string())].into(),
                    ..mk_telemetry()
                },
            ),
            (
                "resource_attributes.team",
                TelemetrySpec {
                    resource_attributes: [("team".to_string(), "v".repeat(256))].into(),
                    ..mk_telemetry()
                },
            ),
            (
                "resource_attributes",
                TelemetrySpec {
                    resource_attributes: (0..33).map(|i| (format!("k{i}"), "v".into())).collect(),
                    ..mk_telemetry()
                },
            ),
        ];
        for (field, t) in cases {
            let problem = check_telemetry(&t).expect_err(field);
            assert_eq!(problem.field, field, "{problem:?}");
            assert!(
                problem.message.contains("e.g.")
                    || problem.message.contains("rename")
                    || problem.message.contains("at most"),
                "{problem:?}"
            );
        }
    }

    #[test]
    fn the_rust_checks_and_the_cel_rules_agree_on_the_limits() {
        assert!(ATTRIBUTE_KEY_RULE.contains(&MAX_ATTRIBUTE_KEY_LEN.to_string()));
        assert!(RESERVED_ATTRIBUTE_RULE.contains(RESERVED_ATTRIBUTE_PREFIX));
        let schema = serde_json::to_value(schemars::schema_for!(TelemetrySpec)).unwrap();
        let text = schema.to_string();
        for needle in [
            SAMPLING_RATE_MESSAGE,
            ATTRIBUTE_KEY_MESSAGE,
            RESERVED_ATTRIBUTE_MESSAGE,
            "\"maxProperties\":32",
            "\"maxLength\":255",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
