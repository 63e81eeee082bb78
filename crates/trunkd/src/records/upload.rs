//! One uploader task per remote sink: PUTs each spooled record to its
//! S3-compatible bucket under `<prefix><key>`, a bounded number at a time,
//! and backs off (full jitter) while the store is down, refusing, answering
//! 5xx or hanging. A PUT by key is idempotent, so a retry after a lost
//! answer only overwrites the object with the same bytes.
//!
//! The call path never waits here: calls only write the spool and
//! `try_send` the entry's name; a periodic rescan of the spool catches
//! whatever a full queue dropped.

use crate::deadline::sleep_until;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};
use trunkd_config::{RecordSinkSettings, RecordsSettings};
use trunkd_core::backoff::Backoff;

use super::book::RetrySchedule;
use super::spool::{SinkQueue, Spool};

/// Uploads in flight per sink.
pub const MAX_IN_FLIGHT: usize = 8;
/// A request with no answer by then counts as a failure (a hanging store).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the spool is rescanned for records a full queue dropped.
pub const RESCAN: Duration = Duration::from_secs(5);
const QUEUE: usize = 4096;

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// The store is down, hanging or answered 5xx: it may work later.
    Retry,
    /// The store refused (403 signature/credentials, 404 no such bucket…):
    /// retried too, since a fixed store or a restart with fixed
    /// credentials should still get the record, but counted apart.
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retry => "retry",
            Outcome::Failed => "failed",
        }
    }
}

/// The bucket client for one sink: path-style, no retries of its own (the
/// uploader's schedule retries, and counts), plain HTTP allowed for
/// self-hosted stores on a private network.
pub fn store_for(sink: &RecordSinkSettings) -> object_store::Result<AmazonS3> {
    AmazonS3Builder::new()
        .with_endpoint(&sink.endpoint)
        .with_bucket_name(&sink.bucket)
        .with_region(&sink.region)
        .with_access_key_id(&sink.access_key_id)
        .with_secret_access_key(sink.secret_access_key.expose())
        .with_virtual_hosted_style_request(false)
        .with_client_options(
            ClientOptions::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_connect_timeout(Duration::from_secs(5)),
        )
        .with_allow_http(true)
        .with_retry(RetryConfig {
            max_retries: 0,
            retry_timeout: REQUEST_TIMEOUT,
            ..Default::default()
        })
        .build()
}

/// Starts one uploader per configured sink, feeding from `spool`.
pub fn start(spool: &Arc<Spool>, settings: &RecordsSettings, metrics: Arc<dyn UploadMetrics>) {
    let backoff = Backoff {
        initial: settings.upload_retry_initial,
        max: settings.upload_retry_max,
    };
    for sink in &settings.sinks {
        let (tx, rx) = mpsc::channel(QUEUE);
        let wake = Arc::new(Notify::new());
        spool.attach(SinkQueue {
            id: sink.id.clone(),
            tx,
            wake: wake.clone(),
        });
        let store = match store_for(sink) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // Validation accepted the settings, so this is unexpected;
                // the records stay in the spool for a fixed restart.
                warn!(sink = %sink.id, error = %e, "records sink unusable; its records stay in the spool");
                continue;
            }
        };
        info!(sink = %sink.id, endpoint = %sink.endpoint, bucket = %sink.bucket, "records sink uploader started");
        tokio::spawn(run(
            spool.clone(),
            sink.clone(),
            store,
            backoff,
            rx,
            wake,
            metrics.clone(),
        ));
    }
}

/// Where the uploader counts (the daemon's metrics; a no-op in tests).
pub trait UploadMetrics: Send + Sync + 'static {
    fn upload(&self, sink: &str, result: &'static str);
}

/// The daemon's metrics live in `Shared`; this reaches them.
pub struct SharedMetrics(pub Arc<crate::daemon::Shared>);

impl UploadMetrics for SharedMetrics {
    fn upload(&self, sink: &str, result: &'static str) {
        self.0.metrics.record_upload(sink, result);
    }
}

async fn run(
    spool: Arc<Spool>,
    sink: RecordSinkSettings,
    store: Arc<AmazonS3>,
    backoff: Backoff,
    mut rx: mpsc::Receiver<String>,
    wake: Arc<Notify>,
    metrics: Arc<dyn UploadMetrics>,
) {
    let mut queue: VecDeque<String> = VecDeque::new();
    // Names queued or in flight: a rescan must not upload one twice.
    let mut known: HashSet<String> = HashSet::new();
    let mut in_flight: JoinSet<(String, Outcome, String)> = JoinSet::new();
    let mut schedule = RetrySchedule::new(backoff);
    let mut rescan = tokio::time::interval(RESCAN);
    let mut down_since_logged = false;
    loop {
        let now = Instant::now();
        while in_flight.len() < MAX_IN_FLIGHT && schedule.ready(now.into_std()) {
            let Some(name) = queue.pop_front() else {
                break;
            };
            match spool.read(&name) {
                Ok((key, body)) => {
                    let path = format!("{}{key}", sink.prefix);
                    let store = store.clone();
                    in_flight.spawn(async move {
                        let (outcome, why) = put(&store, &path, body).await;
                        (name, outcome, why)
                    });
                }
                // Done meanwhile (another path completed it): forget it.
                Err(_) => {
                    known.remove(&name);
                }
            }
        }
        let next_try = schedule.next_try();
        tokio::select! {
            got = rx.recv() => match got {
                Some(name) => {
                    if known.insert(name.clone()) {
                        queue.push_back(name);
                    }
                }
                None => return,
            },
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                let Ok((name, outcome, why)) = done else { continue };
                metrics.upload(&sink.id, outcome.label());
                if outcome == Outcome::Ok {
                    if down_since_logged {
                        info!(sink = %sink.id, "records sink answers again");
                        down_since_logged = false;
                    }
                    schedule.succeeded();
                    if let Err(e) = spool.mark_done(&name, &sink.id) {
                        warn!(sink = %sink.id, error = %e, "spool marker not written; the record will be uploaded again");
                    }
                    known.remove(&name);
                } else {
                    let at = Instant::now().into_std();
                    schedule.failed(at, random());
                    if !down_since_logged {
                        warn!(sink = %sink.id, result = outcome.label(), error = %why, "record upload failed; retrying with backoff");
                        down_since_logged = true;
                    }
                    queue.push_front(name);
                }
            }
            _ = sleep_until(next_try), if next_try.is_some() => {}
            _ = wake.notified() => {
                schedule.retry_now();
                enqueue_pending(&spool, &sink.id, &mut known, &mut queue);
            }
            _ = rescan.tick() => {
                enqueue_pending(&spool, &sink.id, &mut known, &mut queue);
            }
        }
    }
}

fn enqueue_pending(
    spool: &Spool,
    sink: &str,
    known: &mut HashSet<String>,
    queue: &mut VecDeque<String>,
) {
    for name in spool.pending_for(sink) {
        if known.insert(name.clone()) {
            queue.push_back(name);
        }
    }
}

/// One PUT, bounded by [`REQUEST_TIMEOUT`] even if the client's own
/// timeout did not fire. Also the SMA driver's recording uploads.
pub(crate) async fn put(store: &AmazonS3, path: &str, body: Vec<u8>) -> (Outcome, String) {
    let path = match object_store::path::Path::parse(path) {
        Ok(p) => p,
        Err(e) => return (Outcome::Failed, e.to_string()),
    };
    let put = store.put(&path, PutPayload::from(body));
    match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(2), put).await {
        Err(_) => (Outcome::Retry, "timed out".into()),
        Ok(Ok(_)) => (Outcome::Ok, String::new()),
        Ok(Err(e)) => {
            let outcome = match &e {
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::NotFound { .. }
                | object_store::Error::Precondition { .. } => Outcome::Failed,
                _ => Outcome::Retry,
            };
            (outcome, e.to_string())
        }
    }
}

/// A uniform draw in `[0, 1)` for the backoff's jitter.
pub(crate) fn random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}
