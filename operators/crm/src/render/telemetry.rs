//! The OpenTelemetry variables of a function container, from the runtime's `telemetry` block
//! and the CRM's collector setting. Only the SDKs' standard variables are used, so any
//! OpenTelemetry SDK configured from the environment picks them up.
//!
//! - Absent block or `enabled: false`: no variables at all.
//! - `OTEL_SERVICE_NAME`: `serviceName`, else the function's workload name (the name of its
//!   Deployment or Knative Service, `<runtime>-<function>`, e.g. `shop-record-echo`): stable
//!   across revisions and what `kubectl get deployments` shows.
//! - `OTEL_RESOURCE_ATTRIBUTES`: the user's attributes plus `oaas.package`, `oaas.class`,
//!   `oaas.function`, `oaas.deployment.id` and `oaas.cluster` (when known), sorted by key;
//!   values percent-encoded where the format needs it (`,`, `=`, `%`, spaces, non-ASCII).
//! - `OTEL_{TRACES,METRICS,LOGS}_EXPORTER`: `otlp` or `none` per toggle.
//! - `OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG` the rate.
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL` from the CRM's
//!   `OPRC_CRM_OTEL_EXPORTER_*` settings; without them both are left out and the SDK's
//!   default (a collector on localhost, e.g. a node agent or sidecar) applies.
//!
//! A function's own config entry of the same name wins over these (`function.rs`).
use std::collections::BTreeMap;
use std::fmt::Write;

use oaas_crds::ClassRuntime;
use oaas_crds::class_runtime::RuntimeFunction;

use super::OtlpExporter;

/// The sampler: root spans sampled at the rate, child spans follow their parent's decision.
pub const SAMPLER: &str = "parentbased_traceidratio";

/// The variables for function `f` whose workload is named `workload`; empty when telemetry
/// is off.
pub(super) fn otel_env(
    runtime: &ClassRuntime,
    f: &RuntimeFunction,
    workload: &str,
    exporter: Option<&OtlpExporter>,
) -> BTreeMap<String, String> {
    let spec = &runtime.spec;
    let Some(t) = spec.telemetry.as_ref().filter(|t| t.enabled) else {
        return BTreeMap::new();
    };
    let exporter_of = |on: bool| if on { "otlp" } else { "none" }.to_string();
    let mut attributes = t.resource_attributes.clone();
    // The schema keeps users off `oaas.*`; inserting last makes sure these are what is sent.
    attributes.insert("oaas.package".into(), spec.package_name.clone());
    attributes.insert("oaas.class".into(), spec.class_key.clone());
    attributes.insert("oaas.function".into(), f.function_key.clone());
    attributes.insert("oaas.deployment.id".into(), spec.deployment_id.clone());
    if let Some(cluster) = &spec.target_cluster {
        attributes.insert("oaas.cluster".into(), cluster.clone());
    }
    let mut env = BTreeMap::from([
        (
            "OTEL_SERVICE_NAME".to_string(),
            t.service_name
                .clone()
                .unwrap_or_else(|| workload.to_string()),
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES".to_string(),
            resource_attributes(&attributes),
        ),
        ("OTEL_TRACES_EXPORTER".to_string(), exporter_of(t.traces)),
        ("OTEL_METRICS_EXPORTER".to_string(), exporter_of(t.metrics)),
        ("OTEL_LOGS_EXPORTER".to_string(), exporter_of(t.logs)),
        ("OTEL_TRACES_SAMPLER".to_string(), SAMPLER.to_string()),
        (
            "OTEL_TRACES_SAMPLER_ARG".to_string(),
            t.sampling_rate.to_string(),
        ),
    ]);
    if let Some(exporter) = exporter {
        env.insert(
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            exporter.endpoint.clone(),
        );
        env.insert(
            "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
            exporter.protocol.as_str().into(),
        );
    }
    env
}

/// `key1=value1,key2=value2`, in key order, values percent-encoded.
pub fn resource_attributes(attributes: &BTreeMap<String, String>) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Percent-encodes every byte other than letters, digits and `-_.~/:@` (what the
/// OpenTelemetry SDKs decode in `OTEL_RESOURCE_ATTRIBUTES` values), so `,` `=` `%`, spaces,
/// control and non-ASCII characters cannot break the list.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b':' | b'@')
        {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_values_stay_readable_and_the_rest_is_encoded() {
        assert_eq!(percent_encode("e2e/team/record-1"), "e2e/team/record-1");
        assert_eq!(percent_encode("a,b=c d%"), "a%2Cb%3Dc%20d%25");
        assert_eq!(percent_encode("ü"), "%C3%BC");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn attributes_are_sorted_by_key() {
        let attributes = BTreeMap::from([
            ("team".to_string(), "shop".to_string()),
            ("env".to_string(), "a=b".to_string()),
        ]);
        assert_eq!(resource_attributes(&attributes), "env=a%3Db,team=shop");
    }
}
