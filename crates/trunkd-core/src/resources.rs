//! The resource model of SPEC §1, §3 and §7, as validated types.
//!
//! A [`Resources`] value is an immutable snapshot: `trunkd-config` builds one
//! from a file after validation, the daemon swaps it in atomically, and a call
//! keeps the snapshot it started with. The indexes (`vc_index`,
//! `number_index`, …) are built once here so lookups on the call path are
//! O(1) hash lookups.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ipnet::IpNet;
use rustc_hash::FxHashMap;

use crate::secret::{DigestCredential, Secret};
use crate::types::{CpsLimit, Host, NetworkType, Port, Priority, Transport, Weight};
use crate::{CarrierId, Country, GroupId, RuleId, SmaId, VcId, E164};

/// Up to 50 key/value pairs carried into records (SPEC §3).
pub type Tags = BTreeMap<String, String>;

/// A host to send SIP to: a carrier's host or a VC origination route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub host: Host,
    pub port: Port,
    pub protocol: Transport,
    pub priority: Priority,
    pub weight: Weight,
    /// What the media anchor offers this hop; `None` (`srtp = "auto"`):
    /// SRTP over TLS, plain RTP otherwise (see [`crate::SrtpPolicy`]).
    pub srtp: Option<crate::SrtpPolicy>,
    /// TLS routes: the name sent as SNI and verified in the peer's
    /// certificate (the host is an IP address, which carriers' certificates
    /// often do not name). `None`: the certificate must name the IP.
    pub tls_server_name: Option<String>,
    /// How a host name becomes addresses (RFC 3263): A/AAAA only when a
    /// `port` was given, else SRV (and NAPTR when no `protocol` was
    /// given either). `port` and `protocol` are then only the fallback
    /// for a name without SRV records.
    pub dns: crate::routing::rfc3263::DnsLookup,
}

#[derive(Clone, Debug)]
pub struct Termination {
    pub disabled: bool,
    /// Empty means: any source may send (authentication still applies).
    pub cidr_allowed_list: Vec<IpNet>,
    pub credentials: Vec<DigestCredential>,
    pub cps_limit: CpsLimit,
    pub calling_regions: Vec<Country>,
    /// Caller-ID override: the From/P-Asserted-Identity user of every call.
    pub default_phone_number: Option<E164>,
    /// Carriers in the order they are tried; empty means every carrier.
    pub carriers: Vec<CarrierId>,
    /// Admit only calls whose TLS connection presented a client certificate
    /// that verified against `tls.client_ca_file` (mutual TLS).
    pub require_client_certificate: bool,
}

#[derive(Clone, Debug)]
pub struct Origination {
    pub disabled: bool,
    /// Sorted by priority (1 first), then by file order.
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, Default)]
pub struct VcLogging {
    pub enable_sip_logs: bool,
    pub enable_media_metric_logs: bool,
}

/// Where a streamed call leg's audio goes (SPEC §2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamingSink {
    /// Binary frames of 16-bit LE PCM at 8 kHz after a JSON start message.
    WebSocket { url: String },
    /// One WAV file per leg under `directory`.
    Wav { directory: std::path::PathBuf },
}

#[derive(Clone, Debug)]
pub struct Streaming {
    pub disabled: bool,
    pub data_retention_in_hours: u32,
    pub sinks: Vec<StreamingSink>,
    /// Event targets (SPEC §3.2 `notification_targets`, 0..3) that get
    /// this VC's events: streaming status, route down/up.
    pub notification_targets: Vec<crate::events::TargetId>,
    /// How the legs of a bridged call are laid out in every sink.
    pub channels: StreamChannels,
    /// How a WebSocket sink reconnects during a call.
    pub reconnect: StreamReconnect,
    /// Frames (20 ms each) a sink may fall behind before frames are
    /// dropped: the bound on each sink's memory.
    pub queue_frames: usize,
    /// WAV files also go to the record store (the spool and every
    /// `[[records.sinks]]` bucket) once the call's records are written.
    pub record_store: bool,
}

impl Default for Streaming {
    fn default() -> Self {
        Streaming {
            disabled: true,
            data_retention_in_hours: 0,
            sinks: Vec::new(),
            notification_targets: Vec::new(),
            channels: StreamChannels::PerLeg,
            reconnect: StreamReconnect::default(),
            queue_frames: DEFAULT_STREAM_QUEUE_FRAMES,
            record_store: false,
        }
    }
}

/// Default of [`Streaming::queue_frames`]: five seconds of audio.
pub const DEFAULT_STREAM_QUEUE_FRAMES: usize = 250;

/// `channels` of `[voice_connectors.streaming]` (SPEC §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamChannels {
    /// One mono stream per leg: a WebSocket connection and a WAV file each.
    PerLeg,
    /// One two-channel stream per call: caller left, callee right.
    Stereo,
}

/// Reconnection of a WebSocket sink during a call: at most `max_attempts`
/// reconnects, waiting `initial`, doubling to `max` (with jitter) between
/// attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamReconnect {
    pub max_attempts: u32,
    pub initial: std::time::Duration,
    pub max: std::time::Duration,
}

impl Default for StreamReconnect {
    fn default() -> Self {
        StreamReconnect {
            max_attempts: 5,
            initial: std::time::Duration::from_millis(200),
            max: std::time::Duration::from_secs(5),
        }
    }
}

/// Emergency calling settings (SPEC §2.5): the DNIS method replaces the
/// request-URI user with the routing number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emergency {
    pub calling_country: Country,
    pub emergency_phone_number: E164,
    pub test_phone_number: Option<E164>,
    /// What a PSAP sees as the caller of an emergency call from a user
    /// that is no valid number (an extension); see
    /// [`crate::admission::CallerId`].
    pub callback_phone_number: Option<E164>,
}

#[derive(Clone, Debug)]
pub struct VoiceConnector {
    pub id: VcId,
    pub name: String,
    pub aws_region: String,
    pub require_encryption: bool,
    pub network_type: NetworkType,
    pub tags: Tags,
    pub termination: Termination,
    pub origination: Origination,
    pub logging: VcLogging,
    pub streaming: Streaming,
    pub emergency: Option<Emergency>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupItem {
    pub voice_connector_id: VcId,
    /// 1..=99, unique in the group.
    pub priority: Priority,
}

#[derive(Clone, Debug)]
pub struct VoiceConnectorGroup {
    pub id: GroupId,
    pub name: String,
    /// Sorted by priority: the order inbound calls try them.
    pub voice_connector_items: Vec<GroupItem>,
    pub tags: Tags,
}

/// Credentials trunkd answers a carrier's 401/407 with.
#[derive(Clone, Debug)]
pub struct OutboundCredentials {
    pub username: String,
    pub password: Secret,
}

#[derive(Clone, Debug)]
pub struct Carrier {
    pub id: CarrierId,
    /// Sorted by priority (1 first).
    pub hosts: Vec<Route>,
    pub source_cidrs: Vec<IpNet>,
    pub credentials: Option<OutboundCredentials>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProductType {
    VoiceConnector,
    SipMediaApplicationDialIn,
}

/// What a number is assigned to; at most one thing (SPEC §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    Unassigned,
    VoiceConnector(VcId),
    VoiceConnectorGroup(GroupId),
    /// Used as the trigger of this SIP rule.
    SipRule(RuleId),
}

/// Informational port-in order state (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortInStatus {
    Submitted,
    PendingDocuments,
    Foc,
    Exception,
    ChangeRequested,
    CancelRequested,
    Cancelled,
    Completed,
}

/// How long a deleted number is held before it is purged (SPEC §7).
pub const DELETION_HOLD: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberStatus {
    Unassigned,
    Assigned,
    /// In the deletion queue: restorable until 7 days after deletion.
    DeleteInProgress,
    /// Past the hold: purged, never routed.
    Deleted,
}

#[derive(Clone, Debug)]
pub struct Number {
    pub e164_phone_number: E164,
    pub product_type: ProductType,
    pub assignment: Assignment,
    /// Outbound caller name, `[A-Za-z0-9 ]{2,15}`.
    pub calling_name: Option<String>,
    /// SourcePhoneNumberName / DestinationPhoneNumberName in CDRs.
    pub name: Option<String>,
    /// When the number was put in the deletion queue, if it was.
    pub deleted_at: Option<SystemTime>,
    pub port_in_status: Option<PortInStatus>,
}

impl Number {
    /// The status an operator sees at `now`, with the default hold.
    pub fn status(&self, now: SystemTime) -> NumberStatus {
        self.status_with_hold(now, DELETION_HOLD)
    }

    /// The status at `now` when deleted numbers are held for `hold`
    /// (`[admin] number_restore_days`) before they are purged.
    pub fn status_with_hold(&self, now: SystemTime, hold: std::time::Duration) -> NumberStatus {
        match self.deleted_at {
            Some(t) if now.duration_since(t).is_ok_and(|d| d >= hold) => NumberStatus::Deleted,
            Some(_) => NumberStatus::DeleteInProgress,
            None if self.assignment == Assignment::Unassigned => NumberStatus::Unassigned,
            None => NumberStatus::Assigned,
        }
    }

    /// A number receives or places calls only while assigned and not deleted.
    pub fn is_routable(&self) -> bool {
        self.deleted_at.is_none() && self.assignment != Assignment::Unassigned
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmaEndpoint {
    pub url: String,
    pub priority: Priority,
}

#[derive(Clone, Debug)]
pub struct SipMediaApplication {
    pub id: SmaId,
    pub name: String,
    pub aws_region: String,
    /// Sorted by priority: alternates tried in order on failure.
    pub endpoints: Vec<SmaEndpoint>,
    /// Signs the invocations (Standard Webhooks); `Debug` is redacted.
    pub webhook_secret: Option<crate::events::signing::WebhookKey>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SipRuleTrigger {
    ToPhoneNumber(E164),
    /// Lowercased host name.
    RequestUriHostname(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipRuleTarget {
    pub sip_media_application_id: SmaId,
    pub priority: Priority,
}

#[derive(Clone, Debug)]
pub struct SipRule {
    pub id: RuleId,
    pub name: String,
    pub trigger: SipRuleTrigger,
    pub disabled: bool,
    /// Sorted by priority.
    pub target_applications: Vec<SipRuleTarget>,
}

/// Bounds on the resource model (SPEC §2.2.4), configurable under `[limits]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_routes_per_voice_connector: usize,
    pub max_voice_connectors_per_group: usize,
    pub max_voice_connector_groups: usize,
    pub max_voice_connectors: usize,
    pub max_numbers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_routes_per_voice_connector: 20,
            max_voice_connectors_per_group: 3,
            max_voice_connector_groups: 3,
            max_voice_connectors: 1000,
            max_numbers: 1_000_000,
        }
    }
}

/// The validated, immutable resource snapshot.
///
/// Construct with [`Resources::new`]: it builds the indexes. The validation
/// that makes the cross-references sound lives in `trunkd-config`; lookups
/// here still return `Option` rather than trusting it.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    voice_connectors: Vec<VoiceConnector>,
    voice_connector_groups: Vec<VoiceConnectorGroup>,
    carriers: Vec<Carrier>,
    /// The index maps hash with FxHash: their keys come from the
    /// configuration, so a sender cannot fill them with colliding keys, and
    /// a lookup per call hashes a number or an id several times
    /// (docs/decisions.md, "FxHash for maps of trunkd's own keys").
    numbers: FxHashMap<E164, Number>,
    sip_media_applications: Vec<SipMediaApplication>,
    sip_rules: Vec<SipRule>,
    limits: Limits,
    vc_index: FxHashMap<VcId, usize>,
    group_index: FxHashMap<GroupId, usize>,
    carrier_index: FxHashMap<CarrierId, usize>,
    sma_index: FxHashMap<SmaId, usize>,
    rule_index: FxHashMap<SipRuleTrigger, usize>,
}

/// How many resources of each kind a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ResourceCounts {
    pub voice_connectors: usize,
    pub voice_connector_groups: usize,
    pub carriers: usize,
    pub numbers: usize,
    pub sip_media_applications: usize,
    pub sip_rules: usize,
}

impl ResourceCounts {
    /// `(kind, count)` pairs, named as the file's sections.
    pub fn iter(&self) -> [(&'static str, usize); 6] {
        [
            ("voice_connectors", self.voice_connectors),
            ("voice_connector_groups", self.voice_connector_groups),
            ("carriers", self.carriers),
            ("numbers", self.numbers),
            ("sip_media_applications", self.sip_media_applications),
            ("sip_rules", self.sip_rules),
        ]
    }
}

impl Resources {
    /// Builds a snapshot and its indexes. Later duplicates of an id shadow
    /// nothing: validation has already rejected duplicates, and the index
    /// keeps the first.
    pub fn new(
        voice_connectors: Vec<VoiceConnector>,
        voice_connector_groups: Vec<VoiceConnectorGroup>,
        carriers: Vec<Carrier>,
        numbers: Vec<Number>,
        sip_media_applications: Vec<SipMediaApplication>,
        sip_rules: Vec<SipRule>,
        limits: Limits,
    ) -> Self {
        fn index<K: std::hash::Hash + Eq, T>(
            items: &[T],
            key: impl Fn(&T) -> K,
        ) -> FxHashMap<K, usize> {
            let mut m = FxHashMap::with_capacity_and_hasher(items.len(), Default::default());
            for (i, t) in items.iter().enumerate() {
                m.entry(key(t)).or_insert(i);
            }
            m
        }
        let vc_index = index(&voice_connectors, |v| v.id.clone());
        let group_index = index(&voice_connector_groups, |g| g.id.clone());
        let carrier_index = index(&carriers, |c| c.id.clone());
        let sma_index = index(&sip_media_applications, |s| s.id.clone());
        let rule_index = index(&sip_rules, |r| r.trigger.clone());
        let mut number_map = FxHashMap::with_capacity_and_hasher(numbers.len(), Default::default());
        for n in numbers {
            number_map.entry(n.e164_phone_number).or_insert(n);
        }
        Resources {
            voice_connectors,
            voice_connector_groups,
            carriers,
            numbers: number_map,
            sip_media_applications,
            sip_rules,
            limits,
            vc_index,
            group_index,
            carrier_index,
            sma_index,
            rule_index,
        }
    }

    pub fn counts(&self) -> ResourceCounts {
        ResourceCounts {
            voice_connectors: self.voice_connectors.len(),
            voice_connector_groups: self.voice_connector_groups.len(),
            carriers: self.carriers.len(),
            numbers: self.numbers.len(),
            sip_media_applications: self.sip_media_applications.len(),
            sip_rules: self.sip_rules.len(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn voice_connectors(&self) -> &[VoiceConnector] {
        &self.voice_connectors
    }

    pub fn voice_connector(&self, id: &str) -> Option<&VoiceConnector> {
        self.vc_index.get(id).map(|&i| &self.voice_connectors[i])
    }

    pub fn voice_connector_groups(&self) -> &[VoiceConnectorGroup] {
        &self.voice_connector_groups
    }

    pub fn voice_connector_group(&self, id: &str) -> Option<&VoiceConnectorGroup> {
        self.group_index
            .get(id)
            .map(|&i| &self.voice_connector_groups[i])
    }

    /// The configured `tls_server_name` of the TLS route or carrier host at
    /// `addr` (an IP host and its port), if any. Looked up when an outgoing
    /// TLS connection opens, which connection reuse keeps rare.
    pub fn tls_server_name(&self, addr: std::net::SocketAddr) -> Option<&str> {
        let carrier_hosts = self.carriers.iter().flat_map(|c| c.hosts.iter());
        let vc_routes = self
            .voice_connectors
            .iter()
            .flat_map(|v| v.origination.routes.iter());
        carrier_hosts
            .chain(vc_routes)
            .filter(|r| r.protocol == crate::Transport::Tls && r.port.get() == addr.port())
            .filter(|r| matches!(r.host, crate::Host::Ip(ip) if ip == addr.ip()))
            .find_map(|r| r.tls_server_name.as_deref())
    }

    pub fn carriers(&self) -> &[Carrier] {
        &self.carriers
    }

    pub fn carrier(&self, id: &str) -> Option<&Carrier> {
        self.carrier_index.get(id).map(|&i| &self.carriers[i])
    }

    /// The inventory entry of `n`, whatever its status.
    pub fn number(&self, n: E164) -> Option<&Number> {
        self.numbers.get(&n)
    }

    pub fn numbers(&self) -> impl Iterator<Item = &Number> {
        self.numbers.values()
    }

    pub fn sip_media_applications(&self) -> &[SipMediaApplication] {
        &self.sip_media_applications
    }

    pub fn sip_media_application(&self, id: &str) -> Option<&SipMediaApplication> {
        self.sma_index
            .get(id)
            .map(|&i| &self.sip_media_applications[i])
    }

    pub fn sip_rules(&self) -> &[SipRule] {
        &self.sip_rules
    }

    /// The SIP rule with exactly this trigger, enabled or not.
    pub fn sip_rule_for(&self, trigger: &SipRuleTrigger) -> Option<&SipRule> {
        self.rule_index.get(trigger).map(|&i| &self.sip_rules[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn number(assignment: Assignment, deleted_at: Option<SystemTime>) -> Number {
        Number {
            e164_phone_number: "+12065550100".parse().unwrap(),
            product_type: ProductType::VoiceConnector,
            assignment,
            calling_name: None,
            name: None,
            deleted_at,
            port_in_status: None,
        }
    }

    #[test]
    fn number_status_follows_assignment_and_the_deletion_hold() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let vc = VcId::new("vc-east").unwrap();
        assert_eq!(
            number(Assignment::Unassigned, None).status(now),
            NumberStatus::Unassigned
        );
        assert_eq!(
            number(Assignment::VoiceConnector(vc.clone()), None).status(now),
            NumberStatus::Assigned
        );
        let six_days = now - Duration::from_secs(6 * 24 * 3600);
        let seven_days = now - DELETION_HOLD;
        assert_eq!(
            number(Assignment::Unassigned, Some(six_days)).status(now),
            NumberStatus::DeleteInProgress
        );
        assert_eq!(
            number(Assignment::Unassigned, Some(seven_days)).status(now),
            NumberStatus::Deleted
        );
        assert!(number(Assignment::VoiceConnector(vc), None).is_routable());
        assert!(!number(Assignment::Unassigned, None).is_routable());
    }

    #[test]
    fn lookups_use_the_indexes() {
        let n = number(Assignment::Unassigned, None);
        let r = Resources::new(
            vec![],
            vec![],
            vec![],
            vec![n],
            vec![],
            vec![],
            Limits::default(),
        );
        assert!(r.number("+12065550100".parse().unwrap()).is_some());
        assert!(r.number("+12065550101".parse().unwrap()).is_none());
        assert!(r.voice_connector("vc-east").is_none());
        assert_eq!(r.counts().numbers, 1);
    }
}
