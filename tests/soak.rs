//! Soak (on demand, `#[ignore]`): the real `egressd` binary under a bounded mixed load on
//! loopback, with configuration reloads during it, then the books are balanced.
//!
//! ```sh
//! nice -n 19 cargo test --release --test soak -- --ignored --nocapture
//! EGRESSD_SOAK_SECS=600 EGRESSD_SOAK_CLIENTS=32 nice -n 19 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! The mix: allowed, blocked and report-mode (would-block) plain requests, a host whose rule
//! flips with each reload, slow answers, streamed and uploaded bodies, an origin that refuses
//! (502), one that never answers (504), clients that give up mid-request, and CONNECT tunnels
//! (allowed and relayed, blocked, refused). Reloads: the policy file is rewritten (atomically,
//! as editors do) and SIGHUP sent, several times, once with an invalid version that must be
//! refused while the old policy keeps serving.
//!
//! Afterwards, with every client gone and the origins shut down (so no pooled upstream
//! connection is left): open file descriptors equal the idle count before the load, resident
//! memory is back near its warmed-up baseline, and every request is accounted for: client-side
//! counts == `egressd_requests_total` == audit records, by kind and action; upstream failures
//! == `egressd_upstream_errors_total` == audit `error`s; audit lines ==
//! `egressd_audit_records_total{result="written"}`, none failed. A summary table is printed;
//! any mismatch or leak fails the test.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::obs::{self, Sample};
use common::{origin, read_response, RawResponse};

/// Seconds of load after the warm-up (`EGRESSD_SOAK_SECS`, default 180).
fn duration() -> Duration {
    Duration::from_secs(env_u64("EGRESSD_SOAK_SECS", 180))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory may end this far above the warmed-up baseline (allocator slack, not a
/// leak: a leak of 100 bytes per request is ~20 MiB over the default run).
const RSS_SLACK_KIB: u64 = 8 * 1024;

// ---------------------------------------------------------------------------------------------
// The process under test
// ---------------------------------------------------------------------------------------------

/// The spawned binary; killed (by its PID) if the test fails before it is stopped.
struct Egressd {
    child: Child,
    proxy: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Egressd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `address=` field of a log line.
fn address_in(line: &str) -> Option<SocketAddr> {
    let rest = line.split("address=").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Egressd {
    fn spawn(config: &Path) -> Egressd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_egressd"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "egressd=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn egressd");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                let _ = tx.send(line.clone());
                let mut log = keep.lock().unwrap();
                // Keep the start and the latest lines: enough to explain a failure.
                if log.len() > 2000 {
                    log.drain(200..1200);
                }
                log.push(line);
            }
        });
        let (mut proxy, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while proxy.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("egressd logged its listeners");
            if line.contains("admin listening") {
                admin = address_in(&line);
            } else if line.contains("proxy listening") {
                proxy = address_in(&line);
            }
        }
        Egressd {
            child,
            proxy: proxy.unwrap(),
            admin: admin.unwrap(),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    }

    /// `VmRSS` and `VmHWM` (peak) in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn fds(&self) -> Vec<String> {
        let dir = format!("/proc/{}/fd", self.pid());
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| {
                std::fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            })
            .collect();
        out.sort();
        out
    }
}

async fn scrape(admin: SocketAddr) -> Vec<Sample> {
    let r = obs::admin_get(admin, "/metrics").await;
    assert_eq!(r.status, 200);
    obs::parse(&r.text())
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

struct Ports {
    origin: u16,
    refused: u16,
    silent: u16,
}

fn egressd_yaml(p: &Ports) -> String {
    format!(
        r#"
listen: {{proxy: 127.0.0.1:0, admin: 127.0.0.1:0}}
audit: {{file: audit.log}}
identity:
  sources:
    127.0.0.0/8: steady
    127.0.0.2/32: trial
egress:
  allow_private_cidrs: [127.0.0.0/8]
  connect_ports: [{}, {}, {}]
tunnel: {{allow_non_tls: true}}
dns:
  static:
    allowed.test: 127.0.0.1
    blocked.test: 127.0.0.1
    flip.test: 127.0.0.1
    slow.test: 127.0.0.1
    refused.test: 127.0.0.1
    silent.test: 127.0.0.1
timeouts: {{connect: 2s, response_header: 2s, shutdown_grace: 5s}}
limits: {{max_connections: 10000, max_connections_per_client: 10000}}
"#,
        p.origin, p.refused, p.silent
    )
}

const ORG: &str = "default: allow\nbaseline:\n  - id: blocked\n    action: block\n    hosts: [blocked.test]\n    reason: soak\n";
const TRIAL: &str = "ministry: trial\nmode: report\n";

/// Version `v` of the steady ministry: `flip.test` is blocked in odd versions.
fn steady(v: u32) -> String {
    let action = if v % 2 == 1 { "block" } else { "allow" };
    format!(
        "# version {v}\nministry: steady\ndefault: allow\nrules:\n  - id: flip\n    action: {action}\n    hosts: [flip.test]\n"
    )
}

/// Replaces a file the way editors and `git checkout` do (write aside, rename over).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// What the client saw, keyed like the metrics: (kind, action) and upstream error type.
#[derive(Default, Debug)]
struct Tally {
    requests: BTreeMap<(String, String), u64>,
    errors: BTreeMap<String, u64>,
    /// Answers that were not what the request type allows (any is a failure).
    unexpected: Vec<String>,
    /// Request counts by scenario, for the summary.
    scenarios: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, kind: &str, action: &str) {
        *self
            .requests
            .entry((kind.to_owned(), action.to_owned()))
            .or_default() += 1;
    }

    fn merge(&mut self, o: Tally) {
        for (k, v) in o.requests {
            *self.requests.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.scenarios {
            *self.scenarios.entry(k).or_default() += v;
        }
        self.unexpected.extend(o.unexpected);
    }
}

/// The RFC 9209 error type egressd put in `Proxy-Status`, if any.
fn error_of(r: &RawResponse) -> Option<String> {
    let ps = r.header("proxy-status")?;
    let e = ps.split("error=").nth(1)?;
    Some(e.split([';', ',', ' ']).next()?.trim().to_owned())
}

/// Records a plain request's answer; `ok` says which statuses this scenario allows.
fn record(
    t: &mut Tally,
    name: &'static str,
    kind: &str,
    r: &RawResponse,
    ok: &[u16],
    report: bool,
) {
    *t.scenarios.entry(name).or_default() += 1;
    let error = error_of(r);
    let action = match (r.status, error.as_deref()) {
        (403, Some("http_request_denied")) => "block",
        _ if report => "report",
        _ => "allow",
    };
    t.add(kind, action);
    if let Some(e) = error.filter(|e| e != "http_request_denied") {
        *t.errors.entry(e).or_default() += 1;
    }
    if !ok.contains(&r.status) && t.unexpected.len() < 50 {
        t.unexpected.push(format!(
            "{name}: {} {:?}",
            r.status,
            r.header("proxy-status")
        ));
    }
}

/// SplitMix64, seeded per client: the mix is reproducible for a given client count.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

struct Client {
    proxy: SocketAddr,
    ports: Arc<Ports>,
    rng: Rng,
    /// A keep-alive connection reused by some plain requests.
    kept: Option<TcpStream>,
    tally: Tally,
}

impl Client {
    /// Sends one plain request, on the kept connection or a fresh one, and reads the answer.
    async fn plain(&mut self, request: String, reuse: bool) -> RawResponse {
        if reuse {
            let mut s = match self.kept.take() {
                Some(s) => s,
                None => TcpStream::connect(self.proxy).await.unwrap(),
            };
            s.write_all(request.as_bytes()).await.unwrap();
            let r = read_response(&mut s).await;
            if !r
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"))
            {
                self.kept = Some(s);
            }
            return r;
        }
        let request = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
        common::raw(self.proxy, request.as_bytes()).await
    }

    async fn get(&mut self, url: String, reuse: bool) -> RawResponse {
        let host = url.split('/').nth(2).unwrap().to_owned();
        self.plain(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n"), reuse)
            .await
    }

    async fn one(&mut self) {
        let p = Arc::clone(&self.ports);
        let (o, rp, sp) = (p.origin, p.refused, p.silent);
        let reuse = self.rng.below(3) == 0;
        let t = self.rng.below(100);
        match t {
            0..=24 => {
                let r = self.get(format!("http://allowed.test:{o}/"), reuse).await;
                let ok = r.status == 200 && r.body == b"hello";
                record(
                    &mut self.tally,
                    "allowed",
                    "http",
                    &r,
                    if ok { &[200] } else { &[] },
                    false,
                );
            }
            25..=39 => {
                let r = self.get(format!("http://blocked.test:{o}/"), reuse).await;
                record(&mut self.tally, "blocked", "http", &r, &[403], false);
            }
            40..=49 => {
                let r = self.get(format!("http://flip.test:{o}/"), reuse).await;
                record(&mut self.tally, "flip", "http", &r, &[200, 403], false);
            }
            50..=55 => {
                let ms = 100 + self.rng.below(1400);
                let r = self
                    .get(format!("http://slow.test:{o}/sleep/{ms}"), reuse)
                    .await;
                record(&mut self.tally, "slow", "http", &r, &[200], false);
            }
            56..=61 => {
                let n = self.rng.below(256 * 1024) as usize;
                let r = self
                    .get(format!("http://allowed.test:{o}/bytes/{n}"), reuse)
                    .await;
                let ok = r.body == origin::pattern(n);
                record(
                    &mut self.tally,
                    "stream",
                    "http",
                    &r,
                    if ok { &[200] } else { &[] },
                    false,
                );
            }
            62..=65 => {
                let body = origin::pattern(self.rng.below(64 * 1024) as usize);
                let head = format!(
                    "POST http://allowed.test:{o}/upload HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut s = TcpStream::connect(self.proxy).await.unwrap();
                s.write_all(
                    head.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
                s.write_all(&body).await.unwrap();
                let r = read_response(&mut s).await;
                let want = format!("{} {:016x}", body.len(), origin::fnv1a(&body));
                let ok = r.text() == want;
                record(
                    &mut self.tally,
                    "upload",
                    "http",
                    &r,
                    if ok { &[200] } else { &[] },
                    false,
                );
            }
            66..=69 => {
                let r = self.get(format!("http://refused.test:{rp}/"), false).await;
                record(&mut self.tally, "refused", "http", &r, &[502], false);
            }
            70..=71 => {
                let r = self.get(format!("http://silent.test:{sp}/"), false).await;
                record(&mut self.tally, "silent", "http", &r, &[504], false);
            }
            72..=73 => self.give_up(o).await,
            74..=79 => {
                let mut s = common::connect_from("127.0.0.2", self.proxy).await;
                let req = format!("GET http://blocked.test:{o}/ HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n");
                s.write_all(req.as_bytes()).await.unwrap();
                let r = read_response(&mut s).await;
                record(&mut self.tally, "report", "http", &r, &[200], true);
            }
            80..=91 => self.tunnel("allowed.test", o, true).await,
            92..=96 => self.tunnel("blocked.test", o, false).await,
            _ => self.tunnel("refused.test", rp, false).await,
        }
    }

    /// A client that sends a slow request and goes away before the answer.
    async fn give_up(&mut self, o: u16) {
        let mut s = TcpStream::connect(self.proxy).await.unwrap();
        let req =
            format!("GET http://slow.test:{o}/sleep/1500 HTTP/1.1\r\nHost: slow.test\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50 + self.rng.below(200))).await;
        drop(s);
        *self.tally.scenarios.entry("gave-up").or_default() += 1;
        self.tally.add("http", "allow");
    }

    async fn tunnel(&mut self, host: &str, port: u16, relay: bool) {
        let mut s = TcpStream::connect(self.proxy).await.unwrap();
        let req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await;
        let name = match (host, relay) {
            ("allowed.test", _) => "connect",
            ("blocked.test", _) => "connect-blocked",
            _ => "connect-refused",
        };
        let ok: &[u16] = match name {
            "connect" => &[200],
            "connect-blocked" => &[403],
            _ => &[502],
        };
        let mut fine = true;
        if relay && r.status == 200 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let inner = read_response(&mut s).await;
            fine = inner.status == 200 && inner.body == b"hello";
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        }
        record(
            &mut self.tally,
            name,
            "connect",
            &r,
            if fine { ok } else { &[] },
            false,
        );
    }
}

async fn client(proxy: SocketAddr, ports: Arc<Ports>, seed: u64, stop: Arc<AtomicBool>) -> Tally {
    let mut c = Client {
        proxy,
        ports,
        rng: Rng(seed),
        kept: None,
        tally: Tally::default(),
    };
    while !stop.load(Ordering::Relaxed) {
        c.one().await;
        // Paced: a soak is about time and variety, not throughput (the machine is shared).
        tokio::time::sleep(Duration::from_millis(5 + c.rng.below(10))).await;
    }
    c.tally
}

/// Runs `n` clients until `stop`; their tallies, merged.
fn load(
    rt: &tokio::runtime::Runtime,
    proxy: SocketAddr,
    ports: &Arc<Ports>,
    n: u64,
    seed: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..n)
        .map(|i| rt.spawn(client(proxy, Arc::clone(ports), seed + i, Arc::clone(stop))))
        .collect()
}

fn join(rt: &tokio::runtime::Runtime, handles: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for h in handles {
        all.merge(rt.block_on(h).expect("a client task failed"));
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The books
// ---------------------------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Audit {
    lines: u64,
    requests: BTreeMap<(String, String), u64>,
    errors: BTreeMap<String, u64>,
    /// Records without an action (malformed requests): none are sent here.
    undecided: u64,
}

fn read_audit(path: &Path) -> Audit {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut a = Audit::default();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("audit line {e}: {line}"));
        a.lines += 1;
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        match (s("kind"), s("action")) {
            (Some(k), Some(act)) => *a.requests.entry((k, act)).or_default() += 1,
            _ => a.undecided += 1,
        }
        if let Some(e) = s("error").filter(|e| e != "http_request_denied") {
            *a.errors.entry(e).or_default() += 1;
        }
    }
    a
}

fn metric_requests(samples: &[Sample]) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "egressd_requests_total")
    {
        if s.value > 0.0 {
            *out.entry((s.labels["kind"].clone(), s.labels["action"].clone()))
                .or_default() += s.value as u64;
        }
    }
    out
}

fn metric_errors(samples: &[Sample]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "egressd_upstream_errors_total")
    {
        if s.value > 0.0 {
            *out.entry(s.labels["error"].clone()).or_default() += s.value as u64;
        }
    }
    out
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    obs::value(samples, name, labels).unwrap_or(0.0) as u64
}

/// Waits until the admin listener reports `name{labels}` satisfying `pred`.
fn wait_metric(
    rt: &tokio::runtime::Runtime,
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    pred: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = value(&rt.block_on(scrape(admin)), name, labels);
        if pred(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name}{labels:?} stuck at {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[test]
#[ignore = "soak: minutes of load; run with --release --test soak -- --ignored --nocapture"]
fn soak() {
    let secs = duration();
    let clients = env_u64("EGRESSD_SOAK_CLIENTS", 16);
    // Origins get their own runtime, so that shutting it down closes every upstream socket.
    let origin_rt = tokio::runtime::Runtime::new().unwrap();
    let (origin, silent) =
        origin_rt.block_on(async { (origin::start().await, origin::silent().await) });
    let ports = Arc::new(Ports {
        origin: origin.addr.port(),
        refused: origin::closed_port().port(),
        silent: silent.port(),
    });
    let tree = common::ConfigTree::new(
        &egressd_yaml(&ports),
        &[
            ("policies/_organization.yaml", ORG),
            ("policies/steady.yaml", &steady(1)),
            ("policies/trial.yaml", TRIAL),
        ],
    );
    let steady_path = tree.dir.path().join("policies/steady.yaml");
    let audit_path = tree.dir.path().join("audit.log");
    let e = Egressd::spawn(&tree.config_path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    wait_metric(&rt, e.admin, "egressd_policy_generation", &[], |g| g == 1);

    // Idle baseline, then a warm-up under the same mix (its requests count too).
    std::thread::sleep(Duration::from_secs(1));
    let fds_idle = e.fds();
    let (rss_start, _) = e.memory();
    let stop = Arc::new(AtomicBool::new(false));
    let warm = load(&rt, e.proxy, &ports, clients, 1, &stop);
    std::thread::sleep(Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    let mut tally = join(&rt, warm);
    std::thread::sleep(Duration::from_secs(3));
    let (rss_warm, _) = e.memory();

    // The soak: load, with reloads at fixed fractions of the run.
    println!(
        "soak: {clients} clients for {secs:?} (warm-up 15 s), egressd pid {}",
        e.pid()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles = load(&rt, e.proxy, &ports, clients, 1000, &stop);
    // (fraction of the run, steady.yaml version; None = an invalid file)
    let plan = [
        (0.15, Some(2)),
        (0.3, Some(3)),
        (0.45, None),
        (0.55, Some(4)),
        (0.7, Some(5)),
        (0.85, Some(6)),
    ];
    let (mut generation, mut failures, mut rss_peak) = (1u64, 0u64, 0u64);
    let mut next = 0;
    while started.elapsed() < secs {
        std::thread::sleep(Duration::from_millis(500));
        rss_peak = rss_peak.max(e.memory().0);
        if next < plan.len() && started.elapsed().as_secs_f64() >= plan[next].0 * secs.as_secs_f64()
        {
            match plan[next].1 {
                Some(v) => {
                    replace(&steady_path, &steady(v));
                    e.signal("-HUP");
                    generation += 1;
                    wait_metric(&rt, e.admin, "egressd_policy_generation", &[], |g| {
                        g == generation
                    });
                }
                None => {
                    replace(&steady_path, "ministry: steady\nrules: [\n");
                    e.signal("-HUP");
                    failures = wait_metric(
                        &rt,
                        e.admin,
                        "egressd_policy_reloads_total",
                        &[("result", "failure")],
                        |f| f > failures,
                    );
                    let g = value(
                        &rt.block_on(scrape(e.admin)),
                        "egressd_policy_generation",
                        &[],
                    );
                    assert_eq!(g, generation, "an invalid file replaced the policy");
                }
            }
            println!(
                "  {:>5.1}s reload {:?}: generation {generation}, failed reloads {failures}",
                started.elapsed().as_secs_f64(),
                plan[next].1
            );
            next += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    tally.merge(join(&rt, handles));
    let (_, rss_hwm) = e.memory();

    // Quiet: abandoned slow requests finish, then the origins go (pooled upstream sockets
    // close), and the process is left with what it had when idle.
    std::thread::sleep(Duration::from_secs(3));
    drop(origin);
    origin_rt.shutdown_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    let fds_after = loop {
        let fds = e.fds();
        if fds.len() <= fds_idle.len() || Instant::now() > deadline {
            break fds;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    std::thread::sleep(Duration::from_secs(2));
    let (rss_after, _) = e.memory();

    // The books, once the audit writer has caught up with the counters.
    let samples = rt.block_on(scrape(e.admin));
    let metrics = metric_requests(&samples);
    let counted: u64 = metrics.values().sum();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut audit = read_audit(&audit_path);
    while audit.lines < counted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        audit = read_audit(&audit_path);
    }
    let samples = rt.block_on(scrape(e.admin));
    let written = value(
        &samples,
        "egressd_audit_records_total",
        &[("result", "written")],
    );
    let audit_failed = value(
        &samples,
        "egressd_audit_records_total",
        &[("result", "failed")],
    );
    let errors = metric_errors(&samples);
    let reloads_ok = value(
        &samples,
        "egressd_policy_reloads_total",
        &[("result", "success")],
    );
    let generation_seen = value(&samples, "egressd_policy_generation", &[]);

    // Summary.
    let client_total: u64 = tally.requests.values().sum();
    println!("\nscenarios: {:?}", tally.scenarios);
    println!(
        "\n| kind/action | client | egressd_requests_total | audit |\n| --- | ---: | ---: | ---: |"
    );
    let mut keys: Vec<_> = tally
        .requests
        .keys()
        .chain(metrics.keys())
        .chain(audit.requests.keys())
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    let get =
        |m: &BTreeMap<(String, String), u64>, k: &(String, String)| m.get(k).copied().unwrap_or(0);
    for k in &keys {
        println!(
            "| {}/{} | {} | {} | {} |",
            k.0,
            k.1,
            get(&tally.requests, k),
            get(&metrics, k),
            get(&audit.requests, k)
        );
    }
    println!("| total | {client_total} | {counted} | {} |", audit.lines);
    println!("\n| upstream error | client | egressd_upstream_errors_total | audit |\n| --- | ---: | ---: | ---: |");
    let mut ekeys: Vec<_> = tally
        .errors
        .keys()
        .chain(errors.keys())
        .chain(audit.errors.keys())
        .cloned()
        .collect();
    ekeys.sort();
    ekeys.dedup();
    for k in &ekeys {
        let g = |m: &BTreeMap<String, u64>| m.get(k).copied().unwrap_or(0);
        println!(
            "| {k} | {} | {} | {} |",
            g(&tally.errors),
            g(&errors),
            g(&audit.errors)
        );
    }
    println!("\n| measure | value |\n| --- | --- |");
    println!(
        "| audit records written (metric) / lines / failed | {written} / {} / {audit_failed} |",
        audit.lines
    );
    println!("| reloads: generation / successes / failures | {generation_seen} / {reloads_ok} / {failures} |");
    // VmHWM and VmRSS are both kernel counters synced lazily: the peak is the larger of the
    // sampled RSS and the high-water mark.
    println!(
        "| RSS start / warm baseline / peak / after | {} / {} / {} / {} |",
        mib(rss_start),
        mib(rss_warm),
        mib(rss_peak.max(rss_hwm)),
        mib(rss_after)
    );
    println!(
        "| open fds idle / after | {} / {} |",
        fds_idle.len(),
        fds_after.len()
    );
    println!("| unexpected answers | {} |", tally.unexpected.len());

    // The verdict.
    assert!(
        tally.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        tally.unexpected
    );
    assert!(
        fds_after.len() <= fds_idle.len(),
        "file descriptors leaked:\nidle {fds_idle:#?}\nafter {fds_after:#?}"
    );
    assert!(
        rss_after <= rss_warm + RSS_SLACK_KIB,
        "RSS {} after vs {} warm",
        mib(rss_after),
        mib(rss_warm)
    );
    assert_eq!(
        tally.requests, metrics,
        "client counts vs egressd_requests_total"
    );
    assert_eq!(
        metrics, audit.requests,
        "egressd_requests_total vs audit records"
    );
    assert_eq!(audit.undecided, 0);
    assert_eq!(
        tally.errors, errors,
        "client errors vs egressd_upstream_errors_total"
    );
    assert_eq!(
        errors, audit.errors,
        "egressd_upstream_errors_total vs audit errors"
    );
    assert_eq!(
        (written, audit_failed),
        (audit.lines, 0),
        "audit records metric vs lines"
    );
    assert_eq!(generation_seen, generation);
    assert!(failures >= 1);

    // A clean stop: SIGTERM drains and exits 0, and the audit file holds the same records.
    e.signal("-TERM");
    let mut e = e;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = e.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "egressd did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "exit {status}; log tail: {:?}",
        e.log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        read_audit(&audit_path).lines,
        audit.lines,
        "records after shutdown"
    );
}
