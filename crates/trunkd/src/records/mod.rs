//! Writing records: one JSON file per CDR and per SDR under the managed
//! service's key layout (SPEC §5.1, §5.2), atomically (temp file, fsync, rename), so a reader
//! never sees half a record and a record written before SIGTERM survives.
//!
//! With remote sinks (`[[records.sinks]]`), a record first goes durably
//! into the spool ([`spool`]), then to the local directory, then to each
//! sink's uploader ([`upload`]); see docs/records.md.

pub mod book;
pub mod spool;
pub mod upload;
pub mod writer;

use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use book::Backlog;
// The pressure hook's API, for the events the lead wires (issue 10).
#[allow(unused_imports)]
pub use book::{Pressure, SinkBacklog};
#[allow(unused_imports)]
pub use spool::PressureHook;
pub use spool::Spool;

/// The daemon's spool, set once at start by [`install`]. A global because
/// `write_cdr`/`write_sdr` are called from every call task with only the
/// config and the metrics; without it (in-process tests) records go only
/// to the local directory, as before sinks existed.
static SPOOL: OnceLock<Arc<Spool>> = OnceLock::new();

/// Makes `spool` the one records go through. Returns false if one was
/// installed already (it stays).
pub fn install(spool: Arc<Spool>) -> bool {
    SPOOL.set(spool).is_ok()
}

/// The installed spool, if any.
pub fn spool() -> Option<&'static Arc<Spool>> {
    SPOOL.get()
}

/// Puts a record in: the spool (when a remote sink is configured and it
/// fits), then the local copy under `records.directory/<key>`, then the
/// sinks' queues; then `then`, once the record is durable. Never waits on a
/// sink, and in the daemon never on the disk either: the record writer
/// thread ([`writer`]) does the writing. The lead's crash journal can call
/// this with any key and body.
pub fn put_record(
    config: &Config,
    kind: &'static str,
    key: &str,
    body: Vec<u8>,
    metrics: &Metrics,
    then: Option<writer::Then>,
) {
    let job = writer::Job {
        kind,
        key: key.to_owned(),
        body,
        directory: config.settings.records.directory.clone(),
        then,
    };
    if let Err(job) = writer::submit(job) {
        writer::write_now(*job, spool().map(|s| &**s), metrics);
    }
}

use tracing::error;
use trunkd_config::Config;
use trunkd_core::cdr::{
    build_cdr, build_sdr, cdr_key, sdr_key, CallFacts, CdrSettings, StreamFacts,
};

use crate::metrics::Metrics;

/// The CDR of a call (SPEC §5.1); `then` runs once it is durable (the
/// call journal's entry goes then, not before).
pub fn write_cdr(
    config: &Config,
    facts: &CallFacts<'_>,
    metrics: &Metrics,
    then: Option<writer::Then>,
) {
    let s = &config.settings;
    let Some(settings) = settings_of(config) else {
        return;
    };
    let cdr = build_cdr(facts, &settings, &config.resources);
    let key = cdr_key(
        &s.records.key_prefix,
        facts.voice_connector_id,
        facts.start,
        facts.transaction_id,
    );
    write_record(config, "cdr", &key, &cdr, metrics, then);
}

/// The SDR of a streamed call; `call_start` is the call's start, which
/// names its key like the CDR's (the two share the folder layout and the
/// TransactionId).
pub fn write_sdr(
    config: &Config,
    facts: &StreamFacts<'_>,
    call_start: std::time::SystemTime,
    metrics: &Metrics,
) {
    let Some(settings) = settings_of(config) else {
        return;
    };
    let sdr = build_sdr(facts, &settings, &config.resources);
    let key = sdr_key(
        &config.settings.records.key_prefix,
        facts.voice_connector_id,
        call_start,
        facts.transaction_id,
    );
    write_record(config, "sdr", &key, &sdr, metrics, None);
}

/// What records are written with; `None` when records are off.
fn settings_of(config: &Config) -> Option<CdrSettings<'_>> {
    let s = &config.settings;
    s.records.enabled.then_some(CdrSettings {
        account_id: &s.daemon.account_id,
        region: &s.daemon.region,
        service_code: &s.records.service_code,
    })
}

fn write_record<T: serde::Serialize>(
    config: &Config,
    kind: &'static str,
    key: &str,
    record: &T,
    metrics: &Metrics,
    then: Option<writer::Then>,
) {
    let json = match serde_json::to_vec(record) {
        Ok(j) => j,
        Err(e) => {
            error!(error = %e, kind, "record could not be serialised");
            return;
        }
    };
    put_record(config, kind, key, json, metrics, then);
}

/// Writes `data` to `path` so that `path` either does not exist or holds
/// all of it.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    writer::write_file(path, data)?;
    // The rename itself must survive a crash too.
    match path.parent() {
        Some(dir) => spool::sync_dir(dir),
        None => Ok(()),
    }
}
