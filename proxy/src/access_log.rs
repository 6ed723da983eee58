//! The access log: one JSON line per request or gRPC stream. Writing never blocks the request
//! path: lines go through a bounded queue to a writer thread, and when the queue is full the line is
//! dropped and counted instead of waiting.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

/// Lines queued before new ones are dropped.
const QUEUE: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum AccessLogError {
    #[error("KONG_PROXY_ACCESS_LOG: cannot open '{path}': {source}")]
    Open { path: String, source: std::io::Error },
    #[error("KONG_PROXY_ACCESS_LOG: cannot start writer thread: {0}")]
    Thread(std::io::Error),
}

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

/// One access log line.
#[derive(Serialize)]
pub struct Entry<'a> {
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
    pub fn open(target: &str) -> Result<AccessLog, AccessLogError> {
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
    fn with_writer(out: Box<dyn Write + Send>, queue: usize) -> Result<AccessLog, AccessLogError> {
        let (tx, rx) = sync_channel::<String>(queue);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Drain what is queued, then flush once.
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .map_err(AccessLogError::Thread)?;
        Ok(AccessLog { tx, dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// Queues one entry; never blocks.
    pub fn write(&self, entry: &Entry<'_>) {
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without a date crate.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
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
        // BufWriter passes lines larger than its buffer straight through; ours are small, so the
        // first write reaches `Stuck` only on flush: either way the thread is stuck after line 1.
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

    #[test]
    fn timestamps_are_rfc3339() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }
}
