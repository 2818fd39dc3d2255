//! Event sinks: JSON lines to stdout or to a size-rotated file, each with a bounded queue and a writer.
//!
//! Sending never blocks the request: a full queue drops the event for that sink and counts it in
//! `authward_event_sink_dropped_total{sink}`. Each sink has a writer thread (plain blocking writes through
//! a 64 KiB buffer, flushed when full and at most [`FLUSH_EVERY`] after a line was buffered), so a line
//! reaches the file within a second. [`Sinks::close`] lets every writer finish its queue, flush and exit:
//! every event queued before it is written; shutdown calls it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

use crate::metrics::Metrics;

/// One configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    Stdout,
    File {
        path: PathBuf,
        /// Rotate before a line would take the file past this many bytes.
        max_size: u64,
        /// Rotated files kept: `PATH.1` (newest) to `PATH.N`.
        keep: usize,
    },
}

impl SinkSpec {
    /// The `sink` label of the sink's metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SinkSpec::Stdout => "stdout",
            SinkSpec::File { .. } => "file",
        }
    }
}

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("event sink {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot start the event sink writer: {0}")]
    Thread(io::Error),
}

enum Msg {
    Line(Arc<str>),
    Close,
}

/// One sink's queue, writer thread and metrics.
struct Queue {
    tx: SyncSender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped: IntCounter,
    depth: IntGauge,
}

/// Every configured sink; events are sent to all of them.
pub struct Sinks {
    queues: Vec<Queue>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("count", &self.queues.len())
            .finish()
    }
}

/// Where one writer writes.
trait LineOut: Send {
    fn write_line(&mut self, line: &str) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

impl Sinks {
    /// Opens every sink (a file that cannot be opened is an error) and starts the writers; each queue
    /// holds at most `queue` events.
    pub fn start(specs: &[SinkSpec], queue: usize, metrics: &Metrics) -> Result<Sinks, SinkError> {
        let mut queues = Vec::with_capacity(specs.len());
        for spec in specs {
            let out: Box<dyn LineOut> = match spec {
                SinkSpec::Stdout => Box::new(StdoutOut(BufWriter::with_capacity(BUFFER, io::stdout()))),
                SinkSpec::File { path, max_size, keep } => Box::new(
                    RotatingFile::open(path.clone(), *max_size, *keep).map_err(|source| SinkError::Open {
                        path: path.display().to_string(),
                        source,
                    })?,
                ),
            };
            let label = spec.label();
            let (tx, rx) = sync_channel(queue.max(1));
            let depth = metrics.event_sink_queue_depth.with_label_values(&[label]);
            let writer = {
                let depth = depth.clone();
                std::thread::Builder::new()
                    .name(format!("authward-sink-{label}"))
                    .spawn(move || write_loop(rx, out, &depth, label))
                    .map_err(SinkError::Thread)?
            };
            queues.push(Queue {
                tx,
                writer: Mutex::new(Some(writer)),
                dropped: metrics.event_sink_dropped.with_label_values(&[label]),
                depth,
            });
        }
        Ok(Sinks { queues })
    }

    /// Whether no sink is configured (then events need not be encoded for them).
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Queues one JSON line (without its newline) for every sink; never waits.
    pub fn send(&self, line: &Arc<str>) {
        for q in &self.queues {
            match q.tx.try_send(Msg::Line(line.clone())) {
                Ok(()) => q.depth.inc(),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => q.dropped.inc(),
            }
        }
    }

    /// Lets every writer write what is queued, flush and exit; blocks until they have. Events sent after
    /// this are dropped and counted.
    pub fn close(&self) {
        for q in &self.queues {
            // Waits for room behind the queued lines; fails only if the writer is already gone.
            let _ = q.tx.send(Msg::Close);
        }
        for q in &self.queues {
            if let Some(w) = q.writer.lock().take() {
                if w.join().is_err() {
                    tracing::error!("an event sink writer panicked");
                }
            }
        }
    }
}

/// The longest a written line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Buffer size of each writer.
const BUFFER: usize = 64 * 1024;

fn write_loop(rx: Receiver<Msg>, mut out: Box<dyn LineOut>, depth: &IntGauge, label: &str) {
    let mut failing = false;
    let mut report = |r: io::Result<()>| match r {
        Ok(()) => failing = false,
        Err(e) => {
            // Said once per run of failures, not once per line.
            if !failing {
                tracing::error!(sink = label, error = %e, "cannot write events to the sink");
            }
            failing = true;
        }
    };
    // When the oldest line not yet flushed was buffered.
    let mut unflushed: Option<Instant> = None;
    loop {
        let msg = match unflushed {
            None => rx.recv().ok(),
            Some(since) => {
                match rx.recv_timeout((since + FLUSH_EVERY).saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => {
                        report(out.flush());
                        unflushed = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            }
        };
        match msg {
            Some(Msg::Line(line)) => {
                depth.dec();
                report(out.write_line(&line));
                unflushed.get_or_insert_with(Instant::now);
            }
            Some(Msg::Close) | None => break,
        }
    }
    report(out.flush());
}

struct StdoutOut(BufWriter<io::Stdout>);

impl LineOut for StdoutOut {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        self.0.write_all(line.as_bytes())?;
        self.0.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A file of lines that is renamed to `PATH.1` (and older ones shifted up to `PATH.keep`) before a line
/// would take it past `max_size`. A line is never split across files; one longer than `max_size` gets a
/// file of its own.
struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: usize,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    fn open(path: PathBuf, max_size: u64, keep: usize) -> io::Result<Self> {
        let mut f = RotatingFile {
            path,
            max_size,
            keep,
            file: None,
            size: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> io::Result<&mut BufWriter<File>> {
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = file.metadata()?.len();
        Ok(self.file.insert(BufWriter::with_capacity(BUFFER, file)))
    }

    fn rotated(path: &Path, n: usize) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = Self::rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, Self::rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, Self::rotated(&self.path, 1))?;
        }
        self.reopen()?;
        Ok(())
    }
}

impl LineOut for RotatingFile {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => self.reopen()?,
        };
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rotation_keeps_n_files_and_never_splits_or_loses_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let m = Metrics::new();
        let spec = SinkSpec::File {
            path: path.clone(),
            max_size: 100,
            keep: 2,
        };
        let sinks = Sinks::start(&[spec], 1000, &m).unwrap();
        // 30-byte lines (29 + newline): three fit in 100 bytes, the fourth starts a new file.
        let lines: Vec<String> = (0..20)
            .map(|i| format!("{{\"n\":{i:03},\"pad\":\"xxxxxxxxxxx\"}}"))
            .collect();
        assert!(lines.iter().all(|l| l.len() == 29));
        for l in &lines {
            sinks.send(&Arc::from(l.as_str()));
        }
        sinks.close();
        let current = read_lines(&path);
        let one = read_lines(&RotatingFile::rotated(&path, 1));
        let two = read_lines(&RotatingFile::rotated(&path, 2));
        assert!(!RotatingFile::rotated(&path, 3).exists(), "only `keep` old files");
        // 20 lines in files of 3: the newest 9 are in .2, .1 and the current file, whole and in order.
        assert_eq!(current, lines[18..].to_vec());
        assert_eq!(one, lines[15..18].to_vec());
        assert_eq!(two, lines[12..15].to_vec());
        for p in [
            path.clone(),
            RotatingFile::rotated(&path, 1),
            RotatingFile::rotated(&path, 2),
        ] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 100);
        }
        let text = m.render();
        assert!(
            text.contains("authward_event_sink_queue_depth{sink=\"file\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn appends_to_an_existing_file_and_gives_an_oversized_line_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let m = Metrics::new();
        let spec = SinkSpec::File {
            path: path.clone(),
            max_size: 10,
            keep: 1,
        };
        let sinks = Sinks::start(&[spec], 10, &m).unwrap();
        sinks.send(&Arc::from("abc"));
        sinks.send(&Arc::from("a-line-longer-than-ten"));
        sinks.send(&Arc::from("z"));
        sinks.close();
        assert_eq!(read_lines(&path), vec!["z"]);
        assert_eq!(
            read_lines(&RotatingFile::rotated(&path, 1)),
            vec!["a-line-longer-than-ten"]
        );
        assert!(!RotatingFile::rotated(&path, 2).exists());
    }

    #[test]
    fn keep_zero_discards_the_full_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let spec = SinkSpec::File {
            path: path.clone(),
            max_size: 4,
            keep: 0,
        };
        let sinks = Sinks::start(&[spec], 10, &Metrics::new()).unwrap();
        for l in ["aa", "bb", "cc"] {
            sinks.send(&Arc::from(l));
        }
        sinks.close();
        assert_eq!(read_lines(&path), vec!["cc"]);
        assert!(!RotatingFile::rotated(&path, 1).exists());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let m = Metrics::new();
        let (tx, rx) = sync_channel(2);
        // A queue whose writer has not started yet: two lines fit, the rest are dropped.
        let q = Queue {
            tx,
            writer: Mutex::new(None),
            dropped: m.event_sink_dropped.with_label_values(&["file"]),
            depth: m.event_sink_queue_depth.with_label_values(&["file"]),
        };
        let sinks = Sinks { queues: vec![q] };
        for i in 0..5 {
            sinks.send(&Arc::from(format!("line {i}").as_str()));
        }
        let text = m.render();
        assert!(
            text.contains("authward_event_sink_dropped_total{sink=\"file\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("authward_event_sink_queue_depth{sink=\"file\"} 2"),
            "{text}"
        );
        // The writer then writes what was queued.
        let out = RotatingFile::open(path.clone(), 1 << 20, 1).unwrap();
        let depth = m.event_sink_queue_depth.with_label_values(&["file"]);
        let w = std::thread::spawn(move || write_loop(rx, Box::new(out), &depth, "file"));
        sinks.queues[0].tx.send(Msg::Close).unwrap();
        w.join().unwrap();
        assert_eq!(read_lines(&path), vec!["line 0", "line 1"]);
        // After close, sends are dropped and counted, never blocked.
        sinks.send(&Arc::from("late"));
        assert!(
            m.render()
                .contains("authward_event_sink_dropped_total{sink=\"file\"} 4")
        );
    }

    #[test]
    fn lines_reach_the_file_within_the_flush_interval_without_a_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let spec = SinkSpec::File {
            path: path.clone(),
            max_size: 1 << 20,
            keep: 1,
        };
        let sinks = Sinks::start(&[spec], 10, &Metrics::new()).unwrap();
        sinks.send(&Arc::from("first"));
        std::thread::sleep(FLUSH_EVERY + Duration::from_millis(500));
        assert_eq!(read_lines(&path), vec!["first"]);
        sinks.close();
    }

    #[test]
    fn an_unwritable_path_fails_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SinkSpec::File {
            path: dir.path().join("no-such-dir/e.jsonl"),
            max_size: 100,
            keep: 1,
        };
        let e = Sinks::start(&[spec], 10, &Metrics::new()).unwrap_err();
        assert!(e.to_string().contains("no-such-dir"), "{e}");
    }
}
