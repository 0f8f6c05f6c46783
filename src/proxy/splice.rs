//! Zero-copy tunnel relay for plain TCP on both sides (Linux): bytes go socket → pipe → socket
//! with `splice(2)`, never through user space. A CONNECT tunnel spends nearly all its time
//! relaying, and copying every byte into and out of a user buffer costs two copies and a
//! syscall per 64 KiB; splice moves page references through a pipe of up to 1 MiB instead.
//!
//! Used only once the tunnel's first bytes were inspected and forwarded; a TLS client
//! connection (the TLS listener) is relayed by copying, since its bytes must be decrypted.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;
use prometheus::IntCounter;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::activity::Activity;

/// Pipe capacity asked for (the default unprivileged maximum, `fs.pipe-max-size`); the kernel
/// keeps its default 64 KiB if refused.
const PIPE_BYTES: usize = 1 << 20;

/// One direction's pipe.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32))
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(64 * 1024);
        Ok(Pipe { read, write, size })
    }
}

/// One non-blocking splice; `Ok(0)` from a socket is its end of stream.
fn move_bytes(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    Ok(splice(from, None, to, None, len, flags)?)
}

/// Bytes moved so far, client → origin and origin → client; readable after the relay was
/// dropped (idle timeout).
#[derive(Debug, Default)]
pub struct Flows {
    up: AtomicU64,
    down: AtomicU64,
}

impl Flows {
    pub fn totals(&self) -> (u64, u64) {
        (self.up.load(Relaxed), self.down.load(Relaxed))
    }
}

/// Relays both ways until both sides have closed (each end-of-stream is passed on as a
/// half-close) or either fails. Every transfer stamps `activity` (the tunnel idle timeout) and
/// adds to its direction's counter (`counters`: client → origin, origin → client, when the
/// exchange has them) and to `flows`.
pub async fn relay(
    client: &TcpStream,
    origin: &TcpStream,
    activity: &Activity,
    counters: Option<(&IntCounter, &IntCounter)>,
    flows: &Flows,
) -> io::Result<()> {
    let (p1, p2) = (Pipe::new()?, Pipe::new()?);
    let (up, down) = counters.unzip();
    tokio::try_join!(
        pump(client, origin, &p1, activity, up, &flows.up),
        pump(origin, client, &p2, activity, down, &flows.down),
    )?;
    Ok(())
}

async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    activity: &Activity,
    counter: Option<&IntCounter>,
    total: &AtomicU64,
) -> io::Result<()> {
    loop {
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                move_bytes(src, &pipe.write, pipe.size)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // End of stream: pass the half-close on; the other direction carries on.
            socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write)?;
            return Ok(());
        }
        activity.on_read();
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || move_bytes(&pipe.read, dst, left)) {
                Ok(m) => {
                    left -= m;
                    total.fetch_add(m as u64, Relaxed);
                    if let Some(c) = counter {
                        c.inc_by(m as u64);
                    }
                    activity.on_write();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn relays_both_ways_through_pipes_and_counts() {
        let (mut client, client_side) = pair().await;
        let (origin_side, mut origin) = pair().await;
        let activity = Activity::new();
        let (up, down) = (
            IntCounter::new("up", "up").unwrap(),
            IntCounter::new("down", "down").unwrap(),
        );
        let flows = Flows::default();
        let sent: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let reply: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
        let relay = relay(
            &client_side,
            &origin_side,
            &activity,
            Some((&up, &down)),
            &flows,
        );
        let ends = async {
            let (mut cr, mut cw) = client.split();
            let (mut or, mut ow) = origin.split();
            let to_origin = async {
                cw.write_all(&sent).await.unwrap();
                cw.shutdown().await.unwrap();
            };
            let at_origin = async {
                let mut got = Vec::new();
                or.read_to_end(&mut got).await.unwrap();
                ow.write_all(&reply).await.unwrap();
                ow.shutdown().await.unwrap();
                got
            };
            let at_client = async {
                let mut got = Vec::new();
                cr.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), at_origin, at_client) = tokio::join!(to_origin, at_origin, at_client);
            (at_origin, at_client)
        };
        let (r, (at_origin, at_client)) = tokio::join!(relay, ends);
        r.unwrap();
        assert!(at_origin == sent);
        assert!(at_client == reply);
        assert_eq!(flows.totals(), (sent.len() as u64, reply.len() as u64));
        assert_eq!((up.get(), down.get()), flows.totals());
    }
}
