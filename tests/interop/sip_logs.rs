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
