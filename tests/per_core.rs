//! The plain proxy listener served by one single-thread runtime per core (`Options::per_core`,
//! what the binary does): every thread has its own `SO_REUSEPORT` socket on the one address and
//! its own origin pool; the kernel spreads connections over them, and the drain closes them all.

mod common;

use std::time::Duration;

use common::{obs, origin};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// CPU time so far (ns, from `/proc/self/task/*/schedstat`) of this process's per-core threads.
fn core_threads() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("egressd-core-") {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
            let ns = stat.split_whitespace().next().unwrap().parse().unwrap();
            out.push((comm.trim().to_owned(), ns));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_per_core_threads_and_the_drain_closes_them() {
    let o = origin::start().await;
    let before = core_threads();
    let opts = egressd::app::Options {
        per_core: 2,
        ..Default::default()
    };
    let p = common::start_with(common::standard_tree(""), opts).await;
    // Past each thread's start-up work (the pool sweeper ticks once at once, then every 5 s).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let threads = core_threads();
    let new: Vec<_> = threads.iter().filter(|t| !before.contains(t)).collect();
    assert!(new.len() >= 2, "per-core threads: {threads:?}");

    // 40 keep-alive connections, 5 requests each, from 40 source ports: the kernel's
    // SO_REUSEPORT hash puts connections on both sockets (all on one: p = 2^-39).
    let url = format!("http://allowed.test:{}/", o.addr.port());
    let mut clients = Vec::new();
    for _ in 0..40 {
        let (addr, url) = (p.addr, url.clone());
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for _ in 0..5 {
                let req = format!("GET {url} HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
                s.write_all(req.as_bytes()).await.unwrap();
                let r = common::read_response(&mut s).await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(r.text(), "hello");
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let after = core_threads();
    for (name, ns) in threads.iter().filter(|t| !before.contains(t)) {
        let now = after.iter().find(|(n, _)| n == name).map(|(_, ns)| *ns);
        assert!(
            now.is_some_and(|now| now > *ns),
            "{name} served nothing: {ns} ns before, {now:?} after"
        );
    }
    let samples = obs::scrape(&p).await;
    let served = obs::sum(&samples, "egressd_requests_total", &[("action", "allow")]);
    assert_eq!(served as usize, 200);
    // Origin connections are pooled per thread: reused, not one per request.
    let dialled = o.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        dialled <= 40,
        "{dialled} origin connections for 200 requests"
    );

    // The drain closes every per-core socket: nothing is accepted on the address any more.
    assert!(p.server.shutdown(Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..4 {
        let refused = TcpStream::connect(p.addr).await;
        assert!(
            refused.is_err(),
            "a per-core socket still accepts after the drain"
        );
    }
}

/// An address something already listens on is refused, as the shared runtime's listener would:
/// `SO_REUSEPORT` alone would let a second egressd (or any process of the same user) share it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_address_is_refused_not_shared() {
    let opts = || egressd::app::Options {
        per_core: 2,
        ..Default::default()
    };
    let first = common::start_with(common::standard_tree(""), opts()).await;
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for busy in [first.addr, plain.local_addr().unwrap()] {
        let yaml =
            common::egressd_yaml("").replace("proxy: 127.0.0.1:0", &format!("proxy: {busy}"));
        let tree = common::tree_with(&yaml);
        let second = egressd::app::Server::start_with(&tree.config_path(), opts()).await;
        let err = second.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains(&busy.to_string()) && err.to_lowercase().contains("in use"),
            "{busy}: {err:?}"
        );
    }
    // The first server still serves on its address.
    let mut s = TcpStream::connect(first.addr).await.unwrap();
    s.write_all(b"GET http://www.facebook.com/ HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(common::read_response(&mut s).await.status, 403);
}
