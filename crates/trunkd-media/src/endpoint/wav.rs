//! WAV files in and out of the endpoint: prompts read into 8 kHz 16-bit
//! samples, recordings and test fixtures written as 8 kHz 16-bit PCM.
//!
//! PCM parsing and writing is [`hound`]'s (chunk walking, `WAVE_FORMAT_
//! EXTENSIBLE`, header fix-up on finalize). hound does not read G.711 WAVs
//! (format tags 6 and 7), which telephony prompt libraries ship, so those
//! go through a small chunk walker here.

use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Seek, Write};
use std::path::Path;

use thiserror::Error;

use super::g711::G711;
use super::SAMPLE_RATE;

/// Largest prompt file read, in bytes (an hour of 16 kHz 16-bit mono is
/// 115 MB; a prompt is seconds). Keeps a wrong path from filling memory.
pub const MAX_WAV_BYTES: u64 = 128 * 1024 * 1024;

/// Why a WAV file cannot be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WavError {
    /// The file could not be read or written.
    #[error("WAV I/O: {0}")]
    Io(#[from] io::Error),
    /// Not a well-formed RIFF/WAVE file.
    #[error("malformed WAV: {0}")]
    Malformed(String),
    /// A sample encoding other than 16-bit PCM or 8-bit G.711.
    #[error("unsupported WAV encoding: {0}")]
    UnsupportedEncoding(String),
    /// Prompts must be mono.
    #[error("WAV has {0} channels, a prompt must be mono")]
    NotMono(u16),
    /// A rate other than 8000 Hz (or 16000 Hz for PCM).
    #[error("WAV sample rate {0} Hz is not supported (8000, or 16000 for PCM)")]
    UnsupportedRate(u32),
    /// Larger than [`MAX_WAV_BYTES`].
    #[error("WAV file larger than {MAX_WAV_BYTES} bytes")]
    TooLarge,
}

impl From<hound::Error> for WavError {
    fn from(e: hound::Error) -> Self {
        match e {
            hound::Error::IoError(e) => WavError::Io(e),
            hound::Error::FormatError(why) => WavError::Malformed(why.to_owned()),
            hound::Error::Unsupported => {
                WavError::UnsupportedEncoding("not PCM or G.711".to_owned())
            }
            other => WavError::Malformed(other.to_string()),
        }
    }
}

/// Reads a mono WAV from `reader` into 8 kHz 16-bit samples.
///
/// Accepted: 16-bit PCM at 8 kHz (as is) or 16 kHz (low-pass filtered and
/// decimated, [`downsample_16k_to_8k`]), and 8 kHz G.711 μ-law or A-law
/// (decoded).
///
/// # Errors
///
/// [`WavError`] for anything else, a malformed file, or one larger than
/// [`MAX_WAV_BYTES`].
pub fn read_wav_8k<R: Read>(reader: R) -> Result<Vec<i16>, WavError> {
    let mut bytes = Vec::new();
    reader.take(MAX_WAV_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_WAV_BYTES {
        return Err(WavError::TooLarge);
    }
    // The file is in memory: an I/O error from hound means it ended early.
    let in_memory = |e: hound::Error| match e {
        hound::Error::IoError(e) => WavError::Malformed(format!("truncated ({e})")),
        other => other.into(),
    };
    match hound::WavReader::new(Cursor::new(&bytes)) {
        Ok(wav) => read_pcm(wav).map_err(|e| match e {
            WavError::Io(e) => WavError::Malformed(format!("truncated ({e})")),
            other => other,
        }),
        Err(hound::Error::Unsupported) => read_g711(&bytes),
        Err(e) => Err(in_memory(e)),
    }
}

/// [`read_wav_8k`] from a file.
///
/// # Errors
///
/// As [`read_wav_8k`], plus the error opening the file.
pub fn read_wav_file_8k(path: impl AsRef<Path>) -> Result<Vec<i16>, WavError> {
    read_wav_8k(File::open(path)?)
}

fn read_pcm<R: Read>(mut wav: hound::WavReader<R>) -> Result<Vec<i16>, WavError> {
    let spec = wav.spec();
    if spec.channels != 1 {
        return Err(WavError::NotMono(spec.channels));
    }
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(WavError::UnsupportedEncoding(format!(
            "{}-bit {:?} PCM (16-bit integer expected)",
            spec.bits_per_sample, spec.sample_format
        )));
    }
    let samples = wav.samples::<i16>().collect::<Result<Vec<_>, _>>()?;
    match spec.sample_rate {
        SAMPLE_RATE => Ok(samples),
        16000 => Ok(downsample_16k_to_8k(&samples)),
        other => Err(WavError::UnsupportedRate(other)),
    }
}

/// WAVE format tags of the two G.711 laws.
const WAVE_FORMAT_ALAW: u16 = 6;
const WAVE_FORMAT_MULAW: u16 = 7;

/// Walks the RIFF chunks of a file hound refused and decodes it if it is
/// 8 kHz mono G.711.
fn read_g711(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    let malformed = |why: &str| WavError::Malformed(why.to_owned());
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(malformed("no RIFF/WAVE header"));
    }
    let mut pos = 12usize;
    let mut law = None;
    while let Some(header) = pos.checked_add(8).and_then(|end| bytes.get(pos..end)) {
        let id = &header[0..4];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body_start = pos + 8;
        if id == b"fmt " {
            let fmt = body_start
                .checked_add(16)
                .and_then(|end| bytes.get(body_start..end))
                .ok_or_else(|| malformed("fmt chunk truncated"))?;
            let tag = u16::from_le_bytes([fmt[0], fmt[1]]);
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            law = Some(match tag {
                WAVE_FORMAT_MULAW => G711::Pcmu,
                WAVE_FORMAT_ALAW => G711::Pcma,
                other => {
                    return Err(WavError::UnsupportedEncoding(format!(
                        "format tag {other:#06x}"
                    )))
                }
            });
            if channels != 1 {
                return Err(WavError::NotMono(channels));
            }
            if rate != SAMPLE_RATE {
                return Err(WavError::UnsupportedRate(rate));
            }
            if bits != 8 {
                return Err(WavError::UnsupportedEncoding(format!(
                    "{bits}-bit G.711 (8 expected)"
                )));
            }
        } else if id == b"data" {
            let law = law.ok_or_else(|| malformed("data chunk before fmt chunk"))?;
            // A writer that streamed the file may have left the size at 0 or
            // u32::MAX: take what is there.
            let end = body_start.saturating_add(size).min(bytes.len());
            let end = if size == 0 { bytes.len() } else { end };
            let mut out = Vec::with_capacity(end - body_start);
            law.decode_into(&bytes[body_start..end], &mut out);
            return Ok(out);
        }
        pos = body_start.saturating_add(size).saturating_add(size & 1);
    }
    Err(malformed("no data chunk"))
}

/// Taps of the 16 → 8 kHz anti-aliasing filter: odd, so it is symmetric
/// around one sample and the output stays aligned with the input.
const FIR_TAPS: usize = 95;
/// Cutoff (−6 dB point) of the filter: a little under the 4 kHz output
/// Nyquist frequency. With 95 Blackman-windowed taps the transition band
/// is about ±460 Hz, so 0–3.2 kHz (the telephone band) passes flat and
/// everything from ~4.2 kHz on, which would fold back into the band, is
/// attenuated by more than 70 dB.
const FIR_CUTOFF_HZ: f64 = 3700.0;

/// Windowed-sinc (Blackman) low-pass taps, normalised to unity DC gain.
fn lowpass_taps() -> [f64; FIR_TAPS] {
    let mut h = [0.0; FIR_TAPS];
    let m = (FIR_TAPS - 1) as f64;
    let fc = FIR_CUTOFF_HZ / 16000.0; // cycles per input sample
    for (n, tap) in h.iter_mut().enumerate() {
        let k = n as f64 - m / 2.0;
        let sinc = if k == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * k).sin() / (std::f64::consts::PI * k)
        };
        let phase = 2.0 * std::f64::consts::PI * n as f64 / m;
        let blackman = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
        *tap = sinc * blackman;
    }
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|t| *t /= sum);
    h
}

/// Converts 16 kHz samples to 8 kHz: low-pass below 4 kHz, then keep every
/// other sample. Output sample `k` is aligned with input sample `2k` (the
/// filter is zero-phase); the signal is taken as silent beyond both ends.
pub fn downsample_16k_to_8k(input: &[i16]) -> Vec<i16> {
    let h = lowpass_taps();
    let half = (FIR_TAPS / 2) as isize;
    let len = input.len() as isize;
    (0..input.len().div_ceil(2))
        .map(|k| {
            let centre = 2 * k as isize;
            let acc: f64 = h
                .iter()
                .enumerate()
                .filter_map(|(j, tap)| {
                    let i = centre + half - j as isize;
                    (0..len)
                        .contains(&i)
                        .then(|| tap * f64::from(input[i as usize]))
                })
                .sum();
            acc.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// The spec of the 8 kHz 16-bit PCM files trunkd writes.
pub(crate) fn pcm_spec(channels: u16) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Writes `samples` as an 8 kHz mono 16-bit PCM WAV.
///
/// # Errors
///
/// [`WavError::Io`] from the writer.
pub fn write_wav_8k<W: Write + Seek>(writer: W, samples: &[i16]) -> Result<(), WavError> {
    let mut wav = hound::WavWriter::new(writer, pcm_spec(1))?;
    for &s in samples {
        wav.write_sample(s)?;
    }
    wav.finalize()?;
    Ok(())
}

/// Writes two channels as an 8 kHz stereo 16-bit PCM WAV; the shorter one is
/// padded with silence.
///
/// # Errors
///
/// [`WavError::Io`] from the writer.
pub fn write_wav_stereo_8k<W: Write + Seek>(
    writer: W,
    left: &[i16],
    right: &[i16],
) -> Result<(), WavError> {
    let mut wav = hound::WavWriter::new(writer, pcm_spec(2))?;
    for i in 0..left.len().max(right.len()) {
        wav.write_sample(left.get(i).copied().unwrap_or(0))?;
        wav.write_sample(right.get(i).copied().unwrap_or(0))?;
    }
    wav.finalize()?;
    Ok(())
}

/// [`write_wav_8k`] to a new file at `path`.
///
/// # Errors
///
/// As [`write_wav_8k`], plus the error creating the file.
pub fn write_wav_file_8k(path: impl AsRef<Path>, samples: &[i16]) -> Result<(), WavError> {
    write_wav_8k(BufWriter::new(File::create(path)?), samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f64, freq: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16
            })
            .collect()
    }

    fn wav_bytes(spec: hound::WavSpec, samples: &[i16]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        buf.into_inner()
    }

    /// A hand-built G.711 WAV (fmt with cbSize, a fact chunk, odd-size list
    /// chunk with its pad byte), as telephony prompt packs have them.
    fn g711_wav(tag: u16, channels: u16, rate: u32, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"WAVE");
        body.extend_from_slice(b"fmt ");
        body.extend_from_slice(&18u32.to_le_bytes());
        body.extend_from_slice(&tag.to_le_bytes());
        body.extend_from_slice(&channels.to_le_bytes());
        body.extend_from_slice(&rate.to_le_bytes());
        body.extend_from_slice(&(rate * u32::from(channels)).to_le_bytes());
        body.extend_from_slice(&channels.to_le_bytes());
        body.extend_from_slice(&8u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(b"fact");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(b"LIST");
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&[1, 2, 3, 0]);
        body.extend_from_slice(b"data");
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn reads_8k_pcm_as_is() {
        let samples = vec![0, 1, -1, i16::MAX, i16::MIN, 1234];
        let bytes = wav_bytes(pcm_spec(1), &samples);
        assert_eq!(read_wav_8k(&bytes[..]).unwrap(), samples);
    }

    #[test]
    fn written_wav_reads_back() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        let mut buf = Cursor::new(Vec::new());
        write_wav_8k(&mut buf, &samples).unwrap();
        let bytes = buf.into_inner();
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(bytes.len(), 44 + 2 * samples.len());
        assert_eq!(read_wav_8k(&bytes[..]).unwrap(), samples);
    }

    #[test]
    fn stereo_is_written_interleaved_and_refused_as_a_prompt() {
        let mut buf = Cursor::new(Vec::new());
        write_wav_stereo_8k(&mut buf, &[1, 2, 3], &[-1]).unwrap();
        let bytes = buf.into_inner();
        let mut r = hound::WavReader::new(&bytes[..]).unwrap();
        assert_eq!(r.spec().channels, 2);
        let s: Vec<i16> = r.samples().map(|s| s.unwrap()).collect();
        assert_eq!(s, vec![1, -1, 2, 0, 3, 0]);
        assert!(matches!(read_wav_8k(&bytes[..]), Err(WavError::NotMono(2))));
    }

    #[test]
    fn reads_g711_wavs() {
        let data = [0xff, 0x80, 0x00, 0xfe, 0x7f];
        let ulaw = g711_wav(7, 1, 8000, &data);
        assert_eq!(
            read_wav_8k(&ulaw[..]).unwrap(),
            vec![0, 32124, -32124, 8, 0]
        );
        let alaw = g711_wav(6, 1, 8000, &[0xd5, 0x55, 0xaa]);
        assert_eq!(read_wav_8k(&alaw[..]).unwrap(), vec![8, -8, 32256]);
    }

    #[test]
    fn refuses_what_it_cannot_play() {
        let e = read_wav_8k(&g711_wav(7, 2, 8000, &[0; 4])[..]);
        assert!(matches!(e, Err(WavError::NotMono(2))), "{e:?}");
        let e = read_wav_8k(&g711_wav(6, 1, 16000, &[0; 4])[..]);
        assert!(matches!(e, Err(WavError::UnsupportedRate(16000))), "{e:?}");
        let e = read_wav_8k(&g711_wav(0x11, 1, 8000, &[0; 4])[..]); // IMA ADPCM
        assert!(matches!(e, Err(WavError::UnsupportedEncoding(_))), "{e:?}");
        let e = read_wav_8k(
            &wav_bytes(
                hound::WavSpec {
                    sample_rate: 44100,
                    ..pcm_spec(1)
                },
                &[0; 4],
            )[..],
        );
        assert!(matches!(e, Err(WavError::UnsupportedRate(44100))), "{e:?}");
        let e = read_wav_8k(&wav_bytes(pcm_spec(2), &[0; 4])[..]);
        assert!(matches!(e, Err(WavError::NotMono(2))), "{e:?}");
        let spec8 = hound::WavSpec {
            bits_per_sample: 8,
            ..pcm_spec(1)
        };
        let mut buf = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec8).unwrap();
        w.write_sample(0i8).unwrap();
        w.finalize().unwrap();
        let e = read_wav_8k(&buf.into_inner()[..]);
        assert!(matches!(e, Err(WavError::UnsupportedEncoding(_))), "{e:?}");
        let e = read_wav_8k(&b"RIFX0000WAVE"[..]);
        assert!(matches!(e, Err(WavError::Malformed(_))), "{e:?}");
        let e = read_wav_8k(&b""[..]);
        assert!(matches!(e, Err(WavError::Malformed(_))), "{e:?}");
        let mut short_pcm = wav_bytes(pcm_spec(1), &[1, 2, 3, 4]);
        short_pcm.truncate(47);
        let e = read_wav_8k(&short_pcm[..]);
        assert!(matches!(e, Err(WavError::Malformed(_))), "{e:?}");
        let mut truncated = g711_wav(7, 1, 8000, &[0; 4]);
        truncated.truncate(30);
        let e = read_wav_8k(&truncated[..]);
        assert!(matches!(e, Err(WavError::Malformed(_))), "{e:?}");
        let e = read_wav_file_8k("/nonexistent/prompt.wav");
        assert!(matches!(e, Err(WavError::Io(_))), "{e:?}");
    }

    /// Peak absolute value over the middle of a signal (away from the
    /// filter's edge effects).
    fn middle_peak(s: &[i16]) -> i32 {
        s[100..s.len() - 100]
            .iter()
            .map(|&x| i32::from(x).abs())
            .max()
            .unwrap()
    }

    #[test]
    fn downsampling_keeps_the_telephone_band() {
        for freq in [300.0, 1000.0, 3000.0] {
            let input = sine(16000.0, freq, 10000.0, 3200);
            let out = downsample_16k_to_8k(&input);
            assert_eq!(out.len(), 1600);
            let ideal = sine(8000.0, freq, 10000.0, 1600);
            for k in 100..1500 {
                let err = (i32::from(out[k]) - i32::from(ideal[k])).abs();
                assert!(
                    err <= 100,
                    "{freq} Hz sample {k}: {} vs {}",
                    out[k],
                    ideal[k]
                );
            }
        }
    }

    #[test]
    fn downsampling_filters_what_would_alias() {
        // Dropping every other sample would turn 6 kHz into a full-scale
        // 2 kHz tone and 4.5 kHz into 3.5 kHz.
        for freq in [4500.0, 6000.0, 7900.0] {
            let out = downsample_16k_to_8k(&sine(16000.0, freq, 10000.0, 3200));
            let peak = middle_peak(&out);
            assert!(peak <= 10, "{freq} Hz leaks through at {peak}");
        }
    }

    #[test]
    fn reads_16k_pcm_through_the_filter() {
        let input = sine(16000.0, 1000.0, 8000.0, 1600);
        let bytes = wav_bytes(
            hound::WavSpec {
                sample_rate: 16000,
                ..pcm_spec(1)
            },
            &input,
        );
        let out = read_wav_8k(&bytes[..]).unwrap();
        assert_eq!(out, downsample_16k_to_8k(&input));
        assert_eq!(out.len(), 800);
    }
}
