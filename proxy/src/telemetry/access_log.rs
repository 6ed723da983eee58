//! The access log: one JSON line per request or gRPC stream. Writing never blocks the request
//! path: lines are appended to a bounded in-memory batch that a writer thread takes and writes out,
//! and when the batch is full a line is dropped and counted instead of waiting.
//!
//! The writer is woken once per batch, not once per line: when a line lands in an empty batch (the
//! writer then waits up to [`FLUSH_EVERY`] for more) and when a batch reaches [`WAKE_AT`] bytes.
//! Waking it per line (a channel send per request) cost 1.3 context switches per request on each
//! side, and with the proxy on one core half its HTTP/1.1 throughput (bench/RESULTS.md, "Late").

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::memo;

/// Lines waiting to be written before new ones are dropped.
const QUEUE: usize = 16 * 1024;
/// How long a line may wait for others to be written with it.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A batch this large is written at once.
const WAKE_AT: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum AccessLogError {
    #[error("KONG_PROXY_ACCESS_LOG: cannot open '{path}': {source}")]
    Open { path: String, source: std::io::Error },
    #[error("KONG_PROXY_ACCESS_LOG: cannot start writer thread: {0}")]
    Thread(std::io::Error),
}

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub(crate) struct AccessLog {
    handle: Arc<Handle>,
}

/// Shared by all clones of one [`AccessLog`]; the writer thread holds only the queue.
struct Handle {
    queue: Arc<Queue>,
}

/// The last handle gone: the writer writes what is left at once and ends.
impl Drop for Handle {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.wake.notify_one();
    }
}

/// The batch shared by the request path and the writer thread.
struct Queue {
    batch: Mutex<Batch>,
    /// Signalled when a line lands in an empty batch, when a batch reaches `WAKE_AT`, and on close.
    wake: Condvar,
    /// Room in lines.
    limit: usize,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: usize,
    /// Every handle is gone: write what is left and stop.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        // A panic while holding the lock leaves only bytes behind; they are still good to write.
        self.batch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer thread: waits for a batch, gives it a moment to fill, writes it.
    fn run(&self, out: &mut dyn Write) {
        let mut spare = Vec::new();
        loop {
            let mut batch = self.lock();
            while batch.bytes.is_empty() && !batch.closed {
                batch = self.wake.wait(batch).unwrap_or_else(|e| e.into_inner());
            }
            if batch.bytes.len() < WAKE_AT && !batch.closed {
                batch = self.wake.wait_timeout(batch, FLUSH_EVERY).unwrap_or_else(|e| e.into_inner()).0;
            }
            let closed = batch.closed;
            std::mem::swap(&mut batch.bytes, &mut spare);
            batch.lines = 0;
            drop(batch);
            let _ = out.write_all(&spare);
            let _ = out.flush();
            spare.clear();
            if closed {
                return;
            }
        }
    }
}

/// One access log line.
#[derive(Serialize)]
pub(crate) struct Entry<'a> {
    pub time: String,
    pub client: String,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub route: &'a str,
    pub service: &'a str,
    pub upstream: &'a str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_latency_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl AccessLog {
    /// Opens the target (`/dev/stdout`, `/dev/stderr` or a file, appended) and starts the writer.
    /// `off` is handled by the caller (no `AccessLog` at all).
    pub(crate) fn open(target: &str) -> Result<AccessLog, AccessLogError> {
        let out: Box<dyn Write + Send> = match target {
            "/dev/stdout" | "stdout" => Box::new(std::io::stdout()),
            "/dev/stderr" | "stderr" => Box::new(std::io::stderr()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AccessLogError::Open { path: path.to_string(), source })?,
            ),
        };
        AccessLog::with_writer(out, QUEUE)
    }

    /// Starts the writer thread on `out`, with room for `queue` lines.
    fn with_writer(mut out: Box<dyn Write + Send>, queue: usize) -> Result<AccessLog, AccessLogError> {
        let q = Arc::new(Queue {
            batch: Mutex::new(Batch::default()),
            wake: Condvar::new(),
            limit: queue,
            dropped: AtomicU64::new(0),
        });
        let writer = Arc::clone(&q);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(&mut out))
            .map_err(AccessLogError::Thread)?;
        Ok(AccessLog { handle: Arc::new(Handle { queue: q }) })
    }

    /// Queues one entry; never blocks (but for the moment the batch is locked).
    pub(crate) fn write(&self, entry: &Entry<'_>) {
        // Room for a typical line: no regrowth while serde writes it.
        let mut line = Vec::with_capacity(384);
        if serde_json::to_writer(&mut line, entry).is_err() {
            return;
        }
        line.push(b'\n');
        let q = &*self.handle.queue;
        let mut batch = q.lock();
        if batch.lines >= q.limit {
            // Said in the log at 1, 2, 4, 8, ... lines dropped: never silent, never a flood.
            let dropped = q.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "access log lines dropped: the writer cannot keep up");
            }
            return;
        }
        let was_empty = batch.bytes.is_empty();
        batch.bytes.extend_from_slice(&line);
        batch.lines += 1;
        let full = batch.bytes.len() >= WAKE_AT && batch.bytes.len() - line.len() < WAKE_AT;
        drop(batch);
        if was_empty || full {
            q.wake.notify_one();
        }
    }
}

/// The last timestamp and client address rendered on this thread: requests finishing in the same
/// millisecond, or from the same client, reuse the text instead of formatting it again. With the
/// line's buffer sized up front: 31,956 -> 29,128 instructions per logged HTTP/1.1 request
/// (bench/callgrind.sh with KONG_PROXY_ACCESS_LOG set; 50 clients, so the address mostly misses).
#[derive(Default)]
struct Rendered {
    stamp: Option<(u128, String)>,
    client: Option<(SocketAddr, String)>,
}

thread_local! {
    static RENDERED: RefCell<Rendered> = RefCell::new(Rendered::default());
}

/// RFC 3339 UTC timestamp of now, with milliseconds.
pub(crate) fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = now.as_millis();
    RENDERED.with(|r| memo::last(&mut r.borrow_mut().stamp, ms, |_| rfc3339(now)))
}

/// `ip:port` of a client, as `SocketAddr` displays it.
pub(crate) fn client_text(addr: SocketAddr) -> String {
    RENDERED.with(|r| memo::last(&mut r.borrow_mut().client, addr, |a| a.to_string()))
}

/// RFC 3339 UTC timestamp with milliseconds of a time since the Unix epoch, without a date crate.
fn rfc3339(now: Duration) -> String {
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
impl AccessLog {
    /// Lines dropped because the writer could not keep up.
    fn dropped(&self) -> u64 {
        self.handle.queue.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::time::{Duration, Instant};

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            time: now_rfc3339(),
            client: "127.0.0.1:1".into(),
            method: "GET",
            host: "h",
            path,
            protocol: "http",
            route: "r",
            service: "s",
            upstream: "127.0.0.1:2",
            status: 200,
            grpc_status: None,
            latency_ms: 1.5,
            upstream_latency_ms: Some(1.0),
            bytes_in: 0,
            bytes_out: 10,
            error: None,
        }
    }

    /// A writer that reports each write and then waits until the test lets it go on, like a
    /// disk or pipe that has stopped draining.
    struct Stuck {
        wrote: Sender<Vec<u8>>,
        go_on: Receiver<()>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.wrote.send(buf.to_vec());
            let _ = self.go_on.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_writer_drops_and_counts_lines_instead_of_blocking() {
        let (wrote_tx, wrote) = channel();
        let (go_on, go_on_rx) = channel();
        let stuck = Stuck { wrote: wrote_tx, go_on: go_on_rx };
        // The writer takes the first line's batch and is stuck writing it.
        let log = AccessLog::with_writer(Box::new(stuck), 4).unwrap();
        log.write(&entry("/0"));
        let first = wrote.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(String::from_utf8(first).unwrap().contains(r#""path":"/0""#));
        // The writer thread is now stuck in `write`: 4 lines fit the queue, the other 96 drop.
        let started = Instant::now();
        for i in 1..=100 {
            log.write(&entry(&format!("/{i}")));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "write blocked: {:?}", started.elapsed());
        assert_eq!(log.dropped(), 96);
        // Unstick it: the 4 queued lines arrive, in order, after the first.
        let mut rest = String::new();
        while rest.lines().count() < 4 {
            go_on.send(()).unwrap();
            rest.push_str(&String::from_utf8(wrote.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap());
        }
        let paths: Vec<String> = rest
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(paths, ["/1", "/2", "/3", "/4"]);
        drop(go_on);
    }

    /// A writer that records each `write` call's bytes.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn paths(&self) -> Vec<String> {
            let all: Vec<u8> = self.0.lock().unwrap().concat();
            String::from_utf8(all)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].as_str().unwrap().to_string())
                .collect()
        }
    }

    #[test]
    fn lines_are_written_in_batches_in_order_and_the_rest_when_the_log_is_dropped() {
        let out = Recorder::default();
        let log = AccessLog::with_writer(Box::new(out.clone()), QUEUE).unwrap();
        let other = log.clone();
        for i in 0..3000 {
            (if i % 2 == 0 { &log } else { &other }).write(&entry(&format!("/{i}")));
        }
        drop(log);
        // Still open through `other`: what was written so far arrives within FLUSH_EVERY.
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.paths().len() < 3000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let want: Vec<String> = (0..3000).map(|i| format!("/{i}")).collect();
        assert_eq!(out.paths(), want);
        let writes = out.0.lock().unwrap().len();
        // ~250 bytes a line: a batch per 64 KiB is about 12 writes; one write per line was 3000.
        assert!(writes < 300, "{writes} writes for 3000 lines");
        // A line queued when the last handle goes is still written.
        other.write(&entry("/last"));
        assert_eq!(other.dropped(), 0);
        drop(other);
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.paths().last().map(String::as_str) != Some("/last") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.paths().len(), 3001);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
        // Known instants, including a leap day and the last millisecond of a year.
        assert_eq!(rfc3339(Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(Duration::from_millis(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(Duration::from_millis(1_798_761_599_999)), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn rendered_text_follows_the_address() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "[::1]:2000".parse().unwrap();
        assert_eq!(client_text(a), "127.0.0.1:1000");
        assert_eq!(client_text(a), "127.0.0.1:1000");
        assert_eq!(client_text(b), "[::1]:2000");
        assert_eq!(client_text(a), "127.0.0.1:1000");
    }
}
