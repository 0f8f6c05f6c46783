//! CONNECT tunnels: check the port, decide on the target, dial (so upstream failures are still
//! a 502/504), answer 200 only once connected, then relay bytes both ways until either side
//! closes or the tunnel is idle for `timeouts.idle`.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::activity::{RequestGuard, TrackedIo};
use super::body::ProxyBody;
use super::dial;
use super::observe::Exchange;
use super::respond::{self, ErrorType};
use super::service::{self, ConnCtx};
use super::target;
use crate::snapshot::Snapshot;

pub async fn handle(
    req: Request<Incoming>,
    ctx: Arc<ConnCtx>,
    snap: Arc<Snapshot>,
    guard: RequestGuard,
    ex: &mut Exchange,
) -> Response<ProxyBody> {
    let target = match target::parse_connect(req.uri()) {
        Ok(t) => t,
        Err(e) => {
            let r = respond::error(ErrorType::HttpRequestError, &e.to_string());
            return r.map(|b| ProxyBody::local(b, Some(guard)));
        }
    };
    ex.target(&target, None);
    if !snap.settings.egress.connect_ports.contains(&target.port) {
        let r = respond::error(ErrorType::HttpRequestDenied, "egress.connect_ports");
        return r.map(|b| ProxyBody::local(b, Some(guard)));
    }
    let mut decided = match service::decide(&ctx, &snap, &target, None) {
        Ok(d) => d,
        Err(stop) => {
            ex.stopped(&snap, &stop);
            return service::with_guard(stop.into_response(&snap, &target, None), guard);
        }
    };
    ex.decided(&snap, &decided);
    let addrs = match service::clear(&ctx, &snap, &target, &mut decided).await {
        Ok(a) => a,
        Err(stop) => {
            ex.stopped(&snap, &stop);
            return service::with_guard(stop.into_response(&snap, &target, None), guard);
        }
    };
    ex.decided(&snap, &decided);
    let connect_timeout = snap.settings.timeouts.connect;
    let upstream = match dial::connect_any(&addrs, target.port, connect_timeout).await {
        Ok(s) => s,
        Err(e) => return service::with_guard(service::dial_error(&e), guard),
    };
    let idle = snap.settings.timeouts.idle;
    let activity = ctx.activity.clone();
    let mut ex = ex.tunnel(&snap, StatusCode::OK.as_u16());
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => relay(TokioIo::new(upgraded), upstream, activity, idle, &mut ex).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
        ex.finish().await;
    });
    let mut resp = Response::new(ProxyBody::empty(Some(guard)));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Copies both ways; the client side already stamps the connection's activity (its I/O is
/// tracked underneath hyper's upgrade), the upstream side is tracked and metered here.
async fn relay(
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    upstream: TcpStream,
    activity: Arc<super::activity::Activity>,
    idle: std::time::Duration,
    ex: &mut Exchange,
) {
    // The decision is final once the tunnel is up (issue #5 decides the SNI before this).
    ex.count();
    let mut upstream = TrackedIo::new(upstream, activity.clone()).metered(ex.tunnel_meter());
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, 64 * 1024, 64 * 1024) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tunnel closed with an error");
            }
        }
        _ = activity.watch_idle(idle) => tracing::debug!("tunnel idle timeout"),
    }
    if let Some(m) = upstream.meter() {
        ex.tunnel_bytes(m.written, m.read);
    }
}
