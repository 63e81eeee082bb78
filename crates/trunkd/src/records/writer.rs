//! The record writer: one thread that puts every record on disk, so a
//! call task never waits for an fsync.
//!
//! A record costs two to four fsyncs (the spool entry and its directory
//! when remote sinks are configured, the local copy and its directory).
//! Done on the call task, that is worker-thread time spent waiting on the
//! disk at the end of every call; under load, or on a slow disk, it delays
//! every other call sharing the worker. Calls hand their records here with
//! a non-blocking send instead.
//!
//! The writer takes whatever has queued up at once: every local copy is
//! written and its data synced, then each directory the batch touched is
//! synced once, so under load one directory fsync covers many records.
//! Records keep their order (a streamed call's SDR before its CDR), and
//! what must follow a record's durability (the call journal's entry going,
//! see `call_journal`) runs only after that record's directory sync.
//!
//! Nothing is lost to a full queue: past [`QUEUE`] records the caller
//! writes the record itself, as before the writer existed, which slows
//! that call instead of dropping its record. [`drain`] waits until
//! everything handed over is on disk; the daemon calls it before exiting,
//! so a record written before SIGTERM survives.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::warn;
use trunkd_core::TransactionId;

use super::spool::{self, Spool, Spooled};
use crate::metrics::Metrics;

/// Records waiting for the writer before callers write their own.
const QUEUE: usize = 8_192;
/// Bodies larger than this (a call's WAV file for the record store) are
/// written by the caller, already off the runtime's threads, so the queue's
/// memory stays bounded by record-sized bodies.
pub const MAX_QUEUED_BODY: usize = 256 * 1024;

/// What must happen once a record is durable.
pub enum Then {
    /// The call's CDR is on disk: its journal entry can go.
    JournalEnded(crate::call_journal::Journal, TransactionId),
}

impl Then {
    fn run(self) {
        match self {
            Then::JournalEnded(journal, txn) => journal.ended(txn),
        }
    }
}

/// One record to put in.
pub struct Job {
    pub kind: &'static str,
    pub key: String,
    pub body: Vec<u8>,
    /// `records.directory` of the configuration the record was made under.
    pub directory: PathBuf,
    pub then: Option<Then>,
}

enum Op {
    Put(Job),
    /// Answered once every earlier job is on disk.
    Barrier(mpsc::Sender<()>),
}

struct Writer {
    tx: SyncSender<Op>,
}

static WRITER: OnceLock<Writer> = OnceLock::new();

/// Starts the writer thread; records go through it from now on. `spool`
/// is the daemon's (records for remote sinks go there first); the counts
/// go to `shared`'s metrics.
pub fn start(
    spool: Option<std::sync::Arc<Spool>>,
    shared: std::sync::Arc<crate::daemon::Shared>,
) -> std::io::Result<()> {
    if WRITER.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("trunkd-records".into())
        .spawn(move || run(&rx, spool.as_deref(), &shared.metrics))?;
    let _ = WRITER.set(Writer { tx });
    Ok(())
}

/// Hands `job` to the writer. Gives it back when there is no writer (tests
/// that build no daemon), the queue is full or the body is too large for
/// the queue: the caller then writes it itself with [`write_now`].
pub fn submit(job: Job) -> Result<(), Box<Job>> {
    let Some(w) = WRITER.get() else {
        return Err(Box::new(job));
    };
    if job.body.len() > MAX_QUEUED_BODY {
        return Err(Box::new(job));
    }
    match w.tx.try_send(Op::Put(job)) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(Op::Put(j)) | TrySendError::Disconnected(Op::Put(j))) => {
            Err(Box::new(j))
        }
        Err(_) => Ok(()),
    }
}

/// Waits until every record handed over so far is on disk, at most
/// `limit`. Returns false on timeout (the writer is stuck on a disk).
pub fn drain(limit: Duration) -> bool {
    let Some(w) = WRITER.get() else {
        return true;
    };
    let (tx, rx) = mpsc::channel();
    if w.tx.send(Op::Barrier(tx)).is_err() {
        return true;
    }
    rx.recv_timeout(limit).is_ok()
}

/// Writes one record on the caller's thread: the spool, then the local
/// copy (both synced), then what follows it.
pub fn write_now(job: Job, spool: Option<&Spool>, metrics: &Metrics) {
    put_spool(spool, &job, metrics);
    let path = job.directory.join(&job.key);
    match super::write_atomically(&path, &job.body) {
        Ok(()) => metrics.record_written(job.kind),
        Err(e) => {
            metrics.record_failed(job.kind);
            warn!(path = %path.display(), error = %e, kind = job.kind, "record write failed");
        }
    }
    if let Some(t) = job.then {
        t.run();
    }
}

fn put_spool(spool: Option<&Spool>, job: &Job, metrics: &Metrics) {
    let Some(s) = spool else { return };
    match s.put(&job.key, &job.body) {
        Ok(Spooled::Full) => {
            metrics.records_spool_rejected.inc();
        }
        Ok(_) => {}
        Err(e) => warn!(
            dir = %s.dir().display(),
            error = %e,
            kind = job.kind,
            "record not spooled: remote sinks will not get it"
        ),
    }
}

fn run(rx: &Receiver<Op>, spool: Option<&Spool>, metrics: &Metrics) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        write_batch(batch, spool, metrics);
    }
}

/// A record whose file is written and renamed, waiting for its
/// directory's sync.
struct Pending {
    kind: &'static str,
    path: PathBuf,
    then: Option<Then>,
    ok: bool,
}

fn write_batch(batch: Vec<Op>, spool: Option<&Spool>, metrics: &Metrics) {
    let mut pending = Vec::with_capacity(batch.len());
    let mut barriers = Vec::new();
    let mut dirs = BTreeSet::new();
    for op in batch {
        match op {
            Op::Barrier(b) => barriers.push(b),
            Op::Put(job) => {
                put_spool(spool, &job, metrics);
                let path = job.directory.join(&job.key);
                let ok = match write_file(&path, &job.body) {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, kind = job.kind, "record write failed");
                        false
                    }
                };
                if ok {
                    if let Some(d) = path.parent() {
                        dirs.insert(d.to_path_buf());
                    }
                }
                pending.push(Pending {
                    kind: job.kind,
                    path,
                    then: job.then,
                    ok,
                });
            }
        }
    }
    let mut failed_dirs = BTreeSet::new();
    for d in &dirs {
        if let Err(e) = spool::sync_dir(d) {
            warn!(dir = %d.display(), error = %e, "records directory sync failed");
            failed_dirs.insert(d.clone());
        }
    }
    for p in pending {
        let durable = p.ok && p.path.parent().is_none_or(|d| !failed_dirs.contains(d));
        if durable {
            metrics.record_written(p.kind);
            if let Some(t) = p.then {
                t.run();
            }
        } else {
            // The journal entry stays: the next start writes the CDR from it
            // if this one did not reach the disk.
            metrics.record_failed(p.kind);
        }
    }
    for b in barriers {
        let _ = b.send(());
    }
}

/// Writes `data` to `path` through a synced temporary file and a rename;
/// the directory is synced by the caller (once per batch, or at once by
/// [`super::write_atomically`]).
pub(super) fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory, removed when dropped.
    struct TempDir(PathBuf);
    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tempdir() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("trunkd-writer-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn job(dir: &Path, key: &str, body: &str) -> Job {
        Job {
            kind: "cdr",
            key: key.into(),
            body: body.as_bytes().to_vec(),
            directory: dir.to_path_buf(),
            then: None,
        }
    }

    #[test]
    fn a_batch_writes_every_record_whole_and_counts_them() {
        let dir = tempdir();
        let metrics = Metrics::new();
        let batch = vec![
            Op::Put(job(dir.path(), "a/1.json", "{\"n\":1}")),
            Op::Put(job(dir.path(), "a/2.json", "{\"n\":2}")),
            Op::Put(job(dir.path(), "b/3.json", "{\"n\":3}")),
        ];
        write_batch(batch, None, &metrics);
        for (k, v) in [
            ("a/1.json", "{\"n\":1}"),
            ("a/2.json", "{\"n\":2}"),
            ("b/3.json", "{\"n\":3}"),
        ] {
            assert_eq!(std::fs::read_to_string(dir.path().join(k)).unwrap(), v);
        }
        assert!(!dir.path().join("a/1.json.tmp").exists());
        let text = metrics.encode();
        assert!(
            text.contains("records_written_total{kind=\"cdr\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn a_record_that_cannot_be_written_is_counted_failed_and_the_others_still_land() {
        let dir = tempdir();
        // A file where the record's folder should be.
        std::fs::write(dir.path().join("blocked"), b"x").unwrap();
        let metrics = Metrics::new();
        write_batch(
            vec![
                Op::Put(job(dir.path(), "blocked/1.json", "{}")),
                Op::Put(job(dir.path(), "ok/2.json", "{}")),
            ],
            None,
            &metrics,
        );
        assert!(dir.path().join("ok/2.json").exists());
        let text = metrics.encode();
        assert!(
            text.contains("records_failed_total{kind=\"cdr\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("records_written_total{kind=\"cdr\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_barrier_is_answered_after_the_records_before_it() {
        let dir = tempdir();
        let metrics = Metrics::new();
        let (tx, rx) = mpsc::channel();
        write_batch(
            vec![Op::Put(job(dir.path(), "k.json", "{}")), Op::Barrier(tx)],
            None,
            &metrics,
        );
        rx.try_recv().unwrap();
        assert!(dir.path().join("k.json").exists());
    }
}
