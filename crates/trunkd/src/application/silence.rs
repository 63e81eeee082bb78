//! RecordAudio's silence stop (SPEC §6, the managed service's
//! `SilenceDurationInSeconds` and `SilenceThreshold`): a recording ends
//! once the caller has been quiet for that long. Pure: the caller's
//! packets and the clock come in, "quiet long enough" goes out.
//!
//! The managed service describes `SilenceThreshold` (1–1000, default 200)
//! as "the level of noise that is considered silence" with reference
//! points (1 ≈ 30 dB, a quiet room; 100 ≈ 40–50 dB, a whisper; 200 ≈
//! 60 dB, a crowded office; 1000 ≈ 75 dB, a loud person or music) but no
//! formula. trunkd takes it as an RMS level of 16-bit linear PCM (full
//! scale 32767): a frame whose RMS is at most the threshold is quiet. 200
//! is about −44 dBFS — below telephone speech (around −20 to −35 dBFS),
//! above line noise — and 1000 (−30 dBFS) lets loud backgrounds count as
//! silence, in the direction the managed service's scale goes.
//!
//! Time without packets counts as silence: a caller whose phone stops
//! sending during silence (VAD without comfort noise) is quiet, not
//! absent, and an RTP stream that stops for good must end the recording
//! as well.

use std::time::{Duration, Instant};

/// Tracks how long the caller has been quiet.
#[derive(Debug, Clone)]
pub struct SilenceDetector {
    threshold: f64,
    duration: Duration,
    /// The end of the last frame above the threshold (or the start).
    quiet_since: Instant,
}

impl SilenceDetector {
    /// `threshold`: `SilenceThreshold`; `duration`:
    /// `SilenceDurationInSeconds`; `now`: when recording starts (silence
    /// from the start counts).
    pub fn new(threshold: u32, duration: Duration, now: Instant) -> Self {
        SilenceDetector {
            threshold: f64::from(threshold),
            duration,
            quiet_since: now,
        }
    }

    /// A frame of decoded samples that arrived at `now`; a frame above the
    /// threshold restarts the count.
    pub fn frame(&mut self, now: Instant, samples: &[i16]) {
        if !samples.is_empty() && rms(samples) > self.threshold {
            self.quiet_since = self.quiet_since.max(now);
        }
    }

    /// When the caller will have been quiet for `duration` if nothing
    /// louder arrives.
    pub fn deadline(&self) -> Instant {
        self.quiet_since + self.duration
    }

    /// Whether the caller has been quiet for `duration` at `now`.
    pub fn is_over(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

/// The root mean square of `samples`.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// The payload type and payload of a plain RTP packet (CSRCs, a header
/// extension and padding skipped), or `None` if it is not one.
pub fn rtp_payload(packet: &[u8]) -> Option<(u8, &[u8])> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    Some((packet[1] & 0x7f, packet.get(start..end)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn frame(level: i16) -> Vec<i16> {
        (0..160)
            .map(|i| if i % 2 == 0 { level } else { -level })
            .collect()
    }

    #[test]
    fn a_frame_is_quiet_at_or_below_the_threshold_by_its_rms() {
        assert_eq!(rms(&frame(200)), 200.0);
        assert_eq!(rms(&[3, 4, -3, -4]), (12.5f64).sqrt());
        assert_eq!(rms(&[]), 0.0);
        let t0 = Instant::now();
        let mut d = SilenceDetector::new(200, 1000 * MS, t0);
        d.frame(t0 + 500 * MS, &frame(200));
        assert_eq!(d.deadline(), t0 + 1000 * MS, "200 is quiet at 200");
        d.frame(t0 + 600 * MS, &frame(201));
        assert_eq!(d.deadline(), t0 + 1600 * MS, "201 is not");
    }

    #[test]
    fn speech_then_quiet_frames_end_after_the_silence_duration() {
        let t0 = Instant::now();
        let mut d = SilenceDetector::new(200, 2000 * MS, t0);
        // One second of speech, 20 ms frames.
        for i in 1..=50 {
            let now = t0 + i * 20 * MS;
            d.frame(now, &frame(3000));
            assert!(!d.is_over(now));
        }
        let spoke = t0 + 1000 * MS;
        // Quiet frames (line noise) do not restart the count.
        for i in 1..=99 {
            let now = spoke + i * 20 * MS;
            d.frame(now, &frame(40));
            assert!(!d.is_over(now), "over early at {i}");
        }
        assert!(d.is_over(spoke + 2000 * MS));
        assert_eq!(d.deadline(), spoke + 2000 * MS);
    }

    #[test]
    fn no_packets_at_all_is_silence_from_the_start() {
        let t0 = Instant::now();
        let d = SilenceDetector::new(1, 3000 * MS, t0);
        assert!(!d.is_over(t0 + 2999 * MS));
        assert!(d.is_over(t0 + 3000 * MS));
    }

    #[test]
    fn a_late_frame_never_moves_the_count_back() {
        let t0 = Instant::now();
        let mut d = SilenceDetector::new(200, 1000 * MS, t0 + 100 * MS);
        d.frame(t0, &frame(5000));
        assert_eq!(d.deadline(), t0 + 1100 * MS);
    }

    #[test]
    fn the_payload_of_rtp_packets_with_csrcs_extensions_and_padding() {
        let mut p = vec![0x80, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend([7u8; 4]);
        assert_eq!(rtp_payload(&p), Some((8, &[7u8; 4][..])));
        // One CSRC, an extension of one word, two bytes of padding.
        let mut q = vec![0xB1, 0x80, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        q.extend([9, 9, 9, 9]); // CSRC
        q.extend([0xBE, 0xDE, 0, 1, 5, 5, 5, 5]); // extension
        q.extend([1, 2, 3]);
        q.extend([0, 2]); // padding
        assert_eq!(rtp_payload(&q), Some((0, &[1u8, 2, 3][..])));
        assert_eq!(rtp_payload(&[0x80, 0, 0]), None);
        assert_eq!(rtp_payload(&[0x40; 20]), None, "not version 2");
        let mut bad = vec![0xA0, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 1, 200];
        assert_eq!(rtp_payload(&bad), None, "padding longer than the packet");
        bad[0] = 0x90;
        assert_eq!(rtp_payload(&bad), None, "extension past the end");
    }
}
