//! The media relay's packet readers: the RTCP compound parser
//! ([`parse_compound`]) and the relay's quality observer, which reads every
//! RTP header and every RTCP datagram of a call
//! (`trunkd_media::QualityObserver`: sequence tracking, jitter, RTT from
//! LSR/DLSR, the peer's report blocks).
//!
//! The input is read twice:
//! * as one RTCP datagram: it must parse or be refused, and a parsed one
//!   must iterate exactly the packets its length fields declare, with as
//!   many report blocks as each header's count;
//! * as a script of packets for the observer: each record is a control
//!   byte (bit 0: leg, bit 1: RTCP, bits 2-7: milliseconds since the
//!   previous packet), a length byte, then that many bytes of datagram.
//!
//! At the end the numbers the per-minute metric line reads are taken, the
//! MOS must lie in 1.0..=4.4, and an RR trunkd would write from the
//! receive statistics must parse back to the same block.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use trunkd_core::quality::{
    loss_percent, mos, mos::MOS_MAX, mos::MOS_MIN, parse_compound, write_rr, RtcpPacket, RtpRxStats,
};
use trunkd_media::{Leg, PacketObserver, QualityObserver};

fuzz_target!(|data: &[u8]| {
    check_compound(data);

    let mut now = Instant::now();
    let mut observer = QualityObserver::new(vec![(0, 8000), (9, 8000), (96, 48000), (97, 0)]);
    let mut rx = RtpRxStats::new();
    observer.on_rtcp(Leg::A, data, now);
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (pkt, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(control >> 2));
        let leg = if control & 1 == 0 { Leg::A } else { Leg::B };
        if control & 2 == 0 {
            observer.on_rtp(leg, pkt, now);
            if let [_, _, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3, ..] = *pkt {
                rx.on_packet(
                    u32::from_be_bytes([c0, c1, c2, c3]),
                    u16::from_be_bytes([s0, s1]),
                    u32::from_be_bytes([t0, t1, t2, t3]),
                    now,
                    8000,
                    pkt.len(),
                );
            }
        } else {
            check_compound(pkt);
            observer.on_rtcp(leg, pkt, now);
        }
    }

    for leg in [Leg::A, Leg::B] {
        let stats = observer.received(leg);
        let expected = stats.seq().expected();
        let lost = stats.packets_lost();
        let _ = (
            stats.cumulative_lost(),
            stats.duplicates(),
            observer.reported(leg),
        );
        let jitter_us = stats
            .jitter_us()
            .max(observer.reported_jitter_us(leg).unwrap_or(0));
        if let Some(m) = mos(observer.rtt(leg), jitter_us, loss_percent(lost, expected)) {
            assert!((MOS_MIN..=MOS_MAX).contains(&m), "MOS {m}");
        }
    }
    if let Some(block) = rx.report_block(None, now) {
        let rr = write_rr(0x7472_6b64, &block);
        let Ok(compound) = parse_compound(&rr) else {
            panic!("trunkd's own RR does not parse: {rr:02x?}");
        };
        match compound.packets().next() {
            Some(RtcpPacket::ReceiverReport(r)) => {
                assert_eq!(r.blocks.collect::<Vec<_>>(), [block]);
            }
            other => panic!("trunkd's RR reads back as {other:?}"),
        }
    }
});

/// Validation and iteration agree: the packets cover the datagram as their
/// headers say, and each SR/RR yields its count of report blocks.
fn check_compound(buf: &[u8]) {
    let Ok(compound) = parse_compound(buf) else {
        return;
    };
    let mut offset = 0;
    let mut packets = compound.packets();
    while offset < buf.len() {
        let words = usize::from(u16::from_be_bytes([buf[offset + 2], buf[offset + 3]]));
        let count = usize::from(buf[offset] & 0x1f);
        match packets.next() {
            Some(RtcpPacket::SenderReport(sr)) => {
                assert_eq!(sr.blocks.len(), count);
                let _ = sr.sender_info.ntp_middle32();
                for b in sr.blocks {
                    let _ = b.to_bytes();
                }
            }
            Some(RtcpPacket::ReceiverReport(rr)) => assert_eq!(rr.blocks.len(), count),
            Some(RtcpPacket::Other { payload, .. }) => assert!(payload.len() <= words * 4),
            None => panic!("a validated compound ends early at offset {offset}"),
        }
        offset += (words + 1) * 4;
    }
    assert_eq!(offset, buf.len());
    assert!(packets.next().is_none(), "packets past the datagram's end");
}
