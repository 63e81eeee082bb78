//! The task that owns one call: it runs the sans-IO `trunkd_b2bua::Call`,
//! passes its outputs to the engine, and when the call ends writes its CDR
//! and counts it. Everything the call spawned ends with this task.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{info, info_span, Instrument};
use trunkd_b2bua::{Call, CallEvent, CallInput, NewCall};
use trunkd_config::Config;
use trunkd_core::cdr::{CallFacts, CallOutcome, Direction};
use trunkd_core::{Route, TransactionId, VcId};

use crate::daemon::Shared;
use crate::engine::{EngineTx, Input};

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
}

pub async fn run(ctx: CallContext, new: NewCall, rx: mpsc::Receiver<CallInput>) {
    let span = info_span!("call", txn = %ctx.transaction_id, vc = ctx.vc_id.as_ref().map(|v| v.as_str()).unwrap_or("-"));
    drive(ctx, new, rx).instrument(span).await
}

async fn drive(ctx: CallContext, new: NewCall, mut rx: mpsc::Receiver<CallInput>) {
    let start = new.wall;
    let direction_label = match ctx.direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let metrics = &ctx.shared.metrics;
    let active = metrics.calls_active(ctx.vc_id.as_ref(), &ctx.config.resources, direction_label);
    active.inc();
    let mut call = Call::new(new);
    let a_call_id = String::from_utf8_lossy(call.a_call_id()).into_owned();
    loop {
        while let Some(out) = call.poll_output() {
            match out {
                trunkd_b2bua::CallOutput::Event(ev) => match ev {
                    CallEvent::HopFailed { hop, status } => {
                        info!(hop, status, "hop failed");
                        if let Some(route) = ctx.plan_routes.get(hop) {
                            let _ = ctx
                                .engine
                                .send(Input::HopOutcome {
                                    route: route.clone(),
                                    ok: false,
                                })
                                .await;
                        }
                    }
                    CallEvent::Answered { hop } => {
                        info!(hop, "answered");
                        metrics.answered(
                            ctx.vc_id.as_ref(),
                            &ctx.config.resources,
                            direction_label,
                        );
                        if let Some(route) = ctx.plan_routes.get(hop) {
                            let _ = ctx
                                .engine
                                .send(Input::HopOutcome {
                                    route: route.clone(),
                                    ok: true,
                                })
                                .await;
                        }
                    }
                    CallEvent::Ended(end) => {
                        info!(outcome = ?end.outcome, "call ended");
                        if !matches!(end.outcome, CallOutcome::Answered) {
                            metrics.failed(
                                ctx.vc_id.as_ref(),
                                &ctx.config.resources,
                                direction_label,
                            );
                        }
                        if let Some(vc_id) = &ctx.vc_id {
                            let facts = CallFacts {
                                transaction_id: ctx.transaction_id,
                                call_id: &a_call_id,
                                voice_connector_id: vc_id,
                                direction: ctx.direction,
                                source_phone_number: &ctx.source_number,
                                destination_phone_number: &ctx.destination_number,
                                sip_auth_user: ctx.auth_user.as_deref(),
                                start,
                                answered: end.answered,
                                end: end.end,
                                outcome: end.outcome.clone(),
                                streaming: false,
                            };
                            crate::records::write_cdr(&ctx.config, &facts, metrics);
                        }
                    }
                },
                out => {
                    if ctx
                        .engine
                        .send(Input::FromCall { call: ctx.key, out })
                        .await
                        .is_err()
                    {
                        // The engine is gone: the daemon is stopping.
                        active.dec();
                        return;
                    }
                }
            }
        }
        if call.is_ended() {
            break;
        }
        let deadline = call.poll_timeout();
        tokio::select! {
            input = rx.recv() => {
                let input = input.unwrap_or(CallInput::Hangup);
                call.handle(Instant::now(), input);
            }
            _ = sleep_until(deadline) => call.handle_timeout(Instant::now()),
        }
    }
    active.dec();
    let _ = ctx.engine.send(Input::CallDone { call: ctx.key }).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
