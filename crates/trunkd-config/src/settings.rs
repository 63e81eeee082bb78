//! Daemon settings: everything in the file that is not a resource.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// Validated daemon settings. Paths are absolute or relative to the working
/// directory (the file's relative paths are resolved against its directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub daemon: DaemonSettings,
    pub sip: SipSettings,
    pub tls: Option<TlsSettings>,
    pub media: MediaSettings,
    pub admin: AdminSettings,
    pub records: RecordsSettings,
    pub logging: LoggingSettings,
    pub routing: RoutingSettings,
    pub security: SecuritySettings,
    pub events: EventsSettings,
    /// `[[event_targets]]`, in file order.
    pub event_targets: Vec<EventTarget>,
    pub applications: ApplicationsSettings,
    /// `[hep]`: copies of every SIP message to a Homer/sngrep collector.
    pub hep: HepSettings,
}

/// `[hep]`: HEP v3 export of SIP messages. Read at start only: the
/// exporter's socket and collector do not change on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepSettings {
    pub enabled: bool,
    /// Where the HEP packets go (UDP).
    pub collector: SocketAddr,
    /// The capture agent id in every packet (chunk 12).
    pub capture_id: u32,
    /// Sent as the auth key (chunk 14) when set.
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    pub region: String,
    pub account_id: String,
    pub outbound_host_domain: String,
    pub state_dir: PathBuf,
    pub pid_file: PathBuf,
}

/// `[sip] max_transactions` by default: room for a steady 3,000 calls/s
/// (about 100 transactions per call/s, see [`SipSettings::max_transactions`])
/// with a margin for retransmissions and failed attempts.
pub const DEFAULT_MAX_TRANSACTIONS: usize = 400_000;

/// `[sip] udp_receive_buffer_bytes` by default: 4 MiB, about 2,000 SIP
/// datagrams queued, a second of 2,000 calls/s: a burst, or the daemon
/// descheduled for a few milliseconds, must not overflow the kernel's
/// default (212,992 bytes, ~130 datagrams), which drops them and costs the
/// calls a 500 ms retransmission each (docs/performance.md, eleventh pass).
pub const DEFAULT_UDP_RECEIVE_BUFFER_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSettings {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    /// What Via/Contact/SDP show; `None`: the listener's own address.
    pub advertised_address: Option<String>,
    pub max_message_bytes: usize,
    pub max_tcp_connections: usize,
    pub tcp_idle_timeout: Duration,
    /// Signalling threads (the multi-threaded runtime's workers); `None`:
    /// the daemon's default, half the CPUs and at least one. Read at start.
    pub threads: Option<NonZeroUsize>,
    /// Live SIP transactions at most, client and server. A finished
    /// transaction is kept for its RFC 3261 timers (32 s for an accepted
    /// INVITE or a non-INVITE over UDP), so a steady load of R calls/s
    /// holds about 100·R of them; beyond the limit new requests get a
    /// stateless 503 and calls cannot send theirs.
    pub max_transactions: usize,
    /// `SO_RCVBUF` asked for each UDP listener (the kernel caps it at
    /// `net.core.rmem_max`); 0: the kernel's default. Read at start.
    pub udp_receive_buffer_bytes: usize,
}

/// TLS signalling (SPEC §2.4, §8). The files are read by the daemon at
/// start and on every reload, so a renewed certificate needs no restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server certificate chain (PEM), also presented as the client
    /// certificate on outgoing connections. Set together with `key_file`;
    /// required when `sip.tls` has listeners.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// CA bundle (PEM) that carrier and route certificates are verified
    /// against; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `false` accepts any server certificate: for labs only.
    pub verify_server: bool,
    /// When set, TLS clients are asked (not forced) for a certificate,
    /// verified against this CA; VCs with `require_client_certificate`
    /// admit only calls whose connection presented one.
    pub client_ca_file: Option<PathBuf>,
    /// A connection that has not finished its handshake by then is closed,
    /// so a silent client cannot hold a connection slot.
    pub handshake_timeout: Duration,
    /// Certificates for clients that ask for these names (SNI); the others
    /// get `cert_file`.
    pub sni_certificates: Vec<SniCertificate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    /// Lowercase DNS name.
    pub server_name: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_file: None,
            key_file: None,
            ca_file: None,
            verify_server: true,
            client_ca_file: None,
            handshake_timeout: Duration::from_secs(5),
            sni_certificates: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    pub address: IpAddr,
    pub advertised_address: Option<IpAddr>,
    pub port_min: u16,
    pub port_max: u16,
    /// `None`: media inactivity never ends a call.
    pub inactivity_timeout: Option<Duration>,
    /// Accept media only from the address the peer's SDP names (any port).
    pub strict_latching: bool,
    /// Threads that run the media relays, each with its own current-thread
    /// runtime. `None`: one per CPU the daemon may use. Read at start only.
    pub relay_threads: Option<NonZeroUsize>,
    /// Live relays a relay thread takes before the next thread gets any.
    /// `None`: the media crate's default. Read at start only.
    pub relays_per_thread: Option<NonZeroUsize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Bearer tokens of the admin API. Empty: the API is open to its
    /// (loopback-only) listener's clients, with every right.
    pub tokens: Vec<AdminToken>,
    /// Every mutating request, one JSON line each.
    pub audit_log: PathBuf,
    /// `/metrics` and `/healthz` answer without a token.
    pub open_metrics: bool,
    /// How often the status page (`GET /status`) samples call quality and
    /// per-VC counters: once a minute by default, down to 1 s for tests.
    pub status_sample: Duration,
    /// How long a deleted number can be restored before it is purged.
    pub number_restore: Duration,
    /// Serve the API over TLS with this certificate chain and key (PEM).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

/// What a token may do (SPEC §8). Ordered: each role may do what the
/// roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdminRole {
    /// Every read.
    ReadOnly,
    /// Reads, the number lifecycle, hanging up calls, reload.
    Operator,
    /// Everything.
    Admin,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::ReadOnly => "read-only",
            AdminRole::Operator => "operator",
            AdminRole::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub name: String,
    pub role: AdminRole,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsSettings {
    pub enabled: bool,
    pub directory: PathBuf,
    pub key_prefix: String,
    pub service_code: String,
    /// Where records wait, durably, until every remote sink has them.
    pub spool_directory: PathBuf,
    /// Past this many bytes in the spool, records still reach `directory`
    /// but are no longer queued for remote sinks.
    pub max_spool_bytes: u64,
    /// The first retry delay of a failed upload (full jitter, doubling).
    pub upload_retry_initial: Duration,
    /// The longest retry delay of a failed upload.
    pub upload_retry_max: Duration,
    /// Remote copies; the local directory needs none.
    pub sinks: Vec<RecordSinkSettings>,
}

/// One S3-compatible bucket that receives every record under
/// `<prefix><key>`, addressed path-style (self-hosted stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSinkSettings {
    pub id: String,
    /// An `http://` or `https://` URL.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: trunkd_core::secret::Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSettings {
    pub directory: PathBuf,
    pub format: LogFormat,
    pub level: String,
    /// A VC's SIP message log is rotated before it grows past this.
    pub sip_log_max_bytes: u64,
    /// … or once it is this old.
    pub sip_log_max_age: Duration,
    /// Rotated SIP message logs kept per VC; older ones are deleted.
    pub sip_log_keep_files: usize,
}

/// How calls are routed and failed over (SPEC §2.1 item 3, §2.2 item 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSettings {
    /// How long a B-leg INVITE may go without any response before the next
    /// hop is tried (a shorter Timer B).
    pub hop_timeout: Duration,
    /// No new hop is started after this long from the call's arrival.
    pub deadline: Duration,
    /// A hop that failed is tried last for this long (zero: never).
    pub hold_down: Duration,
    /// Dial strings treated as emergency besides 911 and 933.
    pub emergency_numbers: Vec<String>,
    /// `[probing]`; `None` while `interval_seconds` is 0 (off).
    pub probing: Option<trunkd_core::routing::probe::ProbeSettings>,
    /// `dns_servers`: where route host names are resolved (port 53 when
    /// not given); empty: the system's resolver configuration.
    pub dns_servers: Vec<std::net::SocketAddr>,
}

/// Abuse protection on the SIP listeners (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecuritySettings {
    /// Out-of-dialog requests whose User-Agent contains one of these
    /// (case-insensitive) are dropped without an answer.
    pub scanner_user_agents: Vec<String>,
    /// Out-of-dialog requests per second one source IP may send (burst the
    /// same); 0 turns the limit off.
    pub rate_limit_per_source: u32,
    /// What a source over its rate gets.
    pub rate_limit_action: RateLimitAction,
    /// Calls in progress at most; a new INVITE beyond gets 503.
    pub max_calls: usize,
    /// Calls in progress from one source address (A leg) at most; 0: no
    /// cap per source.
    pub max_calls_per_source: usize,
    /// SIP TCP connections one source IP may hold open.
    pub max_tcp_connections_per_source: usize,
    /// Failed digest authentications from one source IP within the window
    /// that block it (all its requests dropped) for `auth_block`; 0: never.
    pub auth_failures_per_source: u32,
    pub auth_failure_window: Duration,
    pub auth_block: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitAction {
    /// Silence: costs the flooder a timeout and trunkd nothing.
    Drop,
    /// `503 Service Unavailable` with `Retry-After`.
    Reject,
}

/// `[events]`: how events are queued and retried (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsSettings {
    /// One journal file per queued (event, target) pair.
    pub queue_directory: PathBuf,
    /// Per target; a new event that does not fit is dropped and counted.
    pub max_queued_events: usize,
    /// An event not delivered by then is dropped and counted.
    pub max_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// A webhook request without a response by then is a failed attempt.
    pub request_timeout: Duration,
    /// The targets of daemon-wide events (reload failed, sink backlog).
    pub targets: Vec<trunkd_core::events::TargetId>,
}

/// One `[[event_targets]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTarget {
    pub id: trunkd_core::events::TargetId,
    pub kind: EventTargetKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTargetKind {
    /// An HTTP(S) POST per event, signed with the Standard Webhooks scheme.
    Webhook {
        url: String,
        /// Decoded from the `whsec_` secret; its `Debug` is redacted.
        key: trunkd_core::events::signing::WebhookKey,
    },
    /// One JSON line per event appended to `path`.
    File { path: PathBuf },
}

/// `[applications]`: how SIP media application calls are run (SPEC §6,
/// docs/sma.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationsSettings {
    /// How long one endpoint has to answer one invocation.
    pub response_timeout: Duration,
    /// Actions accepted in one answer (the managed service's 10).
    pub max_actions: usize,
    /// Audio fetched from URLs, kept in memory (decoded), in all.
    pub audio_cache_bytes: u64,
    /// One audio file (File or URL) larger than this is refused.
    pub audio_max_file_bytes: u64,
    /// Where a RecordAudio without a destination writes (relative
    /// `File` destinations too).
    pub recording_directory: PathBuf,
    /// How long the callee of a call CreateSipMediaApplicationCall places
    /// may ring (the managed service's request has no timeout of its own).
    pub outbound_ring_timeout: Duration,
}
