//! `trunkd run`: the daemon's life from start to stop.
//!
//! Start: load and validate the file (an invalid file never starts), set up
//! logging, write the pid file, bind every listener (a bind failure names
//! the address and stops the start), then serve until SIGTERM/SIGINT.
//! SIGHUP, `POST /reload` and `trunkd reload` re-read the file; see
//! [`Shared::reload`].

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use trunkd_config::Config;

use crate::engine::{EngineTask, Input};
use crate::metrics::{Metrics, ResultLabel};
use crate::pidfile::PidFile;
use crate::sip_service::SipService;
use crate::tls::{Tls, TlsConfigs};
use crate::{admin, logging, transport};

/// What every task of the daemon shares: the current configuration
/// snapshot and the metrics.
pub struct Shared {
    path: PathBuf,
    config: ArcSwap<Config>,
    pub metrics: Metrics,
    /// TLS configurations, swapped by the same reload as the file.
    pub tls: Tls,
    /// One reload or admin-API write at a time.
    reloading: tokio::sync::Mutex<()>,
    /// SHA-256 of the file text the running snapshot was loaded from: an
    /// admin-API write to a file that differs was edited by hand since,
    /// and is refused (409) rather than overwrite that edit.
    file_digest: std::sync::Mutex<[u8; 32]>,
    /// Failed authentications per source and the sources they blocked
    /// (`[security] auth_failures_per_source`): written by the engine,
    /// read by every transport's gate.
    auth_failures: std::sync::Mutex<trunkd_core::auth_failures::AuthFailures>,
    /// Addresses of the host names routes use (`resolver`).
    pub hosts: crate::resolver::HostCache,
    /// Answered calls, so a crash leaves no call unbilled (`call_journal`).
    pub call_journal: crate::call_journal::Journal,
    /// Where events go (SPEC §5.4); `serve` starts its task.
    pub events: crate::events::Events,
    /// Application calls in progress, for UpdateSipMediaApplicationCall
    /// (`POST /sip-media-applications/{id}/calls/{transaction id}`).
    pub sma_calls: crate::application::webhook::SmaCalls,
    /// The engine task, for calls placed from the admin API
    /// (CreateSipMediaApplicationCall); set once it runs.
    pub engine_tx: std::sync::OnceLock<crate::engine::EngineTx>,
    /// Calls in progress, for the admin API (`GET /calls`).
    pub calls: crate::api::calls::ActiveCalls,
    /// The status page's sampled history (`GET /status`).
    pub status: crate::api::status::History,
    /// The admin API's audit log.
    pub audit: crate::api::audit::AuditLog,
    /// `[hep]` export when enabled, for the calls' RTCP taps.
    pub hep: std::sync::OnceLock<crate::hep::HepExporter>,
}

impl Shared {
    pub fn new(config: Config, tls: TlsConfigs) -> Self {
        let metrics = Metrics::new();
        metrics.set_resources(&config.resources);
        metrics.config_last_reload_success.set(unix_now());
        metrics.set_certificates(&tls.not_after);
        let events = crate::events::Events::new(metrics.events.clone());
        let digest = file_digest(&config_path_text(&path_of(&config)));
        Shared {
            events,
            path: config.path.clone(),
            config: ArcSwap::from_pointee(config),
            metrics,
            tls: Tls::new(tls),
            reloading: Default::default(),
            file_digest: std::sync::Mutex::new(digest),
            auth_failures: Default::default(),
            hosts: Default::default(),
            call_journal: Default::default(),
            sma_calls: Default::default(),
            engine_tx: Default::default(),
            calls: Default::default(),
            status: Default::default(),
            audit: Default::default(),
            hep: Default::default(),
        }
    }

    /// Counts a failed digest authentication from `ip`; returns whether it
    /// blocked the source.
    pub fn auth_failed(&self, ip: std::net::IpAddr) -> bool {
        use trunkd_core::auth_failures::{AuthFailurePolicy, Recorded};
        let sec = &self.config().settings.security;
        let policy = AuthFailurePolicy {
            threshold: sec.auth_failures_per_source,
            window: sec.auth_failure_window,
            block_for: sec.auth_block,
        };
        self.metrics.sip_auth_failures.inc();
        let now = std::time::Instant::now();
        let Ok(mut table) = self.auth_failures.lock() else {
            return false;
        };
        let blocked = table.record(ip, now, &policy) == Recorded::Blocked;
        if blocked {
            self.metrics.sip_sources_blocked.inc();
        }
        blocked
    }

    /// Whether `ip` is blocked for failing authentication too often.
    pub fn is_blocked(&self, ip: std::net::IpAddr) -> bool {
        self.auth_failures
            .lock()
            .is_ok_and(|t| !t.is_empty() && t.is_blocked(ip, std::time::Instant::now()))
    }

    /// Emits "trunkd Route State Change" (docs/events.md) for a carrier
    /// host or origination route that went down or came back up: to the
    /// `notification_targets` of every VC whose origination routes include
    /// it, and to the daemon-wide targets when it is a carrier's host.
    pub fn route_state_changed(&self, route: &trunkd_core::Route, up: bool) {
        let cause = if up {
            "a call's hop answered"
        } else {
            "a call's hop failed"
        };
        self.route_state_changed_by(route, up, "call", cause);
    }

    /// As [`Shared::route_state_changed`], saying what saw the change:
    /// `"call"` (a call's hop failed or answered) or `"probe"` (OPTIONS
    /// probing), and the `cause` (the last reply or failure) when known.
    pub fn route_state_changed_by(
        &self,
        route: &trunkd_core::Route,
        up: bool,
        source: &str,
        cause: &str,
    ) {
        let config = self.config();
        let same = |r: &trunkd_core::Route| {
            r.host == route.host && r.port == route.port && r.protocol == route.protocol
        };
        let mut targets: Vec<trunkd_core::events::TargetId> = Vec::new();
        let mut vcs = Vec::new();
        for vc in config.resources.voice_connectors() {
            if vc.origination.routes.iter().any(same) {
                vcs.push(vc.id.to_string());
                targets.extend(vc.streaming.notification_targets.iter().cloned());
            }
        }
        let carriers: Vec<String> = config
            .resources
            .carriers()
            .iter()
            .filter(|c| c.hosts.iter().any(same))
            .map(|c| c.id.to_string())
            .collect();
        if !carriers.is_empty() {
            targets.extend(config.settings.events.targets.iter().cloned());
        }
        targets.sort();
        targets.dedup();
        let state = if up { "UP" } else { "DOWN" };
        let key = crate::metrics::route_key(route);
        info!(route = %key, state, source, cause, "route state changed");
        self.events.emit_to(
            &targets,
            trunkd_core::events::envelope::DAEMON_ORDERING_KEY,
            trunkd_core::events::envelope::ROUTE_STATE_CHANGE,
            serde_json::json!({
                "route": key,
                "host": route.host.to_string(),
                "port": route.port.get(),
                "protocol": route.protocol.to_string(),
                "state": state,
                "source": source,
                "cause": cause,
                "voiceConnectorIds": vcs,
                "carrierIds": carriers,
            }),
        );
    }

    /// Puts `config` in force as a reload would, without the file (the
    /// engine simulation's reloads).
    #[cfg(test)]
    pub fn store_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// The snapshot in force now. A caller keeps the `Arc` for as long as it
    /// needs a consistent view (a call keeps it for its whole life).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Re-reads the file and the TLS files it names. A valid file replaces
    /// the snapshot atomically and new TLS handshakes use the new
    /// certificates (established connections keep theirs); an invalid file
    /// or an unusable TLS file is logged error by error and counted, and
    /// the running snapshot and certificates stay. Returns a summary or the
    /// errors.
    pub async fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = self.reloading.lock().await;
        let path = self.path.clone();
        let digest = file_digest(&config_path_text(&path));
        // Validation of a large inventory takes a moment: off the runtime's
        // worker threads.
        let loaded = tokio::task::spawn_blocking(move || load_with_tls(&path, &path))
            .await
            .map_err(|e| format!("reload task failed: {e}"))?;
        if loaded.is_ok() {
            *self.file_digest.lock().unwrap_or_else(|e| e.into_inner()) = digest;
        }
        self.install(loaded).await
    }

    /// Changes the file the way an operator would, through `edit`, and
    /// puts the result in force (SPEC §11): refused with
    /// [`WriteError::Conflict`] when the file was edited by hand since the
    /// running snapshot was loaded; the new text is validated exactly as a
    /// reload validates it, and only a valid file replaces the old one
    /// (written to a temporary file in the same directory, synced and
    /// renamed over it, so a crash leaves one or the other).
    pub async fn write_file<F>(&self, edit: F) -> Result<Arc<Config>, WriteError>
    where
        F: FnOnce(&mut trunkd_config::edit::Document, &Config) -> Result<(), WriteError>
            + Send
            + 'static,
    {
        let _one_at_a_time = self.reloading.lock().await;
        let path = self.path.clone();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| WriteError::Io(format!("reading {}: {e}", path.display())))?;
        let expected = *self.file_digest.lock().unwrap_or_else(|e| e.into_inner());
        if file_digest(&text) != expected {
            return Err(WriteError::Conflict(format!(
                "{} changed since the running configuration was loaded; reload it (or undo the edit) and try again",
                path.display()
            )));
        }
        let current = self.config();
        let written = tokio::task::spawn_blocking(move || {
            let mut doc = trunkd_config::edit::Document::parse(&text)
                .map_err(|e| WriteError::Io(e.to_string()))?;
            edit(&mut doc, &current)?;
            let new_text = doc.render();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "trunkd.toml".into());
            let temp = path.with_file_name(format!(".{name}.trunkd-write"));
            // The new file keeps the old one's mode and group (it holds
            // credentials: a 0640 file must not come back 0644 because of
            // the process umask). Best effort for the group: only root may
            // give a file to a group it is not in.
            let original = std::fs::metadata(&path).ok();
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                let mut f = std::fs::File::create(&temp)?;
                if let Some(m) = &original {
                    f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
                    let _ = std::os::unix::fs::fchown(&f, None, Some(m.gid()));
                }
                f.write_all(new_text.as_bytes())?;
                f.sync_all()
            };
            write().map_err(|e| WriteError::Io(format!("writing {}: {e}", temp.display())))?;
            match load_with_tls(&temp, &path) {
                Ok(mut loaded) => {
                    loaded.0.path = path.clone();
                    std::fs::rename(&temp, &path).map_err(|e| {
                        WriteError::Io(format!(
                            "renaming {} to {}: {e}",
                            temp.display(),
                            path.display()
                        ))
                    })?;
                    if let Some(dir) = path.parent() {
                        let dir = if dir.as_os_str().is_empty() {
                            std::path::Path::new(".")
                        } else {
                            dir
                        };
                        if let Ok(d) = std::fs::File::open(dir) {
                            let _ = d.sync_all();
                        }
                    }
                    Ok((loaded, file_digest(&new_text)))
                }
                Err(errors) => {
                    let _ = std::fs::remove_file(&temp);
                    Err(WriteError::Invalid(errors))
                }
            }
        })
        .await
        .map_err(|e| WriteError::Io(format!("write task failed: {e}")))??;
        let (loaded, digest) = written;
        *self.file_digest.lock().unwrap_or_else(|e| e.into_inner()) = digest;
        self.install(Ok(loaded))
            .await
            .map_err(|e| WriteError::Invalid(vec![e]))?;
        Ok(self.config())
    }

    /// Puts a loaded file in force, or reports why it was not.
    async fn install(
        &self,
        loaded: Result<(Config, TlsConfigs), Vec<String>>,
    ) -> Result<String, String> {
        match loaded {
            Ok((new, tls)) => {
                let old = self.config();
                for what in restart_only_changes(&old, &new) {
                    warn!(setting = what, "changed in the file but applies only after a restart; the old value stays in force");
                }
                let summary = crate::summary(&new.resources);
                self.metrics.set_resources(&new.resources);
                // New route names resolve before the file is in force, so
                // the first call after the reload can use them.
                self.hosts.refresh(&new, &self.metrics).await;
                let new = Arc::new(new);
                self.config.store(new.clone());
                self.events.reconfigure(new);
                self.metrics.set_certificates(&tls.not_after);
                self.tls.store(tls);
                if let Some(engine) = self.engine_tx.get() {
                    // Probing takes the new routes now; a full queue means
                    // the engine is busy and sees the file at its next input.
                    let _ = engine.try_send(crate::engine::Input::Reconfigured);
                }
                self.metrics
                    .config_reloads
                    .get_or_create(&ResultLabel { result: "success" })
                    .inc();
                self.metrics.config_last_reload_success.set(unix_now());
                info!(file = %self.path.display(), %summary, "configuration reloaded");
                Ok(format!("reloaded {}: {summary}", self.path.display()))
            }
            Err(errors) => {
                for e in &errors {
                    error!(error = %e, "reload rejected");
                }
                self.metrics
                    .config_reloads
                    .get_or_create(&ResultLabel { result: "failure" })
                    .inc();
                error!(
                    errors = errors.len(),
                    "configuration reload failed; the running configuration stays"
                );
                // Validation errors name files, resources and fields,
                // never a secret's value.
                self.events.emit_daemon_event(
                    trunkd_core::events::envelope::RELOAD_FAILED,
                    serde_json::json!({
                        "file": self.path.display().to_string(),
                        "errors": errors,
                    }),
                );
                Err(errors.join("\n"))
            }
        }
    }
}

/// Why an admin-API write did not change the file.
#[derive(Debug)]
pub enum WriteError {
    /// The file was edited by hand since it was loaded (409).
    Conflict(String),
    /// The change breaks a rule of the file (422), each error naming the
    /// file, resource and field as `trunkd check-config` does.
    Invalid(Vec<String>),
    /// The change is not allowed as asked (a rule of the API: 400/409 with
    /// the managed service's error code).
    Refused {
        status: u16,
        code: &'static str,
        message: String,
    },
    /// No such resource (404).
    NotFound(String),
    /// The file could not be read or written (500).
    Io(String),
}

/// SHA-256 of a file's text.
pub fn file_digest(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// The text of `path`, or nothing when it cannot be read.
fn config_path_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn path_of(config: &Config) -> PathBuf {
    config.path.clone()
}

/// Loads and validates `load_path` and the TLS files it names; errors
/// name `shown_path` (a write validates a temporary copy of the file).
fn load_with_tls(
    load_path: &std::path::Path,
    shown_path: &std::path::Path,
) -> Result<(Config, TlsConfigs), Vec<String>> {
    let shown = shown_path.display().to_string();
    let temp = load_path.display().to_string();
    let new = trunkd_config::load(load_path).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string().replace(&temp, &shown))
            .collect::<Vec<_>>()
    })?;
    let tls = TlsConfigs::load(&new.settings.tls.clone().unwrap_or_default())
        .map_err(|e| vec![format!("{shown}: {e}")])?;
    Ok((new, tls))
}

/// Settings that sockets or the logger were built from: a reload cannot
/// change them without a restart.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.settings, &new.settings);
    let mut v = Vec::new();
    if o.sip.udp != n.sip.udp {
        v.push("sip.udp");
    }
    if o.sip.tcp != n.sip.tcp {
        v.push("sip.tcp");
    }
    if o.sip.tls != n.sip.tls {
        v.push("sip.tls");
    }
    if o.admin.tls_cert_file != n.admin.tls_cert_file
        || o.admin.tls_key_file != n.admin.tls_key_file
    {
        v.push("admin.tls_cert_file");
    }
    if o.admin.listen != n.admin.listen {
        v.push("admin.listen");
    }
    if o.logging.format != n.logging.format {
        v.push("logging.format");
    }
    if o.media.relay_threads != n.media.relay_threads {
        v.push("media.relay_threads");
    }
    if o.media.relays_per_thread != n.media.relays_per_thread {
        v.push("media.relays_per_thread");
    }
    if o.daemon.pid_file != n.daemon.pid_file {
        v.push("daemon.pid_file");
    }
    if o.events.queue_directory != n.events.queue_directory {
        v.push("events.queue_directory");
    }
    let (or, nr) = (&o.records, &n.records);
    if or.sinks != nr.sinks
        || or.spool_directory != nr.spool_directory
        || or.max_spool_bytes != nr.max_spool_bytes
        || or.upload_retry_initial != nr.upload_retry_initial
        || or.upload_retry_max != nr.upload_retry_max
    {
        v.push("records (spool and sinks)");
    }
    v
}

/// Opens the spool (re-queuing what a previous run left) and installs it
/// for `write_cdr`/`write_sdr`: before the call journal's recovery, so the
/// CDRs of interrupted calls reach the remote sinks like any other.
fn open_records(
    records: &trunkd_config::RecordsSettings,
) -> anyhow::Result<Arc<crate::records::Spool>> {
    let sinks = records.sinks.iter().map(|s| s.id.clone()).collect();
    let spool = crate::records::Spool::open(
        &records.spool_directory,
        records.enabled.then_some(records.directory.as_path()),
        sinks,
        records.max_spool_bytes,
    )
    .with_context(|| {
        format!(
            "opening the records spool {}",
            records.spool_directory.display()
        )
    })?;
    let spool = Arc::new(spool);
    if !crate::records::install(spool.clone()) {
        warn!("a records spool was already installed; keeping it");
    }
    Ok(spool)
}

/// Starts one uploader per remote sink and a once-a-second refresh of the
/// spool's gauges. Sinks are read at start only: a reload that changes
/// them applies after a restart.
fn start_records(
    shared: &Arc<Shared>,
    spool: Arc<crate::records::Spool>,
    records: &trunkd_config::RecordsSettings,
) {
    // The spool's pressure (full, or a sink far behind) is an operator
    // event (docs/events.md), once per episode.
    let events = shared.events.clone();
    spool.set_pressure_hook(Box::new(move |p| {
        use crate::records::book::Pressure;
        let detail = match p {
            Pressure::SpoolFull {
                spool_bytes,
                max_bytes,
            } => serde_json::json!({
                "reason": "spool_full",
                "spoolBytes": spool_bytes,
                "maxSpoolBytes": max_bytes,
            }),
            Pressure::SinkBacklogHigh {
                sink,
                pending_records,
                pending_bytes,
            } => serde_json::json!({
                "reason": "backlog_high",
                "sink": sink,
                "pendingRecords": pending_records,
                "pendingBytes": pending_bytes,
            }),
        };
        events.emit_daemon_event(trunkd_core::events::envelope::SINK_BACKLOG_HIGH, detail);
    }));
    crate::records::upload::start(
        &spool,
        records,
        Arc::new(crate::records::upload::SharedMetrics(shared.clone())),
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let backlog = spool.backlog();
            shared
                .metrics
                .set_spool(&backlog, spool.oldest_age().as_secs());
        }
    });
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `[sip] threads` when not set: half the CPUs the process may use, at
/// least one. Every SIP message passes through the one engine task, so more
/// signalling threads add little throughput, and each one more is a worker
/// that idles, is woken to steal a task and wakes another in turn: on a
/// 2-CPU machine one signalling thread cost 8–28 % less CPU per call than
/// two at 500–2000 calls/s, with no failed call (docs/performance.md,
/// "Issue 15: signalling threads"). The other CPUs are the relay threads'
/// and the kernel's (a datagram's loopback or NIC delivery is charged to
/// the thread that sends it).
fn default_signalling_threads() -> NonZeroUsize {
    let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cpus / 2).unwrap_or(NonZeroUsize::MIN)
}

pub fn run(path: &Path) -> anyhow::Result<()> {
    // Before any thread starts (crate::malloc_tuning says why).
    let tuned = crate::malloc_tuning::apply();
    let config = trunkd_config::load(path).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    logging::init(&config.settings.logging);
    tracing::debug!(tuned, "glibc malloc settings");
    // Media relays run on threads of their own, each a current-thread
    // runtime (trunkd_media::runtimes: a relay wakes per packet, and on the
    // work-stealing runtime idle workers woke each other for it);
    // signalling keeps the multi-threaded runtime.
    let relay_threads = config
        .settings
        .media
        .relay_threads
        .unwrap_or_else(trunkd_media::RelayRuntimes::default_threads);
    // A thread is filled before the next gets calls (runtimes::place).
    let relays_per_thread = config
        .settings
        .media
        .relays_per_thread
        .unwrap_or(trunkd_media::runtimes::DEFAULT_RELAYS_PER_THREAD);
    let relays = Arc::new(
        trunkd_media::RelayRuntimes::start(relay_threads, relays_per_thread)
            .context("starting the media relay threads")?,
    );
    crate::media_anchor::use_relay_runtimes(relays.clone());
    let signalling_threads = config
        .settings
        .sip
        .threads
        .unwrap_or_else(default_signalling_threads);
    tracing::debug!(
        signalling_threads,
        relay_threads,
        relays_per_thread,
        "starting the signalling runtime"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(signalling_threads.get())
        .enable_all()
        .thread_name("trunkd")
        .build()?;
    let served = runtime.block_on(serve(config));
    // Calls (and the relay handles they hold) end with the signalling
    // runtime; then the relay threads stop, dropping any relay left.
    drop(runtime);
    relays.shutdown();
    served
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Signal handlers first: a SIGHUP or SIGTERM that arrives while the
    // listeners come up must not take the default action (exit).
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let settings = config.settings.clone();
    let _pid = PidFile::create(&settings.daemon.pid_file)?;
    // A certificate that cannot be used stops the start, like an invalid file.
    let tls = TlsConfigs::load(&settings.tls.clone().unwrap_or_default())
        .map_err(|e| anyhow!("invalid configuration:\n{}: {e}", config.path.display()))?;
    if !settings.tls.as_ref().is_none_or(|t| t.verify_server) {
        warn!("tls.verify_server = false: carrier and route certificates are not verified (lab use only)");
    }
    let mut shared = Shared::new(config, tls);
    let spool = open_records(&settings.records)?;
    // Calls the last run left unfinished get their CDRs before any new
    // call starts; then this run's calls are journalled.
    if shared.config().settings.records.enabled {
        let config = shared.config();
        let dir = crate::call_journal::directory(&config);
        let recovered = crate::call_journal::recover(&dir, &config, &shared.metrics);
        if recovered > 0 {
            warn!(
                recovered,
                "CDRs written for calls the last stop interrupted"
            );
        }
        shared.call_journal = crate::call_journal::Journal::start(dir.clone(), &shared.metrics)
            .with_context(|| format!("starting the call journal in {}", dir.display()))?;
    }
    let shared = Arc::new(shared);
    // Records are written by their own thread from here on (after the
    // recovery above, which checks its CDRs on disk as it writes them).
    crate::records::writer::start(crate::records::spool().cloned(), shared.clone())
        .context("starting the record writer")?;
    shared.events.start(shared.config());
    let hep = crate::hep::HepExporter::start(&settings.hep, shared.metrics.hep_messages.clone())
        .context("starting the HEP exporter")?;
    if let Some(h) = &hep {
        let _ = shared.hep.set(h.clone());
    }
    let sip = Arc::new(SipService::new(shared.clone()).with_hep(hep));
    let mut tasks = JoinSet::new();
    let (engine_tx, engine_rx) = tokio::sync::mpsc::channel(65_536);
    start_records(&shared, spool, &settings.records);

    let mut udp_sockets = Vec::new();
    for addr in &settings.sip.udp {
        let sock = Arc::new(
            tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("binding SIP UDP {addr}"))?,
        );
        let asked = settings.sip.udp_receive_buffer_bytes;
        let reported = transport::set_receive_buffer(&sock, asked)
            .inspect_err(|e| warn!(%addr, error = %e, "SIP UDP receive buffer not set"))
            .ok();
        info!(%addr, receive_buffer = ?reported, "SIP UDP listening");
        if let Some(reported) = reported.filter(|&r| transport::receive_buffer_capped(asked, r)) {
            warn!(
                %addr,
                asked,
                reported,
                "SIP UDP receive buffer smaller than [sip] udp_receive_buffer_bytes: \
                 the kernel caps it at net.core.rmem_max (raise it with sysctl)"
            );
        }
        tasks.spawn(transport::serve_udp(
            sock.clone(),
            sip.clone(),
            engine_tx.clone(),
            settings.sip.max_message_bytes,
        ));
        udp_sockets.push(sock);
    }
    let mut tcp_local = None;
    for addr in &settings.sip.tcp {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding SIP TCP {addr}"))?;
        tcp_local = tcp_local.or(listener.local_addr().ok());
        info!(%addr, "SIP TCP listening");
        tasks.spawn(transport::serve_stream(
            listener,
            transport::Stream::Tcp,
            sip.clone(),
            engine_tx.clone(),
            settings.sip.clone(),
        ));
    }
    let mut tls_local = None;
    for addr in &settings.sip.tls {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding SIP TLS {addr}"))?;
        tls_local = tls_local.or(listener.local_addr().ok());
        info!(%addr, "SIP TLS listening");
        tasks.spawn(transport::serve_stream(
            listener,
            transport::Stream::Tls,
            sip.clone(),
            engine_tx.clone(),
            settings.sip.clone(),
        ));
    }
    let local = trunkd_b2bua::LocalAddrs {
        udp: udp_sockets.first().and_then(|s| s.local_addr().ok()),
        tcp: tcp_local,
        tls: tls_local,
        advertised: settings.sip.advertised_address.clone(),
    };
    let sender = transport::Sender::new(
        udp_sockets,
        sip.clone(),
        engine_tx.clone(),
        settings.sip.clone(),
    );
    let ports = trunkd_media::PortAllocator::new(settings.media.port_min, settings.media.port_max)
        .map_err(|e| anyhow!("media port range: {e}"))?;
    let mut engine = EngineTask::new(shared.clone(), sender, local, engine_tx.clone(), ports)?;
    // Numbers on SIP rules are answered and run by their application.
    engine.set_application_driver(crate::application::webhook::factory(shared.clone()));
    let _ = shared.engine_tx.set(engine_tx.clone());
    tasks.spawn(engine.run(engine_rx));

    // Route host names: resolved now, before the admin listener answers
    // /healthz (a supervisor that waits for it then finds the routes
    // usable), then refreshed off the call path.
    // Each name is asked again when its records expire (their TTL).
    shared
        .hosts
        .refresh(&shared.config(), &shared.metrics)
        .await;
    let refresher = shared.clone();
    tasks.spawn(async move {
        loop {
            let config = refresher.config();
            let next = refresher
                .hosts
                .refresh_due(&config, &refresher.metrics)
                .await;
            drop(config);
            refresher.hosts.wait(next).await;
        }
    });

    let admin = tokio::net::TcpListener::bind(settings.admin.listen)
        .await
        .with_context(|| format!("binding admin {}", settings.admin.listen))?;
    let admin_tls = match (&settings.admin.tls_cert_file, &settings.admin.tls_key_file) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::admin_server_config(cert, key).map_err(|e| anyhow!("{e}"))?)
        }
        _ => None,
    };
    let scheme = if admin_tls.is_some() { "https" } else { "http" };
    info!(addr = %settings.admin.listen, scheme, "admin API listening (docs/admin-api.md)");
    tasks.spawn(admin::serve(admin, shared.clone(), admin_tls));
    tasks.spawn(crate::api::status::run_sampler(shared.clone()));
    tasks.spawn(crate::api::numbers::purge_task(shared.clone()));

    // Streamed WAV files past their VC's retention (SPEC §2.6).
    tasks.spawn(crate::streaming::sweeper::run(shared.clone()));

    // The first E.164 country lookup loads libphonenumber's metadata
    // (~90 ms): do it now, not in the first call's admission.
    let _ = tokio::task::spawn_blocking(|| {
        "+12065550100"
            .parse()
            .ok()
            .and_then(trunkd_core::country::country_of)
    })
    .await;
    info!(version = env!("CARGO_PKG_VERSION"), summary = %crate::summary(&shared.config().resources), "trunkd ready");
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading configuration");
                let _ = shared.reload().await;
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            Some(done) = tasks.join_next() => {
                // Listener tasks run until shutdown; one ending early is a bug
                // or a fatal socket error: stop rather than run half-deaf.
                let why = match done { Ok(()) => "ended".to_owned(), Err(e) => e.to_string() };
                error!(%why, "a listener task stopped unexpectedly; shutting down");
                tasks.shutdown().await;
                return Err(anyhow!("a listener task stopped unexpectedly: {why}"));
            }
        }
    }
    // Calls in progress are hung up (BYE both ways) and their CDRs
    // written before the process exits; bounded so a dead peer cannot hold
    // the shutdown.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    if engine_tx
        .send(Input::Shutdown { done: done_tx })
        .await
        .is_ok()
        && tokio::time::timeout(std::time::Duration::from_secs(5), done_rx)
            .await
            .is_err()
    {
        warn!("calls still in progress after 5 s; stopping anyway");
    }
    tasks.shutdown().await;
    // The records of the calls just hung up reach the disk before exit.
    let drained = tokio::task::spawn_blocking(|| {
        crate::records::writer::drain(std::time::Duration::from_secs(10))
    })
    .await
    .unwrap_or(false);
    if !drained {
        warn!("records still queued after 10 s; stopping anyway");
    }
    info!("stopped");
    Ok(())
}
