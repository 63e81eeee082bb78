//! Streaming of bridged calls (SPEC §2.6, docs/streaming.md): once a call
//! to or from a VC with streaming enabled is answered, each leg's audio goes
//! to the VC's sinks (WebSocket consumers, WAV files) as 20 ms frames of
//! 8 kHz 16-bit little-endian PCM, per leg or as one stereo stream (caller
//! left, callee right), with DTMF, status events (§5.4) and an SDR (§5.2).
//!
//! Nothing here is on the relay's path. The relay copies the call's first
//! audio stream, plain (after SRTP), into a bounded tap channel (a full one
//! loses packets, counted by the relay; it never waits). One pump task
//! frames both legs ([`trunkd_media::endpoint::framer`]) and hands each
//! frame to every sink stream through that stream's own bounded queue with
//! `try_send`: a sink that is slow or gone loses frames (counted), never
//! delays the pump or another sink. Each WebSocket stream is a task, each
//! WAV file a blocking writer thread. Everything belongs to the call's
//! [`CallStream`]: dropped, it aborts its tasks; finished, it closes the
//! streams (end frame, WAV header) within a bounded time.
//!
//! - [`pump`]: tap → framers → sink queues.
//! - [`websocket`]: one WebSocket connection per stream, with reconnects.
//! - [`wav`]: one WAV file per stream.
//! - [`status`]: STARTED/UPDATED/ENDED/FAILED events.
//! - [`sweeper`]: deletes WAV files past the VC's retention.
//! - [`metrics`]: the /metrics series.

pub mod metrics;
mod pump;
mod status;
pub mod sweeper;
mod wav;
mod websocket;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use trunkd_config::Config;
use trunkd_core::cdr::Direction;
use trunkd_core::{StreamChannels, StreamReconnect, StreamingSink, TransactionId, VcId};
use trunkd_media::endpoint::framer::FramerConfig;
use trunkd_media::endpoint::g711::G711;

use crate::daemon::Shared;

/// How long [`CallStream::finish`] waits for the streams to close (the end
/// frame to reach a WebSocket consumer, a WAV header to be fixed) before it
/// gives them up.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(3);

/// Which leg a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegName {
    Caller,
    Callee,
    /// Both, as stereo (caller left, callee right).
    Both,
}

impl LegName {
    /// As the start frame and the DTMF frames name it.
    pub fn as_str(self) -> &'static str {
        match self {
            LegName::Caller => "caller",
            LegName::Callee => "callee",
            LegName::Both => "both",
        }
    }

    fn channels(self) -> u16 {
        if self == LegName::Both {
            2
        } else {
            1
        }
    }
}

/// One message to a sink stream, in stream order.
#[derive(Clone, Debug)]
pub(crate) enum SinkMsg {
    /// The stream's codec, known from its first audio packet; comes before
    /// any audio.
    Start { codec: &'static str },
    /// 20 ms of 16-bit little-endian PCM (320 bytes mono, 640 stereo).
    Audio(Bytes),
    /// A key pressed on `leg`.
    Dtmf { digit: char, leg: LegName },
}

/// What a sink stream did.
#[derive(Clone, Debug, Default)]
pub(crate) struct SinkReport {
    /// Messages the sink took (sent to the consumer, written to the file).
    pub sent: u64,
    /// Why the stream was given up, if it was.
    pub failure: Option<String>,
    /// The WAV file written, if any.
    pub file: Option<PathBuf>,
}

/// The VC's streaming settings a call keeps from its config snapshot.
#[derive(Clone, Debug)]
pub struct StreamPlan {
    pub sinks: Vec<StreamingSink>,
    pub channels: StreamChannels,
    pub reconnect: StreamReconnect,
    pub queue_frames: usize,
    pub retention_hours: u32,
}

impl StreamPlan {
    /// The plan of `vc` in `config`, if its streaming is enabled with sinks.
    pub fn of(config: &Config, vc: Option<&VcId>) -> Option<StreamPlan> {
        let vc = config.resources.voice_connector(vc?.as_str())?;
        let s = &vc.streaming;
        if s.disabled || s.sinks.is_empty() {
            return None;
        }
        Some(StreamPlan {
            sinks: s.sinks.clone(),
            channels: s.channels,
            reconnect: s.reconnect,
            queue_frames: s.queue_frames,
            retention_hours: s.data_retention_in_hours,
        })
    }
}

/// What the INVITE tells the streams: its headers for the events and the
/// payload types to frame.
#[derive(Clone, Debug)]
pub struct InviteFacts {
    /// from, to, call-id, cseq, contact, content-type, content-length,
    /// lowercase names (SPEC §5.4 `inviteHeaders`).
    pub headers: BTreeMap<String, String>,
    pub framer: FramerConfig,
    /// The offer's preferred G.711 codec (`PCMU` without one): the start
    /// frame's `codec` when a key is pressed before any audio arrived.
    pub codec: &'static str,
}

/// The headers SPEC §5.4 lists for `inviteHeaders` (and `updateHeaders`).
const EVENT_HEADERS: [&str; 7] = [
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "content-type",
    "content-length",
];

/// `request`'s headers as the events carry them.
pub fn event_headers(request: &trunkd_sip::Request) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in EVENT_HEADERS {
        if let Some(v) = request.headers.get(name) {
            out.insert(name.to_owned(), String::from_utf8_lossy(v).into_owned());
        }
    }
    out
}

impl InviteFacts {
    /// From the call's first INVITE: its headers, and the G.711 and
    /// telephone-event payload types of its first audio stream (the static
    /// ones and telephone-event 101 when the offer is not plain SDP).
    pub fn of(invite: &trunkd_sip::Request) -> InviteFacts {
        let mut framer = FramerConfig::default();
        let mut codec = "PCMU";
        let sdp = trunkd_media::Sdp::parse_bytes(&invite.body).ok();
        if let Some(m) = sdp
            .as_ref()
            .and_then(|s| s.media().iter().find(|m| m.kind() == "audio"))
        {
            for map in m.rtpmaps() {
                let law = match map.encoding.to_ascii_uppercase().as_str() {
                    "PCMU" => G711::Pcmu,
                    "PCMA" => G711::Pcma,
                    _ => continue,
                };
                framer
                    .payload_types
                    .retain(|(pt, _)| *pt != map.payload_type);
                framer.payload_types.push((map.payload_type, law));
            }
            if let Some((pt, _)) = m.telephone_event() {
                framer.telephone_event = Some(pt);
            }
            codec = m
                .formats()
                .iter()
                .filter_map(|f| f.parse::<u8>().ok())
                .find_map(|pt| framer.payload_types.iter().find(|(t, _)| *t == pt))
                .map_or("PCMU", |(_, law)| codec_name(*law));
        }
        InviteFacts {
            headers: event_headers(invite),
            framer,
            codec,
        }
    }
}

/// The call a stream belongs to.
#[derive(Clone, Debug)]
pub struct CallInfo {
    pub transaction_id: TransactionId,
    pub vc: VcId,
    pub call_id: String,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub invite: InviteFacts,
}

impl CallInfo {
    fn direction_str(&self) -> &'static str {
        match self.direction {
            Direction::Inbound => "Inbound",
            Direction::Outbound => "Outbound",
        }
    }
}

/// One sink × one leg (or both).
struct StreamTask {
    kind: &'static str,
    leg: LegName,
    /// The sink's stream URI for the events (`ws://…`, `file://…`).
    arn: String,
    task: Option<JoinHandle<SinkReport>>,
    /// The streams-active gauge while the stream is open.
    active: Option<Gauge>,
}

impl Drop for StreamTask {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
        if let Some(g) = self.active.take() {
            g.dec();
        }
    }
}

/// How a call's streaming ended.
#[derive(Debug)]
pub struct StreamResult {
    /// When streaming started (the answer).
    pub start: SystemTime,
    /// Why streaming failed (a sink given up), if it did.
    pub failure: Option<String>,
    /// The WAV files written.
    pub files: Vec<PathBuf>,
    /// The VC's retention (0: delete the files once the records are written).
    pub retention_hours: u32,
}

/// A call's streaming, from the answer to the end of the call. Dropping it
/// aborts every task; [`CallStream::finish`] ends it in order.
pub struct CallStream {
    pump: Option<JoinHandle<Vec<u64>>>,
    stop: Option<oneshot::Sender<()>>,
    streams: Vec<StreamTask>,
    status: status::StatusEvents,
    shared: Arc<Shared>,
    start: SystemTime,
    retention_hours: u32,
}

impl Drop for CallStream {
    fn drop(&mut self) {
        if let Some(p) = &self.pump {
            p.abort();
        }
    }
}

impl CallStream {
    /// Starts streaming the call's first audio stream on `relay` to every
    /// sink of `plan`; emits STARTED for each stream. `None` when the relay
    /// gives no tap (it has stopped).
    pub fn start(
        plan: &StreamPlan,
        info: CallInfo,
        relay: &crate::media_anchor::Relay,
        shared: Arc<Shared>,
        config: Arc<Config>,
    ) -> Option<CallStream> {
        Self::start_from(plan, info, relay, shared, config, pump::Source::Bridge)
    }

    /// As [`CallStream::start`] for a recording session (SPEC §2.6): its
    /// streams 0 and 1 are the caller's and the callee's audio.
    pub fn start_recording(
        plan: &StreamPlan,
        info: CallInfo,
        relay: &crate::media_anchor::Relay,
        shared: Arc<Shared>,
        config: Arc<Config>,
    ) -> Option<CallStream> {
        Self::start_from(plan, info, relay, shared, config, pump::Source::Recording)
    }

    fn start_from(
        plan: &StreamPlan,
        info: CallInfo,
        relay: &crate::media_anchor::Relay,
        shared: Arc<Shared>,
        config: Arc<Config>,
        source: pump::Source,
    ) -> Option<CallStream> {
        // About two seconds of both legs: the pump is cheap, so the tap only
        // fills if the runtime is starved.
        let tapped = match source {
            pump::Source::Bridge => relay.tap(None, Some(0), 256),
            pump::Source::Recording => relay.tap(Some(trunkd_media::Leg::A), None, 256),
        };
        let tap = match tapped {
            Ok(tap) => tap,
            Err(e) => {
                warn!(error = %e, "no tap on the call's relay; not streamed");
                return None;
            }
        };
        let metrics = shared.metrics.streaming.clone();
        let legs: &[LegName] = match plan.channels {
            StreamChannels::PerLeg => &[LegName::Caller, LegName::Callee],
            StreamChannels::Stereo => &[LegName::Both],
        };
        let txn = info.transaction_id.to_string();
        let mut streams = Vec::new();
        let mut outlets = Vec::new();
        for sink in &plan.sinks {
            for &leg in legs {
                let (tx, rx) = mpsc::channel(plan.queue_frames);
                let (kind, arn, task) = match sink {
                    StreamingSink::WebSocket { url } => {
                        let params = websocket::WsParams {
                            url: url.clone(),
                            start: websocket::start_frame(&info, leg),
                            end: websocket::end_frame(&info, leg),
                            reconnect: plan.reconnect,
                            metrics: metrics.clone(),
                            tls: shared.tls.connector(),
                        };
                        let task = tokio::spawn(websocket::run(params, rx));
                        ("websocket", url.clone(), task)
                    }
                    StreamingSink::Wav { directory } => {
                        let path = directory.join(format!("{txn}-{}.wav", wav_suffix(leg)));
                        let arn = format!("file://{}", path.display());
                        let m = metrics.clone();
                        let channels = leg.channels();
                        let task =
                            tokio::task::spawn_blocking(move || wav::write(path, channels, rx, &m));
                        ("wav", arn, task)
                    }
                };
                let active = metrics
                    .active
                    .get_or_create(&metrics::SinkLabel { sink: kind })
                    .clone();
                active.inc();
                outlets.push(pump::Outlet::new(leg, kind, tx));
                streams.push(StreamTask {
                    kind,
                    leg,
                    arn,
                    task: Some(task),
                    active: Some(active),
                });
            }
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let pump = tokio::spawn(pump::run(
            tap,
            stop_rx,
            pump::Pump::new(
                info.invite.framer.clone(),
                info.invite.codec,
                plan.channels == StreamChannels::Stereo,
                outlets,
                metrics,
            )
            .with_source(source),
        ));
        let start = SystemTime::now();
        let mut status = status::StatusEvents::new(&info, shared.clone(), config);
        for s in &streams {
            status.add(s.leg, s.arn.clone());
        }
        status.started();
        info!(streams = streams.len(), "streaming started");
        Some(CallStream {
            pump: Some(pump),
            stop: Some(stop_tx),
            streams,
            status,
            shared,
            start,
            retention_hours: plan.retention_hours,
        })
    }

    /// A re-INVITE of the call (hold, resume, new SDP): UPDATED for each
    /// stream, with the re-INVITE's headers. Streaming goes on.
    pub fn updated(&self, reinvite: &trunkd_sip::Request) {
        self.status.updated(&event_headers(reinvite));
    }

    /// Ends the streams: the pump frames what the tap still holds, each
    /// sink closes (end frame, WAV header), each stream gets ENDED or
    /// FAILED. Bounded by [`FINISH_TIMEOUT`].
    pub async fn finish(mut self) -> StreamResult {
        let deadline = tokio::time::Instant::now() + FINISH_TIMEOUT;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let dropped = match self.pump.take() {
            Some(p) => {
                let abort = p.abort_handle();
                match tokio::time::timeout_at(deadline, p).await {
                    Ok(Ok(d)) => d,
                    _ => {
                        abort.abort();
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        let mut failure = None;
        let mut files = Vec::new();
        let metrics = &self.shared.metrics.streaming;
        for (i, s) in self.streams.iter_mut().enumerate() {
            let report = match s.task.take() {
                Some(t) => {
                    let abort = t.abort_handle();
                    match tokio::time::timeout_at(deadline, t).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(_)) => SinkReport {
                            failure: Some("the stream's task failed".to_owned()),
                            ..SinkReport::default()
                        },
                        Err(_) => {
                            abort.abort();
                            SinkReport {
                                failure: Some(
                                    "the sink did not take the end of the stream in time"
                                        .to_owned(),
                                ),
                                ..SinkReport::default()
                            }
                        }
                    }
                }
                None => SinkReport::default(),
            };
            if let Some(g) = s.active.take() {
                g.dec();
            }
            let lost = dropped.get(i).copied().unwrap_or(0);
            if lost > 0 {
                warn!(
                    sink = s.kind,
                    leg = s.leg.as_str(),
                    dropped = lost,
                    "the sink fell behind; frames dropped"
                );
            }
            match &report.failure {
                Some(why) => {
                    warn!(sink = s.kind, leg = s.leg.as_str(), reason = %why, "stream failed");
                    metrics
                        .failed
                        .get_or_create(&metrics::SinkLabel { sink: s.kind })
                        .inc();
                    self.status.failed(i, why);
                    failure.get_or_insert_with(|| why.clone());
                }
                None => self.status.ended(i),
            }
            if let Some(f) = report.file {
                files.push(f);
            }
        }
        info!(files = ?files, failed = failure.is_some(), "streaming ended");
        StreamResult {
            start: self.start,
            failure,
            files,
            retention_hours: self.retention_hours,
        }
    }
}

/// The start frame's name of a G.711 law.
pub(crate) fn codec_name(law: G711) -> &'static str {
    match law {
        G711::Pcmu => "PCMU",
        G711::Pcma => "PCMA",
    }
}

fn wav_suffix(leg: LegName) -> &'static str {
    match leg {
        LegName::Caller => "caller",
        LegName::Callee => "callee",
        LegName::Both => "stereo",
    }
}

/// Retention 0 (SPEC §2.6: keep none after the call): deletes the call's
/// files once its records are written. Returns how many were deleted.
/// Puts a call's WAV files in the record store (the spool and every
/// `[[records.sinks]]` bucket, as records go) when its VC's streaming has
/// `record_store` on, keyed under the call's start
/// (`trunkd_core::cdr::key::audio_key`). Off the runtime's threads; a
/// file that cannot be read is logged and skipped.
pub async fn store_files(
    config: &Arc<Config>,
    vc: &VcId,
    start: SystemTime,
    files: &[PathBuf],
    shared: &Arc<Shared>,
) {
    let wanted = config
        .resources
        .voice_connector(vc.as_str())
        .is_some_and(|v| v.streaming.record_store);
    if !wanted || files.is_empty() {
        return;
    }
    let (config, vc, files, shared) = (config.clone(), vc.clone(), files.to_vec(), shared.clone());
    let _ = tokio::task::spawn_blocking(move || {
        for f in &files {
            let Some(name) = f.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            match std::fs::read(f) {
                Ok(bytes) => {
                    let key = trunkd_core::cdr::key::audio_key(
                        &config.settings.records.key_prefix,
                        &vc,
                        start,
                        name,
                    );
                    crate::records::put_record(
                        &config,
                        "audio",
                        &key,
                        bytes,
                        &shared.metrics,
                        None,
                    );
                }
                Err(e) => warn!(file = %f.display(), error = %e, "audio file not stored"),
            }
        }
    })
    .await;
}

pub fn delete_files(files: &[PathBuf], shared: &Shared) -> usize {
    let mut n = 0;
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => n += 1,
            Err(e) => warn!(error = %e, path = %f.display(), "cannot delete a streamed WAV file"),
        }
    }
    shared.metrics.streaming.wav_files_swept.inc_by(n as u64);
    n
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use trunkd_sip::SipMessage;

    use super::*;

    fn invite(sdp: &str) -> trunkd_sip::Request {
        let text = format!(
            "INVITE sip:+12065550199@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK-1\r\n\
             From: <sip:+12065550100@127.0.0.3>;tag=a\r\nTo: <sip:+12065550199@127.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:pbx@127.0.0.3>\r\nMax-Forwards: 70\r\nUser-Agent: x\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        match SipMessage::parse(Bytes::from(text)) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_offer_names_the_payload_types_to_frame_and_the_preferred_codec() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 96 0 97\r\na=rtpmap:96 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=rtpmap:97 telephone-event/8000\r\n";
        let f = InviteFacts::of(&invite(sdp));
        assert_eq!(
            f.codec, "PCMA",
            "the first format is PCMA on a dynamic type"
        );
        assert_eq!(f.framer.telephone_event, Some(97));
        assert!(f.framer.payload_types.contains(&(96, G711::Pcma)));
        assert!(f.framer.payload_types.contains(&(0, G711::Pcmu)));
        assert_eq!(
            f.headers.keys().collect::<Vec<_>>(),
            [
                "call-id",
                "contact",
                "content-length",
                "content-type",
                "cseq",
                "from",
                "to"
            ],
            "the SPEC §5.4 headers, and no others"
        );
        assert_eq!(f.headers["cseq"], "1 INVITE");
    }

    #[test]
    fn without_a_readable_offer_the_static_types_and_101_are_framed() {
        let f = InviteFacts::of(&invite(""));
        assert_eq!(f.codec, "PCMU");
        assert_eq!(f.framer, FramerConfig::default());
    }
}
