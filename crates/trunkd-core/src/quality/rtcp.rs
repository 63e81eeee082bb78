//! Zero-copy RTCP compound-packet parsing (RFC 3550 §6.4, §6.1, A.2) and an
//! RR writer.
//!
//! [`parse_compound`] validates a whole datagram before anything is read
//! from it: every packet has version 2, its length field (32-bit words
//! minus one, §6.4.1) stays inside the datagram and the lengths add up to
//! the datagram exactly, only the last packet may set the padding bit and
//! its padding count is between 1 and the packet's payload length, and
//! every SR/RR is long enough for the report blocks its RC field announces.
//! Iterating a [`Compound`] then cannot fail and borrows from the input.
//!
//! SR and RR are decoded ([`SenderReport`], [`ReceiverReport`], report
//! blocks as [`ReportBlock`] values); every other packet type (SDES, BYE,
//! APP, RTPFB/PSFB feedback, XR, …) is returned as [`RtcpPacket::Other`]
//! with its payload, skipped by length. Profile-specific extensions after
//! the report blocks of an SR/RR are ignored.
//!
//! Unlike A.2's strict check, the first packet need not be an SR or RR:
//! reduced-size RTCP (RFC 5506) sends lone feedback packets, and a relay
//! must not refuse them. The input must be plain RTCP: SRTCP must be
//! unprotected first (its index and tag are not RTCP).
//!
//! Nothing here panics on any input (a proptest feeds random bytes).

use thiserror::Error;

/// RTP/RTCP version (RFC 3550 §6.4.1).
pub const VERSION: u8 = 2;
/// Sender report packet type (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
/// Receiver report packet type.
pub const PT_RR: u8 = 201;
/// Source description packet type.
pub const PT_SDES: u8 = 202;
/// Goodbye packet type.
pub const PT_BYE: u8 = 203;
/// Application-defined packet type.
pub const PT_APP: u8 = 204;

const HEADER_LEN: usize = 4;
/// SSRC of sender + NTP (8) + RTP timestamp + packet count + octet count.
const SR_FIXED_LEN: usize = HEADER_LEN + 4 + 20;
const RR_FIXED_LEN: usize = HEADER_LEN + 4;
/// Octets of one report block (RFC 3550 §6.4.1).
pub const REPORT_BLOCK_LEN: usize = 24;
/// Octets of an RR with one report block, as [`write_rr`] writes it.
pub const RR_ONE_BLOCK_LEN: usize = RR_FIXED_LEN + REPORT_BLOCK_LEN;

/// Why a datagram is not a valid RTCP compound packet. Offsets are octets
/// from the start of the datagram to the offending packet's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtcpError {
    #[error("empty RTCP datagram")]
    Empty,
    #[error("RTCP packet at offset {offset}: fewer than 4 header octets left")]
    TruncatedHeader { offset: usize },
    #[error("RTCP packet at offset {offset}: version {version}, expected 2")]
    BadVersion { offset: usize, version: u8 },
    #[error(
        "RTCP packet at offset {offset}: length field says {declared} octets, {available} remain"
    )]
    LengthOverrun {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("RTCP packet at offset {offset}: padding bit set on a packet that is not the last")]
    PaddingNotLast { offset: usize },
    #[error("RTCP packet at offset {offset}: padding count {count} in a packet of {len} octets")]
    BadPadding {
        offset: usize,
        count: u8,
        len: usize,
    },
    #[error("RTCP packet at offset {offset}: too short for its {count} report blocks")]
    TruncatedReport { offset: usize, count: u8 },
}

/// One reception report block (RFC 3550 §6.4.1), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// SSRC of the source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, × 256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed on the wire:
    /// −8 388 608 ..= 8 388 607; negative with duplicates).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (wrap count << 16 | seq).
    pub extended_highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units of the reported source.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from the
    /// source (16.16 fixed-point seconds), 0 if none.
    pub lsr: u32,
    /// Delay since that SR was received, in units of 1/65536 s; 0 if none.
    pub dlsr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> ReportBlock {
        let word1 = be32(b, 4);
        // Sign-extend the low 24 bits.
        let cumulative_lost = ((word1 << 8) as i32) >> 8;
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: (word1 >> 24) as u8,
            cumulative_lost,
            extended_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            lsr: be32(b, 16),
            dlsr: be32(b, 20),
        }
    }

    /// The block's 24 octets. `cumulative_lost` is clamped to the 24-bit
    /// signed range (0x7FFFFF / 0x800000, as §6.4.1 requires).
    pub fn to_bytes(&self) -> [u8; REPORT_BLOCK_LEN] {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        let word1 = (u32::from(self.fraction_lost) << 24) | lost;
        let mut out = [0u8; REPORT_BLOCK_LEN];
        for (i, w) in [
            self.ssrc,
            word1,
            self.extended_highest_seq,
            self.jitter,
            self.lsr,
            self.dlsr,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// Sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (64-bit, 32.32 fixed-point seconds since 1900) of the
    /// sender's wallclock when the report was sent.
    pub ntp_timestamp: u64,
    /// RTP timestamp for the same instant, in the source's clock rate.
    pub rtp_timestamp: u32,
    /// RTP data packets sent by the source since it started (wraps).
    pub packet_count: u32,
    /// RTP payload octets sent (headers and padding excluded; wraps).
    pub octet_count: u32,
}

impl SenderInfo {
    /// The middle 32 bits of the NTP timestamp: the value a receiver puts
    /// in the LSR field of its report on this source (§6.4.1).
    pub fn ntp_middle32(&self) -> u32 {
        (self.ntp_timestamp >> 16) as u32
    }
}

/// The report blocks of an SR or RR, decoded on the fly.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    rest: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        let (block, rest) = self.rest.split_at_checked(REPORT_BLOCK_LEN)?;
        self.rest = rest;
        Some(ReportBlock::parse(block))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// A sender report (PT 200).
#[derive(Debug, Clone)]
pub struct SenderReport<'a> {
    /// SSRC of the sender.
    pub ssrc: u32,
    pub sender_info: SenderInfo,
    /// RC report blocks about sources the sender receives.
    pub blocks: ReportBlocks<'a>,
}

/// A receiver report (PT 201).
#[derive(Debug, Clone)]
pub struct ReceiverReport<'a> {
    /// SSRC of the packet's sender.
    pub ssrc: u32,
    pub blocks: ReportBlocks<'a>,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone)]
pub enum RtcpPacket<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    /// Any other packet type, not decoded.
    Other {
        packet_type: u8,
        /// The 5-bit count/format field of the header.
        count: u8,
        /// Octets after the 4-octet header, padding removed.
        payload: &'a [u8],
    },
}

/// A validated compound RTCP datagram; iterate with [`Compound::packets`].
#[derive(Debug, Clone, Copy)]
pub struct Compound<'a> {
    buf: &'a [u8],
}

/// Validates `buf` as a compound RTCP packet (see the module docs for the
/// checks).
///
/// # Errors
///
/// The first structural fault found, as an [`RtcpError`].
pub fn parse_compound(buf: &[u8]) -> Result<Compound<'_>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut offset = 0;
    while offset < buf.len() {
        let rest = buf.get(offset..).unwrap_or_default();
        let hdr = Header::read(rest).ok_or(RtcpError::TruncatedHeader { offset })?;
        if hdr.version != VERSION {
            return Err(RtcpError::BadVersion {
                offset,
                version: hdr.version,
            });
        }
        if hdr.len > rest.len() {
            return Err(RtcpError::LengthOverrun {
                offset,
                declared: hdr.len,
                available: rest.len(),
            });
        }
        let is_last = offset + hdr.len == buf.len();
        let packet = rest.get(..hdr.len).unwrap_or_default();
        if hdr.padding && !is_last {
            return Err(RtcpError::PaddingNotLast { offset });
        }
        let body_len = content_len(&hdr, packet).ok_or(RtcpError::BadPadding {
            offset,
            count: packet.last().copied().unwrap_or(0),
            len: hdr.len,
        })?;
        let fixed = match hdr.packet_type {
            PT_SR => Some(SR_FIXED_LEN),
            PT_RR => Some(RR_FIXED_LEN),
            _ => None,
        };
        if let Some(fixed) = fixed {
            if body_len < fixed + usize::from(hdr.count) * REPORT_BLOCK_LEN {
                return Err(RtcpError::TruncatedReport {
                    offset,
                    count: hdr.count,
                });
            }
        }
        offset += hdr.len;
    }
    Ok(Compound { buf })
}

impl<'a> Compound<'a> {
    /// The packets, in order.
    pub fn packets(&self) -> Packets<'a> {
        Packets { rest: self.buf }
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// Iterator over the packets of a [`Compound`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = RtcpPacket<'a>;
    fn next(&mut self) -> Option<RtcpPacket<'a>> {
        // parse_compound checked every condition below; a failure here
        // ends the iteration instead of panicking.
        let hdr = Header::read(self.rest)?;
        let (packet, rest) = self.rest.split_at_checked(hdr.len)?;
        self.rest = rest;
        let content = packet.get(..content_len(&hdr, packet)?)?;
        let count = usize::from(hdr.count);
        Some(match hdr.packet_type {
            PT_SR => {
                let blocks = content.get(SR_FIXED_LEN..SR_FIXED_LEN + count * REPORT_BLOCK_LEN)?;
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: be32(content, 4),
                    sender_info: SenderInfo {
                        ntp_timestamp: (u64::from(be32(content, 8)) << 32)
                            | u64::from(be32(content, 12)),
                        rtp_timestamp: be32(content, 16),
                        packet_count: be32(content, 20),
                        octet_count: be32(content, 24),
                    },
                    blocks: ReportBlocks { rest: blocks },
                })
            }
            PT_RR => {
                let blocks = content.get(RR_FIXED_LEN..RR_FIXED_LEN + count * REPORT_BLOCK_LEN)?;
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: be32(content, 4),
                    blocks: ReportBlocks { rest: blocks },
                })
            }
            packet_type => RtcpPacket::Other {
                packet_type,
                count: hdr.count,
                payload: content.get(HEADER_LEN..)?,
            },
        })
    }
}

struct Header {
    version: u8,
    padding: bool,
    count: u8,
    packet_type: u8,
    /// Packet length in octets, header included.
    len: usize,
}

impl Header {
    fn read(b: &[u8]) -> Option<Header> {
        let h = b.get(..HEADER_LEN)?;
        let words = usize::from(u16::from_be_bytes([h[2], h[3]]));
        Some(Header {
            version: h[0] >> 6,
            padding: h[0] & 0x20 != 0,
            count: h[0] & 0x1F,
            packet_type: h[1],
            len: (words + 1) * 4,
        })
    }
}

/// Octets of `packet` (header included) before its padding; None when the
/// padding count is 0 or eats into the header.
fn content_len(hdr: &Header, packet: &[u8]) -> Option<usize> {
    if !hdr.padding {
        return Some(packet.len());
    }
    let pad = usize::from(*packet.last()?);
    if pad == 0 || pad > packet.len() - HEADER_LEN {
        return None;
    }
    Some(packet.len() - pad)
}

/// Big-endian u32 at `at`; 0 if out of range (never after validation).
fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_be_bytes)
}

/// An RR packet with one report block (RFC 3550 §6.4.2): V=2, P=0, RC=1,
/// PT=201, length 7 (32 octets), the reporter's SSRC, then `block`.
///
/// A standalone RR is a reduced-size RTCP packet (RFC 5506); a caller that
/// must send a full compound packet appends an SDES CNAME itself.
pub fn write_rr(reporter_ssrc: u32, block: &ReportBlock) -> [u8; RR_ONE_BLOCK_LEN] {
    let mut out = [0u8; RR_ONE_BLOCK_LEN];
    out[0] = (VERSION << 6) | 1;
    out[1] = PT_RR;
    out[2..4].copy_from_slice(&((RR_ONE_BLOCK_LEN / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&reporter_ssrc.to_be_bytes());
    out[8..].copy_from_slice(&block.to_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An SR from SSRC 0x11223344 with one block about 0xAABBCCDD, then an
    /// SDES CNAME "ab", then a BYE.
    fn sample() -> Vec<u8> {
        let mut v = vec![
            0x81, 200, 0x00, 0x0C, // V=2 RC=1 SR, length 12 -> 52 octets
            0x11, 0x22, 0x33, 0x44, // SSRC
            0xE8, 0x00, 0x00, 0x01, // NTP seconds
            0x80, 0x00, 0x00, 0x00, // NTP fraction (0.5 s)
            0x00, 0x00, 0x3E, 0x80, // RTP ts 16000
            0x00, 0x00, 0x00, 0x32, // 50 packets
            0x00, 0x00, 0x1F, 0x40, // 8000 octets
            0xAA, 0xBB, 0xCC, 0xDD, // block: ssrc
            0x40, 0xFF, 0xFF, 0xFE, // fraction 64, cumulative −2
            0x00, 0x01, 0x00, 0x05, // ext highest seq: 1 wrap, seq 5
            0x00, 0x00, 0x00, 0x10, // jitter 16
            0x12, 0x34, 0x56, 0x78, // LSR
            0x00, 0x01, 0x80, 0x00, // DLSR 1.5 s
        ];
        v.extend_from_slice(&[
            0x81, 202, 0x00, 0x02, // SDES, 1 chunk, 12 octets
            0xAA, 0xBB, 0xCC, 0xDD, 0x01, 0x02, b'a', b'b',
        ]);
        v.extend_from_slice(&[0x81, 203, 0x00, 0x01, 0x11, 0x22, 0x33, 0x44]);
        v
    }

    #[test]
    fn parses_sr_with_block_sdes_and_bye() {
        let buf = sample();
        let c = parse_compound(&buf).unwrap();
        let pkts: Vec<_> = c.packets().collect();
        assert_eq!(pkts.len(), 3);
        let RtcpPacket::SenderReport(sr) = &pkts[0] else {
            panic!("{:?}", pkts[0])
        };
        assert_eq!(sr.ssrc, 0x1122_3344);
        assert_eq!(
            sr.sender_info,
            SenderInfo {
                ntp_timestamp: 0xE800_0001_8000_0000,
                rtp_timestamp: 16_000,
                packet_count: 50,
                octet_count: 8000,
            }
        );
        assert_eq!(sr.sender_info.ntp_middle32(), 0x0001_8000);
        let blocks: Vec<_> = sr.blocks.clone().collect();
        assert_eq!(
            blocks,
            vec![ReportBlock {
                ssrc: 0xAABB_CCDD,
                fraction_lost: 64,
                cumulative_lost: -2,
                extended_highest_seq: 0x0001_0005,
                jitter: 16,
                lsr: 0x1234_5678,
                dlsr: 0x0001_8000,
            }]
        );
        assert!(matches!(
            pkts[1],
            RtcpPacket::Other { packet_type: PT_SDES, count: 1, payload } if payload.len() == 8
        ));
        assert!(matches!(
            pkts[2],
            RtcpPacket::Other {
                packet_type: PT_BYE,
                count: 1,
                payload: [0x11, 0x22, 0x33, 0x44]
            }
        ));
    }

    #[test]
    fn rr_writer_round_trips() {
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 3,
            cumulative_lost: 1234,
            extended_highest_seq: 0x0002_FFFF,
            jitter: 40,
            lsr: 0xDEAD_BEEF,
            dlsr: 65_536,
        };
        let bytes = write_rr(0x0102_0304, &block);
        assert_eq!(&bytes[..8], &[0x81, 201, 0, 7, 1, 2, 3, 4]);
        assert_eq!(&bytes[12..16], &[3, 0, 0x04, 0xD2]);
        let c = parse_compound(&bytes).unwrap();
        let pkts: Vec<_> = c.packets().collect();
        let RtcpPacket::ReceiverReport(rr) = &pkts[0] else {
            panic!()
        };
        assert_eq!(rr.ssrc, 0x0102_0304);
        assert_eq!(rr.blocks.len(), 1);
        assert_eq!(rr.blocks.clone().next(), Some(block));
    }

    #[test]
    fn cumulative_lost_is_clamped_to_24_bits() {
        for (given, wire, back) in [
            (10_000_000, [0x7F, 0xFF, 0xFF], 0x7F_FFFF),
            (-10_000_000, [0x80, 0x00, 0x00], -0x80_0000),
            (-1, [0xFF, 0xFF, 0xFF], -1),
        ] {
            let b = ReportBlock {
                cumulative_lost: given,
                ..ReportBlock::default()
            };
            let bytes = b.to_bytes();
            assert_eq!(&bytes[5..8], &wire);
            assert_eq!(ReportBlock::parse(&bytes).cumulative_lost, back);
        }
    }

    #[test]
    fn empty_rr_and_padding_on_last_packet() {
        // RR with RC=0, then an APP padded with 4 octets (count 4).
        let buf = [
            0x80, 201, 0, 1, 0, 0, 0, 9, // RR, no blocks
            0xA0, 204, 0, 3, 0, 0, 0, 9, b'n', b'a', b'm', b'e', // APP + P
            0, 0, 0, 4,
        ];
        // The APP is (3 + 1) × 4 = 16 octets, 4 of them padding.
        let c = parse_compound(&buf).unwrap();
        let pkts: Vec<_> = c.packets().collect();
        assert!(
            matches!(&pkts[0], RtcpPacket::ReceiverReport(rr) if rr.blocks.len() == 0 && rr.ssrc == 9)
        );
        assert!(matches!(
            pkts[1],
            RtcpPacket::Other {
                packet_type: PT_APP,
                payload: [0, 0, 0, 9, b'n', b'a', b'm', b'e'],
                ..
            }
        ));
    }

    #[test]
    fn profile_extension_after_blocks_is_ignored() {
        // RR, RC=0, length 2 (12 octets): 4 extension octets.
        let buf = [0x80, 201, 0, 2, 0, 0, 0, 9, 0xEE, 0xEE, 0xEE, 0xEE];
        let c = parse_compound(&buf).unwrap();
        let RtcpPacket::ReceiverReport(rr) = c.packets().next().unwrap() else {
            panic!()
        };
        assert_eq!(rr.blocks.count(), 0);
    }

    #[test]
    fn rejections() {
        assert_eq!(parse_compound(&[]).unwrap_err(), RtcpError::Empty);
        assert_eq!(
            parse_compound(&[0x80, 201]).unwrap_err(),
            RtcpError::TruncatedHeader { offset: 0 }
        );
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::BadVersion {
                offset: 0,
                version: 1
            }
        );
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 2, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::LengthOverrun {
                offset: 0,
                declared: 12,
                available: 8
            }
        );
        // Trailing octets after the last packet.
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 1, 0, 0, 0, 0, 0x80]).unwrap_err(),
            RtcpError::TruncatedHeader { offset: 8 }
        );
        // Padding on the first of two packets.
        assert_eq!(
            parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 4, 0x80, 203, 0, 0]).unwrap_err(),
            RtcpError::PaddingNotLast { offset: 0 }
        );
        // Padding count 0, and larger than the payload.
        assert_eq!(
            parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::BadPadding {
                offset: 0,
                count: 0,
                len: 8
            }
        );
        assert_eq!(
            parse_compound(&[0xA0, 203, 0, 1, 0, 0, 0, 5]).unwrap_err(),
            RtcpError::BadPadding {
                offset: 0,
                count: 5,
                len: 8
            }
        );
        // RR announcing one block with room for none.
        assert_eq!(
            parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::TruncatedReport {
                offset: 0,
                count: 1
            }
        );
        // SR too short for its sender info.
        assert_eq!(
            parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::TruncatedReport {
                offset: 0,
                count: 0
            }
        );
        // Padding that eats the report block.
        let mut rr = write_rr(1, &ReportBlock::default()).to_vec();
        rr[0] |= 0x20;
        rr[31] = 24;
        assert_eq!(
            parse_compound(&rr).unwrap_err(),
            RtcpError::TruncatedReport {
                offset: 0,
                count: 1
            }
        );
        // Second packet with a bad version.
        let mut two = sample();
        two[52] = 0x01;
        assert_eq!(
            parse_compound(&two).unwrap_err(),
            RtcpError::BadVersion {
                offset: 52,
                version: 0
            }
        );
    }

    fn walk(buf: &[u8]) -> usize {
        let Ok(c) = parse_compound(buf) else { return 0 };
        let mut n = 0;
        for p in c.packets() {
            n += 1;
            match p {
                RtcpPacket::SenderReport(sr) => n += sr.blocks.count(),
                RtcpPacket::ReceiverReport(rr) => n += rr.blocks.count(),
                RtcpPacket::Other { .. } => {}
            }
        }
        n
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn never_panics_on_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            walk(&buf);
        }

        #[test]
        fn never_panics_on_mutated_valid_packets(
            flips in proptest::collection::vec((0usize..72, any::<u8>()), 1..6),
            cut in 0usize..=72,
        ) {
            let mut buf = sample();
            for (at, v) in flips {
                buf[at] = v;
            }
            buf.truncate(cut);
            walk(&buf);
        }

        #[test]
        fn validated_packets_iterate_to_the_end(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Whatever validates is consumed completely by the iterator.
            if let Ok(c) = parse_compound(&buf) {
                let mut rest = 0;
                let mut it = c.packets();
                while it.next().is_some() {}
                rest += it.rest.len();
                prop_assert_eq!(rest, 0);
            }
        }

        #[test]
        fn any_block_round_trips(
            ssrc in any::<u32>(), fraction_lost in any::<u8>(),
            cumulative_lost in -0x80_0000i32..=0x7F_FFFF,
            extended_highest_seq in any::<u32>(), jitter in any::<u32>(),
            lsr in any::<u32>(), dlsr in any::<u32>(), reporter in any::<u32>(),
        ) {
            let b = ReportBlock { ssrc, fraction_lost, cumulative_lost, extended_highest_seq, jitter, lsr, dlsr };
            let bytes = write_rr(reporter, &b);
            let c = parse_compound(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let Some(RtcpPacket::ReceiverReport(rr)) = c.packets().next() else {
                return Err(TestCaseError::fail("not an RR"));
            };
            prop_assert_eq!(rr.ssrc, reporter);
            prop_assert_eq!(rr.blocks.collect::<Vec<_>>(), vec![b]);
        }
    }
}
