//! One request, start to finish: load the snapshot, parse the target, identify, decide, then
//! block, or resolve + guard + forward (plain HTTP) / tunnel (CONNECT). Every synthetic answer
//! comes from `respond`. An [`Exchange`] follows each request for its metrics and audit record.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use chrono::DateTime;
use chrono::Utc;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::activity::{Activity, RequestGuard};
use super::auth;
use super::body::ProxyBody;
use super::dial::{self, Addrs, DialError, Resolver};
use super::forward;
use super::framing;
use super::limits::{self, ConnLimiter};
use super::observe::Exchange;
use super::origin::OriginPool;
use super::respond::{self, Answer, BlockPage, ErrorType};
use super::target::{self, Target};
use super::tls::TlsPeer;
use super::tunnel;
use super::upstream::Pool;
use crate::admin::Health;
use crate::audit::AuditLog;
use crate::identity::Identified;
use crate::metrics::Metrics;
use crate::policy::host::Host;
use crate::policy::{HostVerdict, Kind, MinistryId, Outcome, RuleId, Verdict};
use crate::snapshot::Snapshot;

/// Process-wide state of the hot path. `snapshot` is swapped atomically by reloads; the
/// atomics inside `limiter` and `connect_timeout_ms` follow it.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub resolver: Resolver,
    /// Idle origin connections for plain-HTTP forwarding.
    pub upstreams: Arc<Pool>,
    /// Idle origin connections of the fast path.
    pub origins: Arc<OriginPool>,
    pub connect_timeout_ms: Arc<AtomicU64>,
    pub limiter: Arc<ConnLimiter>,
    /// Every connection and tunnel task, so a drain can wait for them.
    pub tasks: TaskTracker,
    /// Cancelled when the drain starts: connections finish their request and close.
    pub draining: CancellationToken,
    /// TLS listener handshakes that failed or timed out: `egressd_tls_handshake_failures_total`.
    pub tls_handshake_failures: IntCounter,
    /// The app's metric families (per-policy handles live in the snapshot).
    pub metrics: Arc<Metrics>,
    /// The audit queue's sending side.
    pub audit: AuditLog,
    /// Readiness and draining, for `/readyz`.
    pub health: Health,
}

impl Shared {
    /// The state of a server about to serve `snap`: everything but what the caller chooses
    /// (the resolver, the metrics and audit log `snap` was built with) follows from `snap`'s
    /// settings or starts empty. The one constructor, so a new field cannot be forgotten by
    /// the app or the in-process fuzz harness.
    pub fn new(snap: Snapshot, resolver: Resolver, metrics: Arc<Metrics>, audit: AuditLog) -> Self {
        let s = &snap.settings;
        let connect_timeout_ms = Arc::new(AtomicU64::new(s.timeouts.connect.as_millis() as u64));
        let limiter = ConnLimiter::new(
            s.limits.max_connections,
            s.limits.max_connections_per_client,
        );
        Shared {
            snapshot: ArcSwap::from_pointee(snap),
            resolver,
            upstreams: Pool::new(connect_timeout_ms.clone()),
            origins: Arc::default(),
            connect_timeout_ms,
            limiter,
            tasks: TaskTracker::new(),
            draining: CancellationToken::new(),
            tls_handshake_failures: metrics.tls_handshake_failures(),
            metrics,
            audit,
            health: Health::default(),
        }
    }
}

/// Per-connection context handed to every request of the connection.
pub struct ConnCtx {
    pub peer: SocketAddr,
    /// Idle origin connections for this connection's requests: the serving thread's own pool
    /// when the proxy runs one runtime per core, else `shared.upstreams`.
    pub upstreams: Arc<Pool>,
    /// The fast path's idle origin connections, chosen the same way.
    pub origins: Arc<OriginPool>,
    pub activity: Arc<Activity>,
    pub shared: Arc<Shared>,
    /// `Some` on the TLS listener: what its handshake established (client certificate names).
    pub tls: Option<TlsPeer>,
}

pub async fn handle(
    req: Request<Incoming>,
    ctx: Arc<ConnCtx>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (begun, who) = begin(&req, limits::HeadSize::of(req.headers()), &ctx).await;
    let Begun {
        guard,
        snap,
        mut ex,
    } = begun;
    let who = match who {
        Ok(who) => who,
        Err(answer) => return Ok(ex.respond(&snap, with_guard(answer, guard))),
    };
    let resp = if req.method() == Method::CONNECT {
        tunnel::handle(req, ctx.clone(), snap.clone(), who, guard, &mut ex).await
    } else {
        forward_http(req, &ctx, &snap, who, guard, &mut ex).await
    };
    Ok(ex.respond(&snap, resp))
}

/// A request whose head arrived: in flight on its connection, with the snapshot it is decided
/// by and its exchange open.
pub struct Begun {
    pub guard: RequestGuard,
    pub snap: Arc<Snapshot>,
    pub ex: Exchange,
}

/// What every request goes through first, whichever HTTP/1 path parsed it: the audit queue's
/// admission, the head limits, framing and identification. `Err` is the answer to send instead.
///
/// `size`: the head's header fields as sent ([`limits::HeadSize::of`] `req`'s, unless the caller
/// left fields the service does not read out of `req`).
pub async fn begin<B>(
    req: &Request<B>,
    size: limits::HeadSize,
    ctx: &ConnCtx,
) -> (Begun, Result<Identified, Answer>) {
    let guard = ctx.activity.begin_request();
    // A full audit queue holds new requests back rather than losing records.
    ctx.shared.audit.admit().await;
    let snap = ctx.shared.snapshot.load_full();
    let mut ex = Exchange::begin(ctx, req, &snap);
    let who = check_and_identify(req, size, ctx, &snap, &mut ex).await;
    (Begun { guard, snap, ex }, who)
}

async fn check_and_identify<B>(
    req: &Request<B>,
    size: limits::HeadSize,
    ctx: &ConnCtx,
    snap: &Snapshot,
    ex: &mut Exchange,
) -> Result<Identified, Answer> {
    if let Err(limit) = limits::check_head_sized(req, size, &snap.settings.limits) {
        return Err(respond::head_too_large(limit.status(), limit.setting()));
    }
    if let Err(e) = framing::check(req.method(), req.headers()) {
        return Err(e.response());
    }
    let who = auth::identify(req.headers(), ctx, snap).await?;
    if let Some(user) = &who.user {
        ex.set_user(user.clone());
    }
    Ok(who)
}

/// Who asked and what the policy said.
#[derive(Clone, Debug)]
pub struct Decided {
    pub who: Identified,
    pub verdict: Verdict,
}

/// Why a request goes no further; turned into an answer by [`Stop::into_answer`].
#[derive(Debug)]
pub enum Stop {
    /// A policy block (from the decision or from `destinations:` after resolution).
    Blocked(Decided),
    /// Resolution, the egress guard or the connection failed.
    Failed(DialError),
}

impl Stop {
    /// `html`: the client accepts an HTML block page ([`respond::accepts_html`]).
    pub fn into_answer(self, snap: &Snapshot, target: &Target, html: bool) -> Answer {
        match self {
            Stop::Blocked(d) => block_answer(snap, d, target, html),
            Stop::Failed(e) => dial_error(&e),
        }
    }
}

/// Decides `target` for the identified client `who` (cache first). A block is a [`Stop`].
pub fn decide(
    metrics: &Metrics,
    snap: &Snapshot,
    who: Identified,
    target: &Target,
    path: Option<&str>,
) -> Result<Decided, Stop> {
    let verdict = match who.ministry {
        None => snap.policy.unknown_verdict(),
        Some(m) => cached_verdict(metrics, snap, m, target, path, Utc::now()).1,
    };
    let decided = Decided { who, verdict };
    if decided.verdict.outcome == Outcome::Block {
        return Err(Stop::Blocked(decided));
    }
    Ok(decided)
}

/// The host's verdict from the decision cache (or the policy) and the request's verdict, timed
/// and counted in the decision metrics.
fn cached_verdict(
    metrics: &Metrics,
    snap: &Snapshot,
    ministry: MinistryId,
    target: &Target,
    path: Option<&str>,
    now: DateTime<Utc>,
) -> (HostVerdict, Verdict) {
    let started = Instant::now();
    let (host, hit) =
        (snap.cache).host_verdict(&snap.policy, ministry, &target.host, target.port, now);
    let verdict = host.finish(&snap.policy, path);
    metrics.decision(hit, started.elapsed());
    (host, verdict)
}

/// Resolves the target, applies `destinations:` block rules to the resolved addresses, then the
/// egress guard. Returns the checked addresses; `decided` becomes the destination rule's verdict
/// when one applied in report mode.
pub async fn clear(
    ctx: &ConnCtx,
    snap: &Snapshot,
    target: &Target,
    decided: &mut Decided,
) -> Result<Addrs, Stop> {
    let s = &snap.settings;
    let addrs = (ctx.shared.resolver)
        .resolve(&target.host, &s.dns.static_hosts, s.timeouts.connect)
        .await
        .map_err(Stop::Failed)?;
    // Explicit `destinations:` block rules first: a policy rule names the reason better than
    // the guard's generic refusal, and its report mode must apply.
    if let (Some(_), Some(m)) = (target.host.name(), decided.who.ministry) {
        if let Some(v) = snap
            .policy
            .check_resolved(m, &addrs, target.port, Utc::now())
        {
            decided.verdict = v;
            if v.outcome == Outcome::Block {
                return Err(Stop::Blocked(decided.clone()));
            }
        }
    }
    dial::check_guard(&addrs, &s.egress.allow_private_cidrs).map_err(Stop::Failed)?;
    Ok(addrs)
}

async fn forward_http(
    mut req: Request<Incoming>,
    ctx: &ConnCtx,
    snap: &Snapshot,
    who: Identified,
    guard: RequestGuard,
    ex: &mut Exchange,
) -> Response<ProxyBody> {
    let (addrs, target) = match route(&req, ctx, snap, who, ex, None).await {
        Ok(routed) => routed,
        Err(resp) => return with_guard(resp, guard),
    };
    if let Err(e) = forward::prepare_request(&mut req, &target, forwarded_for(ctx, snap)) {
        let resp = respond::error(e, "request cannot be forwarded");
        return with_guard(resp, guard);
    }
    let req = req.map(|body| ex.meter_request(body));
    let timeout = snap.settings.timeouts.response_header;
    let send = ctx.upstreams.send(&addrs, target.port, req);
    match tokio::time::timeout(timeout, send).await {
        Err(_) => with_guard(
            respond::error(ErrorType::HttpResponseTimeout, &target.host.to_string()),
            guard,
        ),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, host = %target.host, "upstream request failed");
            with_guard(
                respond::error(e.error_type(), &target.host.to_string()),
                guard,
            )
        }
        Ok(Ok((resp, lease))) => {
            let (mut parts, body) = resp.into_parts();
            forward::prepare_response(&mut parts.headers);
            Response::from_parts(parts, ProxyBody::upstream(body, lease, Some(guard)))
        }
    }
}

/// A plain request from its target to the origin addresses it may go to: parse the absolute
/// target, decide, resolve and check. `Err` is the answer instead (a block, a bad target, a
/// failed resolution). The caller rewrites the request for the origin.
///
/// `memo`: the client connection's [`RouteMemo`] (the fast path keeps one per connection).
pub async fn route<B>(
    req: &Request<B>,
    ctx: &ConnCtx,
    snap: &Snapshot,
    who: Identified,
    ex: &mut Exchange,
    mut memo: Option<&mut RouteMemo>,
) -> Result<(Addrs, Target), Answer> {
    let uri = req.uri();
    let path = uri.path_and_query().map(|p| p.as_str());
    let bad_target =
        |e: target::TargetError| respond::error(ErrorType::HttpRequestError, &e.to_string());
    // Whether the memo's entry is this request's route (found, or just remembered).
    let mut memo_here = false;
    let (target, verdict, checked) = match who.ministry {
        None => {
            let target = target::parse_absolute(uri).map_err(bad_target)?;
            (target, snap.policy.unknown_verdict(), None)
        }
        Some(m) => {
            // A remembered route is timed (its lookup included) and counted as the cache hit
            // it stands for; a miss is timed by `cached_verdict` alone.
            let started = Instant::now();
            let found = memo
                .as_deref()
                .and_then(|r| r.find(snap, m, uri, SystemTime::now()));
            match found {
                Some(known) => {
                    let verdict = known.host.finish(&snap.policy, path);
                    ctx.shared.metrics.decision(true, started.elapsed());
                    memo_here = true;
                    (known.target.clone(), verdict, known.addrs.clone())
                }
                None => {
                    let target = target::parse_absolute(uri).map_err(bad_target)?;
                    let (host, verdict) =
                        cached_verdict(&ctx.shared.metrics, snap, m, &target, path, Utc::now());
                    if let Some(r) = memo.as_deref_mut() {
                        memo_here = r.remember(snap, m, uri, &target, host);
                    }
                    (target, verdict, None)
                }
            }
        }
    };
    ex.target(&target, Some(uri));
    let mut decided = Decided { who, verdict };
    if verdict.outcome == Outcome::Block {
        let stop = Stop::Blocked(decided);
        ex.stopped(snap, &stop);
        let html = respond::accepts_html(req.headers());
        let make = || stop.into_answer(snap, &target, html);
        return Err(match memo.filter(|_| memo_here) {
            Some(r) => r.block_answer(verdict.rule, html, make),
            None => make(),
        });
    }
    ex.decided(snap, &decided);
    if let Some(addrs) = checked {
        return Ok((addrs, target));
    }
    let addrs = match clear(ctx, snap, &target, &mut decided).await {
        Ok(a) => a,
        Err(stop) => {
            ex.stopped(snap, &stop);
            return Err(stop.into_answer(snap, &target, respond::accepts_html(req.headers())));
        }
    };
    // Noted again only when a `destinations:` rule in report mode changed it: each note
    // clones shared handles whose counts every worker thread touches.
    if decided.verdict != verdict {
        ex.decided(snap, &decided);
    }
    if let (Some(r), Host::Ip(_)) = (memo, &target.host) {
        // An address target's checked addresses follow from the target and the snapshot's
        // settings alone (no resolution, no `destinations:` check by name).
        r.checked(snap, &target, &addrs);
    }
    Ok((addrs, target))
}

/// The last plain request's route on a client connection, for the next request to the same
/// target: most keep-alive clients send every request to one origin, and parsing the target
/// and the shared cache's lookup cost as much as the rest of the decision.
///
/// It never answers what the policy would not: an entry holds the host's verdict from the
/// shared cache (or policy) with its validity and is used only for the same target text
/// (scheme and authority, byte for byte), the same ministry and the same snapshot, while that
/// verdict is valid; the path still goes through [`HostVerdict::finish`]. A name target is
/// resolved and checked again each time (resolution has its own cache and TTLs); an address
/// target also keeps its checked addresses.
///
/// [`HostVerdict::finish`]: crate::policy::HostVerdict::finish
#[derive(Default)]
pub struct RouteMemo(Option<Remembered>);

struct Remembered {
    snapshot: u64,
    ministry: MinistryId,
    /// The authority as the request wrote it (the scheme was `http`).
    authority: Vec<u8>,
    target: Target,
    host: HostVerdict,
    /// `host`'s validity as the clock's own type: checked for every request, and a calendar
    /// date is several times the cost of a clock read.
    valid: (SystemTime, SystemTime),
    /// An address target's addresses, once they passed the egress guard.
    addrs: Option<Addrs>,
    /// The last block answer to this target: its rule and whether it is the HTML page. Its
    /// text depends on nothing else the entry does not pin (snapshot, ministry, target).
    answer: Option<(RuleId, bool, Answer)>,
}

impl RouteMemo {
    fn find(
        &self,
        snap: &Snapshot,
        ministry: MinistryId,
        uri: &Uri,
        now: SystemTime,
    ) -> Option<&Remembered> {
        let r = self.0.as_ref()?;
        let same = r.snapshot == snap.serial
            && r.ministry == ministry
            && uri
                .scheme_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("http"))
            && uri
                .authority()
                .is_some_and(|a| a.as_str().as_bytes() == r.authority.as_slice())
            && r.valid.0 <= now
            && now < r.valid.1;
        same.then_some(r)
    }

    /// Remembers `target`'s route; `false` (and the memo unchanged) for a URI without an
    /// authority.
    fn remember(
        &mut self,
        snap: &Snapshot,
        ministry: MinistryId,
        uri: &Uri,
        target: &Target,
        host: HostVerdict,
    ) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        // The previous entry's buffer is reused: a connection that moves between origins
        // does not allocate for each.
        let mut text = self.0.take().map(|r| r.authority).unwrap_or_default();
        text.clear();
        text.extend_from_slice(authority.as_str().as_bytes());
        self.0 = Some(Remembered {
            snapshot: snap.serial,
            ministry,
            authority: text,
            target: target.clone(),
            valid: (host.valid_from().into(), host.valid_until().into()),
            host,
            addrs: None,
            answer: None,
        });
        true
    }

    /// The block answer for `rule` to the remembered target, made by `make` once per entry
    /// (per rule and page kind): a client refused on a kept-alive connection tends to ask
    /// again, and the page costs more to write than the rest of the refusal.
    fn block_answer(&mut self, rule: RuleId, html: bool, make: impl FnOnce() -> Answer) -> Answer {
        let Some(r) = self.0.as_mut() else {
            return make();
        };
        match &r.answer {
            Some((id, h, a)) if *id == rule && *h == html => a.clone(),
            _ => {
                let a = make();
                r.answer = Some((rule, html, a.clone()));
                a
            }
        }
    }

    fn checked(&mut self, snap: &Snapshot, target: &Target, addrs: &[IpAddr]) {
        if let Some(r) = self.0.as_mut() {
            if r.snapshot == snap.serial && r.target == *target {
                r.addrs = Some(Addrs::from_slice(addrs));
            }
        }
    }
}

/// The client address for `X-Forwarded-For`, when configured.
pub fn forwarded_for(ctx: &ConnCtx, snap: &Snapshot) -> Option<IpAddr> {
    snap.settings
        .forwarding
        .x_forwarded_for
        .then(|| ctx.peer.ip())
}

fn block_answer(snap: &Snapshot, decided: Decided, target: &Target, html: bool) -> Answer {
    let rule = snap.policy.rule(decided.verdict.rule);
    let (name, contact) = match decided.who.ministry {
        Some(m) => {
            let info = snap.policy.ministry(m);
            (info.name.as_ref(), info.contact.as_deref())
        }
        None => ("_unknown", snap.policy.organization_contact()),
    };
    let host = match target.host.name() {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(target.host.to_string()),
    };
    let page = BlockPage {
        ministry: name,
        rule: &rule.name,
        reason: rule.reason.as_deref(),
        contact,
        host: &host,
    };
    respond::blocked(&page, html)
}

pub fn dial_error(e: &DialError) -> Answer {
    tracing::debug!(error = %e, "dial failed");
    respond::error(e.error_type(), &e.to_string())
}

/// Attaches the request guard to a response built without one.
pub fn with_guard(
    resp: impl Into<Response<ProxyBody>>,
    guard: RequestGuard,
) -> Response<ProxyBody> {
    let (parts, body) = resp.into().into_parts();
    Response::from_parts(parts, body.with_guard(guard))
}

/// Kind of a request, for logs and metrics.
pub fn kind_of(method: &Method) -> Kind {
    if method == Method::CONNECT {
        Kind::Connect
    } else {
        Kind::Http
    }
}
