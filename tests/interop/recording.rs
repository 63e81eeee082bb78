//! Recording sessions (SPEC §2.6, SIPREC) through the real binary: SIPp
//! plays the recording client (SRC) for the signalling, the test sends the
//! media itself, and the WAV files trunkd writes must hold exactly the
//! G.711 decoding of what was sent.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use trunkd_media::endpoint::g711::{alaw_decode, ulaw_decode};

use crate::calls::{host, records, Lab, CARRIER, PBX};
use crate::support::*;

/// Packets sent per stream (20 ms of audio each).
const PACKETS: u16 = 40;

/// The messages a SIPp peer received, whole, with LF line ends.
pub(crate) fn received(trace: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter(|block| block.contains("message received"))
        .filter_map(|block| block.split_once("\n\n").map(|(_, m)| m.replace('\r', "")))
        .collect()
}

/// Waits (bounded) for the 200 to the INVITE in SIPp's trace; returns its
/// SDP body (LF line ends).
pub(crate) fn wait_answer(trace: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = received(trace).into_iter().find(|m| {
            m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 INVITE") && m.contains("m=audio")
        });
        if let Some(m) = answer {
            // SIPp's trace ends each message with an extra line break.
            let body = m.split_once("\n\n").map_or("", |(_, b)| b);
            return format!("{}\n", body.trim_end());
        }
        assert!(Instant::now() < deadline, "no 200 to the SIPREC INVITE");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `m=` ports of an SDP, in order.
pub(crate) fn m_ports(sdp: &str) -> Vec<u16> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("m=audio "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// One RTP packet of stream `stream`: payload type `pt`, 160 payload bytes
/// that differ per stream and per packet.
pub(crate) fn packet(stream: u8, pt: u8, seq: u16) -> (Vec<u8>, Vec<u8>) {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&(0x5150_0000 + u32::from(stream)).to_be_bytes());
    let payload: Vec<u8> = (0..160u32)
        .map(|i| (i * 3 + u32::from(seq) * 7 + u32::from(stream) * 101) as u8)
        .collect();
    p.extend_from_slice(&payload);
    (p, payload)
}

#[test]
fn a_siprec_session_is_answered_recvonly_and_recorded_to_wav() {
    let ports = Ports::pick();
    // A carrier that would answer, to show it is never asked.
    let carrier = free_port_on(CARRIER);
    let dir = temp_dir("siprec-traces");
    let carrier_trace = dir.join("carrier.msg");
    let pbx_trace = dir.join("src.msg");
    let _carrier = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &[
            "-m",
            "1",
            "-trace_msg",
            "-message_file",
            carrier_trace.to_str().unwrap(),
        ],
    );
    let streaming = "[voice_connectors.streaming]\n\
                     disabled = false\n\
                     data_retention_in_hours = 1\n\
                     sinks = [ { type = \"wav\", directory = \"audio\" } ]\n";
    let lab = Lab {
        hosts: &host(CARRIER, carrier, ""),
        east_termination: streaming,
        ..Default::default()
    };
    let d = Daemon::start("siprec", ports, &lab.config(ports));

    // The SRC: SIPp in the background, holding the session 1.5 s.
    let target = d.sip().to_string();
    let mut src = SippBg::uas(
        "uac_siprec.xml",
        PBX,
        free_port_on(PBX),
        &[
            "-s",
            "srs",
            "-key",
            "caller",
            "src",
            "-m",
            "1",
            "-d",
            "1500",
            "-trace_msg",
            "-message_file",
            pbx_trace.to_str().unwrap(),
            &target,
        ],
    );
    let sdp = wait_answer(&pbx_trace);
    let p = m_ports(&sdp);
    assert_eq!(p.len(), 2, "{sdp}");
    let o_line = sdp.lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        o_line.starts_with("o=trunkd ") && o_line.ends_with(" 1 IN IP4 127.0.0.1"),
        "{sdp}"
    );
    assert_eq!(
        sdp.replace(&o_line, "o=-"),
        format!(
            "v=0\no=-\ns=trunkd\nc=IN IP4 127.0.0.1\nt=0 0\n\
             m=audio {} RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=label:1\na=recvonly\n\
             m=audio {} RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=label:2\na=recvonly\n",
            p[0], p[1]
        )
    );

    // The media, from the SRC's address: PCMU on stream 0, PCMA on 1.
    let rtp = UdpSocket::bind((PBX, 0)).unwrap();
    let mut expected: [Vec<i16>; 2] = [Vec::new(), Vec::new()];
    for seq in 0..PACKETS {
        for (stream, pt) in [(0u8, 0u8), (1, 8)] {
            let (pkt, payload) = packet(stream, pt, seq);
            let to = SocketAddr::from(([127, 0, 0, 1], p[usize::from(stream)]));
            rtp.send_to(&pkt, to).unwrap();
            let decode = if pt == 0 { ulaw_decode } else { alaw_decode };
            expected[usize::from(stream)].extend(payload.iter().map(|b| decode(*b)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    let (ok, text) = src.wait(Duration::from_secs(15));
    assert!(ok, "the SRC's scenario: {text}");
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}\n{}", d.log());
    let c = &cdrs[0];
    assert_eq!(c["Streaming"], true, "{c}");
    assert_eq!(c["Status"], "Completed");
    assert_eq!(c["VoiceConnectorId"], "vc-east");
    assert_eq!(c["DestinationPhoneNumber"], "srs");
    let txn = c["TransactionId"].as_str().unwrap();
    // SPEC §5.2: the recorded session's SDR, joined to its CDR by the
    // TransactionId, under the same key layout.
    let sdrs = sdrs(&records(&d));
    assert_eq!(sdrs.len(), 1, "{sdrs:?}");
    let sdr = &sdrs[0];
    assert_eq!(sdr["TransactionId"], txn);
    assert_eq!(sdr["SchemaVersion"], "1.0");
    assert_eq!(sdr["Status"], "Completed");
    assert_eq!(sdr["StatusMessage"], "Streaming succeeded");
    assert_eq!(sdr["VoiceConnectorId"], "vc-east");
    assert_eq!(sdr["UsageType"], "local-VC-kinesis-audio-streaming");
    assert_eq!(
        sdr["_key"].as_str().unwrap().replace("-SDRs/", "-CDRs/"),
        c["_key"].as_str().unwrap()
    );
    for (stream, samples) in expected.iter().enumerate() {
        let path = d.dir.join("audio").join(format!("{txn}-{stream}.wav"));
        let got = trunkd_media::endpoint::wav::read_wav_file_8k(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), d.log()));
        assert_eq!(got.len(), samples.len(), "stream {stream}");
        assert!(got == *samples, "stream {stream}: samples differ");
    }
    assert_eq!(
        std::fs::read_dir(d.dir.join("audio")).unwrap().count(),
        2,
        "one file per stream"
    );
    assert!(
        received(&carrier_trace).is_empty(),
        "the carrier received: {:?}",
        received(&carrier_trace)
    );
    d.wait_metric("recording_sessions_total{outcome=\"recorded\"}", 1.0);
    d.wait_metric(
        "recording_packets_total{result=\"recorded\"}",
        f64::from(2 * PACKETS),
    );
    d.wait_metric("sip_engine_calls", 0.0);
}

/// A record-only session (`X-Voice-Connector-Record-Only: true`, plain SDP)
/// on a VC with no wav sink: still answered (a recorder never fails the
/// recorded call), media received and counted, nothing written; and with
/// no media left, the inactivity timeout ends it with trunkd's BYE. Its
/// CDR says `Streaming: false`.
#[test]
fn a_record_only_session_without_a_sink_is_answered_counted_and_ended_by_inactivity() {
    use crate::ua::Ua;
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        top: "[media]\ninactivity_timeout_seconds = 1\n",
        ..Default::default()
    };
    let d = Daemon::start("record-only", ports, &lab.config(ports));
    let src = Ua::new(PBX);
    let sdp = src.sdp("sendonly");
    let me = src.sip_addr();
    let trunkd = d.sip();
    let call_id = format!("record-only-{}", std::process::id());
    src.send(
        trunkd,
        &format!(
            "INVITE sip:recorder@{trunkd} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-1;rport\r\nMax-Forwards: 70\r\n\
             From: <sip:src@{PBX}>;tag=src1\r\nTo: <sip:recorder@{trunkd}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:src@{me}>\r\nX-Voice-Connector-Record-Only: true\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    let ok = src.recv_until(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 200)
    });
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    assert!(ok.body().contains("a=recvonly\r\n"), "{}", ok.body());
    let to = ok.header("To").unwrap();
    src.send(
        trunkd,
        &format!(
            "ACK sip:trunkd@{trunkd} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-ack\r\nMax-Forwards: 70\r\n\
             From: <sip:src@{PBX}>;tag=src1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    let answered = ok.sdp_rtp();
    for seq in 0..10 {
        let (pkt, _) = packet(0, 0, seq);
        src.rtp.send_to(&pkt, answered).unwrap();
    }
    // Silence from here: trunkd hangs up after the inactivity timeout.
    let bye = src.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    src.respond(&bye, "200 OK", None);
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{}", d.log());
    assert_eq!(cdrs[0]["Streaming"], false);
    assert_eq!(cdrs[0]["Status"], "Completed");
    // Nothing was configured to stream to: no SDR.
    assert!(sdrs(&records(&d)).is_empty());
    d.wait_metric("recording_sessions_total{outcome=\"not_recorded\"}", 1.0);
    d.wait_metric("recording_packets_total{result=\"unrecorded\"}", 10.0);
    d.wait_metric("recording_packets_total{result=\"recorded\"}", 0.0);
    d.wait_metric("media_inactivity_hangups_total", 1.0);
    let warnings = d
        .log()
        .matches("without an enabled wav streaming sink")
        .count();
    assert_eq!(warnings, 1, "one warning per session");
}
