//! The spool's bookkeeping, sans-IO: which record each remote sink still
//! lacks, how many bytes wait, whether a new record fits under
//! `max_spool_bytes`, and when to tell the operator that the spool is
//! full or a sink's backlog is high. [`super::spool`] does the files and
//! keeps this book in step with them; nothing here touches the disk or
//! the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use trunkd_core::backoff::Backoff;

/// A record waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The record's key under the managed layout (without a sink's prefix).
    pub key: String,
    /// What the entry occupies on disk.
    pub bytes: u64,
    pub created: SystemTime,
    /// The sinks that do not have it yet; never empty while in the book.
    pub pending: BTreeSet<String>,
}

/// Something the operator should hear about (the lead wires these to
/// events): raised once when the condition starts, not per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pressure {
    /// A record did not fit under `max_spool_bytes`: it went only to the
    /// local directory, remote sinks will not get it.
    SpoolFull { spool_bytes: u64, max_bytes: u64 },
    /// A sink holds at least half of `max_spool_bytes` in pending records.
    SinkBacklogHigh {
        sink: String,
        pending_records: u64,
        pending_bytes: u64,
    },
}

/// What [`Book::complete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The entry or the sink was not pending (done before, or unknown).
    NotPending,
    /// Other sinks still lack the record: the entry stays.
    StillPending,
    /// Every sink has it: the entry left the book; delete its files.
    AllDone,
}

/// `GET /records/backlog`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backlog {
    pub sinks: Vec<SinkBacklog>,
    pub spool_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkBacklog {
    pub id: String,
    pub pending_records: u64,
    pub pending_bytes: u64,
    /// Age of the oldest record this sink lacks; 0 when it lacks none.
    pub oldest_age_seconds: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SinkCount {
    records: u64,
    bytes: u64,
    high: bool,
}

/// Every spool entry by name (names sort oldest first), with running
/// totals so a record's admission costs no scan.
#[derive(Debug)]
pub struct Book {
    sinks: Vec<String>,
    max_bytes: u64,
    entries: BTreeMap<String, Entry>,
    bytes: u64,
    counts: HashMap<String, SinkCount>,
    /// Set by a rejection, cleared by the next admitted record: one
    /// SpoolFull per episode.
    full: bool,
}

impl Book {
    pub fn new(sinks: Vec<String>, max_bytes: u64) -> Self {
        let counts = sinks
            .iter()
            .map(|s| (s.clone(), SinkCount::default()))
            .collect();
        Book {
            sinks,
            max_bytes,
            entries: BTreeMap::new(),
            bytes: 0,
            counts,
            full: false,
        }
    }

    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }

    #[cfg(test)]
    pub fn spool_bytes(&self) -> u64 {
        self.bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether a record of `bytes` fits under `max_spool_bytes`.
    pub fn admits(&self, bytes: u64) -> bool {
        self.bytes.saturating_add(bytes) <= self.max_bytes
    }

    /// A record that did not fit; `Some` the first time in an episode.
    pub fn rejected(&mut self) -> Option<Pressure> {
        if self.full {
            return None;
        }
        self.full = true;
        Some(Pressure::SpoolFull {
            spool_bytes: self.bytes,
            max_bytes: self.max_bytes,
        })
    }

    /// Adds an entry that every sink except those in `done` still lacks.
    /// Returns the sinks it is pending for (empty: nothing to keep, the
    /// caller deletes the files) and any pressure it raised.
    pub fn insert(
        &mut self,
        name: &str,
        key: &str,
        bytes: u64,
        created: SystemTime,
        done: &BTreeSet<String>,
    ) -> (Vec<String>, Vec<Pressure>) {
        let pending: BTreeSet<String> = self
            .sinks
            .iter()
            .filter(|s| !done.contains(*s))
            .cloned()
            .collect();
        if pending.is_empty() || self.entries.contains_key(name) {
            return (Vec::new(), Vec::new());
        }
        self.full = false;
        self.bytes += bytes;
        let mut pressure = Vec::new();
        let high_mark = self.max_bytes / 2;
        for s in &pending {
            let c = self.counts.entry(s.clone()).or_default();
            c.records += 1;
            c.bytes += bytes;
            if !c.high && c.bytes >= high_mark {
                c.high = true;
                pressure.push(Pressure::SinkBacklogHigh {
                    sink: s.clone(),
                    pending_records: c.records,
                    pending_bytes: c.bytes,
                });
            }
        }
        self.entries.insert(
            name.to_owned(),
            Entry {
                key: key.to_owned(),
                bytes,
                created,
                pending: pending.clone(),
            },
        );
        (pending.into_iter().collect(), pressure)
    }

    /// `sink` has the record `name`.
    pub fn complete(&mut self, name: &str, sink: &str) -> Completed {
        let Some(entry) = self.entries.get_mut(name) else {
            return Completed::NotPending;
        };
        if !entry.pending.remove(sink) {
            return Completed::NotPending;
        }
        let bytes = entry.bytes;
        let all_done = entry.pending.is_empty();
        if let Some(c) = self.counts.get_mut(sink) {
            c.records = c.records.saturating_sub(1);
            c.bytes = c.bytes.saturating_sub(bytes);
            // Hysteresis: the warning re-arms once the backlog has halved.
            if c.high && c.bytes < self.max_bytes / 4 {
                c.high = false;
            }
        }
        if all_done {
            self.entries.remove(name);
            self.bytes = self.bytes.saturating_sub(bytes);
            Completed::AllDone
        } else {
            Completed::StillPending
        }
    }

    #[cfg(test)]
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// The records `sink` lacks, oldest first.
    pub fn pending_for(&self, sink: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.pending.contains(sink))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Age of the oldest entry at `now` (0 when empty).
    pub fn oldest_age(&self, now: SystemTime) -> Duration {
        self.entries
            .values()
            .next()
            .map_or(Duration::ZERO, |e| age(now, e.created))
    }

    pub fn backlog(&self, now: SystemTime) -> Backlog {
        let sinks = self
            .sinks
            .iter()
            .map(|s| {
                let c = self.counts.get(s).copied().unwrap_or_default();
                let oldest = self
                    .entries
                    .values()
                    .find(|e| e.pending.contains(s))
                    .map_or(Duration::ZERO, |e| age(now, e.created));
                SinkBacklog {
                    id: s.clone(),
                    pending_records: c.records,
                    pending_bytes: c.bytes,
                    oldest_age_seconds: oldest.as_secs(),
                }
            })
            .collect();
        Backlog {
            sinks,
            spool_bytes: self.bytes,
        }
    }
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

/// When a sink's uploader may try again. One schedule per sink, not per
/// record: when the store is down every record fails alike, and backing
/// off per record would still hammer it with the whole backlog.
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    backoff: Backoff,
    attempt: u32,
    not_before: Option<Instant>,
}

impl RetrySchedule {
    pub fn new(backoff: Backoff) -> Self {
        RetrySchedule {
            backoff,
            attempt: 0,
            not_before: None,
        }
    }

    /// Whether an upload may start at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// When to wake up to try again, if waiting.
    pub fn next_try(&self) -> Option<Instant> {
        self.not_before
    }

    /// An upload failed at `now`; `random` is a uniform draw in `[0, 1)`.
    /// Failures of uploads that were in flight together count once: a
    /// failure while already waiting does not lengthen the wait.
    pub fn failed(&mut self, now: Instant, random: f64) {
        if !self.ready(now) {
            return;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.not_before = Some(now + self.backoff.delay(self.attempt, random));
    }

    /// An upload succeeded: the store is back, no more waiting.
    pub fn succeeded(&mut self) {
        self.attempt = 0;
        self.not_before = None;
    }

    /// `trunkd records flush`: try now, whatever the schedule said. The
    /// attempt count stays, so a store still down is not hammered.
    pub fn retry_now(&mut self) {
        self.not_before = None;
    }

    #[cfg(test)]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn book(max: u64) -> Book {
        Book::new(vec!["a".into(), "b".into()], max)
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn a_record_stays_until_every_sink_has_it() {
        let mut b = book(1000);
        let (pending, p) = b.insert("n1", "k1", 100, t0(), &none());
        assert_eq!(
            (pending, p),
            (vec!["a".to_string(), "b".to_string()], vec![])
        );
        assert_eq!(b.spool_bytes(), 100);
        assert_eq!(b.complete("n1", "a"), Completed::StillPending);
        assert_eq!(b.complete("n1", "a"), Completed::NotPending);
        assert_eq!(b.pending_for("a"), Vec::<String>::new());
        assert_eq!(b.pending_for("b"), vec!["n1".to_string()]);
        assert_eq!(b.complete("n1", "b"), Completed::AllDone);
        assert_eq!((b.spool_bytes(), b.len()), (0, 0));
        assert_eq!(b.complete("n1", "b"), Completed::NotPending);
    }

    #[test]
    fn a_restart_skips_the_sinks_whose_marker_exists() {
        let mut b = book(1000);
        let done: BTreeSet<String> = ["a".to_string()].into();
        let (pending, _) = b.insert("n1", "k1", 10, t0(), &done);
        assert_eq!(pending, vec!["b".to_string()]);
        let both: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let (pending, _) = b.insert("n2", "k2", 10, t0(), &both);
        assert!(pending.is_empty());
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn the_cap_rejects_what_does_not_fit_and_warns_once_per_episode() {
        let mut b = book(250);
        assert!(b.admits(250));
        b.insert("n1", "k1", 200, t0(), &none());
        assert!(b.admits(50));
        assert!(!b.admits(51));
        assert_eq!(
            b.rejected(),
            Some(Pressure::SpoolFull {
                spool_bytes: 200,
                max_bytes: 250
            })
        );
        assert_eq!(b.rejected(), None);
        b.insert("n2", "k2", 10, t0(), &none());
        assert!(
            b.rejected().is_some(),
            "a new episode after a record fitted"
        );
    }

    #[test]
    fn a_sink_backlog_at_half_the_cap_is_reported_once_until_it_drains() {
        let mut b = book(400);
        let (_, p) = b.insert("n1", "k1", 150, t0(), &none());
        assert!(p.is_empty());
        let (_, p) = b.insert("n2", "k2", 60, t0(), &none());
        assert_eq!(
            p,
            vec![
                Pressure::SinkBacklogHigh {
                    sink: "a".into(),
                    pending_records: 2,
                    pending_bytes: 210
                },
                Pressure::SinkBacklogHigh {
                    sink: "b".into(),
                    pending_records: 2,
                    pending_bytes: 210
                }
            ]
        );
        let (_, p) = b.insert("n3", "k3", 10, t0(), &none());
        assert!(p.is_empty());
        b.complete("n1", "a");
        b.complete("n2", "a");
        let (_, p) = b.insert("n4", "k4", 200, t0(), &none());
        assert_eq!(
            p,
            vec![Pressure::SinkBacklogHigh {
                sink: "a".into(),
                pending_records: 2,
                pending_bytes: 210
            }]
        );
    }

    #[test]
    fn the_backlog_reports_each_sinks_records_bytes_and_oldest_age() {
        let mut b = book(10_000);
        b.insert("0001", "k1", 100, t0(), &none());
        b.insert("0002", "k2", 50, t0() + Duration::from_secs(30), &none());
        b.complete("0001", "a");
        let now = t0() + Duration::from_secs(90);
        assert_eq!(
            b.backlog(now),
            Backlog {
                sinks: vec![
                    SinkBacklog {
                        id: "a".into(),
                        pending_records: 1,
                        pending_bytes: 50,
                        oldest_age_seconds: 60
                    },
                    SinkBacklog {
                        id: "b".into(),
                        pending_records: 2,
                        pending_bytes: 150,
                        oldest_age_seconds: 90
                    }
                ],
                spool_bytes: 150
            }
        );
        assert_eq!(b.oldest_age(now), Duration::from_secs(90));
        assert_eq!(
            serde_json::to_string(&b.backlog(now)).unwrap(),
            r#"{"sinks":[{"id":"a","pending_records":1,"pending_bytes":50,"oldest_age_seconds":60},{"id":"b","pending_records":2,"pending_bytes":150,"oldest_age_seconds":90}],"spool_bytes":150}"#
        );
    }

    #[test]
    fn failures_in_flight_together_back_off_once_and_success_resets() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let mut r = RetrySchedule::new(backoff);
        let now = Instant::now();
        assert!(r.ready(now));
        r.failed(now, 1.0);
        assert_eq!(r.next_try(), Some(now + Duration::from_secs(1)));
        // Seven more uploads of the same burst fail: still one attempt.
        for _ in 0..7 {
            r.failed(now + Duration::from_millis(10), 1.0);
        }
        assert_eq!(r.attempt(), 1);
        assert!(!r.ready(now + Duration::from_millis(999)));
        let later = now + Duration::from_secs(1);
        assert!(r.ready(later));
        r.failed(later, 1.0);
        assert_eq!(r.next_try(), Some(later + Duration::from_secs(2)));
        r.retry_now();
        assert!(r.ready(later));
        assert_eq!(r.attempt(), 2);
        r.succeeded();
        assert_eq!((r.attempt(), r.next_try()), (0, None));
    }

    proptest! {
        /// Whatever the order of inserts and completions, the totals equal
        /// the sum over the entries, and an entry leaves exactly when its
        /// last sink completes.
        #[test]
        fn totals_follow_the_entries(ops in proptest::collection::vec((0u8..6, 0u8..3, 1u64..500), 1..200)) {
            let mut b = Book::new(vec!["a".into(), "b".into(), "c".into()], 1_000_000);
            let sinks = ["a", "b", "c"];
            for (n, s, bytes) in ops {
                let name = format!("n{n}");
                if b.entry(&name).is_none() {
                    b.insert(&name, "k", bytes, t0(), &BTreeSet::new());
                } else {
                    let before = b.entry(&name).map(|e| e.pending.len());
                    let r = b.complete(&name, sinks[s as usize]);
                    if r == Completed::AllDone {
                        prop_assert_eq!(before, Some(1));
                        prop_assert!(b.entry(&name).is_none());
                    }
                }
                let sum: u64 = (0..6).filter_map(|i| b.entry(&format!("n{i}"))).map(|e| e.bytes).sum();
                prop_assert_eq!(b.spool_bytes(), sum);
                for s in sinks {
                    let bl = b.backlog(t0());
                    let sb = bl.sinks.iter().find(|x| x.id == s).map(|x| x.pending_bytes);
                    let want: u64 = (0..6)
                        .filter_map(|i| b.entry(&format!("n{i}")))
                        .filter(|e| e.pending.contains(s))
                        .map(|e| e.bytes)
                        .sum();
                    prop_assert_eq!(sb, Some(want));
                }
            }
        }
    }
}
