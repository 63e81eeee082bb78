//! Call-quality math (SPEC §4): RTP receive statistics, RTCP parsing, RTT,
//! the E-model MOS, the per-minute media metric line (SPEC §5.3) and its
//! timer.
//!
//! Everything here is pure: no sockets, no clock reads, no RNG. Time is an
//! argument (`Instant` for local events, NTP values for what peers put on
//! the wire), so every figure is reproducible in a test.
//!
//! # How trunkd-media uses it
//!
//! Per call, per side (customer, remote):
//!
//! 1. Each received RTP packet of a stream updates an [`RtpRxStats`] in place
//!    ([`RtpRxStats::on_packet`]): counters, RFC 3550 A.1 sequence tracking,
//!    A.3 loss and A.8 jitter. Sent packets are only counted by the caller.
//! 2. Each RTCP datagram (after SRTCP unprotect) is parsed with
//!    [`parse_compound`] before it is relayed. A sender report's NTP middle
//!    32 bits are recorded in the [`SrLog`] of the direction it is forwarded
//!    in, with the `Instant` it was forwarded; a report block that comes
//!    back from the other peer with that LSR gives the RTT between trunkd
//!    and that peer ([`SrLog::rtt_for_block`], see [`rtt`] for why this is
//!    the design that works for a relay). The block's cumulative loss and
//!    jitter are the peer's view of the trunkd -> peer direction.
//! 3. A [`MetricsTicker`] per call says when a line is due (every 60 s, and
//!    once at the end); the caller snapshots the cumulative figures into
//!    [`DirectionStats`], computes each side's MOS ([`side_mos`], built on
//!    [`mos()`]) and serialises a [`MediaMetricLine`].
//!
//! Units are in names (`jitter_us`, `event_timestamp_ms`) or stated in each
//! doc comment; RTP timestamp units are "ticks of the stream's clock rate".

pub mod jitter;
pub mod metric_line;
pub mod mos;
pub mod rtcp;
pub mod rtp_stats;
pub mod rtt;
pub mod seq;
pub mod ticker;

pub use jitter::Jitter;
pub use metric_line::{side_mos, CallIdentity, DirectionStats, MediaMetricLine, SideStats};
pub use mos::{loss_percent, mos, mos_from_r, r_factor};
pub use rtcp::{
    parse_compound, write_rr, Compound, ReceiverReport, ReportBlock, ReportBlocks, RtcpError,
    RtcpPacket, SenderInfo, SenderReport, RR_ONE_BLOCK_LEN,
};
pub use rtp_stats::{PacketOutcome, RtpRxStats};
pub use rtt::{
    dlsr_from_duration, duration_from_ntp_short, ntp_from_system_time, ntp_middle32,
    rtt_from_lsr_dlsr, LastSrReceived, NtpClock, SrLog, MAX_RTT,
};
pub use seq::{SeqTracker, SeqVerdict};
pub use ticker::MetricsTicker;
