//! The event queue on disk: one file per queued (event, target) pair in
//! `[events] queue_directory`, so an event that could not be delivered
//! survives a restart (SPEC §5.4).
//!
//! A file is named `<seq>-<target>.json`, the sequence number zero-padded
//! to 20 digits so that the directory's order is the emission order; the
//! outbox (trunkd_core::events::outbox) recovers the order from the number.
//! It is written atomically: a `.tmp` file, fsync, rename, fsync of the
//! directory. It is removed when the pair is delivered or dropped. A
//! `.tmp` file left by a crash is an event that was never acknowledged to
//! the outbox: it is deleted at start.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trunkd_core::events::outbox::QueuedEvent;
use trunkd_core::events::TargetId;

/// What a journal file holds.
#[derive(Serialize, Deserialize)]
struct Stored {
    target: String,
    id: String,
    ordering_key: String,
    created_ms: u64,
    /// The envelope JSON, exactly as it is sent.
    body: String,
}

/// One pair read back at start.
pub struct Restored {
    pub seq: u64,
    pub target: TargetId,
    pub event: Arc<QueuedEvent>,
}

pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Creates the directory if needed.
    pub fn open(dir: &Path) -> std::io::Result<Journal> {
        fs::create_dir_all(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, seq: u64, target: &TargetId) -> PathBuf {
        // TargetId is [A-Za-z0-9._-]: safe as part of a file name.
        self.dir.join(format!("{seq:020}-{target}.json"))
    }

    /// Writes one pair durably (temp file, fsync, rename, fsync dir).
    pub fn write(&self, seq: u64, target: &TargetId, event: &QueuedEvent) -> std::io::Result<()> {
        let stored = Stored {
            target: target.to_string(),
            id: event.id.clone(),
            ordering_key: event.ordering_key.clone(),
            created_ms: event.created_ms,
            body: event.body.to_string(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        let path = self.path(seq, target);
        let tmp = path.with_extension("json.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    /// Removes a delivered or dropped pair; a file already gone is fine.
    pub fn remove(&self, seq: u64, target: &TargetId) -> std::io::Result<()> {
        match fs::remove_file(self.path(seq, target)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every stored pair, in sequence order, and the names of files that
    /// could not be read (left in place, renamed `.bad`, for an operator).
    pub fn load(&self) -> std::io::Result<(Vec<Restored>, Vec<String>)> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json.tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            match parse(stem, &entry.path()) {
                Some(r) => out.push(r),
                None => {
                    let _ = fs::rename(entry.path(), entry.path().with_extension("bad"));
                    bad.push(name);
                }
            }
        }
        out.sort_by_key(|r| r.seq);
        Ok((out, bad))
    }
}

fn parse(stem: &str, path: &Path) -> Option<Restored> {
    let (seq, target) = stem.split_once('-')?;
    let seq: u64 = seq.parse().ok()?;
    let target: TargetId = target.parse().ok()?;
    let stored: Stored = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    if stored.target != target.as_str() {
        return None;
    }
    Some(Restored {
        seq,
        target,
        event: Arc::new(QueuedEvent {
            id: stored.id,
            ordering_key: stored.ordering_key,
            created_ms: stored.created_ms,
            body: Arc::from(stored.body),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trunkd-journal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn ev(id: &str) -> QueuedEvent {
        QueuedEvent {
            id: id.into(),
            ordering_key: "k".into(),
            created_ms: 42,
            body: Arc::from(format!("{{\"id\":\"{id}\"}}")),
        }
    }

    #[test]
    fn pairs_come_back_in_sequence_order_until_removed() {
        let d = dir("order");
        let j = Journal::open(&d).unwrap();
        let ops: TargetId = "ops".parse().unwrap();
        for (seq, id) in [(10, "b"), (2, "a"), (300, "c")] {
            j.write(seq, &ops, &ev(id)).unwrap();
        }
        j.remove(10, &ops).unwrap();
        j.remove(10, &ops).unwrap();
        fs::write(d.join("00000000000000000005-ops.json.tmp"), b"{").unwrap();
        fs::write(d.join("00000000000000000007-ops.json"), b"not json").unwrap();
        let (restored, bad) = j.load().unwrap();
        let got: Vec<(u64, String, String)> = restored
            .iter()
            .map(|r| (r.seq, r.target.to_string(), r.event.id.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "ops".into(), "a".into()),
                (300, "ops".into(), "c".into())
            ]
        );
        assert_eq!(*restored[0].event, ev("a"));
        assert_eq!(bad, ["00000000000000000007-ops.json"]);
        let mut names: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "00000000000000000002-ops.json",
                "00000000000000000007-ops.bad",
                "00000000000000000300-ops.json"
            ]
        );
        let _ = fs::remove_dir_all(&d);
    }
}
