//! Builders for the resource model in this crate's unit tests. Each makes
//! the plainest valid value; tests change the one field they are about.

use std::time::SystemTime;

use crate::resources::*;
use crate::secret::{DigestCredential, DigestSecret, Secret};
use crate::types::{CpsLimit, Host, NetworkType, Port, Priority, Transport, Weight};
use crate::{CarrierId, GroupId, RuleId, SmaId, VcId, E164};

pub(crate) fn e164(s: &str) -> E164 {
    s.parse().unwrap()
}

pub(crate) fn route(host: &str, port: i64, priority: i64, weight: i64) -> Route {
    Route {
        host: host.parse::<Host>().unwrap(),
        port: Port::new(port).unwrap(),
        protocol: Transport::Udp,
        priority: Priority::new(priority, 100).unwrap(),
        weight: Weight::new(weight).unwrap(),
        srtp: None,
        tls_server_name: None,
        dns: Default::default(),
    }
}

pub(crate) fn password(user: &str, pw: &str) -> DigestCredential {
    DigestCredential {
        username: user.into(),
        secret: DigestSecret::Password(Secret::new(pw.into())),
    }
}

pub(crate) fn vc(id: &str) -> VoiceConnector {
    VoiceConnector {
        id: VcId::new(id).unwrap(),
        name: id.to_owned(),
        aws_region: "local".into(),
        require_encryption: false,
        network_type: NetworkType::Ipv4Only,
        tags: Tags::new(),
        termination: Termination {
            disabled: false,
            cidr_allowed_list: Vec::new(),
            credentials: Vec::new(),
            cps_limit: CpsLimit::DEFAULT,
            calling_regions: Vec::new(),
            default_phone_number: None,
            carriers: Vec::new(),
            require_client_certificate: false,
        },
        origination: Origination {
            disabled: false,
            routes: vec![route("192.0.2.10", 5060, 1, 10)],
        },
        logging: VcLogging::default(),
        streaming: Streaming::default(),
        emergency: None,
    }
}

pub(crate) fn group(id: &str, vcs: &[&str]) -> VoiceConnectorGroup {
    VoiceConnectorGroup {
        id: GroupId::new(id).unwrap(),
        name: id.to_owned(),
        voice_connector_items: vcs
            .iter()
            .enumerate()
            .map(|(i, v)| GroupItem {
                voice_connector_id: VcId::new(v).unwrap(),
                priority: Priority::new(i as i64 + 1, 99).unwrap(),
            })
            .collect(),
        tags: Tags::new(),
    }
}

pub(crate) fn carrier(id: &str, hosts: Vec<Route>, cidrs: &[&str]) -> Carrier {
    Carrier {
        id: CarrierId::new(id).unwrap(),
        hosts,
        source_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        credentials: None,
    }
}

pub(crate) fn number(n: &str, assignment: Assignment) -> Number {
    Number {
        e164_phone_number: e164(n),
        product_type: ProductType::VoiceConnector,
        assignment,
        calling_name: None,
        name: None,
        deleted_at: None,
        port_in_status: None,
    }
}

pub(crate) fn deleted(mut n: Number) -> Number {
    n.deleted_at = Some(SystemTime::UNIX_EPOCH);
    n
}

pub(crate) fn rule(id: &str, trigger: SipRuleTrigger, disabled: bool) -> SipRule {
    SipRule {
        id: RuleId::new(id).unwrap(),
        name: id.to_owned(),
        trigger,
        disabled,
        target_applications: vec![SipRuleTarget {
            sip_media_application_id: SmaId::new("sma-ivr").unwrap(),
            priority: Priority::new(1, 100).unwrap(),
        }],
    }
}

pub(crate) fn resources(
    vcs: Vec<VoiceConnector>,
    groups: Vec<VoiceConnectorGroup>,
    carriers: Vec<Carrier>,
    numbers: Vec<Number>,
    rules: Vec<SipRule>,
) -> Resources {
    Resources::new(
        vcs,
        groups,
        carriers,
        numbers,
        Vec::new(),
        rules,
        Limits::default(),
    )
}

pub(crate) fn vc_id(s: &str) -> VcId {
    VcId::new(s).unwrap()
}

/// A small seeded PRNG (SplitMix64) for tests that need many random draws
/// reproducibly.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}
