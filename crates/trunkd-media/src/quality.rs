//! The relay's quality observer: RTP receive statistics per leg and RTT
//! per leg from RTCP, with the math of `trunkd_core::quality`.
//!
//! Leg A's numbers are about A's peer: `rx[A]` is what A's peer sent to
//! trunkd (loss and jitter measured here), `reported[A]` is what A's peer
//! said in its report blocks about what trunkd sent to it, and `rtt[A]` the
//! round trip between trunkd and A's peer (see `trunkd_core::quality::rtt`:
//! an SR that arrives on B is forwarded to A; A's report block naming it
//! gives the RTT trunkd↔A).

use std::sync::Arc;
use std::time::{Duration, Instant};

use trunkd_core::quality::{parse_compound, RtcpPacket, RtpRxStats, SrLog};

use crate::relay::{Leg, PacketObserver};

/// RTP clock rate when the payload type's is not known: 8 kHz is every
/// narrowband codec and RFC 4733 events in practice.
const DEFAULT_CLOCK_RATE: u32 = 8000;

/// What a peer reported about the stream trunkd sends it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerReport {
    pub cumulative_lost: u64,
    /// In RTP timestamp units.
    pub jitter: u32,
}

/// Gets a copy of every RTCP packet the observer sees (the quality
/// stream's, plain: after SRTCP decryption), for export such as HEP.
///
/// Runs on the relay's task: it must not block. It is called only when
/// set, so a call without one costs the `None` check.
pub trait RtcpTap: Send + Sync + 'static {
    fn rtcp(&self, from: Leg, pkt: &[u8], arrival: Instant);
}

/// A shared [`RtcpTap`]; the observer is cloned for every stats snapshot,
/// so the tap is behind an `Arc`.
#[derive(Clone)]
pub struct SharedRtcpTap(pub Arc<dyn RtcpTap>);

impl std::fmt::Debug for SharedRtcpTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtcpTap")
    }
}

#[derive(Debug, Clone, Default)]
pub struct QualityObserver {
    rx: [Received; 2],
    /// SRs that arrived from each leg (and were forwarded to the other).
    forwarded_srs: [SrLog; 2],
    rtt: [Option<Duration>; 2],
    reported: [Option<PeerReport>; 2],
    /// Payload type → clock rate, from the SDP (static types otherwise).
    clock_rates: Vec<(u8, u32)>,
    /// Where RTCP copies go (HEP export), when enabled.
    rtcp_tap: Option<SharedRtcpTap>,
}

/// What an RTP packet from one leg updates: in two cache lines, aligned,
/// with the statistics' hot fields first (see [`RtpRxStats`]); a relay
/// thread carries hundreds of calls, and the lines a packet touches are
/// what its cost grows with (`relay.rs`, `Side`).
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
struct Received {
    /// The payload type last received.
    last_pt: Option<u8>,
    /// `last_pt`'s clock rate: a stream keeps its payload type, so the
    /// list (on the heap) is searched only when the type changes, not for
    /// every packet.
    last_rate: u32,
    stats: RtpRxStats,
}

fn idx(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl QualityObserver {
    pub fn new(clock_rates: Vec<(u8, u32)>) -> Self {
        QualityObserver {
            clock_rates,
            ..Default::default()
        }
    }

    /// Hands every RTCP packet observed to `tap` as well.
    pub fn with_rtcp_tap(mut self, tap: Arc<dyn RtcpTap>) -> Self {
        self.rtcp_tap = Some(SharedRtcpTap(tap));
        self
    }

    fn clock_rate(&self, pt: u8) -> u32 {
        self.clock_rates
            .iter()
            .find(|(p, _)| *p == pt)
            .map_or(DEFAULT_CLOCK_RATE, |(_, r)| *r)
    }

    /// Receive statistics of what `leg`'s peer sent to trunkd.
    pub fn received(&self, leg: Leg) -> &RtpRxStats {
        &self.rx[idx(leg)].stats
    }

    /// Round trip between trunkd and `leg`'s peer, once it sent RTCP.
    pub fn rtt(&self, leg: Leg) -> Option<Duration> {
        self.rtt[idx(leg)]
    }

    /// What `leg`'s peer reported about the stream it receives from trunkd.
    pub fn reported(&self, leg: Leg) -> Option<PeerReport> {
        self.reported[idx(leg)]
    }

    /// The jitter a peer reported, in µs (its clock rate is the stream's).
    pub fn reported_jitter_us(&self, leg: Leg) -> Option<u64> {
        let r = self.reported(leg)?;
        // The stream that peer receives is the one the other leg sends.
        let rate = self.rx[idx(leg.other())]
            .last_pt
            .map_or(DEFAULT_CLOCK_RATE, |pt| self.clock_rate(pt));
        Some(u64::from(r.jitter) * 1_000_000 / u64::from(rate.max(1)))
    }
}

impl PacketObserver for QualityObserver {
    /// The SDP's `a=rtpmap` rates replace the list: a dynamic payload type
    /// (opus at 48 kHz, AMR-WB at 16 kHz) is then measured at its own rate,
    /// not the 8 kHz default, so jitter in µs comes out right.
    fn set_clock_rates(&mut self, rates: &[(u8, u32)]) {
        self.clock_rates.clear();
        self.clock_rates
            .extend(rates.iter().filter(|(_, r)| *r > 0).copied());
        for i in 0..2 {
            if let Some(pt) = self.rx[i].last_pt {
                self.rx[i].last_rate = self.clock_rate(pt);
            }
        }
    }

    fn on_rtp(&mut self, from: Leg, pkt: &[u8], arrival: Instant) {
        // RFC 3550 §5.1 fixed header: V=2, then PT, sequence, timestamp, SSRC.
        if pkt.len() < 12 || pkt[0] >> 6 != 2 {
            return;
        }
        let pt = pkt[1] & 0x7f;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let i = idx(from);
        let rate = if self.rx[i].last_pt == Some(pt) {
            self.rx[i].last_rate
        } else {
            let rate = self.clock_rate(pt);
            let rx = &mut self.rx[i];
            rx.last_pt = Some(pt);
            rx.last_rate = rate;
            rate
        };
        self.rx[i]
            .stats
            .on_packet(ssrc, seq, ts, arrival, rate, pkt.len());
    }

    fn on_rtcp(&mut self, from: Leg, pkt: &[u8], arrival: Instant) {
        if let Some(tap) = &self.rtcp_tap {
            tap.0.rtcp(from, pkt, arrival);
        }
        let Ok(compound) = parse_compound(pkt) else {
            return;
        };
        let i = idx(from);
        for p in compound.packets() {
            let blocks = match p {
                RtcpPacket::SenderReport(sr) => {
                    self.forwarded_srs[i].record(sr.sender_info.ntp_middle32(), arrival);
                    sr.blocks
                }
                RtcpPacket::ReceiverReport(rr) => rr.blocks,
                RtcpPacket::Other { .. } => continue,
            };
            // Blocks from `from`'s peer are about streams trunkd sent it,
            // i.e. the other peer's forwarded ones: their LSR names an SR
            // that came from the other leg.
            for b in blocks {
                if let Some(rtt) = self.forwarded_srs[1 - i].rtt_for_block(b.lsr, b.dlsr, arrival) {
                    self.rtt[i] = Some(rtt);
                }
                self.reported[i] = Some(PeerReport {
                    cumulative_lost: b.cumulative_lost.max(0) as u64,
                    jitter: b.jitter,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet's receive state is two cache lines: `Received` is aligned
    /// to one, and what a packet touches of it (the payload type's rate,
    /// the jitter, the counts, the sequence window: the first 96 bytes of
    /// `RtpRxStats`) ends before its second line does.
    #[test]
    fn a_packets_receive_state_is_two_lines() {
        assert_eq!(std::mem::align_of::<Received>(), 64);
        assert!(std::mem::offset_of!(Received, stats) + 96 <= 128);
    }

    fn rtp(pt: u8, seq: u16, ts: u32) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = pt;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&0x0101_0101u32.to_be_bytes());
        p
    }

    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<(Leg, Vec<u8>)>>);

    impl RtcpTap for Seen {
        fn rtcp(&self, from: Leg, pkt: &[u8], _arrival: Instant) {
            self.0.lock().unwrap().push((from, pkt.to_vec()));
        }
    }

    /// The tap gets every RTCP packet as observed (even one the quality
    /// math cannot parse), and none of the RTP.
    #[test]
    fn the_rtcp_tap_sees_each_rtcp_packet_with_its_leg() {
        let seen = Arc::new(Seen::default());
        let mut o = QualityObserver::default().with_rtcp_tap(seen.clone());
        let t0 = Instant::now();
        let rr = [0x80, 201, 0, 1, 0, 0, 0x11, 0x11];
        o.on_rtp(Leg::A, &rtp(0, 1, 160), t0);
        o.on_rtcp(Leg::B, &rr, t0);
        o.on_rtcp(Leg::A, b"junk", t0);
        let got = seen.0.lock().unwrap().clone();
        assert_eq!(got, vec![(Leg::B, rr.to_vec()), (Leg::A, b"junk".to_vec())]);
        // A snapshot clone shares the tap.
        let mut copy = o.clone();
        copy.on_rtcp(Leg::A, &rr, t0);
        assert_eq!(seen.0.lock().unwrap().len(), 3);
    }

    /// AMR-WB (PT 97, 16 kHz), 20 ms frames (320 ticks), arriving at 0,
    /// 20, 50 and 60 ms. By hand (RFC 3550 §6.4.1, J += (|D| − J)/16):
    /// D₂ = 20 ms·16 kHz − 320 = 0 → J = 0; D₃ = 480 − 320 = 160 → J = 10;
    /// D₄ = 160 − 320 = −160 → J = 10 + 150/16 = 19.375 ticks
    /// = 19.375 / 16000 s = 1210.9375 µs.
    fn feed(o: &mut QualityObserver) {
        feed_at(o, Instant::now(), 0);
    }

    /// `feed`'s four packets from `t0`, numbered from `seq0`.
    fn feed_at(o: &mut QualityObserver, t0: Instant, seq0: u16) {
        for (i, ms) in [0u64, 20, 50, 60].into_iter().enumerate() {
            let pkt = rtp(97, seq0 + i as u16, 1000 + 320 * i as u32);
            o.on_rtp(Leg::A, &pkt, t0 + Duration::from_millis(ms));
        }
    }

    #[test]
    fn dynamic_payload_type_is_measured_at_its_sdp_clock_rate() {
        let mut o = QualityObserver::default();
        o.set_clock_rates(&[(96, 48000), (97, 16000)]);
        feed(&mut o);
        assert_eq!(o.received(Leg::A).jitter_ts(), 19);
        assert_eq!(o.received(Leg::A).jitter_us(), 1211);
    }

    /// The rates can arrive after the stream started (the answer's SDP):
    /// packets of the type already flowing are measured at the new rate.
    #[test]
    fn rates_set_mid_stream_apply_to_the_payload_type_already_flowing() {
        let mut o = QualityObserver::default();
        let t0 = Instant::now();
        o.on_rtp(Leg::A, &rtp(97, 0, 1000), t0);
        o.set_clock_rates(&[(97, 16000)]);
        // The reference restarts at the new rate (Jitter rescales on a
        // rate change); then the AMR-WB arrivals of `feed`, 1 s later.
        feed_at(&mut o, t0 + Duration::from_secs(1), 1);
        assert_eq!(o.received(Leg::A).jitter_us(), 1211);
    }

    /// A stream that changes payload type is measured at the new type's
    /// rate (PCMU at 8 kHz, then AMR-WB at 16 kHz: `feed`'s figure).
    #[test]
    fn a_change_of_payload_type_is_measured_at_the_new_types_rate() {
        let mut o = QualityObserver::default();
        o.set_clock_rates(&[(97, 16000)]);
        let t0 = Instant::now();
        o.on_rtp(Leg::A, &rtp(0, 0, 0), t0);
        o.on_rtp(Leg::A, &rtp(0, 1, 160), t0 + Duration::from_millis(20));
        feed_at(&mut o, t0 + Duration::from_secs(1), 2);
        assert_eq!(o.received(Leg::A).jitter_us(), 1211);
    }

    #[test]
    fn without_the_sdp_rate_a_dynamic_type_is_taken_for_8_khz() {
        // The bug the rates fix: at 8 kHz D₃ = 240 − 320, D₄ = 80 − 320, so
        // J = 5 + (240 − 5)/16 = 19.6875 ticks of 125 µs = 2460.9 µs.
        let mut o = QualityObserver::default();
        feed(&mut o);
        assert_eq!(o.received(Leg::A).jitter_us(), 2461);
    }
}
