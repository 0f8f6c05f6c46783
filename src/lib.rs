//! egressd: an egress filtering HTTP/1.1 forward proxy with per-ministry YAML policies.
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod policy;
