//! Prometheus metrics of the daemon (`GET /metrics`, text format).
//!
//! Families are registered once; label sets are small and bounded (no
//! per-call or per-source labels). docs/metrics.md lists every family.

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// An event target (`[[event_targets]] id`; `*` before routing).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetResultLabels {
    pub target: String,
    /// delivered | retried | dropped_max_age | dropped_queue_full | rejected
    pub result: &'static str,
}

/// `media_relay_thread_relays`: a relay thread's index.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThreadLabel {
    pub thread: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipInLabels {
    pub transport: &'static str,
    /// request | response | keepalive
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaDropLabels {
    /// foreign_source | no_peer | send_failed | oversize | srtp | not_srtp
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipErrorLabels {
    pub transport: &'static str,
    /// dropped (unparseable) | rejected (answered 400/505) | too_large | truncated (a stream closed mid-message)
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipOutLabels {
    pub transport: &'static str,
    /// 1xx … 6xx
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// inbound (a peer connected to trunkd) | outbound (trunkd connected)
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

/// Labels of the per-voice-connector families (SPEC §5.5). A request whose
/// VC could not be identified is counted under `voice_connector_id=""`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VcLabels {
    pub voice_connector_id: String,
    pub region: String,
    /// inbound (origination) | outbound (termination)
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VcReasonLabels {
    pub voice_connector_id: String,
    pub region: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VcOnlyLabels {
    pub voice_connector_id: String,
    pub region: String,
}

/// Media families: `direction` = cust2vc | vc2cust | rem2vc | vc2rem
/// (SPEC §5.3 names), or `side` = customer | remote for RTT and MOS.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MediaLabels {
    pub voice_connector_id: String,
    pub region: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabels {
    pub voice_connector_id: String,
    pub region: String,
    pub side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VcClassLabels {
    pub voice_connector_id: String,
    pub region: String,
    pub class: &'static str,
}

/// `tls_certificate_not_after_timestamp_seconds`: the certificate file's
/// path as configured.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabel {
    pub file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `host:port/transport`
    pub route: String,
}

impl RouteLabels {
    pub fn of(route: &trunkd_core::Route) -> Self {
        RouteLabels {
            route: route_key(route),
        }
    }
}

/// `host:port/transport`: how the route metrics, the admin API and the
/// route events name a route. Every call's outcome names its route.
pub fn route_key(route: &trunkd_core::Route) -> String {
    let mut key = route_endpoint(route);
    key.push('/');
    key.push_str(route.protocol.as_str());
    key
}

/// `host:port`: a route as a media quality line's `endpoint_id` names
/// it. Written without the formatter for an IPv4 host (the common case).
pub fn route_endpoint(route: &trunkd_core::Route) -> String {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(32);
    match &route.host {
        trunkd_core::Host::Ip(std::net::IpAddr::V4(a)) => {
            key.push_str(trunkd_sip::Ipv4Text::new(*a).as_str());
        }
        // Writing to a String cannot fail.
        host => {
            let _ = write!(key, "{host}");
        }
    }
    key.push(':');
    key.push_str(itoa::Buffer::new().format(route.port.get()));
    key
}

/// `route_info`: a voice connector's origination route. A separate info
/// family rather than a label on `route_up`/`route_probe_up`: one route
/// (a customer's PBX) may serve several VCs' origination, and a label
/// there would repeat each state series per VC.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteInfoLabels {
    /// `host:port/transport`, as on the route families.
    pub route: String,
    pub voice_connector_id: String,
}

/// One route's state for the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteState {
    /// After the last call hop to it: up (answered) or down (failed).
    pub call_up: Option<bool>,
    /// What OPTIONS probing sees; `None` while it is not probed.
    pub probe_up: Option<bool>,
}

/// `dns_lookups`: `type` = naptr | srv | a | aaaa; `result` = ok (records)
/// | nodata (the name or type does not exist) | error (timeout, SERVFAIL,
/// no server).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLookupLabels {
    pub r#type: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteResultLabels {
    /// `host:port/transport`
    pub route: String,
    /// `ok` (an accepted reply) | `failed` (timeout, transport error, a
    /// reply not accepted)
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// scanner | rate_limit
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadLabels {
    pub sink: String,
    /// ok | retry (down, 5xx, timeout) | failed (refused: 4xx)
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub kind: &'static str,
}

/// A SIP media application (`[[sip_media_applications]] id`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SmaLabel {
    pub sip_media_application_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SmaInvocationLabels {
    pub sip_media_application_id: String,
    pub event_type: &'static str,
    /// ok (2xx) | http_4xx | http_5xx | http_other | timeout | unreachable
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SmaFailureLabels {
    pub sip_media_application_id: String,
    pub error_type: String,
}

/// Every metric the daemon exports.
pub struct Metrics {
    pub registry: Registry,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub config_resources: Family<KindLabel, Gauge>,
    pub config_last_reload_success: Gauge<f64, AtomicU64>,
    /// Each loaded TLS certificate file's notAfter (Unix seconds).
    pub tls_certificate_not_after: Family<FileLabel, Gauge>,
    pub sip_messages_received: Family<SipInLabels, Counter>,
    pub sip_malformed: Family<SipErrorLabels, Counter>,
    /// Live SIP transactions, client and server, finished ones included
    /// while their RFC 3261 timers run; set by the engine task.
    pub sip_transactions: Gauge,
    /// `[sip] max_transactions`, beside the gauge it bounds.
    pub sip_transactions_max: Gauge,
    /// Requests refused because the transaction table was full.
    pub sip_transaction_limit_refusals: Counter,
    pub sip_responses_sent: Family<SipOutLabels, Counter>,
    pub sip_tcp_connections: Family<TransportLabel, Gauge>,
    pub sip_tcp_connections_refused: Family<TransportLabel, Counter>,
    pub sip_tls_handshake_failures: Family<DirectionLabel, Counter>,
    pub call_attempts: Family<VcLabels, Counter>,
    pub calls_answered: Family<VcLabels, Counter>,
    pub call_failures: Family<VcLabels, Counter>,
    pub calls_active: Family<VcLabels, Gauge>,
    pub admission_rejections: Family<VcReasonLabels, Counter>,
    pub throttles: Family<VcOnlyLabels, Counter>,
    pub options_last_ping: Family<VcOnlyLabels, Gauge<f64, AtomicU64>>,
    pub records_written: Family<RecordLabels, Counter>,
    pub records_failed: Family<RecordLabels, Counter>,
    /// Call journal writes and recoveries, by result.
    pub call_journal: Family<ResultLabel, Counter>,
    /// Records too big for the spool's cap: local copy only.
    pub records_spool_rejected: Counter,
    pub records_spool_bytes: Gauge,
    pub records_spool_oldest_age: Gauge,
    pub records_sink_pending: Family<SinkLabel, Gauge>,
    pub records_uploads: Family<UploadLabels, Counter>,
    /// Calls the engine routes to (a consistency check on call tasks).
    pub engine_calls: Gauge,
    pub rtp_packets: Family<MediaLabels, Counter>,
    pub rtp_bytes: Family<MediaLabels, Counter>,
    pub rtcp_packets: Family<MediaLabels, Counter>,
    pub rtcp_bytes: Family<MediaLabels, Counter>,
    pub packets_lost: Family<MediaLabels, Counter>,
    pub jitter: Family<MediaLabels, Histogram, fn() -> Histogram>,
    pub rtt: Family<SideLabels, Histogram, fn() -> Histogram>,
    pub mos: Family<SideLabels, Histogram, fn() -> Histogram>,
    pub media_ports_in_use: Gauge,
    /// Live relays on each relay thread, read from the relay threads when
    /// /metrics is scraped ([`Metrics::set_relay_loads`]).
    pub media_relay_thread_relays: Family<ThreadLabel, Gauge>,
    pub media_port_exhaustions: Counter,
    pub media_packets_dropped: Family<MediaDropLabels, Counter>,
    pub media_inactivity_hangups: Counter,
    /// Recording sessions (SPEC §2.6) that ended, by outcome: recorded
    /// (a WAV file written) | not_recorded (no sink, or nothing to write)
    /// | failed (not answered).
    pub recording_sessions: Family<OutcomeLabel, Counter>,
    /// RTP packets of recording sessions: recorded | dropped (the writer
    /// fell behind: the relay's tap lost them) | unrecorded (no sink,
    /// another codec, a file that failed).
    pub recording_packets: Family<ResultLabel, Counter>,
    /// SIPREC sessions (an INVITE with RFC 7866 metadata), by outcome:
    /// answered | refused_metadata (the metadata part was malformed:
    /// 400) | failed (admitted, never answered). Record-only sessions
    /// without metadata are not counted here.
    pub siprec_sessions: Family<OutcomeLabel, Counter>,
    /// Streaming of bridged calls (src/streaming/metrics.rs).
    pub streaming: crate::streaming::metrics::StreamingMetrics,
    /// SIP message log lines (SPEC §5.3): written | dropped (the writer's
    /// queue was full: the engine never waits) | failed (a file error).
    pub sip_log_lines: Family<ResultLabel, Counter>,
    /// HEP copies of SIP messages (`[hep]`): sent | dropped (the queue
    /// was full — the transports never wait — or the send failed).
    pub hep_messages: Family<ResultLabel, Counter>,
    pub vc_sip_responses: Family<VcClassLabels, Counter>,
    pub route_up: Family<RouteLabels, Gauge>,
    pub route_failures: Family<RouteLabels, Counter>,
    /// OPTIONS probing (`[probing]`): 1 while a probed route is up.
    pub route_probe_up: Family<RouteLabels, Gauge>,
    /// 1 for each (origination route, VC) of the configuration.
    pub route_info: Family<RouteInfoLabels, Gauge>,
    pub route_probes: Family<RouteResultLabels, Counter>,
    /// Lookups of route host names (`resolver`), by record type and result.
    pub dns_lookups: Family<DnsLookupLabels, Counter>,
    /// The routes with a `route_probe_up` series (the family cannot be
    /// listed), so a removed route's series can be removed.
    route_probe_labels: std::sync::Mutex<Vec<RouteLabels>>,
    /// Route state as the admin API shows it (`GET /routes`): by route,
    /// what calls last saw and what probing sees.
    route_states: std::sync::Mutex<std::collections::BTreeMap<String, RouteState>>,
    /// The last OPTIONS ping per VC: time and source (termination health).
    last_pings: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::SystemTime, std::net::SocketAddr)>,
    >,
    /// The media counters of each voice connector a report has added to,
    /// with the region they were made for ([`Metrics::media_counters`]);
    /// bounded like the families' own series, by the configured VCs.
    media_counters:
        std::sync::Mutex<rustc_hash::FxHashMap<String, (String, std::sync::Arc<MediaCounters>)>>,
    /// The call series of each voice connector counted so far
    /// ([`Metrics::vc_calls`]; "" for calls without a VC), bounded the
    /// same way.
    vc_calls: std::sync::Mutex<rustc_hash::FxHashMap<String, std::sync::Arc<VcCallSeries>>>,
    /// `sip_messages_received` by (transport, kind), kept on first use.
    received_kept: KeptCounters<12>,
    /// `sip_responses_sent` by (transport, class), kept on first use.
    responses_kept: KeptCounters<24>,
    pub sip_refused: Family<RefusedLabels, Counter>,
    pub sip_auth_failures: Counter,
    /// Audit log lines that could not be written (SPEC §8).
    pub audit_failures: Counter,
    pub sip_sources_blocked: Counter,
    /// `events_queued{target}`, `events_total{target,result}` (SPEC §5.4).
    pub events: crate::events::EventMetrics,
    /// SIP media application calls in progress (their driver running).
    pub sma_active_calls: Family<SmaLabel, Gauge>,
    /// HTTP invocations of applications, by event type and result.
    pub sma_invocations: Family<SmaInvocationLabels, Counter>,
    /// How long an application took to answer an invocation (any status).
    pub sma_invocation_duration: Histogram,
    /// Actions the application asked for that failed, by error type.
    pub sma_action_failures: Family<SmaFailureLabels, Counter>,
}

fn jitter_buckets() -> Histogram {
    // 1 ms … 500 ms: G.711 jitter buffers sit at 20–200 ms.
    Histogram::new([0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5])
}

fn rtt_buckets() -> Histogram {
    Histogram::new([0.001, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.8])
}

fn mos_buckets() -> Histogram {
    Histogram::new([1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("trunkd_build_info", "trunkd build, value 1", build);

        let config_reloads = Family::<ResultLabel, Counter>::default();
        // Both series exist from the start so a rate() sees the first reload.
        for result in ["success", "failure"] {
            let _ = config_reloads.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            config_reloads.clone(),
        );
        let config_resources = Family::<KindLabel, Gauge>::default();
        registry.register(
            "config_resources",
            "Resources in the running configuration, by kind",
            config_resources.clone(),
        );
        let config_last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "When the running configuration was loaded (Unix time)",
            Unit::Seconds,
            config_last_reload_success.clone(),
        );

        let tls_certificate_not_after = Family::<FileLabel, Gauge>::default();
        registry.register_with_unit(
            "tls_certificate_not_after_timestamp",
            "When each loaded TLS certificate file's leaf certificate expires (notAfter, Unix time)",
            Unit::Seconds,
            tls_certificate_not_after.clone(),
        );

        let sip_messages_received = Family::<SipInLabels, Counter>::default();
        registry.register(
            "sip_messages_received",
            "SIP messages received, by transport and kind",
            sip_messages_received.clone(),
        );
        let sip_malformed = Family::<SipErrorLabels, Counter>::default();
        registry.register(
            "sip_malformed_messages",
            "Malformed SIP input, by transport and what was done with it",
            sip_malformed.clone(),
        );
        let sip_transactions = Gauge::default();
        registry.register(
            "sip_transactions",
            "Live SIP transactions, client and server, finished ones kept for their RFC 3261 timers included",
            sip_transactions.clone(),
        );
        let sip_transactions_max = Gauge::default();
        registry.register(
            "sip_transactions_max",
            "The limit on live SIP transactions ([sip] max_transactions)",
            sip_transactions_max.clone(),
        );
        let sip_transaction_limit_refusals = Counter::default();
        registry.register(
            "sip_transaction_limit_refusals",
            "SIP requests refused (503, or a call's request not sent) because the transaction table was full",
            sip_transaction_limit_refusals.clone(),
        );
        let sip_responses_sent = Family::<SipOutLabels, Counter>::default();
        registry.register(
            "sip_responses_sent",
            "SIP responses trunkd generated, by class",
            sip_responses_sent.clone(),
        );
        let sip_tcp_connections = Family::<TransportLabel, Gauge>::default();
        registry.register(
            "sip_connections",
            "Open SIP stream connections",
            sip_tcp_connections.clone(),
        );
        let sip_tcp_connections_refused = Family::<TransportLabel, Counter>::default();
        registry.register(
            "sip_connections_refused",
            "SIP stream connections refused at the connection cap",
            sip_tcp_connections_refused.clone(),
        );
        let sip_tls_handshake_failures = Family::<DirectionLabel, Counter>::default();
        for direction in ["inbound", "outbound"] {
            let _ = sip_tls_handshake_failures.get_or_create(&DirectionLabel { direction });
        }
        registry.register(
            "sip_tls_handshake_failures",
            "TLS handshakes that failed or timed out (bad certificate, TLS 1.0/1.1, silence)",
            sip_tls_handshake_failures.clone(),
        );

        let call_attempts = Family::<VcLabels, Counter>::default();
        registry.register(
            "voice_connector_call_attempts",
            "Calls that reached admission, by voice connector and direction",
            call_attempts.clone(),
        );
        let calls_answered = Family::<VcLabels, Counter>::default();
        registry.register(
            "voice_connector_calls_answered",
            "Calls answered",
            calls_answered.clone(),
        );
        let call_failures = Family::<VcLabels, Counter>::default();
        registry.register(
            "voice_connector_call_failures",
            "Calls that ended without an answer (refused, failed, cancelled)",
            call_failures.clone(),
        );
        let calls_active = Family::<VcLabels, Gauge>::default();
        registry.register(
            "voice_connector_calls_active",
            "Calls in progress",
            calls_active.clone(),
        );
        let admission_rejections = Family::<VcReasonLabels, Counter>::default();
        registry.register(
            "voice_connector_admission_rejections",
            "Calls refused by admission, by reason",
            admission_rejections.clone(),
        );
        let throttles = Family::<VcOnlyLabels, Counter>::default();
        registry.register(
            "voice_connector_throttles",
            "Calls refused by the calls-per-second limit",
            throttles.clone(),
        );
        let options_last_ping = Family::<VcOnlyLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "voice_connector_options_last_ping_timestamp",
            "When the voice connector's side last sent an out-of-dialog OPTIONS (Unix time)",
            Unit::Seconds,
            options_last_ping.clone(),
        );
        let records_written = Family::<RecordLabels, Counter>::default();
        registry.register(
            "records_written",
            "Records written, by kind",
            records_written.clone(),
        );
        let records_failed = Family::<RecordLabels, Counter>::default();
        registry.register(
            "records_failed",
            "Records that could not be written, by kind",
            records_failed.clone(),
        );
        let call_journal = Family::<ResultLabel, Counter>::default();
        registry.register(
            "call_journal",
            "Answered calls journalled (written), not journalled (dropped: queue full; failed: disk), and CDRs written at start for calls a stop interrupted (recovered)",
            call_journal.clone(),
        );
        let records_spool_rejected = Counter::default();
        registry.register(
            "records_spool_rejected",
            "Records past records.max_spool_bytes: written locally, not queued for remote sinks",
            records_spool_rejected.clone(),
        );
        let records_spool_bytes = Gauge::default();
        registry.register_with_unit(
            "records_spool",
            "Bytes of records waiting in the spool for a remote sink",
            Unit::Bytes,
            records_spool_bytes.clone(),
        );
        let records_spool_oldest_age = Gauge::default();
        registry.register_with_unit(
            "records_spool_oldest_age",
            "Age of the oldest record in the spool (0 when empty)",
            Unit::Seconds,
            records_spool_oldest_age.clone(),
        );
        let records_sink_pending = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "records_sink_pending",
            "Records a remote sink does not have yet",
            records_sink_pending.clone(),
        );
        let records_uploads = Family::<UploadLabels, Counter>::default();
        registry.register(
            "records_uploads",
            "Record uploads to remote sinks, by sink and result",
            records_uploads.clone(),
        );
        let engine_calls = Gauge::default();
        registry.register(
            "sip_engine_calls",
            "Calls the SIP engine routes messages to",
            engine_calls.clone(),
        );

        let rtp_packets = Family::<MediaLabels, Counter>::default();
        registry.register(
            "voice_connector_rtp_packets",
            "RTP packets by direction (cust2vc, vc2cust, rem2vc, vc2rem)",
            rtp_packets.clone(),
        );
        let rtp_bytes = Family::<MediaLabels, Counter>::default();
        registry.register_with_unit(
            "voice_connector_rtp",
            "RTP bytes by direction",
            Unit::Bytes,
            rtp_bytes.clone(),
        );
        let rtcp_packets = Family::<MediaLabels, Counter>::default();
        registry.register(
            "voice_connector_rtcp_packets",
            "RTCP packets by direction",
            rtcp_packets.clone(),
        );
        let rtcp_bytes = Family::<MediaLabels, Counter>::default();
        registry.register_with_unit(
            "voice_connector_rtcp",
            "RTCP bytes by direction",
            Unit::Bytes,
            rtcp_bytes.clone(),
        );
        let packets_lost = Family::<MediaLabels, Counter>::default();
        registry.register("voice_connector_packets_lost", "RTP packets lost by direction (measured by trunkd for *2vc, reported by the peer for vc2*)", packets_lost.clone());
        let jitter = Family::<MediaLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            jitter_buckets as fn() -> Histogram,
        );
        registry.register_with_unit(
            "voice_connector_jitter",
            "Interarrival jitter per call-minute (RFC 3550)",
            Unit::Seconds,
            jitter.clone(),
        );
        let rtt = Family::<SideLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            rtt_buckets as fn() -> Histogram,
        );
        registry.register_with_unit(
            "voice_connector_rtt",
            "Round trip between trunkd and a side, per call-minute (RTCP)",
            Unit::Seconds,
            rtt.clone(),
        );
        let mos = Family::<SideLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            mos_buckets as fn() -> Histogram,
        );
        registry.register(
            "voice_connector_mos",
            "E-model MOS between trunkd and a side, per call-minute (SPEC §4)",
            mos.clone(),
        );
        let media_ports_in_use = Gauge::default();
        registry.register(
            "media_ports_in_use",
            "RTP/RTCP port pairs held by calls",
            media_ports_in_use.clone(),
        );
        let media_relay_thread_relays = Family::<ThreadLabel, Gauge>::default();
        registry.register(
            "media_relay_thread_relays",
            "Calls' media relays on each relay thread ([media] relays_per_thread fills one before the next)",
            media_relay_thread_relays.clone(),
        );
        let media_port_exhaustions = Counter::default();
        registry.register(
            "media_port_exhaustions",
            "Calls refused 503 because no media port pair was left",
            media_port_exhaustions.clone(),
        );
        let media_packets_dropped = Family::<MediaDropLabels, Counter>::default();
        registry.register(
            "media_packets_dropped",
            "Media packets received and not relayed, by reason (srtp: failed SRTP authentication or replay)",
            media_packets_dropped.clone(),
        );
        let media_inactivity_hangups = Counter::default();
        registry.register(
            "media_inactivity_hangups",
            "Calls ended because no RTP flowed either way for media.inactivity_timeout_seconds",
            media_inactivity_hangups.clone(),
        );
        let recording_sessions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "recording_sessions",
            "Recording sessions (SIPREC, record-only) that ended, by outcome",
            recording_sessions.clone(),
        );
        let siprec_sessions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "siprec_sessions",
            "SIPREC recording sessions, by outcome: answered, refused_metadata, failed",
            siprec_sessions.clone(),
        );
        let recording_packets = Family::<ResultLabel, Counter>::default();
        registry.register(
            "recording_packets",
            "RTP packets received on recording sessions, by what became of them",
            recording_packets.clone(),
        );
        let streaming = crate::streaming::metrics::StreamingMetrics::register(&mut registry);
        let sip_log_lines = Family::<ResultLabel, Counter>::default();
        registry.register(
            "sip_log_lines",
            "SIP message log lines, by result: written, dropped (queue full), failed (file error)",
            sip_log_lines.clone(),
        );
        let hep_messages = Family::<ResultLabel, Counter>::default();
        registry.register(
            "hep_messages",
            "HEP copies of SIP messages, by result: sent, dropped (queue full or send failed)",
            hep_messages.clone(),
        );

        let vc_sip_responses = Family::<VcClassLabels, Counter>::default();
        registry.register(
            "voice_connector_sip_responses",
            "SIP responses trunkd sent for a voice connector's calls, by class",
            vc_sip_responses.clone(),
        );
        let route_up = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "route_up",
            "1 while a carrier host or origination route is not held down after a failure",
            route_up.clone(),
        );
        let route_failures = Family::<RouteLabels, Counter>::default();
        registry.register("route_failures", "Hop failures of a carrier host or origination route (timeout, transport error, 408, 3xx, 5xx)", route_failures.clone());
        let route_info = Family::<RouteInfoLabels, Gauge>::default();
        registry.register(
            "route_info",
            "1 for each origination route of each voice connector (join on route)",
            route_info.clone(),
        );
        let route_probe_up = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "route_probe_up",
            "1 while OPTIONS probing has a carrier host or origination route up, 0 while down (only probed routes)",
            route_probe_up.clone(),
        );
        let route_probes = Family::<RouteResultLabels, Counter>::default();
        registry.register(
            "route_probes",
            "OPTIONS probes that ended, by route and result (ok: an accepted reply)",
            route_probes.clone(),
        );
        let dns_lookups = Family::<DnsLookupLabels, Counter>::default();
        registry.register(
            "dns_lookups",
            "DNS lookups of route host names (RFC 3263), by record type (naptr, srv, a, aaaa) and result (ok, nodata, error)",
            dns_lookups.clone(),
        );

        let audit_failures = Counter::default();
        registry.register(
            "admin_audit_failures",
            "Admin API audit log lines that could not be written (the file's error is logged)",
            audit_failures.clone(),
        );
        let sip_auth_failures = Counter::default();
        registry.register(
            "sip_auth_failures",
            "Failed digest authentications (any VC); the log names each source",
            sip_auth_failures.clone(),
        );
        let sip_sources_blocked = Counter::default();
        registry.register(
            "sip_sources_blocked",
            "Sources blocked for failing authentication security.auth_failures_per_source times",
            sip_sources_blocked.clone(),
        );
        let sip_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "sip_requests_refused",
            "Out-of-dialog requests refused before the engine: scanner User-Agent or per-source rate limit",
            sip_refused.clone(),
        );

        let events = crate::events::EventMetrics::default();
        registry.register(
            "events_queued",
            "Events waiting for delivery to a target (journalled, in flight included)",
            events.queued.clone(),
        );
        registry.register(
            "events",
            "Event deliveries by target and result: delivered, retried (an attempt failed), dropped_max_age, dropped_queue_full, rejected (a 4xx)",
            events.total.clone(),
        );

        let sma_active_calls = Family::<SmaLabel, Gauge>::default();
        registry.register(
            "sma_active_calls",
            "SIP media application calls in progress",
            sma_active_calls.clone(),
        );
        let sma_invocations = Family::<SmaInvocationLabels, Counter>::default();
        registry.register(
            "sma_invocations",
            "Invocations of SIP media applications (one per HTTP request, retries included), by event type and result",
            sma_invocations.clone(),
        );
        let sma_invocation_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register_with_unit(
            "sma_invocation_duration",
            "Time from sending an invocation to its HTTP response",
            Unit::Seconds,
            sma_invocation_duration.clone(),
        );
        let sma_action_failures = Family::<SmaFailureLabels, Counter>::default();
        registry.register(
            "sma_action_failures",
            "Actions of SIP media applications that failed (ACTION_FAILED), by error type",
            sma_action_failures.clone(),
        );

        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            sma_active_calls,
            sma_invocations,
            sma_invocation_duration,
            sma_action_failures,
            registry,
            config_reloads,
            config_resources,
            config_last_reload_success,
            tls_certificate_not_after,
            sip_messages_received,
            sip_malformed,
            sip_transactions,
            sip_transactions_max,
            sip_transaction_limit_refusals,
            sip_responses_sent,
            sip_tcp_connections,
            sip_tcp_connections_refused,
            sip_tls_handshake_failures,
            call_attempts,
            calls_answered,
            call_failures,
            calls_active,
            admission_rejections,
            throttles,
            options_last_ping,
            records_written,
            records_failed,
            call_journal,
            records_spool_rejected,
            records_spool_bytes,
            records_spool_oldest_age,
            records_sink_pending,
            records_uploads,
            engine_calls,
            rtp_packets,
            rtp_bytes,
            rtcp_packets,
            rtcp_bytes,
            packets_lost,
            jitter,
            rtt,
            mos,
            media_ports_in_use,
            media_relay_thread_relays,
            media_port_exhaustions,
            media_packets_dropped,
            media_inactivity_hangups,
            recording_sessions,
            siprec_sessions,
            recording_packets,
            streaming,
            sip_log_lines,
            hep_messages,
            vc_sip_responses,
            route_up,
            route_failures,
            route_probe_up,
            route_info,
            route_probes,
            dns_lookups,
            route_probe_labels: Default::default(),
            route_states: Default::default(),
            last_pings: Default::default(),
            media_counters: Default::default(),
            vc_calls: Default::default(),
            received_kept: Default::default(),
            responses_kept: Default::default(),
            sip_refused,
            sip_auth_failures,
            audit_failures,
            sip_sources_blocked,
            events,
        }
    }

    /// The call series of `vc` as `r` configures it (its region), found
    /// by label once per (VC, region) and then kept: a call counts about
    /// six times, and building and hashing two label strings each time
    /// was most of what counting cost. The series are the families' own,
    /// each made on first use, so a series appears in /metrics only once
    /// counted.
    fn vc_calls(
        &self,
        vc: Option<&trunkd_core::VcId>,
        r: &trunkd_config::Resources,
    ) -> std::sync::Arc<VcCallSeries> {
        let id = vc.map_or("", |v| v.as_str());
        let region = vc
            .and_then(|v| r.voice_connector(v.as_str()))
            .map_or("", |v| v.aws_region.as_str());
        let mut cache = self
            .vc_calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(series) = cache.get(id) {
            if series.region == region {
                return series.clone();
            }
            // A reload moved the VC to another region: new series.
        }
        let series = std::sync::Arc::new(VcCallSeries::new(id, region));
        cache.insert(id.to_owned(), series.clone());
        series
    }

    pub fn call_attempt(
        &self,
        vc: Option<&trunkd_core::VcId>,
        r: &trunkd_config::Resources,
        direction: &'static str,
    ) {
        let s = self.vc_calls(vc, r);
        s.attempts.inc(direction_index(direction), || {
            self.call_attempts
                .get_or_create(&s.labels(direction))
                .clone()
        });
    }

    pub fn answered(
        &self,
        vc: Option<&trunkd_core::VcId>,
        r: &trunkd_config::Resources,
        direction: &'static str,
    ) {
        let s = self.vc_calls(vc, r);
        s.answered.inc(direction_index(direction), || {
            self.calls_answered
                .get_or_create(&s.labels(direction))
                .clone()
        });
    }

    pub fn failed(
        &self,
        vc: Option<&trunkd_core::VcId>,
        r: &trunkd_config::Resources,
        direction: &'static str,
    ) {
        let s = self.vc_calls(vc, r);
        s.failed.inc(direction_index(direction), || {
            self.call_failures
                .get_or_create(&s.labels(direction))
                .clone()
        });
    }

    /// The active-calls gauge of one VC and direction (the call task holds it).
    pub fn calls_active(
        &self,
        vc: Option<&trunkd_core::VcId>,
        r: &trunkd_config::Resources,
        direction: &'static str,
    ) -> Gauge {
        let s = self.vc_calls(vc, r);
        let make = || {
            self.calls_active
                .get_or_create(&s.labels(direction))
                .clone()
        };
        match s.active.get(direction_index(direction)) {
            Some(cell) => cell.get_or_init(make).clone(),
            None => make(),
        }
    }

    pub fn admission_rejected(
        &self,
        vc: Option<&trunkd_core::VcId>,
        r: &trunkd_config::Resources,
        reason: &'static str,
    ) {
        let (voice_connector_id, region) = vc_region(vc, r);
        self.admission_rejections
            .get_or_create(&VcReasonLabels {
                voice_connector_id,
                region,
                reason,
            })
            .inc();
    }

    pub fn throttled(&self, vc: Option<&trunkd_core::VcId>, r: &trunkd_config::Resources) {
        let (voice_connector_id, region) = vc_region(vc, r);
        self.throttles
            .get_or_create(&VcOnlyLabels {
                voice_connector_id,
                region,
            })
            .inc();
    }

    pub fn options_ping(
        &self,
        vc: &trunkd_core::VcId,
        r: &trunkd_config::Resources,
        from: std::net::SocketAddr,
    ) {
        let (voice_connector_id, region) = vc_region(Some(vc), r);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.options_last_ping
            .get_or_create(&VcOnlyLabels {
                voice_connector_id,
                region,
            })
            .set(now);
        self.last_pings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vc.to_string(), (std::time::SystemTime::now(), from));
        tracing::debug!(vc = %vc, %from, "OPTIONS ping recorded");
    }

    pub fn record_written(&self, kind: &'static str) {
        self.records_written
            .get_or_create(&RecordLabels { kind })
            .inc();
    }

    pub fn record_upload(&self, sink: &str, result: &'static str) {
        self.records_uploads
            .get_or_create(&UploadLabels {
                sink: sink.to_owned(),
                result,
            })
            .inc();
    }

    /// The spool's gauges from its backlog (called every second).
    pub fn set_spool(&self, backlog: &crate::records::Backlog, oldest_age_seconds: u64) {
        self.records_spool_bytes
            .set(i64::try_from(backlog.spool_bytes).unwrap_or(i64::MAX));
        self.records_spool_oldest_age
            .set(i64::try_from(oldest_age_seconds).unwrap_or(i64::MAX));
        for s in &backlog.sinks {
            self.records_sink_pending
                .get_or_create(&SinkLabel { sink: s.id.clone() })
                .set(i64::try_from(s.pending_records).unwrap_or(i64::MAX));
        }
    }

    pub fn record_failed(&self, kind: &'static str) {
        self.records_failed
            .get_or_create(&RecordLabels { kind })
            .inc();
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Sets `media_relay_thread_relays` from each relay thread's live
    /// relays, in thread order.
    pub fn set_relay_loads(&self, loads: &[usize]) {
        for (thread, &load) in loads.iter().enumerate() {
            let thread = u32::try_from(thread).unwrap_or(u32::MAX);
            self.media_relay_thread_relays
                .get_or_create(&ThreadLabel { thread })
                .set(i64::try_from(load).unwrap_or(i64::MAX));
        }
    }

    pub fn set_resources(&self, r: &trunkd_config::Resources) {
        for (kind, n) in r.counts().iter() {
            self.config_resources
                .get_or_create(&KindLabel { kind })
                .set(n as i64);
        }
        // Replaced whole: a reload that drops a route or a VC drops its
        // series.
        self.route_info.clear();
        for vc in r.voice_connectors() {
            for route in &vc.origination.routes {
                self.route_info
                    .get_or_create(&RouteInfoLabels {
                        route: RouteLabels::of(route).route,
                        voice_connector_id: vc.id.as_str().to_owned(),
                    })
                    .set(1);
            }
        }
    }

    /// A response trunkd sent for a call of `vc`.
    pub fn vc_response(
        &self,
        vc: Option<&trunkd_core::VcId>,
        r: &trunkd_config::Resources,
        code: u16,
    ) {
        let s = self.vc_calls(vc, r);
        let class = class_of(code);
        s.responses.inc(class_index(code), || {
            self.vc_sip_responses
                .get_or_create(&VcClassLabels {
                    voice_connector_id: s.id.clone(),
                    region: s.region.clone(),
                    class,
                })
                .clone()
        });
    }

    /// The loaded certificates' notAfter, replacing the previous files'
    /// (a reload that drops a certificate drops its series).
    pub fn set_certificates(&self, not_after: &[(String, i64)]) {
        self.tls_certificate_not_after.clear();
        for (file, t) in not_after {
            self.tls_certificate_not_after
                .get_or_create(&FileLabel { file: file.clone() })
                .set(*t);
        }
    }

    /// A call's hop to `route` succeeded (`ok`) or failed. Returns
    /// whether the route was up before, as `route_up` showed it (a route
    /// is assumed up until its first failure).
    pub fn route_outcome(&self, route: &trunkd_core::Route, ok: bool) -> bool {
        let labels = RouteLabels::of(route);
        self.route_up.get_or_create(&labels).set(i64::from(ok));
        if !ok {
            self.route_failures.get_or_create(&labels).inc();
        }
        // `call_up` is set here only, so it says what `route_up` said.
        let mut states = self.route_states.lock().unwrap_or_else(|e| e.into_inner());
        let before = match states.get_mut(&labels.route) {
            Some(state) => state.call_up.replace(ok),
            None => {
                let state = RouteState {
                    call_up: Some(ok),
                    ..RouteState::default()
                };
                states.insert(labels.route, state);
                None
            }
        };
        before.unwrap_or(true)
    }

    /// A probe of `route` ended, accepted (`ok`) or not.
    pub fn route_probe_result(&self, route: &trunkd_core::Route, ok: bool) {
        self.route_probes
            .get_or_create(&RouteResultLabels {
                route: RouteLabels::of(route).route,
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Probing moved `route` to up or down.
    pub fn route_probe_state(&self, route: &trunkd_core::Route, up: bool) {
        let labels = RouteLabels::of(route);
        self.route_probe_up
            .get_or_create(&labels)
            .set(i64::from(up));
        self.route_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(labels.route)
            .or_default()
            .probe_up = Some(up);
    }

    /// Every route with a known state, by `host:port/transport`.
    pub fn route_states(&self) -> Vec<(String, RouteState)> {
        self.route_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The last OPTIONS ping of `vc`: when and from where.
    pub fn last_ping(&self, vc: &str) -> Option<(std::time::SystemTime, std::net::SocketAddr)> {
        self.last_pings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(vc)
            .copied()
    }

    /// The probed routes after a reload: each has a `route_probe_up`
    /// series (new ones start up), and removed routes lose theirs, so the
    /// gauge never shows a route that is no longer probed.
    pub fn route_probe_keep(&self, routes: &[trunkd_core::Route]) {
        let keep: Vec<RouteLabels> = routes.iter().map(RouteLabels::of).collect();
        let mut stale = Vec::new();
        {
            // prometheus-client has no iteration; track the labels we set.
            let mut known = self
                .route_probe_labels
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for l in known.iter() {
                if !keep.contains(l) {
                    stale.push(l.clone());
                }
            }
            known.retain(|l| keep.contains(l));
            let mut states = self.route_states.lock().unwrap_or_else(|e| e.into_inner());
            for l in &keep {
                if !known.contains(l) {
                    known.push(l.clone());
                    self.route_probe_up.get_or_create(l).set(1);
                    states.entry(l.route.clone()).or_default().probe_up = Some(true);
                }
            }
            for l in &stale {
                if let Some(s) = states.get_mut(&l.route) {
                    s.probe_up = None;
                }
            }
            states.retain(|_, s| s.probe_up.is_some() || s.call_up.is_some());
        }
        for l in stale {
            self.route_probe_up.remove(&l);
        }
    }

    /// Probing was turned off: no route has a probe state any more.
    pub fn route_probe_forget_all(&self) {
        self.route_probe_keep(&[]);
    }

    pub fn response_sent(&self, transport: &'static str, code: u16) {
        let class = class_of(code);
        let family = &self.sip_responses_sent;
        let make = || {
            family
                .get_or_create(&SipOutLabels { transport, class })
                .clone()
        };
        match (kept_transport(transport), code / 100) {
            (Some(t), c @ 1..=6) => self.responses_kept.inc(t * 6 + usize::from(c - 1), make),
            _ => {
                make().inc();
            }
        }
    }

    /// Counts a SIP message received: `kind` request | response |
    /// keepalive.
    pub fn message_received(&self, transport: &'static str, kind: &'static str) {
        let family = &self.sip_messages_received;
        let make = || {
            family
                .get_or_create(&SipInLabels { transport, kind })
                .clone()
        };
        let k = match kind {
            "request" => Some(0),
            "response" => Some(1),
            "keepalive" => Some(2),
            _ => None,
        };
        match (kept_transport(transport), k) {
            (Some(t), Some(k)) => self.received_kept.inc(t * 3 + k, make),
            _ => {
                make().inc();
            }
        }
    }
}

/// The transports of the kept SIP counters, in their order (`any`: a
/// response the engine sent, whatever carried it).
fn kept_transport(t: &str) -> Option<usize> {
    ["udp", "tcp", "tls", "any"].iter().position(|k| *k == t)
}

/// Series of a family whose label sets are few and fixed, each found by
/// label on first use and then kept: counting every SIP message and
/// response no longer hashes its labels. A series appears in /metrics
/// when first counted, as before.
struct KeptCounters<const N: usize>([std::sync::OnceLock<Counter>; N]);

impl<const N: usize> Default for KeptCounters<N> {
    fn default() -> Self {
        KeptCounters(std::array::from_fn(|_| std::sync::OnceLock::new()))
    }
}

impl<const N: usize> KeptCounters<N> {
    /// Adds one to series `i` (`make` finds it the first time).
    fn inc(&self, i: usize, make: impl FnOnce() -> Counter) {
        match self.0.get(i) {
            Some(cell) => cell.get_or_init(make).inc(),
            None => make().inc(),
        };
    }
}

/// The `class` label of a status code; [`class_index`] numbers the same.
fn class_of(code: u16) -> &'static str {
    ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"][class_index(code)]
}

/// 0 for 1xx .. 5 for 6xx (and anything out of range).
fn class_index(code: u16) -> usize {
    match code / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        5 => 4,
        _ => 5,
    }
}

/// The index of a `direction` label in [`VcCallSeries`]' arrays; an
/// unknown label is out of range (its series is then looked up each time).
fn direction_index(direction: &str) -> usize {
    match direction {
        "inbound" => 0,
        "outbound" => 1,
        _ => 2,
    }
}

/// The per-VC call series of one (voice connector, region), each kept on
/// first use ([`Metrics::vc_calls`]): by direction (inbound, outbound),
/// `voice_connector_call_attempts`, `_calls_answered`, `_call_failures`
/// and `_calls_active`; by class, `voice_connector_sip_responses`.
struct VcCallSeries {
    id: String,
    region: String,
    attempts: KeptCounters<2>,
    answered: KeptCounters<2>,
    failed: KeptCounters<2>,
    active: [std::sync::OnceLock<Gauge>; 2],
    responses: KeptCounters<6>,
}

impl VcCallSeries {
    fn new(id: &str, region: &str) -> Self {
        VcCallSeries {
            id: id.to_owned(),
            region: region.to_owned(),
            attempts: KeptCounters::default(),
            answered: KeptCounters::default(),
            failed: KeptCounters::default(),
            active: Default::default(),
            responses: KeptCounters::default(),
        }
    }

    fn labels(&self, direction: &'static str) -> VcLabels {
        VcLabels {
            voice_connector_id: self.id.clone(),
            region: self.region.clone(),
            direction,
        }
    }
}

fn vc_region(vc: Option<&trunkd_core::VcId>, r: &trunkd_config::Resources) -> (String, String) {
    match vc {
        Some(id) => {
            let region = r
                .voice_connector(id.as_str())
                .map(|v| v.aws_region.clone())
                .unwrap_or_default();
            (id.to_string(), region)
        }
        None => (String::new(), String::new()),
    }
}

/// The media directions of SPEC §5.3, in the order of
/// [`MediaCounters::directions`].
pub const MEDIA_DIRECTIONS: [&str; 4] = ["cust2vc", "vc2cust", "rem2vc", "vc2rem"];

/// One direction's media counters of one voice connector: the series of
/// `voice_connector_rtp_packets` and its siblings for that label set.
#[derive(Clone)]
pub struct DirectionCounters {
    pub rtp_packets: Counter,
    pub rtp_bytes: Counter,
    pub rtcp_packets: Counter,
    pub rtcp_bytes: Counter,
    pub packets_lost: Counter,
}

/// The media counters of one (voice connector, region), by direction
/// ([`MEDIA_DIRECTIONS`]).
pub struct MediaCounters {
    pub directions: [DirectionCounters; 4],
}

impl Metrics {
    /// The media counters of `vc` in `region`, found by label once and
    /// then kept: a call's report adds to 20 series, and hashing their
    /// label strings each time (two strings copied per series) was most of
    /// what a report cost. The counters are the families' own series, so
    /// `/metrics` shows what is added here.
    pub fn media_counters(&self, vc: &str, region: &str) -> std::sync::Arc<MediaCounters> {
        let mut cache = self
            .media_counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((r, c)) = cache.get(vc) {
            if r == region {
                return c.clone();
            }
            // A reload moved the VC to another region: new series.
        }
        let series = |direction| {
            let labels = MediaLabels {
                voice_connector_id: vc.to_owned(),
                region: region.to_owned(),
                direction,
            };
            DirectionCounters {
                rtp_packets: self.rtp_packets.get_or_create(&labels).clone(),
                rtp_bytes: self.rtp_bytes.get_or_create(&labels).clone(),
                rtcp_packets: self.rtcp_packets.get_or_create(&labels).clone(),
                rtcp_bytes: self.rtcp_bytes.get_or_create(&labels).clone(),
                packets_lost: self.packets_lost.get_or_create(&labels).clone(),
            }
        };
        let counters = std::sync::Arc::new(MediaCounters {
            directions: MEDIA_DIRECTIONS.map(series),
        });
        cache.insert(vc.to_owned(), (region.to_owned(), counters.clone()));
        counters
    }
}

/// The standard `process_*` families, read from /proc/self at scrape time.
#[derive(Debug)]
struct ProcessCollector;

struct ProcStat {
    cpu_seconds: f64,
    start_time_seconds: f64,
    threads: i64,
    virtual_bytes: i64,
    resident_bytes: i64,
}

fn proc_stat() -> Option<ProcStat> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): field N is f[N - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })?;
    Some(ProcStat {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        start_time_seconds: boot_time + num(22)? / ticks,
        threads: num(20)? as i64,
        virtual_bytes: num(23)? as i64,
        resident_bytes: num(24)? as i64 * page,
    })
}

fn open_fds() -> Option<i64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
}

fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = proc_stat() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, f64); 4] = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                s.resident_bytes as f64,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                s.virtual_bytes as f64,
            ),
            (
                "process_start_time",
                "Start time since the Unix epoch",
                Some(Unit::Seconds),
                s.start_time_seconds,
            ),
            ("process_threads", "OS threads", None, s.threads as f64),
        ];
        for (name, help, unit, v) in &gauges {
            let g = ConstGauge::new(*v);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
        }
        for (name, help, v) in [
            ("process_open_fds", "Open file descriptors", open_fds()),
            ("process_max_fds", "File descriptor limit", max_fds()),
        ] {
            if let Some(v) = v {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// Counts the media drops of a call since its previous report.
    pub fn count_media_drops(
        &self,
        now: &trunkd_media::DropCounters,
        before: &trunkd_media::DropCounters,
    ) {
        for (reason, n, b) in [
            ("foreign_source", now.foreign_source, before.foreign_source),
            ("no_peer", now.no_peer, before.no_peer),
            ("send_failed", now.send_failed, before.send_failed),
            ("oversize", now.oversize, before.oversize),
            ("srtp", now.srtp, before.srtp),
            ("not_srtp", now.not_srtp, before.not_srtp),
        ] {
            if n > b {
                self.media_packets_dropped
                    .get_or_create(&MediaDropLabels { reason })
                    .inc_by(n - b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_foundation_families() {
        let m = Metrics::new();
        m.config_reloads
            .get_or_create(&ResultLabel { result: "failure" })
            .inc();
        let text = m.encode();
        for needle in [
            "trunkd_build_info{version=\"",
            "config_reloads_total{result=\"success\"} 0",
            "config_reloads_total{result=\"failure\"} 1",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    /// The kept counters are the families' series: what a report adds
    /// shows in /metrics under the VC's labels, a second lookup adds to the
    /// same series, and a VC moved to another region gets that region's.
    /// A route's key is what `format!("{host}:{port}/{protocol}")` wrote
    /// (the admin API's and older metrics' spelling), for every kind of host.
    #[test]
    fn route_key_is_host_port_transport() {
        for (host, port, protocol) in [
            ("203.0.113.20", 5060, trunkd_core::Transport::Udp),
            ("0.0.0.0", 1, trunkd_core::Transport::Tcp),
            ("255.255.255.255", 65535, trunkd_core::Transport::Tls),
            ("2001:db8::1", 5061, trunkd_core::Transport::Tls),
            ("sbc.example.net", 5080, trunkd_core::Transport::Tcp),
        ] {
            let route = trunkd_core::Route {
                host: host.parse().unwrap_or_else(|e| panic!("{host}: {e:?}")),
                port: trunkd_core::Port::new(port).unwrap_or_else(|e| panic!("{e}")),
                protocol,
                priority: trunkd_core::Priority::new(1, trunkd_core::Priority::MAX)
                    .unwrap_or_else(|e| panic!("{e}")),
                weight: trunkd_core::Weight::new(1).unwrap_or_else(|e| panic!("{e}")),
                srtp: None,
                tls_server_name: None,
                dns: Default::default(),
            };
            let old = format!("{}:{}/{}", route.host, route.port, route.protocol);
            assert_eq!(route_key(&route), old);
            assert_eq!(
                route_endpoint(&route),
                format!("{}:{}", route.host, route.port)
            );
            assert_eq!(RouteLabels::of(&route).route, old);
        }
    }

    #[test]
    fn vc_call_series_are_the_families_series() {
        let m = Metrics::new();
        let dir = std::env::temp_dir().join(format!("trunkd-metrics-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        // vc-east in region "local" (the daemon's); the default resources
        // do not know it (region "").
        let configured = crate::engine::sim::config(&dir, "", "").resources;
        let unknown = trunkd_config::Resources::default();
        let east = trunkd_core::VcId::new("vc-east").unwrap_or_else(|e| panic!("{e}"));
        let vc = Some(&east);
        // Each event looks the VC up again, as the engine and call tasks do.
        m.call_attempt(vc, &configured, "inbound");
        m.call_attempt(vc, &configured, "inbound");
        m.call_attempt(vc, &configured, "outbound");
        m.answered(vc, &configured, "inbound");
        m.failed(None, &configured, "outbound");
        m.calls_active(vc, &configured, "inbound").inc();
        m.calls_active(vc, &configured, "inbound").inc();
        m.calls_active(vc, &configured, "outbound").inc();
        for code in [100, 180, 200, 200, 503, 699] {
            m.vc_response(vc, &configured, code);
        }
        // The same VC under other resources (a reload moved its region).
        m.call_attempt(vc, &unknown, "inbound");
        // A label the arrays do not hold is still counted.
        m.call_attempt(vc, &configured, "sideways");
        m.call_attempt(vc, &configured, "sideways");
        let text = m.encode();
        for needle in [
            r#"voice_connector_call_attempts_total{voice_connector_id="vc-east",region="local",direction="inbound"} 2"#,
            r#"voice_connector_call_attempts_total{voice_connector_id="vc-east",region="local",direction="outbound"} 1"#,
            r#"voice_connector_call_attempts_total{voice_connector_id="vc-east",region="",direction="inbound"} 1"#,
            r#"voice_connector_call_attempts_total{voice_connector_id="vc-east",region="local",direction="sideways"} 2"#,
            r#"voice_connector_calls_answered_total{voice_connector_id="vc-east",region="local",direction="inbound"} 1"#,
            r#"voice_connector_call_failures_total{voice_connector_id="",region="",direction="outbound"} 1"#,
            r#"voice_connector_calls_active{voice_connector_id="vc-east",region="local",direction="inbound"} 2"#,
            r#"voice_connector_calls_active{voice_connector_id="vc-east",region="local",direction="outbound"} 1"#,
            r#"voice_connector_sip_responses_total{voice_connector_id="vc-east",region="local",class="1xx"} 2"#,
            r#"voice_connector_sip_responses_total{voice_connector_id="vc-east",region="local",class="2xx"} 2"#,
            r#"voice_connector_sip_responses_total{voice_connector_id="vc-east",region="local",class="5xx"} 1"#,
            r#"voice_connector_sip_responses_total{voice_connector_id="vc-east",region="local",class="6xx"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // Only what was counted appears.
        assert!(!text.contains(r#"voice_connector_calls_answered_total{voice_connector_id="vc-east",region="local",direction="outbound"}"#));
        assert!(!text.contains(r#"class="3xx""#));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn media_counters_are_the_families_series() {
        let m = Metrics::new();
        // Each call looks the VC up again, as each call's report does.
        let direction = |region, d: usize| m.media_counters("vc-a", region).directions[d].clone();
        direction("us-east-1", 0).rtp_packets.inc_by(3);
        direction("us-east-1", 0).rtp_packets.inc_by(4);
        direction("us-east-1", 3).packets_lost.inc_by(2);
        direction("eu-west-1", 1).rtcp_bytes.inc_by(80);
        let text = m.encode();
        for needle in [
            r#"voice_connector_rtp_packets_total{voice_connector_id="vc-a",region="us-east-1",direction="cust2vc"} 7"#,
            r#"voice_connector_packets_lost_total{voice_connector_id="vc-a",region="us-east-1",direction="vc2rem"} 2"#,
            r#"voice_connector_rtcp_bytes_total{voice_connector_id="vc-a",region="eu-west-1",direction="vc2cust"} 80"#,
            r#"voice_connector_rtp_packets_total{voice_connector_id="vc-a",region="eu-west-1",direction="rem2vc"} 0"#,
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    /// Messages and responses counted through the kept series land in the
    /// families' series, appear only once counted, and a label outside
    /// the kept set still counts.
    #[test]
    fn sip_counters_kept_on_first_use_are_the_families_series() {
        let m = Metrics::new();
        assert!(!m.encode().contains("sip_messages_received_total{"));
        for _ in 0..3 {
            m.message_received("udp", "request");
        }
        m.message_received("tls", "keepalive");
        m.message_received("ws", "request");
        m.response_sent("udp", 180);
        m.response_sent("udp", 200);
        m.response_sent("any", 200);
        m.response_sent("any", 200);
        m.response_sent("tcp", 603);
        let text = m.encode();
        for needle in [
            r#"sip_messages_received_total{transport="udp",kind="request"} 3"#,
            r#"sip_messages_received_total{transport="tls",kind="keepalive"} 1"#,
            r#"sip_messages_received_total{transport="ws",kind="request"} 1"#,
            r#"sip_responses_sent_total{transport="udp",class="1xx"} 1"#,
            r#"sip_responses_sent_total{transport="udp",class="2xx"} 1"#,
            r#"sip_responses_sent_total{transport="any",class="2xx"} 2"#,
            r#"sip_responses_sent_total{transport="tcp",class="6xx"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(
            !text.contains(r#"kind="response""#),
            "only what was counted"
        );
    }
}
