//! Records legs to WAV: the G.711 RTP a relay tap sees, decoded and written
//! as 8 kHz 16-bit PCM, mono (one leg) or stereo (caller left, callee
//! right).
//!
//! Samples are placed by RTP timestamp, not by arrival: a gap in the
//! timestamps (loss, silence suppression, a DTMF event, comfort noise) is
//! written as silence, up to [`RecorderConfig::max_gap`] per gap so a leg on
//! hold for an hour does not write an hour of zeros; a late or duplicated
//! packet whose samples are already written is dropped. Memory is bounded:
//! samples go to the writer as they come (through hound's `WavWriter`, which
//! fixes the RIFF sizes on [`Recorder::finish`]); the stereo recorder holds
//! at most [`MAX_STEREO_SKEW`] of one leg while waiting for the other.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::g711::G711;
use super::rtp::{parse_rtp, RtpError};
use super::wav::{pcm_spec, WavError};
use super::SAMPLE_RATE;

/// How the stereo recorder lets one leg run ahead of the other before it
/// takes the other to be silent (no packets: muted, one-way audio, not yet
/// answered) and writes silence for it.
pub const MAX_STEREO_SKEW: Duration = Duration::from_millis(500);

/// What a recorder records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderConfig {
    /// The payload types to record and their law; packets of other types
    /// (telephone-event, comfort noise, other codecs) are skipped and their
    /// time becomes silence.
    pub payload_types: Vec<(u8, G711)>,
    /// Longest silence written for one gap in the timestamps.
    pub max_gap: Duration,
}

impl Default for RecorderConfig {
    /// PCMU (0) and PCMA (8) at their static types, gaps up to 2 s.
    fn default() -> Self {
        RecorderConfig {
            payload_types: vec![(0, G711::Pcmu), (8, G711::Pcma)],
            max_gap: Duration::from_secs(2),
        }
    }
}

/// Why a packet could not be recorded or the file written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The packet is not RTP; the recording goes on.
    #[error("not an RTP packet: {0}")]
    Rtp(#[from] RtpError),
    /// Writing the file failed; the recording is lost from here on.
    #[error("writing the recording: {0}")]
    Wav(#[from] WavError),
}

impl From<hound::Error> for RecordError {
    fn from(e: hound::Error) -> Self {
        RecordError::Wav(e.into())
    }
}

/// Counters of one recorded leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegRecordStats {
    /// Packets whose audio was written (whole or in part).
    pub packets: u64,
    /// Samples of audio written.
    pub audio_samples: u64,
    /// Samples of silence written for gaps (and, in stereo, while this leg
    /// sent nothing).
    pub silence_samples: u64,
    /// Packets dropped because their samples were already written (late or
    /// duplicated).
    pub late_packets: u64,
    /// Packets of payload types not recorded.
    pub skipped_packets: u64,
    /// Times the stream's timestamps jumped beyond `max_gap` (or back) and
    /// the recording re-anchored on them (including SSRC changes).
    pub resyncs: u64,
}

/// Where a leg's samples go on the recording's timeline (sample positions
/// from the start of the file).
#[derive(Debug, Default)]
struct LegTimeline {
    /// An RTP timestamp and the position its sample goes to.
    anchor: Option<(u32, u32, u64)>, // (ssrc, ts, position)
    /// Position up to which this leg's samples are decided (written or
    /// pending).
    filled: u64,
    stats: LegRecordStats,
}

/// What to do with one packet's samples.
struct Placement {
    /// Silence to write before them.
    silence: u64,
    /// Leading samples already covered, to skip.
    skip: usize,
}

impl LegTimeline {
    /// Places `n` samples of a packet. `arrival` is the position the arrival
    /// time gives (stereo, to align a leg's first packet with the other
    /// leg); without it a new stream continues where the last one stopped.
    fn place(
        &mut self,
        ssrc: u32,
        ts: u32,
        n: usize,
        arrival: Option<u64>,
        max_gap: u64,
    ) -> Option<Placement> {
        let n = n as u64;
        // Without an arrival time, a jump forward becomes the longest gap and
        // anything else (a new SSRC, a jump back) continues where the leg is.
        let reanchor = |filled: u64, forward: bool| {
            let fallback = if forward { filled + max_gap } else { filled };
            arrival.unwrap_or(fallback).clamp(filled, filled + max_gap)
        };
        let p = match self.anchor {
            Some((a_ssrc, a_ts, a_pos)) if a_ssrc == ssrc => {
                let p = a_pos as i64 + i64::from(ts.wrapping_sub(a_ts) as i32);
                let filled = self.filled as i64;
                let forward = p > filled + max_gap as i64;
                if forward || p + (n as i64) < filled - max_gap as i64 {
                    self.stats.resyncs += 1;
                    let p = reanchor(self.filled, forward);
                    self.anchor = Some((ssrc, ts, p));
                    p as i64
                } else {
                    p
                }
            }
            previous => {
                if previous.is_some() {
                    self.stats.resyncs += 1;
                }
                let p = reanchor(self.filled, false);
                self.anchor = Some((ssrc, ts, p));
                p as i64
            }
        };
        let filled = self.filled as i64;
        if p + n as i64 <= filled {
            self.stats.late_packets += 1;
            return None;
        }
        let skip = (filled - p).max(0) as usize;
        let silence = (p - filled).max(0) as u64;
        self.filled += silence + n - skip as u64;
        self.stats.packets += 1;
        self.stats.silence_samples += silence;
        self.stats.audio_samples += n - skip as u64;
        Some(Placement { silence, skip })
    }
}

/// A packet's decoded audio, or why it has none.
fn decode_packet(
    config: &RecorderConfig,
    packet: &[u8],
    stats: &mut LegRecordStats,
    buf: &mut Vec<i16>,
) -> Result<Option<(u32, u32)>, RtpError> {
    let rtp = parse_rtp(packet)?;
    let Some(&(_, law)) = config
        .payload_types
        .iter()
        .find(|(pt, _)| *pt == rtp.payload_type)
    else {
        stats.skipped_packets += 1;
        return Ok(None);
    };
    buf.clear();
    law.decode_into(rtp.payload, buf);
    Ok(Some((rtp.ssrc, rtp.timestamp)))
}

fn gap_samples(max_gap: Duration) -> u64 {
    (max_gap.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64
}

/// Records one leg to a mono WAV.
pub struct Recorder<W: Write + Seek> {
    wav: hound::WavWriter<W>,
    config: RecorderConfig,
    max_gap: u64,
    leg: LegTimeline,
    buf: Vec<i16>,
}

impl Recorder<BufWriter<File>> {
    /// Records to a new file at `path`.
    ///
    /// # Errors
    ///
    /// [`RecordError::Wav`] if the file cannot be created.
    pub fn create(path: impl AsRef<Path>, config: RecorderConfig) -> Result<Self, RecordError> {
        let file = File::create(path).map_err(WavError::Io)?;
        Recorder::new(BufWriter::new(file), config)
    }
}

impl<W: Write + Seek> Recorder<W> {
    /// Records to `writer` (writes the WAV header at once).
    ///
    /// # Errors
    ///
    /// [`RecordError::Wav`] if the header cannot be written.
    pub fn new(writer: W, config: RecorderConfig) -> Result<Self, RecordError> {
        Ok(Recorder {
            wav: hound::WavWriter::new(writer, pcm_spec(1))?,
            max_gap: gap_samples(config.max_gap),
            config,
            leg: LegTimeline::default(),
            buf: Vec::with_capacity(super::SAMPLES_PER_PACKET),
        })
    }

    /// Takes one RTP packet of the leg.
    ///
    /// # Errors
    ///
    /// [`RecordError::Rtp`] for a datagram that is not RTP (skipped, the
    /// recording goes on); [`RecordError::Wav`] if writing fails.
    pub fn handle_packet(&mut self, packet: &[u8]) -> Result<(), RecordError> {
        let Some((ssrc, ts)) =
            decode_packet(&self.config, packet, &mut self.leg.stats, &mut self.buf)?
        else {
            return Ok(());
        };
        let Some(place) = self.leg.place(ssrc, ts, self.buf.len(), None, self.max_gap) else {
            return Ok(());
        };
        for _ in 0..place.silence {
            self.wav.write_sample(0i16)?;
        }
        for &s in &self.buf[place.skip..] {
            self.wav.write_sample(s)?;
        }
        Ok(())
    }

    /// The counters so far.
    pub fn stats(&self) -> LegRecordStats {
        self.leg.stats
    }

    /// Completes the file (RIFF and data sizes) and returns the counters.
    ///
    /// # Errors
    ///
    /// [`RecordError::Wav`] if the final writes fail.
    pub fn finish(self) -> Result<LegRecordStats, RecordError> {
        self.wav.finalize()?;
        Ok(self.leg.stats)
    }
}

/// Which leg of a stereo recording a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The caller (A leg): left channel.
    Caller,
    /// The callee (B leg): right channel.
    Callee,
}

/// Records two legs to a stereo WAV, caller left, callee right.
///
/// Each leg's first packet is placed by its arrival time relative to the
/// recording's start; after that by its timestamps, as in [`Recorder`].
pub struct StereoRecorder<W: Write + Seek> {
    wav: hound::WavWriter<W>,
    config: RecorderConfig,
    max_gap: u64,
    start: Instant,
    legs: [LegTimeline; 2],
    pending: [VecDeque<i16>; 2],
    buf: Vec<i16>,
}

impl StereoRecorder<BufWriter<File>> {
    /// Records to a new file at `path`, the timeline starting at `start`.
    ///
    /// # Errors
    ///
    /// [`RecordError::Wav`] if the file cannot be created.
    pub fn create(
        path: impl AsRef<Path>,
        config: RecorderConfig,
        start: Instant,
    ) -> Result<Self, RecordError> {
        let file = File::create(path).map_err(WavError::Io)?;
        StereoRecorder::new(BufWriter::new(file), config, start)
    }
}

impl<W: Write + Seek> StereoRecorder<W> {
    /// Records to `writer`, the timeline starting at `start`.
    ///
    /// # Errors
    ///
    /// [`RecordError::Wav`] if the header cannot be written.
    pub fn new(writer: W, config: RecorderConfig, start: Instant) -> Result<Self, RecordError> {
        Ok(StereoRecorder {
            wav: hound::WavWriter::new(writer, pcm_spec(2))?,
            max_gap: gap_samples(config.max_gap),
            config,
            start,
            legs: [LegTimeline::default(), LegTimeline::default()],
            pending: [VecDeque::new(), VecDeque::new()],
            buf: Vec::with_capacity(super::SAMPLES_PER_PACKET),
        })
    }

    /// Takes one RTP packet of `side`, arrived at `now`.
    ///
    /// # Errors
    ///
    /// As [`Recorder::handle_packet`].
    pub fn handle_packet(
        &mut self,
        now: Instant,
        side: Side,
        packet: &[u8],
    ) -> Result<(), RecordError> {
        let i = side as usize;
        let Some((ssrc, ts)) =
            decode_packet(&self.config, packet, &mut self.legs[i].stats, &mut self.buf)?
        else {
            return Ok(());
        };
        let since = now.saturating_duration_since(self.start);
        let arrival = (since.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64;
        let Some(place) = self.legs[i].place(ssrc, ts, self.buf.len(), Some(arrival), self.max_gap)
        else {
            return Ok(());
        };
        let pending = &mut self.pending[i];
        pending.extend(std::iter::repeat_n(0i16, place.silence as usize));
        pending.extend(&self.buf[place.skip..]);
        self.flush(false)
    }

    /// Writes the frames both legs have; if one leg is more than
    /// [`MAX_STEREO_SKEW`] ahead (or `all`), the other gets silence.
    fn flush(&mut self, all: bool) -> Result<(), RecordError> {
        let skew = gap_samples(MAX_STEREO_SKEW) as usize;
        for (me, other) in [(0, 1), (1, 0)] {
            let ahead = self.pending[me]
                .len()
                .saturating_sub(self.pending[other].len());
            let pad = if all {
                ahead
            } else {
                ahead.saturating_sub(skew)
            };
            if pad > 0 {
                // The other leg sent nothing for these positions: silence,
                // and its packets for them, if they come, are late.
                self.pending[other].extend(std::iter::repeat_n(0i16, pad));
                self.legs[other].filled += pad as u64;
                self.legs[other].stats.silence_samples += pad as u64;
            }
        }
        let frames = self.pending[0].len().min(self.pending[1].len());
        for _ in 0..frames {
            let (Some(l), Some(r)) = (self.pending[0].pop_front(), self.pending[1].pop_front())
            else {
                break; // both have `frames` samples
            };
            self.wav.write_sample(l)?;
            self.wav.write_sample(r)?;
        }
        Ok(())
    }

    /// Counters of one leg.
    pub fn stats(&self, side: Side) -> LegRecordStats {
        self.legs[side as usize].stats
    }

    /// Writes what is pending (the shorter leg padded with silence),
    /// completes the file and returns both legs' counters (caller, callee).
    ///
    /// # Errors
    ///
    /// [`RecordError::Wav`] if the final writes fail.
    pub fn finish(mut self) -> Result<(LegRecordStats, LegRecordStats), RecordError> {
        self.flush(true)?;
        self.wav.finalize()?;
        Ok((self.legs[0].stats, self.legs[1].stats))
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
