//! The floor of a forward proxy in `../shared/bench/peers.sh`: what a request costs when a
//! proxy does nothing but the unavoidable. One single-thread tokio runtime per core on a
//! `SO_REUSEPORT` listener (egressd's default layout); each client connection parses request
//! heads with httparse, answers a host on the block list (or under one) with fixed bytes of the
//! size of egressd's 403, and relays anything else as `GET` over one origin connection of its
//! own, reading the answer by its `Content-Length`. No policy engine, identity, audit, metrics,
//! timeouts, limits, DNS, CONNECT, bodies, chunked answers or error answers: a malformed
//! request closes the connection. Not a proxy to run; a yardstick for egressd's own cost.
//!
//! `egressd-spike PORT BLOCKLIST` (one domain per line).

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = "Access to www.facebook.com is blocked by egressd.\n\nMinistry: bench\n\
    Rule: _organization/blocklist\nReason: on the benchmark block list\n";

struct Shared {
    blocked: HashSet<String>,
    /// The whole 403, and the same with `connection: close`.
    answer: [Vec<u8>; 2],
}

fn is_blocked(set: &HashSet<String>, host: &str) -> bool {
    let mut h = host;
    loop {
        if set.contains(h) {
            return true;
        }
        match h.find('.') {
            Some(i) => h = &h[i + 1..],
            None => return false,
        }
    }
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn bad() -> io::Error {
    io::ErrorKind::InvalidData.into()
}

/// Reads into `buf` until it holds `want` bytes (`None`: until a whole head); `false` at EOF.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, want: Option<usize>) -> io::Result<bool> {
    loop {
        let done = match want {
            Some(n) => buf.len() >= n,
            None => head_end(buf).is_some(),
        };
        if done {
            return Ok(true);
        }
        buf.reserve(8192);
        if s.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    client.set_nodelay(true)?;
    let (mut buf, mut out, mut obuf) = (Vec::new(), Vec::new(), Vec::new());
    let mut origin: Option<TcpStream> = None;
    while fill(&mut client, &mut buf, None).await? {
        let end = head_end(&buf).ok_or_else(bad)?;
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut fields);
        req.parse(&buf[..end]).map_err(|_| bad())?;
        let rest = req
            .path
            .and_then(|p| p.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let host = authority.split(':').next().unwrap_or_default();
        let close = req.headers.iter().any(|f| {
            f.name.eq_ignore_ascii_case("connection") && f.value.eq_ignore_ascii_case(b"close")
        });
        if is_blocked(&shared.blocked, host) {
            client.write_all(&shared.answer[usize::from(close)]).await?;
        } else {
            out.clear();
            out.extend_from_slice(b"GET ");
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
            out.extend_from_slice(authority.as_bytes());
            out.extend_from_slice(b"\r\n");
            for f in req.headers.iter() {
                if f.name.eq_ignore_ascii_case("host") || f.name.eq_ignore_ascii_case("connection")
                {
                    continue;
                }
                out.extend_from_slice(f.name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(f.value);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"via: 1.1 spike\r\n\r\n");
            let o = match &mut origin {
                Some(o) => o,
                None => {
                    let o = TcpStream::connect(authority).await?;
                    o.set_nodelay(true)?;
                    origin.insert(o)
                }
            };
            o.write_all(&out).await?;
            obuf.clear();
            if !fill(o, &mut obuf, None).await? {
                return Ok(());
            }
            let hend = head_end(&obuf).ok_or_else(bad)?;
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut fields);
            resp.parse(&obuf[..hend]).map_err(|_| bad())?;
            let length: usize = resp
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("content-length"))
                .and_then(|f| std::str::from_utf8(f.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            if !fill(o, &mut obuf, Some(hend + length)).await? {
                return Ok(());
            }
            if close {
                out.clear();
                out.extend_from_slice(&obuf[..hend - 2]);
                out.extend_from_slice(b"connection: close\r\n\r\n");
                out.extend_from_slice(&obuf[hend..hend + length]);
                client.write_all(&out).await?;
            } else {
                client.write_all(&obuf[..hend + length]).await?;
            }
        }
        if close {
            return Ok(());
        }
        buf.drain(..end);
    }
    Ok(())
}

fn answer(close: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 403 Forbidden\r\nproxy-status: egressd; error=http_request_denied; \
         details=\"_organization/blocklist\"\r\ncontent-type: text/plain; charset=utf-8\r\n\
         cache-control: no-store\r\ndate: Fri, 27 Nov 2026 15:21:20 GMT\r\n{}\
         content-length: {}\r\n\r\n{BODY}",
        if close { "connection: close\r\n" } else { "" },
        BODY.len()
    )
    .into_bytes()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(list)) = (args.next(), args.next()) else {
        eprintln!("usage: egressd-spike PORT BLOCKLIST");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT is a number");
    let list = std::fs::read_to_string(list).expect("reading the block list");
    let shared = Arc::new(Shared {
        blocked: list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        answer: [answer(false), answer(true)],
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let s =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .expect("socket");
                    s.set_reuse_port(true).expect("SO_REUSEPORT");
                    s.set_nonblocking(true).expect("non-blocking");
                    s.bind(&addr.into()).expect("bind");
                    s.listen(1024).expect("listen");
                    let listener = TcpListener::from_std(s.into()).expect("listener");
                    loop {
                        let Ok((c, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve(c, shared.clone()));
                    }
                });
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
