//! Event delivery (SPEC §5.4, docs/events.md): the [`Events`] handle every
//! part of the daemon emits through, and the one task that owns the
//! outbox, the journal and the deliveries.
//!
//! `emit` never waits: it `try_send`s to a bounded channel (a full channel
//! drops the event and counts it), so a slow webhook or disk never delays a
//! call. The task numbers each (event, target) pair, journals it
//! ([`journal`]) before the first attempt, posts it (webhook, signed) or
//! appends it (file), and retries or drops it as the pure
//! `trunkd_core::events::outbox::Outbox` decides.
//!
//! Delivery is at least once: an attempt that succeeded just before a
//! crash or SIGTERM, before its journal file was removed, is sent again at
//! the next start with the same `webhook-id`, which receivers use to drop
//! duplicates.

pub mod journal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use trunkd_config::{Config, EventTargetKind, EventsSettings};
use trunkd_core::backoff::Backoff;
use trunkd_core::events::envelope::{Envelope, DAEMON_ORDERING_KEY};
use trunkd_core::events::outbox::{
    AttemptResult, Input, Outbox, OutboxConfig, Output, QueuedEvent, Transmit,
};
use trunkd_core::events::TargetId;

use crate::metrics::{TargetLabels, TargetResultLabels};
use journal::Journal;

/// Events the handle holds while the task is behind.
const CHANNEL_CAPACITY: usize = 4096;
/// Attempts in flight per target.
const MAX_IN_FLIGHT: usize = 8;

/// Which targets an event goes to.
#[derive(Debug, Clone)]
enum Targets {
    /// `[events] targets` (every target by default).
    Daemon,
    Listed(Vec<TargetId>),
}

#[derive(Debug)]
enum Command {
    Emit {
        targets: Targets,
        ordering_key: String,
        detail_type: String,
        detail: serde_json::Value,
        unix_ms: u64,
    },
    Reconfigure(Arc<Config>),
}

/// The metric families of events.
#[derive(Clone, Default)]
pub struct EventMetrics {
    /// `events_queued{target}`.
    pub queued: Family<TargetLabels, Gauge>,
    /// `events_total{target, result}`.
    pub total: Family<TargetResultLabels, Counter>,
}

impl EventMetrics {
    fn count(&self, target: &str, result: &'static str) {
        self.total
            .get_or_create(&TargetResultLabels {
                target: target.to_owned(),
                result,
            })
            .inc();
    }
}

/// The handle to emit events: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Command>,
    metrics: EventMetrics,
    /// The task's end of the channel until [`Events::start`] takes it.
    rx: Arc<Mutex<Option<mpsc::Receiver<Command>>>>,
}

impl Events {
    /// A handle whose events wait in the channel until [`Events::start`]
    /// runs the task (never, in unit tests: events are then dropped once
    /// the channel is full, and counted).
    pub fn new(metrics: EventMetrics) -> Events {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        Events {
            tx,
            metrics,
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }

    /// Starts the delivery task with `config` (only the first call does).
    /// The queue left by the last run is reloaded first.
    pub fn start(&self, config: Arc<Config>) -> Option<tokio::task::JoinHandle<()>> {
        let rx = self.rx.lock().ok()?.take()?;
        let task = Task::new(config, self.metrics.clone());
        Some(tokio::spawn(task.run(rx)))
    }

    /// A new configuration (a reload): targets, limits, account and region.
    pub fn reconfigure(&self, config: Arc<Config>) {
        if self.tx.try_send(Command::Reconfigure(config)).is_err() {
            warn!("event task busy: the new event targets apply with the next reload");
        }
    }

    /// Emits a daemon-wide event (reload failed, sink backlog high) to
    /// `[events] targets`; events of the daemon reach each target in order.
    pub fn emit_daemon_event(&self, detail_type: &str, detail: serde_json::Value) {
        self.emit(Targets::Daemon, DAEMON_ORDERING_KEY, detail_type, detail);
    }

    /// Emits an event to `targets` (a VC's `notification_targets`);
    /// events with the same `ordering_key` (a call's transaction id) reach
    /// each target in the order they were emitted. No targets: nothing.
    pub fn emit_to(
        &self,
        targets: &[TargetId],
        ordering_key: &str,
        detail_type: &str,
        detail: serde_json::Value,
    ) {
        if targets.is_empty() {
            return;
        }
        self.emit(
            Targets::Listed(targets.to_vec()),
            ordering_key,
            detail_type,
            detail,
        );
    }

    /// Emits an event of voice connector `vc` to its
    /// `notification_targets` in `config`.
    pub fn emit_vc_event(
        &self,
        config: &Config,
        vc: &trunkd_core::VcId,
        ordering_key: &str,
        detail_type: &str,
        detail: serde_json::Value,
    ) {
        if let Some(v) = config.resources.voice_connector(vc.as_str()) {
            self.emit_to(
                &v.streaming.notification_targets,
                ordering_key,
                detail_type,
                detail,
            );
        }
    }

    /// The events emitted so far, for tests that never start the task:
    /// (targets, ordering key, detail-type, detail); `["*daemon"]` for
    /// the daemon-wide targets.
    #[cfg(test)]
    pub fn pending(&self) -> Vec<(Vec<String>, String, String, serde_json::Value)> {
        let mut out = Vec::new();
        let Ok(mut rx) = self.rx.lock() else {
            return out;
        };
        let Some(rx) = rx.as_mut() else { return out };
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Emit {
                targets,
                ordering_key,
                detail_type,
                detail,
                ..
            } = cmd
            {
                let targets = match targets {
                    Targets::Daemon => vec!["*daemon".to_owned()],
                    Targets::Listed(t) => t.iter().map(|t| t.to_string()).collect(),
                };
                out.push((targets, ordering_key, detail_type, detail));
            }
        }
        out
    }

    fn emit(
        &self,
        targets: Targets,
        ordering_key: &str,
        detail_type: &str,
        detail: serde_json::Value,
    ) {
        let cmd = Command::Emit {
            targets,
            ordering_key: ordering_key.to_owned(),
            detail_type: detail_type.to_owned(),
            detail,
            unix_ms: unix_ms(),
        };
        if let Err(e) = self.tx.try_send(cmd) {
            // Before routing: the target is not known yet.
            self.metrics.count("*", "dropped_queue_full");
            debug!(error = %e, "event channel full; event dropped");
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // A failing OS RNG is not worth losing an event over (the id would
    // repeat, the delivery still happens): log it.
    if getrandom::fill(&mut b).is_err() {
        warn!("OS random number generator failed");
    }
    b
}

fn random_unit() -> f64 {
    let b: [u8; 8] = random_bytes();
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn outbox_config(e: &EventsSettings) -> OutboxConfig {
    OutboxConfig {
        max_queued: e.max_queued_events,
        max_age: e.max_age,
        backoff: Backoff {
            initial: e.retry_initial,
            max: e.retry_max,
        },
        max_in_flight: MAX_IN_FLIGHT,
    }
}

/// The delivery task's state.
struct Task {
    config: Arc<Config>,
    outbox: Outbox,
    journal: Option<Journal>,
    targets: HashMap<TargetId, EventTargetKind>,
    http: reqwest::Client,
    metrics: EventMetrics,
}

impl Task {
    fn new(config: Arc<Config>, metrics: EventMetrics) -> Task {
        let e = &config.settings.events;
        let journal = match Journal::open(&e.queue_directory) {
            Ok(j) => Some(j),
            Err(err) => {
                warn!(error = %err, dir = %e.queue_directory.display(), "event queue directory unusable: events are kept in memory only");
                None
            }
        };
        let mut task = Task {
            outbox: Outbox::new(outbox_config(e)),
            journal,
            targets: HashMap::new(),
            http: http_client(e.request_timeout),
            metrics,
            config: config.clone(),
        };
        task.set_config(config);
        task
    }

    fn set_config(&mut self, config: Arc<Config>) {
        let e = &config.settings.events;
        self.outbox.set_config(outbox_config(e));
        self.http = http_client(e.request_timeout);
        self.targets = config
            .settings
            .event_targets
            .iter()
            .map(|t| (t.id.clone(), t.kind.clone()))
            .collect();
        self.config = config;
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        self.restore();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, AttemptResult)>();
        loop {
            self.drain();
            while let Some(t) = self.outbox.poll_transmit(unix_ms()) {
                self.send(t, done_tx.clone());
            }
            self.drain();
            self.gauges();
            let wait = self
                .outbox
                .poll_timeout()
                .map(|at| Duration::from_millis(at.saturating_sub(unix_ms())));
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Emit { targets, ordering_key, detail_type, detail, unix_ms }) => {
                        self.enqueue(targets, ordering_key, &detail_type, detail, unix_ms);
                    }
                    Some(Command::Reconfigure(config)) => self.set_config(config),
                },
                Some((seq, result)) = done_rx.recv() => {
                    self.outbox.handle(unix_ms(), Input::Attempted { seq, result, random: random_unit() });
                }
                _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600))), if wait.is_some() => {}
            }
        }
    }

    /// Reloads the queue the last run left.
    fn restore(&mut self) {
        let Some(journal) = &self.journal else { return };
        match journal.load() {
            Ok((restored, bad)) => {
                for name in bad {
                    warn!(file = %name, "unreadable event journal file renamed .bad");
                }
                if !restored.is_empty() {
                    info!(
                        events = restored.len(),
                        "queued events from the last run will be retried"
                    );
                }
                let now = unix_ms();
                for r in restored {
                    self.outbox.handle(
                        now,
                        Input::Restore {
                            seq: r.seq,
                            target: r.target,
                            event: r.event,
                        },
                    );
                }
            }
            Err(e) => warn!(error = %e, "cannot read the event queue directory"),
        }
    }

    fn enqueue(
        &mut self,
        targets: Targets,
        ordering_key: String,
        detail_type: &str,
        detail: serde_json::Value,
        unix_ms: u64,
    ) {
        let d = &self.config.settings.daemon;
        let envelope = Envelope::new(
            random_bytes(),
            unix_ms,
            &d.account_id,
            &d.region,
            detail_type,
            detail,
        );
        let event = Arc::new(QueuedEvent {
            id: envelope.id.clone(),
            ordering_key,
            created_ms: unix_ms,
            body: Arc::from(envelope.to_json()),
        });
        let targets = match targets {
            Targets::Daemon => self.config.settings.events.targets.clone(),
            Targets::Listed(t) => t,
        };
        for target in targets {
            if !self.targets.contains_key(&target) {
                // Validation ties every reference to a target; a reload
                // that removed one while a call still names it lands here.
                warn!(%target, "event for a target that is no longer configured; dropped");
                self.metrics.count(target.as_str(), "rejected");
                continue;
            }
            self.outbox.handle(
                unix_ms,
                Input::Enqueue {
                    target,
                    event: event.clone(),
                },
            );
        }
    }

    /// Acts on the outbox's outputs: journal, metrics.
    fn drain(&mut self) {
        while let Some(out) = self.outbox.poll_output() {
            match out {
                Output::Persist { seq, target, event } => {
                    if let Some(j) = &self.journal {
                        if let Err(e) = j.write(seq, &target, &event) {
                            warn!(error = %e, %target, "event not journalled: it is lost if trunkd stops before it is delivered");
                        }
                    }
                }
                Output::Remove {
                    seq,
                    target,
                    finished,
                } => {
                    if let Some(j) = &self.journal {
                        if let Err(e) = j.remove(seq, &target) {
                            warn!(error = %e, %target, "cannot remove a finished event's journal file");
                        }
                    }
                    self.metrics.count(target.as_str(), finished.label());
                    if finished != trunkd_core::events::outbox::Finished::Delivered {
                        warn!(%target, seq, result = finished.label(), "event dropped");
                    }
                }
                Output::DroppedQueueFull { target, event_id } => {
                    self.metrics.count(target.as_str(), "dropped_queue_full");
                    warn!(%target, event = %event_id, "event queue full; event dropped");
                }
                Output::Retrying {
                    seq,
                    target,
                    attempt,
                    at_ms,
                } => {
                    self.metrics.count(target.as_str(), "retried");
                    debug!(%target, seq, attempt, in_ms = at_ms.saturating_sub(unix_ms()), "event delivery failed; retrying");
                }
            }
        }
    }

    /// `events_queued` of every configured target (0 included, so the
    /// series exists before the first event) and of any still queued.
    fn gauges(&self) {
        for target in self.targets.keys().chain(self.outbox.targets()) {
            self.metrics
                .queued
                .get_or_create(&TargetLabels {
                    target: target.to_string(),
                })
                .set(self.outbox.queued(target) as i64);
        }
    }

    /// One attempt, off the task: its result comes back on `done`.
    fn send(&self, t: Transmit, done: mpsc::UnboundedSender<(u64, AttemptResult)>) {
        let Some(kind) = self.targets.get(&t.target).cloned() else {
            // Removed by a reload while queued: a permanent refusal.
            let _ = done.send((t.seq, AttemptResult::Status(410)));
            return;
        };
        let http = self.http.clone();
        tokio::spawn(async move {
            let result = match kind {
                EventTargetKind::Webhook { url, key } => post(&http, &url, &key, &t).await,
                EventTargetKind::File { path } => {
                    let body = t.event.body.clone();
                    tokio::task::spawn_blocking(move || append_line(&path, &body))
                        .await
                        .unwrap_or(AttemptResult::Transient)
                }
            };
            let _ = done.send((t.seq, result));
        });
    }
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        // A redirected POST would lose its body or its signature's
        // meaning: a 3xx is a failed attempt.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("trunkd/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// POSTs one event, signed (Standard Webhooks): a new timestamp and
/// signature per attempt, the same id and body.
async fn post(
    http: &reqwest::Client,
    url: &str,
    key: &trunkd_core::events::signing::WebhookKey,
    t: &Transmit,
) -> AttemptResult {
    let ts = unix_ms() / 1000;
    let body = t.event.body.as_bytes().to_vec();
    let signature = key.sign(&t.event.id, ts, &body);
    let sent = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &t.event.id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => AttemptResult::Delivered,
        Ok(resp) => {
            debug!(target = %t.target, status = resp.status().as_u16(), attempt = t.attempt, "webhook refused the event");
            AttemptResult::Status(resp.status().as_u16())
        }
        Err(e) => {
            // Without the URL: it may carry a token in its query.
            debug!(target = %t.target, error = %e.without_url(), attempt = t.attempt, "webhook delivery failed");
            AttemptResult::Transient
        }
    }
}

/// Appends one JSON line (one `write` in append mode, so concurrent lines
/// do not interleave).
fn append_line(path: &std::path::Path, body: &str) -> AttemptResult {
    use std::io::Write;
    let mut line = String::with_capacity(body.len() + 1);
    line.push_str(body);
    line.push('\n');
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        })
        .and_then(|mut f| f.write_all(line.as_bytes()));
    match written {
        Ok(()) => AttemptResult::Delivered,
        Err(e) => {
            warn!(error = %e, path = %path.display(), "cannot append to the event file");
            AttemptResult::Transient
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_waiting() {
        let metrics = EventMetrics::default();
        let events = Events::new(metrics.clone());
        for _ in 0..CHANNEL_CAPACITY + 3 {
            events.emit_daemon_event("x", serde_json::json!({}));
        }
        let dropped = metrics
            .total
            .get_or_create(&TargetResultLabels {
                target: "*".into(),
                result: "dropped_queue_full",
            })
            .get();
        assert_eq!(dropped, 3);
        assert_eq!(events.pending().len(), CHANNEL_CAPACITY);
    }

    #[test]
    fn a_vc_without_notification_targets_emits_nothing() {
        let events = Events::new(EventMetrics::default());
        events.emit_to(&[], "k", "x", serde_json::json!({}));
        assert!(events.pending().is_empty());
    }

    #[test]
    fn a_file_target_gets_one_line_per_event() {
        let dir = std::env::temp_dir().join(format!("trunkd-events-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/events.jsonl");
        assert_eq!(append_line(&path, r#"{"a":1}"#), AttemptResult::Delivered);
        assert_eq!(append_line(&path, r#"{"b":2}"#), AttemptResult::Delivered);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        // A directory where the file should be: a failure to retry.
        assert_eq!(append_line(&dir, "{}"), AttemptResult::Transient);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
