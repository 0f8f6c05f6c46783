//! CONNECT tunnels against the real proxy and a real origin.

mod common;

use std::time::Duration;

use common::origin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tree(origin_port: u16, extra: &str) -> common::ConfigTree {
    common::connect_tree(origin_port, "", extra)
}

async fn connect(proxy: std::net::SocketAddr, target: &str) -> (TcpStream, common::RawResponse) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = common::read_response(&mut s).await;
    (s, r)
}

#[tokio::test]
async fn allowed_tunnel_carries_bytes_both_ways() {
    let o = origin::start().await;
    let p = common::start(tree(o.addr.port(), "")).await;
    let (mut s, r) = connect(p.addr, &format!("allowed.test:{}", o.addr.port())).await;
    assert_eq!(r.status, 200);
    s.write_all(b"GET /bytes/300000 HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 200);
    assert!(r.body == origin::pattern(300000));
    assert!(
        r.header("via").is_none(),
        "tunnelled bytes are not rewritten"
    );
}

#[tokio::test]
async fn blocked_tunnel_is_403_and_never_dialled() {
    let o = origin::start().await;
    let p = common::start(tree(o.addr.port(), "")).await;
    let (_, r) = connect(p.addr, &format!("www.facebook.com:{}", o.addr.port())).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("proxy-status"),
        Some(r#"egressd; error=http_request_denied; details="_organization/social-media""#)
    );
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connect_port_outside_connect_ports_is_denied() {
    let o = origin::start().await;
    let p = common::start(tree(o.addr.port(), "")).await;
    let (_, r) = connect(p.addr, "allowed.test:8443").await;
    assert_eq!(r.status, 403);
    assert!(r
        .header("proxy-status")
        .unwrap()
        .contains("http_request_denied"));
    assert!(r.header("proxy-status").unwrap().contains("connect_ports"));
}

#[tokio::test]
async fn upstream_failure_is_reported_before_200() {
    let closed = origin::closed_port();
    let p = common::start(tree(closed.port(), "")).await;
    let (_, r) = connect(p.addr, &format!("allowed.test:{}", closed.port())).await;
    assert_eq!(r.status, 502);
    assert!(r
        .header("proxy-status")
        .unwrap()
        .contains("error=connection_refused"));
}

#[tokio::test]
async fn idle_tunnel_is_closed() {
    let o = origin::start().await;
    let p = common::start(tree(o.addr.port(), "timeouts: {idle: 1s}")).await;
    let (mut s, r) = connect(p.addr, &format!("allowed.test:{}", o.addr.port())).await;
    assert_eq!(r.status, 200);
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("tunnel closed within 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "idle tunnel should be closed");
}
