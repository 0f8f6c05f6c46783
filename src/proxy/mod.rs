//! The hot path: accept → identify → decide → forward.
pub mod activity;
pub mod auth;
pub mod body;
pub mod dial;
pub mod forward;
pub mod framing;
pub mod guard;
pub mod limits;
pub mod listener;
pub mod observe;
pub mod respond;
pub mod service;
pub mod sni;
pub mod target;
pub mod tls;
pub mod tunnel;
