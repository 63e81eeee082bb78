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
//! - [`framer`]: a leg's PCMU/PCMA RTP as 20 ms PCM frames and DTMF keys,
//!   mono or stereo, for streaming.
//!
//! A stream that several of them feed in turn (a prompt, then DTMF, then
//! another prompt into one leg) keeps one SSRC and continuous sequence
//! numbers and timestamps by passing an [`RtpContinuity`] from one to the
//! next.

pub mod dtmf;
pub mod framer;
pub mod g711;
pub mod leg;
pub mod net;
pub mod player;
pub mod recorder;
mod rtp;
pub mod wav;

pub use rtp::{parse_rtp, write_rtp_header, RtpContinuity, RtpError, RtpPacket, StreamTracker};

/// Samples per second of every stream here (G.711 and the telephone-event
/// clock that goes with it).
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 20 ms packet at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;

/// Whatever comes off the network, nothing here panics, and what a packet
/// can make the recorder write is bounded.
#[cfg(test)]
mod no_panic {
    use std::io::Cursor;
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::dtmf::{parse_dtmf, parse_dtmf_relay, DtmfDetector};
    use super::recorder::{Recorder, RecorderConfig, Side, StereoRecorder};
    use super::*;

    /// An RTP packet with a few likely payload types, SSRCs and timestamps
    /// close enough to each other to exercise gaps and reordering.
    fn rtp_packet() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(0u8), Just(8), Just(101), any::<u8>()],
            any::<bool>(),
            any::<u16>(),
            prop_oneof![0u32..20_000, any::<u32>()],
            1u32..3,
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(pt, marker, seq, ts, ssrc, payload)| {
                let mut p = Vec::new();
                write_rtp_header(&mut p, marker, pt, seq, ts, ssrc);
                p.extend_from_slice(&payload);
                p
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let now = Instant::now();
            let _ = parse_rtp(&data);
            let mut det = DtmfDetector::new(101);
            let _ = det.handle_packet(now, &data);
            det.handle_timeout(now + Duration::from_secs(5));
            let mut tracker = StreamTracker::new();
            let _ = tracker.observe(now, &data);
            let _ = tracker.continuity_at(now, 8000);
            let mut rec = Recorder::new(Cursor::new(Vec::new()), RecorderConfig::default()).unwrap();
            let _ = rec.handle_packet(&data);
            rec.finish().unwrap();
            let _ = wav::read_wav_8k(&data[..]);
            let mut riff = b"RIFF\x00\x00\x00\x00WAVE".to_vec();
            riff.extend_from_slice(&data);
            let _ = wav::read_wav_8k(&riff[..]);
            let _ = parse_dtmf_relay(&data);
            let _ = parse_dtmf(&data);
        }

        #[test]
        fn arbitrary_streams(packets in proptest::collection::vec(rtp_packet(), 0..60)) {
            let t0 = Instant::now();
            let mut det = DtmfDetector::new(101);
            let mut tracker = StreamTracker::new();
            let config = RecorderConfig { max_gap: Duration::from_millis(200), ..Default::default() };
            let mut rec = Recorder::new(Cursor::new(Vec::new()), config.clone()).unwrap();
            let mut stereo = StereoRecorder::new(Cursor::new(Vec::new()), config, t0).unwrap();
            let mut bound = 0u64;
            for (i, p) in packets.iter().enumerate() {
                let now = t0 + Duration::from_millis(20 * i as u64);
                let _ = det.handle_packet(now, p);
                det.handle_timeout(now);
                while det.poll_event().is_some() {}
                tracker.observe(now, p).unwrap();
                prop_assert!(tracker.continuity_at(now, 8000).is_some());
                rec.handle_packet(p).unwrap();
                let side = if i % 2 == 0 { Side::Caller } else { Side::Callee };
                stereo.handle_packet(now, side, p).unwrap();
                bound += 1600 + p.len() as u64;
            }
            let stats = rec.finish().unwrap();
            prop_assert!(stats.audio_samples + stats.silence_samples <= bound);
            stereo.finish().unwrap();
        }
    }
}
