//! HEP v3 export (`[hep]`) through the real binary: a SIPp call from the
//! PBX through trunkd to the carrier, with a collector socket in the test
//! decoding every HEP3 packet with the decoder below (written from
//! sipcapture's HEP3 chunk table, independent of `trunkd_sip::hep`).
//! Every SIP message of both legs must arrive once at least, with the
//! real addresses, protocol SIP, the capture id, the auth key, and the
//! payload byte-for-byte as SIPp logged it sent or received.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::calls::{assert_ok, host, pbx_calls, Lab, CARRIER, PBX};
use crate::support::*;

/// One decoded HEP3 packet: chunk type -> value (vendor 0 only).
struct Hep {
    chunks: HashMap<u16, Vec<u8>>,
}

impl Hep {
    fn decode(p: &[u8]) -> Hep {
        assert_eq!(&p[..4], b"HEP3", "{p:?}");
        let total = u16::from_be_bytes([p[4], p[5]]) as usize;
        assert_eq!(total, p.len(), "the total length is the datagram's");
        let mut chunks = HashMap::new();
        let mut at = 6;
        while at < total {
            let vendor = u16::from_be_bytes([p[at], p[at + 1]]);
            let kind = u16::from_be_bytes([p[at + 2], p[at + 3]]);
            let len = u16::from_be_bytes([p[at + 4], p[at + 5]]) as usize;
            assert!(len >= 6 && at + len <= total, "chunk {kind} length {len}");
            assert_eq!(vendor, 0);
            chunks.insert(kind, p[at + 6..at + len].to_vec());
            at += len;
        }
        assert_eq!(at, total);
        Hep { chunks }
    }

    fn get(&self, kind: u16) -> &[u8] {
        self.chunks
            .get(&kind)
            .unwrap_or_else(|| panic!("no chunk {kind}"))
    }

    fn u16(&self, kind: u16) -> u16 {
        u16::from_be_bytes(self.get(kind).try_into().unwrap())
    }

    fn u32(&self, kind: u16) -> u32 {
        u32::from_be_bytes(self.get(kind).try_into().unwrap())
    }

    fn v4(&self, kind: u16) -> IpAddr {
        let b: [u8; 4] = self.get(kind).try_into().unwrap();
        IpAddr::V4(Ipv4Addr::from(b))
    }

    fn src(&self) -> SocketAddr {
        SocketAddr::new(self.v4(3), self.u16(7))
    }

    fn dst(&self) -> SocketAddr {
        SocketAddr::new(self.v4(4), self.u16(8))
    }

    fn payload(&self) -> String {
        String::from_utf8(self.get(15).to_vec()).unwrap()
    }

    /// "INVITE", "ACK", "BYE", or the status code with the CSeq method
    /// ("200 BYE").
    fn what(&self) -> String {
        let text = self.payload();
        let first = text.lines().next().unwrap_or("").to_owned();
        match first.strip_prefix("SIP/2.0 ") {
            Some(rest) => {
                let code = rest.split(' ').next().unwrap_or("");
                let method = text
                    .lines()
                    .find_map(|l| l.strip_prefix("CSeq: "))
                    .and_then(|c| c.split(' ').nth(1))
                    .unwrap_or("");
                format!("{code} {method}")
            }
            None => first.split(' ').next().unwrap_or("").to_owned(),
        }
    }
}

/// The collector's packets until both 200s to the BYE are in (the last
/// message of each leg) and then nothing for one read timeout (200 ms), or
/// five seconds. The quiet read matters: a received message is copied by
/// the receiving thread and a sent one by the engine after its `sendto`,
/// so the carrier's 200 can reach the collector just before the copy of
/// the BYE it answers.
fn collect(collector: &UdpSocket, trunkd: SocketAddr) -> Vec<Hep> {
    let mut got: Vec<Hep> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65_536];
    let mut last_seen = false;
    while Instant::now() < deadline {
        let Ok(n) = collector.recv(&mut buf) else {
            if last_seen {
                break;
            }
            continue;
        };
        got.push(Hep::decode(&buf[..n]));
        let ok_to_bye = |from_trunkd: bool| {
            got.iter()
                .any(|h| (h.src().ip() == trunkd.ip()) == from_trunkd && h.what() == "200 BYE")
        };
        last_seen = ok_to_bye(true) && ok_to_bye(false);
    }
    got
}

/// One answered SIPp call through a daemon with `top` (its `[hep]`
/// section) over UDP or TCP on both legs, with each leg's SIPp message log.
struct LoggedCall {
    d: Daemon,
    carrier: SocketAddr,
    /// The PBX's leg (A) and the carrier's (B), as SIPp logged them.
    a_text: String,
    b_text: String,
}

fn logged_call(tag: &str, top: &str, tcp: bool) -> LoggedCall {
    let ports = Ports::pick();
    let carrier_port = free_port_on(CARRIER);
    let dir = temp_dir(&format!("{tag}-sipp"));
    std::fs::create_dir_all(&dir).unwrap();
    let (a_log, b_log) = (
        dir.join("pbx_messages.log"),
        dir.join("carrier_messages.log"),
    );
    let transport: &[&str] = if tcp { &["-t", "t1"] } else { &[] };
    let sipp_args = |log: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = transport.iter().map(|a| a.to_string()).collect();
        v.extend(["-trace_msg".into(), "-message_file".into()]);
        v.push(log.to_str().unwrap().into());
        v
    };
    let b_args = sipp_args(&b_log);
    let mut uas_args = vec!["-m", "1"];
    uas_args.extend(b_args.iter().map(String::as_str));
    let mut uas = SippBg::uas("uas_answer.xml", CARRIER, carrier_port, &uas_args);
    let protocol = if tcp { ", protocol = \"TCP\"" } else { "" };
    let lab = Lab {
        hosts: &host(CARRIER, carrier_port, protocol),
        top,
        ..Default::default()
    };
    let d = Daemon::start(tag, ports, &lab.config(ports));
    let a_args = sipp_args(&a_log);
    let a_args: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let out = pbx_calls("uac_call.xml", &d, &a_args);
    assert_ok(&out, "the call");
    assert!(uas.wait(Duration::from_secs(10)).0);
    LoggedCall {
        d,
        carrier: SocketAddr::new(CARRIER.parse().unwrap(), carrier_port),
        a_text: std::fs::read_to_string(&a_log).unwrap(),
        b_text: std::fs::read_to_string(&b_log).unwrap(),
    }
}

/// Every message of an answered SIPp call through trunkd, as (what, from,
/// to, the SIPp message log of that leg): the PBX's leg (A) and the
/// carrier's (B).
fn call_messages<'a>(
    pbx: SocketAddr,
    trunkd: SocketAddr,
    carrier: SocketAddr,
    a_log: &'a str,
    b_log: &'a str,
) -> Vec<(&'static str, SocketAddr, SocketAddr, &'a str)> {
    vec![
        ("INVITE", pbx, trunkd, a_log),
        ("100 INVITE", trunkd, pbx, a_log),
        ("180 INVITE", trunkd, pbx, a_log),
        ("200 INVITE", trunkd, pbx, a_log),
        ("ACK", pbx, trunkd, a_log),
        ("BYE", pbx, trunkd, a_log),
        ("200 BYE", trunkd, pbx, a_log),
        ("INVITE", trunkd, carrier, b_log),
        ("180 INVITE", carrier, trunkd, b_log),
        ("200 INVITE", carrier, trunkd, b_log),
        ("ACK", trunkd, carrier, b_log),
        ("BYE", trunkd, carrier, b_log),
        ("200 BYE", carrier, trunkd, b_log),
    ]
}

fn hep_top(collector: &UdpSocket) -> String {
    format!(
        "[hep]\nenabled = true\ncollector = \"{}\"\ncapture_id = 2001\npassword = \"hep-pw\"\n",
        collector.local_addr().unwrap()
    )
}

fn collector() -> UdpSocket {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    collector
}

/// Over TCP (both legs), the copies say protocol 6 and carry trunkd's
/// connection ends: the PBX's connection to the listener, and trunkd's
/// own connection (an ephemeral port) to the carrier.
#[test]
fn messages_over_tcp_are_exported_with_the_connection_ends() {
    let collector = collector();
    let LoggedCall {
        d,
        carrier,
        a_text,
        b_text,
    } = logged_call("hep-tcp", &hep_top(&collector), true);
    let trunkd = d.sip();
    let got = collect(&collector, trunkd);
    let find = |what: &str, to: SocketAddr| {
        got.iter()
            .find(|h| h.what() == what && h.dst() == to)
            .unwrap_or_else(|| panic!("{what} to {to} missing"))
    };
    let invite_a = got
        .iter()
        .find(|h| h.what() == "INVITE" && h.dst() == trunkd)
        .expect("the PBX's INVITE");
    let pbx = invite_a.src();
    assert_eq!(pbx.ip(), PBX.parse::<IpAddr>().unwrap());
    let invite_b = find("INVITE", carrier);
    let ours = invite_b.src();
    assert_eq!(ours.ip(), trunkd.ip());
    assert_ne!(ours.port(), trunkd.port(), "an outgoing connection's port");
    let ok_b = find("200 INVITE", ours);
    assert_eq!(ok_b.src(), carrier);
    let ok_a = find("200 INVITE", pbx);
    assert_eq!(ok_a.src(), trunkd);
    for (h, log) in [
        (invite_a, &a_text),
        (ok_a, &a_text),
        (invite_b, &b_text),
        (ok_b, &b_text),
    ] {
        assert_eq!(h.get(2), [6], "TCP");
        assert_eq!(h.get(11), [1], "SIP");
        assert_eq!(h.u32(12), 2001);
        let payload = h.payload();
        assert!(payload.len() > 100 && log.contains(&payload), "{payload:?}");
    }
}

#[test]
fn every_sip_message_of_both_legs_reaches_the_hep_collector() {
    let collector = collector();
    let LoggedCall {
        d,
        carrier,
        a_text,
        b_text,
    } = logged_call("hep", &hep_top(&collector), false);
    let trunkd = d.sip();
    let got = collect(&collector, trunkd);

    let pbx_ip: IpAddr = PBX.parse().unwrap();
    let pbx = got
        .iter()
        .find(|h| h.dst() == trunkd && h.what() == "INVITE" && h.src().ip() == pbx_ip)
        .map(|h| h.src())
        .unwrap_or_else(|| panic!("no INVITE from the PBX among {} packets", got.len()));
    let expected = call_messages(pbx, trunkd, carrier, &a_text, &b_text);
    let seen: Vec<String> = got
        .iter()
        .map(|h| format!("{} {} -> {}", h.what(), h.src(), h.dst()))
        .collect();
    for (what, src, dst, sipp_log) in &expected {
        let h = got
            .iter()
            .find(|h| h.what() == *what && h.src() == *src && h.dst() == *dst)
            .unwrap_or_else(|| panic!("{what} {src} -> {dst} missing from {seen:#?}"));
        assert_eq!(h.get(1), [2], "IPv4");
        assert_eq!(h.get(2), [17], "UDP");
        assert_eq!(h.get(11), [1], "SIP");
        assert_eq!(h.u32(12), 2001, "capture id");
        assert_eq!(h.get(14), b"hep-pw", "auth key");
        let secs = u64::from(h.u32(9));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now - 60 <= secs && secs <= now, "{secs}");
        assert!(h.u32(10) < 1_000_000);
        let payload = h.payload();
        assert!(
            payload.len() > 100 && payload.contains("\r\n\r\n"),
            "{payload:?}"
        );
        assert!(
            sipp_log.contains(&payload),
            "{what} {src} -> {dst}: the payload is not what SIPp logged:\n{payload:?}"
        );
    }
    let sent = d
        .metric("hep_messages_total{result=\"sent\"}")
        .unwrap_or(0.0);
    assert!(sent >= got.len() as f64, "{sent} < {}", got.len());
    assert_eq!(d.metric("hep_messages_total{result=\"dropped\"}"), None);
}

/// RTCP (HEP protocol type 5): during an answered call the callee sends
/// an SR to trunkd's B-leg RTCP port and the caller an RR to its A-leg
/// one; the collector gets each as type 5 with the peer's and trunkd's
/// RTCP addresses, the JSON heplify sends for Homer (fields checked here
/// against the bytes sent, by a decoder independent of trunkd's), and the
/// Call-ID of the leg it crossed as correlation id (0x0011).
#[test]
fn rtcp_reports_of_both_legs_reach_the_collector_with_each_legs_call_id() {
    use crate::ua::{call, hang_up, Ua};
    let collector = collector();
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let text = format!(
        r#"
{hep}
[daemon]
state_dir = "var"
[sip]
udp = ["127.0.0.1:{sip}"]
tcp = []
[admin]
listen = "127.0.0.1:{admin}"
[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.2/32"]
hosts = [ {{ host = "127.0.0.2", port = {carrier} }} ]
[[voice_connectors]]
id = "vc-east"
[voice_connectors.termination]
cidr_allowed_list = ["127.0.0.3/32"]
calling_regions = ["US"]
cps_limit = 100
[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"
"#,
        hep = hep_top(&collector),
        sip = ports.sip,
        admin = ports.admin,
        carrier = callee.sip_addr().port(),
    );
    let d = Daemon::start("hep-rtcp", ports, &text);
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let a_call_id = dialog.call_id.clone();
    let b_call_id = offer.header("Call-ID").unwrap();
    assert_ne!(a_call_id, b_call_id);
    let b_side = offer.sdp_rtp();
    let trunkd_b_rtcp = SocketAddr::new(b_side.ip(), b_side.port() + 1);
    let trunkd_a_rtcp = SocketAddr::new(dialog.trunkd_rtp.ip(), dialog.trunkd_rtp.port() + 1);
    // RTP first, so the relay latches both peers.
    for seq in 0..5u16 {
        let p = crate::ua::rtp_packet(seq, u32::from(seq) * 160, 0x1111);
        caller.rtp.send_to(&p, dialog.trunkd_rtp).unwrap();
        let p = crate::ua::rtp_packet(seq, u32::from(seq) * 160, 0x2222);
        callee.rtp.send_to(&p, b_side).unwrap();
    }
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0x2222u32.to_be_bytes());
    sr.extend_from_slice(&0xE8A1_B2C3_0004_0000u64.to_be_bytes());
    sr.extend_from_slice(&800u32.to_be_bytes());
    sr.extend_from_slice(&5u32.to_be_bytes());
    sr.extend_from_slice(&800u32.to_be_bytes());
    callee.rtcp.send_to(&sr, trunkd_b_rtcp).unwrap();
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x1111u32.to_be_bytes());
    rr.extend_from_slice(&0x2222u32.to_be_bytes());
    rr.extend_from_slice(&[0x20, 0, 0, 2]); // 1/8 lost, 2 in all
    rr.extend_from_slice(&4u32.to_be_bytes()); // highest seq
    rr.extend_from_slice(&12u32.to_be_bytes()); // jitter
    rr.extend_from_slice(&0xB2C3_0004u32.to_be_bytes()); // LSR
    rr.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // DLSR
    caller.rtcp.send_to(&rr, trunkd_a_rtcp).unwrap();

    // The collector: the two type-5 packets (SIP ones are skipped).
    let mut rtcp: Vec<Hep> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65_536];
    while rtcp.len() < 2 && Instant::now() < deadline {
        if let Ok(n) = collector.recv(&mut buf) {
            let h = Hep::decode(&buf[..n]);
            if h.get(11) == [5] {
                rtcp.push(h);
            }
        }
    }
    hang_up(&caller, &callee, &mut dialog, "+12065550100");
    assert_eq!(rtcp.len(), 2, "two RTCP packets exported");
    let sr_hep = rtcp
        .iter()
        .find(|h| h.dst() == trunkd_b_rtcp)
        .expect("the SR on the B leg");
    let rr_hep = rtcp
        .iter()
        .find(|h| h.dst() == trunkd_a_rtcp)
        .expect("the RR on the A leg");
    assert_eq!(sr_hep.src(), callee.rtcp.local_addr().unwrap());
    assert_eq!(rr_hep.src(), caller.rtcp.local_addr().unwrap());
    assert_eq!(sr_hep.get(17), b_call_id.as_bytes(), "B leg's Call-ID");
    assert_eq!(rr_hep.get(17), a_call_id.as_bytes(), "A leg's Call-ID");
    for h in [sr_hep, rr_hep] {
        assert_eq!(h.get(2), [17], "UDP");
        assert_eq!(h.u32(12), 2001, "capture id");
        assert_eq!(h.get(14), b"hep-pw", "auth key");
    }
    let sr_json: serde_json::Value = serde_json::from_slice(sr_hep.get(15)).unwrap();
    assert_eq!(
        sr_json,
        serde_json::json!({
            "ssrc": 0x2222, "type": 200, "report_count": 0, "sdes_ssrc": 0,
            "sender_information": {
                "ntp_timestamp_sec": 0xE8A1_B2C3u32, "ntp_timestamp_usec": 0x0004_0000,
                "rtp_timestamp": 800, "packets": 5, "octets": 800,
            },
            "report_blocks": [],
        })
    );
    let rr_json: serde_json::Value = serde_json::from_slice(rr_hep.get(15)).unwrap();
    assert_eq!(
        rr_json,
        serde_json::json!({
            "ssrc": 0x1111, "type": 201, "report_count": 1, "sdes_ssrc": 0,
            "sender_information": {
                "ntp_timestamp_sec": 0, "ntp_timestamp_usec": 0,
                "rtp_timestamp": 0, "packets": 0, "octets": 0,
            },
            "report_blocks": [{
                "source_ssrc": 0x2222, "fraction_lost": 0x20, "packets_lost": 2,
                "highest_seq_no": 4, "ia_jitter": 12, "lsr": 0xB2C3_0004u32,
                "dlsr": 0x0001_0000,
            }],
        })
    );
    // The exact bytes: the JSON as trunkd renders it (keys sorted).
    assert_eq!(
        std::str::from_utf8(rr_hep.get(15)).unwrap(),
        concat!(
            r#"{"report_blocks":[{"dlsr":65536,"fraction_lost":32,"highest_seq_no":4,"#,
            r#""ia_jitter":12,"lsr":2999123972,"packets_lost":2,"source_ssrc":8738}],"#,
            r#""report_count":1,"sdes_ssrc":0,"sender_information":{"ntp_timestamp_sec":0,"#,
            r#""ntp_timestamp_usec":0,"octets":0,"packets":0,"rtp_timestamp":0},"#,
            r#""ssrc":4369,"type":201}"#
        )
    );
}

/// One SIP message as sngrep wrote it to its pcap: the addresses sngrep
/// decoded from the HEP header, and the SIP text.
struct Dumped {
    src: SocketAddr,
    dst: SocketAddr,
    sip: String,
}

impl Dumped {
    /// "INVITE", "200 BYE": the method, or the status and CSeq method.
    fn what(&self) -> String {
        let first = self.sip.lines().next().unwrap_or("");
        match first.strip_prefix("SIP/2.0 ") {
            Some(rest) => {
                let code = rest.split(' ').next().unwrap_or("");
                let method = self
                    .sip
                    .lines()
                    .find_map(|l| l.strip_prefix("CSeq:"))
                    .and_then(|c| c.split_whitespace().nth(1))
                    .unwrap_or("");
                format!("{code} {method}")
            }
            None => first.split(' ').next().unwrap_or("").to_owned(),
        }
    }
}

/// Reads a classic pcap of Ethernet frames (what sngrep writes), keeping
/// the IPv4/UDP ones.
fn read_pcap(bytes: &[u8]) -> Vec<Dumped> {
    assert!(bytes.len() >= 24, "no pcap header");
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &bytes[at + 16..(at + 16 + incl).min(bytes.len())];
        at += 16 + incl;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let addr = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
        let udp = &ip[ihl..];
        let port = |o: usize| u16::from_be_bytes([udp[o], udp[o + 1]]);
        out.push(Dumped {
            src: SocketAddr::new(IpAddr::V4(addr(12)), port(0)),
            dst: SocketAddr::new(IpAddr::V4(addr(16)), port(2)),
            sip: String::from_utf8_lossy(&udp[8..]).into_owned(),
        });
    }
    out
}

/// sngrep (Debian's) listening for HEP (`-L`), as an operator would point
/// trunkd at it: it decodes trunkd's copies of a call and writes them to a
/// pcap, which holds every message of both legs with the addresses trunkd
/// put in the HEP header and the SIP text SIPp logged.
#[test]
fn sngrep_listening_for_hep_shows_every_message_of_a_call() {
    let listen = free_port_on("127.0.0.1");
    let dir = temp_dir("hep-sngrep");
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("sngrep.pcap");
    let mut sngrep = std::process::Command::new("sngrep")
        .args(["-N", "-q", "-F", "-L"])
        .arg(format!("udp:127.0.0.1:{listen}"))
        .arg("-O")
        .arg(&pcap)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("sngrep.err")).unwrap())
        .spawn()
        .expect("sngrep (Debian package sngrep; scripts/test installs it)");
    // sngrep binds its HEP socket right after start.
    let bound = Instant::now();
    while UdpSocket::bind(("127.0.0.1", listen)).is_ok() {
        assert!(
            bound.elapsed() < Duration::from_secs(10),
            "sngrep never listened on {listen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let top =
        format!("[hep]\nenabled = true\ncollector = \"127.0.0.1:{listen}\"\ncapture_id = 2002\n");
    let LoggedCall {
        d,
        carrier,
        a_text,
        b_text,
    } = logged_call("hep-sngrep", &top, false);
    // Let the last copies reach sngrep, then stop it (SIGTERM: it flushes
    // and closes the pcap).
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(sngrep.id() as i32, libc::SIGTERM) };
    let waited = Instant::now();
    while sngrep.try_wait().unwrap().is_none() {
        if waited.elapsed() > Duration::from_secs(5) {
            let _ = sngrep.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = sngrep.wait();

    let dumped = read_pcap(&std::fs::read(&pcap).expect("sngrep wrote no pcap"));
    let trunkd = d.sip();
    let pbx_ip: IpAddr = PBX.parse().unwrap();
    let seen: Vec<String> = dumped
        .iter()
        .map(|m| format!("{} {} -> {}", m.what(), m.src, m.dst))
        .collect();
    let pbx = dumped
        .iter()
        .find(|m| m.dst == trunkd && m.what() == "INVITE" && m.src.ip() == pbx_ip)
        .map(|m| m.src)
        .unwrap_or_else(|| panic!("no INVITE from the PBX in sngrep's pcap: {seen:#?}"));
    let expected = call_messages(pbx, trunkd, carrier, &a_text, &b_text);
    for (what, src, dst, sipp_log) in &expected {
        let m = dumped
            .iter()
            .find(|m| m.what() == *what && m.src == *src && m.dst == *dst)
            .unwrap_or_else(|| {
                panic!("{what} {src} -> {dst} missing from sngrep's pcap: {seen:#?}")
            });
        // The text sngrep shows is the text SIPp sent or received (SIPp's
        // message log writes each message as it was on the wire).
        let call_id = m
            .sip
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no Call-ID in {:?}", m.sip));
        assert!(
            sipp_log.contains(call_id),
            "{what}: Call-ID {call_id} is not in SIPp's log"
        );
        assert!(m.sip.contains("\r\n\r\n"), "{what}: {:?}", m.sip);
    }
}
