//! SIP message logs per voice connector (SPEC §5.3): the engine hands each
//! message of a call whose VC has `enable_sip_logs` on to [`SipLogWriter`],
//! which queues it (bounded; a full queue drops and counts the line, the
//! engine never waits) to one thread that redacts it ([`crate::sip_redact`]),
//! turns it into a JSON line and appends it to
//! `<logging.directory>/aws/ChimeVoiceConnectorSipMessages/<vcId>`, rotating
//! the file by size and age and keeping a bounded number of old ones.
//! Written lines reach the disk (fsync) within a second, and before a
//! file is rotated.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use trunkd_config::Config;

use crate::daemon::Shared;
use crate::engine::machine::SipLog;
use crate::metrics::ResultLabel;

/// Lines waiting for the writer; past this they are dropped.
pub const QUEUE_LINES: usize = 8192;

/// The directory of the SIP message logs under `[logging] directory`.
pub const SUBDIR: &str = "aws/ChimeVoiceConnectorSipMessages";

/// One message and when the shell saw it.
pub struct Stamped {
    pub log: SipLog,
    pub wall: SystemTime,
}

/// The engine side of the queue.
#[derive(Clone)]
pub struct SipLogWriter {
    tx: SyncSender<Stamped>,
    shared: Arc<Shared>,
}

impl SipLogWriter {
    /// Starts the writer thread; it ends when every writer is dropped.
    pub fn start(shared: Arc<Shared>) -> std::io::Result<SipLogWriter> {
        let (writer, rx) = SipLogWriter::queue(shared.clone(), QUEUE_LINES);
        std::thread::Builder::new()
            .name("sip-log".into())
            .spawn(move || run(shared, rx))?;
        Ok(writer)
    }

    /// The queue of `lines` and its receiving end, with no thread.
    fn queue(shared: Arc<Shared>, lines: usize) -> (SipLogWriter, Receiver<Stamped>) {
        let (tx, rx) = sync_channel(lines);
        (SipLogWriter { tx, shared }, rx)
    }

    /// Queues a line; never blocks.
    pub fn push(&self, line: Stamped) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared
                    .metrics
                    .sip_log_lines
                    .get_or_create(&ResultLabel { result: "dropped" })
                    .inc();
            }
        }
    }
}

fn run(shared: Arc<Shared>, rx: Receiver<Stamped>) {
    // Keyed by path: a reload that moves `logging.directory` opens new files.
    let mut files: HashMap<std::path::PathBuf, OpenLog> = HashMap::new();
    let mut secrets_of: Option<(Arc<Config>, Vec<String>)> = None;
    let mut last_sync = Instant::now();
    loop {
        let s = match rx.recv_timeout(SYNC_EVERY) {
            Ok(s) => s,
            Err(RecvTimeoutError::Timeout) => {
                sync_all(&mut files);
                last_sync = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                sync_all(&mut files);
                return;
            }
        };
        let config = shared.config();
        // The secrets are collected once per configuration snapshot.
        if !secrets_of
            .as_ref()
            .is_some_and(|(c, _)| Arc::ptr_eq(c, &config))
        {
            secrets_of = Some((config.clone(), secrets(&config)));
        }
        let secrets: Vec<&str> = secrets_of
            .as_ref()
            .map(|(_, s)| s.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let line = render(&config, &s, &secrets);
        let logging = &config.settings.logging;
        let limits = Limits {
            max_bytes: logging.sip_log_max_bytes,
            max_age: logging.sip_log_max_age,
            keep: logging.sip_log_keep_files,
        };
        let path = logging.directory.join(SUBDIR).join(s.log.vc.as_str());
        let result = files
            .entry(path.clone())
            .or_insert_with(OpenLog::new)
            .append(&path, &line, s.wall, &limits);
        let result = match result {
            Ok(()) => "written",
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "SIP message log write failed");
                files.remove(&path);
                "failed"
            }
        };
        shared
            .metrics
            .sip_log_lines
            .get_or_create(&ResultLabel { result })
            .inc();
        if last_sync.elapsed() >= SYNC_EVERY {
            sync_all(&mut files);
            last_sync = Instant::now();
        }
    }
}

/// How often written lines are forced to the disk: a crash loses at most
/// this much of a SIP log, and a busy log costs one fsync per interval,
/// not one per line.
const SYNC_EVERY: Duration = Duration::from_secs(1);

fn sync_all(files: &mut HashMap<std::path::PathBuf, OpenLog>) {
    for (path, log) in files.iter_mut() {
        if let Err(e) = log.sync() {
            tracing::warn!(path = %path.display(), error = %e, "SIP message log sync failed");
        }
    }
}

/// Every secret of the snapshot a SIP message could carry: VC and
/// carrier digest passwords, SIP media application and event target
/// webhook secrets, record sinks' secret keys.
fn secrets(config: &Config) -> Vec<String> {
    let r = &config.resources;
    let mut out: Vec<String> = Vec::new();
    for vc in r.voice_connectors() {
        for c in &vc.termination.credentials {
            // An HA1 never appears on the wire in hex; only a password can.
            if let trunkd_core::secret::DigestSecret::Password(p) = &c.secret {
                out.push(p.expose().to_owned());
            }
        }
    }
    for c in r.carriers() {
        if let Some(cred) = &c.credentials {
            out.push(cred.password.expose().to_owned());
        }
    }
    for sma in r.sip_media_applications() {
        if let Some(key) = &sma.webhook_secret {
            out.push(key.to_whsec());
        }
    }
    for target in &config.settings.event_targets {
        if let trunkd_config::EventTargetKind::Webhook { key, .. } = &target.kind {
            out.push(key.to_whsec());
        }
    }
    for sink in &config.settings.records.sinks {
        out.push(sink.secret_access_key.expose().to_owned());
    }
    out.retain(|s| !s.is_empty());
    // Longest first: a password containing another is removed whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// The JSON line of one message, newline included.
fn render(config: &Config, s: &Stamped, secrets: &[&str]) -> Vec<u8> {
    let vc = config.resources.voice_connector(s.log.vc.as_str());
    let region = vc
        .map(|v| v.aws_region.as_str())
        .unwrap_or(&config.settings.daemon.region);
    let text = String::from_utf8_lossy(&s.log.bytes);
    let transport = match s.log.peer.transport {
        trunkd_sip::transaction::TxTransport::Udp => "udp",
        trunkd_sip::transaction::TxTransport::Tcp => "tcp",
        trunkd_sip::transaction::TxTransport::Tls => "tls",
    };
    // SPEC §5.3 fields, then `direction` and `peer`.
    let line = serde_json::json!({
        "voice_connector_id": s.log.vc.as_str(),
        "aws_region": region,
        "event_timestamp": s
            .wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        "call_id": s.log.transaction_id.to_string(),
        "sip_message": crate::sip_redact::redact(&text, secrets),
        "direction": match s.log.direction {
            crate::engine::machine::SipDirection::In => "in",
            crate::engine::machine::SipDirection::Out => "out",
        },
        "peer": format!("{} {transport}", s.log.peer.addr),
    });
    let mut json = serde_json::to_vec(&line).unwrap_or_default();
    json.push(b'\n');
    json
}

/// When a VC's log is rotated and how many old ones stay.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_age: Duration,
    pub keep: usize,
}

/// Whether a file of `size` bytes opened at `opened` must be rotated before
/// `len` more bytes are appended at `now`. An empty file is never rotated
/// (a line longer than the limit goes into a file of its own).
pub fn must_rotate(
    size: u64,
    opened: SystemTime,
    len: u64,
    now: SystemTime,
    limits: &Limits,
) -> bool {
    if size == 0 {
        return false;
    }
    size.saturating_add(len) > limits.max_bytes
        || now.duration_since(opened).unwrap_or_default() >= limits.max_age
}

/// Of the rotated files `names` (`<vcId>.<ms>`), those to delete so that
/// `keep` remain: the oldest (smallest suffix) go first.
pub fn to_delete(vc: &str, names: &[String], keep: usize) -> Vec<String> {
    let prefix = format!("{vc}.");
    let mut rotated: Vec<(u64, &String)> = names
        .iter()
        .filter_map(|n| Some((n.strip_prefix(&prefix)?.parse::<u64>().ok()?, n)))
        .collect();
    rotated.sort();
    let extra = rotated.len().saturating_sub(keep);
    rotated[..extra].iter().map(|(_, n)| (*n).clone()).collect()
}

/// A VC's current log file.
struct OpenLog {
    file: Option<File>,
    size: u64,
    opened: SystemTime,
    /// Lines written since the last sync.
    dirty: bool,
}

impl OpenLog {
    fn new() -> OpenLog {
        OpenLog {
            file: None,
            size: 0,
            opened: SystemTime::now(),
            dirty: false,
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if let (true, Some(f)) = (self.dirty, &self.file) {
            f.sync_data()?;
        }
        self.dirty = false;
        Ok(())
    }

    fn open(&mut self, path: &Path, now: SystemTime) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let meta = file.metadata()?;
        self.size = meta.len();
        // A file left by an earlier run counts from its creation (or its
        // last change when the filesystem does not keep one).
        self.opened = if self.size == 0 {
            now
        } else {
            meta.created().or_else(|_| meta.modified()).unwrap_or(now)
        };
        self.file = Some(file);
        Ok(())
    }

    fn append(
        &mut self,
        path: &Path,
        line: &[u8],
        now: SystemTime,
        limits: &Limits,
    ) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open(path, now)?;
        }
        if must_rotate(self.size, self.opened, line.len() as u64, now, limits) {
            self.sync()?;
            self.file = None;
            rotate(path, now, limits.keep)?;
            self.open(path, now)?;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(line)?;
            self.size += line.len() as u64;
            self.dirty = true;
        }
        Ok(())
    }
}

/// Renames `path` to `path.<ms>` and deletes the rotated files past `keep`.
fn rotate(path: &Path, now: SystemTime, keep: usize) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let mut ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Two rotations in one millisecond keep both files.
    while dir.join(format!("{name}.{ms}")).exists() {
        ms += 1;
    }
    std::fs::rename(path, dir.join(format!("{name}.{ms}")))?;
    let names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for old in to_delete(name, &names, keep) {
        std::fs::remove_file(dir.join(old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 100,
        max_age: Duration::from_secs(3600),
        keep: 2,
    };

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn shared() -> (Arc<Shared>, std::path::PathBuf) {
        shared_with("")
    }

    fn shared_with(extra: &str) -> (Arc<Shared>, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "trunkd-siplog-cfg-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = crate::engine::sim::config(&dir, "", extra);
        let tls = crate::tls::TlsConfigs::load(&Default::default()).unwrap();
        (Arc::new(Shared::new(config, tls)), dir)
    }

    fn stamped(bytes: &str) -> Stamped {
        Stamped {
            log: SipLog {
                vc: trunkd_core::VcId::new("vc-east").unwrap(),
                transaction_id: trunkd_core::TransactionId::from_random_bytes([7; 16]),
                direction: crate::engine::machine::SipDirection::In,
                peer: trunkd_sip::transaction::Peer {
                    addr: "198.51.100.10:5060".parse().unwrap(),
                    transport: trunkd_sip::transaction::TxTransport::Tcp,
                },
                bytes: bytes::Bytes::copy_from_slice(bytes.as_bytes()),
            },
            wall: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_waits() {
        let (shared, dir) = shared();
        let (writer, rx) = SipLogWriter::queue(shared.clone(), 1);
        for _ in 0..3 {
            writer.push(stamped("BYE sip:a SIP/2.0\r\n\r\n"));
        }
        assert!(rx.try_recv().is_ok());
        let text = shared.metrics.encode();
        assert!(
            text.contains("sip_log_lines_total{result=\"dropped\"} 2"),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_configured_passwords_are_the_secrets() {
        let (shared, dir) = shared_with(
            "[carriers.credentials]\nusername = \"gw\"\npassword = \"carrier-pw\"\n\
             [[sip_media_applications]]\nid = \"sma-1\"\n\
             endpoints = [ { url = \"http://127.0.0.1:9/sma\", priority = 1 } ]\n\
             webhook_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        );
        // Longest first, so a password containing another goes whole.
        assert_eq!(
            secrets(&shared.config()),
            [
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "carrier-pw",
                "s3cret"
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_line_has_the_spec_fields_and_no_secret() {
        let (shared, dir) = shared();
        let s = stamped("INVITE sip:a SIP/2.0\r\nProxy-Authorization: Digest username=\"pbx1\", response=\"ab\"\r\nX-Leak: s3cret\r\n\r\n");
        let line = render(&shared.config(), &s, &["s3cret"]);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(
            v,
            serde_json::json!({
                "voice_connector_id": "vc-east",
                "aws_region": "local",
                "event_timestamp": 1_700_000_000_123u64,
                "call_id": trunkd_core::TransactionId::from_random_bytes([7; 16]).to_string(),
                "sip_message": "INVITE sip:a SIP/2.0\r\nProxy-Authorization: Digest <redacted>\r\nX-Leak: <redacted>\r\n\r\n",
                "direction": "in",
                "peer": "198.51.100.10:5060 tcp",
            })
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_rotates_before_it_would_pass_its_size() {
        assert!(!must_rotate(60, at(0), 40, at(1), &LIMITS));
        assert!(must_rotate(60, at(0), 41, at(1), &LIMITS));
    }

    #[test]
    fn a_file_rotates_once_it_reaches_its_age() {
        assert!(!must_rotate(1, at(0), 1, at(3599), &LIMITS));
        assert!(must_rotate(1, at(0), 1, at(3600), &LIMITS));
    }

    #[test]
    fn an_empty_file_takes_any_line() {
        assert!(!must_rotate(0, at(0), 1000, at(99_999), &LIMITS));
    }

    #[test]
    fn the_oldest_rotated_files_past_keep_are_deleted() {
        let names: Vec<String> = ["vc1", "vc1.300", "vc1.100", "vc1.200", "vc10.50", "vc1.x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(to_delete("vc1", &names, 2), vec!["vc1.100".to_string()]);
        assert_eq!(
            to_delete("vc1", &names, 0),
            vec![
                "vc1.100".to_string(),
                "vc1.200".to_string(),
                "vc1.300".to_string()
            ]
        );
        assert!(to_delete("vc1", &names, 5).is_empty());
    }

    #[test]
    fn appending_rotates_and_keeps_at_most_keep_files() {
        let dir = std::env::temp_dir().join(format!("trunkd-siplog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("vc1");
        let mut log = OpenLog::new();
        let line = [b'x'; 59];
        for i in 0..5 {
            log.append(&path, &line, at(1000 + i), &LIMITS).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // Five lines of 59 bytes, one per file: four rotations, two kept.
        assert_eq!(names, vec!["vc1", "vc1.1003000", "vc1.1004000"]);
        assert_eq!(std::fs::read(&path).unwrap(), line);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
