//! Frames a leg's RTP into 20 ms blocks of 8 kHz 16-bit PCM, for streaming
//! a call's audio to consumers that want fixed frames (SPEC §2.6: speech
//! engines, WebSocket sinks, WAV writers).
//!
//! Sans-IO: [`LegFramer::handle_packet`] takes each RTP packet of one leg
//! (plain, as a relay tap hands it: after SRTP decryption), and
//! [`LegFramer::poll_event`] hands out, in order, whole frames of
//! [`FRAME_SAMPLES`] samples and the DTMF key presses (RFC 4733
//! telephone-events) seen between them, each key once.
//!
//! Samples are placed by RTP timestamp, as the recorder places them: a gap
//! (loss, silence suppression, the time of a DTMF event) becomes silence, at
//! most [`FramerConfig::max_gap`] per gap, so a leg back from an hour on
//! hold does not produce an hour of zeros at once; a late or duplicated
//! packet whose samples were already framed is dropped (it cannot be put
//! back into a frame already sent). A new SSRC continues where the old one
//! stopped. Memory is bounded: at most one partial frame is held, and the
//! frames a single packet can release are bounded by `max_gap`.
//!
//! [`StereoFramer`] pairs two legs' frames into interleaved stereo frames
//! (caller left, callee right), one 20 ms tick each; a leg that sends
//! nothing (not answered yet, muted, on hold) is silence on its channel
//! once the other leg is [`StereoFramer::max_skew_frames`] ahead.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::dtmf::{DetectedDigit, DtmfDetector};
use super::g711::G711;
use super::recorder::Side;
use super::rtp::{parse_rtp, RtpError};
use super::{SAMPLES_PER_PACKET, SAMPLE_RATE};

/// Samples in one frame: 20 ms at 8 kHz.
pub const FRAME_SAMPLES: usize = SAMPLES_PER_PACKET;

/// Bytes of one mono frame as 16-bit PCM (always even).
pub const FRAME_BYTES: usize = FRAME_SAMPLES * 2;

/// One mono frame of 20 ms.
pub type Frame = [i16; FRAME_SAMPLES];

/// What a [`LegFramer`] frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FramerConfig {
    /// The audio payload types and their law; packets of other types
    /// (comfort noise, other codecs) are skipped and their time becomes
    /// silence.
    pub payload_types: Vec<(u8, G711)>,
    /// The telephone-event payload type, if the leg negotiated one.
    pub telephone_event: Option<u8>,
    /// Longest silence produced for one gap in the timestamps.
    pub max_gap: Duration,
}

impl Default for FramerConfig {
    /// PCMU (0) and PCMA (8) at their static types, telephone-event 101,
    /// gaps up to 2 s.
    fn default() -> Self {
        FramerConfig {
            payload_types: vec![(0, G711::Pcmu), (8, G711::Pcma)],
            telephone_event: Some(101),
            max_gap: Duration::from_secs(2),
        }
    }
}

/// What a [`LegFramer`] produced, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramerEvent {
    /// 20 ms of audio.
    Frame(Box<Frame>),
    /// A key press, once, when its end is known.
    Dtmf(DetectedDigit),
}

/// Counters of one framed leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Audio packets whose samples were framed (whole or in part).
    pub packets: u64,
    /// Frames produced.
    pub frames: u64,
    /// Samples of audio framed.
    pub audio_samples: u64,
    /// Samples of silence framed for gaps (and to complete the last frame).
    pub silence_samples: u64,
    /// Packets dropped because their samples were already framed.
    pub late_packets: u64,
    /// Packets of payload types not framed (and not telephone-events).
    pub skipped_packets: u64,
    /// Times the timestamps jumped beyond `max_gap` (or back), or the SSRC
    /// changed, and the framer re-anchored.
    pub resyncs: u64,
    /// Key presses reported.
    pub digits: u64,
}

/// Frames one leg. See the module documentation.
#[derive(Debug)]
pub struct LegFramer {
    config: FramerConfig,
    max_gap: u64,
    /// (ssrc, timestamp, position) of the stream's reference packet.
    anchor: Option<(u32, u32, u64)>,
    /// Samples decided (framed or pending) since the start.
    filled: u64,
    /// Samples of the frame being built (fewer than a frame).
    pending: Vec<i16>,
    dtmf: Option<DtmfDetector>,
    out: VecDeque<FramerEvent>,
    stats: FramerStats,
    decoded: Vec<i16>,
}

impl LegFramer {
    pub fn new(config: FramerConfig) -> Self {
        let max_gap = (config.max_gap.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64;
        LegFramer {
            dtmf: config.telephone_event.map(DtmfDetector::new),
            config,
            max_gap,
            anchor: None,
            filled: 0,
            pending: Vec::with_capacity(FRAME_SAMPLES),
            out: VecDeque::new(),
            stats: FramerStats::default(),
            decoded: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// Takes one RTP packet of the leg.
    ///
    /// # Errors
    ///
    /// [`RtpError`] for a datagram that is not RTP (or a telephone-event
    /// too short to read); nothing changes.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) -> Result<(), RtpError> {
        let rtp = parse_rtp(packet)?;
        if let Some(d) = &mut self.dtmf {
            if Some(rtp.payload_type) == self.config.telephone_event {
                // A short event payload is the sender's problem: not a key.
                let _ = d.handle_packet(now, packet);
                self.drain_digits();
                return Ok(());
            }
        }
        let Some(&(_, law)) = self
            .config
            .payload_types
            .iter()
            .find(|(pt, _)| *pt == rtp.payload_type)
        else {
            self.stats.skipped_packets += 1;
            return Ok(());
        };
        self.decoded.clear();
        law.decode_into(rtp.payload, &mut self.decoded);
        let n = self.decoded.len() as u64;
        if n == 0 {
            return Ok(());
        }
        let p = self.position(rtp.ssrc, rtp.timestamp, n);
        if p + n as i64 <= self.filled as i64 {
            self.stats.late_packets += 1;
            return Ok(());
        }
        let skip = (self.filled as i64 - p).max(0) as usize;
        let silence = (p - self.filled as i64).max(0) as u64;
        self.stats.packets += 1;
        self.stats.silence_samples += silence;
        self.stats.audio_samples += n - skip as u64;
        self.filled += silence + n - skip as u64;
        for _ in 0..silence {
            self.push(0);
        }
        for i in skip..self.decoded.len() {
            let s = self.decoded[i];
            self.push(s);
        }
        Ok(())
    }

    /// Ends a key press whose packets stopped coming (see
    /// [`DtmfDetector::handle_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = &mut self.dtmf {
            d.handle_timeout(now);
            self.drain_digits();
        }
    }

    /// When [`LegFramer::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dtmf.as_ref().and_then(DtmfDetector::poll_timeout)
    }

    /// The next frame or key press, in stream order.
    pub fn poll_event(&mut self) -> Option<FramerEvent> {
        self.out.pop_front()
    }

    /// The leg is over: a key press still going is reported, and a partial
    /// last frame is completed with silence.
    pub fn finish(&mut self) {
        if let Some(at) = self.poll_timeout() {
            self.handle_timeout(at);
        }
        if !self.pending.is_empty() {
            let missing = FRAME_SAMPLES - self.pending.len();
            self.stats.silence_samples += missing as u64;
            while !self.pending.is_empty() {
                self.push(0);
            }
        }
    }

    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Where the first sample of a packet goes (possibly before `filled`).
    fn position(&mut self, ssrc: u32, ts: u32, n: u64) -> i64 {
        let filled = self.filled as i64;
        let max_gap = self.max_gap as i64;
        match self.anchor {
            Some((a_ssrc, a_ts, a_pos)) if a_ssrc == ssrc => {
                let p = a_pos as i64 + i64::from(ts.wrapping_sub(a_ts) as i32);
                let forward = p > filled + max_gap;
                if forward || p + (n as i64) < filled - max_gap {
                    // A jump: a forward one becomes the longest gap, a
                    // backward one continues where the leg is.
                    self.stats.resyncs += 1;
                    let at = if forward { filled + max_gap } else { filled };
                    self.anchor = Some((ssrc, ts, at as u64));
                    at
                } else {
                    p
                }
            }
            previous => {
                if previous.is_some() {
                    self.stats.resyncs += 1;
                }
                self.anchor = Some((ssrc, ts, self.filled));
                filled
            }
        }
    }

    fn push(&mut self, sample: i16) {
        self.pending.push(sample);
        if self.pending.len() == FRAME_SAMPLES {
            let mut frame = Box::new([0i16; FRAME_SAMPLES]);
            frame.copy_from_slice(&self.pending);
            self.pending.clear();
            self.stats.frames += 1;
            self.out.push_back(FramerEvent::Frame(frame));
        }
    }

    fn drain_digits(&mut self) {
        if let Some(d) = &mut self.dtmf {
            while let Some(digit) = d.poll_event() {
                self.stats.digits += 1;
                self.out.push_back(FramerEvent::Dtmf(digit));
            }
        }
    }
}

/// `samples` as 16-bit little-endian bytes (the wire format of a frame).
pub fn pcm_le_bytes(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Default of [`StereoFramer::max_skew_frames`]: 200 ms.
pub const DEFAULT_MAX_SKEW_FRAMES: usize = 10;

/// Pairs two legs' frames into stereo frames (caller left, callee right),
/// [`FRAME_SAMPLES`] sample pairs each, interleaved L R L R.
#[derive(Debug)]
pub struct StereoFramer {
    caller: VecDeque<Box<Frame>>,
    callee: VecDeque<Box<Frame>>,
    max_skew_frames: usize,
}

impl Default for StereoFramer {
    fn default() -> Self {
        StereoFramer::new(DEFAULT_MAX_SKEW_FRAMES)
    }
}

impl StereoFramer {
    /// A framer that lets one leg run `max_skew_frames` frames ahead of a
    /// silent other leg before it fills that leg's channel with silence
    /// (at least 1).
    pub fn new(max_skew_frames: usize) -> Self {
        StereoFramer {
            caller: VecDeque::new(),
            callee: VecDeque::new(),
            max_skew_frames: max_skew_frames.max(1),
        }
    }

    pub fn max_skew_frames(&self) -> usize {
        self.max_skew_frames
    }

    /// A frame of `side`'s leg.
    pub fn push(&mut self, side: Side, frame: Box<Frame>) {
        match side {
            Side::Caller => self.caller.push_back(frame),
            Side::Callee => self.callee.push_back(frame),
        }
    }

    /// The next stereo frame ([`FRAME_SAMPLES`] × 2 samples), when both
    /// legs have one or one leg is too far ahead of the other.
    pub fn poll_frame(&mut self) -> Option<Vec<i16>> {
        let both = !self.caller.is_empty() && !self.callee.is_empty();
        let ahead =
            self.caller.len() > self.max_skew_frames || self.callee.len() > self.max_skew_frames;
        if both || ahead {
            let l = self.caller.pop_front();
            let r = self.callee.pop_front();
            Some(interleave(l.as_deref(), r.as_deref()))
        } else {
            None
        }
    }

    /// The call is over: every frame left, the missing leg silent.
    pub fn finish(&mut self) -> Vec<Vec<i16>> {
        let mut out = Vec::new();
        while !self.caller.is_empty() || !self.callee.is_empty() {
            let l = self.caller.pop_front();
            let r = self.callee.pop_front();
            out.push(interleave(l.as_deref(), r.as_deref()));
        }
        out
    }
}

fn interleave(left: Option<&Frame>, right: Option<&Frame>) -> Vec<i16> {
    let mut out = Vec::with_capacity(FRAME_SAMPLES * 2);
    for i in 0..FRAME_SAMPLES {
        out.push(left.map_or(0, |f| f[i]));
        out.push(right.map_or(0, |f| f[i]));
    }
    out
}

#[cfg(test)]
#[path = "framer_tests.rs"]
mod tests;
