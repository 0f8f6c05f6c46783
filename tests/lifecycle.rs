//! Signals against the real binary: SIGHUP reloads, SIGTERM drains (in-flight requests finish,
//! new connections are refused) and exits 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `proxy_threads`: `EGRESSD_PROXY_THREADS` (`0`: the shared multi-thread runtime; `None`: unset,
/// the binary's default).
fn spawn_with(config: &std::path::Path, proxy_threads: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_egressd"));
    match proxy_threads {
        Some(n) => cmd.env("EGRESSD_PROXY_THREADS", n),
        None => cmd.env_remove("EGRESSD_PROXY_THREADS"),
    };
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "egressd=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "egressd did not listen");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn request(port: u16, url: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn tree(port: u16, origin_blocked: bool) -> common::ConfigTree {
    let org = format!(
        "default: allow\nbaseline:\n  - id: other\n    action: {}\n    hosts: [other.test]\n",
        if origin_blocked { "block" } else { "allow" }
    );
    let yaml = format!(
        "listen: {{proxy: 127.0.0.1:{port}, admin: 127.0.0.1:0}}\nidentity: {{default_ministry: guest}}\negress: {{allow_private_cidrs: [127.0.0.0/8]}}\ndns: {{static: {{other.test: 127.0.0.1, slow.test: 127.0.0.1}}}}\ntimeouts: {{shutdown_grace: 5s}}\n"
    );
    common::ConfigTree::new(
        &yaml,
        &[
            ("policies/_organization.yaml", &org),
            ("policies/guest.yaml", "ministry: guest\n"),
        ],
    )
}

#[test]
fn sighup_reloads_and_sigterm_drains() {
    reload_then_drain(Some("0"));
}

/// The same with the plain listener on two per-core runtimes (`EGRESSD_PROXY_THREADS=2`).
#[test]
fn sighup_reloads_and_sigterm_drains_per_core() {
    reload_then_drain(Some("2"));
}

/// Names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    names
}

/// Without `EGRESSD_PROXY_THREADS` the plain listener runs on one runtime thread per CPU the
/// process may use (`egressd-core-N`), and serves; with `0`, on the shared runtime (none).
#[test]
fn the_plain_listener_runs_a_thread_per_core_by_default() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(common::origin::start());
    let cores = std::thread::available_parallelism().unwrap().get();
    for (threads, expected) in [(None, cores), (Some("0"), 0)] {
        let port = free_port();
        let t = tree(port, false);
        let mut child = spawn_with(&t.config_path(), threads);
        wait_listening(port);
        let got = request(port, &format!("http://other.test:{}/", origin.addr.port()));
        assert!(got.starts_with("HTTP/1.1 200"), "{threads:?}: {got}");
        let names = thread_names(child.id());
        let per_core = names
            .iter()
            .filter(|n| n.starts_with("egressd-core-"))
            .count();
        assert_eq!(per_core, expected, "{threads:?}: threads {names:?}");
        signal(&child, "-TERM");
        assert!(child.wait().unwrap().success(), "{threads:?}: exit status");
    }
}

fn reload_then_drain(proxy_threads: Option<&str>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(common::origin::start());
    let port = free_port();
    let t = tree(port, false);
    let mut child = spawn_with(&t.config_path(), proxy_threads);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_listening(port);
    let other = format!("http://other.test:{}/", origin.addr.port());
    assert!(request(port, &other).starts_with("HTTP/1.1 200"));

    // SIGHUP: the new policy applies, and the log says the signal asked for it.
    std::fs::write(
        t.dir.path().join("policies/_organization.yaml"),
        "default: allow\nbaseline:\n  - id: other\n    action: block\n    hosts: [other.test]\n",
    )
    .unwrap();
    signal(&child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut saw_sighup = false;
    while Instant::now() < deadline && !saw_sighup {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            saw_sighup |= line.contains("reload requested (SIGHUP)");
        }
    }
    assert!(saw_sighup, "no SIGHUP reload logged");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !request(port, &other).starts_with("HTTP/1.1 403") {
        assert!(Instant::now() < deadline, "reloaded policy not applied");
        std::thread::sleep(Duration::from_millis(25));
    }

    // SIGTERM during a slow response: it completes; new connections are refused; exit 0.
    let slow_url = format!("http://slow.test:{}/sleep/1500", origin.addr.port());
    let slow = std::thread::spawn(move || request(port, &slow_url));
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let resp = slow.join().unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "in-flight request cut: {resp}"
    );
    assert!(resp.ends_with("slept"), "{resp}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "egressd did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(25));
    };
    assert!(status.success(), "{status:?}");
}
