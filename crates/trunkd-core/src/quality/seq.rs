//! RTP sequence-number tracking and loss (RFC 3550 Appendix A.1 and A.3).
//!
//! [`SeqTracker`] is the RFC's `source` structure for one SSRC: the extended
//! highest sequence number (16-bit sequence plus a count of wrap-arounds),
//! probation of a new source (`MIN_SEQUENTIAL` = 2 packets in sequence),
//! re-synchronisation after a large jump (`MAX_DROPOUT` = 3000,
//! `MAX_MISORDER` = 100), the cumulative number of packets lost
//! (expected − received) and the fraction lost since the previous report.
//!
//! # Duplicates and reordering
//!
//! As in A.3, a duplicate *counts as received*: `received` is incremented
//! for every packet that `update_seq` accepts, so duplicates lower the RFC's
//! cumulative loss (which may go negative, and is carried signed in an RR
//! block). Reordered packets are counted when they arrive: they are older
//! than the highest sequence, so they do not move it, and they fill their
//! gap. Beside the RFC counters, a 128-packet bitmap behind the highest
//! sequence (as rtpengine's `lost_bits`) recognises duplicates, which are
//! counted in [`SeqTracker::duplicates`]; every packet the RFC counts as
//! "duplicate or reordered" is at most 99 behind, so the bitmap sees them
//! all.
//!
//! # Loss reported in metrics
//!
//! [`SeqTracker::packets_lost`] is the figure for SPEC §4 (cumulative over
//! the call): the RFC loss of the current sequence segment clamped at 0,
//! plus the clamped loss of every earlier segment. A segment ends when the
//! source restarts its sequence (A.1 re-synchronisation) or when the caller
//! calls [`SeqTracker::reset`] (a new SSRC): the RFC's `init_seq` forgets
//! the old counts, trunkd keeps what they lost.

const RTP_SEQ_MOD: u32 = 1 << 16;
/// Largest forward jump (in sequence numbers) treated as a gap of lost
/// packets rather than a restart (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Largest backward distance (in sequence numbers) treated as a late packet
/// rather than a restart (RFC 3550 A.1).
pub const MAX_MISORDER: u16 = 100;
/// Packets in sequence needed before a new source is valid (RFC 3550 A.1).
pub const MIN_SEQUENTIAL: u8 = 2;
/// Width of the duplicate-detection window, in packets.
const DUP_WINDOW: u16 = 128;

/// What [`SeqTracker::update`] made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    /// The source is on probation (A.1): not counted yet.
    Probation,
    /// Probation ended with this packet: the sequence starts here and the
    /// packet is counted.
    Started,
    /// A new highest sequence number (possibly after a gap or a wrap):
    /// counted.
    InOrder,
    /// Older than the highest sequence number, first copy seen: counted.
    Reordered,
    /// A copy of a packet already counted (same sequence number within the
    /// last 128): counted as received, as A.3 does, and in `duplicates`.
    Duplicate,
    /// A jump of more than `MAX_DROPOUT` forwards or `MAX_MISORDER`
    /// backwards: not counted; if the next packet follows it, the source is
    /// taken to have restarted.
    BadJump,
    /// The packet followed a [`SeqVerdict::BadJump`]: the sequence
    /// restarted here (A.1 `init_seq`), and the packet is counted.
    Restarted,
}

impl SeqVerdict {
    /// Whether A.1 accepted the packet (it is in `received`).
    pub fn is_counted(self) -> bool {
        !matches!(self, SeqVerdict::Probation | SeqVerdict::BadJump)
    }
}

/// RFC 3550 A.1/A.3 state for one RTP source (one SSRC).
///
/// Updated in place, no allocation. All counts are in packets.
///
/// `repr(C)`: what an in-order packet reads and writes (the window, the
/// count, the highest number, the probation state) in the first 32 bytes,
/// the rest after. A relay updates one tracker per packet for each of
/// hundreds of calls, and the lines a packet touches are what its cost
/// grows with (trunkd-media's `relay.rs`, `Side`).
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct SeqTracker {
    /// Bit n set: packet `max_seq - n` was received (n < 128).
    window: u128,
    /// Packets accepted in the current segment, duplicates included.
    received: u64,
    /// Highest sequence number seen (A.1 `max_seq`).
    max_seq: u16,
    started: bool,
    /// Packets still needed in sequence before the source is valid.
    probation: u8,
    /// First sequence number of the current segment (A.1 `base_seq`).
    base_seq: u16,
    /// Sequence number that would confirm a restart (A.1 `bad_seq`;
    /// `RTP_SEQ_MOD + 1` = none).
    bad_seq: u32,
    /// Number of times the sequence number wrapped (A.1 `cycles` / 2^16).
    cycles: u64,
    /// `expected` at the previous `fraction_lost_since_last` (A.3).
    expected_prior: u64,
    /// `received` at the previous `fraction_lost_since_last` (A.3).
    received_prior: u64,
    /// Duplicates seen over the tracker's life.
    duplicates: u64,
    /// Clamped loss of the segments before the current one.
    lost_carried: u64,
    /// Sequence restarts (A.1 re-synchronisations) over the tracker's life.
    restarts: u64,
}

impl SeqTracker {
    /// A tracker that has seen no packet: the first one starts probation.
    pub fn new() -> Self {
        SeqTracker::default()
    }

    /// Forgets the source (the SSRC changed): the next packet starts a new
    /// probation. The loss counted so far is kept in
    /// [`SeqTracker::packets_lost`]; `duplicates` and `restarts` keep
    /// counting.
    pub fn reset(&mut self) {
        self.carry_loss();
        let keep = (self.duplicates, self.lost_carried, self.restarts);
        *self = SeqTracker::default();
        (self.duplicates, self.lost_carried, self.restarts) = keep;
    }

    fn carry_loss(&mut self) {
        if self.started && self.probation == 0 {
            self.lost_carried = self
                .lost_carried
                .saturating_add(self.current_lost_clamped());
        }
    }

    /// RFC 3550 A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.window = 0;
    }

    /// RFC 3550 A.1 `update_seq` for a packet with sequence number `seq`,
    /// plus duplicate detection.
    pub fn update(&mut self, seq: u16) -> SeqVerdict {
        if !self.started {
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
            self.started = true;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received = 1;
                    self.window = 1;
                    return SeqVerdict::Started;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            SeqVerdict::Probation
        } else if udelta < MAX_DROPOUT {
            self.received = self.received.saturating_add(1);
            if udelta == 0 {
                // The highest packet is always in the window.
                self.duplicates = self.duplicates.saturating_add(1);
                return SeqVerdict::Duplicate;
            }
            if seq < self.max_seq {
                self.cycles = self.cycles.saturating_add(1);
            }
            self.max_seq = seq;
            self.window = if udelta >= DUP_WINDOW {
                0
            } else {
                self.window << udelta
            };
            self.window |= 1;
            SeqVerdict::InOrder
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                self.carry_loss();
                self.init_seq(seq);
                self.received = 1;
                self.window = 1;
                self.restarts = self.restarts.saturating_add(1);
                SeqVerdict::Restarted
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                SeqVerdict::BadJump
            }
        } else {
            // Duplicate or reordered: 1..MAX_MISORDER behind the highest.
            self.received = self.received.saturating_add(1);
            let back = self.max_seq.wrapping_sub(seq);
            if back < DUP_WINDOW {
                let bit = 1u128 << back;
                if self.window & bit != 0 {
                    self.duplicates = self.duplicates.saturating_add(1);
                    return SeqVerdict::Duplicate;
                }
                self.window |= bit;
            }
            SeqVerdict::Reordered
        }
    }

    /// Whether probation is over and the counters mean something.
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    /// Extended highest sequence number received, as carried in an RR block
    /// (RFC 3550 §6.4.1: 16 bits of wrap count, 16 bits of sequence
    /// number; the wrap count is taken modulo 2^16).
    pub fn extended_highest_seq(&self) -> u32 {
        ((self.cycles << 16) as u32) | u32::from(self.max_seq)
    }

    fn extended_max(&self) -> u64 {
        (self.cycles << 16) | u64::from(self.max_seq)
    }

    /// Packets expected in the current segment (A.3:
    /// `extended_max − base_seq + 1`); 0 before probation ends.
    pub fn expected(&self) -> u64 {
        if !self.is_valid() {
            return 0;
        }
        // init_seq puts base_seq at cycle 0 and max_seq only moves forward
        // from it, so the subtraction cannot underflow; saturate anyway.
        self.extended_max()
            .saturating_sub(u64::from(self.base_seq))
            .saturating_add(1)
    }

    /// Packets received in the current segment, duplicates included (A.3).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// RFC 3550 A.3 cumulative number of packets lost in the current
    /// segment: expected − received. Negative when duplicates (or late
    /// packets from before the segment) outnumber the losses; an RR block
    /// carries it signed (24 bits).
    pub fn cumulative_lost(&self) -> i64 {
        let e = i64::try_from(self.expected()).unwrap_or(i64::MAX);
        let r = i64::try_from(self.received).unwrap_or(i64::MAX);
        e.saturating_sub(r)
    }

    fn current_lost_clamped(&self) -> u64 {
        u64::try_from(self.cumulative_lost()).unwrap_or(0)
    }

    /// Packets lost since the tracker was created, for metrics (SPEC §4):
    /// the A.3 cumulative loss of each segment clamped at 0, summed over
    /// segments. Never negative; a duplicate cannot bring it below 0.
    pub fn packets_lost(&self) -> u64 {
        self.lost_carried
            .saturating_add(self.current_lost_clamped())
    }

    /// Duplicates seen since the tracker was created (packets).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Sequence restarts (A.1 re-synchronisations) since creation.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The RR "fraction lost" (RFC 3550 A.3, §6.4.1): packets lost since
    /// the previous call divided by packets expected since then, as a fixed
    /// point number with the binary point at the left edge (loss × 256),
    /// 0 when there was no loss (duplicates can make it "negative"). Marks
    /// the start of the next interval.
    pub fn fraction_lost_since_last(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        if expected_interval == 0 || received_interval >= expected_interval {
            return 0;
        }
        let lost_interval = expected_interval - received_interval;
        // The highest packet of the interval was received, so
        // lost_interval < expected_interval and the quotient is <= 255;
        // saturate rather than wrap if that ever fails.
        u8::try_from((u128::from(lost_interval) << 8) / u128::from(expected_interval))
            .unwrap_or(u8::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an in-order packet reads and writes lies in the first 32
    /// bytes (the struct's doc says why).
    #[test]
    fn the_per_packet_fields_lead() {
        use std::mem::offset_of;
        assert!(offset_of!(SeqTracker, window) < 32);
        assert!(offset_of!(SeqTracker, received) < 32);
        assert!(offset_of!(SeqTracker, max_seq) < 32);
        assert!(offset_of!(SeqTracker, started) < 32);
        assert!(offset_of!(SeqTracker, probation) < 32);
    }

    /// A tracker that has finished probation at `first + 1`.
    fn started(first: u16) -> SeqTracker {
        let mut t = SeqTracker::new();
        assert_eq!(t.update(first), SeqVerdict::Probation);
        assert_eq!(t.update(first.wrapping_add(1)), SeqVerdict::Started);
        t
    }

    #[test]
    fn probation_needs_two_in_sequence() {
        let mut t = SeqTracker::new();
        assert_eq!(t.update(10), SeqVerdict::Probation);
        assert!(!t.is_valid());
        assert_eq!(t.expected(), 0);
        assert_eq!(t.update(12), SeqVerdict::Probation);
        assert_eq!(t.update(13), SeqVerdict::Started);
        assert!(t.is_valid());
        assert_eq!((t.expected(), t.received(), t.cumulative_lost()), (1, 1, 0));
        assert_eq!(t.extended_highest_seq(), 13);
    }

    #[test]
    fn in_order_stream_loses_nothing() {
        let mut t = started(100);
        for s in 102..=600u16 {
            assert_eq!(t.update(s), SeqVerdict::InOrder);
        }
        assert_eq!(t.expected(), 500);
        assert_eq!(t.received(), 500);
        assert_eq!(t.packets_lost(), 0);
    }

    #[test]
    fn gap_counts_as_loss_and_late_arrival_fills_it() {
        let mut t = started(0);
        // 1 received; 2, 3 missing; 4 arrives.
        assert_eq!(t.update(4), SeqVerdict::InOrder);
        assert_eq!(t.cumulative_lost(), 2);
        assert_eq!(t.update(3), SeqVerdict::Reordered);
        assert_eq!(t.cumulative_lost(), 1);
        assert_eq!(t.update(3), SeqVerdict::Duplicate);
        // A.3: the duplicate counts as received.
        assert_eq!(t.cumulative_lost(), 0);
        assert_eq!(t.duplicates(), 1);
        assert_eq!(t.packets_lost(), 0);
    }

    #[test]
    fn duplicates_make_rfc_loss_negative_but_reported_loss_stays_zero() {
        let mut t = started(500);
        for _ in 0..3 {
            assert_eq!(t.update(501), SeqVerdict::Duplicate);
        }
        assert_eq!(t.cumulative_lost(), -3);
        assert_eq!(t.packets_lost(), 0);
        assert_eq!(t.duplicates(), 3);
    }

    #[test]
    fn wraps_around() {
        let mut t = started(65_533);
        for s in [65_535u16, 0, 1, 2] {
            assert_eq!(t.update(s), SeqVerdict::InOrder);
        }
        // 65534 started, 65535, 0, 1, 2: 5 expected, 5 received.
        assert_eq!(t.extended_highest_seq(), 0x0001_0002);
        assert_eq!((t.expected(), t.received()), (5, 5));
        // A late packet from before the wrap.
        assert_eq!(t.update(65_535), SeqVerdict::Duplicate);
        // A gap across the wrap: 3 .. 9 missing.
        assert_eq!(t.update(10), SeqVerdict::InOrder);
        assert_eq!(t.cumulative_lost(), 7 - 1);
        assert_eq!(t.packets_lost(), 6);
    }

    #[test]
    fn gap_crossing_the_wrap_is_counted() {
        let mut t = started(65_500);
        assert_eq!(t.update(50), SeqVerdict::InOrder);
        // 65502 ..= 65535 (34) and 0 ..= 49 (50) missing.
        assert_eq!(t.packets_lost(), 84);
        assert_eq!(t.extended_highest_seq(), 0x0001_0032);
    }

    #[test]
    fn dropout_limit_is_exclusive() {
        let mut t = started(0);
        // udelta = 2999 < MAX_DROPOUT: a gap.
        assert_eq!(t.update(1 + 2999), SeqVerdict::InOrder);
        assert_eq!(t.packets_lost(), 2998);
        // udelta = 3000: a bad jump.
        assert_eq!(t.update(3000 + 3000), SeqVerdict::BadJump);
        assert_eq!(t.packets_lost(), 2998);
    }

    #[test]
    fn misorder_limit() {
        let mut t = started(1000);
        for s in 1002..=1200u16 {
            t.update(s);
        }
        // 99 behind: reordered branch (udelta = 65437 > 65436).
        assert_eq!(t.update(1101), SeqVerdict::Duplicate);
        // 100 behind: udelta = 65436 <= 65436, a bad jump, not counted.
        let before = t.received();
        assert_eq!(t.update(1100), SeqVerdict::BadJump);
        assert_eq!(t.received(), before);
    }

    #[test]
    fn large_jump_then_follow_up_restarts_and_keeps_old_loss() {
        let mut t = started(0);
        t.update(5); // 2, 3, 4 lost
        assert_eq!(t.packets_lost(), 3);
        assert_eq!(t.update(40_000), SeqVerdict::BadJump);
        // The old stream goes on: no restart.
        assert_eq!(t.update(6), SeqVerdict::InOrder);
        assert_eq!(t.update(30_000), SeqVerdict::BadJump);
        assert_eq!(t.update(30_001), SeqVerdict::Restarted);
        assert_eq!(t.restarts(), 1);
        assert_eq!((t.expected(), t.received(), t.cumulative_lost()), (1, 1, 0));
        assert_eq!(t.extended_highest_seq(), 30_001);
        assert_eq!(t.update(30_005), SeqVerdict::InOrder);
        // 3 carried + 3 in the new segment.
        assert_eq!(t.cumulative_lost(), 3);
        assert_eq!(t.packets_lost(), 6);
    }

    #[test]
    fn reset_keeps_loss_and_duplicates_and_restarts_probation() {
        let mut t = started(0);
        // 2 ..= 9 missing (8), then a duplicate counts as received (A.3).
        t.update(10);
        t.update(10);
        assert_eq!((t.packets_lost(), t.duplicates()), (7, 1));
        t.reset();
        assert!(!t.is_valid());
        assert_eq!((t.packets_lost(), t.duplicates()), (7, 1));
        assert_eq!(t.update(7_000), SeqVerdict::Probation);
        assert_eq!(t.update(7_001), SeqVerdict::Started);
        t.update(7_003);
        assert_eq!(t.packets_lost(), 8);
    }

    #[test]
    fn reset_during_probation_carries_nothing() {
        let mut t = SeqTracker::new();
        t.update(1);
        t.reset();
        assert_eq!(t.packets_lost(), 0);
    }

    #[test]
    fn fraction_lost_per_interval() {
        let mut t = started(0);
        // Interval 1: 1..=100 expected, 75 received (3, 7, …, 99 lost).
        for s in 2..=100u16 {
            if s % 4 != 3 {
                t.update(s);
            }
        }
        assert_eq!((t.expected(), t.received()), (100, 75));
        // 25 lost / 100 expected = 0.25 -> 64/256.
        assert_eq!(t.fraction_lost_since_last(), 64);
        // Nothing new: 0.
        assert_eq!(t.fraction_lost_since_last(), 0);
        // Interval 2: 101..=110 all received.
        for s in 101..=110u16 {
            t.update(s);
        }
        assert_eq!(t.fraction_lost_since_last(), 0);
        // Interval 3: 111..=113 expected, only 113 received: 2/3 -> 170.
        t.update(113);
        assert_eq!(t.fraction_lost_since_last(), 170);
        // Interval 4: duplicates only: "negative" loss -> 0.
        t.update(113);
        assert_eq!(t.fraction_lost_since_last(), 0);
    }

    #[test]
    fn fraction_lost_heavy_loss() {
        let mut t = started(0);
        t.fraction_lost_since_last();
        // Interval: 2..=11 expected, only 11 received: 9/10 -> 230.
        t.update(11);
        assert_eq!(t.fraction_lost_since_last(), 230);
    }

    #[test]
    fn window_tracks_duplicates_after_long_gap() {
        let mut t = started(0);
        t.update(2_000); // gap wider than the window
        assert_eq!(t.update(1_950), SeqVerdict::Reordered);
        assert_eq!(t.update(1_950), SeqVerdict::Duplicate);
        assert_eq!(t.update(1_999), SeqVerdict::Reordered);
    }
}
