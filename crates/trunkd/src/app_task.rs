//! The task that owns one application call (SPEC §6): trunkd is the far
//! end of the A leg. It runs the sans-IO `trunkd_b2bua::UasCall`, takes
//! [`AppAction`]s from its driver one at a time, in order, and reports
//! [`AppEvent`]s back (see [`crate::application`]).
//!
//! Media goes through the call's relay, like every call's: the A side is
//! answered `sendrecv` on trunkd's ports ([`crate::media_anchor::AppAnchor`]),
//! prompts and RFC 4733 digits are injected into it
//! (`trunkd_media::endpoint::leg::LegEndpoint::play`), the caller's digits
//! come from a relay tap (RFC 4733) and from in-dialog INFO
//! (`application/dtmf-relay`, `application/dtmf`), and a recording drains
//! another tap into a WAV file on a blocking thread, so a slow disk costs
//! packets, never the call.
//!
//! The SIP side never waits for media: the running action is a task of
//! its own, aborted when the call ends. Everything the call spawned ends
//! with it; the driver's last event is [`AppEvent::Hangup`].

use crate::deadline::sleep_until;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};
use trunkd_b2bua::{
    CallEnd, CallEvent, CallInput, CallOutput, Leg, NewUacLeg, NewUasCall, UacEvent, UacLeg,
    UasCall,
};
use trunkd_config::Config;
use trunkd_core::cdr::{CallFacts, CallOutcome, Direction};
use trunkd_core::{RuleId, SmaId, TransactionId};
use trunkd_media::endpoint::dtmf::{parse_info_dtmf, DtmfDigit, DtmfSendConfig, DtmfSender};
use trunkd_media::endpoint::g711::G711;
use trunkd_media::endpoint::leg::LegEndpoint;
use trunkd_media::endpoint::player::{Player, PlayerConfig, Repeat};
use trunkd_media::endpoint::recorder::{
    RecordError, Recorder, RecorderConfig, Side, StereoRecorder,
};
use trunkd_media::endpoint::{RtpContinuity, SAMPLE_RATE};
use trunkd_media::QualityObserver;
use trunkd_sma::action::Track;

use crate::application::{ActionData, AppAction, AppChannels, AppEvent, DigitCollection, HangupBy};
use crate::daemon::Shared;
use crate::engine::{EngineTx, Input};
use crate::media_anchor::{Answered, Relay};

/// Packets a recording may fall behind by before the relay drops them for
/// it (about twenty seconds of one 20 ms stream).
const RECORD_TAP_CAPACITY: usize = 1024;

/// Digits pressed and not yet taken by an action or reported.
const DIGIT_QUEUE: usize = 64;

/// What the application task knows beyond the state machine.
pub struct AppContext {
    pub key: u64,
    pub transaction_id: TransactionId,
    pub sma_id: SmaId,
    pub rule_id: RuleId,
    /// The snapshot the call started with.
    pub config: Arc<Config>,
    pub engine: EngineTx,
    pub shared: Arc<Shared>,
    pub relay: Relay,
    /// The address trunkd's SDPs name for the relay (a bridged leg's
    /// offer).
    pub media_ip: std::net::IpAddr,
    /// What the answerer answered, per stream.
    pub answered: Answered,
    pub media_events: trunkd_media::MediaEvents,
    pub ports: trunkd_media::PortAllocator,
    /// The driver: actions in, events out.
    pub driver: AppChannels,
    /// Seeds the SSRCs of what trunkd plays.
    pub seed: u64,
    /// The A leg's Call-ID and numbers, for the CDR and the journal.
    pub call_id: String,
    pub source_number: String,
    pub destination_number: String,
    /// trunkd placed the call (CreateSipMediaApplicationCall).
    pub outbound: bool,
}

/// The voice connector id an application call's CDR is filed under: an
/// application call has no voice connector, so its SIP media
/// application's id stands in, lowercased and with every character a
/// voice connector id cannot hold made `-` (docs/sma.md).
pub fn cdr_vc_id(sma: &SmaId) -> Option<trunkd_core::VcId> {
    let id: String = sma
        .as_str()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    trunkd_core::VcId::new(&id).ok()
}

/// The facts of an application call for its CDR and journal entry.
fn facts<'a>(
    ctx: &'a AppContext,
    vc: &'a trunkd_core::VcId,
    start: SystemTime,
    answered: Option<SystemTime>,
    end: SystemTime,
    outcome: CallOutcome,
) -> CallFacts<'a> {
    CallFacts {
        transaction_id: ctx.transaction_id,
        call_id: &ctx.call_id,
        voice_connector_id: vc,
        direction: if ctx.outbound {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        source_phone_number: &ctx.source_number,
        destination_phone_number: &ctx.destination_number,
        sip_auth_user: None,
        start,
        answered,
        end,
        outcome,
        streaming: false,
    }
}

pub async fn run(ctx: AppContext, new: NewUasCall, rx: crate::call_task::CallRx) {
    let span = info_span!("application", transaction_id = %ctx.transaction_id, sma = %ctx.sma_id, rule = %ctx.rule_id);
    drive(ctx, Start::Inbound(Box::new(new)), rx)
        .instrument(span)
        .await
}

/// An application call trunkd places itself (CreateSipMediaApplicationCall):
/// its first leg is `leg`, offered the relay's A side; `anchor` holds the
/// relay's ports for the call's lifetime.
pub async fn run_outbound(
    ctx: AppContext,
    leg: UacLeg,
    anchor: crate::media_anchor::RelayAnchor,
    placed: PlacedMedia,
    rx: crate::call_task::CallRx,
) {
    let span = info_span!("application", transaction_id = %ctx.transaction_id, sma = %ctx.sma_id, direction = "outbound");
    drive(ctx, Start::Outbound(Box::new((leg, anchor, placed))), rx)
        .instrument(span)
        .await
}

/// How an application call starts.
enum Start {
    /// A carrier's INVITE trunkd answers.
    Inbound(Box<NewUasCall>),
    /// A call trunkd places (the leg, the relay anchor it uses, and where
    /// the codec its callee picks is kept for the leg's re-offers).
    Outbound(Box<(UacLeg, crate::media_anchor::RelayAnchor, PlacedMedia)>),
}

/// What a placed call's leg was offered, for its answer and re-offers.
pub struct PlacedMedia {
    /// The codec in use (the callee picks), shared with the leg's re-offer
    /// answerer.
    pub codec: SharedCodec,
    /// SDES state when the leg offered SRTP (shared likewise).
    pub sdes: Option<crate::application::bridge::SharedSdes>,
    /// Each hop's SRTP policy, by plan index.
    pub hop_policies: Vec<trunkd_core::SrtpPolicy>,
}

/// The codec in use on a placed call's leg, shared with its re-offer
/// answerer ([`crate::application::bridge::Reoffer`]).
pub type SharedCodec = Arc<std::sync::Mutex<crate::application::bridge::BridgeCodec>>;

/// What the caller's leg reports, beyond a call's outputs (a value that
/// lives for one loop turn: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum FirstOut {
    Call(CallOutput),
    /// The callee of an outbound call rings.
    Ringing,
}

/// The application call's first leg: the INVITE trunkd answered
/// (`UasCall`), or the call it placed (`UacLeg`, whose media is the
/// relay's A side). Both look alike to [`drive`].
enum FirstLeg {
    Uas(Box<UasCall>),
    Uac(Box<Placed>),
}

struct Placed {
    leg: UacLeg,
    /// Keeps the relay's ports until the call is dropped.
    _anchor: crate::media_anchor::RelayAnchor,
    relay: Relay,
    answered: Answered,
    codec: crate::application::bridge::BridgeCodec,
    /// The same, for the leg's re-offer answerer.
    shared_codec: SharedCodec,
    /// SDES state when the leg offered SRTP.
    sdes: Option<crate::application::bridge::SharedSdes>,
    /// Each hop's SRTP policy, by plan index.
    hop_policies: Vec<trunkd_core::SrtpPolicy>,
    start: Instant,
    wall: SystemTime,
    /// Ended events turned into outputs.
    out: std::collections::VecDeque<FirstOut>,
}

impl FirstLeg {
    fn poll_output(&mut self) -> Option<FirstOut> {
        match self {
            FirstLeg::Uas(c) => c.poll_output().map(FirstOut::Call),
            FirstLeg::Uac(p) => {
                if let Some(o) = p.leg.poll_output() {
                    return Some(FirstOut::Call(o));
                }
                while let Some(ev) = p.leg.poll_event() {
                    p.on_event(ev);
                }
                p.out.pop_front()
            }
        }
    }

    fn is_ended(&self) -> bool {
        match self {
            FirstLeg::Uas(c) => c.is_ended(),
            FirstLeg::Uac(p) => p.leg.is_ended() && p.out.is_empty(),
        }
    }

    fn is_outbound(&self) -> bool {
        matches!(self, FirstLeg::Uac(_))
    }

    fn is_answered(&self) -> bool {
        match self {
            FirstLeg::Uas(c) => c.is_answered(),
            FirstLeg::Uac(p) => p.leg.is_connected(),
        }
    }

    /// Answers an inbound call; an outbound one is answered by its callee.
    fn answer(&mut self, now: Instant) {
        if let FirstLeg::Uas(c) = self {
            c.answer(now);
        }
    }

    /// Ends an unanswered call: the status to the caller, or CANCEL.
    fn reject(&mut self, now: Instant, status: u16, reason: &str) {
        match self {
            FirstLeg::Uas(c) => c.reject(now, status, reason),
            FirstLeg::Uac(p) => p.leg.hang_up(),
        }
    }

    fn handle(&mut self, now: Instant, input: CallInput) {
        match self {
            FirstLeg::Uas(c) => c.handle(now, input),
            FirstLeg::Uac(p) => p.leg.handle(now, input),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            FirstLeg::Uas(_) => None,
            FirstLeg::Uac(p) => p.leg.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let FirstLeg::Uac(p) = self {
            p.leg.handle_timeout(now);
        }
    }
}

impl Placed {
    fn on_event(&mut self, ev: UacEvent) {
        let wall = |p: &Placed| p.wall + p.start.elapsed();
        match ev {
            UacEvent::Ringing { .. } => self.out.push_back(FirstOut::Ringing),
            UacEvent::Answered { sdp, hop } => {
                if let Err(message) = take_keys(
                    &self.relay,
                    trunkd_media::Leg::A,
                    0,
                    self.sdes.as_ref(),
                    &self.hop_policies,
                    hop,
                    &sdp,
                ) {
                    // Not taken: the callee is hung up (its BYE follows)
                    // and the application hears HANGUP, not CALL_ANSWERED.
                    warn!(%message, "the placed call's answer is refused");
                    self.leg.hang_up();
                    return;
                }
                match crate::application::bridge::answer_peer(&sdp) {
                    Some((rtp, rtcp)) => {
                        if let Err(e) =
                            self.relay
                                .update_stream_peer(trunkd_media::Leg::A, 0, Some(rtp), rtcp)
                        {
                            warn!(error = %e, "the outbound call's media could not be set");
                        }
                    }
                    None => warn!("the callee's answer has no audio stream"),
                }
                // The callee picked PCMU or PCMA from the offer; an
                // answer naming neither is taken as PCMU, the first.
                if let Some(c) = crate::application::bridge::answer_codec(&sdp) {
                    self.codec = c;
                }
                if let Ok(mut shared) = self.shared_codec.lock() {
                    *shared = self.codec.clone();
                }
                let c = &self.codec;
                if let Ok(mut a) = self.answered.lock() {
                    *a = vec![trunkd_media::recvonly::AnsweredStream {
                        kind: "audio".into(),
                        ports: Some((
                            self.relay.local_rtp(trunkd_media::Leg::A).port(),
                            self.relay.local_rtcp(trunkd_media::Leg::A).port(),
                        )),
                        direction: trunkd_media::sdp::Direction::SendRecv,
                        codec: Some(trunkd_media::recvonly::AnsweredCodec {
                            payload_type: c.payload_type,
                            encoding: c.encoding.clone(),
                            clock_rate: 8000,
                        }),
                        telephone_event: c.telephone_event,
                        label: None,
                    }];
                }
                self.out
                    .push_back(FirstOut::Call(CallOutput::Event(CallEvent::Answered {
                        hop: 0,
                    })));
            }
            UacEvent::Failed(f) => {
                let end = CallEnd {
                    outcome: CallOutcome::Failed {
                        status: f.status,
                        reason: f.reason,
                    },
                    answered: None,
                    end: wall(self),
                    hop: None,
                };
                self.out
                    .push_back(FirstOut::Call(CallOutput::Event(CallEvent::Ended(end))));
            }
            UacEvent::Ended { .. } => {
                let end = CallEnd {
                    outcome: CallOutcome::Answered,
                    answered: self.leg.answered_wall(),
                    end: wall(self),
                    hop: None,
                };
                self.out
                    .push_back(FirstOut::Call(CallOutput::Event(CallEvent::Ended(end))));
            }
        }
    }
}

/// The answered stream trunkd plays into and listens to.
#[derive(Clone)]
struct Media {
    endpoint: Arc<LegEndpoint<QualityObserver>>,
    relay: Relay,
    stream: usize,
    codec: G711,
    payload_type: u8,
    telephone_event: Option<u8>,
}

/// The first stream the answer took, if it is G.711.
fn answered_media(relay: &Relay, answered: &Answered) -> Option<Media> {
    let streams = answered.lock().ok()?;
    let (stream, s) = streams
        .iter()
        .enumerate()
        .find(|(_, s)| s.ports.is_some())?;
    let codec = s.codec.as_ref()?;
    let law = match codec.encoding.as_str() {
        "PCMU" => G711::Pcmu,
        "PCMA" => G711::Pcma,
        _ => return None,
    };
    Some(Media {
        endpoint: Arc::new(LegEndpoint::new(
            relay.clone(),
            trunkd_media::Leg::A,
            stream,
        )),
        relay: relay.clone(),
        stream,
        codec: law,
        payload_type: codec.payload_type,
        telephone_event: s.telephone_event,
    })
}

/// A running action: its outcome, and the digit queue it borrowed.
type Running = JoinHandle<(Option<AppEvent>, mpsc::Receiver<char>)>;

async fn drive(mut ctx: AppContext, start_with: Start, mut rx: crate::call_task::CallRx) {
    let metrics = &ctx.shared.metrics;
    let resources = &ctx.config.resources;
    let direction_label = match start_with {
        Start::Inbound(_) => "inbound",
        Start::Outbound(_) => "outbound",
    };
    let active = metrics.calls_active(None, resources, direction_label);
    active.inc();
    let mut media_events = std::mem::take(&mut ctx.media_events);
    let events = ctx.driver.events.clone();
    let (local, mut call) = match start_with {
        Start::Inbound(new) => (
            new.local.clone(),
            FirstLeg::Uas(Box::new(UasCall::new(*new))),
        ),
        Start::Outbound(b) => {
            let (leg, anchor, placed) = *b;
            let codec = crate::application::bridge::BridgeCodec {
                encoding: "PCMU".into(),
                payload_type: 0,
                telephone_event: Some(101),
            };
            (
                leg.local().clone(),
                FirstLeg::Uac(Box::new(Placed {
                    leg,
                    _anchor: anchor,
                    relay: ctx.relay.clone(),
                    answered: ctx.answered.clone(),
                    codec,
                    shared_codec: placed.codec,
                    sdes: placed.sdes,
                    hop_policies: placed.hop_policies,
                    start: Instant::now(),
                    wall: SystemTime::now(),
                    out: Default::default(),
                })),
            )
        }
    };
    let (digit_tx, digit_rx) = mpsc::channel::<char>(DIGIT_QUEUE);
    let mut idle_digits = Some(digit_rx);
    let mut running: Option<Running> = None;
    let mut pending: Option<AppAction> = None;
    let mut driver_open = true;
    let mut media: Option<Media> = None;
    let mut pump: Option<JoinHandle<()>> = None;
    let mut by = HangupBy::Caller;
    let mut ended: Option<CallEnd> = None;
    let mut plays: u32 = 0;
    // CallAndBridge's leg, and whether its action is still running.
    let mut bridge: Option<Bridged> = None;
    let mut bridging = false;
    let mut bridges: u64 = 0;
    let mut call_recording: Option<CallRecording> = None;
    let start = SystemTime::now();
    let cdr_vc = cdr_vc_id(&ctx.sma_id);
    'call: loop {
        while let Some(out) = call.poll_output() {
            let out = match out {
                FirstOut::Call(o) => o,
                FirstOut::Ringing => {
                    let _ = events.send(AppEvent::Ringing).await;
                    continue;
                }
            };
            match out {
                CallOutput::Event(CallEvent::Answered { .. }) => {
                    info!("application call answered");
                    metrics.answered(None, resources, direction_label);
                    if let Some(vc) = &cdr_vc {
                        let now = SystemTime::now();
                        let f = facts(&ctx, vc, start, Some(now), now, CallOutcome::Answered);
                        ctx.shared.call_journal.answered(&f, now);
                    }
                    media = answered_media(&ctx.relay, &ctx.answered);
                    if let Some(m) = &media {
                        pump = start_digit_pump(m, digit_tx.clone());
                    }
                    let _ = events.send(AppEvent::Answered).await;
                }
                CallOutput::Event(CallEvent::Info { content_type, body }) => {
                    match parse_info_dtmf(&content_type, &body) {
                        Ok(d) => {
                            // A full queue loses the key; the caller presses again.
                            let _ = digit_tx.try_send(d.digit.to_char());
                        }
                        Err(e) => debug!(error = %e, "INFO that is not DTMF ignored"),
                    }
                }
                CallOutput::Event(CallEvent::Ended(end)) => {
                    info!(outcome = ?end.outcome, "application call ended");
                    ended = Some(end);
                }
                CallOutput::Event(CallEvent::HopFailed { .. }) => {}
                out => {
                    if ctx
                        .engine
                        .send(Input::FromCall { call: ctx.key, out })
                        .await
                        .is_err()
                    {
                        // The engine is gone: the daemon is stopping.
                        by = HangupBy::Application;
                        break 'call;
                    }
                }
            }
        }
        if let Some(b) = bridge.as_mut() {
            let mut again = true;
            while again {
                again = false;
                while let Some(out) = b.leg.poll_output() {
                    if ctx
                        .engine
                        .send(Input::FromCall { call: ctx.key, out })
                        .await
                        .is_err()
                    {
                        by = HangupBy::Application;
                        break 'call;
                    }
                }
                while let Some(ev) = b.leg.poll_event() {
                    let (event, more) = on_bridge_event(&ctx, b, ev);
                    again |= more;
                    if event.is_some() {
                        // Answered, refused or gone: the caller hears the
                        // callee (or the application) from now on.
                        if let Some(r) = b.ringback.take() {
                            r.stop().await;
                        }
                    }
                    if let Some(done) = event {
                        if !matches!(done, BridgeOutcome::Left { .. }) {
                            bridging = false;
                        }
                        for e in done.events(b) {
                            let _ = events.send(e).await;
                        }
                    }
                }
            }
            if b.leg.is_ended() {
                bridge = None;
            }
        }
        if call.is_ended() {
            if let Some(mut b) = bridge.take() {
                if let Some(r) = b.ringback.take() {
                    r.stop().await;
                }
                // The caller left: the bridged leg goes too (its BYE or
                // CANCEL leaves before the task ends).
                b.leg.hang_up();
                while let Some(out) = b.leg.poll_output() {
                    let _ = ctx
                        .engine
                        .send(Input::FromCall { call: ctx.key, out })
                        .await;
                }
                if b.joined {
                    let _ = events.send(AppEvent::BridgeLeft).await;
                }
            }
            break;
        }
        // The next action, once the previous one is over (and, on a call
        // trunkd placed, once the callee answered).
        let ready = call.is_answered()
            || !call.is_outbound()
            || matches!(pending, Some(AppAction::Hangup { .. }));
        if running.is_none() && !bridging && ready {
            if let Some(action) = pending.take() {
                match action {
                    AppAction::Answer => {
                        call.answer(Instant::now());
                        if !call.is_answered() {
                            // The offer was refused (488): trunkd ended it.
                            by = HangupBy::Application;
                        }
                    }
                    AppAction::Hangup { sip_response_code } => {
                        by = HangupBy::Application;
                        if call.is_answered() {
                            call.handle(Instant::now(), CallInput::Hangup);
                        } else {
                            call.reject(
                                Instant::now(),
                                sip_response_code,
                                reason(sip_response_code),
                            );
                        }
                    }
                    AppAction::HangupBridged => {
                        if let Some(b) = bridge.as_mut() {
                            b.leg.hang_up();
                        }
                    }
                    AppAction::CallAndBridge {
                        to,
                        caller_id,
                        timeout,
                        headers,
                        via,
                        ringback,
                    } if call.is_answered() => {
                        let spec = BridgeSpec {
                            to,
                            caller_id,
                            timeout,
                            headers,
                            via,
                            attempt: bridges,
                        };
                        bridges += 1;
                        match start_bridge(&ctx, &local, media.as_ref(), spec) {
                            Ok(mut b) => {
                                if let (Some(tone), Some(m)) = (ringback, media.as_ref()) {
                                    plays += 1;
                                    let ssrc = (ctx.seed as u32) ^ plays.wrapping_mul(0x9E37_79B9);
                                    b.ringback = Some(Ringback::start(m, tone, ssrc));
                                }
                                bridging = true;
                                bridge = Some(b);
                            }
                            Err(message) => {
                                let _ = events
                                    .send(AppEvent::ActionFailed {
                                        action: "CallAndBridge",
                                        error_type: "SystemException",
                                        message,
                                    })
                                    .await;
                            }
                        }
                    }
                    AppAction::StopCallRecording => {
                        let event = match call_recording.take() {
                            Some(r) => match r.finish().await {
                                Ok((path, duration)) => succeeded(
                                    &AppAction::StopCallRecording,
                                    ActionData::CallRecording { path, duration },
                                ),
                                Err(e) => failed(&AppAction::StopCallRecording, "SystemError", e),
                            },
                            None => failed(
                                &AppAction::StopCallRecording,
                                "ActionNotSupported",
                                "no call recording is running".into(),
                            ),
                        };
                        if let Some(e) = event {
                            let _ = events.send(e).await;
                        }
                    }
                    AppAction::StartCallRecording { path, track } if call.is_answered() => {
                        if let Some(old) = call_recording.take() {
                            let _ = old.finish().await;
                        }
                        let action = AppAction::StartCallRecording {
                            path: path.clone(),
                            track,
                        };
                        let event = match &media {
                            Some(m) => match CallRecording::start(m, path.clone(), track) {
                                Ok(r) => {
                                    call_recording = Some(r);
                                    succeeded(&action, ActionData::None)
                                }
                                Err(e) => failed(&action, "SystemError", e),
                            },
                            None => {
                                failed(&action, "SystemError", "no media stream to record".into())
                            }
                        };
                        if let Some(e) = event {
                            let _ = events.send(e).await;
                        }
                    }
                    action if !call.is_answered() => {
                        // Media actions answer first, as the managed
                        // service does; the action runs once the answer's
                        // outputs are out (a refused offer ends the call).
                        call.answer(Instant::now());
                        if call.is_answered() {
                            pending = Some(action);
                        } else {
                            by = HangupBy::Application;
                            let _ = events
                                .send(AppEvent::ActionFailed {
                                    action: action.name(),
                                    error_type: "SystemError",
                                    message: "the call could not be answered".into(),
                                })
                                .await;
                        }
                    }
                    action => match (&media, idle_digits.take()) {
                        (Some(m), Some(digits)) => {
                            plays += 1;
                            let ssrc = (ctx.seed as u32) ^ plays.wrapping_mul(0x9E37_79B9);
                            running = Some(tokio::spawn(
                                execute(action, m.clone(), digits, ssrc, events.clone())
                                    .in_current_span(),
                            ));
                        }
                        (_, digits) => {
                            idle_digits = digits;
                            let _ = events
                                .send(AppEvent::ActionFailed {
                                    action: action.name(),
                                    error_type: "SystemError",
                                    message: "no media stream to play or listen on".into(),
                                })
                                .await;
                        }
                    },
                }
                continue 'call;
            }
        }
        tokio::select! {
            input = rx.recv() => {
                let input = input.map_or(CallInput::Hangup, |b| *b);
                if matches!(input, CallInput::Hangup) {
                    by = HangupBy::Application;
                }
                // The caller's leg is `Leg::A` (a placed call's own UAC leg
                // too), CallAndBridge's `Leg::B`.
                match (leg_of(&input), bridge.as_mut()) {
                    (Leg::B, Some(b)) => b.leg.handle(Instant::now(), input),
                    (Leg::B, None) => {}
                    _ => call.handle(Instant::now(), input),
                }
            }
            Some(event) = media_events.recv() => {
                let trunkd_media::MediaEvent::Inactive { idle, .. } = event;
                info!(idle_s = idle.as_secs(), "no media on the application call; hanging up");
                metrics.media_inactivity_hangups.inc();
                by = HangupBy::Application;
                call.handle(Instant::now(), CallInput::Hangup);
            }
            done = join(&mut running) => {
                running = None;
                match done {
                    Ok((event, digits)) => {
                        idle_digits = Some(digits);
                        if let Some(e) = event {
                            let _ = events.send(e).await;
                        }
                    }
                    Err(e) => {
                        // A panicked action: no digits any more, the call goes on.
                        warn!(error = %e, "application action failed");
                        let (_, rx) = mpsc::channel(1);
                        idle_digits = Some(rx);
                    }
                }
            }
            Some(d) = next_digit(&mut idle_digits), if running.is_none() => {
                let _ = events.send(AppEvent::Digits { digits: d.to_string() }).await;
            }
            () = sleep_until(bridge.as_ref().and_then(|b| b.leg.poll_timeout())) => {
                if let Some(b) = bridge.as_mut() {
                    b.leg.handle_timeout(Instant::now());
                }
            }
            () = sleep_until(call.poll_timeout()) => call.handle_timeout(Instant::now()),
            action = ctx.driver.actions.recv(), if running.is_none() && !bridging && pending.is_none() && driver_open => {
                match action {
                    Some(a) => pending = Some(a),
                    None => {
                        // A call nobody drives cannot go on.
                        info!("the application driver is gone; hanging up");
                        driver_open = false;
                        pending = Some(AppAction::Hangup { sip_response_code: 480 });
                    }
                }
            }
        }
    }
    if let Some(r) = running.take() {
        r.abort();
        let _ = r.await;
    }
    if let Some(p) = pump.take() {
        p.abort();
        let _ = p.await;
    }
    // A call recording still running is finished before the driver hears
    // of the hangup: it delivers the file then.
    if let Some(r) = call_recording.take() {
        if let Err(e) = r.finish().await {
            warn!(error = %e, "the call recording could not be finished");
        }
    }
    drop(media);
    if let (Some(end), Some(vc)) = (&ended, &cdr_vc) {
        let f = facts(&ctx, vc, start, end.answered, end.end, end.outcome.clone());
        let then = end.answered.is_some().then(|| {
            crate::records::writer::Then::JournalEnded(
                ctx.shared.call_journal.clone(),
                ctx.transaction_id,
            )
        });
        crate::records::write_cdr(&ctx.config, &f, metrics, then);
    }
    let _ = events.send(AppEvent::Hangup { by }).await;
    // The answerer's handle goes with the call (and the bridged leg's
    // re-offer answerer with it); ours is then the last: stop the relay and
    // wait until its ports are back in the pool.
    drop(bridge);
    drop(call);
    if let Ok(relay) = Arc::try_unwrap(ctx.relay) {
        let _ = relay.stop().await;
    }
    metrics
        .media_ports_in_use
        .set((ctx.ports.capacity() - ctx.ports.available()) as i64);
    if let Some(end) = &ended {
        if !matches!(end.outcome, CallOutcome::Answered) {
            metrics.failed(None, resources, direction_label);
        }
    }
    active.dec();
    let _ = ctx.engine.send(Input::CallDone { call: ctx.key }).await;
}

/// CallAndBridge's leg (SPEC §6): a `UacLeg` whose media is the B side
/// of the call's relay (see [`crate::application::bridge`]).
struct Bridged {
    leg: UacLeg,
    /// The relay stream bridged (the caller's answered one).
    stream: usize,
    /// Answered and not over: its end is reported.
    joined: bool,
    to: String,
    from: String,
    /// The `RingbackTone` playing to the caller while the callee rings.
    ringback: Option<Ringback>,
    /// SDES state when the leg offered SRTP.
    sdes: Option<crate::application::bridge::SharedSdes>,
    /// Each hop's SRTP policy, by plan index (the answering hop's decides
    /// whether a plain answer is taken).
    hop_policies: Vec<trunkd_core::SrtpPolicy>,
}

/// CallAndBridge's `RingbackTone`: the tone looped into the caller's
/// stream, the way PlayAudio plays a prompt (the relay holds back what
/// the B side sends meanwhile: nothing, as the callee is not answered).
struct Ringback {
    task: JoinHandle<()>,
    endpoint: Arc<LegEndpoint<QualityObserver>>,
}

impl Ringback {
    fn start(m: &Media, samples: Arc<[i16]>, ssrc: u32) -> Ringback {
        let mut player = Player::new(
            samples,
            PlayerConfig {
                codec: m.codec,
                payload_type: m.payload_type,
                start: RtpContinuity {
                    ssrc,
                    next_seq: 0,
                    next_ts: 0,
                },
                repeat: Repeat::Forever,
                marker_on_first: true,
            },
        );
        let endpoint = m.endpoint.clone();
        let task = tokio::spawn(
            {
                let endpoint = endpoint.clone();
                async move {
                    if let Err(e) = endpoint.play(&mut player).await {
                        debug!(error = %e, "the ringback tone stopped");
                    }
                }
            }
            .in_current_span(),
        );
        Ringback { task, endpoint }
    }

    /// Stops the tone and gives the caller's stream back to the relay
    /// (the callee's audio goes through from now on).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        let _ = self.endpoint.stop();
    }
}

/// What CallAndBridge asks.
struct BridgeSpec {
    to: String,
    caller_id: String,
    timeout: Duration,
    headers: Vec<(String, String)>,
    via: crate::application::BridgeVia,
    /// How many CallAndBridge the call started before this one.
    attempt: u64,
}

/// How a bridged leg's event ends up for the driver.
enum BridgeOutcome {
    Joined,
    Failed {
        error_type: &'static str,
        message: String,
    },
    Left {
        was_joined: bool,
    },
}

impl BridgeOutcome {
    fn events(self, b: &Bridged) -> Vec<AppEvent> {
        match self {
            BridgeOutcome::Joined => vec![
                AppEvent::BridgeJoined {
                    call_id: b
                        .leg
                        .call_id()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .unwrap_or_default(),
                    to: b.to.clone(),
                    from: b.from.clone(),
                },
                AppEvent::ActionSucceeded {
                    action: "CallAndBridge",
                    data: ActionData::None,
                },
            ],
            BridgeOutcome::Failed {
                error_type,
                message,
            } => vec![AppEvent::ActionFailed {
                action: "CallAndBridge",
                error_type,
                message,
            }],
            BridgeOutcome::Left { was_joined: true } => vec![AppEvent::BridgeLeft],
            BridgeOutcome::Left { was_joined: false } => Vec::new(),
        }
    }
}

/// Places CallAndBridge's leg: the callee is offered the relay's B side
/// with the caller's codec, through every carrier or a voice connector's
/// origination routes.
fn start_bridge(
    ctx: &AppContext,
    local: &trunkd_b2bua::LocalAddrs,
    media: Option<&Media>,
    spec: BridgeSpec,
) -> Result<Bridged, String> {
    use crate::application::bridge;
    let m = media.ok_or_else(|| "no media stream to bridge".to_owned())?;
    if m.stream != 0 {
        return Err("only the first media stream can be bridged".to_owned());
    }
    let codec = bridge::BridgeCodec {
        encoding: match m.codec {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
        .to_owned(),
        payload_type: m.payload_type,
        telephone_event: m.telephone_event,
    };
    let plan = bridge::plan(
        &ctx.config,
        &ctx.shared.hosts,
        ctx.seed.rotate_left(29),
        &spec.via,
    )?;
    let rtp = ctx.relay.local_rtp(trunkd_media::Leg::B).port();
    // SRTP (SDES) when a hop asks for it; a plain answer is taken from a
    // hop that does not require it (checked at the answer).
    let hop_policies: Vec<trunkd_core::SrtpPolicy> = plan.iter().map(|h| h.srtp).collect();
    let (sdes, security) = match bridge::leg_policy(&plan) {
        trunkd_core::SrtpPolicy::Off => (None, None),
        _ => {
            let mut sdes = trunkd_media::LegSdes::new(trunkd_core::SrtpPolicy::Offer);
            let security = sdes.offer("RTP/AVP").map_err(|e| e.to_string())?;
            (Some(Arc::new(std::sync::Mutex::new(sdes))), Some(security))
        }
    };
    let offer = bridge::offer_secured(ctx.media_ip, rtp, ctx.seed >> 3, &codec, security.as_ref());
    // The callee's re-offers (hold, a new address) are answered on the
    // relay's B side, in the codec in use.
    let reoffer = bridge::Reoffer::new(
        ctx.relay.clone(),
        trunkd_media::Leg::B,
        m.stream,
        (ctx.media_ip, rtp),
        ctx.seed >> 3,
        Arc::new(std::sync::Mutex::new(codec)),
        sdes.clone(),
    );
    info!(to = %spec.to, hops = plan.len(), "CallAndBridge: calling");
    let leg = UacLeg::new(NewUacLeg {
        // A fresh seed per CallAndBridge of the call: a second attempt must
        // not reuse the first one's Call-ID, tags or branches.
        seed: (ctx.seed.rotate_left(17) ^ 0x5bd1_e995)
            .wrapping_add(spec.attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        now: Instant::now(),
        wall: SystemTime::now(),
        local: local.clone(),
        callee: spec.to.clone(),
        caller: spec.caller_id.clone(),
        plan,
        offer,
        headers: spec.headers,
        hop_timeout: ctx.config.settings.routing.hop_timeout,
        ring_timeout: spec.timeout,
        reoffer: Some(Box::new(reoffer)),
        side: Leg::B,
    });
    Ok(Bridged {
        leg,
        stream: m.stream,
        joined: false,
        to: spec.to,
        from: spec.caller_id,
        ringback: None,
        sdes,
        hop_policies,
    })
}

/// Acts on a bridged leg's event. The flag says whether the leg has new
/// outputs to send (it hung itself up).
fn on_bridge_event(
    ctx: &AppContext,
    b: &mut Bridged,
    ev: UacEvent,
) -> (Option<BridgeOutcome>, bool) {
    match ev {
        // Early media (183 with SDP): the caller hears the callee's
        // network (its ringback, an announcement) until the answer —
        // unless the application's RingbackTone plays meanwhile.
        UacEvent::Ringing {
            hop,
            sdp: Some(sdp),
        } if b.ringback.is_none() => {
            if let Some((rtp, rtcp)) = crate::application::bridge::answer_peer(&sdp) {
                match secure_answer(ctx, b, hop, &sdp) {
                    Ok(()) => {
                        debug!(peer = %rtp, "CallAndBridge: early media");
                        if let Err(e) = ctx.relay.update_stream_peer(
                            trunkd_media::Leg::B,
                            b.stream,
                            Some(rtp),
                            rtcp,
                        ) {
                            warn!(error = %e, "the bridged leg's early media could not be set");
                        }
                    }
                    Err(message) => debug!(%message, "early media not taken"),
                }
            }
            (None, false)
        }
        UacEvent::Ringing { .. } => (None, false),
        UacEvent::Answered { sdp, hop } => match crate::application::bridge::answer_peer(&sdp) {
            Some((rtp, rtcp)) => {
                if let Err(message) = secure_answer(ctx, b, hop, &sdp) {
                    warn!(%message, "CallAndBridge: the answer's media security is refused");
                    b.leg.hang_up();
                    return (
                        Some(BridgeOutcome::Failed {
                            error_type: "SystemException",
                            message,
                        }),
                        true,
                    );
                }
                info!(peer = %rtp, "CallAndBridge: answered; bridging media");
                if let Err(e) =
                    ctx.relay
                        .update_stream_peer(trunkd_media::Leg::B, b.stream, Some(rtp), rtcp)
                {
                    warn!(error = %e, "the bridged leg's media could not be set");
                }
                b.joined = true;
                (Some(BridgeOutcome::Joined), false)
            }
            None => {
                b.leg.hang_up();
                (
                    Some(BridgeOutcome::Failed {
                        error_type: "SystemException",
                        message: "the callee's answer has no audio stream".to_owned(),
                    }),
                    true,
                )
            }
        },
        UacEvent::Failed(f) => {
            info!(
                status = f.status,
                timed_out = f.timed_out,
                "CallAndBridge: not answered"
            );
            let message = if f.timed_out {
                "the callee did not answer in CallTimeoutSeconds".to_owned()
            } else {
                format!("the callee answered {} {}", f.status, f.reason)
            };
            (
                Some(BridgeOutcome::Failed {
                    error_type: "CallNotAnswered",
                    message,
                }),
                false,
            )
        }
        UacEvent::Ended { by_callee } => {
            info!(by_callee, "CallAndBridge: the bridged leg ended");
            let was_joined = std::mem::replace(&mut b.joined, false);
            (Some(BridgeOutcome::Left { was_joined }), false)
        }
    }
}

/// Takes the SDES keys of the bridged leg's answer (from hop `hop`) into
/// the relay's B side (see [`take_keys`]).
fn secure_answer(ctx: &AppContext, b: &Bridged, hop: usize, sdp: &[u8]) -> Result<(), String> {
    take_keys(
        &ctx.relay,
        trunkd_media::Leg::B,
        b.stream,
        b.sdes.as_ref(),
        &b.hop_policies,
        hop,
        sdp,
    )
}

/// Takes the SDES keys of a placed leg's answer `sdp` (from hop `hop`)
/// into the relay's `leg` side, or says why the answer cannot be taken: a
/// plain answer from a hop that requires SRTP, an answer naming no key
/// trunkd offered. A plain leg (`sdes` none) takes any answer.
fn take_keys(
    relay: &Relay,
    leg: trunkd_media::Leg,
    stream: usize,
    sdes: Option<&crate::application::bridge::SharedSdes>,
    hop_policies: &[trunkd_core::SrtpPolicy],
    hop: usize,
    sdp: &[u8],
) -> Result<(), String> {
    let Some(sdes) = sdes else {
        return Ok(());
    };
    let parsed = trunkd_media::sdp::Sdp::parse_bytes(sdp).map_err(|e| e.to_string())?;
    let m = parsed
        .media()
        .iter()
        .find(|m| m.kind() == "audio" && !m.is_rejected())
        .ok_or("the answer has no audio stream")?;
    let crypto: Vec<&str> = m.crypto().iter().map(String::as_str).collect();
    let required = hop_policies.get(hop) == Some(&trunkd_core::SrtpPolicy::Require);
    if crypto.is_empty() && required {
        return Err("the callee answered plain RTP; its route requires SRTP".to_owned());
    }
    let mut sdes = sdes.lock().map_err(|_| "SDES state".to_owned())?;
    sdes.peer_answered(m.proto(), &crypto)
        .map_err(|e| format!("the callee's SRTP answer is refused: {e}"))?;
    let keys = sdes
        .active()
        .map(trunkd_media::LegCrypto::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    info!(
        srtp = keys.is_some(),
        "media security of the callee's answer"
    );
    relay
        .set_stream_crypto(leg, stream, keys)
        .map_err(|e| e.to_string())
}

/// The leg an input from the engine belongs to (inputs without one are
/// the caller's).
fn leg_of(input: &CallInput) -> Leg {
    match input {
        CallInput::Request { leg, .. }
        | CallInput::Ack { leg, .. }
        | CallInput::Response { leg, .. }
        | CallInput::Timeout { leg, .. }
        | CallInput::TransportError { leg, .. }
        | CallInput::AckTimeout { leg }
        | CallInput::StrayResponse { leg, .. } => *leg,
        CallInput::Cancelled | CallInput::Hangup => Leg::A,
    }
}

/// The reason phrase of a final status trunkd sends for an application.
fn reason(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Rejected",
    }
}

async fn join(
    running: &mut Option<Running>,
) -> Result<(Option<AppEvent>, mpsc::Receiver<char>), tokio::task::JoinError> {
    match running {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

async fn next_digit(digits: &mut Option<mpsc::Receiver<char>>) -> Option<char> {
    match digits {
        Some(d) => d.recv().await,
        None => std::future::pending().await,
    }
}

/// RFC 4733 digits from the caller into the digit queue, until the relay
/// stops; `None` when the answer kept no telephone-event.
fn start_digit_pump(m: &Media, tx: mpsc::Sender<char>) -> Option<JoinHandle<()>> {
    let pt = m.telephone_event?;
    let mut listener = match m.endpoint.digits(pt) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "no digit listener on the application call");
            return None;
        }
    };
    Some(tokio::spawn(
        async move {
            while let Some(d) = listener.next().await {
                debug!(digit = %d.digit, "digit (RFC 4733)");
                if tx.send(d.digit.to_char()).await.is_err() {
                    return;
                }
            }
        }
        .in_current_span(),
    ))
}

fn succeeded(action: &AppAction, data: ActionData) -> Option<AppEvent> {
    Some(AppEvent::ActionSucceeded {
        action: action.name(),
        data,
    })
}

fn failed(action: &AppAction, error_type: &'static str, message: String) -> Option<AppEvent> {
    Some(AppEvent::ActionFailed {
        action: action.name(),
        error_type,
        message,
    })
}

/// Reports a key the running action does not use, so that the driver's
/// background listener (the managed service's ReceiveDigits) hears keys
/// pressed over a prompt, a pause or a recording.
async fn unused(events: &mpsc::Sender<AppEvent>, c: char) {
    let _ = events
        .send(AppEvent::Digits {
            digits: c.to_string(),
        })
        .await;
}

/// Runs one media action to its end; returns its event and the digit queue.
/// Keys the action does not take are reported as they come
/// ([`AppEvent::Digits`]).
async fn execute(
    action: AppAction,
    m: Media,
    mut digits: mpsc::Receiver<char>,
    ssrc: u32,
    events: mpsc::Sender<AppEvent>,
) -> (Option<AppEvent>, mpsc::Receiver<char>) {
    let start = RtpContinuity {
        ssrc,
        next_seq: 0,
        next_ts: 0,
    };
    let player_from = |samples: &Arc<[i16]>, repeat: u32, start: RtpContinuity| {
        Player::new(
            samples.clone(),
            PlayerConfig {
                codec: m.codec,
                payload_type: m.payload_type,
                start,
                repeat: Repeat::Times(repeat),
                marker_on_first: true,
            },
        )
    };
    let player = |samples: &Arc<[i16]>, repeat: u32| player_from(samples, repeat, start);
    let event = match &action {
        AppAction::Pause { duration } => {
            let sleep = tokio::time::sleep(*duration);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    Some(c) = digits.recv() => unused(&events, c).await,
                }
            }
            succeeded(&action, ActionData::None)
        }
        AppAction::PlayAudio {
            samples,
            repeat,
            terminators,
        } => {
            // Keys pressed before the prompt are not for it.
            while let Ok(c) = digits.try_recv() {
                unused(&events, c).await;
            }
            let mut p = player(samples, *repeat);
            let played = {
                let play = m.endpoint.play(&mut p);
                tokio::pin!(play);
                loop {
                    tokio::select! {
                        r = &mut play => break r.map(|_| ()),
                        Some(c) = digits.recv() => {
                            if terminators.contains(&c) {
                                break Ok(());
                            }
                            unused(&events, c).await;
                        }
                    }
                }
            };
            let _ = m.endpoint.stop();
            match played {
                Ok(()) => succeeded(&action, ActionData::None),
                Err(e) => failed(&action, "SystemError", e.to_string()),
            }
        }
        AppAction::PlayAudioAndGetDigits {
            samples,
            failure_samples,
            attempts,
            digits: spec,
            regex,
        } => {
            let mut outcome = None;
            // The prompts of one action continue one RTP timeline (with
            // the time between them): a call recording places them by it.
            let mut next = start;
            let mut ended: Option<Instant> = None;
            for attempt in 0..(*attempts).max(1) {
                if attempt > 0 {
                    if let Some(f) = failure_samples {
                        let mut p = player_from(f, 1, after(next, ended));
                        let _ = m.endpoint.play(&mut p).await;
                        next = p.continuity();
                        ended = Some(Instant::now());
                    }
                }
                while digits.try_recv().is_ok() {}
                let mut prompt = player_from(samples, 1, after(next, ended));
                let got = prompt_and_collect(&m, &mut prompt, spec, &mut digits).await;
                next = prompt.continuity();
                ended = Some(got.prompt_ended);
                let event = match regex {
                    // Enough digits, but not what the application accepts:
                    // a failed attempt, as the managed service counts it.
                    Some(re)
                        if got.digits.len() >= spec.min_digits && !re.is_match(&got.digits) =>
                    {
                        failed(
                            &action,
                            "InvalidDigitsReceived",
                            format!("{:?} does not match InputDigitsRegex", got.digits),
                        )
                    }
                    _ => got.into_event(&action, spec),
                };
                let done = matches!(event, Some(AppEvent::ActionSucceeded { .. }));
                outcome = event;
                if done {
                    break;
                }
            }
            outcome
        }
        AppAction::CollectDigits { digits: spec } => {
            collect(spec, &mut digits, Collected::default())
                .await
                .into_event(&action, spec)
        }
        AppAction::SendDigits {
            digits: keys,
            tone_duration,
        } => send_digits(&action, &m, keys, *tone_duration, start).await,
        AppAction::RecordAudio { .. } => record(&action, &m, &mut digits, &events).await,
        // Handled by the call's loop.
        AppAction::Answer
        | AppAction::Hangup { .. }
        | AppAction::HangupBridged
        | AppAction::CallAndBridge { .. }
        | AppAction::StartCallRecording { .. }
        | AppAction::StopCallRecording => None,
    };
    (event, digits)
}

/// Digits collected so far.
struct Collected {
    digits: String,
    terminated: bool,
    /// When the prompt before them stopped.
    prompt_ended: Instant,
}

impl Default for Collected {
    fn default() -> Self {
        Collected {
            digits: String::new(),
            terminated: false,
            prompt_ended: Instant::now(),
        }
    }
}

/// `next` moved on by the time since `ended` (whole 20 ms packets), so
/// that a prompt played after a pause keeps its place on the timeline.
fn after(mut next: RtpContinuity, ended: Option<Instant>) -> RtpContinuity {
    if let Some(e) = ended {
        let packets = (e.elapsed().as_millis() / 20) as u32;
        next.next_ts = next.next_ts.wrapping_add(packets.wrapping_mul(160));
    }
    next
}

impl Collected {
    fn take(&mut self, spec: &DigitCollection, c: char) {
        if spec.terminators.contains(&c) {
            self.terminated = true;
        } else if self.digits.len() < spec.max_digits {
            self.digits.push(c);
        }
    }

    fn done(&self, spec: &DigitCollection) -> bool {
        self.terminated || self.digits.len() >= spec.max_digits
    }

    fn into_event(self, action: &AppAction, spec: &DigitCollection) -> Option<AppEvent> {
        if self.digits.len() >= spec.min_digits {
            succeeded(action, ActionData::Digits(self.digits))
        } else {
            failed(
                action,
                "InvalidDigitsReceived",
                format!(
                    "{} digits received, at least {} expected",
                    self.digits.len(),
                    spec.min_digits
                ),
            )
        }
    }
}

/// Plays a prompt, stopped by the first key (barge-in, which counts), then
/// collects the rest.
async fn prompt_and_collect(
    m: &Media,
    prompt: &mut Player,
    spec: &DigitCollection,
    digits: &mut mpsc::Receiver<char>,
) -> Collected {
    let mut got = Collected::default();
    {
        let play = m.endpoint.play(prompt);
        tokio::pin!(play);
        tokio::select! {
            _ = &mut play => {}
            Some(c) = digits.recv() => got.take(spec, c),
        }
    }
    let _ = m.endpoint.stop();
    got.prompt_ended = Instant::now();
    collect(spec, digits, got).await
}

/// Collects until the spec is met, a terminator, or `timeout` without a key.
async fn collect(
    spec: &DigitCollection,
    digits: &mut mpsc::Receiver<char>,
    mut got: Collected,
) -> Collected {
    while !got.done(spec) {
        match tokio::time::timeout(spec.timeout, digits.recv()).await {
            Ok(Some(c)) => got.take(spec, c),
            Ok(None) | Err(_) => break,
        }
    }
    got
}

async fn send_digits(
    action: &AppAction,
    m: &Media,
    keys: &str,
    tone_duration: Duration,
    mut start: RtpContinuity,
) -> Option<AppEvent> {
    let Some(pt) = m.telephone_event else {
        return failed(
            action,
            "ActionNotSupported",
            "the caller did not offer telephone-event".into(),
        );
    };
    let parsed: Option<Vec<DtmfDigit>> = keys.chars().map(DtmfDigit::from_char).collect();
    let Some(parsed) = parsed else {
        return failed(
            action,
            "InvalidActionParameter",
            format!("not DTMF keys: {keys:?}"),
        );
    };
    for d in parsed {
        let mut config = DtmfSendConfig::new(pt, start);
        config.duration = tone_duration;
        let mut sender = DtmfSender::new(d, config);
        if let Err(e) = m.endpoint.play(&mut sender).await {
            return failed(action, "SystemError", e.to_string());
        }
        start = sender.continuity();
        // The gap between two key presses (RFC 4733 §2.5.1.1 senders
        // leave one; receivers need none).
        tokio::time::sleep(tone_duration / 2).await;
    }
    succeeded(action, ActionData::None)
}

/// Records the caller's stream to `path` until `max_duration`, a
/// terminator key, or the end of the call.
async fn record(
    action: &AppAction,
    m: &Media,
    digits: &mut mpsc::Receiver<char>,
    events: &mpsc::Sender<AppEvent>,
) -> Option<AppEvent> {
    let AppAction::RecordAudio {
        path,
        max_duration,
        terminators,
        silence,
    } = action
    else {
        return None;
    };
    let (path, max_duration, silence) = (path.clone(), *max_duration, *silence);
    while let Ok(c) = digits.try_recv() {
        unused(events, c).await;
    }
    let mut tap = match m.relay.tap(
        Some(trunkd_media::Leg::A),
        Some(m.stream),
        RECORD_TAP_CAPACITY,
    ) {
        Ok(t) => t,
        Err(e) => return failed(action, "SystemError", e.to_string()),
    };
    let mut config = RecorderConfig::default();
    config.payload_types.retain(|(pt, _)| *pt != m.payload_type);
    config.payload_types.push((m.payload_type, m.codec));
    let (packets, queue) = std::sync::mpsc::sync_channel::<bytes::Bytes>(RECORD_TAP_CAPACITY);
    let file = path.clone();
    let writer = tokio::task::spawn_blocking(move || {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let mut rec = Recorder::create(&file, config).map_err(|e| e.to_string())?;
        for p in queue {
            match rec.handle_packet(&p) {
                Ok(()) | Err(RecordError::Rtp(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        rec.finish().map_err(|e| e.to_string())
    });
    let deadline = tokio::time::sleep(max_duration);
    tokio::pin!(deadline);
    let mut terminator = None;
    let mut quiet = silence.map(|(threshold, duration)| {
        crate::application::silence::SilenceDetector::new(threshold, duration, Instant::now())
    });
    let mut decoded = Vec::with_capacity(160);
    loop {
        let quiet_until = quiet.as_ref().map(|q| q.deadline());
        tokio::select! {
            () = &mut deadline => break,
            () = sleep_until(quiet_until) => {
                if quiet.as_ref().is_some_and(|q| q.is_over(Instant::now())) {
                    debug!("the caller was quiet for SilenceDurationInSeconds; recording ends");
                    break;
                }
            }
            p = tap.recv() => match p {
                Some(p) if !p.rtcp => {
                    if let Some(q) = quiet.as_mut() {
                        if let Some((pt, payload)) =
                            crate::application::silence::rtp_payload(&p.data)
                        {
                            let law = if pt == m.payload_type {
                                Some(m.codec)
                            } else {
                                G711::from_static_payload_type(pt)
                            };
                            if let Some(law) = law {
                                decoded.clear();
                                law.decode_into(payload, &mut decoded);
                                q.frame(p.arrival, &decoded);
                            }
                        }
                    }
                    // A writer behind loses packets, never the call.
                    if packets.try_send(p.data).is_err() {
                        debug!("recording writer behind; packet lost");
                    }
                }
                Some(_) => {}
                None => break,
            },
            d = digits.recv() => match d {
                Some(c) if terminators.contains(&c) => {
                    terminator = Some(c);
                    break;
                }
                Some(c) => unused(events, c).await,
                None => break,
            },
        }
    }
    drop(tap);
    drop(packets);
    match writer.await {
        Ok(Ok(stats)) => {
            let samples = stats.audio_samples + stats.silence_samples;
            let duration = Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE));
            succeeded(
                action,
                ActionData::Recording {
                    path,
                    duration,
                    terminator,
                },
            )
        }
        Ok(Err(e)) => failed(action, "SystemError", e),
        Err(e) => failed(action, "SystemError", e.to_string()),
    }
}

/// A call recording (StartCallRecording) running beside the actions: a
/// task moves the taps' packets to a writer on a blocking thread, as
/// RecordAudio does.
struct CallRecording {
    path: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<Result<Duration, String>>,
}

impl CallRecording {
    fn start(m: &Media, path: PathBuf, track: Track) -> Result<CallRecording, String> {
        let mut incoming = match track {
            Track::Incoming | Track::Both => Some(
                m.relay
                    .tap(
                        Some(trunkd_media::Leg::A),
                        Some(m.stream),
                        RECORD_TAP_CAPACITY,
                    )
                    .map_err(|e| e.to_string())?,
            ),
            Track::Outgoing => None,
        };
        let mut outgoing = match track {
            Track::Outgoing | Track::Both => Some(m.endpoint.mirror(RECORD_TAP_CAPACITY)),
            Track::Incoming => None,
        };
        let mut config = RecorderConfig::default();
        config.payload_types.retain(|(pt, _)| *pt != m.payload_type);
        config.payload_types.push((m.payload_type, m.codec));
        let (packets, queue) =
            std::sync::mpsc::sync_channel::<(Instant, Side, Vec<u8>)>(RECORD_TAP_CAPACITY);
        let file = path.clone();
        let stereo = track == Track::Both;
        let begin = Instant::now();
        let writer = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let ok = |r: Result<(), RecordError>| match r {
                Ok(()) | Err(RecordError::Rtp(_)) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            if stereo {
                let mut rec =
                    StereoRecorder::create(&file, config, begin).map_err(|e| e.to_string())?;
                for (at, side, p) in queue {
                    ok(rec.handle_packet(at, side, &p))?;
                }
                let (a, b) = rec.finish().map_err(|e| e.to_string())?;
                Ok((a.audio_samples + a.silence_samples).max(b.audio_samples + b.silence_samples))
            } else {
                let mut rec = Recorder::create(&file, config).map_err(|e| e.to_string())?;
                for (_, _, p) in queue {
                    ok(rec.handle_packet(&p))?;
                }
                let s = rec.finish().map_err(|e| e.to_string())?;
                Ok(s.audio_samples + s.silence_samples)
            }
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(
            async move {
                let lost = |sent: bool| {
                    if !sent {
                        debug!("call recording writer behind; packet lost");
                    }
                };
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        p = recv_tap(&mut incoming) => match p {
                            Some(p) if !p.rtcp => lost(
                                packets.try_send((p.arrival, Side::Caller, p.data.to_vec())).is_ok(),
                            ),
                            Some(_) => {}
                            None => incoming = None,
                        },
                        p = recv_played(&mut outgoing) => match p {
                            Some(p) => lost(packets.try_send((p.sent, Side::Callee, p.rtp)).is_ok()),
                            None => outgoing = None,
                        },
                    }
                }
                drop(packets);
                let samples = writer.await.map_err(|e| e.to_string())??;
                Ok(Duration::from_micros(
                    samples * 1_000_000 / u64::from(SAMPLE_RATE),
                ))
            }
            .in_current_span(),
        );
        Ok(CallRecording { path, stop, task })
    }

    /// Stops the recording; its file and length once written.
    async fn finish(self) -> Result<(PathBuf, Duration), String> {
        let _ = self.stop.send(());
        let d = self.task.await.map_err(|e| e.to_string())??;
        Ok((self.path, d))
    }
}

async fn recv_tap(
    tap: &mut Option<mpsc::Receiver<trunkd_media::TappedPacket>>,
) -> Option<trunkd_media::TappedPacket> {
    match tap {
        Some(t) => t.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_played(
    mirror: &mut Option<mpsc::Receiver<trunkd_media::endpoint::leg::PlayedPacket>>,
) -> Option<trunkd_media::endpoint::leg::PlayedPacket> {
    match mirror {
        Some(t) => t.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod cdr_tests {
    use super::cdr_vc_id;

    #[test]
    fn an_application_calls_cdr_is_filed_under_its_sma_id_in_voice_connector_form() {
        let id = |s: &str| cdr_vc_id(&s.parse().unwrap()).map(|v| v.to_string());
        assert_eq!(id("sma-ivr").as_deref(), Some("sma-ivr"));
        assert_eq!(id("Main_IVR.v2").as_deref(), Some("main-ivr-v2"));
    }
}

#[cfg(test)]
mod tests {
    //! The task over real sockets on 127.0.0.1: a UDP "phone" at the far
    //! end of the A leg, the engine's side read from its channel.

    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::SystemTime;

    use bytes::Bytes;
    use trunkd_b2bua::{Leg, LocalAddrs};
    use trunkd_core::SrtpPolicy;
    use trunkd_media::endpoint::net::send_paced;
    use trunkd_media::endpoint::{parse_rtp, write_rtp_header};
    use trunkd_media::{PortAllocator, RelayConfig};
    use trunkd_sip::transaction::{Endpoint, Limits, Peer, ServerTxId, TimerConfig, TxEvent};
    use trunkd_sip::{Method, Request, SipMessage};

    use super::*;
    use crate::application::{channels, DriverChannels};

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const WAIT: Duration = Duration::from_secs(3);

    fn request(text: &str) -> Request {
        match SipMessage::parse(Bytes::from(text.to_owned())) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn invite(phone_port: u16) -> Request {
        let sdp = format!(
            "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {phone_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        );
        request(&format!(
            "INVITE sip:+12065550150@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-app-1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+14155550123@127.0.0.1>;tag=phone\r\n\
             To: <sip:+12065550150@127.0.0.1>\r\n\
             Call-ID: app-call-1\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:phone@127.0.0.1:5099>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ))
    }

    fn info(to_tag: &str, digit: char) -> Request {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        request(&format!(
            "INFO sip:trunkd@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-app-info\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+14155550123@127.0.0.1>;tag=phone\r\n\
             To: <sip:+12065550150@127.0.0.1>;tag={to_tag}\r\n\
             Call-ID: app-call-1\r\n\
             CSeq: 2 INFO\r\n\
             Content-Type: application/dtmf-relay\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    /// The server transaction ids a transaction layer gives `reqs`.
    fn server_txs(reqs: &[&Request]) -> Vec<ServerTxId> {
        let mut ep = Endpoint::new(TimerConfig::default(), Limits::default());
        let mut ids = Vec::new();
        for r in reqs {
            ep.handle_message(
                Instant::now(),
                SipMessage::Request((*r).clone()),
                Peer::udp("127.0.0.1:5099".parse().unwrap()),
            );
            while let Some(ev) = ep.poll_event() {
                if let TxEvent::NewRequest { tx, .. } = ev {
                    ids.push(tx);
                }
            }
        }
        ids
    }

    /// The next output the task hands the engine (skipping registrations).
    async fn next_out(engine: &mut mpsc::Receiver<Input>) -> CallOutput {
        loop {
            match tokio::time::timeout(WAIT, engine.recv()).await {
                Ok(Some(Input::FromCall { out, .. })) => match out {
                    CallOutput::Register { .. } | CallOutput::Unregister { .. } => {}
                    out => return out,
                },
                Ok(Some(_)) => {}
                other => panic!("no output from the task: {}", other.is_ok()),
            }
        }
    }

    async fn next_event(drv: &mut DriverChannels) -> AppEvent {
        tokio::time::timeout(WAIT, drv.events.recv())
            .await
            .expect("an event in time")
            .expect("the task is alive")
    }

    async fn recv_rtp(phone: &tokio::net::UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 2000];
        let (n, _) = tokio::time::timeout(WAIT, phone.recv_from(&mut buf))
            .await
            .expect("RTP in time")
            .unwrap();
        buf[..n].to_vec()
    }

    /// A started application call and everything around it.
    struct Rig {
        dir: std::path::PathBuf,
        alloc: PortAllocator,
        phone: tokio::net::UdpSocket,
        /// The INVITE's and an INFO's server transactions.
        txs: Vec<ServerTxId>,
        engine: mpsc::Receiver<Input>,
        call_tx: crate::call_task::CallTx,
        drv: DriverChannels,
        task: JoinHandle<()>,
        /// The call's relay, not kept alive by the test.
        relay: std::sync::Weak<trunkd_media::RelayHandle<QualityObserver>>,
    }

    /// Waits until `relay` has `n` taps open (an action listening).
    async fn taps_open(
        relay: &std::sync::Weak<trunkd_media::RelayHandle<QualityObserver>>,
        n: usize,
    ) {
        for _ in 0..300 {
            let open = match relay.upgrade() {
                Some(r) => r.stats().await.map_or(0, |s| s.taps.open),
                None => 0,
            };
            if open == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} taps never opened");
    }

    async fn rig(port_base: u16, tag: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("trunkd-app-{tag}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let config = crate::engine::sim::config(&dir, "", "");
        let tls = crate::tls::TlsConfigs::load(&Default::default()).unwrap();
        let shared = Arc::new(Shared::new(config, tls));
        let alloc = PortAllocator::new(port_base, port_base + 99).unwrap();
        let (media_tx, media_rx) = trunkd_media::media_events();
        let (anchor, relay) = crate::media_anchor::RelayAnchor::start(
            &alloc,
            LO,
            LO,
            RelayConfig {
                inactivity_timeout: None,
                ..Default::default()
            },
            SrtpPolicy::default(),
            media_tx,
            None,
        )
        .unwrap();
        let (answerer, answered) = crate::media_anchor::AppAnchor::new(anchor, 5);
        let phone = tokio::net::UdpSocket::bind((LO, 0)).await.unwrap();
        let phone_port = phone.local_addr().unwrap().port();
        let inv = invite(phone_port);
        let txs = server_txs(&[&inv, &info("x", '7')]);
        let new = NewUasCall {
            seed: 11,
            now: Instant::now(),
            wall: SystemTime::now(),
            local: LocalAddrs {
                udp: Some("127.0.0.1:5060".parse().unwrap()),
                tcp: None,
                tls: None,
                advertised: None,
            },
            invite: inv,
            invite_tx: txs[0],
            a_dest: Peer::udp("127.0.0.1:5099".parse().unwrap()),
            contact_feature: None,
            answerer: Box::new(answerer),
        };
        let (engine_tx, engine) = mpsc::channel(64);
        let (call_tx, call_rx) = crate::call_task::call_queue();
        let (app, drv) = channels();
        let ctx = AppContext {
            key: 1,
            transaction_id: TransactionId::from_random_bytes([3; 16]),
            sma_id: "sma-ivr".parse().unwrap(),
            rule_id: "rule-1".parse().unwrap(),
            config: shared.config(),
            engine: engine_tx,
            shared: shared.clone(),
            relay: relay.clone(),
            media_ip: "127.0.0.1".parse().unwrap(),
            answered,
            media_events: media_rx,
            ports: alloc.clone(),
            driver: app,
            seed: 99,
            call_id: "app-call-1".into(),
            source_number: "+14155550123".into(),
            destination_number: "+12065550150".into(),
            outbound: false,
        };
        let weak = Arc::downgrade(&relay);
        drop(relay);
        let task = tokio::spawn(run(ctx, new, call_rx));
        Rig {
            relay: weak,
            dir,
            alloc,
            phone,
            txs,
            engine,
            call_tx,
            drv,
            task,
        }
    }

    /// The whole application call: answered 200 with the sendrecv answer,
    /// a prompt the phone hears as sent (within G.711), digits "12#" over
    /// RFC 4733 collected as "12", an INFO digit reported, the phone's audio
    /// recorded exactly, and the application's Hangup a BYE.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_application_call_plays_listens_records_and_hangs_up() {
        let Rig {
            dir,
            alloc,
            phone,
            txs,
            mut engine,
            call_tx,
            mut drv,
            task,
            relay,
        } = rig(31600, "full").await;

        // Answer: 200 with trunkd's sendrecv SDP on its A-side port.
        drv.actions.send(AppAction::Answer).await.unwrap();
        let CallOutput::SendResponse { response, .. } = next_out(&mut engine).await else {
            panic!("no 200");
        };
        assert_eq!(response.status.as_u16(), 200);
        let sdp = String::from_utf8_lossy(&response.body).into_owned();
        let a_port: u16 = sdp
            .split("m=audio ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        assert!(
            sdp.ends_with(&format!(
                "m=audio {a_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
            )),
            "{sdp}"
        );
        let to_tag = response
            .headers
            .get("To")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .and_then(|t| t.split("tag=").nth(1).map(str::to_owned))
            .unwrap();
        assert_eq!(next_event(&mut drv).await, AppEvent::Answered);
        let trunkd: SocketAddr = (LO, a_port).into();

        // PlayAudio: five packets the phone decodes to the prompt.
        let prompt: Vec<i16> = (0..800).map(|i| ((i * 91) % 4000 - 2000) as i16).collect();
        drv.actions
            .send(AppAction::PlayAudio {
                samples: prompt.clone().into(),
                repeat: 1,
                terminators: vec!['#'],
            })
            .await
            .unwrap();
        let mut heard = Vec::new();
        for _ in 0..5 {
            let p = recv_rtp(&phone).await;
            let p = parse_rtp(&p).unwrap();
            assert_eq!(p.payload_type, 0);
            G711::Pcmu.decode_into(p.payload, &mut heard);
        }
        let mut expected = Vec::new();
        let mut encoded = Vec::new();
        G711::Pcmu.encode_into(&prompt, &mut encoded);
        G711::Pcmu.decode_into(&encoded, &mut expected);
        assert_eq!(heard, expected);
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::ActionSucceeded {
                action: "PlayAudio",
                data: ActionData::None
            }
        );

        // PlayAudioAndGetDigits: the phone presses 1, 2, # once the
        // prompt is heard.
        drv.actions
            .send(AppAction::PlayAudioAndGetDigits {
                samples: prompt.clone().into(),
                failure_samples: None,
                attempts: 1,
                digits: DigitCollection {
                    min_digits: 1,
                    max_digits: 5,
                    terminators: vec!['#'],
                    timeout: Duration::from_secs(2),
                },
                regex: None,
            })
            .await
            .unwrap();
        recv_rtp(&phone).await;
        let mut cont = RtpContinuity {
            ssrc: 0xFACE,
            next_seq: 1,
            next_ts: 1000,
        };
        for c in ['1', '2', '#'] {
            let mut config = DtmfSendConfig::new(101, cont);
            config.interval = Duration::from_millis(20);
            let mut s = DtmfSender::new(DtmfDigit::from_char(c).unwrap(), config);
            send_paced(&phone, trunkd, &mut s).await.unwrap();
            cont = s.continuity();
        }
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::ActionSucceeded {
                action: "PlayAudioAndGetDigits",
                data: ActionData::Digits("12".into())
            }
        );

        // An INFO digit while no action listens: answered 200, reported.
        call_tx
            .try_send(Box::new(CallInput::Request {
                leg: Leg::A,
                tx: txs[1],
                request: info(&to_tag, '7'),
            }))
            .unwrap();
        let CallOutput::SendResponse { response, .. } = next_out(&mut engine).await else {
            panic!("no answer to the INFO");
        };
        assert_eq!(response.status.as_u16(), 200);
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::Digits { digits: "7".into() }
        );

        // RecordAudio until '#': the WAV holds what the phone sent.
        let path = dir.join("rec").join("caller.wav");
        drv.actions
            .send(AppAction::RecordAudio {
                path: path.clone(),
                max_duration: Duration::from_secs(5),
                terminators: vec!['#'],
                silence: None,
            })
            .await
            .unwrap();
        // The digit listener's tap and the recording's.
        taps_open(&relay, 2).await;
        let mut sent = Vec::new();
        for i in 0..10u16 {
            let payload: Vec<u8> = (0..160u16).map(|j| (j * 3 + i * 7) as u8).collect();
            G711::Pcmu.decode_into(&payload, &mut sent);
            let mut p = Vec::new();
            write_rtp_header(
                &mut p,
                i == 0,
                0,
                cont.next_seq.wrapping_add(i),
                cont.next_ts + 160 * u32::from(i),
                0xFACE,
            );
            p.extend_from_slice(&payload);
            phone.send_to(&p, trunkd).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut config = DtmfSendConfig::new(
            101,
            RtpContinuity {
                ssrc: 0xFACE,
                next_seq: cont.next_seq.wrapping_add(10),
                next_ts: cont.next_ts + 1600,
            },
        );
        config.interval = Duration::from_millis(20);
        let mut s = DtmfSender::new(DtmfDigit::from_char('#').unwrap(), config);
        send_paced(&phone, trunkd, &mut s).await.unwrap();
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::ActionSucceeded {
                action: "RecordAudio",
                data: ActionData::Recording {
                    path: path.clone(),
                    duration: Duration::from_millis(200),
                    terminator: Some('#'),
                }
            }
        );
        let recorded = trunkd_media::endpoint::wav::read_wav_file_8k(&path).unwrap();
        assert_eq!(recorded, sent);

        // SendDigits: the phone gets RFC 4733 events for 5 on type 101,
        // ending with end packets (leftover prompt packets skipped).
        drv.actions
            .send(AppAction::SendDigits {
                digits: "5".into(),
                tone_duration: Duration::from_millis(100),
            })
            .await
            .unwrap();
        let mut events = Vec::new();
        while events.last().is_none_or(|e: &(u8, bool)| !e.1) {
            let p = recv_rtp(&phone).await;
            let p = parse_rtp(&p).unwrap();
            if p.payload_type == 101 {
                events.push((p.payload[0], p.payload[1] & 0x80 != 0));
            }
        }
        assert!(events.iter().all(|e| e.0 == 5), "{events:?}");
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::ActionSucceeded {
                action: "SendDigits",
                data: ActionData::None
            }
        );

        // Hangup: trunkd's BYE, the last event, the task done.
        drv.actions
            .send(AppAction::Hangup {
                sip_response_code: 480,
            })
            .await
            .unwrap();
        let CallOutput::SendRequest { request, .. } = next_out(&mut engine).await else {
            panic!("no BYE");
        };
        assert_eq!(request.method, Method::Bye);
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::Hangup {
                by: HangupBy::Application
            }
        );
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!(alloc.available(), alloc.capacity(), "ports returned");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A media action before any Answer answers first (the managed
    /// service's implicit answer); too few digits fail after the failure
    /// prompt and the retry; the caller's BYE ends the running
    /// action and the call: the driver's last event is Hangup by the
    /// caller, and the task ends with its ports returned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_media_action_answers_implicitly_and_the_callers_bye_ends_the_call() {
        let Rig {
            dir,
            alloc,
            phone,
            txs,
            mut engine,
            call_tx,
            mut drv,
            task,
            ..
        } = rig(31700, "bye").await;
        // No key pressed: prompt, failure prompt, prompt again, then the
        // action fails.
        let (prompt, failure) = (vec![1000i16; 160], vec![-3000i16; 160]);
        drv.actions
            .send(AppAction::PlayAudioAndGetDigits {
                samples: prompt.into(),
                failure_samples: Some(failure.into()),
                attempts: 2,
                digits: DigitCollection {
                    min_digits: 1,
                    max_digits: 4,
                    terminators: vec!['#'],
                    timeout: Duration::from_millis(300),
                },
                regex: None,
            })
            .await
            .unwrap();
        let CallOutput::SendResponse { response, .. } = next_out(&mut engine).await else {
            panic!("no 200");
        };
        assert_eq!(response.status.as_u16(), 200);
        assert_eq!(next_event(&mut drv).await, AppEvent::Answered);
        let mut heard = Vec::new();
        for _ in 0..3 {
            let p = recv_rtp(&phone).await;
            heard.push(parse_rtp(&p).unwrap().payload[0]);
        }
        let (p, f) = (G711::Pcmu.encode(1000), G711::Pcmu.encode(-3000));
        assert_eq!(heard, [p, f, p]);
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::ActionFailed {
                action: "PlayAudioAndGetDigits",
                error_type: "InvalidDigitsReceived",
                message: "0 digits received, at least 1 expected".into(),
            }
        );
        drv.actions
            .send(AppAction::Pause {
                duration: Duration::from_secs(60),
            })
            .await
            .unwrap();
        let to_tag = response
            .headers
            .get("To")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .and_then(|t| t.split("tag=").nth(1).map(str::to_owned))
            .unwrap();
        let bye = info(&to_tag, '1').to_bytes().to_vec();
        let bye = String::from_utf8_lossy(&bye)
            .replace("INFO sip:", "BYE sip:")
            .replace("CSeq: 2 INFO", "CSeq: 3 BYE");
        call_tx
            .try_send(Box::new(CallInput::Request {
                leg: Leg::A,
                tx: txs[1],
                request: request(&bye),
            }))
            .unwrap();
        let CallOutput::SendResponse { response, .. } = next_out(&mut engine).await else {
            panic!("no answer to the BYE");
        };
        assert_eq!(response.status.as_u16(), 200);
        assert_eq!(
            next_event(&mut drv).await,
            AppEvent::Hangup {
                by: HangupBy::Caller
            }
        );
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!(alloc.available(), alloc.capacity(), "ports returned");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// PlayAudioAndGetDigits' rules: digits up to `max_digits`, a
    /// terminator ends and is not kept, fewer than `min_digits` fails.
    #[test]
    fn digit_collection_stops_at_max_or_a_terminator_and_checks_min() {
        let spec = DigitCollection {
            min_digits: 2,
            max_digits: 3,
            terminators: vec!['#', '*'],
            timeout: Duration::from_secs(1),
        };
        let run = |keys: &str| {
            let mut got = Collected::default();
            for c in keys.chars() {
                if got.done(&spec) {
                    break;
                }
                got.take(&spec, c);
            }
            let action = AppAction::CollectDigits {
                digits: spec.clone(),
            };
            got.into_event(&action, &spec)
        };
        let ok = |d: &str| {
            Some(AppEvent::ActionSucceeded {
                action: "CollectDigits",
                data: ActionData::Digits(d.into()),
            })
        };
        assert_eq!(run("12#9"), ok("12"));
        assert_eq!(run("12345"), ok("123"));
        assert_eq!(
            run("4*"),
            Some(AppEvent::ActionFailed {
                action: "CollectDigits",
                error_type: "InvalidDigitsReceived",
                message: "1 digits received, at least 2 expected".into(),
            })
        );
    }
}
