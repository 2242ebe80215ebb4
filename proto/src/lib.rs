//! Generated types of the OaaS gRPC contract (see `proto/oaas/*.proto`), and its services
//! with the `grpc` feature.
//! `grpc.health.v1` comes from the `tonic-health` crate.
#![forbid(unsafe_code)]
#![allow(clippy::all)] // generated code

pub mod common {
    include!(concat!(env!("OUT_DIR"), "/oaas.common.rs"));
}
pub mod package {
    include!(concat!(env!("OUT_DIR"), "/oaas.package.rs"));
}
pub mod deployment {
    include!(concat!(env!("OUT_DIR"), "/oaas.deployment.rs"));
}
pub mod crm {
    include!(concat!(env!("OUT_DIR"), "/oaas.crm.rs"));
}
