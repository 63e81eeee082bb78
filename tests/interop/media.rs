//! Media anchored by trunkd (SPEC §2.4, §4, §5.3): RTP and RTCP through the
//! real binary between two in-process test peers, asserting on the packets
//! that arrive, the media metric log line and /metrics.

use std::time::{Duration, Instant};

use crate::support::*;
use crate::ua::*;

pub(crate) const PBX: &str = "127.0.0.3";
pub(crate) const CARRIER: &str = "127.0.0.2";

pub(crate) fn config(ports: Ports, carrier_sip: u16, extra_vc: &str) -> String {
    format!(
        r#"
[daemon]
state_dir = "var"
[sip]
udp = ["127.0.0.1:{sip}"]
tcp = []
[admin]
listen = "127.0.0.1:{admin}"
[logging]
level = "debug"
[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.2/32"]
hosts = [ {{ host = "127.0.0.2", port = {carrier_sip} }} ]
[[voice_connectors]]
id = "vc-east"
{extra_vc}
[voice_connectors.termination]
cidr_allowed_list = ["127.0.0.3/32"]
calling_regions = ["US"]
[voice_connectors.logging]
enable_media_metric_logs = true
[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"
"#,
        sip = ports.sip,
        admin = ports.admin,
    )
}

pub(crate) fn metric_lines(d: &Daemon) -> Vec<serde_json::Value> {
    let path = d.dir.join("var/logs/aws/ChimeVoiceConnectorLogs/vc-east");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `seqs` as paced RTP (clock 8 kHz, `step_ms` apart) to `to`.
fn send_rtp(
    from: &std::net::UdpSocket,
    to: std::net::SocketAddr,
    seqs: impl Iterator<Item = u16>,
    step_ms: u64,
    ssrc: u32,
) -> usize {
    let mut n = 0;
    for seq in seqs {
        from.send_to(
            &rtp_packet(seq, u32::from(seq) * (8 * step_ms as u32), ssrc),
            to,
        )
        .unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(step_ms));
    }
    n
}

#[test]
fn rtp_flows_both_ways_through_trunkds_address_and_is_counted() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let d = Daemon::start(
        "media-flow",
        ports,
        &config(ports, callee.sip_addr().port(), ""),
    );
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let b_side = offer.sdp_rtp();
    assert_eq!(
        b_side.ip().to_string(),
        "127.0.0.1",
        "the carrier is told to send to trunkd"
    );
    assert_eq!(
        dialog.trunkd_rtp.ip().to_string(),
        "127.0.0.1",
        "and so is the PBX"
    );
    assert!(
        !offer.body().contains(PBX),
        "no PBX address in the carrier's SDP:\n{}",
        offer.body()
    );

    let sent = send_rtp(&caller.rtp, dialog.trunkd_rtp, 0..100, 2, 0x1111);
    let (got, src) = receive_rtp(&callee.rtp, sent, Duration::from_secs(5));
    assert_eq!(got.len(), sent, "every packet reached the carrier");
    assert_eq!(src, Some(b_side), "from trunkd's B-side port, not the PBX");
    assert_eq!(got[7], rtp_packet(7, 7 * 16, 0x1111), "payload unchanged");

    let back = send_rtp(&callee.rtp, b_side, 0..100, 2, 0x2222);
    let (got, src) = receive_rtp(&caller.rtp, back, Duration::from_secs(5));
    assert_eq!(got.len(), back);
    assert_eq!(src, Some(dialog.trunkd_rtp));

    hang_up(&caller, &callee, &mut dialog, "+12065550100");
    let lines = metric_lines(&d);
    let last = lines
        .last()
        .expect("a media metric line at the end of the call");
    assert_eq!(last["voice_connector_id"], "vc-east");
    assert_eq!(last["cust2vc_rtp_packets"], 100);
    assert_eq!(last["vc2rem_rtp_packets"], 100);
    assert_eq!(last["rem2vc_rtp_packets"], 100);
    assert_eq!(last["vc2cust_rtp_packets"], 100);
    assert_eq!(last["cust2vc_rtp_bytes"], 17200);
    assert_eq!(last["cust2vc_packets_lost"], 0);
    assert_eq!(last["from_sip_user"], "+12065550100");
    assert_eq!(last["to_sip_user"], "+12065550199");
    assert_eq!(last["to_country"], "US");
    let m = d.metrics();
    let s = "voice_connector_rtp_packets_total{voice_connector_id=\"vc-east\",region=\"local\",direction=\"cust2vc\"}";
    assert_eq!(metric_value(&m, s), Some(100.0), "{m}");
    d.wait_metric("media_ports_in_use", 0.0);
}

#[test]
fn loss_jitter_rtt_and_mos_are_measured() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let d = Daemon::start(
        "media-quality",
        ports,
        &config(ports, callee.sip_addr().port(), ""),
    );
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let b_rtcp = std::net::SocketAddr::new(offer.sdp_rtp().ip(), offer.sdp_rtp().port() + 1);
    let a_rtcp = std::net::SocketAddr::new(dialog.trunkd_rtp.ip(), dialog.trunkd_rtp.port() + 1);

    // 5 % loss: every 20th packet of 200 is never sent (10, 30, … 190: a
    // loss is only seen once a later packet arrives).
    let sent = send_rtp(
        &caller.rtp,
        dialog.trunkd_rtp,
        (0..200u16).filter(|s| s % 20 != 10),
        5,
        0xabc,
    );
    assert_eq!(sent, 190);
    // Then a duplicate and a reordered pair: neither is a loss.
    for seq in [200u16, 200, 202, 201, 203] {
        caller
            .rtp
            .send_to(
                &rtp_packet(seq, u32::from(seq) * 40, 0xabc),
                dialog.trunkd_rtp,
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = sent + 5;
    let (got, _) = receive_rtp(&callee.rtp, sent, Duration::from_secs(5));
    assert_eq!(got.len(), sent);

    // The carrier sends an SR; trunkd relays it to the PBX, whose RR naming
    // it (LSR = the SR's NTP middle 32 bits, DLSR 0) gives trunkd↔PBX RTT.
    let ntp: u64 = 0xE8A1_B2C3_0004_0000;
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0x2222u32.to_be_bytes());
    sr.extend_from_slice(&ntp.to_be_bytes());
    sr.extend_from_slice(&[0u8; 12]);
    callee.rtcp.send_to(&sr, b_rtcp).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = caller
        .rtcp
        .recv_from(&mut buf)
        .expect("the SR is relayed to the PBX");
    assert_eq!(&buf[..n], &sr[..], "RTCP relayed unchanged");
    let lsr = ((ntp >> 16) & 0xffff_ffff) as u32;
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x1111u32.to_be_bytes());
    rr.extend_from_slice(&0x2222u32.to_be_bytes());
    rr.extend_from_slice(&[0, 0, 0, 0]); // fraction lost, cumulative lost
    rr.extend_from_slice(&[0, 0, 0, 0]); // extended highest seq
    rr.extend_from_slice(&[0, 0, 0, 0]); // jitter
    rr.extend_from_slice(&lsr.to_be_bytes());
    rr.extend_from_slice(&0u32.to_be_bytes()); // DLSR
    caller.rtcp.send_to(&rr, a_rtcp).unwrap();
    let _ = callee.rtcp.recv_from(&mut buf);

    hang_up(&caller, &callee, &mut dialog, "+12065550100");
    let lines = metric_lines(&d);
    let l = lines.last().expect("a media metric line");
    assert_eq!(
        l["cust2vc_rtp_packets"], 195,
        "duplicates are received packets too"
    );
    // RFC 3550 A.3: expected (204) − received (195, the duplicate included)
    // = 9: the 10 missing packets less the duplicate; the reordered pair
    // costs nothing.
    assert_eq!(l["cust2vc_packets_lost"], 9, "{l}");
    assert_eq!(l["cust2vc_rtcp_packets"], 1);
    assert_eq!(l["rem2vc_rtcp_packets"], 1);
    let jitter_us = l["cust2vc_jitter"].as_u64().expect("jitter measured");
    assert!(
        jitter_us < 20_000,
        "a paced stream on loopback jitters little: {jitter_us} µs"
    );
    let rtt_us = l["rtt_btwn_vc_and_cust"]
        .as_u64()
        .expect("RTT from the PBX's RR");
    assert!(rtt_us < 1_000_000, "{rtt_us} µs");
    // SPEC §4 by hand, from the line's own figures.
    let latency_ms = rtt_us as f64 / 2000.0 + 2.0 * jitter_us as f64 / 1000.0 + 10.0;
    let mut r = if latency_ms < 160.0 {
        93.2 - latency_ms / 40.0
    } else {
        93.2 - (latency_ms - 120.0) / 10.0
    };
    // Loss as trunkd sees it: lost / (received + lost), duplicates included.
    let lost = l["cust2vc_packets_lost"].as_f64().unwrap();
    r -= 2.5 * 100.0 * lost / (l["cust2vc_rtp_packets"].as_f64().unwrap() + lost);
    let expected = (1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.4);
    let mos = l["mos_btwn_vc_and_cust"]
        .as_f64()
        .expect("MOS with RTT present");
    assert!(
        (mos - expected).abs() < 0.02,
        "MOS {mos} vs formula {expected}"
    );
    assert!(
        l["mos_btwn_vc_and_rem"].is_null(),
        "no RTCP from the carrier's side about us: no RTT, no MOS"
    );
}

#[test]
fn a_peer_behind_nat_is_latched() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let d = Daemon::start(
        "media-nat",
        ports,
        &config(ports, callee.sip_addr().port(), ""),
    );
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    // The PBX's RTP really leaves from another port than its SDP says.
    let natted = std::net::UdpSocket::bind((PBX, 0)).unwrap();
    natted
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    send_rtp(&natted, dialog.trunkd_rtp, 0..20, 2, 0x77);
    let (got, _) = receive_rtp(&callee.rtp, 20, Duration::from_secs(5));
    assert_eq!(got.len(), 20);
    send_rtp(&callee.rtp, offer.sdp_rtp(), 0..20, 2, 0x88);
    let (got, src) = receive_rtp(&natted, 20, Duration::from_secs(5));
    assert_eq!(
        got.len(),
        20,
        "return media goes to where the PBX really sends from"
    );
    assert_eq!(src, Some(dialog.trunkd_rtp));
    hang_up(&caller, &callee, &mut dialog, "+12065550100");
}

#[test]
fn media_inactivity_ends_the_call_with_bye_both_ways() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let text = config(ports, callee.sip_addr().port(), "").replace(
        "[logging]",
        "[media]\ninactivity_timeout_seconds = 1\n[logging]",
    );
    let d = Daemon::start("media-idle", ports, &text);
    let (_dialog, _offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let bye_a = caller.recv_until(Duration::from_secs(8), |m| {
        m.first_line().starts_with("BYE ")
    });
    caller.respond(&bye_a, "200 OK", None);
    let bye_b = callee.recv_until(Duration::from_secs(8), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&bye_b, "200 OK", None);
    d.wait_metric("media_inactivity_hangups_total", 1.0);
    d.wait_metric("media_ports_in_use", 0.0);
}

#[test]
fn sipp_calls_carry_rtp_through_trunkd_both_ways() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas_media = free_port_on(CARRIER).to_string();
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-rtp_echo", "-mp", &uas_media],
    );
    let d = Daemon::start("media-sipp", ports, &config(ports, carrier, ""));
    let uac_media = free_port_on(PBX).to_string();
    let out = sipp_uac(
        "uac_pcap_audio.xml",
        PBX,
        d.sip(),
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            "1",
            "-d",
            "2500",
            "-mp",
            &uac_media,
        ],
    );
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(uas.wait(Duration::from_secs(10)).0);
    let lines = metric_lines(&d);
    let l = lines.last().expect("a media metric line");
    let sent = l["cust2vc_rtp_packets"].as_u64().unwrap();
    assert!(sent > 0, "the PBX's capture reached trunkd: {l}");
    assert_eq!(
        l["vc2rem_rtp_packets"], sent,
        "and all of it went on to the carrier: {l}"
    );
    let echoed = l["rem2vc_rtp_packets"].as_u64().unwrap();
    assert_eq!(echoed, sent, "the carrier's echo came back to trunkd: {l}");
    assert_eq!(l["vc2cust_rtp_packets"], echoed, "and on to the PBX: {l}");
}

#[test]
fn hold_and_resume_move_media_to_the_new_port() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let d = Daemon::start(
        "media-hold",
        ports,
        &config(ports, callee.sip_addr().port(), ""),
    );
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let b_side = offer.sdp_rtp();
    // The callee re-INVITEs (resume after a hold) with media on a new port.
    let moved = std::net::UdpSocket::bind((CARRIER, 0)).unwrap();
    moved
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let new_port = moved.local_addr().unwrap().port();
    let sdp = callee.sdp("sendrecv").replace(
        &format!("m=audio {} ", callee.rtp_addr().port()),
        &format!("m=audio {new_port} "),
    );
    let from = offer.header("To").unwrap();
    let to = offer.header("From").unwrap();
    let call_id = offer.header("Call-ID").unwrap();
    let contact = offer.header("Contact").unwrap();
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let reinvite = format!(
        "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reinv1;rport\r\nMax-Forwards: 70\r\nFrom: {from};tag={tag}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:ua@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        me = callee.sip_addr(),
        tag = callee.tag,
        len = sdp.len()
    );
    callee.send(offer.from, &reinvite);
    let relayed = caller.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("INVITE ")
    });
    caller.respond(&relayed, "200 OK", Some(&caller.sdp("sendrecv")));
    let ok = callee.recv_until(Duration::from_secs(5), |m| {
        m.status() == Some(200) && m.header("CSeq").is_some_and(|c| c.contains("INVITE"))
    });
    assert_eq!(
        ok.sdp_rtp(),
        b_side,
        "trunkd keeps its own port on the carrier's leg"
    );
    let ack = format!(
        "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reinv1ack\r\nMax-Forwards: 70\r\nFrom: {from};tag={tag}\r\nTo: {to2}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        me = callee.sip_addr(),
        tag = callee.tag,
        to2 = ok.header("To").unwrap()
    );
    callee.send(offer.from, &ack);
    caller.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    // The PBX's media now reaches the callee's new port.
    send_rtp(&caller.rtp, dialog.trunkd_rtp, 0..20, 2, 0x99);
    let (got, src) = receive_rtp(&moved, 20, Duration::from_secs(5));
    assert_eq!(got.len(), 20, "media follows the re-INVITE to the new port");
    assert_eq!(src, Some(b_side));
    hang_up(&caller, &callee, &mut dialog, "+12065550100");
}

#[test]
fn strict_latching_ignores_a_stray_source() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let text = config(ports, callee.sip_addr().port(), "")
        .replace("[logging]", "[media]\nstrict_latching = true\n[logging]");
    let d = Daemon::start("media-strict", ports, &text);
    let (mut dialog, _offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    // A stranger on another address sprays the PBX-facing port first.
    let stray = std::net::UdpSocket::bind(("127.0.0.9", 0)).unwrap();
    send_rtp(&stray, dialog.trunkd_rtp, 0..10, 1, 0xbad);
    let (got, _) = receive_rtp(&callee.rtp, 1, Duration::from_millis(500));
    assert!(
        got.is_empty(),
        "nothing from a source the SDP does not name"
    );
    send_rtp(&caller.rtp, dialog.trunkd_rtp, 0..10, 1, 0x600d);
    let (got, _) = receive_rtp(&callee.rtp, 10, Duration::from_secs(5));
    assert_eq!(got.len(), 10, "the real PBX still gets through");
    hang_up(&caller, &callee, &mut dialog, "+12065550100");
}

/// An even port on `ip` for a video stream (RTCP on the next one unused).
fn video_socket(ip: &str) -> std::net::UdpSocket {
    loop {
        let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
        if s.local_addr().unwrap().port().is_multiple_of(2) {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            return s;
        }
    }
}

/// The `m=video` port of an SDP body.
fn video_port(body: &str) -> u16 {
    body.lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=video in\n{body}"))
}

fn video_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = rtp_packet(seq, u32::from(seq) * 3000, ssrc);
    p[1] = 96;
    p.extend_from_slice(&[0x5a; 700]);
    p
}

#[test]
fn audio_and_video_are_both_anchored_each_on_its_own_port() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let (caller_video, callee_video) = (video_socket(PBX), video_socket(CARRIER));
    let d = Daemon::start(
        "media-video",
        ports,
        &config(ports, callee.sip_addr().port(), ""),
    );
    let video = |port: u16| {
        format!("m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendrecv\r\n")
    };
    let offer_sdp = caller.sdp("sendrecv") + &video(caller_video.local_addr().unwrap().port());
    let answer_sdp = callee.sdp("sendrecv") + &video(callee_video.local_addr().unwrap().port());
    let (mut dialog, offer, ok) = call_with(
        &caller,
        &callee,
        d.sip(),
        "+12065550199",
        "+12065550100",
        &offer_sdp,
        &answer_sdp,
    );
    let b_audio = offer.sdp_rtp();
    let b_video = std::net::SocketAddr::new(b_audio.ip(), video_port(offer.body()));
    let a_video = std::net::SocketAddr::new(dialog.trunkd_rtp.ip(), video_port(ok.body()));
    assert_ne!(b_video.port(), 0, "video anchored, not declined");
    assert_ne!(a_video.port(), 0);
    assert_ne!(b_video, b_audio, "video on its own port");
    assert_ne!(a_video, dialog.trunkd_rtp);
    assert!(!offer.body().contains(PBX), "{}", offer.body());
    // Two streams, a pair facing each leg for each.
    assert_eq!(d.metric("media_ports_in_use"), Some(4.0));

    // PBX -> carrier, audio and video interleaved.
    for seq in 0..50u16 {
        caller
            .rtp
            .send_to(
                &rtp_packet(seq, u32::from(seq) * 160, 0x1111),
                dialog.trunkd_rtp,
            )
            .unwrap();
        caller_video
            .send_to(&video_packet(seq, 0x7777), a_video)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (audio, src) = receive_rtp(&callee.rtp, 50, Duration::from_secs(5));
    assert_eq!(audio.len(), 50, "every audio packet reached the carrier");
    assert_eq!(src, Some(b_audio));
    assert_eq!(audio[9], rtp_packet(9, 9 * 160, 0x1111));
    let (vid, src) = receive_rtp(&callee_video, 50, Duration::from_secs(5));
    assert_eq!(vid.len(), 50, "every video packet reached the carrier");
    assert_eq!(src, Some(b_video), "from trunkd's video port");
    assert_eq!(vid[9], video_packet(9, 0x7777));

    // Carrier -> PBX.
    for seq in 0..30u16 {
        callee_video
            .send_to(&video_packet(seq, 0x8888), b_video)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (vid, src) = receive_rtp(&caller_video, 30, Duration::from_secs(5));
    assert_eq!(vid.len(), 30);
    assert_eq!(src, Some(a_video));
    assert_eq!(vid[29], video_packet(29, 0x8888));

    hang_up(&caller, &callee, &mut dialog, "+12065550100");
    // The media metric line is the audio stream's: video is not in it.
    let lines = metric_lines(&d);
    let last = lines.last().expect("a media metric line");
    assert_eq!(last["cust2vc_rtp_packets"], 50);
    assert_eq!(last["cust2vc_rtp_bytes"], 50 * 172);
    assert_eq!(last["vc2rem_rtp_packets"], 50);
    assert_eq!(last["rem2vc_rtp_packets"], 0);
    // All four pairs back after the call.
    d.wait_metric("media_ports_in_use", 0.0);
}

/// Relays fill a relay thread to `[media] relays_per_thread` before the
/// next gets any (docs/decisions.md), and /metrics shows each thread's
/// relays. With a cap of two and two threads, the first two calls share
/// the first thread (spreading would have put the second on the other),
/// and the third call's relay is on the second thread and relays there.
#[test]
fn a_relay_thread_is_filled_before_the_next_and_metrics_show_each_threads_relays() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    // Calls in a row: above the default of one call per second.
    let cfg = config(ports, callee.sip_addr().port(), "").replace(
        "calling_regions = [\"US\"]",
        "calling_regions = [\"US\"]\ncps_limit = 10",
    ) + "[media]\nrelay_threads = 2\nrelays_per_thread = 2\n";
    let d = Daemon::start("media-placement", ports, &cfg);
    let on = |t: u32| format!("media_relay_thread_relays{{thread=\"{t}\"}}");
    let loads = || (d.metric(&on(0)), d.metric(&on(1)));
    assert_eq!(loads(), (Some(0.0), Some(0.0)), "{}", d.metrics());

    let mut dialogs = Vec::new();
    for (n, dialled) in ["+12065550197", "+12065550198"].into_iter().enumerate() {
        let (dialog, _) = call(&caller, &callee, d.sip(), dialled, "+12065550100");
        dialogs.push(dialog);
        d.wait_metric(&on(0), (n + 1) as f64);
        assert_eq!(
            d.metric(&on(1)),
            Some(0.0),
            "the first thread is not full yet"
        );
    }
    let (third, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    d.wait_metric(&on(1), 1.0);
    assert_eq!(d.metric(&on(0)), Some(2.0), "the first thread is full");

    // The second thread relays the third call's media.
    let sent = send_rtp(&caller.rtp, third.trunkd_rtp, 0..20, 2, 0x3333);
    let (got, src) = receive_rtp(&callee.rtp, sent, Duration::from_secs(5));
    assert_eq!(got.len(), sent);
    assert_eq!(src, Some(offer.sdp_rtp()));

    dialogs.push(third);
    for dialog in &mut dialogs {
        hang_up(&caller, &callee, dialog, "+12065550100");
    }
    d.wait_metric(&on(0), 0.0);
    d.wait_metric(&on(1), 0.0);
    d.wait_metric("media_ports_in_use", 0.0);
}
