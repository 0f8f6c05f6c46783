//! CONNECT tunnels: check the port, decide on the target, dial (so upstream failures are still
//! a 502/504), answer 200 only once connected, then inspect the client's first bytes (its TLS
//! ClientHello and SNI, see [`super::sni`]) before a byte reaches the origin, then relay bytes
//! both ways until either side closes or the tunnel is idle for `timeouts.tunnel_idle` (no byte
//! in either direction; `timeouts.idle` unless set). The client connection keeps its slot in
//! the connection caps until the tunnel closes (the slot lives in its I/O object).
//!
//! After the 200 a block can no longer be a 403: a tunnel whose SNI is blocked is closed, and
//! the [`TunnelRecord`] says so (action block, the deciding rule, status 200 as sent).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::activity::{RequestGuard, TrackedIo};
use super::body::ProxyBody;
use super::dial;
use super::observe::Exchange;
use super::respond::{self, ErrorType};
use super::service::{self, ConnCtx, Decided};
use super::sni::{self, FirstBytes};
use super::target::{self, Target};
use crate::identity::Identified;
use crate::metrics::Metrics;
use crate::policy::host::Host;
use crate::policy::{Outcome, Verdict};
use crate::snapshot::Snapshot;

/// What happened to a tunnel once it was answered 200 (for logs, metrics and the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRecord {
    /// The ClientHello's server name, normalised, when there was one.
    pub sni: Option<Host>,
    /// The SNI's own decision, when it names another host than the CONNECT target (the same
    /// name is not decided twice). A `Block` here is the rule that closed the tunnel.
    pub sni_verdict: Option<Verdict>,
    pub end: TunnelEnd,
    /// Bytes relayed client → origin (the inspected first bytes included) and origin →
    /// client; `None` when the relay ended on the idle timeout (its counts are lost then).
    pub bytes: Option<(u64, u64)>,
}

/// How a tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Relayed until one side closed, an I/O error or the idle timeout.
    Relayed,
    /// Closed before forwarding: the SNI is blocked (`sni_verdict` holds the rule).
    SniBlocked,
    /// Closed before forwarding: the first bytes are not TLS and `tunnel.allow_non_tls` is off.
    NotTls,
    /// Closed before forwarding: the client sent nothing within `timeouts.request_header` and
    /// `tunnel.allow_non_tls` is off.
    Silent,
    /// Closed before forwarding: TLS-looking bytes that are no readable ClientHello.
    Malformed(String),
    /// The client closed before sending anything.
    ClientClosed,
    /// The inspected bytes could not be written to the origin.
    UpstreamFailed,
}

impl TunnelEnd {
    /// Whether egressd closed the tunnel as a block (audited as `action: block`).
    pub fn is_block(&self) -> bool {
        matches!(
            self,
            TunnelEnd::SniBlocked | TunnelEnd::NotTls | TunnelEnd::Silent | TunnelEnd::Malformed(_)
        )
    }
}

pub async fn handle(
    req: Request<Incoming>,
    ctx: Arc<ConnCtx>,
    snap: Arc<Snapshot>,
    who: Identified,
    guard: RequestGuard,
    ex: &mut Exchange,
) -> Response<ProxyBody> {
    let target = match target::parse_connect(req.uri()) {
        Ok(t) => t,
        Err(e) => {
            let r = respond::error(ErrorType::HttpRequestError, &e.to_string());
            return service::with_guard(r, guard);
        }
    };
    ex.target(&target, None);
    if !snap.settings.egress.connect_ports.contains(&target.port) {
        let r = respond::error(ErrorType::HttpRequestDenied, "egress.connect_ports");
        return service::with_guard(r, guard);
    }
    let mut decided = match service::decide(&ctx.shared.metrics, &snap, who, &target, None) {
        Ok(d) => d,
        Err(stop) => {
            ex.stopped(&snap, &stop);
            return service::with_guard(stop.into_answer(&snap, &target, false), guard);
        }
    };
    ex.decided(&snap, &decided);
    let addrs = match service::clear(&ctx, &snap, &target, &mut decided).await {
        Ok(a) => a,
        Err(stop) => {
            ex.stopped(&snap, &stop);
            return service::with_guard(stop.into_answer(&snap, &target, false), guard);
        }
    };
    ex.decided(&snap, &decided);
    let connect_timeout = snap.settings.timeouts.connect;
    let upstream = match dial::connect_any(&addrs, target.port, connect_timeout).await {
        Ok((s, _)) => s,
        Err(e) => return service::with_guard(service::dial_error(&e), guard),
    };
    // The relay task owns the exchange from here: it is counted once the tunnel's decision is
    // final (after the SNI) and audited when the tunnel closes.
    let mut ex = ex.tunnel(&snap, StatusCode::OK.as_u16());
    let tasks = ctx.shared.tasks.clone();
    tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let record = run(io, upstream, &ctx, snap, &decided, target, &mut ex).await;
                tracing::debug!(peer = %ctx.peer, ?record, "tunnel closed");
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
        ex.finish().await;
    });
    let mut resp = Response::new(ProxyBody::empty(Some(guard)));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// The tunnel after its 200: inspect the first bytes, forward them, relay. The snapshot is
/// released before the relay, so a long tunnel does not keep an old policy alive.
async fn run(
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    upstream: TcpStream,
    ctx: &ConnCtx,
    snap: Arc<Snapshot>,
    decided: &Decided,
    target: Target,
    ex: &mut Exchange,
) -> TunnelRecord {
    let idle = snap.settings.timeouts.tunnel_idle;
    let metrics = &ctx.shared.metrics;
    let (first, mut record) = inspect(&mut client, metrics, &snap, decided, &target).await;
    if let Some(sni) = &record.sni {
        ex.set_sni(Arc::from(sni.to_string()));
    }
    if let (TunnelEnd::SniBlocked, Some(v)) = (&record.end, record.sni_verdict) {
        // Audited and counted as a block by the SNI's rule; the client was sent 200.
        let blocked = Decided {
            who: decided.who.clone(),
            verdict: v,
        };
        ex.decided(&snap, &blocked);
    } else if record.end.is_block() {
        ex.refused_first_bytes();
    }
    if record.end != TunnelEnd::Relayed {
        log_closed(ctx, &snap, decided, &target, &record);
        ex.count();
        return record;
    }
    ex.count();
    let splice = snap.settings.tunnel.splice;
    drop(snap);
    let activity = ctx.activity.clone();
    let mut upstream = TrackedIo::new(upstream, activity.clone()).metered(ex.tunnel_meter());
    if upstream.write_all(&first).await.is_err() {
        record.end = TunnelEnd::UpstreamFailed;
        return record;
    }
    record.bytes = match plain_tcp(client) {
        Ok((mut client, unread)) => {
            if upstream.write_all(&unread).await.is_err() {
                record.end = TunnelEnd::UpstreamFailed;
                return record;
            }
            match splice.then(super::splice::Pipes::new).flatten() {
                Some(mut pipes) => {
                    let client = client.get_ref();
                    relay_spliced(client, &mut upstream, &mut pipes, &activity, idle).await
                }
                None => relay(&mut client, &mut upstream, &activity, idle).await,
            }
        }
        Err(mut client) => relay(&mut client, &mut upstream, &activity, idle).await,
    };
    // The meter saw every byte, the inspected first bytes included, even when the relay ended
    // on the idle timeout.
    if let Some(m) = upstream.meter() {
        ex.tunnel_bytes(m.written, m.read);
    }
    record
}

/// Reads and decides the client's first bytes. Returns them (to forward) and the record, whose
/// `end` is `Relayed` when the tunnel may proceed.
async fn inspect<R: AsyncRead + Unpin>(
    client: &mut R,
    metrics: &Metrics,
    snap: &Snapshot,
    decided: &Decided,
    target: &Target,
) -> (Vec<u8>, TunnelRecord) {
    let s = &snap.settings;
    // A tunnel with no byte for `timeouts.tunnel_idle` is idle, even while it is inspected.
    let wait = s.timeouts.request_header.min(s.timeouts.tunnel_idle);
    let (first, kind) = sni::read_first_bytes(client, sni::MAX_HELLO_BYTES, wait).await;
    let mut record = TunnelRecord {
        sni: None,
        sni_verdict: None,
        end: TunnelEnd::Relayed,
        bytes: None,
    };
    let allow_non_tls = s.tunnel.allow_non_tls;
    record.end = match kind {
        FirstBytes::Tls(None) => TunnelEnd::Relayed,
        FirstBytes::Tls(Some(host)) => {
            let verdict = (host != target.host)
                .then(|| decide_sni(metrics, snap, &decided.who, &host, target.port));
            record.sni = Some(host);
            record.sni_verdict = verdict;
            match verdict {
                Some(v) if v.outcome == Outcome::Block => TunnelEnd::SniBlocked,
                _ => TunnelEnd::Relayed,
            }
        }
        FirstBytes::NotTls | FirstBytes::Silent if allow_non_tls => TunnelEnd::Relayed,
        FirstBytes::NotTls => TunnelEnd::NotTls,
        FirstBytes::Silent => TunnelEnd::Silent,
        FirstBytes::Closed => TunnelEnd::ClientClosed,
        FirstBytes::Malformed(why) => TunnelEnd::Malformed(why),
    };
    (first, record)
}

/// The SNI decided like a CONNECT to it, for the same client (same decision path, cache and
/// metrics as every other decision).
fn decide_sni(
    metrics: &Metrics,
    snap: &Snapshot,
    who: &Identified,
    sni: &Host,
    port: u16,
) -> Verdict {
    let target = Target {
        host: sni.clone(),
        port,
    };
    match service::decide(metrics, snap, who.clone(), &target, None) {
        Ok(d) | Err(service::Stop::Blocked(d)) => d.verdict,
        // `decide` stops only for blocks; anything else would be a new kind of stop: fail closed.
        Err(service::Stop::Failed(_)) => snap.policy.unknown_verdict(),
    }
}

/// One log line for a tunnel egressd closed before forwarding anything.
fn log_closed(
    ctx: &ConnCtx,
    snap: &Snapshot,
    decided: &Decided,
    target: &Target,
    record: &TunnelRecord,
) {
    let ministry = match decided.who.ministry {
        Some(m) => snap.policy.ministry(m).name.clone(),
        None => Arc::from("_unknown"),
    };
    let sni = record
        .sni
        .as_ref()
        .map(|h| h.to_string())
        .unwrap_or_default();
    match (&record.end, record.sni_verdict) {
        (TunnelEnd::SniBlocked, Some(v)) => tracing::info!(
            peer = %ctx.peer, %ministry, host = %target.host, port = target.port, %sni,
            rule = %snap.policy.rule(v.rule).name,
            "tunnel closed: its SNI is blocked"
        ),
        (end, _) if end.is_block() => tracing::info!(
            peer = %ctx.peer, %ministry, host = %target.host, port = target.port, ?end,
            "tunnel closed: first bytes refused"
        ),
        (end, _) => tracing::debug!(peer = %ctx.peer, host = %target.host, ?end, "tunnel closed"),
    }
}

/// The client's own TCP socket and the bytes hyper read past the CONNECT head that nobody
/// consumed yet, when the tunnel came in on a plain listener (splice needs both sockets).
fn plain_tcp(
    client: TokioIo<hyper::upgrade::Upgraded>,
) -> Result<(TrackedIo<TcpStream>, bytes::Bytes), TokioIo<hyper::upgrade::Upgraded>> {
    match client
        .into_inner()
        .downcast::<TokioIo<TrackedIo<TcpStream>>>()
    {
        Ok(parts) => {
            // hyper's buffer holds what it read past the head; anything it never read of the
            // fast path's hand-over comes after that.
            let mut tcp = parts.io.into_inner();
            let unread = tcp.take_unread();
            let pending = if unread.is_empty() {
                parts.read_buf
            } else {
                [parts.read_buf, unread].concat().into()
            };
            Ok((tcp, pending))
        }
        Err(upgraded) => Err(TokioIo::new(upgraded)),
    }
}

/// [`relay`] with `splice(2)` between two TCP sockets (see [`super::splice`]). The counts reach
/// the upstream side's meter even when the idle timeout ends the relay.
async fn relay_spliced(
    client: &TcpStream,
    upstream: &mut TrackedIo<TcpStream>,
    pipes: &mut super::splice::Pipes,
    activity: &super::activity::Activity,
    idle: std::time::Duration,
) -> Option<(u64, u64)> {
    let counters = upstream.meter().map(|m| {
        let (up, down) = m.counters();
        (up.clone(), down.clone())
    });
    let counters = counters.as_ref().map(|(up, down)| (up, down));
    let flows = super::splice::Flows::default();
    let result = tokio::select! {
        r = super::splice::relay(client, upstream.get_ref(), pipes, activity, counters, &flows) => r,
        _ = activity.watch_idle(idle) => {
            tracing::debug!("tunnel idle timeout");
            Err(std::io::ErrorKind::TimedOut.into())
        }
    };
    let (sent, received) = flows.totals();
    if let Some(m) = upstream.meter_mut() {
        m.add_totals(sent, received);
    }
    match result {
        Ok(()) => Some((sent, received)),
        Err(e) => {
            tracing::debug!(error = %e, "tunnel closed with an error");
            None
        }
    }
}

/// Copies both ways (tunnels of the TLS listener, plain ones without pipes or with
/// `tunnel.splice: false`); the client side already stamps the connection's activity (it is
/// the tracked socket, or one underneath hyper's upgrade), the upstream side is tracked by its
/// wrapper. Returns the byte counts (client → origin, origin → client) unless the idle
/// timeout ended it.
async fn relay<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
    upstream: &mut TrackedIo<TcpStream>,
    activity: &super::activity::Activity,
    idle: std::time::Duration,
) -> Option<(u64, u64)> {
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(client, upstream, 64 * 1024, 64 * 1024) => {
            match r {
                Ok(counts) => Some(counts),
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel closed with an error");
                    None
                }
            }
        }
        _ = activity.watch_idle(idle) => {
            tracing::debug!("tunnel idle timeout");
            None
        }
    }
}
