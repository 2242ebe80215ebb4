//! Generated types and services of the OaaS gRPC contract (see `proto/oaas/*.proto`).
//! `grpc.health.v1` comes from the `tonic-health` crate.
#![forbid(unsafe_code)]
#![allow(clippy::all)] // generated code

pub mod common {
    tonic::include_proto!("oaas.common");
}
pub mod package {
    tonic::include_proto!("oaas.package");
}
pub mod deployment {
    tonic::include_proto!("oaas.deployment");
}
pub mod crm {
    tonic::include_proto!("oaas.crm");
}
