//! Writing records: one JSON file per CDR under the managed service's key
//! layout (SPEC §5.1), atomically (temp file, fsync, rename), so a reader
//! never sees half a record and a record written before SIGTERM survives.

use std::io::Write;
use std::path::Path;

use tracing::{error, warn};
use trunkd_config::Config;
use trunkd_core::cdr::{build_cdr, cdr_key, CallFacts, CdrSettings};

use crate::metrics::Metrics;

pub fn write_cdr(config: &Config, facts: &CallFacts<'_>, metrics: &Metrics) {
    let s = &config.settings;
    if !s.records.enabled {
        return;
    }
    let settings = CdrSettings {
        account_id: &s.daemon.account_id,
        region: &s.daemon.region,
        service_code: &s.records.service_code,
    };
    let cdr = build_cdr(facts, &settings, &config.resources);
    let key = cdr_key(
        &s.records.key_prefix,
        facts.voice_connector_id,
        facts.start,
        facts.transaction_id,
    );
    let json = match serde_json::to_vec(&cdr) {
        Ok(j) => j,
        Err(e) => {
            error!(error = %e, "CDR could not be serialised");
            return;
        }
    };
    let path = s.records.directory.join(&key);
    match write_atomically(&path, &json) {
        Ok(()) => metrics.record_written("cdr"),
        Err(e) => {
            metrics.record_failed("cdr");
            warn!(path = %path.display(), error = %e, "CDR write failed");
        }
    }
}

/// Writes `data` to `path` so that `path` either does not exist or holds
/// all of it.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}
