//! The delivery outbox: which queued (event, target) pair goes out next.
//!
//! Sans-IO like the SIP transaction layer: the daemon feeds it
//! [`Input`]s with the time, sends what [`Outbox::poll_transmit`] hands out,
//! reports each attempt's [`AttemptResult`], acts on the [`Output`]s of
//! [`Outbox::poll_output`] (write or remove a journal file, count) and
//! wakes up at [`Outbox::poll_timeout`].
//!
//! The rules (docs/events.md):
//!
//! - Per target a FIFO in emission order (a sequence number that the
//!   journal keeps, so the order survives a restart).
//! - Per (target, ordering key) only the oldest pending event is in
//!   flight: events of one call (key = its transaction id) or of the daemon
//!   (key [`DAEMON_ORDERING_KEY`](super::envelope::DAEMON_ORDERING_KEY))
//!   arrive in order; different keys go out in parallel, at most
//!   `max_in_flight` per target.
//! - A failure that may pass (5xx, 408, 429, timeout, refused connection)
//!   is retried after a [`Backoff`] delay drawn from the caller's random
//!   number; any other 4xx is permanent: the event is dropped (`rejected`).
//! - An event older than `max_age` is dropped (`dropped_max_age`); one in
//!   flight is judged when its attempt ends.
//! - At most `max_queued` events per target: a new event that does not fit
//!   is dropped (`dropped_queue_full`) and nothing else waits.
//!
//! Time is Unix milliseconds (`now_ms`): an event's age must survive a
//! restart, so a monotonic clock would not do.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;

use super::TargetId;

/// One event as the outbox queues it, shared by all its targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    /// The envelope's id (`webhook-id`).
    pub id: String,
    /// Events with the same key reach a target in order.
    pub ordering_key: String,
    /// When it was emitted, Unix ms (for `max_age`).
    pub created_ms: u64,
    /// The envelope JSON, the same bytes on every attempt.
    pub body: Arc<str>,
}

/// Limits and retry timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxConfig {
    pub max_queued: usize,
    pub max_age: Duration,
    pub backoff: Backoff,
    pub max_in_flight: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_queued: 10_000,
            max_age: Duration::from_secs(86_400),
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(300),
            },
            max_in_flight: 8,
        }
    }
}

/// How one delivery attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// 2xx, or a file line written.
    Delivered,
    /// An HTTP status other than 2xx.
    Status(u16),
    /// No answer in time, a refused or broken connection, a file error:
    /// worth another try.
    Transient,
}

impl AttemptResult {
    /// Whether a later attempt may succeed: anything but a 4xx other than
    /// 408 (Request Timeout) and 429 (Too Many Requests).
    pub fn is_retryable(self) -> bool {
        match self {
            AttemptResult::Delivered => false,
            AttemptResult::Transient => true,
            AttemptResult::Status(s) => !(400..500).contains(&s) || s == 408 || s == 429,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A new event for `target`; the outbox numbers it.
    Enqueue {
        target: TargetId,
        event: Arc<QueuedEvent>,
    },
    /// An event read back from the journal at start, with its number.
    /// Restored events are accepted even beyond `max_queued`.
    Restore {
        seq: u64,
        target: TargetId,
        event: Arc<QueuedEvent>,
    },
    /// The attempt handed out as `seq` ended. `random` is a uniform draw
    /// in `[0, 1)` for the retry delay.
    Attempted {
        seq: u64,
        result: AttemptResult,
        random: f64,
    },
}

/// One attempt to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    pub seq: u64,
    pub target: TargetId,
    pub event: Arc<QueuedEvent>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// Why an event left the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Finished {
    Delivered,
    /// A permanent refusal (a 4xx other than 408/429).
    Rejected,
    DroppedMaxAge,
}

impl Finished {
    /// The `result` label of `events_total`.
    pub fn label(self) -> &'static str {
        match self {
            Finished::Delivered => "delivered",
            Finished::Rejected => "rejected",
            Finished::DroppedMaxAge => "dropped_max_age",
        }
    }
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Journal the new pair before anything is sent.
    Persist {
        seq: u64,
        target: TargetId,
        event: Arc<QueuedEvent>,
    },
    /// The pair left the queue: remove its journal file and count it.
    Remove {
        seq: u64,
        target: TargetId,
        finished: Finished,
    },
    /// A new event found the target's queue full: dropped, never journalled.
    DroppedQueueFull { target: TargetId, event_id: String },
    /// An attempt failed; the next is due at `at_ms`.
    Retrying {
        seq: u64,
        target: TargetId,
        attempt: u32,
        at_ms: u64,
    },
}

#[derive(Debug)]
struct Entry {
    event: Arc<QueuedEvent>,
    /// Attempts made so far.
    attempts: u32,
    /// Not before this time (Unix ms).
    due_ms: u64,
    in_flight: bool,
}

#[derive(Debug, Default)]
struct TargetQueue {
    /// Every pending pair of the target, by sequence number.
    entries: BTreeMap<u64, Entry>,
    in_flight: usize,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    config: OutboxConfig,
    targets: BTreeMap<TargetId, TargetQueue>,
    /// Which target each pending sequence number belongs to.
    owner: HashMap<u64, TargetId>,
    next_seq: u64,
    outputs: VecDeque<Output>,
}

impl Outbox {
    pub fn new(config: OutboxConfig) -> Self {
        Outbox {
            config,
            targets: BTreeMap::new(),
            owner: HashMap::new(),
            next_seq: 1,
            outputs: VecDeque::new(),
        }
    }

    /// New limits (a reload); queued events stay.
    pub fn set_config(&mut self, config: OutboxConfig) {
        self.config = config;
    }

    pub fn handle(&mut self, now_ms: u64, input: Input) {
        match input {
            Input::Enqueue { target, event } => {
                let q = self.targets.entry(target.clone()).or_default();
                if q.entries.len() >= self.config.max_queued {
                    self.outputs.push_back(Output::DroppedQueueFull {
                        target,
                        event_id: event.id.clone(),
                    });
                    return;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.outputs.push_back(Output::Persist {
                    seq,
                    target: target.clone(),
                    event: event.clone(),
                });
                q.entries.insert(seq, Entry::new(event, now_ms));
                self.owner.insert(seq, target);
            }
            Input::Restore { seq, target, event } => {
                if self.owner.contains_key(&seq) {
                    return;
                }
                self.next_seq = self.next_seq.max(seq.saturating_add(1));
                let q = self.targets.entry(target.clone()).or_default();
                q.entries.insert(seq, Entry::new(event, now_ms));
                self.owner.insert(seq, target);
            }
            Input::Attempted {
                seq,
                result,
                random,
            } => self.attempted(now_ms, seq, result, random),
        }
        self.expire(now_ms);
    }

    fn attempted(&mut self, now_ms: u64, seq: u64, result: AttemptResult, random: f64) {
        let Some(target) = self.owner.get(&seq).cloned() else {
            return;
        };
        let max_age = self.config.max_age.as_millis() as u64;
        let Some(q) = self.targets.get_mut(&target) else {
            return;
        };
        let Some(entry) = q.entries.get_mut(&seq) else {
            return;
        };
        if !entry.in_flight {
            return;
        }
        entry.in_flight = false;
        q.in_flight -= 1;
        let finished = match result {
            AttemptResult::Delivered => Some(Finished::Delivered),
            r if !r.is_retryable() => Some(Finished::Rejected),
            _ if now_ms.saturating_sub(entry.event.created_ms) > max_age => {
                Some(Finished::DroppedMaxAge)
            }
            _ => None,
        };
        match finished {
            Some(finished) => self.remove(&target, seq, finished),
            None => {
                let delay = self.config.backoff.delay(entry.attempts, random);
                entry.due_ms = now_ms.saturating_add(delay.as_millis() as u64);
                self.outputs.push_back(Output::Retrying {
                    seq,
                    target,
                    attempt: entry.attempts,
                    at_ms: entry.due_ms,
                });
            }
        }
    }

    /// Drops every pair past its maximum age that is not in flight.
    fn expire(&mut self, now_ms: u64) {
        let max_age = self.config.max_age.as_millis() as u64;
        let mut old = Vec::new();
        for (target, q) in &self.targets {
            for (seq, e) in &q.entries {
                if !e.in_flight && now_ms.saturating_sub(e.event.created_ms) > max_age {
                    old.push((target.clone(), *seq));
                }
            }
        }
        for (target, seq) in old {
            self.remove(&target, seq, Finished::DroppedMaxAge);
        }
    }

    fn remove(&mut self, target: &TargetId, seq: u64, finished: Finished) {
        if let Some(q) = self.targets.get_mut(target) {
            q.entries.remove(&seq);
        }
        self.owner.remove(&seq);
        self.outputs.push_back(Output::Remove {
            seq,
            target: target.clone(),
            finished,
        });
    }

    /// The next attempt to make now, if any: the oldest pending pair of
    /// an ordering key with nothing in flight, that is due, on a target
    /// below `max_in_flight`.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Transmit> {
        self.expire(now_ms);
        let max_in_flight = self.config.max_in_flight.max(1);
        for (target, q) in self.targets.iter_mut() {
            if q.in_flight >= max_in_flight {
                continue;
            }
            let mut blocked: HashSet<&str> = HashSet::new();
            let mut pick = None;
            for (seq, e) in &q.entries {
                let key = e.event.ordering_key.as_str();
                if !blocked.insert(key) {
                    continue;
                }
                if !e.in_flight && e.due_ms <= now_ms {
                    pick = Some(*seq);
                    break;
                }
            }
            let Some(seq) = pick else { continue };
            let Some(e) = q.entries.get_mut(&seq) else {
                continue;
            };
            e.in_flight = true;
            e.attempts += 1;
            q.in_flight += 1;
            return Some(Transmit {
                seq,
                target: target.clone(),
                event: e.event.clone(),
                attempt: e.attempts,
            });
        }
        None
    }

    /// When [`Outbox::poll_transmit`] may next have something, or an
    /// event will pass its maximum age (Unix ms). `None`: nothing waits
    /// for time (the queues are empty, or every head is in flight).
    pub fn poll_timeout(&self) -> Option<u64> {
        let max_age = self.config.max_age.as_millis() as u64;
        let max_in_flight = self.config.max_in_flight.max(1);
        let mut earliest: Option<u64> = None;
        for q in self.targets.values() {
            let mut blocked: HashSet<&str> = HashSet::new();
            for e in q.entries.values() {
                if e.in_flight {
                    blocked.insert(e.event.ordering_key.as_str());
                    continue;
                }
                let expiry = e.event.created_ms.saturating_add(max_age).saturating_add(1);
                let mut t = expiry;
                if q.in_flight < max_in_flight && blocked.insert(e.event.ordering_key.as_str()) {
                    t = t.min(e.due_ms);
                }
                earliest = Some(earliest.map_or(t, |x| x.min(t)));
            }
        }
        earliest
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Pending pairs of `target` (in flight included).
    pub fn queued(&self, target: &TargetId) -> usize {
        self.targets.get(target).map_or(0, |q| q.entries.len())
    }

    /// Every target with a queue (for the gauges).
    pub fn targets(&self) -> impl Iterator<Item = &TargetId> {
        self.targets.keys()
    }
}

impl Entry {
    fn new(event: Arc<QueuedEvent>, now_ms: u64) -> Self {
        Entry {
            event,
            attempts: 0,
            due_ms: now_ms,
            in_flight: false,
        }
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
