//! CallAndBridge end to end (SPEC §6, docs/sma.md): the real binary, a
//! caller on the carrier's loopback address calling a SIP media
//! application's number, the application (tests/peers/sma_app.py) asking
//! to bridge it to a PSTN number, and the callee: a small UA on the
//! carrier's address that is the carrier's only termination host, so the
//! test sees every SIP message and RTP byte on both sides.

use std::time::Duration;

use serde_json::{json, Value};

use crate::calls::{host, records, Lab, CARRIER, ROUTES};
use crate::sma::{
    admin_post, endpoint, prompt_samples, receive_audio, types, wait_gauges_zero, write_wav, App,
    Call, CALLER, NUMBER, SECRET,
};
use crate::support::*;
use crate::ua::*;

const CALLEE: &str = "+12065550100";
const CALLER_ID: &str = "+14155550100";

/// A daemon whose `sma-ivr` answers `NUMBER` through `app`; the carrier's
/// only host is the callee's UA.
fn daemon(tag: &str, app: &App, callee: &Ua) -> Daemon {
    daemon_to(tag, app, callee.sip_addr().port())
}

/// [`daemon`] with the carrier's host on `CARRIER:port`.
fn daemon_to(tag: &str, app: &App, port: u16) -> Daemon {
    let hosts = host(CARRIER, port, "");
    let lab = Lab {
        hosts: &hosts,
        ..Default::default()
    };
    daemon_lab(tag, app, &lab)
}

/// [`daemon`] on `lab`'s carriers and voice connectors.
fn daemon_lab(tag: &str, app: &App, lab: &Lab) -> Daemon {
    let ports = Ports::pick();
    let text = format!(
        r#"{base}
[[numbers]]
e164_phone_number = "{NUMBER}"
product_type = "SipMediaApplicationDialIn"

[[sip_media_applications]]
id = "sma-ivr"
endpoints = [ {ep} ]
webhook_secret = "{SECRET}"

[[sip_rules]]
id = "rule-1"
trigger_type = "ToPhoneNumber"
trigger_value = "{NUMBER}"
target_applications = [ {{ sip_media_application_id = "sma-ivr", priority = 1 }} ]
"#,
        base = lab.config(ports),
        ep = endpoint(&app.url(), 1),
    );
    Daemon::start(tag, ports, &text)
}

fn bridge_action(timeout: u32) -> Value {
    json!({"SchemaVersion": "1.0", "Actions": [
        {"Type": "CallAndBridge", "Parameters": {
            "CallTimeoutSeconds": timeout,
            "CallerIdNumber": CALLER_ID,
            "Endpoints": [{"BridgeEndpointType": "PSTN", "Uri": CALLEE}],
            "SipHeaders": {"X-Ticket": "T-1"}}}]})
}

fn hangup_a() -> Value {
    json!({"SchemaVersion": "1.0", "Actions": [
        {"Type": "Hangup", "Parameters": {"SipResponseCode": "0", "ParticipantTag": "LEG-A"}}]})
}

/// The INVITE trunkd sends the callee.
fn expect_invite(callee: &Ua) -> Msg {
    callee.recv_until(Duration::from_secs(10), |m| {
        m.first_line().starts_with("INVITE ")
    })
}

/// A request from the callee inside the dialog its 2xx to `invite` made.
fn callee_request(callee: &Ua, invite: &Msg, method: &str, cseq: u32) {
    let target = invite
        .header("Contact")
        .unwrap()
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned();
    let text = format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-callee-{method}{cseq}\r\nMax-Forwards: 70\r\n\
         From: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        me = callee.sip_addr(),
        to = invite.header("To").unwrap(),
        tag = callee.tag,
        from = invite.header("From").unwrap(),
        cid = invite.header("Call-ID").unwrap(),
    );
    callee.send(invite.from, &text);
}

/// Sends `n` RTP packets of `ssrc` from `from` to `to`, 20 ms apart.
fn send_rtp(from: &std::net::UdpSocket, to: std::net::SocketAddr, ssrc: u32, n: u16) {
    for seq in 0..n {
        from.send_to(&rtp_packet(seq, u32::from(seq) * 160, ssrc), to)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The payloads among `packets` that came from `ssrc`'s [`rtp_packet`]s,
/// checked byte for byte.
fn payloads_from(packets: &[Vec<u8>], ssrc: u32) -> usize {
    packets
        .iter()
        .filter(|p| p.len() == 172 && p[8..12] == ssrc.to_be_bytes())
        .inspect(|p| {
            let seq = u16::from_be_bytes([p[2], p[3]]);
            assert_eq!(p[12..], rtp_packet(seq, 0, ssrc)[12..], "payload altered");
        })
        .count()
}

#[test]
fn sma_call_and_bridge_connects_the_caller_to_a_carrier_both_ways() {
    let dir = temp_dir("sma-bridge-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(20)},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "HANGUP", "answer": hangup_a()},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge", &app, &callee);
    let call = Call::place(&d);

    // The callee's INVITE: the number, the caller ID, the app's header,
    // trunkd's offer in the caller's codec.
    let invite = expect_invite(&callee);
    assert_eq!(
        invite.first_line(),
        format!("INVITE sip:{CALLEE}@{} SIP/2.0", callee.sip_addr())
    );
    let from = invite.header("From").unwrap();
    assert!(
        from.starts_with(&format!("<sip:{CALLER_ID}@127.0.0.1:")),
        "{from}"
    );
    assert_eq!(invite.header("X-Ticket").as_deref(), Some("T-1"));
    assert!(
        invite.body().contains("m=audio ") && invite.body().contains("a=rtpmap:0 PCMU/8000"),
        "{}",
        invite.body()
    );
    let trunkd_b = invite.sdp_rtp();
    assert_ne!(trunkd_b, call.trunkd_rtp, "each leg has its own port");
    callee.respond(&invite, "180 Ringing", None);
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    let ack = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    assert_eq!(ack.header("CSeq").as_deref(), Some("1 ACK"));

    // ACTION_SUCCESSFUL names LEG-B.
    let r = app.wait_requests(2);
    let ev = &r[1]["event"];
    assert_eq!(ev["InvocationEventType"], "ACTION_SUCCESSFUL");
    assert_eq!(ev["ActionData"]["Type"], "CallAndBridge");
    let legs = &ev["CallDetails"]["Participants"];
    assert_eq!(legs[1]["ParticipantTag"], "LEG-B");
    assert_eq!(legs[1]["To"], CALLEE);
    assert_eq!(legs[1]["From"], CALLER_ID);
    assert_eq!(legs[1]["Direction"], "Outbound");
    assert_eq!(
        legs[1]["CallId"],
        invite.header("Call-ID").unwrap().as_str()
    );

    // Audio both ways through trunkd, bytes unchanged.
    let caller_rtp = call.ua.rtp.try_clone().unwrap();
    let to_a = call.trunkd_rtp;
    let sender = std::thread::spawn(move || send_rtp(&caller_rtp, to_a, 0xA0A0_0001, 50));
    let (at_callee, _) = receive_rtp(&callee.rtp, 30, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&at_callee, 0xA0A0_0001) >= 20,
        "the callee heard {} of the caller's packets",
        at_callee.len()
    );
    let callee_rtp = callee.rtp.try_clone().unwrap();
    let sender = std::thread::spawn(move || send_rtp(&callee_rtp, trunkd_b, 0xB0B0_0002, 50));
    let (at_caller, _) = receive_rtp(&call.ua.rtp, 30, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&at_caller, 0xB0B0_0002) >= 20,
        "the caller heard {} of the callee's packets",
        at_caller.len()
    );

    // The callee hangs up: HANGUP for LEG-B; the application hangs LEG-A up.
    callee_request(&callee, &invite, "BYE", 1);
    let ok = callee.recv_until(Duration::from_secs(5), |m| m.status().is_some());
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    call.expect_bye();
    let r = app.wait_requests(4);
    assert_eq!(
        types(&r),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP", "HANGUP"]
    );
    let legs = &r[2]["event"]["CallDetails"]["Participants"];
    assert_eq!(legs[0]["Status"], "Connected");
    assert_eq!(legs[1]["Status"], "Disconnected");
    let legs = &r[3]["event"]["CallDetails"]["Participants"];
    assert_eq!(legs[0]["Status"], "Disconnected");
    assert!(r.iter().all(|x| x["signature_ok"] == true));
    wait_gauges_zero(&d);
    let _ = CALLER;
}

#[test]
fn sma_call_and_bridge_to_a_busy_callee_fails_the_action_and_the_caller_goes_on() {
    let dir = temp_dir("sma-bridge-busy-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(20)},
            {"expect": "ACTION_FAILED", "answer": hangup_a()},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-busy", &app, &callee);
    let call = Call::place(&d);
    let invite = expect_invite(&callee);
    callee.respond(&invite, "486 Busy Here", None);
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let r = app.wait_requests(2);
    let ev = &r[1]["event"];
    assert_eq!(ev["InvocationEventType"], "ACTION_FAILED");
    assert_eq!(ev["ActionData"]["Type"], "CallAndBridge");
    assert_eq!(ev["ActionData"]["ErrorType"], "CallNotAnswered");
    assert_eq!(
        ev["ActionData"]["ErrorMessage"],
        "the callee answered 486 Busy Here"
    );
    // The caller is still up until the application hangs it up.
    call.expect_bye();
    let r = app.wait_requests(3);
    assert_eq!(types(&r), ["NEW_INBOUND_CALL", "ACTION_FAILED", "HANGUP"]);
    wait_gauges_zero(&d);
}

#[test]
fn sma_call_and_bridge_cancels_a_callee_ringing_past_call_timeout_seconds() {
    let dir = temp_dir("sma-bridge-timeout-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(1)},
            {"expect": "ACTION_FAILED", "answer": hangup_a()},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-timeout", &app, &callee);
    let call = Call::place(&d);
    let invite = expect_invite(&callee);
    callee.respond(&invite, "180 Ringing", None);
    let cancel = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("CANCEL ")
    });
    callee.respond(&cancel, "200 OK", None);
    callee.respond(&invite, "487 Request Terminated", None);
    let r = app.wait_requests(2);
    let ev = &r[1]["event"];
    assert_eq!(ev["InvocationEventType"], "ACTION_FAILED");
    assert_eq!(ev["ActionData"]["ErrorType"], "CallNotAnswered");
    call.expect_bye();
    app.wait_requests(3);
    wait_gauges_zero(&d);
}

/// CreateSipMediaApplicationCall: the admin API places a call through the
/// carrier; the application hears NEW_OUTBOUND_CALL (with its arguments),
/// RINGING and CALL_ANSWERED, then plays a prompt the callee hears sample
/// for sample, and hangs up.
#[test]
fn sma_create_call_rings_answers_plays_and_hangs_up() {
    let dir = temp_dir("sma-outbound-app");
    let callee = Ua::new(CARRIER);
    let prompt = prompt_samples(4000);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "RINGING", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "CALL_ANSWERED", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "PlayAudio", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"}}},
                {"Type": "Hangup", "Parameters": {"SipResponseCode": "0"}}]}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-outbound", &app, &callee);
    write_wav(&d.dir.join("prompt.wav"), &prompt);

    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        "{\"FromPhoneNumber\":\"+14155550100\"}",
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin_post(
        &d,
        "/sip-media-applications/nope/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 404);
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE,
                "SipHeaders": {"X-Campaign": "c7"},
                "ArgumentsMap": {"campaign": "c7"}})
        .to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let txn = created["SipMediaApplicationCall"]["TransactionId"]
        .as_str()
        .unwrap()
        .to_owned();

    let invite = expect_invite(&callee);
    assert_eq!(
        invite.first_line(),
        format!("INVITE sip:{CALLEE}@{} SIP/2.0", callee.sip_addr())
    );
    assert_eq!(invite.header("X-Campaign").as_deref(), Some("c7"));
    let from = invite.header("From").unwrap();
    assert!(from.starts_with(&format!("<sip:{CALLER_ID}@")), "{from}");
    let r = app.wait_requests(1);
    let ev = &r[0]["event"];
    assert_eq!(ev["InvocationEventType"], "NEW_OUTBOUND_CALL");
    assert_eq!(ev["CallDetails"]["TransactionId"], txn.as_str());
    assert_eq!(
        ev["ActionData"],
        json!({"Type": "CallCreateRequest", "Parameters": {"Arguments": {"campaign": "c7"}}})
    );
    let leg_a = &ev["CallDetails"]["Participants"][0];
    assert_eq!(leg_a["Direction"], "Outbound");
    assert_eq!(leg_a["CallId"], invite.header("Call-ID").unwrap().as_str());

    callee.respond(&invite, "180 Ringing", None);
    app.wait_requests(2);
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    // The prompt reaches the callee exactly, then trunkd's BYE.
    let heard = receive_audio(&callee.rtp, prompt.len());
    assert_eq!(
        heard[..prompt.len()],
        prompt[..],
        "the prompt arrived altered"
    );
    let bye = callee.recv_until(Duration::from_secs(10), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&bye, "200 OK", None);
    let r = app.wait_requests(4);
    assert_eq!(
        types(&r),
        ["NEW_OUTBOUND_CALL", "RINGING", "CALL_ANSWERED", "HANGUP"]
    );
    assert!(r.iter().all(|x| x["signature_ok"] == true));
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0]["TransactionId"], json!(txn));
    assert_eq!(cdrs[0]["Direction"], json!("Outbound"));
    assert_eq!(cdrs[0]["Status"], json!("Completed"));
    assert_eq!(cdrs[0]["SourcePhoneNumber"], json!(CALLER_ID));
    assert_eq!(cdrs[0]["DestinationPhoneNumber"], json!(CALLEE));
    wait_gauges_zero(&d);
}

/// The caller hangs up a bridged call: the callee gets BYE in the same
/// turn, the application HANGUP for LEG-B then for LEG-A, and the call has
/// one CDR.
#[test]
fn sma_call_and_bridge_caller_hangup_ends_the_bridged_leg_with_one_cdr() {
    let dir = temp_dir("sma-bridge-caller-bye-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(20)},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-caller-bye", &app, &callee);
    let mut call = Call::place(&d);
    let invite = expect_invite(&callee);
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    app.wait_requests(2);
    call.bye();
    let bye = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    assert_eq!(
        bye.header("Call-ID"),
        invite.header("Call-ID"),
        "the bridged leg is hung up"
    );
    assert_eq!(bye.header("CSeq").as_deref(), Some("2 BYE"));
    callee.respond(&bye, "200 OK", None);
    let r = app.wait_requests(3);
    let kinds = types(&r);
    assert_eq!(kinds[..2], ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL"]);
    assert!(kinds[2..].iter().all(|k| k == "HANGUP"), "{kinds:?}");
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0]["VoiceConnectorId"], json!("sma-ivr"));
    assert_eq!(cdrs[0]["Status"], json!("Completed"));
    assert_eq!(cdrs[0]["DestinationPhoneNumber"], json!(NUMBER));
    wait_gauges_zero(&d);
}

/// A placed call the callee rejects: the application hears
/// NEW_OUTBOUND_CALL then HANGUP, and the CDR says why.
#[test]
fn sma_create_call_to_a_busy_callee_ends_with_hangup_and_a_failed_cdr() {
    let dir = temp_dir("sma-outbound-busy-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-outbound-busy", &app, &callee);
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let invite = expect_invite(&callee);
    callee.respond(&invite, "486 Busy Here", None);
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let r = app.wait_requests(2);
    assert_eq!(types(&r), ["NEW_OUTBOUND_CALL", "HANGUP"]);
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0]["Direction"], json!("Outbound"));
    assert_eq!(cdrs[0]["Status"], json!("Failed"), "{}", cdrs[0]);
    wait_gauges_zero(&d);
}

/// The application's Hangup with `ParticipantTag: LEG-B` hangs up the
/// callee only: HANGUP for LEG-B, the caller still connected until the
/// application hangs LEG-A up.
#[test]
fn sma_hangup_of_leg_b_ends_only_the_bridged_leg() {
    let dir = temp_dir("sma-bridge-hangup-b-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(20)},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {"SipResponseCode": "0", "ParticipantTag": "LEG-B"}}]}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "ACTION_SUCCESSFUL", "answer": hangup_a()},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-hangup-b", &app, &callee);
    let call = Call::place(&d);
    let invite = expect_invite(&callee);
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let bye = callee.recv_until(Duration::from_secs(10), |m| {
        m.first_line().starts_with("BYE ")
    });
    assert_eq!(bye.header("Call-ID"), invite.header("Call-ID"));
    callee.respond(&bye, "200 OK", None);
    let r = app.wait_requests(3);
    let legs = &r[2]["event"]["CallDetails"]["Participants"];
    assert_eq!(r[2]["event"]["InvocationEventType"], "HANGUP");
    assert_eq!(legs[0]["Status"], "Connected");
    assert_eq!(legs[1]["Status"], "Disconnected");
    assert_eq!(r[2]["event"]["ActionData"]["Type"], "Hangup");
    // The Hangup of one leg succeeded; the application ends the call.
    call.expect_bye();
    let r = app.wait_requests(5);
    assert_eq!(
        types(&r),
        [
            "NEW_INBOUND_CALL",
            "ACTION_SUCCESSFUL",
            "HANGUP",
            "ACTION_SUCCESSFUL",
            "HANGUP"
        ]
    );
    assert_eq!(
        r[4]["event"]["CallDetails"]["Participants"][0]["Status"],
        "Disconnected"
    );
    wait_gauges_zero(&d);
}

/// CreateSipMediaApplicationCall to SIPp as the carrier's callee
/// (uas_answer.xml: answers, then waits for trunkd's BYE); the
/// application plays a short prompt and hangs up.
#[test]
fn sma_create_call_to_a_sipp_callee() {
    let dir = temp_dir("sma-outbound-sipp-app");
    let port = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, port, &["-m", "1"]);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "RINGING", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "CALL_ANSWERED", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "PlayAudio", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"}}},
                {"Type": "Hangup", "Parameters": {"SipResponseCode": "0"}}]}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon_to("sma-outbound-sipp", &app, port);
    write_wav(&d.dir.join("prompt.wav"), &prompt_samples(1600));
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let (ok, out) = uas.wait(Duration::from_secs(20));
    assert!(ok, "the SIPp callee failed:\n{out}\n{}", d.log());
    let r = app.wait_requests(4);
    assert_eq!(
        types(&r),
        ["NEW_OUTBOUND_CALL", "RINGING", "CALL_ANSWERED", "HANGUP"]
    );
    wait_gauges_zero(&d);
}

/// CallAndBridge to SIPp as the carrier's callee (uas_bye.xml: answers,
/// then hangs up after 500 ms): HANGUP for LEG-B, then the application
/// ends the caller's leg.
#[test]
fn sma_call_and_bridge_to_a_sipp_callee_that_hangs_up() {
    let dir = temp_dir("sma-bridge-sipp-app");
    let port = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_bye.xml", CARRIER, port, &["-m", "1"]);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(20)},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "HANGUP", "answer": hangup_a()},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon_to("sma-bridge-sipp", &app, port);
    let call = Call::place(&d);
    let (ok, out) = uas.wait(Duration::from_secs(20));
    assert!(ok, "the SIPp callee failed:\n{out}\n{}", d.log());
    call.expect_bye();
    let r = app.wait_requests(4);
    assert_eq!(
        types(&r),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP", "HANGUP"]
    );
    assert_eq!(
        r[2]["event"]["CallDetails"]["Participants"][1]["Status"],
        "Disconnected"
    );
    wait_gauges_zero(&d);
}

/// CallAndBridge with an `AWS` endpoint: `arn` names the voice connector
/// (or group), `uri` the user the PBX behind it is called at.
fn bridge_aws(arn: &str, uri: &str) -> Value {
    json!({"SchemaVersion": "1.0", "Actions": [
        {"Type": "CallAndBridge", "Parameters": {
            "CallTimeoutSeconds": 20,
            "CallerIdNumber": CALLER_ID,
            "Endpoints": [{"BridgeEndpointType": "AWS", "Arn": arn, "Uri": uri}]}}]})
}

/// A voice connector by ARN: the leg goes to vc-east's origination route
/// (the PBX's UA on ROUTES), not to the carrier; RTP both ways, bytes
/// unchanged; the caller's BYE ends the PBX's leg.
#[test]
fn sma_call_and_bridge_to_a_voice_connector_reaches_its_origination_route() {
    let dir = temp_dir("sma-bridge-vc-app");
    let pbx = Ua::new(ROUTES);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_aws(
                "arn:aws:chime:us-east-1:123456789012:vc/vc-east", "5000")},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    // The carrier's only host is a port nobody answers: a leg through the
    // carriers would never reach the PBX.
    let hosts = host(CARRIER, 9, "");
    let routes = host(ROUTES, pbx.sip_addr().port(), "");
    let lab = Lab {
        hosts: &hosts,
        east_routes: &routes,
        ..Default::default()
    };
    let d = daemon_lab("sma-bridge-vc", &app, &lab);
    let mut call = Call::place(&d);
    let invite = expect_invite(&pbx);
    assert_eq!(
        invite.first_line(),
        format!("INVITE sip:5000@{} SIP/2.0", pbx.sip_addr())
    );
    let from = invite.header("From").unwrap();
    assert!(
        from.starts_with(&format!("<sip:{CALLER_ID}@127.0.0.1:")),
        "{from}"
    );
    let trunkd_b = invite.sdp_rtp();
    pbx.respond(&invite, "180 Ringing", None);
    pbx.respond(&invite, "200 OK", Some(&pbx.sdp("sendrecv")));
    pbx.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let r = app.wait_requests(2);
    let ev = &r[1]["event"];
    assert_eq!(ev["InvocationEventType"], "ACTION_SUCCESSFUL");
    assert_eq!(
        ev["ActionData"]["Parameters"]["Endpoints"][0]["Arn"],
        "arn:aws:chime:us-east-1:123456789012:vc/vc-east"
    );
    let legs = &ev["CallDetails"]["Participants"];
    assert_eq!(legs[1]["ParticipantTag"], "LEG-B");
    assert_eq!(legs[1]["To"], "5000");
    assert_eq!(
        legs[1]["CallId"],
        invite.header("Call-ID").unwrap().as_str()
    );

    let caller_rtp = call.ua.rtp.try_clone().unwrap();
    let to_a = call.trunkd_rtp;
    let sender = std::thread::spawn(move || send_rtp(&caller_rtp, to_a, 0xA0A0_0011, 50));
    let (at_pbx, _) = receive_rtp(&pbx.rtp, 30, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&at_pbx, 0xA0A0_0011) >= 20,
        "the PBX heard {} of the caller's packets",
        at_pbx.len()
    );
    let pbx_rtp = pbx.rtp.try_clone().unwrap();
    let sender = std::thread::spawn(move || send_rtp(&pbx_rtp, trunkd_b, 0xB0B0_0012, 50));
    let (at_caller, _) = receive_rtp(&call.ua.rtp, 30, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&at_caller, 0xB0B0_0012) >= 20,
        "the caller heard {} of the PBX's packets",
        at_caller.len()
    );

    call.bye();
    let bye = pbx.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    assert_eq!(bye.header("Call-ID"), invite.header("Call-ID"));
    pbx.respond(&bye, "200 OK", None);
    wait_gauges_zero(&d);
}

/// A voice connector group's ARN with SIPp as the PBX (uas_answer.xml,
/// echoing RTP): vc-east's route refuses at once (nobody listens there),
/// so the group's next voice connector, vc-west, gets the call; the
/// caller's packets come back through trunkd byte for byte. An unknown
/// voice connector fails the action as the managed service does
/// (InvalidActionParameter) and the caller stays up.
#[test]
fn sma_call_and_bridge_to_a_voice_connector_group_fails_over_to_a_sipp_pbx() {
    let dir = temp_dir("sma-bridge-vcg-app");
    let port = free_port_on(ROUTES);
    let media = free_port_on(ROUTES).to_string();
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        ROUTES,
        port,
        &["-m", "1", "-rtp_echo", "-mp", &media],
    );
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_aws("vc-nowhere", "5000")},
            {"expect": "ACTION_FAILED", "answer": bridge_aws(
                "arn:aws:chime:us-east-1:123456789012:vcg/grp-main", "5000")},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let east = host(ROUTES, free_port_on(ROUTES), ", protocol = \"TCP\"");
    let west = host(ROUTES, port, "");
    let hosts = host(CARRIER, 9, "");
    let lab = Lab {
        hosts: &hosts,
        east_routes: &east,
        west_routes: &west,
        ..Default::default()
    };
    let d = daemon_lab("sma-bridge-vcg", &app, &lab);
    let mut call = Call::place(&d);
    let r = app.wait_requests(3);
    let failed = &r[1]["event"];
    assert_eq!(failed["InvocationEventType"], "ACTION_FAILED");
    assert_eq!(failed["ActionData"]["ErrorType"], "InvalidActionParameter");
    assert_eq!(
        failed["ActionData"]["ErrorMessage"],
        "Endpoint parameter is invalid: no voice connector or voice connector group \"vc-nowhere\""
    );
    assert_eq!(r[2]["event"]["InvocationEventType"], "ACTION_SUCCESSFUL");

    let caller_rtp = call.ua.rtp.try_clone().unwrap();
    let to_a = call.trunkd_rtp;
    let sender = std::thread::spawn(move || send_rtp(&caller_rtp, to_a, 0xA0A0_0021, 50));
    let (echoed, _) = receive_rtp(&call.ua.rtp, 30, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&echoed, 0xA0A0_0021) >= 20,
        "{} of the caller's packets came back from the PBX",
        echoed.len()
    );
    call.bye();
    let (ok, out) = uas.wait(Duration::from_secs(10));
    assert!(ok, "the SIPp PBX failed:\n{out}\n{}", d.log());
    wait_gauges_zero(&d);
}

/// RingbackTone: while the callee rings the caller hears the tone, looped
/// sample for sample; at the answer the tone stops and the callee's audio
/// goes through instead.
#[test]
fn sma_call_and_bridge_plays_the_ringback_tone_until_the_callee_answers() {
    let dir = temp_dir("sma-bridge-ringback-app");
    let callee = Ua::new(CARRIER);
    let tone = prompt_samples(1600);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "CallAndBridge", "Parameters": {
                    "CallTimeoutSeconds": 20,
                    "CallerIdNumber": CALLER_ID,
                    "RingbackTone": {"Type": "File", "Path": "ring.wav"},
                    "Endpoints": [{"BridgeEndpointType": "PSTN", "Uri": CALLEE}]}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-ringback", &app, &callee);
    write_wav(&d.dir.join("ring.wav"), &tone);
    let mut call = Call::place(&d);
    let invite = expect_invite(&callee);
    callee.respond(&invite, "180 Ringing", None);
    // Two rounds of the tone, exactly, before anyone answered.
    let heard = receive_audio(&call.ua.rtp, 2 * tone.len());
    assert_eq!(
        heard[..tone.len()],
        tone[..],
        "the ringback tone arrived altered"
    );
    assert_eq!(
        heard[tone.len()..2 * tone.len()],
        tone[..],
        "the ringback tone is looped"
    );
    let trunkd_b = invite.sdp_rtp();
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    app.wait_requests(2);
    let callee_rtp = callee.rtp.try_clone().unwrap();
    let sender = std::thread::spawn(move || send_rtp(&callee_rtp, trunkd_b, 0xB0B0_0031, 50));
    let (at_caller, _) = receive_rtp(&call.ua.rtp, 80, Duration::from_secs(4));
    sender.join().unwrap();
    // The relay renumbers the callee's packets onto the tone's stream (one
    // SSRC for the caller throughout): they are told by their payload,
    // [`rtp_packet`]'s counting bytes.
    let from_callee = |p: &Vec<u8>| {
        p.len() == 172
            && p[12..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == p[12].wrapping_add(i as u8))
    };
    let heard = at_caller.iter().filter(|p| from_callee(p)).count();
    assert!(
        heard >= 20,
        "the caller heard {heard} of the callee's packets among {}",
        at_caller.len()
    );
    // Once the callee's audio arrived, the tone is over.
    let first = at_caller.iter().position(from_callee).unwrap();
    assert!(
        at_caller[first..].iter().all(from_callee),
        "the ringback tone went on after the answer"
    );
    assert!(
        at_caller.iter().all(|p| p[8..12] == at_caller[0][8..12]),
        "one stream for the caller"
    );
    call.bye();
    let bye = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&bye, "200 OK", None);
    wait_gauges_zero(&d);
}

/// CallAndBridge on a call trunkd placed (CreateSipMediaApplicationCall):
/// once the callee (the UA on the carrier's address) answered, the
/// application bridges it to a PBX behind vc-east (SIPp echoing RTP); the
/// callee's packets come back through both legs byte for byte; the
/// callee's BYE ends the PBX's leg too.
#[test]
fn sma_create_call_then_call_and_bridge_joins_a_second_party() {
    let dir = temp_dir("sma-outbound-bridge-app");
    let callee = Ua::new(CARRIER);
    let port = free_port_on(ROUTES);
    let media = free_port_on(ROUTES).to_string();
    let mut pbx = SippBg::uas(
        "uas_answer.xml",
        ROUTES,
        port,
        &["-m", "1", "-rtp_echo", "-mp", &media],
    );
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "RINGING", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "CALL_ANSWERED", "answer": bridge_aws("vc-east", "5000")},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let hosts = host(CARRIER, callee.sip_addr().port(), "");
    let routes = host(ROUTES, port, "");
    let lab = Lab {
        hosts: &hosts,
        east_routes: &routes,
        ..Default::default()
    };
    let d = daemon_lab("sma-outbound-bridge", &app, &lab);
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let invite = expect_invite(&callee);
    callee.respond(&invite, "180 Ringing", None);
    app.wait_requests(2);
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let r = app.wait_requests(4);
    let ev = &r[3]["event"];
    assert_eq!(ev["InvocationEventType"], "ACTION_SUCCESSFUL");
    assert_eq!(ev["ActionData"]["Type"], "CallAndBridge");
    let legs = &ev["CallDetails"]["Participants"];
    assert_eq!(legs[0]["ParticipantTag"], "LEG-A");
    assert_eq!(legs[0]["To"], CALLEE);
    assert_eq!(legs[1]["ParticipantTag"], "LEG-B");
    assert_eq!(legs[1]["To"], "5000");
    assert_ne!(legs[1]["CallId"], legs[0]["CallId"]);

    let to_trunkd = invite.sdp_rtp();
    let callee_rtp = callee.rtp.try_clone().unwrap();
    let sender = std::thread::spawn(move || send_rtp(&callee_rtp, to_trunkd, 0xC0C0_0041, 50));
    let (echoed, _) = receive_rtp(&callee.rtp, 30, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&echoed, 0xC0C0_0041) >= 20,
        "{} of the callee's packets came back from the PBX",
        echoed.len()
    );

    // The first callee hangs up: the PBX's leg is hung up with it.
    callee_request(&callee, &invite, "BYE", 2);
    let ok = callee.recv_until(Duration::from_secs(5), |m| m.status().is_some());
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let (ok, out) = pbx.wait(Duration::from_secs(10));
    assert!(ok, "the SIPp PBX failed:\n{out}\n{}", d.log());
    let r = app.wait_requests(6);
    assert!(
        types(&r)[4..].iter().all(|t| t == "HANGUP"),
        "{:?}",
        types(&r)
    );
    wait_gauges_zero(&d);
}

/// The same with SIPp at both ends: the placed call's callee on the
/// carrier (uas_answer.xml) and the bridged PBX behind vc-east
/// (uas_bye.xml, which hangs up after 500 ms); the application then ends
/// the call, and both SIPp instances see their calls complete.
#[test]
fn sma_create_call_then_call_and_bridge_with_sipp_at_both_ends() {
    let dir = temp_dir("sma-outbound-bridge-sipp-app");
    let carrier = free_port_on(CARRIER);
    let mut callee = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let port = free_port_on(ROUTES);
    let mut pbx = SippBg::uas("uas_bye.xml", ROUTES, port, &["-m", "1"]);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "RINGING", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "CALL_ANSWERED", "answer": bridge_aws(
                "arn:aws:chime:us-east-1:123456789012:vc/vc-east", "5000")},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "HANGUP", "answer": hangup_a()},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let hosts = host(CARRIER, carrier, "");
    let routes = host(ROUTES, port, "");
    let lab = Lab {
        hosts: &hosts,
        east_routes: &routes,
        ..Default::default()
    };
    let d = daemon_lab("sma-outbound-bridge-sipp", &app, &lab);
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let (ok, out) = pbx.wait(Duration::from_secs(20));
    assert!(ok, "the SIPp PBX failed:\n{out}\n{}", d.log());
    let (ok, out) = callee.wait(Duration::from_secs(20));
    assert!(ok, "the SIPp callee failed:\n{out}\n{}", d.log());
    let r = app.wait_requests(6);
    assert_eq!(
        types(&r),
        [
            "NEW_OUTBOUND_CALL",
            "RINGING",
            "CALL_ANSWERED",
            "ACTION_SUCCESSFUL",
            "HANGUP",
            "HANGUP"
        ]
    );
    let legs = &r[4]["event"]["CallDetails"]["Participants"];
    assert_eq!(legs[0]["Status"], "Connected");
    assert_eq!(legs[1]["Status"], "Disconnected");
    wait_gauges_zero(&d);
}

/// G.711 A-law to linear (ITU-T G.711).
fn alaw(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let seg = (a & 0x70) >> 4;
    let mut t = i32::from(a & 0x0f) << 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

/// A call trunkd places offers PCMU and PCMA; a callee that answers PCMA
/// hears the prompt in PCMA (payload type 8), sample for sample.
#[test]
fn sma_create_call_offers_pcmu_and_pcma_and_plays_in_the_callees_pick() {
    let dir = temp_dir("sma-outbound-pcma-app");
    let callee = Ua::new(CARRIER);
    // Samples A-law carries exactly.
    let mut x: u32 = 0x0bad_cafe;
    let prompt: Vec<i16> = (0..3200)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            alaw((x >> 16) as u8)
        })
        .collect();
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "CALL_ANSWERED", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "PlayAudio", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"}}},
                {"Type": "Hangup", "Parameters": {"SipResponseCode": "0"}}]}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-outbound-pcma", &app, &callee);
    write_wav(&d.dir.join("prompt.wav"), &prompt);
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let invite = expect_invite(&callee);
    let offer = invite.body();
    assert!(
        offer.contains("RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"),
        "{offer}"
    );
    let port = callee.rtp_addr().port();
    let answer = format!(
        "v=0\r\no=ua 1 1 IN IP4 {CARRIER}\r\ns=-\r\nc=IN IP4 {CARRIER}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    callee.respond(&invite, "200 OK", Some(&answer));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut heard = Vec::new();
    let mut buf = [0u8; 2048];
    while heard.len() < prompt.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} samples arrived",
            heard.len()
        );
        if let Ok((n, _)) = callee.rtp.recv_from(&mut buf) {
            if n > 12 {
                assert_eq!(buf[1] & 0x7f, 8, "the prompt is sent as PCMA");
                heard.extend(buf[12..n].iter().map(|&b| alaw(b)));
            }
        }
    }
    assert_eq!(
        heard[..prompt.len()],
        prompt[..],
        "the prompt arrived altered"
    );
    let bye = callee.recv_until(Duration::from_secs(10), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&bye, "200 OK", None);
    app.wait_requests(3);
    wait_gauges_zero(&d);
}

/// `[applications] outbound_ring_timeout_seconds`: a placed call's callee
/// ringing longer is cancelled, and the application hears HANGUP.
#[test]
fn sma_create_call_rings_at_most_the_configured_time() {
    let dir = temp_dir("sma-outbound-ring-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "RINGING", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let hosts = host(CARRIER, callee.sip_addr().port(), "");
    let lab = Lab {
        hosts: &hosts,
        top: "[applications]\noutbound_ring_timeout_seconds = 2\n",
        ..Default::default()
    };
    let d = daemon_lab("sma-outbound-ring", &app, &lab);
    let asked = std::time::Instant::now();
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let invite = expect_invite(&callee);
    callee.respond(&invite, "180 Ringing", None);
    let cancel = callee.recv_until(Duration::from_secs(6), |m| {
        m.first_line().starts_with("CANCEL ")
    });
    let rang = asked.elapsed();
    assert!(
        rang >= Duration::from_millis(1800) && rang < Duration::from_secs(4),
        "cancelled after {rang:?}"
    );
    callee.respond(&cancel, "200 OK", None);
    callee.respond(&invite, "487 Request Terminated", None);
    let r = app.wait_requests(3);
    assert_eq!(types(&r), ["NEW_OUTBOUND_CALL", "RINGING", "HANGUP"]);
    wait_gauges_zero(&d);
}

/// An in-dialog request from the callee with an SDP body (a re-INVITE's
/// offer) or none (its ACK).
fn callee_offer(callee: &Ua, invite: &Msg, method: &str, cseq: u32, sdp: Option<&str>) {
    let target = invite
        .header("Contact")
        .unwrap()
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned();
    let body = sdp.unwrap_or("");
    let ct = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    let text = format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-callee-{method}{cseq}\r\nMax-Forwards: 70\r\n\
         From: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:callee@{me}>\r\n\
         {ct}Content-Length: {len}\r\n\r\n{body}",
        me = callee.sip_addr(),
        to = invite.header("To").unwrap(),
        tag = callee.tag,
        from = invite.header("From").unwrap(),
        cid = invite.header("Call-ID").unwrap(),
        len = body.len(),
    );
    callee.send(invite.from, &text);
}

/// A bridged callee's re-offers are answered, not refused: a move to a new
/// RTP address is followed (the caller's audio arrives there), a hold
/// (`sendonly`) is answered `recvonly` with the `o=` version raised, and
/// an offer without the codec in use is refused 488 — the call goes on.
#[test]
fn sma_bridged_callee_reoffers_move_media_and_hold() {
    let dir = temp_dir("sma-bridge-reoffer-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(20)},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-reoffer", &app, &callee);
    let mut call = Call::place(&d);
    let invite = expect_invite(&callee);
    let trunkd_b = invite.sdp_rtp();
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    app.wait_requests(2);

    // The callee moves its media to another port.
    let moved = std::net::UdpSocket::bind((CARRIER, 0)).unwrap();
    moved
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = moved.local_addr().unwrap().port();
    let offer = |direction: &str, formats: &str| {
        format!(
            "v=0\r\no=ua 1 2 IN IP4 {CARRIER}\r\ns=-\r\nc=IN IP4 {CARRIER}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {formats}\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
        )
    };
    callee_offer(
        &callee,
        &invite,
        "INVITE",
        2,
        Some(&offer("sendrecv", "0 101")),
    );
    let ok = callee.recv_until(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 200) && m.header("CSeq").as_deref() == Some("2 INVITE")
    });
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let answer = ok.body();
    assert_eq!(ok.sdp_rtp(), trunkd_b, "trunkd's side stays: {answer}");
    assert!(
        answer.contains(" 2 IN IP4 "),
        "the o= version is raised: {answer}"
    );
    assert!(
        answer.contains(&format!("m=audio {} RTP/AVP 0 101\r\n", trunkd_b.port())),
        "{answer}"
    );
    assert!(answer.contains("a=sendrecv\r\n"), "{answer}");
    callee_offer(&callee, &invite, "ACK", 2, None);
    let caller_rtp = call.ua.rtp.try_clone().unwrap();
    let to_a = call.trunkd_rtp;
    let sender = std::thread::spawn(move || send_rtp(&caller_rtp, to_a, 0xA0A0_0051, 50));
    let (at_moved, _) = receive_rtp(&moved, 30, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&at_moved, 0xA0A0_0051) >= 20,
        "the callee's new port got {} of the caller's packets",
        at_moved.len()
    );

    // Hold.
    callee_offer(
        &callee,
        &invite,
        "INVITE",
        3,
        Some(&offer("sendonly", "0 101")),
    );
    let ok = callee.recv_until(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 200) && m.header("CSeq").as_deref() == Some("3 INVITE")
    });
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    assert!(ok.body().contains("a=recvonly\r\n"), "{}", ok.body());
    assert!(ok.body().contains(" 3 IN IP4 "), "{}", ok.body());
    callee_offer(&callee, &invite, "ACK", 3, None);

    // Another codec than the one the caller speaks: refused, call goes on.
    callee_offer(
        &callee,
        &invite,
        "INVITE",
        4,
        Some(&offer("sendrecv", "8 101")),
    );
    let no = callee.recv_until(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 200) && m.header("CSeq").as_deref() == Some("4 INVITE")
    });
    assert_eq!(no.status(), Some(488), "{}", no.text);

    call.bye();
    let bye = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&bye, "200 OK", None);
    wait_gauges_zero(&d);
}

/// SRTP toward the PBX when the voice connector's route asks for it
/// (`srtp = "require"`): the bridged leg is offered RTP/SAVP with trunkd's
/// SDES keys; the PBX's answer picks one; the caller's plain RTP reaches
/// the PBX encrypted with the keys negotiated, and the PBX's SRTP reaches
/// the caller decrypted. A plain answer to such a route fails the action.
#[test]
fn sma_call_and_bridge_offers_srtp_when_the_route_requires_it() {
    use trunkd_media::sdes::{CryptoAttr, KeyMaterial};
    use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};
    let dir = temp_dir("sma-bridge-srtp-app");
    let pbx = Ua::new(ROUTES);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_aws("vc-east", "5000")},
            {"expect": "ACTION_FAILED", "answer": bridge_aws("vc-east", "5001")},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let hosts = host(CARRIER, 9, "");
    let routes = host(ROUTES, pbx.sip_addr().port(), ", srtp = \"require\"");
    let lab = Lab {
        hosts: &hosts,
        east_routes: &routes,
        ..Default::default()
    };
    let d = daemon_lab("sma-bridge-srtp", &app, &lab);
    let mut call = Call::place(&d);

    // First attempt: the PBX answers plain; the route requires SRTP.
    let invite = expect_invite(&pbx);
    assert!(
        invite.body().contains(" RTP/SAVP 0 101\r\n"),
        "{}",
        invite.body()
    );
    pbx.respond(&invite, "200 OK", Some(&pbx.sdp("sendrecv")));
    pbx.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let bye = pbx.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    pbx.respond(&bye, "200 OK", None);
    let r = app.wait_requests(2);
    assert_eq!(r[1]["event"]["ActionData"]["ErrorType"], "SystemException");
    assert_eq!(
        r[1]["event"]["ActionData"]["ErrorMessage"],
        "the callee answered plain RTP; its route requires SRTP"
    );

    // Second attempt: SRTP.
    let invite = expect_invite(&pbx);
    assert!(invite.first_line().starts_with("INVITE sip:5001@"));
    let offered: Vec<CryptoAttr> = invite
        .body()
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| CryptoAttr::parse(v).unwrap())
        .collect();
    assert_eq!(offered.len(), CryptoSuite::ALL.len(), "{}", invite.body());
    let trunkds = offered
        .iter()
        .find(|a| a.suite == CryptoSuite::Aes128CmHmacSha1_80)
        .unwrap()
        .clone();
    let mine = CryptoAttr {
        tag: trunkds.tag,
        suite: trunkds.suite,
        key: KeyMaterial::generate(trunkds.suite).unwrap(),
    };
    let port = pbx.rtp_addr().port();
    let answer = format!(
        "v=0\r\no=ua 1 1 IN IP4 {ROUTES}\r\ns=-\r\nc=IN IP4 {ROUTES}\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:{}\r\na=sendrecv\r\n",
        mine.to_value()
    );
    pbx.respond(&invite, "200 OK", Some(&answer));
    pbx.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let r = app.wait_requests(3);
    assert_eq!(r[2]["event"]["InvocationEventType"], "ACTION_SUCCESSFUL");
    let mut srtp = LegCrypto::new(&LegKeys {
        suite: trunkds.suite,
        peer: trunkds.key.clone(),
        ours: mine.key.clone(),
    })
    .unwrap();
    let trunkd_b = invite.sdp_rtp();

    let caller_rtp = call.ua.rtp.try_clone().unwrap();
    let to_a = call.trunkd_rtp;
    let sender = std::thread::spawn(move || send_rtp(&caller_rtp, to_a, 0xA0A0_0061, 30));
    let (at_pbx, _) = receive_rtp(&pbx.rtp, 20, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(at_pbx.len() >= 20, "the PBX got {} packets", at_pbx.len());
    for p in &at_pbx {
        assert_ne!(p.len(), 172, "encrypted packets carry a tag");
        let plain = srtp
            .unprotect_rtp(p)
            .expect("SRTP with the negotiated keys");
        let seq = u16::from_be_bytes([plain[2], plain[3]]);
        assert_eq!(plain, rtp_packet(seq, u32::from(seq) * 160, 0xA0A0_0061));
    }
    for seq in 0..30u16 {
        let wire = srtp
            .protect_rtp(&rtp_packet(seq, u32::from(seq) * 160, 0xB0B0_0062))
            .unwrap();
        pbx.rtp.send_to(&wire, trunkd_b).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let (at_caller, _) = receive_rtp(&call.ua.rtp, 20, Duration::from_secs(5));
    assert!(
        payloads_from(&at_caller, 0xB0B0_0062) >= 15,
        "the caller got {} decrypted packets",
        at_caller.len()
    );
    call.bye();
    let bye = pbx.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    pbx.respond(&bye, "200 OK", None);
    wait_gauges_zero(&d);
}

/// A placed call's callee re-offers (hold) and is answered 200 in the codec
/// it picked (PCMA), `recvonly`; the call goes on until the callee's BYE.
#[test]
fn sma_create_call_callee_reoffer_is_answered_in_its_codec() {
    let dir = temp_dir("sma-outbound-reoffer-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "CALL_ANSWERED", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-outbound-reoffer", &app, &callee);
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let invite = expect_invite(&callee);
    let trunkd_a = invite.sdp_rtp();
    let port = callee.rtp_addr().port();
    let sdp = |direction: &str, version: u32| {
        format!(
            "v=0\r\no=ua 1 {version} IN IP4 {CARRIER}\r\ns=-\r\nc=IN IP4 {CARRIER}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
        )
    };
    callee.respond(&invite, "200 OK", Some(&sdp("sendrecv", 1)));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    app.wait_requests(2);
    callee_offer(&callee, &invite, "INVITE", 2, Some(&sdp("sendonly", 2)));
    let ok = callee.recv_until(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 200) && m.header("CSeq").as_deref() == Some("2 INVITE")
    });
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let answer = ok.body();
    assert!(
        answer.contains(&format!("m=audio {} RTP/AVP 8 101\r\n", trunkd_a.port())),
        "{answer}"
    );
    assert!(answer.contains("a=rtpmap:8 PCMA/8000\r\n"), "{answer}");
    assert!(answer.contains("a=recvonly\r\n"), "{answer}");
    callee_offer(&callee, &invite, "ACK", 2, None);
    callee_offer(&callee, &invite, "BYE", 3, None);
    let ok = callee.recv_until(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 200) && m.header("CSeq").as_deref() == Some("3 BYE")
    });
    assert_eq!(ok.status(), Some(200));
    let r = app.wait_requests(3);
    assert_eq!(types(&r), ["NEW_OUTBOUND_CALL", "CALL_ANSWERED", "HANGUP"]);
    wait_gauges_zero(&d);
}

/// The ringback tone also stops when the callee refuses (486): the caller
/// hears nothing more from trunkd while the application decides; a tone
/// that cannot be read fails CallAndBridge with InvalidAudioSource before
/// anyone is called.
#[test]
fn sma_ringback_tone_stops_when_the_callee_refuses_and_a_bad_tone_fails_first() {
    let dir = temp_dir("sma-bridge-ringback-busy-app");
    let callee = Ua::new(CARRIER);
    let with_tone = |path: &str| {
        json!({"SchemaVersion": "1.0", "Actions": [
            {"Type": "CallAndBridge", "Parameters": {
                "CallerIdNumber": CALLER_ID,
                "RingbackTone": {"Type": "File", "Path": path},
                "Endpoints": [{"BridgeEndpointType": "PSTN", "Uri": CALLEE}]}}]})
    };
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": with_tone("missing.wav")},
            {"expect": "ACTION_FAILED", "answer": with_tone("ring.wav")},
            {"expect": "ACTION_FAILED", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Pause", "Parameters": {"DurationInMilliseconds": 1500}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": hangup_a()}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-ringback-busy", &app, &callee);
    write_wav(&d.dir.join("ring.wav"), &prompt_samples(1600));
    let call = Call::place(&d);
    let r = app.wait_requests(2);
    assert_eq!(
        r[1]["event"]["ActionData"]["ErrorType"],
        "InvalidAudioSource"
    );
    let invite = expect_invite(&callee);
    assert!(invite
        .first_line()
        .starts_with(&format!("INVITE sip:{CALLEE}@")));
    callee.respond(&invite, "180 Ringing", None);
    let (ringing, _) = receive_rtp(&call.ua.rtp, 10, Duration::from_secs(3));
    assert_eq!(ringing.len(), 10, "the tone plays while the callee rings");
    callee.respond(&invite, "486 Busy Here", None);
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let r = app.wait_requests(3);
    assert_eq!(r[2]["event"]["ActionData"]["ErrorType"], "CallNotAnswered");
    // Drain what was in flight, then silence during the Pause.
    std::thread::sleep(Duration::from_millis(200));
    while receive_rtp(&call.ua.rtp, 1, Duration::from_millis(1))
        .0
        .len()
        == 1
    {}
    let (after, _) = receive_rtp(&call.ua.rtp, 1, Duration::from_millis(800));
    assert!(after.is_empty(), "the tone went on after the refusal");
    call.expect_bye();
    wait_gauges_zero(&d);
}

/// Without RingbackTone, the callee's early media (183 with SDP) reaches
/// the caller before the answer, bytes unchanged.
#[test]
fn sma_call_and_bridge_relays_the_callees_early_media() {
    let dir = temp_dir("sma-bridge-early-app");
    let callee = Ua::new(CARRIER);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": bridge_action(20)},
            {"expect": "ACTION_SUCCESSFUL", "answer": hangup_a()}
        ]),
        Some(SECRET),
    );
    let d = daemon("sma-bridge-early", &app, &callee);
    let call = Call::place(&d);
    let invite = expect_invite(&callee);
    let trunkd_b = invite.sdp_rtp();
    callee.respond(
        &invite,
        "183 Session Progress",
        Some(&callee.sdp("sendrecv")),
    );
    std::thread::sleep(Duration::from_millis(200));
    let callee_rtp = callee.rtp.try_clone().unwrap();
    let sender = std::thread::spawn(move || send_rtp(&callee_rtp, trunkd_b, 0xE0E0_0071, 30));
    let (early, _) = receive_rtp(&call.ua.rtp, 20, Duration::from_secs(5));
    sender.join().unwrap();
    assert!(
        payloads_from(&early, 0xE0E0_0071) >= 15,
        "the caller heard {} of the callee's early packets",
        early.len()
    );
    assert_eq!(app.wait_requests(1).len(), 1, "not answered yet");
    callee.respond(&invite, "200 OK", Some(&callee.sdp("sendrecv")));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let r = app.wait_requests(2);
    assert_eq!(r[1]["event"]["InvocationEventType"], "ACTION_SUCCESSFUL");
    call.expect_bye();
    let bye = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&bye, "200 OK", None);
    wait_gauges_zero(&d);
}

/// A placed call through a carrier host with `srtp = "require"` offers
/// RTP/SAVP with trunkd's SDES keys; the callee answers with its key and
/// hears the prompt encrypted with the keys negotiated, sample for sample.
#[test]
fn sma_create_call_offers_srtp_when_the_carrier_host_requires_it() {
    use trunkd_media::sdes::{CryptoAttr, KeyMaterial};
    use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};
    let dir = temp_dir("sma-outbound-srtp-app");
    let callee = Ua::new(CARRIER);
    let prompt = prompt_samples(1600);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_OUTBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": []}},
            {"expect": "CALL_ANSWERED", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "PlayAudio", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"}}},
                {"Type": "Hangup", "Parameters": {"SipResponseCode": "0"}}]}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let hosts = host(CARRIER, callee.sip_addr().port(), ", srtp = \"require\"");
    let lab = Lab {
        hosts: &hosts,
        ..Default::default()
    };
    let d = daemon_lab("sma-outbound-srtp", &app, &lab);
    write_wav(&d.dir.join("prompt.wav"), &prompt);
    let (status, body) = admin_post(
        &d,
        "/sip-media-applications/sma-ivr/calls",
        &json!({"FromPhoneNumber": CALLER_ID, "ToPhoneNumber": CALLEE}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let invite = expect_invite(&callee);
    assert!(
        invite.body().contains(" RTP/SAVP 0 8 101\r\n"),
        "{}",
        invite.body()
    );
    let trunkds = invite
        .body()
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| CryptoAttr::parse(v).unwrap())
        .find(|a| a.suite == CryptoSuite::Aes128CmHmacSha1_80)
        .expect("an AES_CM_128_HMAC_SHA1_80 key");
    let mine = CryptoAttr {
        tag: trunkds.tag,
        suite: trunkds.suite,
        key: KeyMaterial::generate(trunkds.suite).unwrap(),
    };
    let port = callee.rtp_addr().port();
    let answer = format!(
        "v=0\r\no=ua 1 1 IN IP4 {CARRIER}\r\ns=-\r\nc=IN IP4 {CARRIER}\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:{}\r\na=sendrecv\r\n",
        mine.to_value()
    );
    callee.respond(&invite, "200 OK", Some(&answer));
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let mut srtp = LegCrypto::new(&LegKeys {
        suite: trunkds.suite,
        peer: trunkds.key.clone(),
        ours: mine.key.clone(),
    })
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut heard = Vec::new();
    let mut buf = [0u8; 2048];
    while heard.len() < prompt.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} samples arrived",
            heard.len()
        );
        if let Ok((n, _)) = callee.rtp.recv_from(&mut buf) {
            let plain = srtp
                .unprotect_rtp(&buf[..n])
                .expect("SRTP with the negotiated keys");
            heard.extend(plain[12..].iter().map(|&b| crate::sma::ulaw(b)));
        }
    }
    assert_eq!(
        heard[..prompt.len()],
        prompt[..],
        "the prompt arrived altered"
    );
    let bye = callee.recv_until(Duration::from_secs(10), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&bye, "200 OK", None);
    app.wait_requests(3);
    wait_gauges_zero(&d);
}
