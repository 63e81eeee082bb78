//! SIP message logs (SPEC §5.3) through the real binary: a
//! digest-authenticated call through a VC with `enable_sip_logs = true`
//! leaves one JSON line per message, keyed by the CDR's TransactionId, with
//! no credential in it.

use std::time::{Duration, Instant};

use crate::calls::{assert_ok, host, pbx_calls, records, Lab, CARRIER};
use crate::support::*;

/// The log's lines once the call's last message (the BYE's 200 towards
/// the PBX) is in, or whatever is there after a few seconds.
fn wait_log(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let done = text.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            let msg = v["sip_message"].as_str().unwrap_or("");
            v["direction"] == "out" && msg.starts_with("SIP/2.0 200") && msg.contains(" BYE\r\n")
        });
        if done || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sip_logs_of_a_digest_authenticated_call_are_json_keyed_by_the_cdr_and_redacted() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        east_termination: "credentials = [ { username = \"pbx1\", password = \"s3cretPW\" } ]\n\
                           [voice_connectors.logging]\nenable_sip_logs = true",
        ..Default::default()
    };
    let d = Daemon::start("siplog", ports, &lab.config(ports));
    let out = pbx_calls(
        "uac_auth.xml",
        &d,
        &["-au", "pbx1", "-ap", "s3cretPW", "-d", "100"],
    );
    assert_ok(&out, "407 then success");
    assert!(uas.wait(Duration::from_secs(10)).0);
    let cdr = &wait_cdrs(&records(&d), 1)[0];
    let tid = cdr["TransactionId"].as_str().unwrap().to_owned();

    let path = d
        .dir
        .join("var/logs/aws/ChimeVoiceConnectorSipMessages/vc-east");
    let text = wait_log(&path);
    assert!(!text.contains("s3cretPW"), "the password leaked: {text}");
    assert!(
        !text.contains("response="),
        "a digest response leaked: {text}"
    );
    let mut firsts = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "aws_region",
                "call_id",
                "direction",
                "event_timestamp",
                "peer",
                "sip_message",
                "voice_connector_id"
            ],
            "{line}"
        );
        assert_eq!(v["voice_connector_id"], "vc-east");
        assert_eq!(v["aws_region"], "local");
        assert_eq!(v["call_id"], tid.as_str(), "{line}");
        assert!(v["event_timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        let peer = v["peer"].as_str().unwrap();
        assert!(peer.ends_with(" udp"), "{peer}");
        let msg = v["sip_message"].as_str().unwrap();
        if msg.starts_with("INVITE") && v["direction"] == "in" {
            assert!(
                msg.contains("Proxy-Authorization: Digest <redacted>\r\n"),
                "{msg}"
            );
        }
        let first = msg.lines().next().unwrap_or("");
        let method = first.split(' ').next().unwrap_or("").to_owned();
        let what = if method == "SIP/2.0" {
            first.split(' ').take(2).collect::<Vec<_>>().join(" ")
        } else {
            method
        };
        firsts.push(format!("{} {what}", v["direction"].as_str().unwrap()));
    }
    for want in [
        "in INVITE",
        "out SIP/2.0 100",
        "out INVITE",
        "in SIP/2.0 180",
        "out SIP/2.0 180",
        "in SIP/2.0 200",
        "out SIP/2.0 200",
        "in ACK",
        "out ACK",
        "in BYE",
        "out BYE",
    ] {
        assert!(
            firsts.iter().any(|f| f == want),
            "{want} missing from {firsts:?}"
        );
    }
    let written = d
        .metric("sip_log_lines_total{result=\"written\"}")
        .unwrap_or(0.0);
    assert!(written >= firsts.len() as f64, "{written}");
    assert_eq!(d.metric("sip_log_lines_total{result=\"dropped\"}"), None);
}

/// An SRTP call (SDES keys offered by the PBX, answered with trunkd's
/// own): every key is out of the log, the lines that carried them are in
/// with the key material replaced.
#[test]
fn sip_logs_of_an_srtp_call_carry_no_sdes_key() {
    use trunkd_media::sdes::{CryptoAttr, KeyMaterial};
    use trunkd_media::CryptoSuite;

    use crate::ua::*;

    let ports = Ports::pick();
    let (pbx, carrier) = (Ua::new(crate::media::PBX), Ua::new(crate::media::CARRIER));
    let text = crate::media::config(ports, carrier.sip_addr().port(), "").replace(
        "enable_media_metric_logs = true",
        "enable_media_metric_logs = true\nenable_sip_logs = true",
    );
    let d = Daemon::start("siplog-srtp", ports, &text);
    let keys: Vec<CryptoAttr> = [
        (1, CryptoSuite::Aes128CmHmacSha1_80),
        (2, CryptoSuite::Aes256CmHmacSha1_80),
    ]
    .into_iter()
    .map(|(tag, suite)| CryptoAttr {
        tag,
        suite,
        key: KeyMaterial::generate(suite).unwrap(),
    })
    .collect();
    let offer = pbx.sdp_with(
        "RTP/SAVP",
        "sendrecv",
        &keys.iter().map(|k| k.to_value()).collect::<Vec<_>>(),
    );
    let (mut dialog, _at_carrier, ok) = call_with(
        &pbx,
        &carrier,
        d.sip(),
        "+12065550199",
        "+12065550100",
        &offer,
        &carrier.sdp("sendrecv"),
    );
    let ours: Vec<String> = ok
        .body()
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(key_of)
        .collect();
    assert_eq!(ours.len(), 1, "{}", ok.body());
    hang_up(&pbx, &carrier, &mut dialog, "+12065550100");

    let path = d
        .dir
        .join("var/logs/aws/ChimeVoiceConnectorSipMessages/vc-east");
    let text = wait_log(&path);
    for key in keys.iter().map(|k| key_of(&k.to_value())).chain(ours) {
        assert!(!text.contains(&key), "an SDES key leaked: {key}\n{text}");
    }
    let redacted: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let msg = v["sip_message"].as_str()?.to_owned();
            Some(
                msg.lines()
                    .filter(|l| l.starts_with("a=crypto:"))
                    .map(|l| format!("{} {l}", v["direction"].as_str().unwrap_or("")))
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    assert_eq!(
        redacted,
        [
            "in a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>",
            "in a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:<redacted>",
            "out a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:<redacted>",
        ],
        "{text}"
    );
}

/// The key material of an `a=crypto` value (`tag suite inline:KEY|…`).
fn key_of(value: &str) -> String {
    let key = value.split("inline:").nth(1).unwrap_or("");
    let key = key.split(['|', ' ']).next().unwrap_or("");
    assert!(key.len() >= 40, "a key: {value}");
    key.to_owned()
}

/// The carrier challenges (401) and trunkd answers with the carrier
/// credentials: the challenge is logged, trunkd's `Authorization` is not.
#[test]
fn sip_logs_of_a_carrier_challenge_carry_no_carrier_credential() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_auth.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        east_termination: "[voice_connectors.logging]\nenable_sip_logs = true",
        ..Default::default()
    };
    let text = lab.config(ports).replace(
        "source_cidrs = [\"127.0.0.2/32\"]",
        "source_cidrs = [\"127.0.0.2/32\"]\ncredentials = { username = \"gw\", password = \"secret\" }",
    );
    let d = Daemon::start("siplog-carrier-auth", ports, &text);
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer");
    let (ok, log) = uas.wait(Duration::from_secs(10));
    assert!(ok, "the carrier verified trunkd's credentials: {log}");

    let path = d
        .dir
        .join("var/logs/aws/ChimeVoiceConnectorSipMessages/vc-east");
    let text = wait_log(&path);
    assert!(!text.contains("response="), "{text}");
    let messages: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["direction"].as_str().unwrap().to_owned(),
                v["sip_message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|(d, m)| d == "in" && m.starts_with("SIP/2.0 401 ")),
        "{text}"
    );
    let answered: Vec<&String> = messages
        .iter()
        .filter(|(d, m)| d == "out" && m.starts_with("INVITE ") && m.contains("Authorization"))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(answered.len(), 1, "{text}");
    assert!(
        answered[0].contains("\r\nAuthorization: Digest <redacted>\r\n"),
        "{}",
        answered[0]
    );
}
