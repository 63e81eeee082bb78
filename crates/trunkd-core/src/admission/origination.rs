//! Origination admission (SPEC §2.2 items 1–2): is this INVITE from a
//! carrier, and who receives the called number?

use std::net::IpAddr;

use crate::resources::{Assignment, Carrier, Resources, SipRule, SipRuleTrigger};
use crate::{GroupId, RuleId, VcId, E164};

/// Who an origination call goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginationTarget {
    /// A VC with origination enabled.
    VoiceConnector(VcId),
    /// A group with at least one VC that has origination enabled; its VCs
    /// are tried in priority order (see `routing::origination_plan`).
    Group(GroupId),
    /// An enabled SIP rule: the call goes to its SIP media applications.
    SipRule(RuleId),
    /// Answer 404 ([`super::OriginationRejection::NotFound`]).
    NotFound,
}

/// The carrier a request comes from: the one whose `source_cidrs` hold
/// `source` most specifically, the first in file order on a tie. `None`
/// means 403 ([`super::OriginationRejection::UnknownCarrier`]): nothing
/// reaches a customer except from a known carrier (SPEC §8).
pub fn origination_source(resources: &Resources, source: IpAddr) -> Option<&Carrier> {
    resources
        .carriers()
        .iter()
        .filter_map(|c| {
            c.source_cidrs
                .iter()
                .filter(|n| n.contains(&source))
                .map(|n| n.prefix_len())
                .max()
                .map(|l| (c, l))
        })
        // max_by_key keeps the last maximum: reversed, the first in file
        // order wins a tie.
        .rev()
        .max_by_key(|&(_, l)| l)
        .map(|(c, _)| c)
}

/// The called number of SPEC §2.2 item 2: the request-URI user when it
/// reads as E.164 (with or without `+`), else the To user. Carriers that
/// put a trunk id in the request-URI still reach the number in To.
pub fn called_number(request_uri_user: Option<&str>, to_user: Option<&str>) -> Option<E164> {
    request_uri_user
        .and_then(|u| E164::parse_lenient(u).ok())
        .or_else(|| to_user.and_then(|u| E164::parse_lenient(u).ok()))
}

/// Resolves the called number (`called`, lenient E.164) and the request-URI
/// host to a target, in this order:
///
/// 1. the inventory number, when routable (assigned, not deleted: SPEC §7):
///    its VC if that VC's origination is enabled; its group if a member VC
///    has origination enabled; its SIP rule if enabled;
/// 2. an enabled `ToPhoneNumber` SIP rule for the number;
/// 3. an enabled `RequestUriHostname` SIP rule for the host (any case);
/// 4. otherwise [`OriginationTarget::NotFound`]: unknown, unassigned and
///    deleted numbers, and numbers whose VC or group cannot take calls.
pub fn origination_target(
    resources: &Resources,
    called: &str,
    request_uri_host: &str,
) -> OriginationTarget {
    let number = E164::parse_lenient(called).ok();
    if let Some(n) = number {
        if let Some(num) = resources.number(n) {
            if num.is_routable() {
                let by_assignment = match &num.assignment {
                    Assignment::VoiceConnector(id) => resources
                        .voice_connector(id.as_str())
                        .filter(|vc| !vc.origination.disabled)
                        .map(|vc| OriginationTarget::VoiceConnector(vc.id.clone())),
                    Assignment::VoiceConnectorGroup(id) => resources
                        .voice_connector_group(id.as_str())
                        .filter(|g| {
                            g.voice_connector_items.iter().any(|i| {
                                resources
                                    .voice_connector(i.voice_connector_id.as_str())
                                    .is_some_and(|vc| !vc.origination.disabled)
                            })
                        })
                        .map(|g| OriginationTarget::Group(g.id.clone())),
                    Assignment::SipRule(id) => resources
                        .sip_rules()
                        .iter()
                        .find(|r| r.id == *id)
                        .and_then(enabled)
                        .map(|r| OriginationTarget::SipRule(r.id.clone())),
                    Assignment::Unassigned => None,
                };
                // A number in the inventory routes by its assignment only.
                return by_assignment.unwrap_or_else(|| by_host(resources, request_uri_host));
            }
            return by_host(resources, request_uri_host);
        }
        if let Some(r) = resources
            .sip_rule_for(&SipRuleTrigger::ToPhoneNumber(n))
            .and_then(enabled)
        {
            return OriginationTarget::SipRule(r.id.clone());
        }
    }
    by_host(resources, request_uri_host)
}

fn enabled(r: &SipRule) -> Option<&SipRule> {
    (!r.disabled).then_some(r)
}

fn by_host(resources: &Resources, host: &str) -> OriginationTarget {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    resources
        .sip_rule_for(&SipRuleTrigger::RequestUriHostname(host))
        .and_then(enabled)
        .map_or(OriginationTarget::NotFound, |r| {
            OriginationTarget::SipRule(r.id.clone())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use proptest::prelude::*;

    fn world() -> Resources {
        let mut off = vc("vc-off");
        off.origination.disabled = true;
        resources(
            vec![vc("vc-east"), vc("vc-west"), off],
            vec![
                group("grp-main", &["vc-east", "vc-west"]),
                group("grp-off", &["vc-off"]),
            ],
            vec![
                carrier("carrier-a", vec![], &["192.0.2.0/24"]),
                carrier("carrier-b", vec![], &["192.0.2.128/25", "2001:db8::/32"]),
                carrier("carrier-c", vec![], &["192.0.2.128/25"]),
            ],
            vec![
                number("+12065550100", Assignment::VoiceConnector(vc_id("vc-east"))),
                number(
                    "+12065550200",
                    Assignment::VoiceConnectorGroup(GroupId::new("grp-main").unwrap()),
                ),
                number(
                    "+12065550201",
                    Assignment::VoiceConnectorGroup(GroupId::new("grp-off").unwrap()),
                ),
                number("+12065550300", Assignment::VoiceConnector(vc_id("vc-off"))),
                number(
                    "+12065550150",
                    Assignment::SipRule(RuleId::new("rule-1").unwrap()),
                ),
                number(
                    "+12065550151",
                    Assignment::SipRule(RuleId::new("rule-off").unwrap()),
                ),
                number("+12065550500", Assignment::Unassigned),
                deleted(number(
                    "+12065550400",
                    Assignment::VoiceConnector(vc_id("vc-east")),
                )),
            ],
            vec![
                rule(
                    "rule-1",
                    SipRuleTrigger::ToPhoneNumber(e164("+12065550150")),
                    false,
                ),
                rule(
                    "rule-off",
                    SipRuleTrigger::ToPhoneNumber(e164("+12065550151")),
                    true,
                ),
                rule(
                    "rule-free",
                    SipRuleTrigger::ToPhoneNumber(e164("+12065550160")),
                    false,
                ),
                rule(
                    "rule-host",
                    SipRuleTrigger::RequestUriHostname("ivr.trunkd.local".into()),
                    false,
                ),
            ],
        )
    }

    #[test]
    fn source_is_the_most_specific_carrier() {
        let r = world();
        let id = |ip: &str| origination_source(&r, ip.parse().unwrap()).map(|c| c.id.to_string());
        assert_eq!(id("192.0.2.1").as_deref(), Some("carrier-a"));
        assert_eq!(
            id("192.0.2.200").as_deref(),
            Some("carrier-b"),
            "/25 beats /24; b before c in the file"
        );
        assert_eq!(id("2001:db8::5").as_deref(), Some("carrier-b"));
        assert_eq!(id("198.51.100.1"), None);
    }

    #[test]
    fn called_number_prefers_the_request_uri() {
        assert_eq!(
            called_number(Some("+12065550100"), Some("+12065550200")),
            Some(e164("+12065550100"))
        );
        assert_eq!(
            called_number(Some("trunk-7"), Some("12065550200")),
            Some(e164("+12065550200"))
        );
        assert_eq!(
            called_number(None, Some("+12065550200")),
            Some(e164("+12065550200"))
        );
        assert_eq!(called_number(Some("x"), None), None);
    }

    #[test]
    fn targets() {
        let r = world();
        let t = |called: &str| origination_target(&r, called, "trunkd.local");
        assert_eq!(
            t("+12065550100"),
            OriginationTarget::VoiceConnector(vc_id("vc-east"))
        );
        assert_eq!(
            t("12065550100"),
            OriginationTarget::VoiceConnector(vc_id("vc-east"))
        );
        assert_eq!(
            t("+12065550200"),
            OriginationTarget::Group(GroupId::new("grp-main").unwrap())
        );
        assert_eq!(
            t("+12065550150"),
            OriginationTarget::SipRule(RuleId::new("rule-1").unwrap())
        );
        assert_eq!(
            t("+12065550160"),
            OriginationTarget::SipRule(RuleId::new("rule-free").unwrap())
        );
        for not_found in [
            "+12065550300",
            "+12065550201",
            "+12065550151",
            "+12065550500",
            "+12065550400",
            "+19995550000",
            "bob",
        ] {
            assert_eq!(t(not_found), OriginationTarget::NotFound, "{not_found}");
        }
    }

    #[test]
    fn hostname_rules_match_the_request_uri_host() {
        let r = world();
        let rule_host = OriginationTarget::SipRule(RuleId::new("rule-host").unwrap());
        assert_eq!(
            origination_target(&r, "bob", "IVR.trunkd.local."),
            rule_host
        );
        assert_eq!(
            origination_target(&r, "+19995550000", "ivr.trunkd.local"),
            rule_host
        );
        // A number that routes wins over the host.
        assert_eq!(
            origination_target(&r, "+12065550100", "ivr.trunkd.local"),
            OriginationTarget::VoiceConnector(vc_id("vc-east"))
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_only_routable_numbers_reach_vcs(called in "\\+?[0-9]{0,16}|\\PC{0,10}", host in "\\PC{0,20}") {
            let r = world();
            match origination_target(&r, &called, &host) {
                OriginationTarget::VoiceConnector(id) => {
                    let n = r.number(E164::parse_lenient(&called).unwrap()).unwrap();
                    prop_assert!(n.is_routable());
                    prop_assert!(!r.voice_connector(id.as_str()).unwrap().origination.disabled);
                }
                OriginationTarget::Group(_) | OriginationTarget::SipRule(_) | OriginationTarget::NotFound => {}
            }
        }
    }
}
