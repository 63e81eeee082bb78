//! The spool directory: records wait here, durably, until every remote
//! sink has them (SPEC §5: a record is never lost to a sink that is down).
//!
//! Layout (flat, one directory):
//! - `<name>.rec`: the record, its key on the first line, then the body
//!   exactly as written locally. `<name>` is `<unix ms, 13 digits>-<pid>-
//!   <sequence>`, so names sort oldest first and never collide across
//!   restarts.
//! - `<name>.<sink id>.done`: an empty marker: that sink has the record. A
//!   restart uploads only to the sinks without one.
//! - `<name>.tmp`: a record being written; deleted on start (its local copy
//!   is written only after the `.rec` rename, so nothing is lost).
//!
//! Every creation is fsynced (file, then directory) before the next step
//! relies on it. An entry's `.rec` is deleted only when every configured
//! sink has a marker, then its markers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};
use tracing::{info, warn};

use super::book::{Backlog, Book, Completed, Pressure};

/// What the lead wires to an event: called, outside any lock, once per
/// episode of a full spool or a high sink backlog.
pub type PressureHook = Box<dyn Fn(&Pressure) + Send + Sync>;

/// What [`Spool::put`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spooled {
    /// In the spool, queued for every remote sink.
    Yes,
    /// No remote sink is configured: nothing to keep.
    NoSinks,
    /// Past `max_spool_bytes`: remote sinks will not get it.
    Full,
}

/// A sink's uploader, as the spool sees it.
pub(crate) struct SinkQueue {
    pub id: String,
    pub tx: mpsc::Sender<String>,
    pub wake: Arc<Notify>,
}

pub struct Spool {
    dir: PathBuf,
    book: Mutex<Book>,
    seq: AtomicU64,
    queues: Mutex<Vec<SinkQueue>>,
    hook: Mutex<Option<PressureHook>>,
    rejected: AtomicU64,
}

impl Spool {
    /// Opens (creating) the spool directory and rebuilds the book from the
    /// files: every entry some configured sink lacks is pending again;
    /// entries every sink has, half-written temp files and orphan markers
    /// are deleted.
    ///
    /// A record is spooled before its local copy is written: an entry
    /// found here whose copy under `local_dir` is missing (a crash between
    /// the two) gets it now, so neither copy is lost.
    pub fn open(
        dir: &Path,
        local_dir: Option<&Path>,
        sinks: Vec<String>,
        max_bytes: u64,
    ) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut recs = BTreeMap::new();
        let mut markers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in std::fs::read_dir(dir)? {
            let f = f?;
            let file_name = f.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let Some((name, rest)) = file_name.split_once('.') else {
                continue;
            };
            if rest == "tmp" {
                let _ = std::fs::remove_file(f.path());
            } else if rest == "rec" {
                recs.insert(name.to_owned(), f.path());
            } else if let Some(sink) = rest.strip_suffix(".done") {
                markers
                    .entry(name.to_owned())
                    .or_default()
                    .insert(sink.to_owned());
            }
        }
        let mut book = Book::new(sinks, max_bytes);
        let mut requeued = 0usize;
        for (name, path) in &recs {
            let done = markers.remove(name).unwrap_or_default();
            let (key, bytes) = match read_entry(path) {
                Ok((key, data)) => {
                    if let Some(local) = local_dir {
                        restore_local(local, &key, &data);
                    }
                    let bytes = (key.len() + 1 + data.len()) as u64;
                    (key, bytes)
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "unreadable spool entry left in place");
                    continue;
                }
            };
            let (pending, _) = book.insert(name, &key, bytes, created_of(name), &done);
            if pending.is_empty() {
                remove_entry_files(dir, name, &done);
            } else {
                requeued += 1;
            }
        }
        for (name, sinks) in markers {
            remove_entry_files(dir, &name, &sinks);
        }
        if requeued > 0 {
            info!(dir = %dir.display(), records = requeued, "spool: records re-queued for upload");
        }
        Ok(Spool {
            dir: dir.to_owned(),
            book: Mutex::new(book),
            seq: AtomicU64::new(0),
            queues: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the function told about a full spool or a high sink backlog.
    // For the events of issue 10 (the lead wires "spool full"/"sink
    // backlog high" here).
    #[allow(dead_code)]
    pub fn set_pressure_hook(&self, hook: PressureHook) {
        *lock(&self.hook) = Some(hook);
    }

    pub(crate) fn attach(&self, q: SinkQueue) {
        lock(&self.queues).push(q);
    }

    pub fn has_sinks(&self) -> bool {
        !lock(&self.book).sinks().is_empty()
    }

    /// Records that did not fit since start.
    #[allow(dead_code)]
    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Puts a record durably in the spool and queues it for every sink.
    /// Never waits on a sink: a full queue leaves the record for the next
    /// rescan. An `Err` means the spool file could not be written (the
    /// caller still writes the local copy).
    pub fn put(&self, key: &str, body: &[u8]) -> std::io::Result<Spooled> {
        if !self.has_sinks() {
            return Ok(Spooled::NoSinks);
        }
        if key.contains('\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a record key holds a newline",
            ));
        }
        let size = (key.len() + 1 + body.len()) as u64;
        if !lock(&self.book).admits(size) {
            self.reject();
            return Ok(Spooled::Full);
        }
        let now = SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{ms:013}-{}-{seq:08}", std::process::id());
        let tmp = self.dir.join(format!("{name}.tmp"));
        let rec = self.dir.join(format!("{name}.rec"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(key.as_bytes())?;
            f.write_all(b"\n")?;
            f.write_all(body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &rec)?;
        sync_dir(&self.dir)?;
        let inserted = {
            let mut book = lock(&self.book);
            // Checked again: another call may have filled the spool meanwhile.
            book.admits(size)
                .then(|| book.insert(&name, key, size, created_of(&name), &BTreeSet::new()))
        };
        let Some((pending, pressure)) = inserted else {
            let _ = std::fs::remove_file(&rec);
            self.reject();
            return Ok(Spooled::Full);
        };
        self.tell(&pressure);
        for q in lock(&self.queues).iter() {
            if pending.contains(&q.id) {
                // Full or closed: the periodic rescan finds it.
                let _ = q.tx.try_send(name.clone());
            }
        }
        Ok(Spooled::Yes)
    }

    fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let p = lock(&self.book).rejected();
        warn!(
            dir = %self.dir.display(),
            "spool full (records.max_spool_bytes): record written locally only, remote sinks will not get it"
        );
        if let Some(p) = p {
            self.tell(&[p]);
        }
    }

    fn tell(&self, pressure: &[Pressure]) {
        if pressure.is_empty() {
            return;
        }
        for p in pressure {
            warn!(?p, "record spool pressure");
        }
        if let Some(hook) = lock(&self.hook).as_ref() {
            for p in pressure {
                hook(p);
            }
        }
    }

    /// The key and body of a pending entry, read from disk.
    pub(crate) fn read(&self, name: &str) -> std::io::Result<(String, Vec<u8>)> {
        read_entry(&self.dir.join(format!("{name}.rec")))
    }

    /// `sink` has the record: writes its marker durably, then deletes the
    /// entry if that was the last sink.
    pub(crate) fn mark_done(&self, name: &str, sink: &str) -> std::io::Result<()> {
        let marker = self.dir.join(format!("{name}.{sink}.done"));
        std::fs::File::create(&marker)?.sync_all()?;
        sync_dir(&self.dir)?;
        let (done, sinks) = {
            let mut book = lock(&self.book);
            (book.complete(name, sink), book.sinks().to_vec())
        };
        if done == Completed::AllDone {
            remove_entry_files(&self.dir, name, &sinks.into_iter().collect());
        }
        Ok(())
    }

    /// The records `sink` lacks, oldest first.
    pub(crate) fn pending_for(&self, sink: &str) -> Vec<String> {
        lock(&self.book).pending_for(sink)
    }

    pub fn backlog(&self) -> Backlog {
        lock(&self.book).backlog(SystemTime::now())
    }

    pub fn oldest_age(&self) -> Duration {
        lock(&self.book).oldest_age(SystemTime::now())
    }

    /// Every uploader retries its pending records now.
    pub fn flush(&self) {
        for q in lock(&self.queues).iter() {
            q.wake.notify_one();
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain
/// counters; the data is still the best we have.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_entry(path: &Path) -> std::io::Result<(String, Vec<u8>)> {
    let data = std::fs::read(path)?;
    let nl = data
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no key line"))?;
    let key = std::str::from_utf8(&data[..nl])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        .to_owned();
    Ok((key, data[nl + 1..].to_vec()))
}

/// Writes the local copy of a spooled record if it is missing.
fn restore_local(local_dir: &Path, key: &str, body: &[u8]) {
    // Keys come from our own files; refuse any that would leave the directory.
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        warn!(
            key,
            "spool entry with an unusable key: local copy not restored"
        );
        return;
    }
    let path = local_dir.join(key);
    if path.exists() {
        return;
    }
    match super::write_atomically(&path, body) {
        Ok(()) => info!(path = %path.display(), "local copy of a spooled record restored"),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "local copy of a spooled record not restored")
        }
    }
}

/// When the entry was written, from its name.
fn created_of(name: &str) -> SystemTime {
    let ms = name
        .split('-')
        .next()
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn remove_entry_files(dir: &Path, name: &str, sinks: &BTreeSet<String>) {
    let _ = std::fs::remove_file(dir.join(format!("{name}.rec")));
    for s in sinks {
        let _ = std::fs::remove_file(dir.join(format!("{name}.{s}.done")));
    }
}

/// Makes a rename or creation in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "trunkd-spool-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|f| {
                let n = f.unwrap().file_name().into_string().unwrap();
                // The name's time and pid vary; keep the shape.
                n.split_once('.').map_or(n.clone(), |(_, r)| r.to_owned())
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_entry_survives_a_restart_until_every_sink_marked_it() {
        let dir = tempdir("restart");
        let sinks = vec!["a".to_string(), "b".to_string()];
        let s = Spool::open(&dir, None, sinks.clone(), 1 << 20).unwrap();
        assert_eq!(s.put("x/k1", b"{\"a\":1}").unwrap(), Spooled::Yes);
        let name = s.pending_for("a").remove(0);
        assert_eq!(
            s.read(&name).unwrap(),
            ("x/k1".to_string(), b"{\"a\":1}".to_vec())
        );
        s.mark_done(&name, "a").unwrap();
        assert_eq!(files(&dir), vec!["a.done", "rec"]);
        drop(s);
        // A half-written record from a crash is dropped on start.
        std::fs::write(dir.join("0000000000001-1-00000000.tmp"), b"x").unwrap();
        let s = Spool::open(&dir, None, sinks, 1 << 20).unwrap();
        assert_eq!(s.pending_for("a"), Vec::<String>::new());
        assert_eq!(s.pending_for("b"), vec![name.clone()]);
        assert_eq!(s.backlog().spool_bytes, 12, "the key line and the body");
        s.mark_done(&name, "b").unwrap();
        assert_eq!(files(&dir), Vec::<String>::new());
        assert_eq!(s.backlog().spool_bytes, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_local_copy_lost_to_a_crash_is_restored_from_the_spool() {
        let dir = tempdir("restore");
        let local = dir.join("records");
        let spool = dir.join("spool");
        let s = Spool::open(&spool, Some(&local), vec!["a".into()], 1 << 20).unwrap();
        s.put("x/y/k1", b"body-1").unwrap();
        s.put("x/y/k2", b"body-2").unwrap();
        drop(s);
        // k2's local copy was written before the crash, k1's was not.
        std::fs::create_dir_all(local.join("x/y")).unwrap();
        std::fs::write(local.join("x/y/k2"), b"as written").unwrap();
        let s = Spool::open(&spool, Some(&local), vec!["a".into()], 1 << 20).unwrap();
        assert_eq!(std::fs::read(local.join("x/y/k1")).unwrap(), b"body-1");
        assert_eq!(std::fs::read(local.join("x/y/k2")).unwrap(), b"as written");
        assert_eq!(s.pending_for("a").len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sink_removed_from_the_file_no_longer_holds_records() {
        let dir = tempdir("removed");
        let s = Spool::open(&dir, None, vec!["a".into(), "b".into()], 1 << 20).unwrap();
        s.put("k", b"body").unwrap();
        let name = s.pending_for("a").remove(0);
        s.mark_done(&name, "a").unwrap();
        drop(s);
        let s = Spool::open(&dir, None, vec!["a".into()], 1 << 20).unwrap();
        assert!(s.backlog().sinks[0].pending_records == 0);
        assert_eq!(files(&dir), Vec::<String>::new());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn past_the_cap_a_record_is_refused_counted_and_reported_once() {
        let dir = tempdir("cap");
        let s = Spool::open(&dir, None, vec!["a".into()], 20).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        s.set_pressure_hook(Box::new(move |p| seen2.lock().unwrap().push(p.clone())));
        assert_eq!(s.put("k", b"0123456789").unwrap(), Spooled::Yes);
        assert_eq!(s.put("k", b"0123456789").unwrap(), Spooled::Full);
        assert_eq!(s.put("k", b"0123456789").unwrap(), Spooled::Full);
        assert_eq!(s.rejected_total(), 2);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Pressure::SinkBacklogHigh {
                    sink: "a".into(),
                    pending_records: 1,
                    pending_bytes: 12
                },
                Pressure::SpoolFull {
                    spool_bytes: 12,
                    max_bytes: 20
                }
            ]
        );
        assert_eq!(files(&dir), vec!["rec"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_remote_sink_nothing_is_spooled() {
        let dir = tempdir("nosink");
        let s = Spool::open(&dir, None, vec![], 1 << 20).unwrap();
        assert_eq!(s.put("k", b"x").unwrap(), Spooled::NoSinks);
        assert_eq!(files(&dir), Vec::<String>::new());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
