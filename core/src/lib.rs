//! The decisions of the OaaS control plane, apart from any I/O: the operators gather what
//! they know into plain data, call these functions, and carry out what they return. Their
//! tests need no cluster and run in milliseconds.
#![forbid(unsafe_code)]

pub mod decide;
pub mod placement;
pub mod planning;
pub mod resolve;
pub mod rollout;
pub mod tenancy;
pub mod unit;
pub mod wire;
