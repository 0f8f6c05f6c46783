//! The audit log: one JSON object per line per plain request, and one per tunnel when it
//! closes, to stdout (default) or to `audit.file`, which is reopened on `SIGUSR1` (logrotate's
//! `postrotate` convention). Operational logs (tracing) go to stderr and never mix in.
//!
//! # Off the hot path, never dropped
//! Requests hand a [`Record`] (owned data, no formatting) to a bounded queue; a dedicated
//! thread serialises and writes records in batches, flushing whenever the queue runs dry, so a
//! slow disk never blocks a runtime worker. When the queue is full:
//! - a new request waits in [`AuditLog::admit`] before it is handled, until the writer has made
//!   room: a slow sink slows the proxy down instead of losing records;
//! - a tunnel waits in [`AuditLog::send`] to hand over its record;
//! - a plain request finishes when hyper drops its response body, which is synchronous: its
//!   record is handed to a task that waits for room ([`AuditLog::submit`]). Such records are
//!   bounded by the requests that were already in flight when the queue filled, since
//!   admission holds back new ones.
//!
//! A write error counts the batch's records as `egressd_audit_records_total{result="failed"}`
//! and is logged; after an error the next batch starts on a new line. A record that can no
//! longer be queued (the writer is gone) is counted as failed and logged too.
//!
//! # Format
//! Field names are the constants of [`field`]; see the README for the meaning of each.

use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

use crate::policy::host::Host;
use crate::policy::model::Mode;
use crate::policy::{Kind, Outcome};
use crate::proxy::respond::ErrorType;

mod json;

/// Queue length between requests and the writer thread.
pub const DEFAULT_QUEUE: usize = 4096;
/// A batch is written out once it reaches this size even if more records are queued.
const BATCH_BYTES: usize = 256 * 1024;
/// The writer's pause after each batch (see `Writer::run`).
const BATCH_PAUSE: Duration = Duration::from_millis(2);

/// The audit record's field names, in the order they are written.
pub mod field {
    pub const TS: &str = "ts";
    pub const CLIENT: &str = "client";
    pub const MINISTRY: &str = "ministry";
    pub const IDENTITY: &str = "identity";
    pub const USER: &str = "user";
    pub const KIND: &str = "kind";
    pub const METHOD: &str = "method";
    pub const HOST: &str = "host";
    pub const PORT: &str = "port";
    pub const SNI: &str = "sni";
    pub const PATH: &str = "path";
    pub const ACTION: &str = "action";
    pub const MODE: &str = "mode";
    pub const RULE: &str = "rule";
    pub const STATUS: &str = "status";
    pub const ERROR: &str = "error";
    pub const BYTES_UP: &str = "bytes_up";
    pub const BYTES_DOWN: &str = "bytes_down";
    pub const DURATION_MS: &str = "duration_ms";
    /// Every field, in order.
    pub const ALL: [&str; 19] = [
        TS,
        CLIENT,
        MINISTRY,
        IDENTITY,
        USER,
        KIND,
        METHOD,
        HOST,
        PORT,
        SNI,
        PATH,
        ACTION,
        MODE,
        RULE,
        STATUS,
        ERROR,
        BYTES_UP,
        BYTES_DOWN,
        DURATION_MS,
    ];
}

/// One audit record. Owned, cheap-to-move data: names are shared `Arc<str>`s of the policy,
/// and nothing is formatted until the writer thread serialises it.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the exchange ended (response body done, tunnel closed); it began `duration` earlier.
    pub ts: SystemTime,
    pub client: IpAddr,
    /// The client's ministry, `_unknown` when none.
    pub ministry: Arc<str>,
    /// `source`, `default`, `none` (later: `certificate`, `credentials`).
    pub identity: &'static str,
    pub user: Option<Arc<str>>,
    pub kind: Kind,
    pub method: Method,
    /// `None` when the request target could not be parsed (a 400).
    pub host: Option<Host>,
    pub port: Option<u16>,
    pub sni: Option<Arc<str>>,
    /// Plain HTTP only; the query only with `audit.keep_query`.
    pub path: Option<String>,
    /// `None` when no decision was reached (a malformed request).
    pub action: Option<Outcome>,
    /// The ministry's mode; `None` for `_unknown`.
    pub mode: Option<Mode>,
    pub rule: Option<Arc<str>>,
    pub status: u16,
    /// The RFC 9209 error type of the `Proxy-Status` egressd sent, if any.
    pub error: Option<ErrorType>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration: Duration,
}

/// Where records go.
pub enum Sink {
    Stdout,
    /// `audit.file`: appended to, reopened on `SIGUSR1`. `file` is `None` until opened (a FIFO
    /// is opened by the writer thread, since opening one blocks until a reader appears).
    File {
        path: PathBuf,
        file: Option<File>,
    },
    /// Any writer (tests).
    Writer(Box<dyn Write + Send>),
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl Sink {
    /// A file sink, opened now so that a bad path fails startup, except for a FIFO (opening
    /// one blocks until a reader appears; the writer thread does it).
    pub fn file(path: &Path) -> io::Result<Sink> {
        use std::os::unix::fs::FileTypeExt;
        let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
        let file = if fifo { None } else { Some(open_append(path)?) };
        Ok(Sink::File {
            path: path.to_owned(),
            file,
        })
    }

    fn write_batch(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Sink::File { path, file } => {
                if file.is_none() {
                    *file = Some(open_append(path)?);
                }
                let f = file.as_mut().expect("opened above");
                f.write_all(buf)
            }
            Sink::Writer(w) => {
                w.write_all(buf)?;
                w.flush()
            }
        }
    }

    /// Reopens a file sink by path (after logrotate renamed it). On failure the old file is
    /// kept, so records keep going somewhere.
    fn reopen(&mut self) {
        if let Sink::File { path, file } = self {
            match open_append(path) {
                Ok(f) => {
                    *file = Some(f);
                    tracing::info!(file = %path.display(), "audit file reopened");
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot reopen the audit file; still writing to the old one")
                }
            }
        }
    }
}

// Records travel unboxed: the queue's slots are allocated in blocks and reused, where a box
// per record was an allocation on a worker and a free on the writer's thread.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(Record),
    Reopen,
    Flush(oneshot::Sender<()>),
}

/// The sending side, cloned into every place that finishes a request.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    /// Records waiting in tasks for room in the queue ([`AuditLog::submit`]).
    overflow: Arc<AtomicUsize>,
    failed: IntCounter,
}

impl AuditLog {
    /// Starts the writer thread. `counters` are (written, failed).
    pub fn start(sink: Sink, queue: usize, counters: (IntCounter, IntCounter)) -> AuditLog {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (written, failed) = counters;
        let f = failed.clone();
        std::thread::Builder::new()
            .name("egressd-audit".into())
            .spawn(move || Writer::new(sink, written, f).run(rx))
            .expect("spawning the audit writer thread");
        AuditLog {
            tx,
            overflow: Arc::new(AtomicUsize::new(0)),
            failed,
        }
    }

    /// Waits while the queue is full (see the module docs). Free when it is not.
    pub async fn admit(&self) {
        if self.tx.capacity() > 0 && self.overflow.load(Relaxed) == 0 {
            return;
        }
        // Queue behind everyone already waiting, then give the slot back at once.
        drop(self.tx.reserve().await);
    }

    /// Hands a record over without waiting (from `Drop`). When the queue is full, a task waits
    /// for room on the record's behalf.
    pub fn submit(&self, record: Record) {
        let msg = Msg::Record(record);
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(_)) => return self.lost(1),
            Err(mpsc::error::TrySendError::Full(msg)) => msg,
        };
        self.overflow.fetch_add(1, Relaxed);
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let sent = this.tx.send(msg).await;
                    this.parked_done(sent.is_ok());
                });
            }
            // Dropped outside the runtime (shutdown): wait on a plain thread.
            Err(_) => {
                std::thread::spawn(move || {
                    let sent = this.tx.blocking_send(msg);
                    this.parked_done(sent.is_ok());
                });
            }
        }
    }

    fn parked_done(&self, sent: bool) {
        if !sent {
            self.lost(1);
        }
        self.overflow.fetch_sub(1, Relaxed);
    }

    /// Hands a record over, waiting while the queue is full (tunnels).
    pub async fn send(&self, record: Record) {
        if self.tx.send(Msg::Record(record)).await.is_err() {
            self.lost(1);
        }
    }

    /// Makes the writer reopen its file after the records queued so far.
    pub async fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen).await;
    }

    /// Resolves once every record queued before the call has been written (or failed), or
    /// after `timeout`. For shutdown, so the last records reach the sink.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = oneshot::channel();
        let wait = async { self.tx.send(Msg::Flush(ack)).await.is_ok() && done.await.is_ok() };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Reopens the audit file on every `SIGUSR1`. The handler is installed here, synchronously,
    /// so the signal's default action (terminate) is replaced before this returns.
    pub fn reopen_on_sigusr1(&self) -> io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr1 = signal(SignalKind::user_defined1())?;
        // A weak sender: the listener alone does not keep the writer alive.
        let weak = self.tx.downgrade();
        Ok(tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                match weak.upgrade() {
                    Some(tx) => {
                        let _ = tx.send(Msg::Reopen).await;
                    }
                    None => return,
                }
            }
        }))
    }

    fn lost(&self, n: u64) {
        self.failed.inc_by(n);
        tracing::error!(records = n, "audit writer is gone; records lost");
    }
}

/// The writer thread's state.
struct Writer {
    sink: Sink,
    batch: Vec<u8>,
    records: u64,
    written: IntCounter,
    failed: IntCounter,
    /// The last write failed, maybe mid-line: start the next batch on a new line.
    broken_line: bool,
    json: json::LineWriter,
}

impl Writer {
    fn new(sink: Sink, written: IntCounter, failed: IntCounter) -> Writer {
        Writer {
            json: json::LineWriter::default(),
            sink,
            batch: Vec::with_capacity(64 * 1024),
            records: 0,
            written,
            failed,
            broken_line: false,
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                self.handle(msg);
                if self.batch.len() < BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.write_out();
            // Let the next records gather instead of waking for each one: a writer parked on
            // an empty queue costs every sender a wake-up (a futex call) and every record its
            // own write(2). Records wait at most this long; senders never wait for it.
            std::thread::sleep(BATCH_PAUSE);
        }
        self.write_out();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Record(r) => {
                let before = self.batch.len();
                match self.json.write(&r, &mut self.batch) {
                    Ok(()) => {
                        self.batch.push(b'\n');
                        self.records += 1;
                    }
                    Err(e) => {
                        self.batch.truncate(before);
                        self.failed.inc();
                        tracing::error!(error = %e, "audit record could not be serialised");
                    }
                }
            }
            Msg::Reopen => {
                self.write_out();
                self.sink.reopen();
            }
            Msg::Flush(ack) => {
                self.write_out();
                let _ = ack.send(());
            }
        }
    }

    fn write_out(&mut self) {
        if self.records == 0 {
            return;
        }
        if self.broken_line {
            self.batch.insert(0, b'\n');
        }
        match self.sink.write_batch(&self.batch) {
            Ok(()) => {
                self.written.inc_by(self.records);
                self.broken_line = false;
            }
            Err(e) => {
                self.failed.inc_by(self.records);
                self.broken_line = true;
                tracing::error!(error = %e, records = self.records, "audit write failed");
            }
        }
        self.batch.clear();
        self.records = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    pub(crate) fn record(n: u64) -> Record {
        Record {
            ts: "2026-05-01T09:30:00.123456Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                .into(),
            client: "10.20.3.4".parse().unwrap(),
            ministry: "agriculture".into(),
            identity: "source",
            user: None,
            kind: Kind::Http,
            method: Method::GET,
            host: Some(Host::Name("www.example.com".into())),
            port: Some(80),
            sni: None,
            path: Some("/a\"b".into()),
            action: Some(Outcome::Allow),
            mode: Some(Mode::Enforce),
            rule: Some("_organization/_default".into()),
            status: 200,
            error: None,
            bytes_up: 0,
            bytes_down: n,
            duration: Duration::from_micros(12_345),
        }
    }

    #[test]
    fn record_serialises_every_field_in_order() {
        let line = |r: &Record| {
            let mut out = Vec::new();
            json::LineWriter::default().write(r, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            line(&record(5)),
            r#"{"ts":"2026-05-01T09:30:00.123Z","client":"10.20.3.4","ministry":"agriculture","identity":"source","user":null,"kind":"http","method":"GET","host":"www.example.com","port":80,"sni":null,"path":"/a\"b","action":"allow","mode":"enforce","rule":"_organization/_default","status":200,"error":null,"bytes_up":0,"bytes_down":5,"duration_ms":12.345}"#
        );
        let mut r = record(0);
        r.host = Some(Host::Ip("::1".parse().unwrap()));
        let v: serde_json::Value = serde_json::from_str(&line(&r)).unwrap();
        assert_eq!(v["host"], "::1");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut want: Vec<_> = field::ALL.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(keys, want);
    }

    /// A writer that blocks until the test opens its gate.
    #[derive(Clone)]
    struct Gated {
        open: Arc<(Mutex<bool>, Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_sink_makes_senders_wait_and_loses_nothing() {
        let gate = Gated {
            open: Arc::new((Mutex::new(false), Condvar::new())),
            out: Arc::new(Mutex::new(Vec::new())),
        };
        let (w, f) = (
            IntCounter::new("w", "w").unwrap(),
            IntCounter::new("f", "f").unwrap(),
        );
        let log = AuditLog::start(
            Sink::Writer(Box::new(gate.clone())),
            2,
            (w.clone(), f.clone()),
        );
        // The writer takes what is queued (up to a batch) and blocks in write(); the queue
        // fills up behind it and the rest of these synchronous submits park in tasks.
        const N: u64 = 1000;
        for i in 0..N {
            log.submit(record(i));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let admitted = tokio::time::timeout(Duration::from_millis(200), log.admit()).await;
        assert!(
            admitted.is_err(),
            "admission must wait while the queue is full"
        );
        let l2 = log.clone();
        let sender = tokio::spawn(async move {
            for i in N..N + 10 {
                l2.send(record(i)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !sender.is_finished(),
            "send must wait while the sink is blocked"
        );
        assert_eq!(w.get(), 0);
        // Open the gate: everything arrives, exactly once.
        *gate.open.0.lock().unwrap() = true;
        gate.open.1.notify_all();
        sender.await.unwrap();
        log.admit().await;
        for _ in 0..250 {
            log.flush(Duration::from_secs(5)).await;
            if w.get() == N + 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!((w.get(), f.get()), (N + 10, 0));
        let out = String::from_utf8(gate.out.lock().unwrap().clone()).unwrap();
        let mut seen: Vec<u64> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["bytes_down"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        seen.sort();
        assert_eq!(seen, (0..N + 10).collect::<Vec<_>>());
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn write_errors_are_counted_as_failed() {
        let (w, f) = (
            IntCounter::new("w", "w").unwrap(),
            IntCounter::new("f", "f").unwrap(),
        );
        let log = AuditLog::start(Sink::Writer(Box::new(Broken)), 16, (w.clone(), f.clone()));
        log.send(record(1)).await;
        log.send(record(2)).await;
        assert!(log.flush(Duration::from_secs(5)).await);
        assert_eq!((w.get(), f.get()), (0, 2));
    }

    #[tokio::test]
    async fn file_sink_reopens_after_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (w, f) = (
            IntCounter::new("w", "w").unwrap(),
            IntCounter::new("f", "f").unwrap(),
        );
        let log = AuditLog::start(Sink::file(&path).unwrap(), 16, (w.clone(), f));
        log.send(record(1)).await;
        log.flush(Duration::from_secs(5)).await;
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        log.send(record(2)).await; // still the old file: not reopened yet
        log.reopen().await;
        log.send(record(3)).await;
        log.flush(Duration::from_secs(5)).await;
        let old = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!((old.lines().count(), new.lines().count()), (2, 1));
        assert_eq!(w.get(), 3);
    }
}
