//! Calls in progress, as the admin API shows them (`GET /calls`,
//! `GET /calls/{transactionId}`, `DELETE /calls/{transactionId}`): the
//! engine shell registers each call it starts and removes it when the
//! call's task is done; a hang-up is the same `CallInput::Hangup` a
//! shutdown sends.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use trunkd_b2bua::CallInput;
use trunkd_core::cdr::Direction;
use trunkd_core::TransactionId;

use crate::engine::machine::CallKey;
use trunkd_media::QualityObserver;
use trunkd_media::RelayHandle;

/// One call in progress.
pub struct ActiveCall {
    pub transaction_id: TransactionId,
    /// The VC (or SIP media application id for application calls).
    pub owner: Option<String>,
    pub direction: Direction,
    /// `bridge`, `recording` or `application`.
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    pub started_wall: SystemTime,
    pub started: Instant,
    pub input: crate::call_task::CallTx,
    /// The call's media relay, for its current quality. Weak: the call's
    /// task stops the relay when it holds the last strong handle, so the
    /// registry must never keep it alive.
    pub relay: Option<Weak<RelayHandle<QualityObserver>>>,
}

/// The registry; bounded by the daemon's call cap (one entry per call).
#[derive(Default)]
pub struct ActiveCalls {
    calls: Mutex<HashMap<CallKey, ActiveCall>>,
}

/// What a read of the registry copies out (no lock held while the relays
/// are asked for their figures).
pub struct Snapshot {
    pub transaction_id: String,
    pub owner: Option<String>,
    pub direction: Direction,
    pub kind: &'static str,
    pub from: String,
    pub to: String,
    pub start_epoch_ms: u64,
    pub duration_seconds: u64,
    pub relay: Option<Weak<RelayHandle<QualityObserver>>>,
}

impl ActiveCalls {
    pub fn register(&self, key: CallKey, call: ActiveCall) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, call);
    }

    pub fn remove(&self, key: CallKey) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// Every call, oldest first.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let now = Instant::now();
        let guard = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Snapshot> = guard
            .values()
            .map(|c| Snapshot {
                transaction_id: c.transaction_id.to_string(),
                owner: c.owner.clone(),
                direction: c.direction,
                kind: c.kind,
                from: c.from.clone(),
                to: c.to.clone(),
                start_epoch_ms: c
                    .started_wall
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                duration_seconds: now.saturating_duration_since(c.started).as_secs(),
                relay: c.relay.clone(),
            })
            .collect();
        out.sort_by(|a, b| {
            a.start_epoch_ms
                .cmp(&b.start_epoch_ms)
                .then_with(|| a.transaction_id.cmp(&b.transaction_id))
        });
        out
    }

    /// Asks the call with this transaction id to hang up; `false` when no
    /// such call is in progress.
    pub fn hang_up(&self, transaction_id: &str) -> bool {
        let guard = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let Some(call) = guard
            .values()
            .find(|c| c.transaction_id.to_string() == transaction_id)
        else {
            return false;
        };
        // A full queue means the call is busy; it is asked again by the
        // operator, never waited for here.
        call.input.try_send(Box::new(CallInput::Hangup)).is_ok()
    }
}
