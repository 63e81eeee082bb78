//! What stands in the way of deleting a resource (the managed service's
//! rules, SPEC §11): a voice connector that numbers are assigned to or
//! that a group lists, a group that numbers are assigned to, a SIP media
//! application that a rule targets, an enabled SIP rule, a number still
//! assigned. Pure: the admin API asks before it edits the file.

use crate::resources::{Assignment, Resources};
use crate::E164;

/// Why a deletion is refused: the managed service's error code and a
/// message that names what to do first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    pub code: &'static str,
    pub message: String,
}

fn blocker(code: &'static str, message: String) -> Option<Blocker> {
    Some(Blocker { code, message })
}

/// Up to three examples of `items`, for messages.
fn some(items: &[String]) -> String {
    let mut s = items.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 3 {
        s.push_str(&format!(" and {} more", items.len() - 3));
    }
    s
}

fn numbers_where(r: &Resources, f: impl Fn(&Assignment) -> bool) -> Vec<String> {
    let mut v: Vec<String> = r
        .numbers()
        .filter(|n| f(&n.assignment))
        .map(|n| n.e164_phone_number.to_string())
        .collect();
    v.sort();
    v
}

pub fn voice_connector(r: &Resources, id: &str) -> Option<Blocker> {
    let numbers = numbers_where(
        r,
        |a| matches!(a, Assignment::VoiceConnector(v) if v.as_str() == id),
    );
    if !numbers.is_empty() {
        return blocker(
            "PhoneNumberAssociationsExist",
            format!(
                "voice connector {id:?} has {} phone number(s) assigned ({}); disassociate them first",
                numbers.len(),
                some(&numbers)
            ),
        );
    }
    let groups: Vec<String> = r
        .voice_connector_groups()
        .iter()
        .filter(|g| {
            g.voice_connector_items
                .iter()
                .any(|i| i.voice_connector_id.as_str() == id)
        })
        .map(|g| g.id.to_string())
        .collect();
    if !groups.is_empty() {
        return blocker(
            "VoiceConnectorGroupAssociationsExist",
            format!(
                "voice connector {id:?} is in voice connector group(s) {}; remove it from them first",
                some(&groups)
            ),
        );
    }
    None
}

pub fn voice_connector_group(r: &Resources, id: &str) -> Option<Blocker> {
    let numbers = numbers_where(
        r,
        |a| matches!(a, Assignment::VoiceConnectorGroup(g) if g.as_str() == id),
    );
    (!numbers.is_empty())
        .then(|| Blocker {
            code: "PhoneNumberAssociationsExist",
            message: format!(
                "voice connector group {id:?} has {} phone number(s) assigned ({}); disassociate them first",
                numbers.len(),
                some(&numbers)
            ),
        })
}

pub fn sip_media_application(r: &Resources, id: &str) -> Option<Blocker> {
    let rules: Vec<String> = r
        .sip_rules()
        .iter()
        .filter(|rule| {
            rule.target_applications
                .iter()
                .any(|t| t.sip_media_application_id.as_str() == id)
        })
        .map(|rule| rule.id.to_string())
        .collect();
    (!rules.is_empty()).then(|| Blocker {
        code: "Conflict",
        message: format!(
            "SIP media application {id:?} is the target of SIP rule(s) {}; change or delete them first",
            some(&rules)
        ),
    })
}

pub fn sip_rule(r: &Resources, id: &str) -> Option<Blocker> {
    let rule = r.sip_rules().iter().find(|rule| rule.id.as_str() == id)?;
    (!rule.disabled).then(|| Blocker {
        code: "Conflict",
        message: format!("SIP rule {id:?} is enabled; disable it first (disabled = true)"),
    })
}

/// A number goes to the deletion queue only once nothing uses it.
pub fn phone_number(r: &Resources, n: E164) -> Option<Blocker> {
    let number = r.number(n)?;
    let what = match &number.assignment {
        Assignment::Unassigned => return None,
        Assignment::VoiceConnector(v) => format!("voice connector {:?}", v.as_str()),
        Assignment::VoiceConnectorGroup(g) => format!("voice connector group {:?}", g.as_str()),
        Assignment::SipRule(rule) => format!("SIP rule {:?}", rule.as_str()),
    };
    blocker(
        "PhoneNumberAssociationsExist",
        format!("{n} is assigned to {what}; disassociate it first"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use crate::resources::SipRuleTrigger;

    fn model() -> Resources {
        let numbers = vec![
            number("+12065550100", Assignment::VoiceConnector(vc_id("vc-a"))),
            number(
                "+12065550101",
                Assignment::VoiceConnectorGroup("grp".parse().unwrap()),
            ),
            number("+12065550102", Assignment::Unassigned),
        ];
        resources(
            vec![vc("vc-a"), vc("vc-b"), vc("vc-c")],
            vec![group("grp", &["vc-b"])],
            vec![],
            numbers,
            vec![
                rule(
                    "rule-on",
                    SipRuleTrigger::RequestUriHostname("a.example".into()),
                    false,
                ),
                rule(
                    "rule-off",
                    SipRuleTrigger::RequestUriHostname("b.example".into()),
                    true,
                ),
            ],
        )
    }

    #[test]
    fn every_reference_blocks_a_deletion_with_a_precise_message() {
        let r = model();
        assert_eq!(
            voice_connector(&r, "vc-a"),
            Some(Blocker {
                code: "PhoneNumberAssociationsExist",
                message: "voice connector \"vc-a\" has 1 phone number(s) assigned (+12065550100); disassociate them first".into()
            })
        );
        assert_eq!(
            voice_connector(&r, "vc-b").map(|b| b.code),
            Some("VoiceConnectorGroupAssociationsExist")
        );
        assert_eq!(voice_connector(&r, "vc-c"), None);
        assert_eq!(
            voice_connector_group(&r, "grp").map(|b| b.code),
            Some("PhoneNumberAssociationsExist")
        );
        assert_eq!(
            sip_media_application(&r, "sma-ivr").map(|b| b.message),
            Some("SIP media application \"sma-ivr\" is the target of SIP rule(s) rule-on, rule-off; change or delete them first".into())
        );
        assert_eq!(sip_media_application(&r, "sma-other"), None);
        assert_eq!(sip_rule(&r, "rule-on").map(|b| b.code), Some("Conflict"));
        assert_eq!(sip_rule(&r, "rule-off"), None);
        assert!(phone_number(&r, e164("+12065550100")).is_some());
        assert_eq!(phone_number(&r, e164("+12065550102")), None);
    }
}
