//! The few RTP header operations the endpoint needs (RFC 3550 §5.1).

use std::time::{Duration, Instant};

use thiserror::Error;

/// The fixed RTP header is 12 bytes.
const HEADER_LEN: usize = 12;

/// Where a stream goes next: the SSRC, sequence number and timestamp its
/// next packet must carry so the receiver sees one continuous stream.
///
/// Injection into a relayed leg takes this from the leg (its last packet's
/// values plus one packet), and every source here returns the updated one
/// when it is done, for the next source to continue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpContinuity {
    /// Synchronisation source identifier.
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub next_seq: u16,
    /// RTP timestamp (8 kHz units) of the next packet's first sample.
    pub next_ts: u32,
}

impl RtpContinuity {
    /// A fresh stream: random SSRC, sequence number and timestamp, as
    /// RFC 3550 §5.1 asks (they make known-plaintext attacks on SRTP harder).
    /// Falls back to std's per-process random hash keys if the OS generator
    /// fails.
    pub fn random() -> Self {
        let mut bytes = [0u8; 10];
        if getrandom::fill(&mut bytes).is_err() {
            use std::hash::{BuildHasher, RandomState};
            let a = RandomState::new().hash_one(0u8).to_le_bytes();
            let b = RandomState::new().hash_one(1u8).to_le_bytes();
            bytes[..8].copy_from_slice(&a);
            bytes[8..].copy_from_slice(&b[..2]);
        }
        RtpContinuity {
            ssrc: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            next_seq: u16::from_le_bytes([bytes[4], bytes[5]]),
            next_ts: u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]),
        }
    }

    /// The continuity after a packet with `seq` and `ts` covering `samples`
    /// samples: what a tap records from a relayed leg before injecting.
    pub fn after(ssrc: u32, seq: u16, ts: u32, samples: u32) -> Self {
        RtpContinuity {
            ssrc,
            next_seq: seq.wrapping_add(1),
            next_ts: ts.wrapping_add(samples),
        }
    }
}

/// Follows one direction of a relayed leg (from a tap) so that packets can
/// be injected into it without the receiver seeing a new stream: the SSRC,
/// the highest sequence number and its timestamp, the packet duration in
/// timestamp units, and when the last packet came.
///
/// Only packets of the current SSRC count; a new SSRC (the peer restarted
/// its stream) replaces the old one.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamTracker {
    last: Option<Tracked>,
}

#[derive(Clone, Copy, Debug)]
struct Tracked {
    ssrc: u32,
    seq: u16,
    ts: u32,
    /// Timestamp units per packet, from the last two consecutive packets.
    step: u32,
    at: Instant,
}

/// Packet duration assumed until two consecutive packets have been seen
/// (20 ms at 8 kHz).
const DEFAULT_STEP: u32 = 160;

impl StreamTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        StreamTracker::default()
    }

    /// Takes one packet of the direction, arrived at `now`.
    ///
    /// # Errors
    ///
    /// [`RtpError`] if it is not RTP (the tracker is unchanged).
    pub fn observe(&mut self, now: Instant, packet: &[u8]) -> Result<(), RtpError> {
        let rtp = parse_rtp(packet)?;
        match &mut self.last {
            Some(t) if t.ssrc == rtp.ssrc => {
                let ahead = rtp.seq.wrapping_sub(t.seq);
                if ahead == 0 || ahead >= 0x8000 {
                    return Ok(()); // duplicate or reordered: not newer
                }
                let delta = rtp.timestamp.wrapping_sub(t.ts);
                if ahead == 1 && delta > 0 && delta < 0x8000 {
                    t.step = delta;
                }
                t.seq = rtp.seq;
                t.ts = rtp.timestamp;
                t.at = now;
            }
            _ => {
                self.last = Some(Tracked {
                    ssrc: rtp.ssrc,
                    seq: rtp.seq,
                    ts: rtp.timestamp,
                    step: DEFAULT_STEP,
                    at: now,
                });
            }
        }
        Ok(())
    }

    /// Where a packet injected at `now` continues the stream: the next
    /// sequence number, and the timestamp the sender's clock has reached
    /// (one packet after the last, plus the time since it came beyond one
    /// packet, at `clock_rate`). `None` before any packet.
    pub fn continuity_at(&self, now: Instant, clock_rate: u32) -> Option<RtpContinuity> {
        let t = self.last?;
        let elapsed = now.saturating_duration_since(t.at);
        let packet_time =
            Duration::from_micros(u64::from(t.step) * 1_000_000 / u64::from(clock_rate.max(1)));
        let extra = elapsed.saturating_sub(packet_time);
        let extra_ts = (extra.as_micros() * u128::from(clock_rate) / 1_000_000) as u32;
        Some(RtpContinuity {
            ssrc: t.ssrc,
            next_seq: t.seq.wrapping_add(1),
            next_ts: t.ts.wrapping_add(t.step).wrapping_add(extra_ts),
        })
    }
}

/// A parsed RTP packet borrowing its payload from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The M bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload, after CSRCs and header extension, without padding.
    pub payload: &'a [u8],
}

/// Why a datagram is not an RTP packet we can read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than its header says.
    #[error("RTP packet truncated")]
    Truncated,
    /// Version field is not 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    /// Padding count larger than the payload.
    #[error("RTP padding longer than the payload")]
    BadPadding,
}

/// Parses an RTP packet (RFC 3550 §5.1, extension §5.3.1).
///
/// # Errors
///
/// [`RtpError`] for a datagram that is not well-formed RTP version 2.
pub fn parse_rtp(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < HEADER_LEN {
        return Err(RtpError::Truncated);
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrc_count = usize::from(buf[0] & 0x0f);
    let mut start = HEADER_LEN + 4 * csrc_count;
    if extension {
        let ext = buf.get(start..start + 4).ok_or(RtpError::Truncated)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    if start > buf.len() {
        return Err(RtpError::Truncated);
    }
    let mut end = buf.len();
    if padding {
        let pad = usize::from(buf[buf.len() - 1]);
        if pad == 0 || start + pad > end {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    Ok(RtpPacket {
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7f,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: &buf[start..end],
    })
}

/// Appends a 12-byte RTP header (version 2, no padding, extension or CSRC).
/// `payload_type` is masked to 7 bits.
pub fn write_rtp_header(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut buf = Vec::new();
        write_rtp_header(&mut buf, true, 8, 0xfffe, 0x1234_5678, 0xdead_beef);
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            &buf[..12],
            &[0x80, 0x88, 0xff, 0xfe, 0x12, 0x34, 0x56, 0x78, 0xde, 0xad, 0xbe, 0xef]
        );
        let p = parse_rtp(&buf).unwrap();
        assert_eq!(
            p,
            RtpPacket {
                marker: true,
                payload_type: 8,
                seq: 0xfffe,
                timestamp: 0x1234_5678,
                ssrc: 0xdead_beef,
                payload: &[1, 2, 3],
            }
        );
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        let mut buf = vec![0x80 | 0x20 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        buf.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 7, 7, 7, 7]); // one-word extension
        buf.extend_from_slice(&[0xaa, 0xbb, 0, 2]); // payload + 2 bytes of padding
        assert_eq!(parse_rtp(&buf).unwrap().payload, &[0xaa, 0xbb]);
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        assert_eq!(parse_rtp(&[0x80; 11]), Err(RtpError::Truncated));
        assert_eq!(parse_rtp(&[0x40; 12]), Err(RtpError::Version(1)));
        assert_eq!(parse_rtp(&[0x8f; 12]), Err(RtpError::Truncated));
        let mut pad = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        assert_eq!(parse_rtp(&pad), Err(RtpError::BadPadding));
        pad[12] = 0;
        assert_eq!(parse_rtp(&pad), Err(RtpError::BadPadding));
        assert_eq!(
            parse_rtp(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            Err(RtpError::Truncated)
        );
    }

    fn pkt(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = Vec::new();
        write_rtp_header(&mut p, false, 0, seq, ts, ssrc);
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    #[test]
    fn tracker_continues_the_leg_it_follows() {
        let mut t = StreamTracker::new();
        let t0 = Instant::now();
        assert_eq!(t.continuity_at(t0, 8000), None);
        t.observe(t0, &pkt(65534, 1000, 9)).unwrap();
        // Before a second packet: 20 ms assumed.
        assert_eq!(
            t.continuity_at(t0, 8000),
            Some(RtpContinuity {
                ssrc: 9,
                next_seq: 65535,
                next_ts: 1160
            })
        );
        // 30 ms packets (240 units), across the sequence wrap.
        let ms = |n| t0 + Duration::from_millis(n);
        t.observe(ms(30), &pkt(65535, 1240, 9)).unwrap();
        t.observe(ms(60), &pkt(0, 1480, 9)).unwrap();
        // A late and a duplicate packet change nothing.
        t.observe(ms(61), &pkt(65535, 1240, 9)).unwrap();
        t.observe(ms(62), &pkt(0, 1480, 9)).unwrap();
        assert_eq!(
            t.continuity_at(ms(75), 8000),
            Some(RtpContinuity {
                ssrc: 9,
                next_seq: 1,
                next_ts: 1720
            })
        );
        // Injected 1 s after the last packet: the clock moved on by 970 ms
        // beyond the packet after it.
        assert_eq!(
            t.continuity_at(ms(1060), 8000),
            Some(RtpContinuity {
                ssrc: 9,
                next_seq: 1,
                next_ts: 1720 + 7760
            })
        );
        // A gap of lost packets: step unchanged, highest sequence kept.
        t.observe(ms(150), &pkt(3, 2200, 9)).unwrap();
        assert_eq!(
            t.continuity_at(ms(150), 8000),
            Some(RtpContinuity {
                ssrc: 9,
                next_seq: 4,
                next_ts: 2440
            })
        );
        // A new SSRC replaces the stream.
        t.observe(ms(160), &pkt(7, 50, 10)).unwrap();
        assert_eq!(
            t.continuity_at(ms(160), 8000),
            Some(RtpContinuity {
                ssrc: 10,
                next_seq: 8,
                next_ts: 210
            })
        );
        assert_eq!(t.observe(ms(170), &[0u8; 4]), Err(RtpError::Truncated));
    }

    #[test]
    fn continuity_after_a_packet() {
        assert_eq!(
            RtpContinuity::after(7, u16::MAX, u32::MAX - 10, 160),
            RtpContinuity {
                ssrc: 7,
                next_seq: 0,
                next_ts: 149
            }
        );
    }
}
