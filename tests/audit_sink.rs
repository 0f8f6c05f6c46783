//! The audit sink under stress: logrotate's rename + `SIGUSR1` loses no record, and a sink that
//! does not drain (a FIFO nobody reads) slows requests down instead of losing records.
//!
//! The server runs in this process, so the test signals itself: `Server::start` installs the
//! `SIGUSR1` handler before it returns, replacing the default action (terminate).

mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::time::Duration;

use common::obs;
use common::origin;

async fn get_n(proxy: std::net::SocketAddr, port: u16, n: usize) -> u16 {
    common::get(proxy, &format!("http://allowed.test:{port}/r/{n}"), "")
        .await
        .status
}

fn paths(recs: &[serde_json::Value]) -> Vec<String> {
    recs.iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_rotation_loses_no_record() {
    let o = origin::start().await;
    let port = o.addr.port();
    let p = common::start(common::standard_tree("")).await;
    let live = p.audit_path();
    let rotated = p.tree.dir.path().join("audit.log.1");
    // Requests keep flowing while the file is renamed and the signal arrives (logrotate's
    // `create` + `postrotate kill -USR1`).
    let proxy = p.addr;
    let (from, to) = (live.clone(), rotated.clone());
    let traffic = tokio::spawn(async move {
        for i in 0..120 {
            if i == 40 {
                std::fs::rename(&from, &to).unwrap();
                let pid = std::process::id().to_string();
                let kill = std::process::Command::new("sh")
                    .args(["-c", &format!("kill -USR1 {pid}")])
                    .status()
                    .unwrap();
                assert!(kill.success());
            }
            assert_eq!(get_n(proxy, port, i).await, 200);
        }
    });
    traffic.await.unwrap();
    let recs = obs::audit_records(&p, &[rotated.clone(), live.clone()], 120).await;
    let mut seen = paths(&recs);
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!((n, seen.len()), (120, 120), "every record exactly once");
    let count = |f: &std::path::Path| std::fs::read_to_string(f).unwrap().lines().count();
    let (old, new) = (count(&rotated), count(&live));
    assert!(
        old > 0 && new > 0,
        "records before and after the reopen: {old} + {new}"
    );
    let m = obs::scrape(&p).await;
    assert_eq!(
        obs::value(&m, "egressd_audit_records_total", &[("result", "written")]),
        Some(120.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_does_not_drain_slows_requests_and_loses_nothing() {
    let o = origin::start().await;
    let port = o.addr.port();
    let tree = common::standard_tree("audit: {file: audit.fifo}");
    let fifo = tree.dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A tiny queue; the writer blocks opening the FIFO until a reader appears.
    let opts = egressd::app::Options {
        audit_queue: 2,
        ..Default::default()
    };
    let p = common::start_with(tree, opts).await;
    let proxy = p.addr;
    let mut done = 0;
    let mut stuck = None;
    for i in 0..8 {
        let req = tokio::spawn(get_n(proxy, port, i));
        match tokio::time::timeout(Duration::from_secs(1), req).await {
            Ok(status) => {
                assert_eq!(status.unwrap(), 200);
                done += 1;
            }
            Err(_) => {
                stuck = Some(i);
                break;
            }
        }
    }
    // One record in the writer's hands, two in the queue: the next request waits.
    let stuck = stuck.expect("a request must wait while the sink is blocked");
    assert!((3..=5).contains(&done), "{done} requests passed");
    assert_eq!(stuck, done);
    // A reader appears: everything drains, the waiting request finishes, nothing is lost.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = fifo.clone();
    std::thread::spawn(move || {
        let f = std::fs::File::open(reader).unwrap();
        for line in std::io::BufReader::new(f).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    for i in done + 1..done + 11 {
        assert_eq!(get_n(proxy, port, i).await, 200);
    }
    let total = done + 11; // the stuck request included
    let mut lines = Vec::new();
    while lines.len() < total {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("{e}: only {} of {total} records arrived", lines.len()),
        }
    }
    let recs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: BTreeSet<String> = paths(&recs).into_iter().collect();
    let want: BTreeSet<String> = (0..total).map(|i| format!("/r/{i}")).collect();
    assert_eq!(seen, want);
    let m = obs::scrape(&p).await;
    assert_eq!(
        obs::value(&m, "egressd_audit_records_total", &[("result", "failed")]),
        Some(0.0)
    );
}
