//! The file's shape (SPEC §3.1), exactly as operators write it.
//!
//! These structs only give the TOML its structure. Leaves are kept as plain
//! strings and `i64`s on purpose: a bad value (`weight = 0`, `protocol =
//! "SCTP"`, `e164_phone_number = "555"`) must reach [`crate::validate`], which
//! reports every such error with its resource and field, instead of stopping
//! serde at the first one. Unknown keys are collected by `serde_ignored`
//! (all of them, with their paths) rather than `deny_unknown_fields`, which
//! would also stop at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct File {
    pub daemon: Daemon,
    pub sip: Sip,
    pub tls: Option<Tls>,
    pub media: Media,
    pub admin: Admin,
    pub records: Records,
    pub logging: Logging,
    pub limits: Limits,
    pub routing: Routing,
    pub probing: Probing,
    pub security: Security,
    pub carriers: Vec<Carrier>,
    pub voice_connectors: Vec<VoiceConnector>,
    pub voice_connector_groups: Vec<VoiceConnectorGroup>,
    pub numbers: Vec<Number>,
    pub sip_media_applications: Vec<SipMediaApplication>,
    pub sip_rules: Vec<SipRule>,
    pub event_targets: Vec<EventTarget>,
    pub events: Events,
    pub applications: Applications,
    pub hep: Hep,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Daemon {
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub outbound_host_domain: Option<String>,
    pub state_dir: Option<String>,
    pub pid_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Sip {
    pub udp: Option<Vec<String>>,
    pub tcp: Option<Vec<String>>,
    pub tls: Option<Vec<String>>,
    pub advertised_address: Option<String>,
    pub max_message_bytes: Option<i64>,
    pub max_tcp_connections: Option<i64>,
    pub tcp_idle_timeout_seconds: Option<i64>,
    pub threads: Option<i64>,
    pub max_transactions: Option<i64>,
    pub udp_receive_buffer_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Tls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    pub verify_server: Option<bool>,
    pub client_ca_file: Option<String>,
    pub handshake_timeout_seconds: Option<i64>,
    pub sni_certificates: Option<Vec<SniCertificate>>,
}

/// A certificate served to TLS clients that ask for `server_name` (SNI).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SniCertificate {
    pub server_name: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Media {
    pub address: Option<String>,
    pub advertised_address: Option<String>,
    pub port_min: Option<i64>,
    pub port_max: Option<i64>,
    pub inactivity_timeout_seconds: Option<i64>,
    pub strict_latching: Option<bool>,
    pub relay_threads: Option<i64>,
    pub relays_per_thread: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Admin {
    pub listen: Option<String>,
    pub tokens: Option<Vec<AdminToken>>,
    pub audit_log: Option<String>,
    pub open_metrics: Option<bool>,
    pub status_sample_seconds: Option<i64>,
    pub number_restore_days: Option<i64>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
}

/// One bearer token of the admin API: its name (audit log), its role and
/// the hex SHA-256 of the token (the token itself is never in the file).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AdminToken {
    pub name: Option<String>,
    pub role: Option<String>,
    pub token_sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Records {
    pub enabled: Option<bool>,
    pub directory: Option<String>,
    pub key_prefix: Option<String>,
    pub service_code: Option<String>,
    pub spool_directory: Option<String>,
    pub max_spool_bytes: Option<i64>,
    pub upload_retry_initial_ms: Option<i64>,
    pub upload_retry_max_seconds: Option<i64>,
    pub sinks: Vec<RecordSink>,
}

/// `[[records.sinks]]`: a remote copy of every record (SPEC §3.2).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RecordSink {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub secret_access_key_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Logging {
    pub directory: Option<String>,
    pub format: Option<String>,
    pub level: Option<String>,
    pub sip_log_max_bytes: Option<i64>,
    pub sip_log_max_age_hours: Option<i64>,
    pub sip_log_keep_files: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Hep {
    pub enabled: Option<bool>,
    pub collector: Option<String>,
    pub capture_id: Option<i64>,
    pub password: Option<String>,
    pub transport: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Security {
    pub scanner_user_agents: Option<Vec<String>>,
    pub rate_limit_per_source: Option<i64>,
    pub rate_limit_action: Option<String>,
    pub max_calls: Option<i64>,
    pub max_calls_per_source: Option<i64>,
    pub max_tcp_connections_per_source: Option<i64>,
    pub auth_failures_per_source: Option<i64>,
    pub auth_failure_window_seconds: Option<i64>,
    pub auth_block_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Routing {
    pub hop_timeout_ms: Option<i64>,
    pub deadline_seconds: Option<i64>,
    pub hold_down_seconds: Option<i64>,
    pub emergency_numbers: Option<Vec<String>>,
    /// Nameservers for route host names (`"ip:port"` or `"ip"`); the
    /// system's when absent.
    pub dns_servers: Option<Vec<String>>,
}

/// `[probing]`: OPTIONS probing of carrier hosts and origination routes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Probing {
    pub interval_seconds: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub failure_threshold: Option<i64>,
    pub success_threshold: Option<i64>,
    pub accepted_replies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_routes_per_voice_connector: Option<i64>,
    pub max_voice_connectors_per_group: Option<i64>,
    pub max_voice_connector_groups: Option<i64>,
    pub max_voice_connectors: Option<i64>,
    pub max_numbers: Option<i64>,
}

/// A carrier host or an origination route.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Route {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub priority: Option<i64>,
    pub weight: Option<i64>,
    /// auto | off | offer | require
    pub srtp: Option<String>,
    /// TLS only: SNI and the name verified in the peer's certificate.
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CarrierCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Carrier {
    pub id: Option<String>,
    pub source_cidrs: Vec<String>,
    pub hosts: Vec<Route>,
    pub credentials: Option<CarrierCredentials>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VoiceConnector {
    pub id: Option<String>,
    pub name: Option<String>,
    pub aws_region: Option<String>,
    pub require_encryption: bool,
    pub network_type: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub termination: Option<Termination>,
    pub origination: Option<Origination>,
    pub logging: VcLogging,
    pub streaming: Option<Streaming>,
    pub emergency: Option<Emergency>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Credential {
    pub username: Option<String>,
    pub password: Option<String>,
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Termination {
    pub disabled: bool,
    pub cidr_allowed_list: Vec<String>,
    pub credentials: Vec<Credential>,
    pub cps_limit: Option<i64>,
    pub calling_regions: Vec<String>,
    pub default_phone_number: Option<String>,
    pub carriers: Vec<String>,
    pub require_client_certificate: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Origination {
    pub disabled: bool,
    pub routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VcLogging {
    pub enable_sip_logs: bool,
    pub enable_media_metric_logs: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamingSink {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub directory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Streaming {
    pub disabled: bool,
    pub data_retention_in_hours: Option<i64>,
    pub sinks: Vec<StreamingSink>,
    pub notification_targets: Option<Vec<String>>,
    /// `per_leg` (default) or `stereo`.
    pub channels: Option<String>,
    pub max_reconnects: Option<i64>,
    pub reconnect_initial_ms: Option<i64>,
    pub reconnect_max_ms: Option<i64>,
    pub queue_frames: Option<i64>,
    pub record_store: bool,
}

impl Default for Streaming {
    fn default() -> Self {
        Streaming {
            disabled: true,
            data_retention_in_hours: None,
            sinks: Vec::new(),
            notification_targets: None,
            channels: None,
            max_reconnects: None,
            reconnect_initial_ms: None,
            reconnect_max_ms: None,
            queue_frames: None,
            record_store: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Emergency {
    pub calling_country: Option<String>,
    pub emergency_phone_number: Option<String>,
    pub test_phone_number: Option<String>,
    pub callback_phone_number: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GroupItem {
    pub voice_connector_id: Option<String>,
    pub priority: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VoiceConnectorGroup {
    pub id: Option<String>,
    pub name: Option<String>,
    pub voice_connector_items: Vec<GroupItem>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Number {
    pub e164_phone_number: Option<String>,
    pub product_type: Option<String>,
    pub voice_connector_id: Option<String>,
    pub voice_connector_group_id: Option<String>,
    pub calling_name: Option<String>,
    pub name: Option<String>,
    pub deleted_at: Option<String>,
    pub port_in_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SmaEndpoint {
    pub url: Option<String>,
    pub priority: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SipMediaApplication {
    pub id: Option<String>,
    pub name: Option<String>,
    pub aws_region: Option<String>,
    pub endpoints: Vec<SmaEndpoint>,
    pub webhook_secret: Option<String>,
    pub webhook_secret_file: Option<String>,
    pub webhook_secret_env: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RuleTarget {
    pub sip_media_application_id: Option<String>,
    pub priority: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SipRule {
    pub id: Option<String>,
    pub name: Option<String>,
    pub trigger_type: Option<String>,
    pub trigger_value: Option<String>,
    pub disabled: bool,
    pub target_applications: Vec<RuleTarget>,
}

/// `[[event_targets]]` (SPEC §3.2, §5.4).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventTarget {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    pub path: Option<String>,
}

/// `[events]`: the delivery queue (docs/events.md).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Events {
    pub queue_directory: Option<String>,
    pub max_queued_events: Option<i64>,
    pub max_age_seconds: Option<i64>,
    pub retry_initial_ms: Option<i64>,
    pub retry_max_seconds: Option<i64>,
    pub request_timeout_seconds: Option<i64>,
    pub targets: Option<Vec<String>>,
}

/// `[applications]`: how SIP media application calls are run (SPEC §6).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Applications {
    pub response_timeout_ms: Option<i64>,
    pub max_actions: Option<i64>,
    pub audio_cache_bytes: Option<i64>,
    pub audio_max_file_bytes: Option<i64>,
    pub recording_directory: Option<String>,
    pub outbound_ring_timeout_seconds: Option<i64>,
}
