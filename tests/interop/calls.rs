//! Calls end to end (SPEC §2.1–2.3): SIPp as the customer PBX and as the
//! carrier, trunkd in between, both directions. Each role has its own
//! loopback address so trunkd tells them apart by source:
//!   127.0.0.3  customer PBX (termination UAC)
//!   127.0.0.2  carrier (its hosts are UASes; origination UAC)
//!   127.0.0.4  customer origination routes (UASes)
//!   127.0.0.5  a stranger

use std::time::{Duration, Instant};

use crate::support::*;

pub(crate) const PBX: &str = "127.0.0.3";
pub(crate) const CARRIER: &str = "127.0.0.2";
pub(crate) const ROUTES: &str = "127.0.0.4";
const STRANGER: &str = "127.0.0.5";

/// A config: one carrier with `hosts`, vc-east (termination from the PBX,
/// origination to `east_routes`), vc-west (origination to `west_routes`),
/// group grp-main (east then west), numbers. `extra_east_termination` lines
/// go into vc-east's termination table; `top` is put before everything.
pub(crate) struct Lab<'a> {
    pub hosts: &'a str,
    pub east_termination: &'a str,
    pub east_routes: &'a str,
    pub west_routes: &'a str,
    pub top: &'a str,
}

impl Default for Lab<'_> {
    fn default() -> Self {
        Lab {
            hosts: "",
            east_termination: "",
            east_routes: "{ host = \"127.0.0.4\", port = 9 }",
            west_routes: "{ host = \"127.0.0.4\", port = 9 }",
            top: "",
        }
    }
}

impl Lab<'_> {
    pub fn config(&self, ports: Ports) -> String {
        format!(
            r#"{top}
[daemon]
state_dir = "var"

[sip]
udp = ["127.0.0.1:{sip}"]
tcp = ["127.0.0.1:{sip}"]

[admin]
listen = "127.0.0.1:{admin}"

[logging]
level = "debug"

[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.2/32"]
hosts = [ {hosts} ]

[[voice_connectors]]
id = "vc-east"
[voice_connectors.termination]
cidr_allowed_list = ["127.0.0.3/32"]
calling_regions = ["US"]
cps_limit = 100
{east_termination}
[voice_connectors.origination]
routes = [ {east_routes} ]

[[voice_connectors]]
id = "vc-west"
[voice_connectors.origination]
routes = [ {west_routes} ]

[[voice_connector_groups]]
id = "grp-main"
voice_connector_items = [ {{ voice_connector_id = "vc-east", priority = 1 }}, {{ voice_connector_id = "vc-west", priority = 2 }} ]

[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"
name = "East Reception"
calling_name = "East Office"

[[numbers]]
e164_phone_number = "+12065550101"
voice_connector_group_id = "grp-main"
"#,
            top = self.top,
            sip = ports.sip,
            admin = ports.admin,
            hosts = self.hosts,
            east_termination = self.east_termination,
            east_routes = self.east_routes,
            west_routes = self.west_routes,
        )
    }
}

pub(crate) fn host(ip: &str, port: u16, extra: &str) -> String {
    format!("{{ host = \"{ip}\", port = {port}{extra} }}")
}

/// A bare out-of-dialog INVITE from `me` with no SDP: for tests that watch
/// trunkd's answers datagram by datagram. `dialog` names its From tag and
/// Call-ID.
fn raw_invite(me: std::net::SocketAddr, branch: &str, dialog: &str, max_forwards: u8) -> String {
    format!(
        "INVITE sip:+12065550199@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: {max_forwards}\r\n\
         From: <sip:+12065550100@{ip}>;tag={dialog}\r\nTo: <sip:+12065550199@127.0.0.1>\r\nCall-ID: {dialog}@{ip}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:pbx@{me}>\r\nContent-Length: 0\r\n\r\n",
        ip = me.ip()
    )
}

/// The common shape of a termination call test: the carrier plays
/// `uas_scenario` on its loopback address, the PBX plays `uac_scenario`
/// through trunkd, and both must succeed. Returns the daemon for further
/// checks (CDRs, metrics).
fn pbx_to_carrier(tag: &str, uac_scenario: &str, uas_scenario: &str, what: &str) -> Daemon {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas(uas_scenario, CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let d = Daemon::start(tag, ports, &lab.config(ports));
    let out = pbx_calls(uac_scenario, &d, &[]);
    assert_ok(&out, what);
    let (ok, text) = uas.wait(Duration::from_secs(10));
    assert!(ok, "{what} (callee side): {text}");
    d
}

/// The customer calls +12065550199 from +12065550100.
pub(crate) fn pbx_calls(scenario: &str, d: &Daemon, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "-s",
        "+12065550199",
        "-key",
        "caller",
        "+12065550100",
        "-m",
        "1",
    ];
    args.extend_from_slice(extra);
    sipp_uac(scenario, PBX, d.sip(), &args)
}

pub(crate) fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success() && sipp_counts(out) == (1, 0),
        "{what}: {}",
        out_text(out)
    );
}

pub(crate) fn records(d: &Daemon) -> std::path::PathBuf {
    d.dir.join("var/records")
}

#[test]
fn termination_call_is_relayed_and_recorded() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let d = Daemon::start("term", ports, &lab.config(ports));
    let out = pbx_calls("uac_call.xml", &d, &["-d", "300"]);
    assert_ok(&out, "customer");
    let (ok, text) = uas.wait(Duration::from_secs(10));
    assert!(ok, "carrier: {text}");

    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    let c = &cdrs[0];
    let key = c["_key"].as_str().unwrap();
    assert!(
        key.starts_with("Amazon-Chime-Voice-Connector-CDRs/json/vc-east/"),
        "{key}"
    );
    assert!(
        key.ends_with(&format!("_{}", c["TransactionId"].as_str().unwrap())),
        "{key}"
    );
    assert_eq!(c["Status"], "Completed");
    assert_eq!(c["StatusMessage"], "OK");
    assert_eq!(c["Direction"], "Outbound");
    assert_eq!(c["VoiceConnectorId"], "vc-east");
    assert_eq!(c["SourcePhoneNumber"], "+12065550100");
    assert_eq!(c["SourcePhoneNumberName"], "East Reception");
    assert_eq!(c["DestinationPhoneNumber"], "+12065550199");
    assert_eq!(
        (
            c["SourceCountry"].as_str(),
            c["DestinationCountry"].as_str()
        ),
        (Some("US"), Some("US"))
    );
    assert_eq!(c["UsageType"], "local-US-US-outbound-minutes");
    assert_eq!(c["ServiceCode"], "AmazonChimeVoiceConnector");
    assert_eq!(c["SchemaVersion"], "2.0");
    assert!(c["BillableDurationSeconds"].as_u64().unwrap() >= 1);
    assert!(c["BillableDurationMinutes"].as_f64().unwrap() >= 0.1);
    assert!(
        c["CallId"].as_str().unwrap().contains('@'),
        "the A leg's Call-ID"
    );
    // The CDR is written before the call task has stopped its relay.
    d.wait_metric("sip_engine_calls", 0.0);
    let m = d.metrics();
    let labels = "{voice_connector_id=\"vc-east\",region=\"local\",direction=\"outbound\"}";
    assert_eq!(
        metric_value(&m, &format!("voice_connector_calls_answered_total{labels}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &format!("voice_connector_calls_active{labels}")),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "sip_engine_calls"),
        Some(0.0),
        "every call task ended"
    );
}

#[test]
fn termination_call_over_tcp_on_both_legs() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1", "-t", "t1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ", protocol = \"TCP\""),
        ..Default::default()
    };
    let d = Daemon::start("term-tcp", ports, &lab.config(ports));
    let out = pbx_calls("uac_call.xml", &d, &["-t", "t1", "-d", "200"]);
    assert_ok(&out, "customer over TCP");
    let (ok, text) = uas.wait(Duration::from_secs(10));
    assert!(ok, "carrier over TCP: {text}");
    assert_eq!(wait_cdrs(&records(&d), 1)[0]["Status"], "Completed");
}

#[test]
fn origination_call_reaches_the_numbers_voice_connector() {
    let ports = Ports::pick();
    let route = free_port_on(ROUTES);
    let mut uas = SippBg::uas("uas_answer.xml", ROUTES, route, &["-m", "1"]);
    let east_routes = host(ROUTES, route, "");
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        east_routes: &east_routes,
        ..Default::default()
    };
    let d = Daemon::start("orig", ports, &lab.config(ports));
    let out = sipp_uac(
        "uac_call.xml",
        CARRIER,
        d.sip(),
        &[
            "-s",
            "+12065550100",
            "-key",
            "caller",
            "+14155550123",
            "-m",
            "1",
            "-d",
            "200",
        ],
    );
    assert_ok(&out, "carrier");
    let (ok, text) = uas.wait(Duration::from_secs(10));
    assert!(ok, "customer route: {text}");
    let c = &wait_cdrs(&records(&d), 1)[0];
    assert_eq!(c["Direction"], "Inbound");
    assert_eq!(c["VoiceConnectorId"], "vc-east");
    assert_eq!(c["DestinationPhoneNumber"], "+12065550100");
    assert_eq!(c["SourcePhoneNumber"], "+14155550123");
    assert_eq!(c["UsageType"], "local-US-US-inbound-minutes");
}

#[test]
fn unknown_number_is_404() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("orig404", ports, &lab.config(ports));
    let out = sipp_uac(
        "uac_expect_404.xml",
        CARRIER,
        d.sip(),
        &[
            "-s",
            "+12065550777",
            "-key",
            "caller",
            "+14155550123",
            "-m",
            "1",
        ],
    );
    assert_ok(&out, "404 for a number not in the inventory");
}

/// SPEC §8: authentication failures are counted per source; a source that
/// fails `auth_failures_per_source` times within the window is blocked
/// (dropped, even with the right password) while other sources are served.
#[test]
fn a_source_that_keeps_failing_authentication_is_blocked() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        east_termination: "credentials = [ { username = \"pbx1\", password = \"s3cret\" } ]",
        ..Default::default()
    };
    let text = format!(
        "{}\n[security]\nauth_failures_per_source = 3\nauth_block_seconds = 60\n",
        lab.config(ports)
    );
    let d = Daemon::start("auth-block", ports, &text);
    for i in 0..3 {
        let out = pbx_calls("uac_auth.xml", &d, &["-au", "pbx1", "-ap", "wrong"]);
        assert_eq!(sipp_counts(&out), (0, 1), "attempt {i}: {}", out_text(&out));
    }
    d.wait_metric("sip_sources_blocked_total", 1.0);
    assert_eq!(d.metric("sip_auth_failures_total"), Some(3.0));
    // Blocked: even the right password gets no answer now.
    let out = pbx_calls(
        "uac_auth.xml",
        &d,
        &["-au", "pbx1", "-ap", "s3cret", "-timeout", "3s"],
    );
    assert!(!out.status.success(), "a blocked source gets silence");
    assert!(
        d.metric("sip_requests_refused_total{reason=\"auth_blocked\"}")
            .is_some_and(|n| n >= 1.0),
        "{}",
        d.metrics()
    );
    // Another source is served as before.
    sipp_options(d.sip(), "u1", 1);
}

#[test]
fn digest_challenge_then_success_and_wrong_password_is_403() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        east_termination: "credentials = [ { username = \"pbx1\", password = \"s3cret\" } ]",
        ..Default::default()
    };
    let d = Daemon::start("digest", ports, &lab.config(ports));
    let out = pbx_calls(
        "uac_auth.xml",
        &d,
        &["-au", "pbx1", "-ap", "s3cret", "-d", "100"],
    );
    assert_ok(&out, "407 then success");
    assert!(uas.wait(Duration::from_secs(10)).0);

    let out = pbx_calls("uac_auth.xml", &d, &["-au", "pbx1", "-ap", "wrong"]);
    assert_eq!(
        sipp_counts(&out),
        (0, 1),
        "a wrong password fails the call: {}",
        out_text(&out)
    );
    let m = d.metrics();
    let rejected = "voice_connector_admission_rejections_total{voice_connector_id=\"vc-east\",region=\"local\",reason=\"auth_failed\"}";
    assert_eq!(metric_value(&m, rejected), Some(1.0), "{m}");
    // Both calls reached admission: both have a CDR; the challenge itself
    // is not a call.
    let cdrs = wait_cdrs(&records(&d), 2);
    let mut statuses: Vec<(String, String)> = cdrs
        .iter()
        .map(|c| {
            (
                c["Status"].as_str().unwrap().to_owned(),
                c["StatusMessage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            ("Completed".into(), "OK".into()),
            ("Failed".into(), "Forbidden".into())
        ]
    );
    assert_eq!(
        cdrs.iter().find(|c| c["Status"] == "Completed").unwrap()["SipAuthUser"],
        "pbx1"
    );
}

#[test]
fn a_source_outside_every_cidr_is_refused_403() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("cidr", ports, &lab.config(ports));
    let out = sipp_uac(
        "uac_expect_403.xml",
        STRANGER,
        d.sip(),
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            "1",
        ],
    );
    assert_ok(&out, "403 for a stranger");
}

#[test]
fn cps_limit_throttles_with_503_and_retry_after() {
    use std::net::UdpSocket;
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let text = format!(
        "{}\n[routing]\nhop_timeout_ms = 300\n",
        lab.config(ports)
            .replace("cps_limit = 100", "cps_limit = 2")
    );
    let d = Daemon::start("cps", ports, &text);
    // Five INVITEs within a few milliseconds: the bucket holds 2 (and
    // refills 2/s), so exactly 2 are admitted and 3 get 503 + Retry-After.
    let sock = UdpSocket::bind((PBX, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    for i in 0..5 {
        let invite = raw_invite(me, &format!("z9hG4bK-cps{i}"), &format!("cps{i}"), 70);
        sock.send_to(invite.as_bytes(), d.sip()).unwrap();
    }
    let mut throttled = 0;
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        // Each refused INVITE's 503 counts once (retransmissions aside).
        if text.starts_with("SIP/2.0 503 ") && !text.contains("Retry-After: 5") {
            throttled += 1;
            assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
            if throttled == 3 {
                break;
            }
        }
    }
    assert_eq!(throttled, 3);
    let m = d.metrics();
    let series = "voice_connector_throttles_total{voice_connector_id=\"vc-east\",region=\"local\"}";
    assert_eq!(metric_value(&m, series), Some(3.0), "{m}");

    // The same with SIPp: a burst of 10 at 200 calls/s against an empty
    // bucket; every refused call is a counted throttle.
    std::thread::sleep(Duration::from_millis(1100));
    let out = sipp_uac(
        "uac_call.xml",
        PBX,
        d.sip(),
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            "10",
            "-r",
            "200",
            "-l",
            "10",
            "-timeout",
            "5s",
        ],
    );
    let (ok, failed) = sipp_counts(&out);
    assert_eq!(ok + failed, 10, "{}", out_text(&out));
    assert!(failed >= 7, "{}", out_text(&out));
    let m = d.metrics();
    assert!(metric_value(&m, series).unwrap() >= 3.0 + 7.0, "{m}");
}

/// `[sip] max_transactions`: a finished transaction is kept for its RFC
/// 3261 timers (32 s for an OPTIONS over UDP), so a table of 1,000 fills
/// with 1,000 answered OPTIONS; the next request gets a stateless 503 with
/// Retry-After, the refusal is counted, and /metrics shows the table.
#[test]
fn a_full_transaction_table_answers_503_and_is_counted() {
    use std::net::UdpSocket;
    const LIMIT: usize = 1000;
    let d = udp_options_daemon("txlimit", &format!("max_transactions = {LIMIT}"));
    d.wait_metric("sip_transactions_max", LIMIT as f64);
    let sock = UdpSocket::bind((PBX, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = sock.local_addr().unwrap();
    let options = |i: usize| options_from(me, "tx", i);
    // In batches of 50, each answered before the next: no socket buffer
    // overflows on either side.
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    for batch in 0..LIMIT / 50 {
        for i in batch * 50..(batch + 1) * 50 {
            sock.send_to(options(i).as_bytes(), d.sip()).unwrap();
        }
        for _ in 0..50 {
            let (n, _) = sock.recv_from(&mut buf).expect("an answer to each OPTIONS");
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.starts_with("SIP/2.0 200 "), "{text}");
            answered += 1;
        }
    }
    assert_eq!(answered, LIMIT);
    d.wait_metric("sip_transactions", LIMIT as f64);
    assert_eq!(d.metric("sip_transaction_limit_refusals_total"), Some(0.0));
    // One more: refused statelessly, the table unchanged.
    sock.send_to(options(LIMIT).as_bytes(), d.sip()).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("SIP/2.0 503 "), "{text}");
    assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
    d.wait_metric("sip_transaction_limit_refusals_total", 1.0);
    assert_eq!(d.metric("sip_transactions"), Some(LIMIT as f64));
}

/// A daemon for tests that send raw OPTIONS over UDP: no carrier it could
/// reach, no per-source rate limit, and `sip_line` added to `[sip]`.
fn udp_options_daemon(name: &str, sip_line: &str) -> Daemon {
    let ports = Ports::pick();
    let text = format!(
        "{}\n[security]\nrate_limit_per_source = 0\n",
        Lab {
            hosts: &host(CARRIER, 9, ""),
            ..Default::default()
        }
        .config(ports)
        .replace("[sip]\n", &format!("[sip]\n{sip_line}\n"))
    );
    Daemon::start(name, ports, &text)
}

/// An OPTIONS from `me` whose branch is `z9hG4bK-{tag}{i}` and whose tag
/// and Call-ID are numbered alike.
fn options_from(me: std::net::SocketAddr, tag: &str, i: usize) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}{i}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:pbx@{ip}>;tag={tag}{i}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: {tag}{i}@{ip}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ip = me.ip()
    )
}

/// A burst of UDP datagrams larger than one `recvmmsg` batch, with an
/// oversized one in the middle: every request is answered, each answer
/// carries its own request's branch, and only the oversized datagram is
/// dropped and counted.
#[test]
fn a_burst_of_udp_requests_is_answered_in_full_around_an_oversized_datagram() {
    use std::net::UdpSocket;
    const BURST: usize = 40;
    let d = udp_options_daemon("udpburst", "max_message_bytes = 1024");
    let too_large = |m: &str| {
        metric_value(
            m,
            r#"sip_malformed_messages_total{transport="udp",action="too_large"}"#,
        )
        .unwrap_or(0.0)
    };
    let before = too_large(&d.metrics());
    let sock = UdpSocket::bind((PBX, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = sock.local_addr().unwrap();
    let options = |i: usize| options_from(me, "burst", i);
    let mut huge = options(BURST).into_bytes();
    huge.splice(huge.len() - 2..huge.len() - 2, b"X-Pad: ".iter().copied());
    huge.resize(2000, b'a');
    for i in 0..BURST {
        if i == BURST / 2 {
            sock.send_to(&huge, d.sip()).unwrap();
        }
        sock.send_to(options(i).as_bytes(), d.sip()).unwrap();
    }
    let mut buf = [0u8; 4096];
    let mut branches = std::collections::BTreeSet::new();
    for _ in 0..BURST {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer to each OPTIONS");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.starts_with("SIP/2.0 200 "), "{text}");
        let branch = text
            .split("branch=z9hG4bK-burst")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|b| b.parse::<usize>().ok())
            .expect("the request's branch in the answer");
        branches.insert(branch);
    }
    assert_eq!(branches, (0..BURST).collect(), "one answer per request");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "nothing for the oversized datagram"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while too_large(&d.metrics()) < before + 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(too_large(&d.metrics()), before + 1.0);
}

#[test]
fn carrier_failover_on_503() {
    let ports = Ports::pick();
    let (p1, p2) = (free_port_on(CARRIER), free_port_on(CARRIER));
    let mut first = SippBg::uas("uas_reject_503.xml", CARRIER, p1, &["-m", "1"]);
    let mut second = SippBg::uas("uas_answer.xml", CARRIER, p2, &["-m", "1"]);
    let hosts = format!(
        "{}, {}",
        host(CARRIER, p1, ", priority = 1"),
        host(CARRIER, p2, ", priority = 2")
    );
    let lab = Lab {
        hosts: &hosts,
        ..Default::default()
    };
    let d = Daemon::start("failover503", ports, &lab.config(ports));
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer");
    assert!(
        first.wait(Duration::from_secs(10)).0,
        "first host got the INVITE and answered 503"
    );
    let m = d.metrics();
    let failed_route = format!("route_failures_total{{route=\"{CARRIER}:{p1}/UDP\"}}");
    assert_eq!(metric_value(&m, &failed_route), Some(1.0), "{m}");
    assert_eq!(
        metric_value(&m, &format!("route_up{{route=\"{CARRIER}:{p2}/UDP\"}}")),
        Some(1.0),
        "{m}"
    );
    assert!(metric_value(&m, "voice_connector_sip_responses_total{voice_connector_id=\"vc-east\",region=\"local\",class=\"2xx\"}").is_some(), "{m}");
    assert!(
        second.wait(Duration::from_secs(10)).0,
        "second host answered"
    );
}

#[test]
fn carrier_failover_when_the_first_host_is_silent() {
    let ports = Ports::pick();
    let (p1, p2) = (free_port_on(CARRIER), free_port_on(CARRIER));
    let _silent = SippBg::uas("uas_silent.xml", CARRIER, p1, &["-m", "1"]);
    let mut second = SippBg::uas("uas_answer.xml", CARRIER, p2, &["-m", "1"]);
    let hosts = format!(
        "{}, {}",
        host(CARRIER, p1, ", priority = 1"),
        host(CARRIER, p2, ", priority = 2")
    );
    let lab = Lab {
        hosts: &hosts,
        top: "",
        ..Default::default()
    };
    let text = format!("{}\n[routing]\nhop_timeout_ms = 1000\n", lab.config(ports));
    let d = Daemon::start("failover-timeout", ports, &text);
    let t = Instant::now();
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    let took = t.elapsed();
    assert!(
        out.status.success() && sipp_counts(&out) == (1, 0),
        "customer: {}\ntrunkd log:\n{}",
        out_text(&out),
        d.log_tail(60)
    );
    assert!(
        took >= Duration::from_millis(1000),
        "the first host was given its hop timeout, yet the call took {took:?}; trunkd log:\n{}",
        d.log_tail(60)
    );
    let (ok, text) = second.wait(Duration::from_secs(10));
    assert!(ok, "second host: {text}\ntrunkd log:\n{}", d.log_tail(60));
}

#[test]
fn cancel_before_answer() {
    let d = pbx_to_carrier(
        "cancel",
        "uac_cancel.xml",
        "uas_ring_cancel.xml",
        "the caller cancels while the callee rings",
    );
    let c = &wait_cdrs(&records(&d), 1)[0];
    assert_eq!(c["Status"], "Cancelled");
    assert_eq!(c["BillableDurationSeconds"], 0);
}

#[test]
fn callee_hangs_up() {
    let d = pbx_to_carrier(
        "callee-bye",
        "uac_recv_bye.xml",
        "uas_bye.xml",
        "the callee hangs up, the caller receives BYE",
    );
    assert_eq!(wait_cdrs(&records(&d), 1)[0]["Status"], "Completed");
}

#[test]
fn reinvite_hold_and_resume_are_relayed() {
    pbx_to_carrier(
        "reinvite",
        "uac_reinvite.xml",
        "uas_reinvite.xml",
        "caller holds and resumes; callee sees both re-INVITEs",
    );
}

/// The labels of vc-east's termination calls in the call metrics.
const VC_EAST_OUT: &str =
    "{voice_connector_id=\"vc-east\",region=\"local\",direction=\"outbound\"}";

/// Every malformed input the project knows, sent from strangers' addresses
/// while a call is up (after its 200, before its BYE): the RFC 4475 torture messages, every fuzz seed and
/// regression input (and any local crash file under fuzz/artifacts), the
/// torture messages cut short, seeded random garbage, and the largest
/// datagram UDP carries. Over UDP one datagram each; over TCP one
/// connection each (a bad stream is closed, RFC 3261 §18.3), plus a
/// message over `max_message_bytes`.
#[test]
fn malformed_input_never_disturbs_a_call() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let mut d = Daemon::start("malformed-call", ports, &lab.config(ports));
    let malformed = |m: &str, transport: &str, action: &str| {
        let series = format!(
            "sip_malformed_messages_total{{transport=\"{transport}\",action=\"{action}\"}}"
        );
        metric_value(m, &series).unwrap_or(0.0)
    };
    let before = d.metrics();
    let inputs = malformed_inputs();
    let target = d.sip();
    let admin = d.admin();
    let noise = std::thread::spawn(move || {
        let answered = format!("voice_connector_calls_answered_total{VC_EAST_OUT}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let m = http(admin, "GET", "/metrics")
                .map(|r| r.1)
                .unwrap_or_default();
            if metric_value(&m, &answered) == Some(1.0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let udp = std::net::UdpSocket::bind((STRANGER, 0)).unwrap();
        for input in &inputs {
            let _ = udp.send_to(input, target);
            std::thread::sleep(Duration::from_micros(500));
        }
        for input in &inputs {
            send_over_tcp(target, input);
        }
        let mut huge = b"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nX-Pad: ".to_vec();
        huge.resize(70_000, b'a');
        send_over_tcp(target, &huge);
        let m = http(admin, "GET", "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        (inputs.len(), m)
    });
    let out = pbx_calls("uac_call.xml", &d, &["-d", "8000"]);
    let (sent, during) = noise.join().unwrap();
    assert_eq!(
        metric_value(
            &during,
            &format!("voice_connector_calls_active{VC_EAST_OUT}")
        ),
        Some(1.0),
        "the call was up while all {sent} inputs went in\n{during}"
    );
    assert_ok(&out, "the call survives every malformed input");
    assert!(
        uas.wait(Duration::from_secs(10)).0,
        "the callee side completes"
    );
    assert_eq!(
        wait_cdrs(&records(&d), 1)[0]["Status"],
        "Completed",
        "one call, completed normally"
    );
    assert!(
        d.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "trunkd is still running"
    );
    sipp_options(d.sip(), "u1", 1);
    sipp_options(d.sip(), "t1", 1);
    let after = d.metrics();
    for (transport, action, at_least) in [
        ("udp", "dropped", 50.0),
        ("udp", "rejected", 10.0),
        // Most garbage never frames: trunkd waits for the rest until the
        // connection closes, then counts it as truncated.
        ("tcp", "dropped", 10.0),
        ("tcp", "rejected", 10.0),
        ("tcp", "too_large", 1.0),
        ("tcp", "truncated", 50.0),
    ] {
        let grew = malformed(&after, transport, action) - malformed(&before, transport, action);
        assert!(
            grew >= at_least,
            "{sent} inputs: {transport}/{action} grew by {grew}\n{after}"
        );
    }
}

/// One TCP connection (from 127.0.0.1, a stranger to the lab's config: std
/// cannot pick the source address of a connect): write `input`, half-close,
/// and read until trunkd closes (bounded).
fn send_over_tcp(target: std::net::SocketAddr, input: &[u8]) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
    else {
        return;
    };
    let _ = stream.write_all(input);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Every malformed (or hostile-but-valid) SIP input the project knows.
fn malformed_inputs() -> Vec<Vec<u8>> {
    let repo = repo();
    let mut files = Vec::new();
    let dirs = [
        repo.join("crates/trunkd-sip/tests/rfc4475"),
        repo.join("fuzz/corpus/sip_message"),
        repo.join("fuzz/corpus/sdp_rewrite"),
        repo.join("fuzz/corpus/rtcp_parse"),
        repo.join("fuzz/artifacts/sip_message"),
    ];
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        files.extend(names.into_iter().filter_map(|p| std::fs::read(p).ok()));
    }
    let torture = files.len();
    assert!(torture >= 100, "the corpora are there ({torture} files)");
    let mut inputs = files.clone();
    // Cut short: a header section that never ends, a body that is missing.
    for f in files.iter().take(60) {
        inputs.push(f[..f.len() / 2].to_vec());
        inputs.push(f[..f.len().saturating_sub(1)].to_vec());
    }
    // Seeded garbage (xorshift), printable and binary, up to 2 KB.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..60 {
        let len = (next() % 2048) as usize + 1;
        let mut g: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 {
            g.iter_mut().for_each(|b| *b = b' ' + *b % 95);
            g.splice(0..0, b"INVITE sip:".iter().copied());
        }
        inputs.push(g);
    }
    // The largest UDP payload, of bytes that are no SIP at all.
    inputs.push(vec![0xff; 65_507]);
    inputs
}

#[test]
fn trunkd_answers_a_carriers_digest_challenge() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_auth.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let text = lab.config(ports).replace(
        "source_cidrs = [\"127.0.0.2/32\"]",
        "source_cidrs = [\"127.0.0.2/32\"]\ncredentials = { username = \"gw\", password = \"secret\" }",
    );
    let d = Daemon::start("carrier-auth", ports, &text);
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer");
    let (ok, log) = uas.wait(Duration::from_secs(10));
    assert!(ok, "the carrier verified trunkd's credentials: {log}");
}

/// The messages a SIPp peer received, whole (headers and SDP bodies).
fn received_messages(trace: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter(|block| block.contains("message received"))
        .map(|block| {
            block
                .split_once("\n\n")
                .map(|(_, m)| m)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn neither_side_sees_the_others_addresses() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let dir = temp_dir("topology");
    let carrier_trace = dir.join("carrier.msg");
    let pbx_trace = dir.join("pbx.msg");
    let ct = carrier_trace.to_str().unwrap().to_owned();
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-trace_msg", "-message_file", &ct],
    );
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let d = Daemon::start("topology", ports, &lab.config(ports));
    let out = pbx_calls(
        "uac_call.xml",
        &d,
        &[
            "-d",
            "100",
            "-trace_msg",
            "-message_file",
            pbx_trace.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "customer");
    assert!(uas.wait(Duration::from_secs(10)).0);
    let at_carrier = received_messages(&carrier_trace);
    let at_pbx = received_messages(&pbx_trace);
    assert!(
        at_carrier.len() >= 3 && at_pbx.len() >= 3,
        "{at_carrier:?} {at_pbx:?}"
    );
    // Headers and SDP alike: media is anchored at trunkd's address.
    assert!(
        at_carrier.iter().any(|m| m.contains("c=IN IP4 127.0.0.1")),
        "{at_carrier:?}"
    );
    for h in &at_carrier {
        assert!(!h.contains(PBX), "the carrier saw the PBX's address:\n{h}");
    }
    for h in &at_pbx {
        assert!(
            !h.contains(CARRIER),
            "the PBX saw the carrier's address:\n{h}"
        );
    }
}

#[test]
fn max_forwards_zero_is_483_and_a_merged_request_is_482() {
    use std::net::UdpSocket;
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("loops", ports, &lab.config(ports));
    let sock = UdpSocket::bind((PBX, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = sock.local_addr().unwrap();
    let invite = |branch: &str, mf: u8| raw_invite(me, branch, "loop", mf);
    let final_status = |sock: &UdpSocket| -> u16 {
        let mut buf = [0u8; 4096];
        loop {
            let _ = sock.recv_from(&mut buf).expect("a response");
            let code: u16 = String::from_utf8_lossy(&buf[8..11]).parse().unwrap();
            if code >= 200 {
                return code;
            }
        }
    };
    sock.send_to(invite("z9hG4bK-mf0", 0).as_bytes(), d.sip())
        .unwrap();
    assert_eq!(final_status(&sock), 483);

    // Same Call-ID, From tag and CSeq on a new branch while the first
    // transaction lives: the same request arrived twice by two paths.
    let call_id_fresh = |s: String| s.replace("loop", "merge");
    sock.send_to(call_id_fresh(invite("z9hG4bK-m1", 70)).as_bytes(), d.sip())
        .unwrap();
    sock.send_to(call_id_fresh(invite("z9hG4bK-m2", 70)).as_bytes(), d.sip())
        .unwrap();
    let mut codes = vec![final_status(&sock), final_status(&sock)];
    codes.sort();
    assert!(codes.contains(&482), "{codes:?}");
}

#[test]
fn options_from_a_pbx_is_remembered_per_voice_connector() {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let d = Daemon::start("ping", ports, &lab.config(ports));
    let scenario = repo().join("tests/sipp/options.xml");
    let port = free_port_on(PBX).to_string();
    let out = sipp(&[
        "-sf",
        scenario.to_str().unwrap(),
        "-i",
        PBX,
        "-p",
        &port,
        "-m",
        "1",
        &d.sip().to_string(),
    ]);
    assert!(out.status.success(), "{}", out_text(&out));
    let m = d.metrics();
    let ts = metric_value(&m, "voice_connector_options_last_ping_timestamp_seconds{voice_connector_id=\"vc-east\",region=\"local\"}")
        .unwrap_or_else(|| panic!("{m}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ts).abs() < 60.0, "{ts} vs {now}");
}

#[test]
fn info_and_update_are_relayed_in_dialog() {
    pbx_to_carrier(
        "info-update",
        "uac_info_update.xml",
        "uas_info_update.xml",
        "INFO body and UPDATE offer relayed",
    );
}

#[test]
fn sigterm_hangs_up_calls_in_progress_and_keeps_their_cdrs() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let _uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let mut d = Daemon::start("sigterm-call", ports, &lab.config(ports));
    let target = d.sip();
    // A long call: the daemon stops in its middle.
    let caller = std::thread::spawn(move || {
        sipp_uac(
            "uac_call.xml",
            PBX,
            target,
            &[
                "-s",
                "+12065550199",
                "-key",
                "caller",
                "+12065550100",
                "-m",
                "1",
                "-d",
                "20000",
            ],
        )
    });
    d.wait_metric("voice_connector_calls_answered_total{voice_connector_id=\"vc-east\",region=\"local\",direction=\"outbound\"}", 1.0);
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    let c = cdrs(&records(&d));
    assert_eq!(c.len(), 1, "the call's CDR was written before exit: {c:?}");
    assert_eq!(c[0]["Status"], "Completed");
    let _ = caller.join();
}

#[test]
fn reliable_provisionals_and_prack_are_relayed() {
    pbx_to_carrier(
        "prack",
        "uac_prack.xml",
        "uas_prack.xml",
        "the reliable 183 is PRACKed and the RAck names the callee's own INVITE",
    );
}

#[test]
fn signalling_over_ipv6() {
    let ports = Ports {
        sip: free_port_on("::1"),
        admin: free_port(),
    };
    let carrier = free_port_on("::1");
    let mut uas = SippBg::uas("uas_answer.xml", "::1", carrier, &["-m", "1"]);
    let text = format!(
        r#"
[daemon]
state_dir = "var"
[sip]
udp = ["[::1]:{sip}"]
tcp = ["[::1]:{sip}"]
[admin]
listen = "127.0.0.1:{admin}"
[[carriers]]
id = "carrier-v6"
source_cidrs = ["2001:db8::/32"]
hosts = [ {{ host = "::1", port = {carrier} }} ]
[[voice_connectors]]
id = "vc-v6"
network_type = "DUAL_STACK"
[voice_connectors.termination]
cidr_allowed_list = ["::1/128"]
calling_regions = ["US"]
default_phone_number = "+12065550100"
"#,
        sip = ports.sip,
        admin = ports.admin
    );
    let _d = Daemon::start("ipv6", ports, &text);
    let target: std::net::SocketAddr = format!("[::1]:{}", ports.sip).parse().unwrap();
    for transport in ["u1", "t1"] {
        let scenario = repo().join("tests/sipp/options.xml");
        let port = free_port_on("::1").to_string();
        let out = sipp(&[
            "-sf",
            scenario.to_str().unwrap(),
            "-t",
            transport,
            "-i",
            "::1",
            "-p",
            &port,
            "-m",
            "1",
            &target.to_string(),
        ]);
        assert!(
            out.status.success(),
            "OPTIONS over IPv6 ({transport}): {}",
            out_text(&out)
        );
    }
    let out = sipp_uac(
        "uac_call.xml",
        "::1",
        target,
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "anyone",
            "-m",
            "1",
            "-d",
            "100",
        ],
    );
    assert!(
        out.status.success() && sipp_counts(&out) == (1, 0),
        "a call over IPv6: {}",
        out_text(&out)
    );
    assert!(uas.wait(Duration::from_secs(10)).0);
}

/// trunkd with the default lab, a SIPp carrier answering (its `-m` and
/// other arguments in `uas_args`) and these `[security]` lines.
fn carrier_lab(tag: &str, uas_args: &[&str], security: &str) -> (Daemon, SippBg) {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, uas_args);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let text = format!("{}\n[security]\n{security}", lab.config(ports));
    (Daemon::start(tag, ports, &text), uas)
}

#[test]
fn scanners_are_ignored_and_a_flooding_source_is_throttled_while_calls_go_on() {
    use std::net::UdpSocket;
    let (d, mut uas) = carrier_lab("abuse", &["-m", "1"], "rate_limit_per_source = 20\n");
    let options = |me: std::net::SocketAddr, i: u32, ua: &str| {
        format!(
            "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-scan{i}\r\nMax-Forwards: 70\r\n\
             From: <sip:100@{me}>;tag=s{i}\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: scan{i}@x\r\nCSeq: 1 OPTIONS\r\n\
             User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let scanner = UdpSocket::bind((STRANGER, 0)).unwrap();
    scanner
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = scanner.local_addr().unwrap();
    scanner
        .send_to(options(me, 0, "friendly-scanner").as_bytes(), d.sip())
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        scanner.recv_from(&mut buf).is_err(),
        "a scanner gets silence"
    );

    // 200 OPTIONS at once from one source: 20 (the burst) are answered.
    let flooder = UdpSocket::bind(("127.0.0.6", 0)).unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = flooder.local_addr().unwrap();
    for i in 0..200 {
        flooder
            .send_to(options(me, i, "flood").as_bytes(), d.sip())
            .unwrap();
        // Paced a little so the socket buffer, not trunkd, decides nothing.
        std::thread::sleep(Duration::from_micros(500));
    }
    // Meanwhile the PBX places a call.
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "a legitimate call during the flood");
    assert!(uas.wait(Duration::from_secs(10)).0);
    let mut answered = 0;
    while flooder.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    // The burst of 20, plus what refilled (20/s) while the flood lasted.
    assert!((20..=30).contains(&answered), "{answered} answered");
    let m = d.metrics();
    assert_eq!(
        metric_value(&m, "sip_requests_refused_total{reason=\"scanner\"}"),
        Some(1.0),
        "{m}"
    );
    let refused = metric_value(&m, "sip_requests_refused_total{reason=\"rate_limit\"}").unwrap();
    assert!(
        refused >= 150.0 && refused + answered as f64 <= 200.0,
        "{refused} refused\n{m}"
    );
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_invite_flood_from_one_source_leaves_calls_and_memory_alone() {
    use std::net::UdpSocket;
    const CALLS: u32 = 36;
    let (d, mut uas) = carrier_lab(
        "flood",
        &["-m", &CALLS.to_string(), "-timeout", "40s"],
        "rate_limit_per_source = 100\n",
    );
    let before = rss_kib(d.pid());
    // 10× the allowed rate (1000 INVITEs/s) for 20 s from 127.0.0.6, each
    // a new call, while the PBX places a call every 0.5 s for 18 s, and
    // trunkd's resident memory is sampled every 100 ms.
    let target = d.sip();
    let pid = d.pid();
    let flood = std::thread::spawn(move || {
        let sock = UdpSocket::bind(("127.0.0.6", 0)).unwrap();
        let me = sock.local_addr().unwrap();
        let start = Instant::now();
        let mut i = 0u32;
        let mut peak = 0;
        while start.elapsed() < Duration::from_secs(20) {
            if i.is_multiple_of(100) {
                peak = peak.max(rss_kib(pid));
            }
            let invite = raw_invite(me, &format!("z9hG4bK-fl{i}"), &format!("flood{i}"), 70);
            let _ = sock.send_to(invite.as_bytes(), target);
            i += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        (i, peak)
    });
    let out = sipp_uac(
        "uac_call.xml",
        PBX,
        d.sip(),
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            &CALLS.to_string(),
            "-r",
            "2",
            "-d",
            "200",
            "-timeout",
            "40s",
        ],
    );
    let (sent, peak) = flood.join().unwrap();
    assert!(sent >= 10_000, "the flood ran ({sent} INVITEs)");
    assert!(
        out.status.success() && sipp_counts(&out) == (u64::from(CALLS), 0),
        "legitimate calls during the flood: {}",
        out_text(&out)
    );
    assert!(uas.wait(Duration::from_secs(10)).0);
    let m = d.metrics();
    let refused =
        metric_value(&m, "sip_requests_refused_total{reason=\"rate_limit\"}").unwrap_or(0.0);
    assert!(
        refused >= f64::from(sent) * 0.8,
        "{refused} of {sent} refused\n{m}"
    );
    let after = rss_kib(d.pid());
    // The stated bound: a flood that is refused at the door costs no memory
    // beyond the source table; 64 MiB is far above a quiet daemon's ~15 MiB.
    assert!(
        peak.max(after) < 64 * 1024,
        "RSS peaked at {peak} KiB during the flood, {after} KiB after (was {before} KiB)"
    );
}

#[test]
fn sipvicious_finds_nothing_and_a_call_during_the_scan_completes() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        east_termination: "credentials = [ { username = \"pbx1\", password = \"s3cret\" } ]",
        ..Default::default()
    };
    let d = Daemon::start("sipvicious", ports, &lab.config(ports));
    let port = ports.sip.to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("timeout")
            .arg("60")
            .args(args)
            .output()
            .expect("sipvicious is installed (scripts/test installs it)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let target = d.sip();
    let caller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        sipp_uac(
            "uac_auth.xml",
            PBX,
            target,
            &[
                "-s",
                "+12065550199",
                "-key",
                "caller",
                "+12065550100",
                "-au",
                "pbx1",
                "-ap",
                "s3cret",
                "-m",
                "1",
                "-d",
                "200",
            ],
        )
    });
    let map = run(&["svmap", "127.0.0.1", "-p", &port]);
    assert!(map.contains("found nothing"), "svmap found trunkd:\n{map}");
    let war = run(&[
        "svwar",
        "-e100-120",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        "INVITE",
    ]);
    assert!(
        war.contains("found nothing"),
        "svwar enumerated extensions:\n{war}"
    );
    let out = caller.join().unwrap();
    assert_ok(&out, "a call placed during the scan");
    assert!(uas.wait(Duration::from_secs(10)).0);
    let m = d.metrics();
    assert!(
        metric_value(&m, "sip_requests_refused_total{reason=\"scanner\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
}

/// Places a PBX call lasting `ms` in the background and waits until it is
/// answered; join the handle for SIPp's output.
fn hold_a_call(d: &Daemon, ms: u32) -> std::thread::JoinHandle<std::process::Output> {
    let target = d.sip();
    let ms = ms.to_string();
    let call = std::thread::spawn(move || {
        sipp_uac(
            "uac_call.xml",
            PBX,
            target,
            &[
                "-s",
                "+12065550199",
                "-key",
                "caller",
                "+12065550100",
                "-m",
                "1",
                "-d",
                &ms,
            ],
        )
    });
    d.wait_metric("voice_connector_calls_answered_total{voice_connector_id=\"vc-east\",region=\"local\",direction=\"outbound\"}", 1.0);
    call
}

/// `security.max_calls_per_source`: one source cannot take every call slot.
#[test]
fn one_source_is_capped_at_its_calls_in_progress() {
    let (d, mut uas) = carrier_lab(
        "source-caps",
        &["-m", "2"],
        "max_calls = 100\nmax_calls_per_source = 1\n",
    );
    // Held long enough for the second call to meet it even on a loaded VM.
    let first = hold_a_call(&d, 4000);
    let out = pbx_calls("uac_expect_503.xml", &d, &[]);
    assert_ok(&out, "a second call from the same source gets 503");
    assert_eq!(
        d.metric("sip_requests_refused_total{reason=\"source_call_cap\"}"),
        Some(1.0)
    );
    assert_ok(&first.join().unwrap(), "the first call is untouched");
    // Its slot is free again once it ended: the call's task has stopped its
    // relay and told the engine (a few ms after the PBX saw its BYE answered).
    d.wait_metric("sip_engine_calls", 0.0);
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "a call after the first ended");
    assert!(uas.wait(Duration::from_secs(10)).0);
}

#[test]
fn the_call_cap_answers_503_and_a_source_cannot_hold_every_connection() {
    use std::io::Read;
    let (d, mut uas) = carrier_lab(
        "caps",
        &["-m", "1"],
        "max_calls = 1\nmax_tcp_connections_per_source = 2\n",
    );
    let target = d.sip();
    let first = hold_a_call(&d, 2000);
    let out = pbx_calls("uac_expect_503.xml", &d, &[]);
    assert_ok(
        &out,
        "a second call beyond max_calls gets 503 with Retry-After",
    );
    assert_ok(&first.join().unwrap(), "the first call is untouched");
    assert!(uas.wait(Duration::from_secs(10)).0);

    // Two connections from one source are kept; the third is closed at once.
    let open = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|_| {
                let s = std::net::TcpStream::connect(target).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                s
            })
            .collect()
    };
    let mut conns = open(3);
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = [0u8; 16];
    let closed: Vec<bool> = conns
        .iter_mut()
        .map(|c| matches!(c.read(&mut buf), Ok(0)))
        .collect();
    assert_eq!(
        closed,
        vec![false, false, true],
        "only the third connection is refused"
    );
    let m = d.metrics();
    assert_eq!(
        metric_value(&m, "sip_requests_refused_total{reason=\"call_cap\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "sip_connections_refused_total{transport=\"tcp\"}"),
        Some(1.0),
        "{m}"
    );
}

/// One PBX call through a default lab to a SIPp carrier that traces what
/// it receives: the PBX runs `scenario` with `args`; returns the messages
/// the carrier received, after both sides finished.
fn traced_carrier_call(tag: &str, scenario: &str, args: &[&str]) -> Vec<String> {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let trace = temp_dir(tag).join("carrier.msg");
    let t = trace.to_str().unwrap().to_owned();
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-trace_msg", "-message_file", &t],
    );
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    };
    let d = Daemon::start(tag, ports, &lab.config(ports));
    let out = sipp_uac(scenario, PBX, d.sip(), args);
    assert_ok(&out, tag);
    assert!(uas.wait(Duration::from_secs(10)).0);
    received_messages(&trace)
}

/// The INVITE among `messages`.
fn the_invite(messages: &[String]) -> &str {
    messages
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .map(String::as_str)
        .expect("the carrier got an INVITE")
}

/// Two digest challenges from a source capped at two calls, then its
/// authenticated call: challenges are not calls, so it goes through (it
/// used to get 503 Too Many Calls until restart).
#[test]
fn challenges_leave_the_per_source_call_cap_alone() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier, &["-m", "1"]);
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        east_termination: "credentials = [ { username = \"pbx1\", password = \"s3cret\" } ]",
        ..Default::default()
    };
    let text = format!(
        "{}\n[security]\nmax_calls_per_source = 2\n",
        lab.config(ports)
    );
    let d = Daemon::start("source-cap", ports, &text);
    for _ in 0..2 {
        let out = pbx_calls("uac_expect_407.xml", &d, &[]);
        assert_ok(&out, "challenged");
    }
    let out = pbx_calls(
        "uac_auth.xml",
        &d,
        &["-au", "pbx1", "-ap", "s3cret", "-d", "100"],
    );
    assert_ok(&out, "the authenticated call after two challenges");
    assert!(uas.wait(Duration::from_secs(10)).0);
    let m = d.metrics();
    let attempts = "voice_connector_call_attempts_total{voice_connector_id=\"vc-east\",region=\"local\",direction=\"outbound\"}";
    assert_eq!(
        metric_value(&m, attempts),
        Some(1.0),
        "challenges are not attempts: {m}"
    );
}

/// SPEC §2.2: a group's number is tried on its first VC, then on the next
/// one; the call belongs to the VC that carried it: CDR, answered and
/// active-call counts.
#[test]
fn group_moves_to_its_next_voice_connector_and_records_the_call_there() {
    let ports = Ports::pick();
    let (p1, p2) = (free_port_on(ROUTES), free_port_on(ROUTES));
    let mut east = SippBg::uas("uas_reject_503.xml", ROUTES, p1, &["-m", "1"]);
    let mut west = SippBg::uas("uas_answer.xml", ROUTES, p2, &["-m", "1"]);
    let (er, wr) = (host(ROUTES, p1, ""), host(ROUTES, p2, ""));
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        east_routes: &er,
        west_routes: &wr,
        ..Default::default()
    };
    let d = Daemon::start("group-record", ports, &lab.config(ports));
    let out = sipp_uac(
        "uac_call.xml",
        CARRIER,
        d.sip(),
        &[
            "-s",
            "+12065550101",
            "-key",
            "caller",
            "+14155550123",
            "-m",
            "1",
            "-d",
            "100",
        ],
    );
    assert_ok(&out, "carrier calling the group's number");
    assert!(east.wait(Duration::from_secs(10)).0);
    assert!(west.wait(Duration::from_secs(10)).0);
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs[0]["VoiceConnectorId"], "vc-west", "{cdrs:?}");
    // The CDR is written before the call task has stopped its relay.
    d.wait_metric("sip_engine_calls", 0.0);
    let m = d.metrics();
    let answered = |vc: &str| {
        metric_value(
            &m,
            &format!("voice_connector_calls_answered_total{{voice_connector_id=\"{vc}\",region=\"local\",direction=\"inbound\"}}"),
        )
    };
    assert_eq!(answered("vc-west"), Some(1.0), "{m}");
    assert_eq!(answered("vc-east"), None, "{m}");
    let active = |vc: &str| {
        metric_value(
            &m,
            &format!("voice_connector_calls_active{{voice_connector_id=\"{vc}\",region=\"local\",direction=\"inbound\"}}"),
        )
    };
    assert_eq!(
        (
            active("vc-east").unwrap_or(0.0),
            active("vc-west").unwrap_or(0.0)
        ),
        (0.0, 0.0)
    );
}

/// SPEC §1: the caller's number's `calling_name` is the display name the
/// carrier sees.
#[test]
fn the_calling_name_is_the_display_name_on_the_b_leg() {
    let at_carrier = traced_carrier_call(
        "calling-name",
        "uac_call.xml",
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            "1",
            "-d",
            "100",
        ],
    );
    let invite = the_invite(&at_carrier);
    assert!(
        invite.contains("From: \"East Office\" <sip:+12065550100@"),
        "{invite}"
    );
}

/// SPEC §2.5: an NG911 INVITE (multipart/mixed: SDP and PIDF-LO). The
/// carrier sees trunkd's media address in the SDP part (anchored, no
/// topology leak) and the location part byte for byte, with the
/// Geolocation headers.
#[test]
fn a_multipart_emergency_call_is_anchored_and_its_location_passes_untouched() {
    let at_carrier = traced_carrier_call(
        "ng911",
        "uac_emergency_multipart.xml",
        &[
            "-s", "911", "-key", "caller", "1001", "-m", "1", "-d", "100",
        ],
    );
    let invite = the_invite(&at_carrier);
    assert!(
        invite.contains("Geolocation: <cid:loc1@pbx.example>"),
        "{invite}"
    );
    assert!(invite.contains("Geolocation-Routing: yes"), "{invite}");
    assert!(
        invite.contains("Content-Type: multipart/mixed;boundary=trunkd-ng911-boundary"),
        "{invite}"
    );
    // The SDP part is trunkd's; the PBX's address appears nowhere.
    let (_, sdp_part) = invite
        .split_once("Content-Type: application/sdp")
        .expect("an SDP part");
    let sdp_part = sdp_part
        .split("--trunkd-ng911-boundary")
        .next()
        .unwrap_or_default();
    assert!(sdp_part.contains("c=IN IP4 127.0.0.1"), "{sdp_part}");
    assert!(!invite.contains(PBX), "{invite}");
    // The PIDF-LO part as the PBX sent it (SIPp writes CRLF line ends).
    let pidf =
        std::fs::read_to_string(repo().join("tests/sipp/uac_emergency_multipart.xml")).unwrap();
    let sent = pidf
        .split("Content-ID: <loc1@pbx.example>")
        .nth(1)
        .and_then(|p| p.split("--trunkd-ng911-boundary--").next())
        .unwrap()
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\r\n");
    let got = invite
        .split("Content-ID: <loc1@pbx.example>")
        .nth(1)
        .and_then(|p| p.split("--trunkd-ng911-boundary--").next())
        .unwrap_or_default()
        .replace('\n', "\r\n")
        .replace("\r\r\n", "\r\n");
    assert_eq!(got.trim(), sent.trim());
    // The extension stays the extension (no VC callback number here).
    assert!(invite.contains("From: <sip:1001@"), "{invite}");
}
