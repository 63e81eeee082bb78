//! The task that owns one recording session (SPEC §2.6): it runs the
//! sans-IO `trunkd_b2bua::UasCall`, answers at once with every stream
//! receive-only, records each audio stream to a WAV file, and when the
//! session ends writes its CDR (`Streaming: true` when a file was written)
//! and its SDR (SPEC §5.2)
//! and counts it. Everything it spawned ends with it.
//!
//! Recording is off the call's path: the relay copies the A leg's packets
//! into a bounded tap channel (a full channel loses packets, counted;
//! the relay never waits), and a blocking thread drains it into one
//! `trunkd_media::endpoint::recorder::Recorder` per stream, so a slow disk
//! costs packets, never the session. A recorder that cannot write never
//! fails the recorded session either.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};
use trunkd_b2bua::{CallEnd, CallEvent, CallInput, CallOutput, NewUasCall, UasCall};
use trunkd_config::Config;
use trunkd_core::cdr::{CallFacts, CallOutcome, Direction, StreamFacts, StreamOutcome};
use trunkd_core::events::envelope::{
    iso8601_seconds, SdpRef, StreamingDetail, StreamingStatus, STREAMING_STATUS,
};
use trunkd_core::{StreamingSink, TransactionId, VcId};
use trunkd_media::endpoint::g711::G711;
use trunkd_media::endpoint::recorder::{RecordError, Recorder, RecorderConfig};
use trunkd_media::TappedPacket;

use crate::daemon::Shared;
use crate::engine::{EngineTx, Input};
use crate::media_anchor::Answered;

/// Packets the tap holds while the writer is behind: about ten seconds of
/// two 20 ms streams.
const TAP_CAPACITY: usize = 1024;

/// What the recording task knows beyond the state machine.
pub struct RecordingContext {
    pub key: u64,
    pub transaction_id: TransactionId,
    pub vc_id: Option<VcId>,
    pub auth_user: Option<String>,
    pub source_number: String,
    pub destination_number: String,
    /// The snapshot the session started with: it keeps it to the end.
    pub config: Arc<Config>,
    pub engine: EngineTx,
    pub shared: Arc<Shared>,
    pub relay: crate::media_anchor::Relay,
    /// What the answerer answered, per stream.
    pub answered: Answered,
    pub media_events: trunkd_media::MediaEvents,
    pub ports: trunkd_media::PortAllocator,
}

pub async fn run(ctx: RecordingContext, new: NewUasCall, rx: crate::call_task::CallRx) {
    let span = info_span!("recording", transaction_id = %ctx.transaction_id, vc = ctx.vc_id.as_ref().map(|v| v.as_str()).unwrap_or("-"));
    drive(ctx, new, rx).instrument(span).await
}

/// The `directory` of the VC's first `wav` sink while its streaming is
/// enabled.
pub fn wav_directory(config: &Config, vc: Option<&VcId>) -> Option<PathBuf> {
    let vc = config.resources.voice_connector(vc?.as_str())?;
    if vc.streaming.disabled {
        return None;
    }
    vc.streaming.sinks.iter().find_map(|s| match s {
        StreamingSink::Wav { directory } => Some(directory.clone()),
        StreamingSink::WebSocket { .. } => None,
    })
}

async fn drive(mut ctx: RecordingContext, new: NewUasCall, mut rx: crate::call_task::CallRx) {
    let start = new.wall;
    let metrics = &ctx.shared.metrics;
    let resources = &ctx.config.resources;
    let active = metrics.calls_active(ctx.vc_id.as_ref(), resources, "outbound");
    active.inc();
    let dir = wav_directory(&ctx.config, ctx.vc_id.as_ref());
    if dir.is_none() {
        // Once per session: the session is still answered and its media
        // received and counted, but nothing is written.
        warn!("recording session on a voice connector without an enabled wav streaming sink: nothing is recorded");
    }
    // Tapped before the answer goes out, so the first packet is seen.
    let writer = match ctx
        .relay
        .tap(Some(trunkd_media::Leg::A), None, TAP_CAPACITY)
    {
        Ok(tap) => {
            let (dir, answered) = (dir.clone(), ctx.answered.clone());
            let name = ctx.transaction_id.to_string();
            Some(tokio::task::spawn_blocking(move || {
                write_streams(tap, dir.as_deref(), &name, &answered)
            }))
        }
        Err(e) => {
            warn!(error = %e, "no tap on the recording's relay");
            None
        }
    };
    // The VC's WebSocket sinks get the session's audio too (SPEC §2.6),
    // streamed like a bridged call's: stream 0 as the caller, stream 1 as
    // the callee. WAV files stay this task's own, one per stream.
    let ws_plan = crate::streaming::StreamPlan::of(&ctx.config, ctx.vc_id.as_ref())
        .map(|mut p| {
            p.sinks
                .retain(|s| matches!(s, StreamingSink::WebSocket { .. }));
            p
        })
        .filter(|p| !p.sinks.is_empty());
    let ws_invite = ws_plan
        .as_ref()
        .map(|_| crate::streaming::InviteFacts::of(&new.invite));
    let mut ws_stream: Option<crate::streaming::CallStream> = None;
    let mut media_events = std::mem::take(&mut ctx.media_events);
    let mut status = StatusEvents::new(&ctx, &new.invite, dir.as_deref());
    let siprec = crate::engine::invite::metadata_part(&new.invite).is_some();
    let mut call = UasCall::new(new);
    // RFC 7866 §7.1.2: the SRC updates its metadata with re-INVITEs; each
    // answered one is an UPDATED event.
    call.keep_reoffers();
    call.answer(Instant::now());
    let call_id = String::from_utf8_lossy(call.call_id()).into_owned();
    let mut ended: Option<CallEnd> = None;
    'session: loop {
        while let Some(out) = call.poll_output() {
            match out {
                CallOutput::Event(CallEvent::Answered { .. }) => {
                    info!("recording session answered");
                    if let Some(s) = &mut status {
                        s.started(&call_id);
                    }
                    if let (Some(plan), Some(vc), Some(facts)) = (&ws_plan, &ctx.vc_id, &ws_invite)
                    {
                        let info = crate::streaming::CallInfo {
                            transaction_id: ctx.transaction_id,
                            vc: vc.clone(),
                            call_id: call_id.clone(),
                            direction: Direction::Outbound,
                            from: ctx.source_number.clone(),
                            to: ctx.destination_number.clone(),
                            invite: facts.clone(),
                        };
                        ws_stream = crate::streaming::CallStream::start_recording(
                            plan,
                            info,
                            &ctx.relay,
                            ctx.shared.clone(),
                            ctx.config.clone(),
                        );
                    }
                    if siprec {
                        metrics
                            .siprec_sessions
                            .get_or_create(&crate::metrics::OutcomeLabel {
                                outcome: "answered",
                            })
                            .inc();
                    }
                    metrics.answered(ctx.vc_id.as_ref(), resources, "outbound");
                    if let Some(vc_id) = &ctx.vc_id {
                        let now = std::time::SystemTime::now();
                        let facts = CallFacts {
                            transaction_id: ctx.transaction_id,
                            call_id: &call_id,
                            voice_connector_id: vc_id,
                            direction: Direction::Outbound,
                            source_phone_number: &ctx.source_number,
                            destination_phone_number: &ctx.destination_number,
                            sip_auth_user: ctx.auth_user.as_deref(),
                            start,
                            answered: Some(now),
                            end: now,
                            outcome: CallOutcome::Answered,
                            streaming: dir.is_some() || ws_plan.is_some(),
                        };
                        ctx.shared.call_journal.answered(&facts, now);
                    }
                }
                CallOutput::Event(CallEvent::Ended(end)) => {
                    info!(outcome = ?end.outcome, "recording session ended");
                    ended = Some(end);
                }
                CallOutput::Event(CallEvent::HopFailed { .. } | CallEvent::Info { .. }) => {}
                out => {
                    if ctx
                        .engine
                        .send(Input::FromCall { call: ctx.key, out })
                        .await
                        .is_err()
                    {
                        // The engine is gone: the daemon is stopping.
                        break 'session;
                    }
                }
            }
        }
        while let Some(reinvite) = call.poll_reoffer() {
            info!("recording session re-INVITEd");
            if let Some(s) = &mut status {
                s.updated(&call_id, &reinvite);
            }
            if let Some(w) = &ws_stream {
                w.updated(&reinvite);
            }
        }
        if call.is_ended() {
            break;
        }
        tokio::select! {
            input = rx.recv() => {
                let input = input.map_or(CallInput::Hangup, |b| *b);
                call.handle(Instant::now(), input);
            }
            Some(event) = media_events.recv() => {
                let trunkd_media::MediaEvent::Inactive { idle, .. } = event;
                info!(idle_s = idle.as_secs(), "no media on the recording session; hanging up");
                metrics.media_inactivity_hangups.inc();
                call.handle(Instant::now(), CallInput::Hangup);
            }
        }
    }
    // The WebSocket streams end first (their end frames), while the relay
    // still runs; whether one was given up decides the SDR below.
    let ws_result = match ws_stream.take() {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    let tap_dropped = ctx.relay.stats().await.map_or(0, |s| s.taps.dropped);
    // The answerer's handle goes with the call; ours is then the last:
    // stop the relay (which closes the tap, so the writer finishes) and
    // wait until its ports are back in the pool.
    drop(call);
    if let Ok(relay) = Arc::try_unwrap(ctx.relay) {
        let _ = relay.stop().await;
    }
    metrics
        .media_ports_in_use
        .set((ctx.ports.capacity() - ctx.ports.available()) as i64);
    let report = match writer {
        Some(w) => w.await.unwrap_or_default(),
        None => WriteReport::default(),
    };
    let packets = |result: &'static str, n: u64| {
        metrics
            .recording_packets
            .get_or_create(&crate::metrics::ResultLabel { result })
            .inc_by(n);
    };
    packets("recorded", report.recorded);
    packets(
        "unrecorded",
        report.received.saturating_sub(report.recorded),
    );
    packets("dropped", tap_dropped);
    if tap_dropped > 0 {
        warn!(
            dropped = tap_dropped,
            "the recording writer fell behind; packets lost"
        );
    }
    let ws_streamed = ws_result.as_ref().is_some_and(|r| r.failure.is_none());
    let streaming = !report.files.is_empty() || ws_streamed;
    let answered = ended.as_ref().is_some_and(|e| e.answered.is_some());
    if siprec && !answered {
        metrics
            .siprec_sessions
            .get_or_create(&crate::metrics::OutcomeLabel { outcome: "failed" })
            .inc();
    }
    let outcome = match (answered, streaming) {
        (false, _) => "failed",
        (true, true) => "recorded",
        (true, false) => "not_recorded",
    };
    metrics
        .recording_sessions
        .get_or_create(&crate::metrics::OutcomeLabel { outcome })
        .inc();
    if let Some(s) = &status {
        s.finished(&call_id, &report.files);
    }
    if let Some(end) = &ended {
        info!(files = ?report.files, packets = report.received, recorded = report.recorded, "recording finished");
        if !matches!(end.outcome, CallOutcome::Answered) {
            metrics.failed(ctx.vc_id.as_ref(), resources, "outbound");
        }
        if let Some(vc_id) = &ctx.vc_id {
            let facts = CallFacts {
                transaction_id: ctx.transaction_id,
                call_id: &call_id,
                voice_connector_id: vc_id,
                direction: Direction::Outbound,
                source_phone_number: &ctx.source_number,
                destination_phone_number: &ctx.destination_number,
                sip_auth_user: ctx.auth_user.as_deref(),
                start,
                answered: end.answered,
                end: end.end,
                outcome: end.outcome.clone(),
                streaming,
            };
            // SPEC §2.6/§5.2: a recorded session also has an SDR, with the
            // same TransactionId; a session whose sink could not take the
            // audio has a failed one. The SDR is written first, so a reader
            // that sees the CDR also finds the SDR it joins to.
            if let (Some(answered_at), true) = (end.answered, dir.is_some() || ws_result.is_some())
            {
                let outcome = if streaming {
                    StreamOutcome::Succeeded
                } else {
                    StreamOutcome::Failed {
                        reason: "Recording could not be written".to_owned(),
                    }
                };
                let sfacts = StreamFacts {
                    transaction_id: ctx.transaction_id,
                    call_id: &call_id,
                    voice_connector_id: vc_id,
                    start: answered_at,
                    end: end.end,
                    outcome,
                };
                crate::records::write_sdr(&ctx.config, &sfacts, start, metrics);
            }
            let then = end.answered.is_some().then(|| {
                crate::records::writer::Then::JournalEnded(
                    ctx.shared.call_journal.clone(),
                    ctx.transaction_id,
                )
            });
            crate::records::write_cdr(&ctx.config, &facts, metrics, then);
            crate::streaming::store_files(&ctx.config, vc_id, start, &report.files, &ctx.shared)
                .await;
        }
    }
    active.dec();
    let _ = ctx.engine.send(Input::CallDone { call: ctx.key }).await;
}

/// The streaming status events of one recording session (SPEC §5.4,
/// docs/events.md): one STARTED per answered audio stream when the session
/// is answered, then ENDED for each stream whose WAV file was written or
/// FAILED for each whose file could not be, to the VC's
/// `notification_targets`. Only sessions with a `wav` sink stream.
struct StatusEvents {
    vc: VcId,
    shared: Arc<crate::daemon::Shared>,
    config: Arc<Config>,
    transaction_id: TransactionId,
    from_number: String,
    to_number: String,
    invite_headers: BTreeMap<String, String>,
    /// The SIPREC metadata (RFC 7866 `rs-metadata+xml`) as the SRC last
    /// sent it: the INVITE's, then each re-INVITE's that has one.
    siprec_metadata: Option<String>,
    /// The labels of the streams the recorded call's caller sends (the
    /// metadata's first participant, [`trunkd_siprec::Metadata::numbers`]);
    /// empty without metadata, when the first stream is the caller's.
    caller_labels: Vec<String>,
    answered: Answered,
    dir: PathBuf,
    /// (index, label, file) of each answered audio stream, known once the
    /// session is answered.
    streams: Vec<(usize, Option<String>, PathBuf)>,
    /// When it was answered (ISO-8601); `None` before.
    start: Option<String>,
}

impl StatusEvents {
    fn new(
        ctx: &RecordingContext,
        invite: &trunkd_sip::Request,
        dir: Option<&Path>,
    ) -> Option<StatusEvents> {
        let (vc, dir) = (ctx.vc_id.clone()?, dir?);
        let vcr = ctx.config.resources.voice_connector(vc.as_str())?;
        if vcr.streaming.notification_targets.is_empty() {
            return None;
        }
        let invite_headers = event_headers(invite);
        let part = crate::engine::invite::metadata_part(invite);
        let siprec_metadata = part
            .as_ref()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let caller_labels = part
            .and_then(|p| trunkd_siprec::parse(&p).ok())
            .map(|m| caller_labels(&m))
            .unwrap_or_default();
        Some(StatusEvents {
            vc,
            siprec_metadata,
            caller_labels,
            shared: ctx.shared.clone(),
            config: ctx.config.clone(),
            transaction_id: ctx.transaction_id,
            from_number: ctx.source_number.clone(),
            to_number: ctx.destination_number.clone(),
            invite_headers,
            answered: ctx.answered.clone(),
            dir: dir.to_path_buf(),
            streams: Vec::new(),
            start: None,
        })
    }

    fn emit(
        &self,
        call_id: &str,
        stream: &(usize, Option<String>, PathBuf),
        status: StreamingStatus,
        failure: Option<&str>,
        update_headers: Option<&BTreeMap<String, String>>,
    ) {
        let now = iso8601_seconds(unix_ms());
        let start = self.start.clone().unwrap_or_else(|| now.clone());
        let ended = matches!(status, StreamingStatus::Ended);
        let failed = matches!(status, StreamingStatus::Failed);
        let detail = StreamingDetail {
            streaming_status: status,
            call_id: call_id.to_owned(),
            direction: "Outbound".to_owned(),
            from_number: self.from_number.clone(),
            to_number: self.to_number.clone(),
            invite_headers: self.invite_headers.clone(),
            // SIPREC: the stream the metadata's first participant sends;
            // without metadata, the first stream.
            is_caller: if self.caller_labels.is_empty() {
                stream.0 == 0
            } else {
                stream
                    .1
                    .as_ref()
                    .is_some_and(|l| self.caller_labels.contains(l))
            },
            media_type: "audio/L16",
            sdp: SdpRef {
                media_index: stream.0,
                media_label: stream.1.clone(),
            },
            // With every status, as the SRC last sent it.
            siprec_metadata: self.siprec_metadata.clone(),
            start_time: start,
            end_time: ended.then(|| now.clone()),
            fail_time: failed.then(|| now.clone()),
            failure_reason: failure.map(str::to_owned),
            stream_arn: format!("file://{}", stream.2.display()),
            transaction_id: self.transaction_id.to_string(),
            voice_connector_id: self.vc.to_string(),
            version: "0",
        };
        let mut value = detail.to_value();
        if let (Some(h), Some(obj)) = (update_headers, value.as_object_mut()) {
            // SPEC §5.4: UPDATED names the re-INVITE that caused it.
            obj.insert(
                "updateHeaders".to_owned(),
                serde_json::to_value(h).unwrap_or_default(),
            );
        }
        self.shared.events.emit_vc_event(
            &self.config,
            &self.vc,
            &self.transaction_id.to_string(),
            STREAMING_STATUS,
            value,
        );
    }

    fn started(&mut self, call_id: &str) {
        self.start = Some(iso8601_seconds(unix_ms()));
        let name = self.transaction_id.to_string();
        self.streams = self
            .answered
            .lock()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .filter(|(_, s)| s.kind.eq_ignore_ascii_case("audio") && s.ports.is_some())
                    .map(|(i, s)| {
                        let file = self.dir.join(format!("{name}-{i}.wav"));
                        (i, s.label.clone(), file)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for stream in &self.streams {
            self.emit(call_id, stream, StreamingStatus::Started, None, None);
        }
    }

    /// A re-INVITE answered 200 (SPEC §5.4): one UPDATED per stream with
    /// its headers and the metadata it carries (the last one kept when it
    /// carries none). Only after STARTED. Its metadata is not refused: the
    /// session goes on whatever an update says.
    fn updated(&mut self, call_id: &str, reinvite: &trunkd_sip::Request) {
        if self.start.is_none() {
            return;
        }
        if let Some(part) = crate::engine::invite::metadata_part(reinvite) {
            self.siprec_metadata = Some(String::from_utf8_lossy(&part).into_owned());
            match trunkd_siprec::parse(&part) {
                Ok(m) if !m.participants.is_empty() => self.caller_labels = caller_labels(&m),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "the re-INVITE's SIPREC metadata is malformed"),
            }
        }
        let headers = event_headers(reinvite);
        for stream in &self.streams {
            self.emit(
                call_id,
                stream,
                StreamingStatus::Updated,
                None,
                Some(&headers),
            );
        }
    }

    /// Only for a session that was answered (a STARTED was sent).
    fn finished(&self, call_id: &str, files: &[PathBuf]) {
        if self.start.is_none() {
            return;
        }
        for stream in &self.streams {
            if files.contains(&stream.2) {
                self.emit(call_id, stream, StreamingStatus::Ended, None, None);
            } else {
                self.emit(
                    call_id,
                    stream,
                    StreamingStatus::Failed,
                    Some("Recording could not be written"),
                    None,
                );
            }
        }
    }
}

/// The headers a streaming event names its INVITE (or re-INVITE) by
/// (SPEC §5.4 `inviteHeaders`, `updateHeaders`): as bridged calls' events.
fn event_headers(req: &trunkd_sip::Request) -> BTreeMap<String, String> {
    crate::streaming::event_headers(req)
}

/// The labels of the streams the metadata's first participant (the
/// recorded call's caller, by the order SRCs write them) sends.
fn caller_labels(m: &trunkd_siprec::Metadata) -> Vec<String> {
    let Some(caller) = m.participants.first() else {
        return Vec::new();
    };
    m.streams
        .iter()
        .filter(|s| caller.send.contains(&s.id))
        .map(|s| s.label.clone())
        .collect()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the writer did.
#[derive(Debug, Default)]
struct WriteReport {
    /// RTP packets the tap delivered (RTCP is not counted).
    received: u64,
    /// Packets whose audio went into a file.
    recorded: u64,
    /// The files completed.
    files: Vec<PathBuf>,
}

/// One stream's file, or why there is none.
enum StreamFile {
    Open(PathBuf, Box<Recorder<BufWriter<File>>>),
    /// Not recorded: not audio, not G.711, or the file failed.
    None,
}

/// Drains the tap into one WAV per audio stream until the relay closes it
/// (blocking: run on a blocking thread).
fn write_streams(
    mut tap: mpsc::Receiver<TappedPacket>,
    dir: Option<&Path>,
    name: &str,
    answered: &Answered,
) -> WriteReport {
    let mut report = WriteReport::default();
    let mut files: BTreeMap<usize, StreamFile> = BTreeMap::new();
    while let Some(p) = tap.blocking_recv() {
        if p.rtcp {
            continue;
        }
        report.received += 1;
        let Some(dir) = dir else { continue };
        let file = files
            .entry(p.stream)
            .or_insert_with(|| open_stream(dir, name, p.stream, answered));
        if let StreamFile::Open(path, rec) = file {
            match rec.handle_packet(&p.data) {
                Ok(()) | Err(RecordError::Rtp(_)) => {}
                Err(e) => {
                    warn!(error = %e, path = %path.display(), "recording file failed; stream no longer recorded");
                    *file = StreamFile::None;
                }
            }
        }
    }
    for (_, file) in files {
        if let StreamFile::Open(path, rec) = file {
            match rec.finish() {
                Ok(stats) => {
                    report.recorded += stats.packets;
                    report.files.push(path);
                }
                Err(e) => warn!(error = %e, path = %path.display(), "recording file not completed"),
            }
        }
    }
    report
}

/// `<dir>/<name>-<stream>.wav` for an answered G.711 audio stream.
fn open_stream(dir: &Path, name: &str, stream: usize, answered: &Answered) -> StreamFile {
    let codec = match answered.lock() {
        Ok(a) => a
            .get(stream)
            .filter(|s| s.kind.eq_ignore_ascii_case("audio"))
            .and_then(|s| s.codec.clone()),
        Err(_) => None,
    };
    let Some(codec) = codec else {
        debug!(
            stream,
            "packets on a stream that is not answered audio; not recorded"
        );
        return StreamFile::None;
    };
    let law = match codec.encoding.as_str() {
        "PCMU" => G711::Pcmu,
        "PCMA" => G711::Pcma,
        other => {
            warn!(stream, codec = other, "only G.711 streams are recorded");
            return StreamFile::None;
        }
    };
    let mut config = RecorderConfig::default();
    config
        .payload_types
        .retain(|(pt, _)| *pt != codec.payload_type);
    config.payload_types.push((codec.payload_type, law));
    let path = dir.join(format!("{name}-{stream}.wav"));
    let created = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| Recorder::create(&path, config).map_err(|e| e.to_string()));
    match created {
        Ok(rec) => StreamFile::Open(path, Box::new(rec)),
        Err(e) => {
            warn!(error = %e, path = %path.display(), "cannot create the recording file");
            StreamFile::None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use trunkd_media::endpoint::g711::alaw_decode;
    use trunkd_media::{AnsweredCodec, AnsweredStream, Direction, Leg};

    use super::*;

    fn stream(kind: &str, pt: u8, encoding: &str) -> AnsweredStream {
        AnsweredStream {
            kind: kind.into(),
            ports: Some((40000, 40001)),
            direction: Direction::RecvOnly,
            codec: Some(AnsweredCodec {
                payload_type: pt,
                encoding: encoding.into(),
                clock_rate: 8000,
            }),
            telephone_event: None,
            label: None,
        }
    }

    fn packet(stream: usize, pt: u8, seq: u16, rtcp: bool) -> (TappedPacket, Vec<u8>) {
        let payload: Vec<u8> = (0..160u16).map(|i| (i * 5 + seq) as u8).collect();
        let mut data = vec![0x80, pt];
        data.extend_from_slice(&seq.to_be_bytes());
        data.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 7]);
        data.extend_from_slice(&payload);
        (
            TappedPacket {
                leg: Leg::A,
                stream,
                rtcp,
                arrival: Instant::now(),
                data: Bytes::from(data),
            },
            payload,
        )
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("trunkd-rec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn each_g711_audio_stream_gets_its_file_and_nothing_else_does() {
        let dir = temp_dir("files");
        // Stream 0: PCMA on a dynamic type; 1: G.722; 2: video.
        let answered: Answered = Arc::new(std::sync::Mutex::new(vec![
            stream("audio", 96, "PCMA"),
            stream("audio", 9, "G722"),
            stream("video", 97, "H264"),
        ]));
        let (tx, rx) = mpsc::channel(64);
        let mut expected = Vec::new();
        for seq in 0..5 {
            let (p, payload) = packet(0, 96, seq, false);
            expected.extend(payload.iter().map(|b| alaw_decode(*b)));
            tx.try_send(p).unwrap();
            tx.try_send(packet(1, 9, seq, false).0).unwrap();
            tx.try_send(packet(2, 97, seq, false).0).unwrap();
        }
        tx.try_send(packet(0, 200, 0, true).0).unwrap();
        drop(tx);
        let report = write_streams(rx, Some(&dir), "txn", &answered);
        assert_eq!((report.received, report.recorded), (15, 5));
        assert_eq!(report.files, [dir.join("txn-0.wav")]);
        let samples = trunkd_media::endpoint::wav::read_wav_file_8k(dir.join("txn-0.wav")).unwrap();
        assert_eq!(samples, expected);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_directory_packets_are_counted_and_nothing_is_written() {
        let answered: Answered = Arc::new(std::sync::Mutex::new(vec![stream("audio", 0, "PCMU")]));
        let (tx, rx) = mpsc::channel(8);
        for seq in 0..3 {
            tx.try_send(packet(0, 0, seq, false).0).unwrap();
        }
        drop(tx);
        let report = write_streams(rx, None, "txn", &answered);
        assert_eq!((report.received, report.recorded), (3, 0));
        assert!(report.files.is_empty());
    }

    #[test]
    fn an_uncreatable_file_loses_the_recording_not_the_session() {
        // A directory that is a file: nothing can be created under it.
        let blocker = temp_dir("blocked");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let answered: Answered = Arc::new(std::sync::Mutex::new(vec![stream("audio", 0, "PCMU")]));
        let (tx, rx) = mpsc::channel(8);
        tx.try_send(packet(0, 0, 0, false).0).unwrap();
        drop(tx);
        let report = write_streams(rx, Some(&blocker.join("audio")), "txn", &answered);
        assert_eq!((report.received, report.recorded), (1, 0));
        assert!(report.files.is_empty());
        let _ = std::fs::remove_file(&blocker);
    }
}
