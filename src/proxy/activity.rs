//! Connection timeouts without a timer per read: the I/O wrapper [`TrackedIo`] stamps every read
//! and write into a shared [`Activity`], and one watchdog per connection sleeps until the
//! deadline those stamps imply, re-arming only when it wakes early. Nothing on the request path
//! wakes the watchdog: it never sleeps longer than `request_header` at a time, which is enough
//! to see a head that started while it slept (see [`Activity::watch_connection`]).
//!
//! The contract's timeouts, as deadlines:
//! - waiting for a request on a keep-alive connection: `timeouts.idle` from the end of the last
//!   response (or from accept);
//! - once the first byte of a request head arrived: `timeouts.request_header` from that byte
//!   until the head is complete (slowloris);
//! - while a request is in flight: `timeouts.idle` without a byte in either direction (upstream
//!   waits are bounded by their own `connect`/`response_header` timeouts);
//! - an open tunnel: `timeouts.tunnel_idle` (by default `timeouts.idle`) without a byte in
//!   either direction ([`Activity::watch_idle`], run by the tunnel).
//!
//! hyper's own `header_read_timeout` is not used: it starts when hyper begins waiting for the
//! next head, so it would cut idle keep-alive connections after `request_header`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::limits::ConnSlot;
use super::observe::Meter;

const NOT_STARTED: u64 = u64::MAX;

/// Activity stamps of one client connection, shared by its I/O, its service and its watchdog.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_io_ms: AtomicU64,
    head_started_ms: AtomicU64,
    in_flight: AtomicU32,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Idle,
    RequestHeader,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NOT_STARTED),
            in_flight: AtomicU32::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn on_read(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Relaxed);
        if self.in_flight.load(Relaxed) == 0 && self.head_started_ms.load(Relaxed) == NOT_STARTED {
            self.head_started_ms.store(now, Relaxed);
        }
    }

    pub fn on_write(&self) {
        self.last_io_ms.store(self.now_ms(), Relaxed);
    }

    /// Called when a request head is complete; the guard ends the request when the response
    /// (body included) is done or dropped. No new stamp: the read that completed the head
    /// made one a moment ago.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Relaxed);
        self.head_started_ms.store(NOT_STARTED, Relaxed);
        RequestGuard(self.clone())
    }

    /// No request in flight and no byte of the next head read: a drain may close the
    /// connection without cutting a request short.
    pub fn between_requests(&self) -> bool {
        self.in_flight.load(Relaxed) == 0 && self.head_started_ms.load(Relaxed) == NOT_STARTED
    }

    fn connection_deadline(&self, idle: Duration, header: Duration) -> (u64, Expired) {
        let head = self.head_started_ms.load(Relaxed);
        if self.in_flight.load(Relaxed) == 0 && head != NOT_STARTED {
            (head + header.as_millis() as u64, Expired::RequestHeader)
        } else {
            (
                self.last_io_ms.load(Relaxed) + idle.as_millis() as u64,
                Expired::Idle,
            )
        }
    }

    /// Resolves when the connection has been idle, or slow to send a head, for too long.
    ///
    /// A head that starts while the watchdog sleeps moves the deadline earlier, to its start +
    /// `header`. Instead of being woken for it (a wake-up per request, on the hot path), the
    /// watchdog sleeps at most `header` at a time: a head that started after the last check
    /// has a deadline after the next wake-up, so it is still caught on time. An idle
    /// keep-alive connection costs one timer wake-up per `header`.
    pub async fn watch_connection(&self, idle: Duration, header: Duration) -> Expired {
        let header_ms = header.as_millis() as u64;
        let sleep = tokio::time::sleep_until(self.epoch);
        tokio::pin!(sleep);
        loop {
            let (deadline, why) = self.connection_deadline(idle, header);
            let now = self.now_ms();
            if now >= deadline {
                return why;
            }
            let wake = deadline.min(now.saturating_add(header_ms.max(1)));
            sleep
                .as_mut()
                .reset(self.epoch + Duration::from_millis(wake));
            sleep.as_mut().await;
        }
    }

    /// Resolves when no byte moved in either direction for `idle` (tunnels).
    pub async fn watch_idle(&self, idle: Duration) {
        let sleep = tokio::time::sleep_until(self.epoch);
        tokio::pin!(sleep);
        loop {
            let deadline = self.last_io_ms.load(Relaxed) + idle.as_millis() as u64;
            if self.now_ms() >= deadline {
                return;
            }
            sleep
                .as_mut()
                .reset(self.epoch + Duration::from_millis(deadline));
            sleep.as_mut().await;
        }
    }
}

/// Marks one request in flight on its connection.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.on_write();
    }
}

/// An I/O object that stamps reads and writes into an [`Activity`], counts its bytes when
/// given a [`Meter`] (tunnels), and holds the client connection's [`ConnSlot`] for as long as
/// the socket lives (hyper hands this object to the tunnel on an upgrade).
#[derive(Debug)]
pub struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    meter: Option<Meter>,
    slot: Option<ConnSlot>,
    /// Bytes already read from `inner` that the next reads return first: what the fast path
    /// had buffered when it handed the connection to hyper (see `super::fast`).
    unread: Bytes,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        TrackedIo {
            inner,
            activity,
            meter: None,
            slot: None,
            unread: Bytes::new(),
        }
    }

    /// Makes the next reads return `bytes` before anything more from the socket.
    pub fn unread(&mut self, bytes: Bytes) {
        debug_assert!(self.unread.is_empty());
        self.unread = bytes;
    }

    /// Keeps the connection's slot until this I/O object is dropped.
    pub fn holding(mut self, slot: ConnSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    /// Counts the bytes read and written from now on.
    pub fn metered(mut self, meter: Option<Meter>) -> Self {
        self.meter = meter;
        self
    }

    pub fn meter(&self) -> Option<&Meter> {
        self.meter.as_ref()
    }

    pub fn meter_mut(&mut self) -> Option<&mut Meter> {
        self.meter.as_mut()
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    /// What was read from the socket that [`TrackedIo::unread`] still holds.
    pub fn take_unread(&mut self) -> Bytes {
        std::mem::take(&mut self.unread)
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if matches!(r, Poll::Ready(Ok(()))) && n > 0 {
            self.activity.on_read();
            if let Some(m) = &mut self.meter {
                m.read(n);
            }
        }
        r
    }
}

impl<T> TrackedIo<T> {
    fn wrote(&mut self, n: usize) {
        if n > 0 {
            self.activity.on_write();
            if let Some(m) = &mut self.meter {
                m.wrote(n);
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_then_header_deadlines() {
        let a = Arc::new(Activity::new());
        let idle = Duration::from_secs(60);
        let header = Duration::from_secs(10);
        // Nothing read: idle applies from accept.
        assert_eq!(a.connection_deadline(idle, header), (60_000, Expired::Idle));
        tokio::time::advance(Duration::from_secs(5)).await;
        a.on_read();
        assert_eq!(
            a.connection_deadline(idle, header),
            (15_000, Expired::RequestHeader)
        );
        let g = a.begin_request();
        assert_eq!(a.connection_deadline(idle, header).1, Expired::Idle);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(g);
        assert_eq!(a.connection_deadline(idle, header), (66_000, Expired::Idle));
        let why = a.watch_connection(idle, header).await;
        assert_eq!(why, Expired::Idle);
        assert!(a.now_ms() >= 66_000);
    }

    /// A head that starts while the watchdog sleeps, with nothing to wake it, still expires at
    /// its start + `request_header`, whenever in the watchdog's sleep it started.
    #[tokio::test(start_paused = true)]
    async fn head_started_mid_sleep_expires_on_time() {
        for started_s in [1, 9, 10, 11, 25, 59] {
            let a = Arc::new(Activity::new());
            let idle = Duration::from_secs(60);
            let header = Duration::from_secs(10);
            let watch = {
                let a = a.clone();
                tokio::spawn(async move {
                    let why = a.watch_connection(idle, header).await;
                    (why, a.now_ms())
                })
            };
            tokio::time::sleep(Duration::from_secs(started_s)).await;
            a.on_read();
            let (why, at) = watch.await.unwrap();
            assert_eq!(why, Expired::RequestHeader, "head at {started_s} s");
            let due = (started_s + 10) * 1000;
            assert!(
                (due..due + 5).contains(&at),
                "head at {started_s} s: expired at {at} ms"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tunnel_idle_follows_the_last_byte() {
        let a = Arc::new(Activity::new());
        let idle = Duration::from_secs(30);
        let watch = {
            let a = a.clone();
            tokio::spawn(async move {
                a.watch_idle(idle).await;
                a.now_ms()
            })
        };
        tokio::time::sleep(Duration::from_secs(20)).await;
        a.on_write();
        let at = watch.await.unwrap();
        assert!((50_000..50_005).contains(&at), "expired at {at} ms");
    }
}
