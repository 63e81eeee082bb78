//! Receive statistics of one RTP stream (one SSRC, one direction), updated
//! in place per packet: counters, RFC 3550 A.1/A.3 sequence and loss
//! ([`SeqTracker`]) and A.8 jitter ([`Jitter`]).
//!
//! # SSRC changes
//!
//! An [`RtpRxStats`] follows the stream trunkd receives on one leg in one
//! direction. When a packet arrives with a different SSRC (a PBX switching
//! to music on hold, a re-INVITE to another media server), the *stream*
//! state restarts as for a new source: sequence tracking goes back to
//! probation and the jitter estimate to 0. The call-level figures go on:
//! `packets`, `bytes`, `duplicates` and [`RtpRxStats::packets_lost`] keep
//! counting across SSRCs, so that a minute line reports the call so far
//! (SPEC §4). The RR fields ([`RtpRxStats::report_block`]) are those of the
//! current SSRC.
//!
//! # Which packets update what
//!
//! Every packet counts in `packets` and `bytes`. Sequence tracking follows
//! A.1 (probation, bad jumps, restarts). Jitter is updated by every packet
//! A.1 accepts except duplicates (a retransmitted copy's timestamp says
//! nothing about the network's delay variation; rtpengine ignores them
//! too); a sequence restart only re-bases it.

use std::time::Instant;

use super::jitter::Jitter;
use super::rtcp::ReportBlock;
use super::rtt::LastSrReceived;
use super::seq::{SeqTracker, SeqVerdict};

/// What [`RtpRxStats::on_packet`] made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketOutcome {
    pub verdict: SeqVerdict,
    /// The packet's SSRC differed from the previous packet's: the stream
    /// state was reset first.
    pub new_ssrc: bool,
}

/// Receive statistics of one RTP stream. No allocation; all counts are
/// totals since creation unless said otherwise.
///
/// `repr(C)`: what every packet touches first (the jitter estimator, the
/// SSRC and the counts: 64 bytes), then the sequence tracker, whose own
/// hot part leads it (see [`SeqTracker`]).
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct RtpRxStats {
    jitter: Jitter,
    ssrc: Option<u32>,
    packets: u64,
    bytes: u64,
    seq: SeqTracker,
    ssrc_changes: u64,
}

impl RtpRxStats {
    pub fn new() -> Self {
        RtpRxStats::default()
    }

    /// Accounts one received RTP packet.
    ///
    /// - `ssrc`, `seq`, `rtp_timestamp`: from its RTP header;
    /// - `arrival`: when it was received (read by the I/O shell);
    /// - `clock_rate`: its payload type's RTP clock rate in Hz (8000 for
    ///   PCMU/PCMA/telephone-event at 8 kHz; 0 skips the jitter update);
    /// - `bytes`: its size in octets as the caller counts RTP bytes
    ///   (trunkd-media: the UDP payload, RTP header included).
    pub fn on_packet(
        &mut self,
        ssrc: u32,
        seq: u16,
        rtp_timestamp: u32,
        arrival: Instant,
        clock_rate: u32,
        bytes: usize,
    ) -> PacketOutcome {
        self.packets = self.packets.saturating_add(1);
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        let new_ssrc = self.ssrc.is_some_and(|s| s != ssrc);
        if new_ssrc {
            self.ssrc_changes = self.ssrc_changes.saturating_add(1);
            self.seq.reset();
            self.jitter = Jitter::new();
        }
        self.ssrc = Some(ssrc);
        let verdict = self.seq.update(seq);
        match verdict {
            SeqVerdict::Started | SeqVerdict::InOrder | SeqVerdict::Reordered => {
                self.jitter.update(arrival, rtp_timestamp, clock_rate);
            }
            SeqVerdict::Restarted => {
                self.jitter.restart_reference();
                self.jitter.update(arrival, rtp_timestamp, clock_rate);
            }
            SeqVerdict::Probation | SeqVerdict::BadJump | SeqVerdict::Duplicate => {}
        }
        PacketOutcome { verdict, new_ssrc }
    }

    /// SSRC of the current stream, `None` before the first packet.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// RTP packets received (all of them: duplicates, probation, bad
    /// jumps).
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// RTP octets received, as passed to `on_packet`.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Packets lost over the stream's life (SPEC §4 "packets lost",
    /// cumulative): see [`SeqTracker::packets_lost`]. Never negative.
    pub fn packets_lost(&self) -> u64 {
        self.seq.packets_lost()
    }

    /// RFC 3550 A.3 cumulative loss of the current SSRC's sequence
    /// segment: expected − received, signed (duplicates count as
    /// received).
    pub fn cumulative_lost(&self) -> i64 {
        self.seq.cumulative_lost()
    }

    /// Duplicate packets recognised (see [`SeqTracker`]).
    pub fn duplicates(&self) -> u64 {
        self.seq.duplicates()
    }

    /// Times the SSRC changed.
    pub fn ssrc_changes(&self) -> u64 {
        self.ssrc_changes
    }

    /// Extended highest sequence number of the current SSRC (RR field).
    pub fn extended_highest_seq(&self) -> u32 {
        self.seq.extended_highest_seq()
    }

    /// Interarrival jitter of the current SSRC in microseconds (SPEC §4).
    pub fn jitter_us(&self) -> u64 {
        self.jitter.jitter_us()
    }

    /// Interarrival jitter in RTP timestamp units (RR field).
    pub fn jitter_ts(&self) -> u32 {
        self.jitter.jitter_ts()
    }

    /// The RR fraction lost since the previous call (RFC 3550 A.3); starts
    /// the next interval.
    pub fn fraction_lost_since_last(&mut self) -> u8 {
        self.seq.fraction_lost_since_last()
    }

    /// The sequence and jitter state (read-only).
    pub fn seq(&self) -> &SeqTracker {
        &self.seq
    }

    /// A report block about the current SSRC for an RR trunkd sends itself
    /// (RFC 3550 §6.4.1): fraction lost since the previous block (this
    /// starts a new interval), cumulative loss, extended highest sequence,
    /// jitter in timestamp units, and LSR/DLSR from the last SR received
    /// from that source (0/0 without one). `None` before a stream has
    /// passed probation.
    pub fn report_block(
        &mut self,
        last_sr: Option<LastSrReceived>,
        now: Instant,
    ) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        if !self.seq.is_valid() {
            return None;
        }
        let fraction_lost = self.seq.fraction_lost_since_last();
        let cumulative_lost = self.seq.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32;
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost,
            extended_highest_seq: self.seq.extended_highest_seq(),
            jitter: self.jitter.jitter_ts(),
            lsr: last_sr.map_or(0, |sr| sr.lsr),
            dlsr: last_sr.map_or(0, |sr| sr.dlsr(now)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    /// What an in-order packet touches is the first 96 bytes: the jitter
    /// estimator, SSRC and counts (64), then the sequence tracker's hot
    /// fields (32). A relay keeps this per leg for hundreds of calls.
    #[test]
    fn the_per_packet_fields_lead() {
        use std::mem::offset_of;
        // The tracker's own hot fields lead it: seq.rs's tests.
        assert_eq!(offset_of!(RtpRxStats, seq), 64);
    }

    const SSRC: u32 = 0x5EED_0001;

    fn t0() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// Feeds packet n of a 20 ms / 8 kHz stream, on time.
    fn feed(s: &mut RtpRxStats, t: Instant, seq0: u16, n: u32) -> PacketOutcome {
        s.on_packet(
            SSRC,
            seq0.wrapping_add(n as u16),
            160 * n,
            t + Duration::from_millis(20) * n,
            8000,
            172,
        )
    }

    #[test]
    fn clean_stream() {
        let t = t0();
        let mut s = RtpRxStats::new();
        for n in 0..3000 {
            feed(&mut s, t, 65_000, n);
        }
        assert_eq!(s.packets(), 3000);
        assert_eq!(s.bytes(), 3000 * 172);
        assert_eq!(s.packets_lost(), 0);
        assert_eq!(s.jitter_us(), 0);
        // 65001 + 2998 = 67999 -> one wrap, 2463.
        assert_eq!(s.extended_highest_seq(), 0x0001_0000 | 2463);
        assert_eq!(s.ssrc(), Some(SSRC));
    }

    #[test]
    fn duplicates_do_not_touch_jitter_or_reported_loss() {
        let t = t0();
        let mut s = RtpRxStats::new();
        for n in 0..10 {
            feed(&mut s, t, 0, n);
        }
        // A copy of packet 9, 50 ms late: ignored by jitter.
        let o = s.on_packet(SSRC, 9, 160 * 9, t + Duration::from_millis(230), 8000, 172);
        assert_eq!(o.verdict, SeqVerdict::Duplicate);
        assert_eq!(s.jitter_us(), 0);
        assert_eq!(
            (s.cumulative_lost(), s.packets_lost(), s.duplicates()),
            (-1, 0, 1)
        );
        assert_eq!(s.packets(), 11);
    }

    #[test]
    fn ssrc_change_resets_stream_but_keeps_call_totals() {
        let t = t0();
        let mut s = RtpRxStats::new();
        for n in (0..20).filter(|n| n % 5 != 3) {
            feed(&mut s, t, 100, n);
        }
        // Lost: 103, 108, 113, 118 -> 4.
        assert_eq!(s.packets_lost(), 4);
        // Some jitter.
        s.on_packet(
            SSRC,
            120,
            160 * 20,
            t + Duration::from_millis(430),
            8000,
            172,
        );
        assert!(s.jitter_us() > 0);
        let o = s.on_packet(0xBEEF, 9000, 77, t + Duration::from_millis(440), 8000, 100);
        assert_eq!(
            o,
            PacketOutcome {
                verdict: SeqVerdict::Probation,
                new_ssrc: true
            }
        );
        assert_eq!(
            (s.ssrc(), s.ssrc_changes(), s.jitter_us()),
            (Some(0xBEEF), 1, 0)
        );
        assert_eq!(s.packets_lost(), 4);
        assert_eq!(s.packets(), 18);
        s.on_packet(0xBEEF, 9001, 237, t + Duration::from_millis(460), 8000, 100);
        s.on_packet(0xBEEF, 9003, 557, t + Duration::from_millis(500), 8000, 100);
        assert_eq!(s.packets_lost(), 5);
        assert_eq!(s.cumulative_lost(), 1);
        assert_eq!(s.jitter_us(), 0);
    }

    #[test]
    fn report_block_fields() {
        let t = t0();
        let mut s = RtpRxStats::new();
        let now = t + Duration::from_secs(5);
        assert_eq!(s.report_block(None, now), None);
        feed(&mut s, t, 10, 0);
        assert_eq!(s.report_block(None, now), None, "still on probation");
        for n in 1..=100 {
            if n % 10 != 0 {
                feed(&mut s, t, 10, n);
            }
        }
        // Expected 11..=109 (99), received 90 (10, 20, …, 90 lost: 9).
        let sr = LastSrReceived {
            lsr: 0x1234_5678,
            received_at: now - Duration::from_millis(250),
        };
        let b = s.report_block(Some(sr), now).unwrap();
        assert_eq!(b.ssrc, SSRC);
        assert_eq!(b.cumulative_lost, 9);
        // 9·256/99 = 23.27 -> 23.
        assert_eq!(b.fraction_lost, 23);
        assert_eq!(b.extended_highest_seq, 109);
        assert_eq!(b.jitter, 0);
        assert_eq!(b.lsr, 0x1234_5678);
        assert_eq!(b.dlsr, 16_384); // 0.25 s × 65536
                                    // The interval restarted.
        assert_eq!(s.report_block(None, now).unwrap().fraction_lost, 0);
    }

    #[test]
    fn restart_rebases_jitter() {
        let t = t0();
        let mut s = RtpRxStats::new();
        for n in 0..10 {
            feed(&mut s, t, 0, n);
        }
        // New sequence and timestamp base (no SSRC change): the restart
        // packet must not be compared with the old timestamps.
        let at = |ms: u64| t + Duration::from_millis(200 + ms);
        assert_eq!(
            s.on_packet(SSRC, 40_000, 9_000_000, at(0), 8000, 1).verdict,
            SeqVerdict::BadJump
        );
        assert_eq!(
            s.on_packet(SSRC, 40_001, 9_000_160, at(20), 8000, 1)
                .verdict,
            SeqVerdict::Restarted
        );
        assert_eq!(
            s.on_packet(SSRC, 40_002, 9_000_320, at(40), 8000, 1)
                .verdict,
            SeqVerdict::InOrder
        );
        assert_eq!(s.jitter_us(), 0);
        assert_eq!(s.packets_lost(), 0);
    }

    /// SplitMix64, for reproducible scenarios from a proptest seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A stream of `n` packets from a random start (wrapping for many
        /// cases) through a network with random loss (incl. bursts),
        /// reordering (up to 8 places) and duplication. The first two
        /// packets arrive in order (they pass probation; the first is
        /// outside the RFC's count, as A.1 specifies). Then, exactly:
        /// RFC loss = distinct missing − duplicates delivered,
        /// reported loss = max(0, that), duplicates counted exactly.
        #[test]
        fn loss_matches_ground_truth(seed in any::<u64>(), near_wrap in any::<bool>()) {
            let mut rng = Rng(seed);
            let start: u16 = if near_wrap { 65_535 - rng.below(600) as u16 } else { rng.below(65_536) as u16 };
            let n = 200 + rng.below(4000);
            let loss_pct = rng.below(30);
            let dup_pct = rng.below(5);
            // Send order with losses (some in bursts of up to 20) and
            // duplicates (indices from 0).
            let mut wire: Vec<u64> = vec![0, 1];
            let mut i = 2;
            while i < n {
                if rng.below(100) < loss_pct {
                    i += if rng.below(10) == 0 { 1 + rng.below(20) } else { 1 };
                    continue;
                }
                wire.push(i);
                if rng.below(100) < dup_pct { wire.push(i); }
                i += 1;
            }
            // Reorder: swap neighbours within 8 places, never touching the
            // first two.
            for k in 2..wire.len() {
                if rng.below(10) == 0 {
                    let j = (k + 1 + rng.below(8) as usize).min(wire.len() - 1);
                    wire.swap(k, j);
                }
            }
            // A.1 counts a late packet only up to MAX_MISORDER (100)
            // behind the highest; this generator stays well inside that
            // (bursts ≤ 20, displacement ≤ 8), skip the rare case it doesn't.
            let mut max_so_far = 0u64;
            for &i in &wire {
                prop_assume!(max_so_far < i + 90);
                max_so_far = max_so_far.max(i);
            }
            let t = t0();
            let mut s = RtpRxStats::new();
            let mut highest = 0u64;
            let mut seen = BTreeSet::new();
            let mut dups = 0u64;
            for (k, &i) in wire.iter().enumerate() {
                let seq = start.wrapping_add(i as u16);
                s.on_packet(SSRC, seq, (160 * i) as u32, t + Duration::from_millis(20 * k as u64), 8000, 172);
                highest = highest.max(i);
                if !seen.insert(i) { dups += 1; }
            }
            // Counted range: 1 ..= highest.
            let missing = (1..=highest).filter(|i| !seen.contains(i)).count() as i64;
            // Packets 0 and 1 are never duplicated.
            prop_assert_eq!(s.cumulative_lost(), missing - dups as i64);
            prop_assert_eq!(s.packets_lost(), (missing - dups as i64).max(0) as u64);
            prop_assert_eq!(s.duplicates(), dups);
            prop_assert_eq!(s.packets(), wire.len() as u64);
            // Cycles count from packet 1 (where probation ended).
            prop_assert_eq!(
                u64::from(s.extended_highest_seq()),
                u64::from(start.wrapping_add(1)) + highest - 1
            );
        }

        /// Same network, but the reported figure ignores duplicates: adding
        /// the duplicates back gives the true number of distinct missing
        /// packets.
        #[test]
        fn loss_plus_duplicates_is_distinct_missing(seed in any::<u64>()) {
            let mut rng = Rng(seed);
            let start = rng.below(65_536) as u16;
            let t = t0();
            let mut s = RtpRxStats::new();
            let mut seen = BTreeSet::new();
            let mut k = 0u64;
            let n = 100 + rng.below(3000);
            for i in 0..n {
                if i >= 2 && rng.below(100) < 10 { continue; }
                let copies = if i >= 2 && rng.below(100) < 3 { 2 } else { 1 };
                for _ in 0..copies {
                    s.on_packet(SSRC, start.wrapping_add(i as u16), (160 * i) as u32, t + Duration::from_millis(20 * k), 8000, 172);
                    k += 1;
                }
                seen.insert(i);
            }
            let highest = *seen.iter().next_back().unwrap_or(&0);
            let missing = (1..=highest).filter(|i| !seen.contains(i)).count() as i64;
            prop_assert_eq!(s.cumulative_lost() + s.duplicates() as i64, missing);
        }
    }
}
