//! Hot reload against the real server: policy rewritten 50 times under a client loop (valid and
//! invalid versions alternating), and a Kubernetes ConfigMap `..data` symlink swap.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::origin;

fn agriculture(block_other: bool, n: usize) -> String {
    let action = if block_other { "block" } else { "allow" };
    format!(
        "# version {n}\nministry: agriculture\ndefault: allow\nrules:\n  - id: other\n    action: {action}\n    hosts: [other.test]\n    reason: version {n}\n"
    )
}

/// Editors write a temp file and rename it over the original; plain writes happen too.
fn write(path: &Path, text: &str, via_rename: bool) {
    if via_rename {
        let tmp = path.with_extension("yaml.tmp~");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

async fn other_status(proxy: std::net::SocketAddr, port: u16) -> u16 {
    common::get(proxy, &format!("http://other.test:{port}/"), "")
        .await
        .status
}

/// Polls until `other.test` answers `want`; returns how long it took.
async fn wait_for(proxy: std::net::SocketAddr, port: u16, want: u16) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if other_status(proxy, port).await == want {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "change not visible within 3 s (wanted {want}, got {})",
        other_status(proxy, port).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rewrites_under_load_fail_no_request() {
    let o = origin::start().await;
    let tree = common::standard_tree("");
    let file = tree.dir.path().join("policies/agriculture.yaml");
    std::fs::write(&file, agriculture(false, 0)).unwrap();
    let p = common::start(tree).await;
    let port = o.addr.port();

    // The client loop: an allowed host that no version changes must always answer 200. Its
    // audit records go to `audit.log` in the watched config folder: a busy neighbour file that
    // must not keep the debounce from settling (it once did).
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), p.addr);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = common::get(addr, &format!("http://allowed.test:{port}/"), "").await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut blocked = false;
    let mut worst = Duration::ZERO;
    let (ok0, failed0) = p.server.reloader.counts();
    for n in 1..=50 {
        if n % 2 == 1 {
            blocked = !blocked;
            write(&file, &agriculture(blocked, n), n % 4 == 1);
            let took = wait_for(p.addr, port, if blocked { 403 } else { 200 }).await;
            worst = worst.max(took);
        } else {
            let (_, before) = p.server.reloader.counts();
            write(
                &file,
                &format!(
                    "{}  - id: broken\n    action: [\n",
                    agriculture(!blocked, n)
                ),
                n % 4 == 0,
            );
            let start = Instant::now();
            while p.server.reloader.counts().1 == before {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "invalid version {n} not noticed"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            // Not applied: the previous valid version still decides.
            assert_eq!(
                other_status(p.addr, port).await,
                if blocked { 403 } else { 200 }
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    let (ok1, failed1) = p.server.reloader.counts();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 50, "the client loop ran");
    assert!(
        ok1 - ok0 >= 25,
        "every valid version applied: {}",
        ok1 - ok0
    );
    assert_eq!(
        failed1 - failed0,
        25,
        "every invalid version counted as a failure"
    );
    assert!(
        worst < Duration::from_secs(2),
        "slowest change took {worst:?}"
    );
    eprintln!("slowest change visible after {worst:?}");
}

#[tokio::test]
async fn configmap_symlink_swap_reloads() {
    let o = origin::start().await;
    let port = o.addr.port();
    let mount = tempfile::tempdir().unwrap();
    let m = mount.path();
    let write_version = |ts: &str, blocked: bool| {
        let dir = m.join(ts);
        for sub in ["policies", "categories"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("egressd.yaml"), common::egressd_yaml("")).unwrap();
        std::fs::write(dir.join("policies/_organization.yaml"), common::ORG).unwrap();
        std::fs::write(
            dir.join("policies/agriculture.yaml"),
            agriculture(blocked, 0),
        )
        .unwrap();
        std::fs::write(dir.join("policies/health.yaml"), common::HEALTH).unwrap();
        std::fs::write(dir.join("categories/social-media.yaml"), common::SOCIAL).unwrap();
    };
    // The layout the kubelet's atomic writer creates.
    write_version("..2026_11_26_10_00_00.000000001", false);
    std::os::unix::fs::symlink("..2026_11_26_10_00_00.000000001", m.join("..data")).unwrap();
    for name in ["egressd.yaml", "policies", "categories"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), m.join(name)).unwrap();
    }
    let server = egressd::app::Server::start(&m.join("egressd.yaml"))
        .await
        .unwrap();
    let proxy = server.proxy_addrs()[0];
    assert_eq!(other_status(proxy, port).await, 200);
    // An update: new timestamped dir, `..data_tmp` pointing at it, renamed over `..data`.
    write_version("..2026_11_26_10_05_00.000000002", true);
    std::os::unix::fs::symlink("..2026_11_26_10_05_00.000000002", m.join("..data_tmp")).unwrap();
    std::fs::rename(m.join("..data_tmp"), m.join("..data")).unwrap();
    std::fs::remove_dir_all(m.join("..2026_11_26_10_00_00.000000001")).unwrap();
    let took = wait_for(proxy, port, 403).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    // And a second swap back, after the watches were re-armed on the new directories.
    write_version("..2026_11_26_10_10_00.000000003", false);
    std::os::unix::fs::symlink("..2026_11_26_10_10_00.000000003", m.join("..data_tmp")).unwrap();
    std::fs::rename(m.join("..data_tmp"), m.join("..data")).unwrap();
    wait_for(proxy, port, 200).await;
}

#[tokio::test]
async fn reload_api_keeps_old_policy_on_error_and_skips_unchanged() {
    let tree = common::standard_tree("");
    let p = common::start(tree).await;
    assert!(matches!(
        p.server.reload().await,
        egressd::reload::Outcome::Unchanged
    ));
    let gen = p.server.shared.snapshot.load().generation;
    std::fs::write(
        p.tree.dir.path().join("categories/social-media.yaml"),
        "domains: [x.com]\nbogus: 1\n",
    )
    .unwrap();
    match p.server.reload().await {
        egressd::reload::Outcome::Rejected(d) => {
            assert!(
                d[0].to_string().contains("social-media.yaml:2:1"),
                "{}",
                d[0]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.server.shared.snapshot.load().generation,
        gen,
        "old snapshot still serving"
    );
}
