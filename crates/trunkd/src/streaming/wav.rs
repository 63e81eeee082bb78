//! A WAV sink stream: one file per leg (`<TransactionId>-caller.wav`,
//! `-callee.wav`) or one stereo file (`-stereo.wav`), 8 kHz 16-bit PCM,
//! written on a blocking thread as the frames come; hound fixes the RIFF
//! sizes when the stream ends. A file that cannot be written fails the
//! stream (a FAILED event), never the call.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use tokio::sync::mpsc;
use tracing::warn;

use super::metrics::StreamingMetrics;
use super::{SinkMsg, SinkReport};

/// Drains `rx` into `path` until it closes (blocking: run it on a blocking
/// thread). The file is created with the first audio.
pub(crate) fn write(
    path: PathBuf,
    channels: u16,
    mut rx: mpsc::Receiver<SinkMsg>,
    metrics: &StreamingMetrics,
) -> SinkReport {
    let mut report = SinkReport::default();
    let mut writer: Option<hound::WavWriter<BufWriter<File>>> = None;
    while let Some(msg) = rx.blocking_recv() {
        let SinkMsg::Audio(pcm) = msg else { continue };
        if report.failure.is_some() {
            metrics.frame("wav", "dropped", 1);
            continue;
        }
        if writer.is_none() {
            match create(&path, channels) {
                Ok(w) => writer = Some(w),
                Err(e) => {
                    warn!(error = %e, path = %path.display(), "cannot create the streamed WAV file");
                    report.failure = Some(format!("WAV file {}: {e}", path.display()));
                    metrics.frame("wav", "dropped", 1);
                    continue;
                }
            }
        }
        let Some(w) = writer.as_mut() else { continue };
        let written = pcm
            .chunks_exact(2)
            .try_for_each(|s| w.write_sample(i16::from_le_bytes([s[0], s[1]])));
        match written {
            Ok(()) => {
                report.sent += 1;
                metrics.frame("wav", "sent", 1);
            }
            Err(e) => {
                warn!(error = %e, path = %path.display(), "writing the streamed WAV file failed");
                report.failure = Some(format!("WAV file {}: {e}", path.display()));
                writer = None;
            }
        }
    }
    if let Some(w) = writer {
        match w.finalize() {
            Ok(()) => report.file = Some(path),
            Err(e) => {
                report.failure = Some(format!("WAV file {}: {e}", path.display()));
            }
        }
    }
    report
}

fn create(
    path: &std::path::Path,
    channels: u16,
) -> Result<hound::WavWriter<BufWriter<File>>, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let spec = hound::WavSpec {
        channels,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(path, spec).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn frames_become_a_stereo_file_with_those_samples() {
        let dir = std::env::temp_dir().join(format!("trunkd-stream-wav-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("t-stereo.wav");
        let (tx, rx) = mpsc::channel(8);
        let frame: Vec<u8> = (0..320i16).flat_map(|s| (s - 100).to_le_bytes()).collect();
        tx.try_send(SinkMsg::Start { codec: "PCMA" }).unwrap();
        tx.try_send(SinkMsg::Audio(Bytes::from(frame.clone())))
            .unwrap();
        tx.try_send(SinkMsg::Audio(Bytes::from(frame))).unwrap();
        drop(tx);
        let report = write(path.clone(), 2, rx, &StreamingMetrics::default());
        assert_eq!(report.file.as_deref(), Some(path.as_path()));
        assert_eq!((report.sent, report.failure), (2, None));
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 8000);
        let samples: Vec<i16> = r.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(samples.len(), 640);
        assert_eq!(&samples[..3], &[-100, -99, -98]);
        assert_eq!(samples[320], -100);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_directory_fails_the_stream_only() {
        let blocker =
            std::env::temp_dir().join(format!("trunkd-stream-blk-{}", std::process::id()));
        std::fs::write(&blocker, b"a file").unwrap();
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(SinkMsg::Audio(Bytes::from(vec![0u8; 320])))
            .unwrap();
        drop(tx);
        let report = write(blocker.join("x.wav"), 1, rx, &StreamingMetrics::default());
        assert!(report.failure.is_some());
        assert!(report.file.is_none());
        let _ = std::fs::remove_file(&blocker);
    }
}
