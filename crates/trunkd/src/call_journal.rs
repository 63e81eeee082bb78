//! The call journal on disk (see `trunkd_core::cdr::journal` for the why):
//! `<records.spool_directory>/journal/<transaction id>.json` per answered call, removed
//! once the call's CDR is written, and `heartbeat`, rewritten every
//! [`HEARTBEAT`].
//!
//! One writer thread does every write, off the call path: a call hands its
//! entry over with a non-blocking send and never waits for a disk; when
//! the queue is full the entry is not journalled and that is counted
//! (`call_journal_total{result="dropped"}`). The writer takes whatever has
//! queued up at once, so under load one directory fsync covers many
//! entries, and an entry whose call already ended in the same batch is
//! never written at all.
//!
//! At the start, before any listener is bound, [`recover`] turns every
//! entry left by the previous run into a CDR marked `Interrupted` and then
//! removes it. Recovery is idempotent: an entry whose CDR already exists
//! (the call ended but its entry's removal did not reach the disk, or a
//! recovery was itself interrupted) is removed without writing anything,
//! and the CDR key is the same either way, so killing trunkd again never
//! duplicates a record.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};
use trunkd_config::Config;
use trunkd_core::cdr::journal::JournalEntry;
use trunkd_core::cdr::{cdr_key, CallFacts};
use trunkd_core::TransactionId;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Metrics, ResultLabel};

/// How often the writer records that trunkd is alive: the most an
/// interrupted call's CDR can under-bill.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Entries waiting for the writer; past this a call is not journalled.
const QUEUE: usize = 16_384;
const HEARTBEAT_FILE: &str = "heartbeat";

enum Op {
    Answered { txn: TransactionId, body: Vec<u8> },
    Ended(TransactionId),
}

/// The handle calls use; cheap to clone. A disabled journal (records
/// off, or tests that build no daemon) ignores everything.
#[derive(Clone, Default)]
pub struct Journal {
    tx: Option<SyncSender<Op>>,
    counts: Family<ResultLabel, Counter>,
}

fn count(counts: &Family<ResultLabel, Counter>, result: &'static str) {
    counts.get_or_create(&ResultLabel { result }).inc();
}

/// The journal's directory: in the records spool, next to the records
/// waiting for their sinks.
pub fn directory(config: &Config) -> PathBuf {
    config.settings.records.spool_directory.join("journal")
}

impl Journal {
    /// Starts the writer thread on `dir` (created if missing). It runs
    /// until every handle is dropped.
    pub fn start(dir: PathBuf, metrics: &Metrics) -> std::io::Result<Journal> {
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let counts = metrics.call_journal.clone();
        let c = counts.clone();
        std::thread::Builder::new()
            .name("trunkd-journal".into())
            .spawn(move || writer(&dir, &rx, &c))?;
        Ok(Journal {
            tx: Some(tx),
            counts,
        })
    }

    /// A call was answered: journal what its CDR will need.
    pub fn answered(&self, facts: &CallFacts<'_>, answered: SystemTime) {
        let Some(tx) = &self.tx else { return };
        let entry = JournalEntry::answered(facts, answered);
        let Ok(body) = serde_json::to_vec(&entry) else {
            return;
        };
        let op = Op::Answered {
            txn: facts.transaction_id,
            body,
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(op) {
            count(&self.counts, "dropped");
        }
    }

    /// The call's CDR is written: its entry goes.
    pub fn ended(&self, txn: TransactionId) {
        if let Some(tx) = &self.tx {
            // Full: the entry stays and the next start finds the CDR
            // already written (see `recover`).
            let _ = tx.try_send(Op::Ended(txn));
        }
    }
}

fn entry_path(dir: &Path, txn: TransactionId) -> PathBuf {
    dir.join(format!("{txn}.json"))
}

fn writer(dir: &Path, rx: &mpsc::Receiver<Op>, counts: &Family<ResultLabel, Counter>) {
    let mut next_heartbeat = Instant::now();
    loop {
        if Instant::now() >= next_heartbeat {
            if let Err(e) = write_heartbeat(dir, SystemTime::now()) {
                warn!(error = %e, dir = %dir.display(), "call journal heartbeat failed");
            }
            next_heartbeat = Instant::now() + HEARTBEAT;
        }
        let wait = next_heartbeat.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(op) => op,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        apply(dir, batch, counts);
    }
}

/// Writes the batch's entries (skipping calls that also ended in it),
/// syncs the directory once, then removes the ended calls' entries.
fn apply(dir: &Path, batch: Vec<Op>, counts: &Family<ResultLabel, Counter>) {
    let ended: HashSet<TransactionId> = batch
        .iter()
        .filter_map(|op| match op {
            Op::Ended(t) => Some(*t),
            Op::Answered { .. } => None,
        })
        .collect();
    let mut wrote = false;
    for op in &batch {
        if let Op::Answered { txn, body } = op {
            if ended.contains(txn) {
                continue;
            }
            match write_synced(&entry_path(dir, *txn), body) {
                Ok(()) => {
                    wrote = true;
                    count(counts, "written");
                }
                Err(e) => {
                    count(counts, "failed");
                    warn!(%txn, error = %e, "call journal entry not written");
                }
            }
        }
    }
    if wrote {
        if let Err(e) = sync_dir(dir) {
            warn!(error = %e, "call journal directory sync failed");
        }
    }
    for txn in ended {
        match std::fs::remove_file(entry_path(dir, txn)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(%txn, error = %e, "call journal entry not removed"),
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn write_heartbeat(dir: &Path, now: SystemTime) -> std::io::Result<()> {
    let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    write_synced(&dir.join(HEARTBEAT_FILE), ms.to_string().as_bytes())?;
    sync_dir(dir)
}

fn read_heartbeat(dir: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(dir.join(HEARTBEAT_FILE)).ok()?;
    let ms: u64 = text.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Writes a CDR marked `Interrupted` for every entry the previous run left
/// in `dir`, and removes the entries. Returns how many CDRs it wrote. An
/// entry that cannot be read is renamed `*.bad` (kept for the operator,
/// never retried) and logged.
pub fn recover(dir: &Path, config: &Config, metrics: &Metrics) -> usize {
    let Ok(read) = std::fs::read_dir(dir) else {
        return 0;
    };
    let heartbeat = read_heartbeat(dir);
    let mut paths: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut written = 0;
    for path in paths {
        let call = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<JournalEntry>(&b).map_err(|e| e.to_string()))
            .and_then(|entry| entry.interrupted(heartbeat).map_err(|e| e.to_string()));
        let call = match call {
            Ok(c) => c,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "unreadable call journal entry; kept as .bad");
                let _ = std::fs::rename(&path, path.with_extension("bad"));
                continue;
            }
        };
        let facts = call.facts();
        let key = cdr_key(
            &config.settings.records.key_prefix,
            facts.voice_connector_id,
            facts.start,
            facts.transaction_id,
        );
        let record = config.settings.records.directory.join(&key);
        if !record.exists() {
            // At the start, before the record writer runs: written here and now.
            crate::records::write_cdr(config, &facts, metrics, None);
            if !record.exists() {
                // Not written (disk full?): keep the entry for the next start.
                warn!(transaction_id = %call.transaction_id, "interrupted call's CDR not written; entry kept");
                continue;
            }
            written += 1;
            count(&metrics.call_journal, "recovered");
            info!(transaction_id = %call.transaction_id, vc = %call.voice_connector_id, "CDR written for a call interrupted by the last stop");
        }
        if let Err(e) = std::fs::remove_file(&path) {
            warn!(path = %path.display(), error = %e, "call journal entry not removed");
        }
    }
    if written > 0 {
        let _ = sync_dir(dir);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_reads_back_what_was_written() {
        let dir = std::env::temp_dir().join(format!("trunkd-journal-hb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = UNIX_EPOCH + Duration::from_millis(1_765_000_123_456);
        write_heartbeat(&dir, t).unwrap();
        assert_eq!(read_heartbeat(&dir), Some(t));
        std::fs::write(dir.join(HEARTBEAT_FILE), "garbage").unwrap();
        assert_eq!(read_heartbeat(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
