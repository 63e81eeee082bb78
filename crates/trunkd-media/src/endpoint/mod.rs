//! Media endpoint primitives, for calls trunkd answers itself (IVR: play a
//! prompt, collect digits, record a leg).
//!
//! Everything here is sans-IO: the pieces take RTP packets as byte slices
//! (as a relay tap sees them) and hand out packets as byte vectors (as a
//! relay injection point wants them); time is always an input (`now`), never
//! read from the clock. The only I/O is in [`net`], thin tokio helpers that
//! drive a [`player::Player`] or a [`dtmf::DtmfSender`] over a `UdpSocket`.
//!
//! - [`g711`]: μ-law / A-law sample codecs (ITU-T G.711).
//! - [`wav`]: read a prompt into 8 kHz samples, write WAV files.
//! - [`player`]: an RTP source playing samples as PCMU/PCMA at 20 ms.
//! - [`dtmf`]: RFC 4733 telephone-event detector and sender, SIP INFO DTMF.
//! - [`recorder`]: write a leg's PCMU/PCMA RTP to a WAV file, incrementally.
//!
//! A stream that several of them feed in turn (a prompt, then DTMF, then
//! another prompt into one leg) keeps one SSRC and continuous sequence
//! numbers and timestamps by passing an [`RtpContinuity`] from one to the
//! next.

pub mod dtmf;
pub mod g711;
pub mod net;
pub mod player;
pub mod recorder;
mod rtp;
pub mod wav;

pub use rtp::{parse_rtp, write_rtp_header, RtpContinuity, RtpError, RtpPacket};

/// Samples per second of every stream here (G.711 and the telephone-event
/// clock that goes with it).
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 20 ms packet at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;
