//! The engine over a simulated network: a PBX, trunkd's engine and calls,
//! and a carrier (see `sim.rs`). Each test is a scenario from the SPEC or
//! a defect that once hid in untested glue.

use std::time::Duration;

use super::sim::{carrier_invite, invite, Sim, SDP};

const CAP_2: &str = "max_calls_per_source = 2";
const NO_CAP: &str = "";

/// `name{labels…,voice_connector_id="vc",…} value` summed over the lines of
/// `family` that name `vc` and `direction` (if given).
fn metric(sim: &Sim, family: &str, vc: &str, direction: Option<&str>) -> u64 {
    sim.shared
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter(|l| l.contains(&format!("voice_connector_id=\"{vc}\"")))
        .filter(|l| direction.is_none_or(|d| l.contains(&format!("direction=\"{d}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn finals(sim: &Sim) -> Vec<u16> {
    sim.pbx.finals.iter().map(|r| r.status.as_u16()).collect()
}

fn call(sim: &mut Sim, id: &str, to: &str, from: &str) {
    sim.pbx_sends(invite(id, to, from, "", SDP, "application/sdp"));
    sim.run_for(Duration::from_secs(1));
}

/// The defect: with `max_calls_per_source = 2`, two 407 challenges left
/// the source at its cap and every later INVITE got 503 until restart.
#[test]
fn challenges_do_not_use_up_the_per_source_call_cap() {
    let mut sim = Sim::new(CAP_2, "");
    // Two INVITEs without credentials: challenged, nothing else.
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    call(&mut sim, "c2", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 407]);
    assert_eq!(sim.engine.sources_tracked(), 0, "no call, no count");
    // Now the PBX answers challenges: the call goes through.
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    call(&mut sim, "c3", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 407, 407, 200]);
    assert_eq!(sim.engine.calls(), 1);
    assert_eq!(sim.engine.sources_tracked(), 1, "the call in progress");
    // A second and a third concurrent call: the third is over the cap.
    call(&mut sim, "c4", "+12065551234", "+12065550100");
    call(&mut sim, "c5", "+12065551234", "+12065550100");
    // The caps come before admission: no challenge for a refused call.
    assert_eq!(&finals(&sim)[4..], [407, 200, 503]);
    assert_eq!(sim.engine.calls(), 2);
}

#[test]
fn with_the_per_source_cap_off_no_source_is_remembered() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    for i in 0..5 {
        call(&mut sim, &format!("c{i}"), "+12065551234", "+12065550100");
    }
    assert_eq!(sim.engine.calls(), 5);
    assert_eq!(sim.engine.sources_tracked(), 0);
}

#[test]
fn a_challenge_is_neither_an_attempt_nor_a_failure() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 200]);
    let attempts = metric(
        &sim,
        "voice_connector_call_attempts_total",
        "vc-east",
        Some("outbound"),
    );
    assert_eq!(attempts, 1, "one call, one attempt");
    assert_eq!(
        metric(&sim, "voice_connector_call_failures_total", "vc-east", None),
        0
    );
}

/// `CallFailures` counts calls that admission refused, and they have a
/// CDR (SPEC §5.1); a wrong password is also counted for the source.
#[test]
fn an_admission_refusal_is_a_failure_with_a_record() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "wrong"));
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 403]);
    assert_eq!(
        metric(
            &sim,
            "voice_connector_call_attempts_total",
            "vc-east",
            Some("outbound")
        ),
        1
    );
    assert_eq!(
        metric(
            &sim,
            "voice_connector_call_failures_total",
            "vc-east",
            Some("outbound")
        ),
        1
    );
    assert_eq!(sim.refused_records, [("vc-east".to_owned(), 403)]);
    assert_eq!(sim.auth_failures.len(), 1);
    // A destination that is not E.164: refused 404, one more failure.
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    call(&mut sim, "c2", "abc", "+12065550100");
    assert_eq!(&finals(&sim)[2..], [407, 404]);
    assert_eq!(
        metric(
            &sim,
            "voice_connector_call_failures_total",
            "vc-east",
            Some("outbound")
        ),
        2
    );
    assert_eq!(sim.engine.calls(), 0);
}

#[test]
fn no_media_ports_is_503_and_the_call_is_forgotten() {
    let mut sim = Sim::new(CAP_2, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    sim.no_media = true;
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 503]);
    let resp = &sim.pbx.finals[1];
    assert_eq!(resp.reason.as_ref(), b"Media Ports Exhausted");
    assert_eq!(
        resp.headers.get("Retry-After").map(|v| v.as_ref()),
        Some(&b"5"[..])
    );
    assert_eq!((sim.engine.calls(), sim.engine.sources_tracked()), (0, 0));
    assert!(sim.started.is_empty());
}

#[test]
fn a_call_ends_and_releases_its_counts() {
    let mut sim = Sim::new(CAP_2, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    sim.carrier.answer = 486;
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 486]);
    sim.run_for(Duration::from_secs(40));
    assert_eq!((sim.engine.calls(), sim.engine.sources_tracked()), (0, 0));
}

/// SPEC §1: a number's `calling_name` is what its calls show.
#[test]
fn the_callers_calling_name_is_the_b_legs_display_name() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    let inv = &sim.carrier.requests[0];
    let from = String::from_utf8_lossy(inv.headers.get("From").map_or(&[][..], |v| v)).into_owned();
    assert!(
        from.starts_with("\"North Campus\" <sip:+12065550100@"),
        "{from}"
    );
}

/// A 911 from an extension: the carrier gets the routing number and the
/// extension as it was sent, never `+1001`.
#[test]
fn an_emergency_call_from_an_extension_keeps_its_user() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    call(&mut sim, "c1", "911", "1001");
    assert_eq!(finals(&sim), [407, 200]);
    let inv = &sim.carrier.requests[0];
    let uri = String::from_utf8_lossy(&inv.uri.to_bytes()).into_owned();
    assert!(uri.starts_with("sip:+12065550199@"), "{uri}");
    let from = String::from_utf8_lossy(inv.headers.get("From").map_or(&[][..], |v| v)).into_owned();
    assert!(from.contains("<sip:1001@"), "{from}");
    assert!(!from.contains("+1001"), "{from}");
}

/// STIR/SHAKEN: an `Identity` header crosses unchanged.
#[test]
fn an_identity_header_passes_through() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    let identity = "eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln;info=<https://cert.example/x.pem>;alg=ES256;ppt=shaken";
    sim.pbx_sends(invite(
        "c1",
        "+12065551234",
        "+12065550100",
        &format!("Identity: {identity}\r\n"),
        SDP,
        "application/sdp",
    ));
    sim.run_for(Duration::from_secs(1));
    let inv = &sim.carrier.requests[0];
    assert_eq!(
        inv.headers.get("Identity").map(|v| v.as_ref()),
        Some(identity.as_bytes())
    );
}

/// Every INVITE gets a final answer, whatever admission says.
#[test]
fn every_invite_gets_a_final_response() {
    let mut sim = Sim::new(CAP_2, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    let cases = ["+12065551234", "abc", "911", "+442071838750", "933"];
    for (i, to) in cases.iter().enumerate() {
        call(&mut sim, &format!("c{i}"), to, "+12065550100");
    }
    sim.run_for(Duration::from_secs(40));
    let finals: Vec<u16> = finals(&sim).into_iter().filter(|c| *c != 407).collect();
    assert_eq!(finals.len(), cases.len(), "{finals:?}");
}

/// SPEC §2.1 step 3: a source outside the VC's CIDRs is refused 403
/// before any challenge, and it is a failed call of that VC.
#[test]
fn a_source_outside_the_cidrs_is_refused_without_a_challenge() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.addr = super::sim::addr("192.0.2.99:5060");
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [403]);
    assert_eq!(
        metric(
            &sim,
            "voice_connector_call_failures_total",
            "vc-east",
            Some("outbound")
        ),
        1
    );
    assert_eq!(sim.refused_records, [("vc-east".to_owned(), 403)]);
}

/// SPEC §2.1 step 6: over the VC's calls per second, 503 with Retry-After,
/// counted as a throttle; no call is started and nothing stays counted.
#[test]
fn over_the_cps_limit_is_503_with_retry_after() {
    let slow = r#"
[[voice_connectors]]
id = "vc-slow"
[voice_connectors.termination]
cidr_allowed_list = ["198.51.100.0/24"]
cps_limit = 1
carriers = ["carrier-a"]

[[numbers]]
e164_phone_number = "+12065550111"
product_type = "VoiceConnector"
voice_connector_id = "vc-slow"
"#;
    let mut sim = Sim::new(CAP_2, slow);
    sim.pbx_sends(invite(
        "c1",
        "+12065551234@vc-slow.trunkd.local",
        "+12065550111",
        "",
        SDP,
        "application/sdp",
    ));
    sim.pbx_sends(invite(
        "c2",
        "+12065551234@vc-slow.trunkd.local",
        "+12065550111",
        "",
        SDP,
        "application/sdp",
    ));
    sim.run_for(Duration::from_millis(200));
    // The refusal is immediate; the first call's answer crosses the carrier.
    assert_eq!(finals(&sim), [503, 200]);
    let throttled = &sim.pbx.finals[0];
    assert_eq!(
        throttled.headers.get("Call-ID").map(|v| v.as_ref()),
        Some(&b"c2"[..])
    );
    assert!(throttled.headers.get("Retry-After").is_some());
    assert_eq!(
        metric(&sim, "voice_connector_throttles_total", "vc-slow", None),
        1
    );
    assert_eq!((sim.engine.calls(), sim.engine.sources_tracked()), (1, 1));
}

/// Over a lossy UDP path (10 % loss, 5 % duplication, seeded) every INVITE
/// still gets its answer through retransmissions, the calls are hung up by
/// a shutdown, and every count returns to zero.
#[test]
fn calls_survive_a_lossy_network_and_leave_nothing_behind() {
    let mut sim = Sim::new(CAP_2, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    sim.net.loss_per_mille = 100;
    sim.net.dup_per_mille = 50;
    for i in 0..8 {
        sim.pbx_sends(invite(
            &format!("lossy-{i}"),
            "+12065551234",
            "+12065550100",
            "",
            SDP,
            "application/sdp",
        ));
        sim.run_for(Duration::from_secs(40));
    }
    assert!(
        sim.net.lost > 0,
        "the network lost nothing: not a loss test"
    );
    // Each call answered once (duplicates and retransmissions aside).
    let mut answered: Vec<String> = sim
        .pbx
        .finals
        .iter()
        .filter(|r| r.status.as_u16() != 407)
        .map(|r| {
            let id = r.headers.get("Call-ID").map_or(&[][..], |v| v);
            format!("{} {}", String::from_utf8_lossy(id), r.status.as_u16())
        })
        .collect();
    answered.sort();
    answered.dedup();
    // The cap is two calls in progress from one source: the first two are
    // answered 200, the rest 503.
    let ok = answered.iter().filter(|a| a.ends_with(" 200")).count();
    let capped = answered.iter().filter(|a| a.ends_with(" 503")).count();
    assert_eq!((ok, capped), (2, 6), "{answered:?}");
    sim.shutdown();
    sim.run_for(Duration::from_secs(60));
    assert!(sim.idle, "the engine never reported idle");
    assert_eq!((sim.engine.calls(), sim.engine.sources_tracked()), (0, 0));
    assert!(sim.calls.is_empty());
}

/// SPEC §8: beyond `max_calls` calls in progress, 503 Too Many Calls before
/// admission, counted at the gate and not as a call of any VC.
#[test]
fn the_daemons_call_cap_refuses_at_the_gate() {
    let mut sim = Sim::new("max_calls = 1", "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    call(&mut sim, "c1", "+12065551234", "+12065550100");
    call(&mut sim, "c2", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 200, 503]);
    assert_eq!(sim.pbx.finals[2].reason.as_ref(), b"Too Many Calls");
    assert_eq!(
        metric(&sim, "voice_connector_call_attempts_total", "vc-east", None),
        1
    );
    let refused = sim.shared.metrics.encode();
    assert!(
        refused.contains("sip_requests_refused_total{reason=\"call_cap\"} 1"),
        "{refused}"
    );
}

fn carrier_finals(sim: &Sim) -> Vec<u16> {
    sim.carrier
        .finals
        .iter()
        .map(|r| r.status.as_u16())
        .collect()
}

/// SPEC §2.2: a carrier's call to a VC's number reaches the VC's route.
#[test]
fn origination_reaches_the_numbers_voice_connector() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.carrier_sends(carrier_invite("o1", "+12065550100"));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(carrier_finals(&sim), [200]);
    assert_eq!(sim.pbx.requests.len(), 1, "the PBX got the INVITE");
    assert_eq!(
        metric(
            &sim,
            "voice_connector_call_attempts_total",
            "vc-east",
            Some("inbound")
        ),
        1
    );
}

/// A number on a SIP rule with its SIP media application.
const SIP_RULE: &str = r#"
[[numbers]]
e164_phone_number = "+12065550150"
product_type = "SipMediaApplicationDialIn"

[[sip_media_applications]]
id = "sma-ivr"
endpoints = [ { url = "http://127.0.0.1:8080/sma", priority = 1 } ]

[[sip_rules]]
id = "rule-1"
trigger_type = "ToPhoneNumber"
trigger_value = "+12065550150"
target_applications = [ { sip_media_application_id = "sma-ivr", priority = 1 } ]
"#;

/// SPEC §6: with an application driver, a carrier's call to a number on
/// a SIP rule is answered by trunkd itself (no PBX, no carrier leg), with
/// its `sendrecv` answer; the driver's Hangup is trunkd's BYE.
#[test]
fn an_application_call_is_answered_by_trunkd_and_its_hangup_is_a_bye() {
    use crate::application::AppAction;
    let mut sim = Sim::new(NO_CAP, SIP_RULE);
    sim.enable_applications(vec![
        (Duration::from_millis(100), AppAction::Answer),
        (
            Duration::from_secs(5),
            AppAction::Hangup {
                sip_response_code: 480,
            },
        ),
    ]);
    sim.carrier_sends(carrier_invite("app1", "+12065550150"));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(carrier_finals(&sim), [200]);
    assert_eq!(
        sim.kinds,
        [super::invite::CallKind::Application {
            sma_id: "sma-ivr".parse().unwrap(),
            rule_id: "rule-1".parse().unwrap(),
        }]
    );
    let ok = &sim.carrier.finals[0];
    assert_eq!(
        String::from_utf8_lossy(&ok.body),
        "v=0\r\no=trunkd 2 1 IN IP4 127.0.0.1\r\ns=trunkd\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 42000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    assert!(sim.pbx.requests.is_empty(), "no PBX involved");
    assert_eq!(sim.engine.calls(), 1);
    // Nothing but the ACK'd answer until the driver hangs up.
    assert!(sim.carrier.requests.is_empty());
    sim.run_for(Duration::from_secs(5));
    let methods: Vec<_> = sim
        .carrier
        .requests
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, [trunkd_sip::Method::Bye]);
    assert_eq!(
        sim.carrier.requests[0]
            .headers
            .get("Call-ID")
            .map(|v| &v[..]),
        Some(&b"app1"[..])
    );
    assert_eq!(sim.engine.calls(), 0);
}

/// Before its answer, an application's Hangup is the final status it asks.
#[test]
fn an_application_hangup_before_the_answer_is_its_status() {
    use crate::application::AppAction;
    let mut sim = Sim::new(NO_CAP, SIP_RULE);
    sim.enable_applications(vec![(
        Duration::from_millis(50),
        AppAction::Hangup {
            sip_response_code: 486,
        },
    )]);
    sim.carrier_sends(carrier_invite("app2", "+12065550150"));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(carrier_finals(&sim), [486]);
    assert_eq!(sim.engine.calls(), 0);
}

/// SPEC §2.2: an unknown number is 404, a failed inbound call; a number
/// on a SIP rule is refused while no application driver is registered
/// (the daemon today): 480.
#[test]
fn origination_refusals_are_answered_and_counted() {
    let rule = r#"
[[numbers]]
e164_phone_number = "+12065550150"
product_type = "SipMediaApplicationDialIn"

[[sip_media_applications]]
id = "sma-ivr"
endpoints = [ { url = "http://127.0.0.1:8080/sma", priority = 1 } ]

[[sip_rules]]
id = "rule-1"
trigger_type = "ToPhoneNumber"
trigger_value = "+12065550150"
target_applications = [ { sip_media_application_id = "sma-ivr", priority = 1 } ]
"#;
    let mut sim = Sim::new(NO_CAP, rule);
    sim.carrier_sends(carrier_invite("o1", "+12065559876"));
    sim.carrier_sends(carrier_invite("o2", "+12065550150"));
    sim.run_for(Duration::from_secs(1));
    let mut got = carrier_finals(&sim);
    got.sort();
    assert_eq!(got, [404, 480]);
    assert!(sim.pbx.requests.is_empty());
    assert_eq!(sim.engine.calls(), 0);
}

// ----- recording sessions (SPEC §2.6) ---------------------------------------

/// A SIPREC offer: two audio streams the SRC sends, labelled 1 and 2.
const SIPREC_SDP: &str =
    "v=0\r\no=src 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n\
m=audio 30010 RTP/AVP 0\r\na=label:2\r\na=sendonly\r\n";

/// The multipart/mixed body of a SIPREC INVITE (RFC 7866 §8.1.1).
fn siprec_body() -> String {
    format!(
        "--sep\r\nContent-Type: application/sdp\r\n\r\n{SIPREC_SDP}\r\n--sep\r\n\
         Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n\
         {SIPREC_METADATA}\r\n\
         --sep--\r\n"
    )
}

/// RFC 7865 metadata for [`SIPREC_SDP`]: Alice sends stream 1, Bob 2.
const SIPREC_METADATA: &str = "<?xml version=\"1.0\"?>\
<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"><datamode>complete</datamode>\
<participant participant_id=\"pa\"><nameID aor=\"sip:+12065550100@pbx.example\"/></participant>\
<participant participant_id=\"pb\"><nameID aor=\"sip:+12065551234@carrier.example\"/></participant>\
<stream stream_id=\"s1\"><label>1</label></stream><stream stream_id=\"s2\"><label>2</label></stream>\
<participantstreamassoc participant_id=\"pa\"><send>s1</send></participantstreamassoc>\
<participantstreamassoc participant_id=\"pb\"><send>s2</send></participantstreamassoc></recording>";

/// A SIPREC body with `metadata` as its metadata part.
fn siprec_body_with(metadata: &str) -> String {
    siprec_body().replace(SIPREC_METADATA, metadata)
}

/// trunkd's answer to [`SIPREC_SDP`] in the simulation (ports from the
/// sim's fixed answerer).
const SIPREC_ANSWER: &str =
    "v=0\r\no=trunkd 1 1 IN IP4 127.0.0.1\r\ns=trunkd\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:1\r\na=recvonly\r\n\
m=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:2\r\na=recvonly\r\n";

/// A SIPREC INVITE: the Request-URI user is no number and no From number
/// is ours, so a bridge would be refused (404 not E.164, 403 caller ID);
/// a recording session is answered by trunkd itself and reaches no carrier.
#[test]
fn a_siprec_invite_is_answered_by_trunkd_and_reaches_no_carrier() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    let inv = invite(
        "rec1",
        "srs",
        "src",
        "Require: siprec\r\n",
        &siprec_body(),
        "multipart/mixed;boundary=sep",
    );
    sim.pbx_sends(inv.clone());
    sim.run_for(Duration::from_secs(1));
    assert_eq!(finals(&sim), [407, 200]);
    let ok = &sim.pbx.finals[1];
    assert_eq!(ok.body, SIPREC_ANSWER.as_bytes());
    assert_eq!(
        ok.headers.get("Content-Type").map(|v| v.as_ref()),
        Some(&b"application/sdp"[..])
    );
    let contact = String::from_utf8_lossy(ok.headers.get("Contact").map_or(&[][..], |v| v));
    assert_eq!(contact, "<sip:trunkd@127.0.0.1:5060>;+sip.srs");
    assert!(sim.carrier.requests.is_empty(), "nothing reaches a carrier");
    assert_eq!(sim.engine.calls(), 1);
    assert_eq!(
        metric(
            &sim,
            "voice_connector_call_attempts_total",
            "vc-east",
            Some("outbound")
        ),
        1
    );
    // The SRC hangs up: 200, and the session is over.
    sim.pbx_sends_in_dialog(super::sim::bye_for(&inv, ok));
    sim.run_for(Duration::from_secs(1));
    let bye_ok = sim.pbx.all_finals.last().map(|r| r.status.as_u16());
    assert_eq!(bye_ok, Some(200));
    assert_eq!(sim.engine.calls(), 0);
    assert!(matches!(
        sim.call_events.last(),
        Some(trunkd_b2bua::CallEvent::Ended(e))
            if e.outcome == trunkd_core::cdr::CallOutcome::Answered
    ));
    assert!(sim.carrier.requests.is_empty());
}

/// `X-Voice-Connector-Record-Only: true`, as a header or as a Request-URI
/// parameter, makes a plain SDP INVITE a recording session too.
#[test]
fn the_record_only_header_or_uri_parameter_makes_a_recording_session() {
    for (i, (user, header)) in [
        (
            "anything@vc-east.trunkd.local",
            "X-Voice-Connector-Record-Only: true\r\n",
        ),
        (
            "anything@vc-east.trunkd.local;X-Voice-Connector-Record-Only=TRUE",
            "",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut sim = Sim::new(NO_CAP, "");
        sim.pbx.credentials = Some(("pbx1", "s3cret"));
        sim.pbx_sends(invite(
            &format!("ro{i}"),
            user,
            "src",
            header,
            SIPREC_SDP,
            "application/sdp",
        ));
        sim.run_for(Duration::from_secs(1));
        assert_eq!(finals(&sim), [407, 200], "{user} {header}");
        assert_eq!(sim.pbx.finals[1].body, SIPREC_ANSWER.as_bytes());
        assert!(sim.carrier.requests.is_empty());
    }
    // `false` is an ordinary call: refused here, its user is no number.
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    sim.pbx_sends(invite(
        "ro-no",
        "anything",
        "+12065550100",
        "X-Voice-Connector-Record-Only: false\r\n",
        SIPREC_SDP,
        "application/sdp",
    ));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(finals(&sim), [407, 404]);
}

/// SPEC §2.6 keeps who may send: a SIPREC INVITE from outside the VC's
/// CIDRs is refused 403 before any challenge, like any termination.
#[test]
fn a_siprec_invite_from_outside_the_cidrs_is_refused_403() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.addr = super::sim::addr("192.0.2.99:5060");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    sim.pbx_sends(invite(
        "rec-out",
        "srs",
        "src",
        "Require: siprec\r\n",
        &siprec_body(),
        "multipart/mixed;boundary=sep",
    ));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(finals(&sim), [403]);
    assert_eq!(sim.refused_records, [("vc-east".to_owned(), 403)]);
    assert!(sim.started.is_empty());
    assert!(sim.carrier.requests.is_empty());
}

/// RFC 7866 §6.1.1: the SRC describes the recorded call. A metadata part
/// that is not XML, describes nobody, or names a stream no m-line carries
/// is refused 400 with a Warning that says which, after authentication
/// and before anything is started: no call, a refused record of the VC,
/// counted as a refused SIPREC session.
#[test]
fn a_siprec_invite_with_malformed_metadata_is_refused_400_with_the_reason() {
    let label3 = SIPREC_METADATA.replace("<label>2</label>", "<label>3</label>");
    let cases = [
        ("not xml", "399 trunkd \"metadata is not XML: unknown token at 1:1\""),
        (
            "<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"><stream stream_id=\"s\"><label>1</label></stream></recording>",
            "399 trunkd \"metadata has no participant\"",
        ),
        (
            label3.as_str(),
            "399 trunkd \"metadata stream label \\\"3\\\" is on no SDP m-line\"",
        ),
    ];
    for (i, (metadata, warning)) in cases.into_iter().enumerate() {
        let mut sim = Sim::new(NO_CAP, "");
        sim.pbx.credentials = Some(("pbx1", "s3cret"));
        sim.pbx_sends(invite(
            &format!("bad{i}"),
            "srs",
            "src",
            "Require: siprec\r\n",
            &siprec_body_with(metadata),
            "multipart/mixed;boundary=sep",
        ));
        sim.run_for(Duration::from_secs(1));
        assert_eq!(finals(&sim), [407, 400], "{metadata}");
        let refusal = &sim.pbx.finals[1];
        assert_eq!(&refusal.reason[..], &b"Invalid SIPREC Metadata"[..]);
        assert_eq!(
            refusal
                .headers
                .get("Warning")
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            Some(warning.to_owned())
        );
        assert!(sim.started.is_empty(), "nothing started");
        assert_eq!(sim.engine.calls(), 0);
        assert_eq!(sim.refused_records, [("vc-east".to_owned(), 400)]);
        assert!(sim.carrier.requests.is_empty());
        let encoded = sim.shared.metrics.encode();
        assert!(
            encoded.contains("siprec_sessions_total{outcome=\"refused_metadata\"} 1"),
            "{encoded}"
        );
    }
}

/// An SRC that dials the SRS's address (no Request-URI user): the CDR's
/// numbers are the recorded call's, from the metadata's first two
/// participants. With a user, the From and the user are kept.
#[test]
fn a_siprec_invite_without_a_request_uri_user_takes_its_numbers_from_the_metadata() {
    let mut sim = Sim::new(NO_CAP, "");
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    let inv = invite(
        "nouser",
        "srs",
        "src",
        "Require: siprec\r\n",
        &siprec_body(),
        "multipart/mixed;boundary=sep",
    );
    let text = String::from_utf8_lossy(&inv.to_bytes()).replace("INVITE sip:srs@", "INVITE sip:");
    let inv = match trunkd_sip::SipMessage::parse(bytes::Bytes::from(text)) {
        Ok(trunkd_sip::SipMessage::Request(r)) => r,
        other => panic!("{other:?}"),
    };
    sim.pbx_sends(inv);
    sim.pbx_sends(invite(
        "user",
        "srs",
        "src",
        "Require: siprec\r\n",
        &siprec_body(),
        "multipart/mixed;boundary=sep",
    ));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(finals(&sim), [407, 407, 200, 200]);
    let mut numbers = sim.numbers.clone();
    numbers.sort();
    assert_eq!(
        numbers,
        [
            ("+12065550100".to_owned(), "+12065551234".to_owned()),
            ("src".to_owned(), "srs".to_owned())
        ]
    );
}

/// The first line of each logged message and its direction.
fn logged(sim: &Sim) -> Vec<String> {
    sim.sip_logs
        .iter()
        .map(|l| {
            let text = String::from_utf8_lossy(&l.bytes);
            let first = text.lines().next().unwrap_or("").to_owned();
            let dir = match l.direction {
                super::machine::SipDirection::In => "in",
                super::machine::SipDirection::Out => "out",
            };
            format!("{dir} {}:{} {first}", l.peer.addr.ip(), l.peer.addr.port())
        })
        .collect()
}

/// SPEC §5.3: with `enable_sip_logs` on, every message of the call on
/// both legs is logged with the VC and the call's transaction id; the
/// challenge before the call is not (no call exists yet).
/// The PBX places one authenticated call, the carrier answers, and the
/// PBX hangs up.
fn authenticated_call_then_bye(sim: &mut Sim) {
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    let inv = invite(
        "c1",
        "+12065551234",
        "+12065550100",
        "",
        SDP,
        "application/sdp",
    );
    sim.pbx_sends(inv.clone());
    sim.run_for(Duration::from_secs(1));
    assert_eq!(finals(sim), [407, 200]);
    let ok = sim.pbx.finals[1].clone();
    sim.pbx_sends_in_dialog(super::sim::bye_for(&inv, &ok));
    sim.run_for(Duration::from_secs(1));
}

#[test]
fn a_call_through_a_vc_with_sip_logs_logs_every_message_of_both_legs() {
    let mut sim = Sim::new(
        NO_CAP,
        "[voice_connectors.logging]\nenable_sip_logs = true\n",
    );
    authenticated_call_then_bye(&mut sim);
    let pbx = "198.51.100.10:5060";
    let carrier = "203.0.113.20:5060";
    let want: Vec<String> = [
        format!("in {pbx} INVITE sip:+12065551234@vc-east.trunkd.local SIP/2.0"),
        format!("out {pbx} SIP/2.0 100 Trying"),
        format!("out {carrier} INVITE sip:+12065551234@203.0.113.20:5060 SIP/2.0"),
        format!("in {carrier} SIP/2.0 100 Trying"),
        format!("in {carrier} SIP/2.0 200 Sim"),
        format!("out {pbx} SIP/2.0 200 Sim"),
        format!("in {pbx} ACK sip:+12065551234@vc-east.trunkd.local SIP/2.0"),
        format!("out {carrier} ACK sip:c@203.0.113.20:5060 SIP/2.0"),
        format!("in {pbx} BYE sip:+12065551234@vc-east.trunkd.local SIP/2.0"),
        format!("out {pbx} SIP/2.0 200 OK"),
        format!("out {carrier} BYE sip:c@203.0.113.20:5060 SIP/2.0"),
        // After the call's actor is done: still logged (linger).
        format!("in {carrier} SIP/2.0 200 Sim"),
    ]
    .to_vec();
    assert_eq!(logged(&sim), want);
    // The authenticated INVITE as received, credentials included (the
    // writer redacts).
    let first = String::from_utf8_lossy(&sim.sip_logs[0].bytes).into_owned();
    assert!(first.contains("Proxy-Authorization: Digest "), "{first}");
    let tid = sim.sip_logs[0].transaction_id;
    assert!(sim
        .sip_logs
        .iter()
        .all(|l| l.transaction_id == tid && l.vc.as_str() == "vc-east"));
}

#[test]
fn a_call_through_a_vc_without_sip_logs_logs_nothing() {
    let mut sim = Sim::new(NO_CAP, "");
    authenticated_call_then_bye(&mut sim);
    assert_eq!(
        sim.pbx.all_finals.last().map(|r| r.status.as_u16()),
        Some(200)
    );
    assert!(sim.sip_logs.is_empty());
}

const EVENT_TARGETS: &str = r#"
[[event_targets]]
id = "ops"
type = "file"
path = "ops.jsonl"

[[event_targets]]
id = "all"
type = "file"
path = "all.jsonl"

[events]
targets = ["all"]

[[voice_connectors]]
id = "vc-west"
[voice_connectors.origination]
routes = [ { host = "198.51.100.10", port = 5060 } ]
[voice_connectors.streaming]
notification_targets = ["ops"]
"#;

#[test]
fn a_route_going_down_then_up_is_one_event_each_to_the_targets_of_its_vcs() {
    use super::machine::EngineInput;
    use trunkd_core::events::envelope::ROUTE_STATE_CHANGE;
    let mut sim = Sim::new(NO_CAP, EVENT_TARGETS);
    let config = sim.shared.config();
    let route = config
        .resources
        .voice_connector("vc-west")
        .unwrap()
        .origination
        .routes[0]
        .clone();
    let carrier = config.resources.carriers()[0].hosts[0].clone();
    let (now, wall) = (sim.now, std::time::SystemTime::now());
    // Up (assumed), up, down, down, up, up: two changes.
    for ok in [true, false, false, true, true] {
        sim.engine.handle(
            now,
            wall,
            EngineInput::HopOutcome {
                route: route.clone(),
                ok,
            },
        );
    }
    sim.engine.handle(
        now,
        wall,
        EngineInput::HopOutcome {
            route: carrier,
            ok: false,
        },
    );
    let detail = |state: &str| {
        serde_json::json!({
            "route": "198.51.100.10:5060/UDP", "host": "198.51.100.10", "port": 5060,
            "protocol": "UDP", "state": state, "source": "call",
            "cause": if state == "UP" { "a call's hop answered" } else { "a call's hop failed" },
            "voiceConnectorIds": ["vc-east", "vc-west"], "carrierIds": [],
        })
    };
    let event = |targets: &[&str], detail: serde_json::Value| {
        (
            targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "daemon".to_owned(),
            ROUTE_STATE_CHANGE.to_owned(),
            detail,
        )
    };
    assert_eq!(
        sim.shared.events.pending(),
        [
            // vc-east has no notification_targets: only vc-west's.
            event(&["ops"], detail("DOWN")),
            event(&["ops"], detail("UP")),
            // A carrier's host: the daemon-wide targets.
            event(
                &["all"],
                serde_json::json!({
                    "route": "203.0.113.20:5060/UDP", "host": "203.0.113.20", "port": 5060,
                    "protocol": "UDP", "state": "DOWN", "source": "call",
                    "cause": "a call's hop failed",
                    "voiceConnectorIds": [], "carrierIds": ["carrier-a"],
                })
            ),
        ]
    );
}

const PROBING: &str = r#"
[probing]
interval_seconds = 5
timeout_ms = 1000
failure_threshold = 2
success_threshold = 1

[[event_targets]]
id = "all"
type = "file"
path = "all.jsonl"

[[voice_connectors]]
id = "vc-two"
[voice_connectors.origination]
routes = [ { host = "198.51.100.99", port = 5060, priority = 1 },
           { host = "198.51.100.10", port = 5060, priority = 2 } ]
[voice_connectors.streaming]
notification_targets = ["all"]

[[numbers]]
e164_phone_number = "+12065550111"
product_type = "VoiceConnector"
voice_connector_id = "vc-two"
"#;

fn probe_up(sim: &Sim, route: &str) -> Option<i64> {
    sim.shared
        .metrics
        .route_probe_up
        .get(&crate::metrics::RouteLabels {
            route: route.into(),
        })
        .map(|g| g.get())
}

/// OPTIONS probing (SPEC §3.2): a route that answers no OPTIONS goes down
/// after `failure_threshold` probes and calls then go straight to the
/// next route, with no post-dial delay; when every route of a call is
/// down they are still tried (the last resort); a route that answers
/// again comes back up after `success_threshold` replies.
#[test]
fn a_route_probed_down_is_skipped_and_comes_back_when_it_answers() {
    let mut sim = Sim::new(NO_CAP, PROBING);
    sim.carrier.options_answer = None;
    // Probes at once (spread over the first interval), then every 5 s
    // after the last ended: two timeouts of 1 s take 7 s at most.
    sim.run_for(Duration::from_secs(8));
    assert_eq!(
        probe_up(&sim, "198.51.100.99:5060/UDP"),
        Some(0),
        "no answer: down"
    );
    assert_eq!(probe_up(&sim, "203.0.113.20:5060/UDP"), Some(0));
    assert_eq!(
        probe_up(&sim, "198.51.100.10:5060/UDP"),
        Some(1),
        "the PBX answers 200"
    );
    let options: Vec<_> = sim
        .pbx
        .requests
        .iter()
        .filter(|r| r.method == trunkd_sip::Method::Options)
        .collect();
    assert!(options.len() >= 2, "the PBX is probed every interval");
    let o = options[0];
    assert_eq!(
        o.headers.get("Max-Forwards").map(|v| &v[..]),
        Some(&b"2"[..])
    );
    assert_eq!(
        String::from_utf8_lossy(&o.uri.to_bytes()),
        "sip:198.51.100.10:5060"
    );

    // Priority 1 is down: the call goes to priority 2 at once.
    let before = sim.now;
    sim.carrier_sends(carrier_invite("probe-call-1", "+12065550111"));
    sim.run_for(Duration::from_millis(500));
    assert_eq!(
        sim.carrier.finals.last().map(|r| r.status.as_u16()),
        Some(200)
    );
    assert!(sim.now - before <= Duration::from_millis(500));
    assert!(
        !sim.pbx
            .requests
            .iter()
            .any(|r| r.method == trunkd_sip::Method::Invite
                && String::from_utf8_lossy(&r.uri.to_bytes()).contains("198.51.100.99")),
        "nothing was sent to the route that is down"
    );

    // The carrier's only host is down too, yet a PBX call still tries it.
    let events = sim.shared.events.pending();
    let downs: Vec<_> = events
        .iter()
        .filter(|e| e.3["source"] == "probe" && e.3["state"] == "DOWN")
        .map(|e| e.3["route"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        downs,
        ["203.0.113.20:5060/UDP", "198.51.100.99:5060/UDP"],
        "carriers first, then VCs, as configured"
    );
    assert!(events
        .iter()
        .all(|e| e.3["source"] != "probe" || e.3["cause"] == "408 timeout"));
    sim.pbx.credentials = Some(("pbx1", "s3cret"));
    call(&mut sim, "probe-call-2", "+12065551234", "+12065550100");
    assert_eq!(finals(&sim), [407, 200], "every route down: tried anyway");

    // The carrier answers OPTIONS again: up at its next probe.
    sim.carrier.options_answer = Some(404);
    sim.run_for(Duration::from_secs(6));
    assert_eq!(
        probe_up(&sim, "203.0.113.20:5060/UDP"),
        Some(1),
        "404 is accepted"
    );
    let ups: Vec<_> = sim
        .shared
        .events
        .pending()
        .iter()
        .filter(|e| e.3["source"] == "probe" && e.3["state"] == "UP")
        .map(|e| {
            (
                e.3["route"].as_str().unwrap_or_default().to_owned(),
                e.3["cause"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ups,
        [("203.0.113.20:5060/UDP".to_owned(), serde_json::json!("404"))]
    );
}

/// A reload that turns probing off forgets every probe state: routing
/// uses every route again and `/metrics` shows no probed route.
#[test]
fn turning_probing_off_forgets_every_state() {
    let mut sim = Sim::new(NO_CAP, PROBING);
    sim.carrier.options_answer = None;
    sim.run_for(Duration::from_secs(8));
    assert_eq!(probe_up(&sim, "203.0.113.20:5060/UDP"), Some(0));
    let dir = sim.shared.config().settings.daemon.state_dir.clone();
    let base = dir.parent().unwrap_or(&dir).to_path_buf();
    let off = super::sim::config(
        &base,
        NO_CAP,
        &PROBING.replace("interval_seconds = 5", "interval_seconds = 0"),
    );
    sim.shared.store_config(off);
    sim.engine.handle(
        sim.now,
        std::time::SystemTime::now(),
        super::machine::EngineInput::Reconfigured,
    );
    assert_eq!(probe_up(&sim, "203.0.113.20:5060/UDP"), None);
    let before = sim.pbx.requests.len();
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.pbx.requests.len(), before, "no more OPTIONS");
}
