//! The task that owns one call: it runs the sans-IO `trunkd_b2bua::Call`,
//! passes its outputs to the engine, and when the call ends writes its CDR
//! and counts it. Everything the call spawned ends with this task.

use crate::deadline::sleep_until;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tracing::{info, info_span, Instrument};
use trunkd_b2bua::{Call, CallEvent, CallInput, NewCall};
use trunkd_config::Config;
use trunkd_core::cdr::{CallFacts, CallOutcome, Direction, StreamFacts, StreamOutcome};
use trunkd_core::quality::{CallIdentity, MetricsTicker, SideStats};
use trunkd_core::{Route, TransactionId, VcId};

use crate::daemon::Shared;
use crate::engine::{EngineTx, Input};
use crate::media_lines;
use crate::streaming::{self, CallStream, StreamPlan};

/// What the call task knows beyond the state machine: for records and
/// metrics.
pub struct CallContext {
    pub key: u64,
    pub transaction_id: TransactionId,
    pub direction: Direction,
    pub vc_id: Option<VcId>,
    pub auth_user: Option<String>,
    pub source_number: String,
    pub destination_number: String,
    /// The snapshot the call started with: it keeps it to the end.
    pub config: Arc<Config>,
    pub engine: EngineTx,
    pub shared: Arc<Shared>,
    /// The route of each hop of the plan, for route health.
    pub plan_routes: Vec<Route>,
    /// The VC of each hop of an origination plan (a group's failover moves
    /// the call to another VC); `None` for carrier hops.
    pub plan_vcs: Vec<Option<VcId>>,
    /// The call's media relay (shared with the call's media anchor).
    pub relay: crate::media_anchor::Relay,
    pub media_events: trunkd_media::MediaEvents,
    /// For the media-ports-in-use gauge once the call's ports are back.
    pub ports: trunkd_media::PortAllocator,
    /// `[hep]` RTCP export of the call: told the B leg's Call-ID.
    pub rtcp_export: Option<Arc<crate::hep::RtcpExport>>,
}

/// A call task's input queue: boxed inputs (the engine boxes them anyway,
/// `EngineEvent::ToCall`) in a [`trunkd_media::mailbox`], which allocates
/// nothing per call but a small shared cell (a tokio channel cost ~0.8 KiB
/// per call up front, more with inline ~280-byte slots; issue 15).
pub type CallTx = trunkd_media::MailboxSender<Box<CallInput>>;
/// The receiving end of [`CallTx`].
pub type CallRx = trunkd_media::MailboxReceiver<Box<CallInput>>;

/// Inputs a call task may have waiting before the engine drops more: a
/// call task that far behind is stuck, and the peers retransmit.
const CALL_QUEUE: usize = 64;

/// A call task's input queue.
pub fn call_queue() -> (CallTx, CallRx) {
    trunkd_media::mailbox(CALL_QUEUE)
}

/// The call task's future.
///
/// Not an `async fn`: an async fn keeps its arguments in its future for
/// its whole life, so an `async fn run` awaiting `drive` held the context
/// and the `NewCall` (with the A leg's INVITE) once in `run`, once as
/// `drive`'s arguments and once as `drive`'s locals. Here `drive` gets them
/// boxed: one heap copy each, for as long as they are used (issue 15,
/// docs/performance.md "Memory per call, second pass").
pub fn run(ctx: CallContext, new: NewCall, rx: CallRx) -> impl Future<Output = ()> + Send {
    let span = info_span!("call", transaction_id = %ctx.transaction_id, vc = ctx.vc_id.as_ref().map(|v| v.as_str()).unwrap_or("-"));
    drive(Box::new(ctx), Box::new(new), rx).instrument(span)
}

async fn drive(mut ctx: Box<CallContext>, new: Box<NewCall>, mut rx: CallRx) {
    let start = new.wall;
    let direction_label = match ctx.direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let metrics = &ctx.shared.metrics;
    // The call is counted under the VC of the hop being tried: a group
    // call that fails over to its next VC moves there (SPEC §2.2).
    if let Some(Some(first)) = ctx.plan_vcs.first() {
        ctx.vc_id = Some(first.clone());
    }
    let mut active =
        metrics.calls_active(ctx.vc_id.as_ref(), &ctx.config.resources, direction_label);
    active.inc();
    let start_instant = new.now;
    // Only for calls that may stream: the INVITE goes into the call.
    let invite_facts = (ctx.plan_vcs.iter().flatten().chain(ctx.vc_id.iter()))
        .any(|vc| StreamPlan::of(&ctx.config, Some(vc)).is_some())
        .then(|| streaming::InviteFacts::of(&new.invite));
    // Boxed: ~340 bytes in every call's future for the few calls streamed.
    let mut stream: Option<Box<CallStream>> = None;
    let mut stream_end: Option<trunkd_b2bua::CallEnd> = None;
    // Moving out of a box frees its memory only when the box goes out of
    // scope: `new` is consumed here, not kept (~600 B) for the whole call.
    let mut call = {
        let new = new;
        Call::new(*new)
    };
    let a_call_id = String::from_utf8_lossy(call.a_call_id()).into_owned();
    let mut media_events = std::mem::take(&mut ctx.media_events);
    let mut ticker = MetricsTicker::new(start_instant, Duration::from_secs(60));
    // The last minute's stats (~0.5 KiB), for answered calls only.
    let mut previous: Option<Box<Option<(SideStats, SideStats)>>> = None;
    let mut dropped = trunkd_media::DropCounters::default();
    let mut answered_hop: Option<usize> = None;
    loop {
        loop {
            // What an output leaves to do is decided first and the output
            // dropped: a value alive across an `.await` takes room in the
            // task's future for the whole call (two ~300-byte outputs did),
            // so only the small `FollowUp` crosses it.
            let follow_up = {
                let Some(out) = call.poll_output() else {
                    break;
                };
                match out {
                    trunkd_b2bua::CallOutput::Event(ev) => match ev {
                        CallEvent::HopFailed { hop, status } => {
                            info!(hop, status, "hop failed");
                            if let Some(Some(next)) = ctx.plan_vcs.get(hop + 1) {
                                if ctx.vc_id.as_ref() != Some(next) {
                                    info!(vc = %next, "failing over to another voice connector");
                                    active.dec();
                                    ctx.vc_id = Some(next.clone());
                                    active = metrics.calls_active(
                                        ctx.vc_id.as_ref(),
                                        &ctx.config.resources,
                                        direction_label,
                                    );
                                    active.inc();
                                }
                            }
                            hop_outcome(&ctx, hop, false)
                        }
                        CallEvent::Answered { hop } => {
                            info!(hop, "answered");
                            answered_hop = Some(hop);
                            let plan = StreamPlan::of(&ctx.config, ctx.vc_id.as_ref())
                                .filter(|_| invite_facts.is_some());
                            if let Some(vc_id) = &ctx.vc_id {
                                let now = std::time::SystemTime::now();
                                let so_far = trunkd_b2bua::CallEnd {
                                    outcome: CallOutcome::Answered,
                                    answered: Some(now),
                                    end: now,
                                    hop: Some(hop),
                                };
                                // A crash mid-call leaves a CDR that says
                                // whether the call was being streamed.
                                let facts =
                                    facts(&ctx, vc_id, &a_call_id, start, &so_far, plan.is_some());
                                ctx.shared.call_journal.answered(&facts, now);
                            }
                            metrics.answered(
                                ctx.vc_id.as_ref(),
                                &ctx.config.resources,
                                direction_label,
                            );
                            // SPEC §2.6: the call's audio to the VC's sinks,
                            // with the settings of the call's config snapshot.
                            if let (Some(plan), Some(vc), Some(facts)) =
                                (plan, &ctx.vc_id, &invite_facts)
                            {
                                let info = streaming::CallInfo {
                                    transaction_id: ctx.transaction_id,
                                    vc: vc.clone(),
                                    call_id: a_call_id.clone(),
                                    direction: ctx.direction,
                                    from: ctx.source_number.clone(),
                                    to: ctx.destination_number.clone(),
                                    invite: facts.clone(),
                                };
                                stream = CallStream::start(
                                    &plan,
                                    info,
                                    &ctx.relay,
                                    ctx.shared.clone(),
                                    ctx.config.clone(),
                                )
                                .map(Box::new);
                            }
                            hop_outcome(&ctx, hop, true)
                        }
                        // A bridged call relays INFO; only a UasCall reports it.
                        CallEvent::Info { .. } => FollowUp::Nothing,
                        CallEvent::Ended(end) => FollowUp::Ended(end),
                    },
                    out => {
                        send_to_engine(&ctx.engine, Input::FromCall { call: ctx.key, out }, true)
                    }
                }
            };
            match follow_up {
                FollowUp::Nothing => {}
                FollowUp::Send { wait, vital } => {
                    if wait.await.is_err() && vital {
                        // The engine is gone: the daemon is stopping.
                        active.dec();
                        return;
                    }
                }
                FollowUp::Gone => {
                    active.dec();
                    return;
                }
                FollowUp::Ended(end) => {
                    info!(outcome = ?end.outcome, "call ended");
                    if answered_hop.is_some() && ticker.finish() {
                        Box::pin(media_report(
                            &ctx,
                            answered_hop,
                            previous.get_or_insert_with(Box::default),
                            &mut dropped,
                        ))
                        .await;
                    }
                    if !matches!(end.outcome, CallOutcome::Answered) {
                        metrics.failed(ctx.vc_id.as_ref(), &ctx.config.resources, direction_label);
                    }
                    if stream.is_some() {
                        // The records wait for the streams to close: the
                        // SDR is written first (SPEC §5.2).
                        stream_end = Some(end);
                    } else if let Some(vc_id) = &ctx.vc_id {
                        let facts = facts(&ctx, vc_id, &a_call_id, start, &end, false);
                        let then = answered_hop.is_some().then(|| {
                            crate::records::writer::Then::JournalEnded(
                                ctx.shared.call_journal.clone(),
                                ctx.transaction_id,
                            )
                        });
                        crate::records::write_cdr(&ctx.config, &facts, metrics, then);
                    }
                }
            }
        }
        if call.is_ended() {
            break;
        }
        if let Some(export) = &ctx.rtcp_export {
            if let Some(id) = call.b_call_id() {
                export.set_call_id(trunkd_media::Leg::B, id.clone());
                ctx.rtcp_export = None;
            }
        }
        let deadline = call.poll_timeout();
        let tick = if answered_hop.is_some() {
            ticker.poll_timeout()
        } else {
            None
        };
        // One timer for both: each `Sleep` is ~110 bytes of the future.
        let wake = match (deadline, tick) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (d, t) => d.or(t),
        };
        tokio::select! {
            input = rx.recv() => {
                let input = input.map_or(CallInput::Hangup, |b| *b);
                if let (Some(s), CallInput::Request { request, .. }) = (&stream, &input) {
                    if request.method == trunkd_sip::Method::Invite {
                        // A re-INVITE (hold, resume, new SDP): the streams
                        // go on across it.
                        s.updated(request);
                    }
                }
                call.handle(Instant::now(), input);
            }
            _ = sleep_until(wake) => {
                let now = Instant::now();
                if deadline.is_some_and(|d| d <= now) {
                    call.handle_timeout(now);
                }
                if tick.is_some_and(|t| t <= now) && ticker.handle_timeout(now) {
                    let previous = previous.get_or_insert_with(Box::default);
                    Box::pin(media_report(&ctx, answered_hop, previous, &mut dropped)).await;
                }
            }
            Some(event) = media_events.recv() => {
                let trunkd_media::MediaEvent::Inactive { idle, .. } = event;
                info!(idle_s = idle.as_secs(), "no media either way; hanging up");
                metrics.media_inactivity_hangups.inc();
                call.handle(Instant::now(), CallInput::Hangup);
            }
        }
    }
    if stream.is_some() {
        // What the tap lost is silence in the streams: counted.
        if let Ok(stats) = Box::pin(ctx.relay.stats()).await {
            metrics.streaming.tap_dropped.inc_by(stats.taps.dropped);
        }
    }
    // The call's relay stops and its ports return to the pool when the last
    // handle (ours and the call's anchor) is dropped.
    drop(call);
    // Ours is the last handle now (the admin API's is weak): stop the relay
    // and wait until its sockets are closed and its ports are back in the
    // pool.
    if Arc::strong_count(&ctx.relay) == 1 {
        let _ = Box::pin(ctx.relay.stop()).await;
    }
    metrics
        .media_ports_in_use
        .set((ctx.ports.capacity() - ctx.ports.available()) as i64);
    if let Some(s) = stream {
        let result = Box::pin(s.finish()).await;
        if let (Some(end), Some(vc_id)) = (&stream_end, &ctx.vc_id) {
            let facts = facts(&ctx, vc_id, &a_call_id, start, end, true);
            write_streamed_records(&ctx.config, &ctx.shared, &facts, &result);
            Box::pin(streaming::store_files(
                &ctx.config,
                vc_id,
                start,
                &result.files,
                &ctx.shared,
            ))
            .await;
        }
        if result.retention_hours == 0 {
            streaming::delete_files(&result.files, &ctx.shared);
        }
    }
    active.dec();
    if let FollowUp::Send { wait, .. } =
        send_to_engine(&ctx.engine, Input::CallDone { call: ctx.key }, true)
    {
        let _ = wait.await;
    }
}

/// The facts of the call for its CDR and journal entry (SPEC §5.1), as of
/// `end` (an answered call's journal entry: answered and ended now).
fn facts<'a>(
    ctx: &'a CallContext,
    vc: &'a VcId,
    call_id: &'a str,
    start: std::time::SystemTime,
    end: &trunkd_b2bua::CallEnd,
    streaming: bool,
) -> CallFacts<'a> {
    CallFacts {
        transaction_id: ctx.transaction_id,
        call_id,
        voice_connector_id: vc,
        direction: ctx.direction,
        source_phone_number: &ctx.source_number,
        destination_phone_number: &ctx.destination_number,
        sip_auth_user: ctx.auth_user.as_deref(),
        start,
        answered: end.answered,
        end: end.end,
        outcome: end.outcome.clone(),
        streaming,
    }
}

/// What a call output leaves `drive` to do once the output is gone.
enum FollowUp<'a> {
    Nothing,
    /// An input waiting for room in the engine's queue; `vital`: when the
    /// engine is gone the call task ends (the daemon is stopping).
    Send {
        wait: Pin<Box<dyn Future<Output = Result<(), SendError<Input>>> + Send + 'a>>,
        vital: bool,
    },
    /// The engine is gone, for a vital input.
    Gone,
    /// The call ended: its last media report, then its records.
    Ended(trunkd_b2bua::CallEnd),
}

/// Tells the engine how hop `hop` went (route health), if it has a route.
fn hop_outcome(ctx: &CallContext, hop: usize, ok: bool) -> FollowUp<'_> {
    match ctx.plan_routes.get(hop) {
        Some(route) => send_to_engine(
            &ctx.engine,
            Input::HopOutcome {
                route: route.clone(),
                ok,
            },
            false,
        ),
        None => FollowUp::Nothing,
    }
}

/// Sends `input` to the engine without a future when its queue has room;
/// `vital`: a gone engine ends the call task (otherwise the input is
/// dropped).
///
/// Every `.await` in `drive` is stored in the call task's future, which
/// lives as long as the call: an inline `Sender::send` future (the input
/// plus the semaphore wait) made every call's task larger. The usual case
/// is a free slot and needs no future at all; the rare wait is boxed. The
/// same goes for the other rare awaits in `drive` (end of call, streaming,
/// the minute's media report): they are `Box::pin`ned, so a call carries
/// only what it is waiting on now. docs/performance.md, "Issue 15: media".
fn send_to_engine(engine: &mpsc::Sender<Input>, input: Input, vital: bool) -> FollowUp<'_> {
    match engine.try_send(input) {
        Ok(()) => FollowUp::Nothing,
        Err(TrySendError::Full(input)) => FollowUp::Send {
            wait: Box::pin(engine.send(input)),
            vital,
        },
        Err(TrySendError::Closed(_)) if vital => FollowUp::Gone,
        Err(TrySendError::Closed(_)) => FollowUp::Nothing,
    }
}

/// The records of a streamed call: its SDR (SPEC §5.2), then its CDR
/// (`facts`, with `Streaming: true`), so a reader that sees the CDR finds
/// the SDR.
fn write_streamed_records(
    config: &Config,
    shared: &Shared,
    facts: &CallFacts<'_>,
    result: &streaming::StreamResult,
) {
    let metrics = &shared.metrics;
    let outcome = match &result.failure {
        None => StreamOutcome::Succeeded,
        Some(reason) => StreamOutcome::Failed {
            reason: reason.clone(),
        },
    };
    let sfacts = StreamFacts {
        transaction_id: facts.transaction_id,
        call_id: facts.call_id,
        voice_connector_id: facts.voice_connector_id,
        start: result.start,
        end: facts.end,
        outcome,
    };
    crate::records::write_sdr(config, &sfacts, facts.start, metrics);
    let then = facts.answered.is_some().then(|| {
        crate::records::writer::Then::JournalEnded(
            shared.call_journal.clone(),
            facts.transaction_id,
        )
    });
    crate::records::write_cdr(config, facts, metrics, then);
}

/// Snapshots the relay and reports this minute (SPEC §5.3 line, Prometheus).
async fn media_report(
    ctx: &CallContext,
    hop: Option<usize>,
    previous: &mut Option<(SideStats, SideStats)>,
    dropped: &mut trunkd_media::DropCounters,
) {
    let Ok(stats) = ctx.relay.stats().await else {
        return;
    };
    let now = stats.a.dropped.plus(&stats.b.dropped);
    ctx.shared.metrics.count_media_drops(&now, dropped);
    *dropped = now;
    let sides = match ctx.direction {
        Direction::Outbound => media_lines::Sides {
            customer: trunkd_media::Leg::A,
            remote: trunkd_media::Leg::B,
        },
        Direction::Inbound => media_lines::Sides {
            customer: trunkd_media::Leg::B,
            remote: trunkd_media::Leg::A,
        },
    };
    let customer = media_lines::side(&stats, sides.customer);
    let remote = media_lines::side(&stats, sides.remote);
    let vc_id = ctx.vc_id.as_ref().map(|v| v.as_str()).unwrap_or("");
    let vc = ctx.config.resources.voice_connector(vc_id);
    let region = vc
        .map(|v| v.aws_region.as_str())
        .unwrap_or(&ctx.config.settings.daemon.region);
    let log_file = vc.filter(|v| v.logging.enable_media_metric_logs).map(|v| {
        ctx.config
            .settings
            .logging
            .directory
            .join("aws/ChimeVoiceConnectorLogs")
            .join(v.id.as_str())
    });
    let txn = ctx.transaction_id.to_string();
    let country = |n: &str| {
        trunkd_core::E164::parse_lenient(n)
            .ok()
            .and_then(trunkd_core::country::country_of)
    };
    // Countries are for the log line only: a libphonenumber parse costs
    // more than the rest of the report, so skip it when no line is written.
    let (from_c, to_c) = match log_file {
        Some(_) => (
            country(&ctx.source_number),
            country(&ctx.destination_number),
        ),
        None => (None, None),
    };
    let (from_c, to_c) = (from_c.map(|c| c.to_string()), to_c.map(|c| c.to_string()));
    let endpoint = hop
        .and_then(|h| ctx.plan_routes.get(h))
        .map(crate::metrics::route_endpoint)
        .unwrap_or_default();
    let lc = media_lines::LineContext {
        identity: CallIdentity {
            voice_connector_id: vc_id,
            call_id: &txn,
            from_sip_user: &ctx.source_number,
            from_country: from_c.as_deref(),
            to_sip_user: &ctx.destination_number,
            to_country: to_c.as_deref(),
            endpoint_id: &endpoint,
            aws_region: region,
        },
        log_file: log_file.as_deref(),
        metrics: &ctx.shared.metrics,
    };
    media_lines::report(&lc, &customer, &remote, previous);
}
