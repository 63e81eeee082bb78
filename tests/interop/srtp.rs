//! SRTP with SDES keys through the real binary (SPEC §2.4): a customer
//! offering SRTP to a plain-RTP carrier (interworking), keys that never
//! cross legs, the strongest common suite, and require_encryption.

use std::time::Duration;

use trunkd_media::sdes::{CryptoAttr, KeyMaterial};
use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};

use crate::media::{config, metric_lines, CARRIER, PBX};
use crate::support::*;
use crate::ua::*;

fn attr(tag: u32, suite: CryptoSuite) -> CryptoAttr {
    CryptoAttr {
        tag,
        suite,
        key: KeyMaterial::generate(suite).unwrap(),
    }
}

/// The one `a=crypto` value of an SDP answer.
fn answered_crypto(m: &Msg) -> CryptoAttr {
    let lines: Vec<&str> = m
        .body()
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .collect();
    assert_eq!(lines.len(), 1, "one key in an answer:\n{}", m.body());
    CryptoAttr::parse(lines[0]).unwrap()
}

/// The final response to the caller's INVITE (the log on a timeout).
fn final_response(caller: &Ua, d: &Daemon) -> Msg {
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        caller.recv_until(Duration::from_secs(5), |m| {
            m.status().is_some_and(|s| s >= 300)
        })
    }));
    got.unwrap_or_else(|_| panic!("no final response; trunkd log:\n{}", d.log()))
}

#[test]
fn srtp_customer_to_plain_carrier_interworks_with_trunkds_own_key() {
    let ports = Ports::pick();
    let (pbx, carrier) = (Ua::new(PBX), Ua::new(CARRIER));
    let d = Daemon::start(
        "srtp-interwork",
        ports,
        &config(ports, carrier.sip_addr().port(), ""),
    );
    let weak = attr(1, CryptoSuite::Aes128CmHmacSha1_32);
    let strong = attr(2, CryptoSuite::Aes256CmHmacSha1_80);
    let offer = pbx.sdp_with(
        "RTP/SAVP",
        "sendrecv",
        &[
            weak.to_value(),
            strong.to_value(),
            "3 AES_192_CM_HMAC_SHA1_80 inline:x".into(),
        ],
    );
    let (mut dialog, at_carrier, ok) = call_with(
        &pbx,
        &carrier,
        d.sip(),
        "+12065550199",
        "+12065550100",
        &offer,
        &carrier.sdp("sendrecv"),
    );
    assert!(
        at_carrier.body().contains(" RTP/AVP 0 101\r\n") && !at_carrier.body().contains("crypto"),
        "the plain carrier gets a plain offer and no key:\n{}",
        at_carrier.body()
    );
    assert!(ok.body().contains(" RTP/SAVP 0 101\r\n"), "{}", ok.body());
    let ours = answered_crypto(&ok);
    assert_eq!(
        (ours.tag, ours.suite),
        (2, CryptoSuite::Aes256CmHmacSha1_80),
        "the strongest offered"
    );
    assert_ne!(
        ours.key, strong.key,
        "trunkd's own key, not an echo of the PBX's"
    );

    // The PBX's SRTP context: encrypt with its key, decrypt with trunkd's.
    let mut pbx_srtp = LegCrypto::new(&LegKeys {
        suite: ours.suite,
        peer: ours.key.clone(),
        ours: strong.key.clone(),
    })
    .unwrap();
    let b_side = at_carrier.sdp_rtp();
    for seq in 0..50u16 {
        let plain = rtp_packet(seq, u32::from(seq) * 160, 0x5151);
        let wire = pbx_srtp.protect_rtp(&plain).unwrap();
        pbx.rtp.send_to(&wire, dialog.trunkd_rtp).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (got, src) = receive_rtp(&carrier.rtp, 50, Duration::from_secs(5));
    assert_eq!(got.len(), 50, "every SRTP packet reached the carrier");
    assert_eq!(src, Some(b_side));
    assert_eq!(
        got[9],
        rtp_packet(9, 9 * 160, 0x5151),
        "decrypted: the plain packet"
    );

    for seq in 0..50u16 {
        let plain = rtp_packet(seq, u32::from(seq) * 160, 0x6262);
        carrier.rtp.send_to(&plain, b_side).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (got, _) = receive_rtp(&pbx.rtp, 50, Duration::from_secs(5));
    assert_eq!(got.len(), 50);
    assert_ne!(
        got[3],
        rtp_packet(3, 3 * 160, 0x6262),
        "encrypted towards the PBX"
    );
    assert_eq!(
        pbx_srtp.unprotect_rtp(&got[3]).unwrap(),
        rtp_packet(3, 3 * 160, 0x6262),
        "with the key trunkd announced"
    );

    // A forged packet is dropped, not relayed.
    let mut forged = pbx_srtp
        .protect_rtp(&rtp_packet(60, 9600, 0x5151))
        .unwrap()
        .to_vec();
    forged[40] ^= 0x55;
    pbx.rtp.send_to(&forged, dialog.trunkd_rtp).unwrap();
    let (got, _) = receive_rtp(&carrier.rtp, 1, Duration::from_millis(300));
    assert!(got.is_empty(), "a forgery never reaches the carrier");

    hang_up(&pbx, &carrier, &mut dialog, "+12065550100");
    let lines = metric_lines(&d);
    let last = lines.last().expect("a media metric line");
    // Quality is measured after decryption: sequence numbers are right.
    assert_eq!(last["cust2vc_rtp_packets"], 50);
    assert_eq!(
        last["cust2vc_rtp_bytes"],
        50 * 182,
        "wire bytes, as received"
    );
    assert_eq!(last["cust2vc_packets_lost"], 0);
    assert_eq!(last["vc2rem_rtp_packets"], 50);
    assert_eq!(last["vc2rem_rtp_bytes"], 50 * 172);
    assert_eq!(last["vc2cust_rtp_packets"], 50);
    assert_eq!(
        last["vc2cust_rtp_bytes"],
        50 * 182,
        "SRTP adds the 10-byte tag"
    );
    d.wait_metric("media_packets_dropped_total{reason=\"srtp\"}", 1.0);
    d.wait_metric("media_ports_in_use", 0.0);
}

#[test]
fn an_srtp_offer_with_no_supported_suite_is_refused_488() {
    let ports = Ports::pick();
    let (pbx, carrier) = (Ua::new(PBX), Ua::new(CARRIER));
    let d = Daemon::start(
        "srtp-nosuite",
        ports,
        &config(ports, carrier.sip_addr().port(), ""),
    );
    let offer = pbx.sdp_with(
        "RTP/SAVP",
        "sendrecv",
        &[
            "1 AES_192_CM_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyBxdWl0"
                .into(),
        ],
    );
    send_invite(&pbx, d.sip(), "+12065550199", "+12065550100", &offer);
    let r = final_response(&pbx, &d);
    assert_eq!(r.status(), Some(488), "{}", r.text);
}

#[test]
fn a_require_encryption_vc_refuses_a_plain_udp_invite_488() {
    let ports = Ports::pick();
    let (pbx, carrier) = (Ua::new(PBX), Ua::new(CARRIER));
    let d = Daemon::start(
        "srtp-required",
        ports,
        &config(
            ports,
            carrier.sip_addr().port(),
            "require_encryption = true",
        ),
    );
    // Plain RTP over UDP, and SRTP over UDP (no TLS): both refused.
    let key = attr(1, CryptoSuite::Aes128CmHmacSha1_80).to_value();
    for sdp in [
        pbx.sdp("sendrecv"),
        pbx.sdp_with("RTP/SAVP", "sendrecv", &[key]),
    ] {
        send_invite(&pbx, d.sip(), "+12065550199", "+12065550100", &sdp);
        let r = final_response(&pbx, &d);
        assert_eq!(r.status(), Some(488), "{}", r.text);
        assert!(
            r.first_line().contains("Encryption Required"),
            "{}",
            r.first_line()
        );
        // ACK the final response so the transaction ends quietly.
        let ack = format!(
            "ACK sip:+12065550199@{t} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            t = d.sip(),
            via = r.header("Via").unwrap(),
            from = r.header("From").unwrap(),
            to = r.header("To").unwrap(),
            cid = r.header("Call-ID").unwrap(),
        );
        pbx.send(d.sip(), &ack);
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = d.metrics();
    assert!(
        m.contains("encryption_required"),
        "refusal counted by reason"
    );
}

fn offered_crypto(body: &str) -> Vec<CryptoAttr> {
    body.lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| CryptoAttr::parse(v).unwrap())
        .collect()
}

/// SPEC §2.4 with failover: each TLS hop gets an SRTP offer with keys of
/// its own (never the previous hop's), and the hop that answers gets media
/// encrypted with the keys negotiated with it: SDES survives the failover.
#[test]
fn a_failed_over_b_leg_negotiates_fresh_srtp_keys_and_media_uses_them() {
    use crate::tls::{cert_dir, tls_daemon_sections, tls_uas, write_leaf, Ca};
    use std::sync::mpsc;

    let certs = cert_dir("srtp-failover");
    let ca = Ca::new();
    let ca_file = ca.write(&certs);
    let (cert, key) = write_leaf(&certs, "server", &ca.issue(&["127.0.0.1"]));
    let l1 = std::net::TcpListener::bind((CARRIER, 0)).unwrap();
    let l2 = std::net::TcpListener::bind((CARRIER, 0)).unwrap();
    let (p1, p2) = (
        l1.local_addr().unwrap().port(),
        l2.local_addr().unwrap().port(),
    );

    // Hop 1 refuses with 503; hop 2 answers with SRTP and exchanges media.
    let (offers_tx, offers) = mpsc::channel::<String>();
    let tx1 = offers_tx.clone();
    let _hop1 = tls_uas(
        l1,
        ca.issue(&[CARRIER]),
        Duration::from_secs(10),
        |_| {},
        move |m| {
            if !m.first_line().starts_with("INVITE ") {
                return None;
            }
            tx1.send(m.body().to_owned()).unwrap();
            Some(response_to(
                m,
                "503 Service Unavailable",
                "hop1",
                "<sip:c@127.0.0.2>",
                None,
            ))
        },
    );
    let carrier_rtp = std::net::UdpSocket::bind((CARRIER, 0)).unwrap();
    carrier_rtp
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let carrier_key = attr(0, CryptoSuite::AeadAes256Gcm); // tag set from the offer
    let (answer_tx, answers) = mpsc::channel::<(CryptoAttr, CryptoAttr)>();
    let rtp_port = carrier_rtp.local_addr().unwrap().port();
    let contact = format!("<sip:c@127.0.0.2:{p2};transport=tls>");
    let _hop2 = tls_uas(
        l2,
        ca.issue(&[CARRIER]),
        Duration::from_secs(10),
        |_| {},
        move |m| {
            if m.first_line().starts_with("INVITE ") {
                let offer = m.body().to_owned();
                offers_tx.send(offer.clone()).unwrap();
                // Take AEAD_AES_256_GCM, whatever its tag.
                let trunkds = offered_crypto(&offer)
                    .into_iter()
                    .find(|a| a.suite == CryptoSuite::AeadAes256Gcm)
                    .unwrap();
                let mine = CryptoAttr {
                    tag: trunkds.tag,
                    ..carrier_key.clone()
                };
                let sdp = format!(
                "v=0\r\no=c 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio {rtp_port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{}\r\n",
                mine.to_value()
            );
                answer_tx.send((trunkds, mine)).unwrap();
                return Some(response_to(m, "200 OK", "hop2", &contact, Some(&sdp)));
            }
            if m.first_line().starts_with("BYE ") {
                return Some(response_to(m, "200 OK", "hop2", &contact, None));
            }
            None
        },
    );

    let ports = Ports::pick();
    let tls_port = free_port();
    let pbx = Ua::new(PBX);
    let text = tls_daemon_sections(ports, tls_port, &cert, &key, &ca_file)
        + &format!(
            r#"
[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.2/32"]
hosts = [ {{ host = "127.0.0.2", port = {p1}, protocol = "TLS", priority = 1 }}, {{ host = "127.0.0.2", port = {p2}, protocol = "TLS", priority = 2 }} ]
[[voice_connectors]]
id = "vc-east"
[voice_connectors.termination]
cidr_allowed_list = ["127.0.0.3/32"]
calling_regions = ["US"]
[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"
"#
        );
    let d = Daemon::start("srtp-failover", ports, &text);
    send_invite(
        &pbx,
        d.sip(),
        "+12065550199",
        "+12065550100",
        &pbx.sdp("sendrecv"),
    );
    let ok = pbx.recv_until(Duration::from_secs(10), |m| m.status() == Some(200));
    assert!(
        !ok.body().contains("crypto") && ok.body().contains("RTP/AVP"),
        "the PBX stays plain"
    );

    let first = offers.recv_timeout(Duration::from_secs(5)).unwrap();
    let second = offers.recv_timeout(Duration::from_secs(5)).unwrap();
    let (k1, k2) = (offered_crypto(&first), offered_crypto(&second));
    assert!(first.contains("RTP/SAVP") && second.contains("RTP/SAVP"));
    assert_eq!(k1.len(), CryptoSuite::ALL.len(), "{first}");
    assert_eq!(k2.len(), CryptoSuite::ALL.len(), "{second}");
    for (a, b) in k1.iter().zip(&k2) {
        assert_eq!(a.suite, b.suite);
        assert_ne!(a.key, b.key, "hop 2 never sees hop 1's {} key", a.suite);
    }

    // Media: plain from the PBX, SRTP with hop 2's keys to the carrier.
    let (trunkds, mine) = answers.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut carrier_srtp = LegCrypto::new(&LegKeys {
        suite: CryptoSuite::AeadAes256Gcm,
        peer: trunkds.key.clone(),
        ours: mine.key.clone(),
    })
    .unwrap();
    let to_trunkd_a = ok.sdp_rtp();
    for seq in 0..20u16 {
        pbx.rtp
            .send_to(&rtp_packet(seq, u32::from(seq) * 160, 0x7777), to_trunkd_a)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (got, src) = receive_rtp(&carrier_rtp, 20, Duration::from_secs(5));
    assert_eq!(got.len(), 20, "SRTP reached hop 2");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(
            carrier_srtp.unprotect_rtp(p).unwrap(),
            rtp_packet(i as u16, i as u32 * 160, 0x7777),
            "encrypted with the keys offered to hop 2"
        );
    }
    let b_side = src.unwrap();
    for seq in 0..20u16 {
        let wire = carrier_srtp
            .protect_rtp(&rtp_packet(seq, u32::from(seq) * 160, 0x8888))
            .unwrap();
        carrier_rtp.send_to(&wire, b_side).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (got, _) = receive_rtp(&pbx.rtp, 20, Duration::from_secs(5));
    assert_eq!(got.len(), 20);
    assert_eq!(
        got[5],
        rtp_packet(5, 800, 0x8888),
        "decrypted for the plain PBX"
    );
}

/// An even port on `ip` for a second stream.
fn even_socket(ip: &str) -> std::net::UdpSocket {
    loop {
        let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
        if s.local_addr().unwrap().port().is_multiple_of(2) {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            return s;
        }
    }
}

/// Each `m=` section's (port, `a=crypto` values) of an SDP body.
fn sections(body: &str) -> Vec<(u16, Vec<CryptoAttr>)> {
    let mut out: Vec<(u16, Vec<CryptoAttr>)> = Vec::new();
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("m=") {
            let port = rest.split(' ').nth(1).unwrap().parse().unwrap();
            out.push((port, Vec::new()));
        } else if let Some(v) = l.strip_prefix("a=crypto:") {
            out.last_mut()
                .unwrap()
                .1
                .push(CryptoAttr::parse(v).unwrap());
        }
    }
    out
}

#[test]
fn srtp_audio_and_video_each_with_its_own_keys_interwork_with_a_plain_carrier() {
    let ports = Ports::pick();
    let (pbx, carrier) = (Ua::new(PBX), Ua::new(CARRIER));
    let (pbx_video, carrier_video) = (even_socket(PBX), even_socket(CARRIER));
    let d = Daemon::start(
        "srtp-video",
        ports,
        &config(ports, carrier.sip_addr().port(), ""),
    );
    let audio_key = attr(1, CryptoSuite::Aes128CmHmacSha1_80);
    let video_key = attr(1, CryptoSuite::Aes128CmHmacSha1_80);
    let offer = pbx.sdp_with("RTP/SAVP", "sendrecv", &[audio_key.to_value()])
        + &format!(
            "m=video {} RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\na=crypto:{}\r\n",
            pbx_video.local_addr().unwrap().port(),
            video_key.to_value()
        );
    let answer = carrier.sdp("sendrecv")
        + &format!(
            "m=video {} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
            carrier_video.local_addr().unwrap().port()
        );
    let (mut dialog, at_carrier, ok) = call_with(
        &pbx,
        &carrier,
        d.sip(),
        "+12065550199",
        "+12065550100",
        &offer,
        &answer,
    );
    assert!(
        !at_carrier.body().contains("crypto") && at_carrier.body().contains(" RTP/AVP 96\r\n"),
        "the plain carrier gets plain streams and no key:\n{}",
        at_carrier.body()
    );
    let to_pbx = sections(ok.body());
    assert_eq!(to_pbx.len(), 2, "{}", ok.body());
    assert!(to_pbx
        .iter()
        .all(|(port, keys)| *port != 0 && keys.len() == 1));
    let (ours_audio, ours_video) = (&to_pbx[0].1[0], &to_pbx[1].1[0]);
    assert_ne!(ours_audio.key, ours_video.key, "one key per stream");
    let a_video = std::net::SocketAddr::new(dialog.trunkd_rtp.ip(), to_pbx[1].0);
    let b_video =
        std::net::SocketAddr::new(at_carrier.sdp_rtp().ip(), sections(at_carrier.body())[1].0);

    // The PBX's video context: its own key out, trunkd's video key in.
    let mut pbx_srtp = LegCrypto::new(&LegKeys {
        suite: ours_video.suite,
        peer: ours_video.key.clone(),
        ours: video_key.key.clone(),
    })
    .unwrap();
    let video = |seq: u16, ssrc: u32| {
        let mut p = rtp_packet(seq, u32::from(seq) * 3000, ssrc);
        p[1] = 96;
        p
    };
    for seq in 0..30u16 {
        let wire = pbx_srtp.protect_rtp(&video(seq, 0x7171)).unwrap();
        pbx_video.send_to(&wire, a_video).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (got, src) = receive_rtp(&carrier_video, 30, Duration::from_secs(5));
    assert_eq!(got.len(), 30, "every SRTP video packet reached the carrier");
    assert_eq!(src, Some(b_video));
    assert_eq!(got[11], video(11, 0x7171), "decrypted with the video key");
    for seq in 0..30u16 {
        carrier_video.send_to(&video(seq, 0x7272), b_video).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (got, src) = receive_rtp(&pbx_video, 30, Duration::from_secs(5));
    assert_eq!(got.len(), 30);
    assert_eq!(src, Some(a_video));
    assert_eq!(
        pbx_srtp.unprotect_rtp(&got[5]).unwrap(),
        video(5, 0x7272),
        "encrypted towards the PBX with trunkd's video key"
    );
    hang_up(&pbx, &carrier, &mut dialog, "+12065550100");
    d.wait_metric("media_ports_in_use", 0.0);
}
