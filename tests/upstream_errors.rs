//! The egress guard, an unanswered connect and client-side timeouts (a stalled head, idle
//! keep-alive), each with the right status and RFC 9209 `Proxy-Status` error type. Origin and
//! DNS faults (refused, silent, slow, reset, NXDOMAIN, DNS timeout) are in `faults.rs`, with
//! their metrics and audit records; head limits and connection caps in `limits.rs`.

mod common;

use std::time::Duration;

use common::{error_type, origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn egress_guard_refuses_internal_destinations() {
    // No allow_private_cidrs: loopback and private ranges are refused, by literal or by name.
    let yaml =
        common::egressd_yaml("").replace("egress:\n  allow_private_cidrs: [127.0.0.0/8]\n", "");
    let tree = common::tree_with(&yaml);
    let o = origin::start().await;
    let p = common::start(tree).await;
    let port = o.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://allowed.test:{port}/"),
        format!("http://intranet.test:{port}/"),
        format!("http://169.254.1.1:{port}/"),
    ] {
        let r = common::get(p.addr, &url, "").await;
        assert_eq!(
            (r.status, error_type(&r).as_str()),
            (403, "destination_ip_prohibited"),
            "{url}"
        );
    }
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unanswered_syn_is_a_connect_timeout() {
    // A listener that never accepts, its backlog filled: further SYNs are dropped by the kernel.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let p = common::start(common::standard_tree("timeouts: {connect: 300ms}")).await;
    let r = common::get(p.addr, &format!("http://allowed.test:{}/", addr.port()), "").await;
    assert_eq!(
        (r.status, error_type(&r).as_str()),
        (504, "connection_timeout")
    );
}

async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn slow_request_head_is_cut_but_idle_keep_alive_is_not() {
    let o = origin::start().await;
    let p = common::start(common::standard_tree(
        "timeouts: {request_header: 500ms, idle: 3s}",
    ))
    .await;
    // Slowloris: a head started and never finished is cut after request_header.
    let mut slow = TcpStream::connect(p.addr).await.unwrap();
    slow.write_all(b"GET http://allowed.test/ HTTP/1.1\r\nHost: a")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(2)).await,
        "slow head not cut"
    );
    // An idle keep-alive connection outlives request_header, and serves its next request.
    let mut idle = TcpStream::connect(p.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let req = format!(
        "GET http://allowed.test:{}/ HTTP/1.1\r\nHost: a\r\n\r\n",
        o.addr.port()
    );
    idle.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(common::read_response(&mut idle).await.status, 200);
    // ...until it has been idle for `idle`.
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "idle connection not closed"
    );
}
