//! `trunkd records flush`: ask the running daemon to retry every pending
//! upload now (`POST /records/flush` on its admin listener), then poll
//! `GET /records/backlog` until no sink lacks a record or the timeout
//! passes. Prints the backlog per sink; succeeds only when it is empty.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Backlog {
    sinks: Vec<SinkBacklog>,
    spool_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct SinkBacklog {
    id: String,
    pending_records: u64,
    pending_bytes: u64,
    oldest_age_seconds: u64,
}

/// The report to print, and whether the backlog is empty.
pub fn flush(config: &Path, timeout: Duration) -> anyhow::Result<(String, bool)> {
    let admin = crate::admin_client::AdminEndpoint::of(config);
    let (status, body) = http(&admin, "POST", "/records/flush")?;
    if status != 202 && status != 200 {
        bail!(
            "the daemon answered HTTP {status} to POST /records/flush: {}",
            body.trim()
        );
    }
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = http(&admin, "GET", "/records/backlog")?;
        if status != 200 {
            bail!("the daemon answered HTTP {status} to GET /records/backlog");
        }
        let backlog: Backlog = serde_json::from_str(body.trim())
            .with_context(|| format!("not a backlog from {}", admin.addr))?;
        let pending: u64 = backlog.sinks.iter().map(|s| s.pending_records).sum();
        if pending == 0 || Instant::now() >= deadline {
            return Ok((render(&backlog), pending == 0));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn render(b: &Backlog) -> String {
    let mut out = String::new();
    for s in &b.sinks {
        out.push_str(&format!(
            "{}: {} records pending ({} bytes), oldest {} s\n",
            s.id, s.pending_records, s.pending_bytes, s.oldest_age_seconds
        ));
    }
    if b.sinks.is_empty() {
        out.push_str("no remote records sink configured\n");
    }
    out.push_str(&format!("spool: {} bytes", b.spool_bytes));
    out
}

fn http(
    admin: &crate::admin_client::AdminEndpoint,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    crate::admin_client::request(admin, method, path, None)
}
