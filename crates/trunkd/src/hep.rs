//! HEP v3 export (`[hep]`): a copy of every SIP message trunkd receives
//! or sends, with its real addresses and the time it crossed the socket,
//! to a Homer or sngrep collector over UDP.
//!
//! The transports call [`HepExporter::capture`] where they hold the raw
//! bytes, the peer's address and the listener's: that never blocks — a
//! bounded queue feeds one sender thread, and a full queue drops the copy
//! and counts it (`hep_messages_total{result="dropped"}`). Signalling
//! must not wait on monitoring. Encoding is [`trunkd_sip::hep`]'s.
//!
//! RTCP: each call's relay hands the quality stream's RTCP packets (plain,
//! after SRTCP decryption) to an [`RtcpExport`] through the quality
//! observer's tap; they go through the same queue, and the sender thread
//! renders them as the JSON Homer stores for protocol type 5 (see
//! [`rtcp_json`] and docs/hep.md), with the leg's Call-ID as correlation id.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use trunkd_config::HepSettings;
use trunkd_core::quality::{parse_compound, RtcpPacket};
use trunkd_media::{Leg, RtcpTap};
use trunkd_sip::hep::{encode, HepMessage, HepPayload, HepTransport};

use crate::metrics::ResultLabel;

/// Copies waiting for the sender thread; past this they are dropped.
pub const QUEUE_MESSAGES: usize = 8192;

/// One message as it crossed a socket.
pub struct Captured {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: HepTransport,
    pub wall: SystemTime,
    pub bytes: Bytes,
    /// SIP as on the wire, or an RTCP packet (rendered as JSON by the
    /// sender thread, off the media path).
    pub kind: HepPayload,
    /// The Call-ID the message belongs to (RTCP only: a SIP message
    /// carries its own).
    pub correlation_id: Option<Bytes>,
}

/// The transports' side of the queue (cheap to clone: the relays' RTCP
/// taps share it).
#[derive(Clone)]
pub struct HepExporter {
    tx: SyncSender<Captured>,
    counts: Family<ResultLabel, Counter>,
}

impl HepExporter {
    /// Starts the sender thread when `[hep] enabled`; `None` otherwise.
    pub fn start(
        settings: &HepSettings,
        counts: Family<ResultLabel, Counter>,
    ) -> std::io::Result<Option<HepExporter>> {
        if !settings.enabled {
            return Ok(None);
        }
        let any: SocketAddr = if settings.collector.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(any)?;
        sock.connect(settings.collector)?;
        let (tx, rx) = sync_channel(QUEUE_MESSAGES);
        let sender = Sender {
            sock,
            capture_id: settings.capture_id,
            password: settings.password.clone(),
            counts: counts.clone(),
        };
        std::thread::Builder::new()
            .name("hep".into())
            .spawn(move || sender.run(rx))?;
        Ok(Some(HepExporter { tx, counts }))
    }

    /// Queues a copy of a message; never blocks.
    pub fn capture(&self, c: Captured) {
        match self.tx.try_send(c) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped(),
        }
    }

    fn dropped(&self) {
        self.counts
            .get_or_create(&ResultLabel { result: "dropped" })
            .inc();
    }
}

struct Sender {
    sock: UdpSocket,
    capture_id: u32,
    password: Option<String>,
    counts: Family<ResultLabel, Counter>,
}

impl Sender {
    fn run(self, rx: Receiver<Captured>) {
        while let Ok(c) = rx.recv() {
            let result = match self.send(&c) {
                Ok(()) => "sent",
                Err(e) => {
                    tracing::debug!(error = %e, "HEP packet not sent");
                    "dropped"
                }
            };
            self.counts.get_or_create(&ResultLabel { result }).inc();
        }
    }

    fn send(&self, c: &Captured) -> anyhow::Result<()> {
        let since = c.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let json;
        let payload: &[u8] = match c.kind {
            HepPayload::Sip => &c.bytes,
            HepPayload::RtcpJson => {
                json = rtcp_json(&c.bytes).ok_or_else(|| anyhow::anyhow!("not an RTCP packet"))?;
                json.as_bytes()
            }
        };
        let packet = encode(&HepMessage {
            src: c.src,
            dst: c.dst,
            transport: c.transport,
            seconds: since.as_secs() as u32,
            micros: since.subsec_micros(),
            kind: c.kind,
            capture_id: self.capture_id,
            auth_key: self.password.as_deref(),
            correlation_id: c.correlation_id.as_deref(),
            payload,
        })?;
        self.sock.send(&packet)?;
        Ok(())
    }
}

/// A compound RTCP packet as the JSON Homer stores and charts for HEP
/// protocol type 5: the object sipcapture's capture agent (heplify) sends,
/// with its field names — `ssrc`, `type` and `report_count` of the last
/// SR/RR, `sender_information` (`ntp_timestamp_sec`/`_usec` are the NTP
/// timestamp's two words, `packets`, `octets`, `rtp_timestamp`),
/// `report_blocks` (`source_ssrc`, `fraction_lost`, `packets_lost`,
/// `highest_seq_no`, `ia_jitter`, `lsr`, `dlsr`) and `sdes_ssrc`.
/// heplify-server keeps the payload as text (invalid UTF-8 and NUL bytes
/// are dropped), so the binary packet itself would not survive.
///
/// `None` when `pkt` is not a valid compound RTCP packet.
pub fn rtcp_json(pkt: &[u8]) -> Option<String> {
    let compound = parse_compound(pkt).ok()?;
    let mut ssrc = 0u32;
    let mut kind = 0u8;
    let mut count = 0usize;
    let mut info = serde_json::json!({
        "ntp_timestamp_sec": 0, "ntp_timestamp_usec": 0, "rtp_timestamp": 0,
        "packets": 0, "octets": 0,
    });
    let mut blocks = Vec::new();
    let mut sdes_ssrc = 0u32;
    for p in compound.packets() {
        let report = match p {
            RtcpPacket::SenderReport(sr) => {
                let i = sr.sender_info;
                info = serde_json::json!({
                    "ntp_timestamp_sec": (i.ntp_timestamp >> 32) as u32,
                    "ntp_timestamp_usec": i.ntp_timestamp as u32,
                    "rtp_timestamp": i.rtp_timestamp,
                    "packets": i.packet_count,
                    "octets": i.octet_count,
                });
                kind = 200;
                Some((sr.ssrc, sr.blocks))
            }
            RtcpPacket::ReceiverReport(rr) => {
                kind = 201;
                Some((rr.ssrc, rr.blocks))
            }
            RtcpPacket::Other {
                packet_type: 202,
                payload,
                ..
            } => {
                if let Some(b) = payload.get(..4) {
                    sdes_ssrc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                }
                None
            }
            RtcpPacket::Other { .. } => None,
        };
        if let Some((s, report_blocks)) = report {
            ssrc = s;
            blocks.clear();
            for b in report_blocks {
                blocks.push(serde_json::json!({
                    "source_ssrc": b.ssrc,
                    "fraction_lost": b.fraction_lost,
                    // The 24-bit field as sent (heplify's reading).
                    "packets_lost": (b.cumulative_lost as u32) & 0x00ff_ffff,
                    "highest_seq_no": b.extended_highest_seq,
                    "ia_jitter": b.jitter,
                    "lsr": b.lsr,
                    "dlsr": b.dlsr,
                }));
            }
            count = blocks.len();
        }
    }
    let v = serde_json::json!({
        "ssrc": ssrc,
        "type": kind,
        "report_count": count,
        "sender_information": info,
        "report_blocks": blocks,
        "sdes_ssrc": sdes_ssrc,
    });
    Some(v.to_string())
}

/// One call's RTCP export: the relay's quality observer calls
/// [`RtcpTap::rtcp`] for each RTCP packet; this queues a copy on the
/// [`HepExporter`] with the leg's addresses and Call-ID.
///
/// The addresses: the peer's as its SDP gave them (the relay's observer
/// hook does not pass the packet's source; with latching on, a peer
/// behind NAT may send from another address than its SDP names) and
/// trunkd's socket on that leg (the RTP socket's when the peer muxes RTCP).
pub struct RtcpExport {
    hep: HepExporter,
    legs: Mutex<[RtcpLeg; 2]>,
}

#[derive(Debug, Clone, Default)]
struct RtcpLeg {
    call_id: Option<Bytes>,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl RtcpExport {
    /// An export for a call whose A leg has Call-ID `a_call_id`; RTCP on
    /// the B leg carries it too until [`RtcpExport::set_call_id`] names B's.
    pub fn new(hep: HepExporter, a_call_id: Bytes) -> Arc<RtcpExport> {
        let mut legs: [RtcpLeg; 2] = Default::default();
        legs[0].call_id = Some(a_call_id);
        Arc::new(RtcpExport {
            hep,
            legs: Mutex::new(legs),
        })
    }

    /// The Call-ID RTCP on `leg` is correlated with.
    pub fn set_call_id(&self, leg: Leg, call_id: Bytes) {
        if let Ok(mut legs) = self.legs.lock() {
            legs[leg_index(leg)].call_id = Some(call_id);
        }
    }

    /// trunkd's socket facing `leg`'s peer and the peer's RTCP address.
    pub fn set_addrs(&self, leg: Leg, local: SocketAddr, peer: Option<SocketAddr>) {
        if let Ok(mut legs) = self.legs.lock() {
            let l = &mut legs[leg_index(leg)];
            l.local = Some(local);
            l.peer = peer;
        }
    }
}

impl RtcpTap for RtcpExport {
    fn rtcp(&self, from: Leg, pkt: &[u8], _arrival: Instant) {
        let (src, dst, correlation_id) = {
            let Ok(legs) = self.legs.lock() else {
                return;
            };
            let l = &legs[leg_index(from)];
            let dst = l.local.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
            let src = l.peer.unwrap_or_else(|| {
                if dst.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                }
            });
            let id = l.call_id.clone().or_else(|| legs[0].call_id.clone());
            (src, dst, id)
        };
        self.hep.capture(Captured {
            src,
            dst,
            transport: HepTransport::Udp,
            wall: SystemTime::now(),
            bytes: Bytes::copy_from_slice(pkt),
            kind: HepPayload::RtcpJson,
            correlation_id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(collector: SocketAddr) -> HepSettings {
        HepSettings {
            enabled: true,
            collector,
            capture_id: 7,
            password: None,
        }
    }

    /// A collector socket on loopback and an exporter sending to it, with
    /// its counters.
    fn exporter() -> (UdpSocket, Family<ResultLabel, Counter>, HepExporter) {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let counts = Family::<ResultLabel, Counter>::default();
        let hep = HepExporter::start(&settings(collector.local_addr().unwrap()), counts.clone())
            .unwrap()
            .unwrap();
        (collector, counts, hep)
    }

    #[test]
    fn a_captured_message_reaches_the_collector_and_counts_as_sent() {
        let (collector, counts, hep) = exporter();
        let c = Captured {
            src: "127.0.0.1:5060".parse().unwrap(),
            dst: "127.0.0.1:5080".parse().unwrap(),
            transport: HepTransport::Udp,
            wall: UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            bytes: Bytes::from_static(b"OPTIONS sip:a SIP/2.0\r\n\r\n"),
            kind: HepPayload::Sip,
            correlation_id: None,
        };
        let want = encode(&HepMessage {
            src: c.src,
            dst: c.dst,
            transport: HepTransport::Udp,
            seconds: 1_700_000_000,
            micros: 123_456,
            kind: HepPayload::Sip,
            capture_id: 7,
            auth_key: None,
            correlation_id: None,
            payload: &c.bytes,
        })
        .unwrap();
        hep.capture(c);
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &want[..]);
        // The count follows the send on the sender thread.
        for _ in 0..100 {
            if counts.get_or_create(&ResultLabel { result: "sent" }).get() == 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("not counted as sent");
    }

    /// An SR with one report block followed by an SDES: the fields by
    /// hand from the bytes below.
    fn sr_sdes() -> Vec<u8> {
        let mut p = vec![0x81, 200, 0, 12];
        p.extend_from_slice(&0x2222_2222u32.to_be_bytes()); // SSRC
        p.extend_from_slice(&0xE8A1_B2C3_0004_0000u64.to_be_bytes()); // NTP
        p.extend_from_slice(&160u32.to_be_bytes()); // RTP timestamp
        p.extend_from_slice(&50u32.to_be_bytes()); // packets
        p.extend_from_slice(&8000u32.to_be_bytes()); // octets
        p.extend_from_slice(&0x1111_1111u32.to_be_bytes()); // block: source
        p.extend_from_slice(&[64, 0, 0, 3]); // 25 % lost, 3 in all
        p.extend_from_slice(&70_000u32.to_be_bytes()); // highest seq
        p.extend_from_slice(&17u32.to_be_bytes()); // jitter
        p.extend_from_slice(&0xB2C3_0004u32.to_be_bytes()); // LSR
        p.extend_from_slice(&65_536u32.to_be_bytes()); // DLSR
        p.extend_from_slice(&[0x81, 202, 0, 2]);
        p.extend_from_slice(&0x2222_2222u32.to_be_bytes());
        p.extend_from_slice(&[1, 1, b'x', 0]); // CNAME "x", end
        p
    }

    #[test]
    fn rtcp_renders_as_the_json_homer_stores() {
        assert_eq!(
            rtcp_json(&sr_sdes()).unwrap(),
            concat!(
                r#"{"report_blocks":[{"dlsr":65536,"fraction_lost":64,"highest_seq_no":70000,"#,
                r#""ia_jitter":17,"lsr":2999123972,"packets_lost":3,"source_ssrc":286331153}],"#,
                r#""report_count":1,"sdes_ssrc":572662306,"sender_information":{"#,
                r#""ntp_timestamp_sec":3902911171,"ntp_timestamp_usec":262144,"octets":8000,"#,
                r#""packets":50,"rtp_timestamp":160},"ssrc":572662306,"type":200}"#
            )
        );
        assert_eq!(rtcp_json(b"\x80\xc8"), None);
        assert_eq!(rtcp_json(b"INVITE sip:x SIP/2.0"), None);
    }

    #[test]
    fn an_rtcp_packet_goes_out_as_type_5_with_the_legs_call_id() {
        let (collector, _counts, hep) = exporter();
        let export = RtcpExport::new(hep, Bytes::from_static(b"a-leg@pbx"));
        let (local, peer) = (
            "127.0.0.1:20001".parse().unwrap(),
            "127.0.0.3:4001".parse().unwrap(),
        );
        export.set_addrs(Leg::B, local, Some(peer));
        export.set_call_id(Leg::B, Bytes::from_static(b"b-leg@trunkd"));
        let pkt = sr_sdes();
        export.rtcp(Leg::B, &pkt, Instant::now());
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        let got = &buf[..n];
        // The chunks up to the time, then type 5, the capture id, the
        // correlation id and the JSON.
        assert_eq!(
            &got[6..46],
            &[
                0, 0, 0, 1, 0, 7, 2, 0, 0, 0, 2, 0, 7, 17, 0, 0, 0, 3, 0, 10, 127, 0, 0, 3, 0, 0,
                0, 4, 0, 10, 127, 0, 0, 1, 0, 0, 0, 7, 0, 8
            ]
        );
        assert_eq!(&got[46..48], &4001u16.to_be_bytes());
        assert_eq!(&got[48..54], &[0, 0, 0, 8, 0, 8]);
        assert_eq!(&got[54..56], &20001u16.to_be_bytes());
        let json = rtcp_json(&pkt).unwrap();
        let tail: Vec<u8> = [
            &[0u8, 0, 0, 11, 0, 7, 5][..],
            &[0, 0, 0, 12, 0, 10, 0, 0, 0, 7],
            &[0, 0, 0, 17, 0, 18],
            b"b-leg@trunkd",
            &[0, 0, 0, 15],
            &((json.len() + 6) as u16).to_be_bytes(),
            json.as_bytes(),
        ]
        .concat();
        assert!(got.ends_with(&tail), "{got:?}");
    }

    #[test]
    fn disabled_starts_nothing() {
        let mut s = settings("127.0.0.1:9".parse().unwrap());
        s.enabled = false;
        assert!(HepExporter::start(&s, Family::default()).unwrap().is_none());
    }
}
