//! egressd: an egress filtering HTTP/1.1 forward proxy with per-ministry YAML policies.
//!
//! # Layout
//! - [`config`]: CONTROL PATH. `egressd.yaml`, policy, category and test files: raw serde types
//!   (the only YAML call site), validation with `FILE:LINE:COLUMN` diagnostics, the validated
//!   [`config::Settings`] and [`policy::model::PolicySet`].
//! - [`policy`]: PURE. Compiles a policy set into matchers and decides
//!   `(ministry, host, port, path, time) -> Verdict`; the evaluation order is written in its docs.
//! - [`cache`]: the bounded decision cache that lives inside a snapshot.
//! - [`snapshot`]: one immutable, atomically swapped view (settings, policy, cache, identity).
//! - [`identity`]: connection -> ministry.
//! - [`proxy`]: HOT PATH. Listener, service, target parsing, dial (resolve + egress guard),
//!   forward, tunnel, and every synthetic response.
//! - OBSERVABILITY: [`metrics`] (every family, one registry the app owns), [`audit`] (the
//!   audit log writer, off the hot path, never drops), [`admin`] (`/metrics`, `/healthz`,
//!   `/readyz`, `/proxy.pac`); `proxy::observe` follows each request for both.
//! - [`app`]: composition root; [`cli`]: `run`, `check`, `explain`, `test`.
//!
//! # Life of a request
//! accept (connection caps) → hyper HTTP/1.1 → load snapshot → parse target (the absolute URI,
//! never `Host`) → identify ministry → decide (cache, then policy) → block, or resolve →
//! `destinations:` check → egress guard → connect to the checked address → forward / tunnel →
//! metrics at the response head, audit record when the response body (or the tunnel) ends.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod cache;
pub mod cli;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod snapshot;
