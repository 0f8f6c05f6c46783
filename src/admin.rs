//! The admin listener (`listen.admin`, loopback by default, never the proxy port):
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | every metric family, Prometheus text format |
//! | `/healthz` | `200 ok` while the process serves HTTP at all |
//! | `/readyz` | `200 ready` once a valid policy is loaded and the proxy listeners are up; `503` before that and while draining |
//! | `/proxy.pac` | a PAC file generated from `pac:` (see [`pac`]) |
//!
//! Anything else is a 404; a method other than GET or HEAD on a known path is a 405. The admin
//! listener keeps serving while the proxy listeners drain, so `/readyz` can say 503.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::settings::Pac;
use crate::metrics::{self, Listener};
use crate::proxy::service::Shared;

/// Content type of `/proxy.pac`.
pub const PAC_CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// Readiness as `/readyz` reports it. `ready` is set once the proxy listeners are serving;
/// `draining` by the shutdown path (SIGTERM), after which `/readyz` stays 503 so a load
/// balancer takes the instance out while it drains.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }
}

/// What the admin handlers need besides [`Shared`].
pub struct AdminCtx {
    pub shared: Arc<Shared>,
    /// The bound proxy addresses, for the PAC file when `pac:` is absent.
    pub proxy_addrs: Vec<SocketAddr>,
}

/// Serves the admin listener until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<AdminCtx>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _active = ctx.shared.metrics.connection(Listener::Admin);
            let svc = service_fn(|req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(&ctx, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            // Scrapers keep connections alive; none outlives five minutes.
            let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
        });
    }
}

fn route(ctx: &AdminCtx, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | "/proxy.pac");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let shared = &ctx.shared;
    match path {
        "/metrics" => {
            let entries = shared.snapshot.load().cache.len();
            let body = shared.metrics.render(entries);
            with_type(StatusCode::OK, metrics::CONTENT_TYPE, body)
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if shared.health.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" if shared.health.is_draining() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        _ => {
            let snap = shared.snapshot.load();
            let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
            let body = match &snap.settings.pac {
                Some(p) => pac(p),
                None => pac(&default_pac(&ctx.proxy_addrs, host)),
            };
            with_type(StatusCode::OK, PAC_CONTENT_TYPE, body)
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body.to_owned())
}

fn with_type(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The PAC settings used when `pac:` is absent: every proxy listener, nothing direct. A
/// listener on an unspecified address (`0.0.0.0`) is named by the host the client used to
/// fetch the PAC file, since `0.0.0.0` means nothing to a browser.
pub fn default_pac(proxy_addrs: &[SocketAddr], request_host: Option<&str>) -> Pac {
    let fetched_from = request_host.map(|h| match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => {
            name.to_owned()
        }
        _ => h.to_owned(),
    });
    let proxies = proxy_addrs
        .iter()
        .map(|a| match (a.ip().is_unspecified(), &fetched_from) {
            (true, Some(h)) => format!("{h}:{}", a.port()),
            _ => a.to_string(),
        })
        .collect();
    Pac {
        proxies,
        direct_domains: Vec::new(),
        direct_cidrs: Vec::new(),
    }
}

/// A JavaScript string literal (JSON's escaping is valid JavaScript).
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The PAC file (`FindProxyForURL`) for `pac`:
/// - `direct_domains` go `DIRECT`, each with its subdomains, on label boundaries
///   (`intra.example` covers `a.intra.example`, not `xintra.example`);
/// - `direct_cidrs` go `DIRECT` when the URL's host **is an IP literal** in the range. Names are
///   never resolved: `isInNet(name, …)` and `dnsResolve` make the browser do a blocking DNS
///   lookup on its PAC thread for every URL, and behind an egress proxy clients often cannot
///   resolve external names at all, so every page would wait for a DNS timeout. Put internal
///   names in `direct_domains`. IPv4 ranges use `isInNet` with a dotted mask (every browser);
///   IPv6 ranges use `isInNetEx` where the browser has it (Chrome, Edge) and are skipped where
///   it does not (Firefox), which then uses the proxy;
/// - everything else: `PROXY a; PROXY b` in order, with no `DIRECT` fallback: an egress proxy
///   that is down must not turn into unfiltered access.
pub fn pac(pac: &Pac) -> String {
    let mut s = String::with_capacity(1024);
    s.push_str("// egressd proxy auto-configuration, generated from the `pac:` settings.\n");
    s.push_str("function FindProxyForURL(url, host) {\n");
    s.push_str("  host = host.toLowerCase();\n");
    s.push_str("  if (host.charAt(0) == \"[\") host = host.substring(1, host.length - 1);\n");
    s.push_str(
        "  if (host.charAt(host.length - 1) == \".\") host = host.substring(0, host.length - 1);\n",
    );
    for d in &pac.direct_domains {
        let _ = writeln!(
            s,
            "  if (host == {} || dnsDomainIs(host, {})) return \"DIRECT\";",
            js(d),
            js(&format!(".{d}"))
        );
    }
    let v4: Vec<_> = pac
        .direct_cidrs
        .iter()
        .filter(|n| n.addr().is_ipv4())
        .collect();
    let v6: Vec<_> = pac
        .direct_cidrs
        .iter()
        .filter(|n| n.addr().is_ipv6())
        .collect();
    if !v4.is_empty() {
        s.push_str("  if (/^\\d{1,3}(\\.\\d{1,3}){3}$/.test(host)) {\n");
        for n in v4 {
            let _ = writeln!(
                s,
                "    if (isInNet(host, {}, {})) return \"DIRECT\";",
                js(&n.network().to_string()),
                js(&n.netmask().to_string())
            );
        }
        s.push_str("  }\n");
    }
    if !v6.is_empty() {
        s.push_str("  if (host.indexOf(\":\") >= 0 && typeof isInNetEx == \"function\") {\n");
        for n in v6 {
            let _ = writeln!(
                s,
                "    if (isInNetEx(host, {})) return \"DIRECT\";",
                js(&n.trunc().to_string())
            );
        }
        s.push_str("  }\n");
    }
    let proxies: Vec<String> = pac.proxies.iter().map(|p| format!("PROXY {p}")).collect();
    let _ = writeln!(s, "  return {};", js(&proxies.join("; ")));
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pac_lists_direct_rules_then_proxies() {
        let p = Pac {
            proxies: vec!["proxy.example.gov:3128".into(), "10.1.1.1:3128".into()],
            direct_domains: vec!["intra.example".into()],
            direct_cidrs: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        let js = pac(&p);
        assert!(js.contains(r#"if (host == "intra.example" || dnsDomainIs(host, ".intra.example")) return "DIRECT";"#), "{js}");
        assert!(
            js.contains(r#"if (isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";"#),
            "{js}"
        );
        assert!(
            js.contains(r#"if (isInNetEx(host, "fd00::/8")) return "DIRECT";"#),
            "{js}"
        );
        assert!(
            js.contains(r#"return "PROXY proxy.example.gov:3128; PROXY 10.1.1.1:3128";"#),
            "{js}"
        );
        assert!(!js.contains("dnsResolve"));
    }

    #[test]
    fn default_pac_names_unspecified_listeners_by_the_request_host() {
        let addrs: Vec<SocketAddr> = vec![
            "0.0.0.0:3128".parse().unwrap(),
            "127.0.0.1:3129".parse().unwrap(),
        ];
        let p = default_pac(&addrs, Some("proxy.example.gov:9090"));
        assert_eq!(p.proxies, ["proxy.example.gov:3128", "127.0.0.1:3129"]);
        let p = default_pac(&addrs, None);
        assert_eq!(p.proxies, ["0.0.0.0:3128", "127.0.0.1:3129"]);
    }

    #[test]
    fn readiness() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.set_ready();
        assert!(h.is_ready());
        h.set_draining();
        assert!(!h.is_ready() && h.is_draining());
    }
}
