//! What the renderer is told about this CRM, fixed at start-up: the profile, the features
//! that are on, the data grid's image and port, and the telemetry collector. `config.rs` builds these from the
//! environment; the renderer never reads the environment itself.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Edge,
    Full,
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

/// OTLP wire protocol of the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
        }
    }

    pub fn parse(name: &str) -> Option<OtlpProtocol> {
        match name {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            "http/json" => Some(OtlpProtocol::HttpJson),
            _ => None,
        }
    }
}

/// The OpenTelemetry collector functions with telemetry on export to.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExporter {
    /// Base URL, e.g. http://otel-collector.observability:4317.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
}

/// The start-up part of every render: built once, shared by the controller and the NFR
/// analyzer.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub profile: Profile,
    pub features: Features,
    pub odgm: OdgmSettings,
    /// Collector of the functions' telemetry (`OPRC_CRM_OTEL_EXPORTER_ENDPOINT`); unset:
    /// the OpenTelemetry SDKs' default (localhost) applies.
    pub otlp: Option<OtlpExporter>,
}
