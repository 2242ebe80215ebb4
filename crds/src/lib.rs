//! Custom resource types of the OaaS control plane.
#![forbid(unsafe_code)]
