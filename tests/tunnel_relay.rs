//! The tunnel relay after the first bytes: megabytes both ways at once, half-closes passed on
//! in each direction, bytes the client sent together with its CONNECT head, and the byte
//! counts in the audit record and `egressd_bytes_total`. On the plain listener this is the
//! `splice(2)` relay (`proxy::splice`); each test runs again with `tunnel.splice: false`, the
//! copying relay that also takes over when the pipe quota is used up.

mod common;

use std::net::SocketAddr;

use common::obs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn tree(origin_port: u16, splice: bool) -> common::ConfigTree {
    common::connect_tree(origin_port, &format!("  splice: {splice}\n"), "")
}

/// Deterministic bytes that are not a TLS record (the tunnel allows non-TLS here).
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i as u64 * 7 + seed as u64) % 26) as u8)
        .collect()
}

/// An origin that reads everything the client sends until its half-close, then answers with
/// `reply`, then closes; returns what it read.
async fn sink_then_reply(reply: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(&reply).await.unwrap();
        s.shutdown().await.unwrap();
        got
    });
    (addr, task)
}

async fn open(proxy: SocketAddr, target: SocketAddr, first: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let mut head = format!(
        "CONNECT allowed.test:{0} HTTP/1.1\r\nHost: allowed.test:{0}\r\n\r\n",
        target.port()
    )
    .into_bytes();
    // Tunnel bytes in the same write as the head: hyper reads them with it.
    head.extend_from_slice(first);
    s.write_all(&head).await.unwrap();
    // Tunnel bytes may follow the 200 in the same segment; read_response leaves them.
    let r = common::read_response(&mut s).await;
    assert_eq!(r.status, 200, "{r:?}");
    s
}

/// What [`open`] relies on: `common::read_response` stops where the response ends, leaving the
/// tunnel bytes after a CONNECT 200 (or a pipelined response after a body) to the caller.
#[tokio::test]
async fn read_response_leaves_what_follows_the_response() {
    let mut rest: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nfirst tunnel bytes";
    let r = common::read_response(&mut rest).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b""[..]));
    assert_eq!(rest, b"first tunnel bytes");
    let mut rest: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\n\
        next";
    let r = common::read_response(&mut rest).await;
    assert_eq!((r.status, r.body.as_slice()), (403, &b"no"[..]));
    let r = common::read_response(&mut rest).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"abcd"[..]));
    assert_eq!(rest, b"next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_each_way_with_half_closes_and_exact_counts() {
    megabytes_each_way(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_each_way_copied() {
    megabytes_each_way(false).await;
}

async fn megabytes_each_way(splice: bool) {
    let up = data(6 << 20, 1);
    let down = data(5 << 20, 2);
    let first = b"hello, first bytes with the CONNECT head\n".to_vec();
    let (origin, got) = sink_then_reply(down.clone()).await;
    let p = common::start(tree(origin.port(), splice)).await;
    let s = open(p.addr, origin, &first).await;
    let (mut r, mut w) = s.into_split();
    // Client → origin, then the client's half-close; the origin answers only after seeing it,
    // so the reply proves the half-close went through and the other direction stayed open.
    let up2 = up.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&up2).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut received = Vec::new();
    r.read_to_end(&mut received).await.unwrap();
    let _w = writer.await.unwrap();
    let seen = got.await.unwrap();
    let mut want_up = first.clone();
    want_up.extend_from_slice(&up);
    assert_eq!(seen.len(), want_up.len());
    assert!(seen == want_up, "origin got other bytes than sent");
    assert_eq!(received.len(), down.len());
    assert!(
        received == down,
        "client got other bytes than the origin sent"
    );

    let recs = obs::audit_records(&p, &[p.audit_path()], 1).await;
    let rec = recs
        .iter()
        .find(|r| r["kind"] == "connect" && r["action"] == "allow")
        .expect("a tunnel record");
    assert_eq!(rec["bytes_up"], want_up.len() as u64);
    assert_eq!(rec["bytes_down"], down.len() as u64);
    let samples = obs::scrape(&p).await;
    let sent = obs::sum(
        &samples,
        "egressd_bytes_total",
        &[("direction", "upstream")],
    );
    let back = obs::sum(
        &samples,
        "egressd_bytes_total",
        &[("direction", "downstream")],
    );
    assert_eq!(sent as usize, want_up.len());
    assert_eq!(back as usize, down.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_half_close_leaves_the_client_direction_open() {
    origin_half_close(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_half_close_copied() {
    origin_half_close(false).await;
}

async fn origin_half_close(splice: bool) {
    // The origin greets, half-closes, then still reads what the client sends.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"greeting").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        got
    });
    let p = common::start(tree(origin.port(), splice)).await;
    let mut s = open(p.addr, origin, b"x").await;
    let mut greeting = Vec::new();
    s.read_to_end(&mut greeting).await.unwrap();
    assert_eq!(greeting, b"greeting");
    let late = data(300_000, 3);
    s.write_all(&late).await.unwrap();
    s.shutdown().await.unwrap();
    let got = server.await.unwrap();
    assert_eq!(got.len(), 1 + late.len());
    assert!(got[1..] == late[..]);
}
