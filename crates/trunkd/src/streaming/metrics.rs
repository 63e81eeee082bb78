//! The streaming series of /metrics (docs/metrics.md): streams active,
//! frames sent and dropped per sink type, WebSocket reconnects, WAV files
//! swept.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `sink`: `websocket` or `wav`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: &'static str,
}

/// `sink` and `result` (`sent` or `dropped`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    pub sink: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct StreamingMetrics {
    /// Streams (one per leg, or per call in stereo, per sink) open now.
    pub active: Family<SinkLabel, Gauge>,
    /// 20 ms frames (and DTMF/control messages) by what became of them.
    pub frames: Family<FrameLabels, Counter>,
    /// WebSocket reconnects during calls (not counting the first connect).
    pub reconnects: Counter,
    /// Streams given up (a sink that failed for good).
    pub failed: Family<SinkLabel, Counter>,
    /// WAV files deleted by retention (the sweeper or right after a call).
    pub wav_files_swept: Counter,
    /// RTP packets the relay's tap lost before the framing (the pump fell
    /// behind): they become silence in every stream of the call.
    pub tap_dropped: Counter,
}

impl StreamingMetrics {
    /// Creates the series and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = StreamingMetrics::default();
        for sink in ["websocket", "wav"] {
            let _ = m.active.get_or_create(&SinkLabel { sink });
            for result in ["sent", "dropped"] {
                let _ = m.frames.get_or_create(&FrameLabels { sink, result });
            }
        }
        registry.register(
            "streaming_streams_active",
            "Audio streams of bridged calls open now, by sink type",
            m.active.clone(),
        );
        registry.register(
            "streaming_frames",
            "20 ms audio frames given to streaming sinks, by sink type and result (sent, or dropped: the sink was behind or gone)",
            m.frames.clone(),
        );
        registry.register(
            "streaming_reconnects",
            "WebSocket sink reconnects during calls",
            m.reconnects.clone(),
        );
        registry.register(
            "streaming_failures",
            "Streams given up (FAILED events), by sink type",
            m.failed.clone(),
        );
        registry.register(
            "streaming_wav_files_swept",
            "WAV files deleted by data_retention_in_hours",
            m.wav_files_swept.clone(),
        );
        registry.register(
            "streaming_tap_packets_dropped",
            "RTP packets of streamed calls lost at the relay's tap because the framing fell behind",
            m.tap_dropped.clone(),
        );
        m
    }

    pub fn frame(&self, sink: &'static str, result: &'static str, n: u64) {
        if n > 0 {
            self.frames
                .get_or_create(&FrameLabels { sink, result })
                .inc_by(n);
        }
    }
}
