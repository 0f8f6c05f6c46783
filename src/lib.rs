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
//! - [`identity`]: certificate patterns, source CIDRs, default ministry (the per-request walk
//!   with credentials is [`proxy::auth::identify`]).
//! - [`proxy`]: HOT PATH. Listeners (plain and TLS), the fast path and its origin connections,
//!   identity and credentials, service, target parsing, dial (resolve + egress guard), forward, tunnel with SNI inspection, and every
//!   synthetic response.
//! - [`app`]: composition root; [`cli`]: `run`, `check`, `explain`, `test`.
//!
//! - OBSERVABILITY: [`metrics`] (every family, one registry the app owns), [`audit`] (the
//!   audit log writer, off the hot path, never drops), [`admin`] (`/metrics`, `/healthz`,
//!   `/readyz`, `/proxy.pac`); `proxy::observe` follows each request for both.
//! # Life of a request
//! accept (connection caps, TLS handshake on the TLS listener) → HTTP/1.1: plain GET/HEAD on
//! `proxy::fast` (httparse), anything else hands the connection to hyper → load snapshot
//! → framing check (`proxy::framing`) → identify (client certificate, `Proxy-Authorization`,
//! source CIDR, default) → parse target (the absolute URI, never `Host`) → decide (cache, then
//! policy) → block, or resolve → `destinations:` check → egress guard → connect to the checked
//! address → forward, or tunnel: 200, read the ClientHello, decide its SNI, relay.
//! Metrics are recorded at the response head, the audit record when the response body (or
//! the tunnel) ends.
//!
//! # Threads
//! The binary serves the plain proxy listener on one thread per core (`EGRESSD_PROXY_THREADS`,
//! [`app::Options::per_core`]), each a single-thread runtime with its own `SO_REUSEPORT`
//! socket and origin pool, so a connection, its origin connections and its timers stay on the
//! thread that accepted it; a multi-thread runtime (a worker per CPU) serves the TLS listener,
//! admin, reloads and signals, and the plain listener too with `EGRESSD_PROXY_THREADS=0` or
//! when embedded with the default [`app::Options`]. The audit writer has its own thread.
//! Everything the threads share (snapshot, caps, metrics, audit queue) is atomics or
//! lock-free.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod cache;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod snapshot;
