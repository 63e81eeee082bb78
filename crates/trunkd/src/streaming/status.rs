//! The streaming status events of a bridged call (SPEC §5.4,
//! docs/events.md) to the VC's `notification_targets`: STARTED for each
//! stream (sink × leg) when streaming starts, UPDATED for each on a
//! re-INVITE (with `updateHeaders`), then ENDED, or FAILED with the reason
//! for a stream given up.

use std::collections::BTreeMap;
use std::sync::Arc;

use trunkd_config::Config;
use trunkd_core::events::envelope::{
    iso8601_seconds, SdpRef, StreamingDetail, StreamingStatus, STREAMING_STATUS,
};

use super::{CallInfo, LegName};
use crate::daemon::Shared;

pub(crate) struct StatusEvents {
    info: CallInfo,
    shared: Arc<Shared>,
    config: Arc<Config>,
    /// (leg, streamArn) of each stream, in stream order.
    streams: Vec<(LegName, String)>,
    start: String,
}

impl StatusEvents {
    pub(crate) fn new(info: &CallInfo, shared: Arc<Shared>, config: Arc<Config>) -> Self {
        StatusEvents {
            info: info.clone(),
            shared,
            config,
            streams: Vec::new(),
            start: iso8601_seconds(unix_ms()),
        }
    }

    pub(crate) fn add(&mut self, leg: LegName, arn: String) {
        self.streams.push((leg, arn));
    }

    pub(crate) fn started(&self) {
        for i in 0..self.streams.len() {
            self.emit(i, StreamingStatus::Started, None, None);
        }
    }

    pub(crate) fn updated(&self, headers: &BTreeMap<String, String>) {
        for i in 0..self.streams.len() {
            self.emit(i, StreamingStatus::Updated, None, Some(headers));
        }
    }

    pub(crate) fn ended(&self, i: usize) {
        self.emit(i, StreamingStatus::Ended, None, None);
    }

    pub(crate) fn failed(&self, i: usize, reason: &str) {
        self.emit(i, StreamingStatus::Failed, Some(reason), None);
    }

    /// The event's detail (the envelope is the event task's).
    pub(crate) fn detail(
        &self,
        i: usize,
        status: StreamingStatus,
        failure: Option<&str>,
        update_headers: Option<&BTreeMap<String, String>>,
    ) -> Option<serde_json::Value> {
        let (leg, arn) = self.streams.get(i)?;
        let now = iso8601_seconds(unix_ms());
        let detail = StreamingDetail {
            streaming_status: status,
            call_id: self.info.call_id.clone(),
            direction: self.info.direction_str().to_owned(),
            from_number: self.info.from.clone(),
            to_number: self.info.to.clone(),
            invite_headers: self.info.invite.headers.clone(),
            // A stereo stream carries the caller too (left).
            is_caller: *leg != LegName::Callee,
            media_type: "audio/L16",
            sdp: SdpRef {
                media_index: 0,
                media_label: None,
            },
            siprec_metadata: None,
            start_time: self.start.clone(),
            end_time: matches!(status, StreamingStatus::Ended).then(|| now.clone()),
            fail_time: matches!(status, StreamingStatus::Failed).then(|| now.clone()),
            failure_reason: failure.map(str::to_owned),
            stream_arn: arn.clone(),
            transaction_id: self.info.transaction_id.to_string(),
            voice_connector_id: self.info.vc.to_string(),
            version: "0",
        };
        let mut value = detail.to_value();
        if let (Some(h), Some(obj)) = (update_headers, value.as_object_mut()) {
            obj.insert(
                "updateHeaders".to_owned(),
                serde_json::to_value(h).unwrap_or_default(),
            );
        }
        Some(value)
    }

    fn emit(
        &self,
        i: usize,
        status: StreamingStatus,
        failure: Option<&str>,
        update_headers: Option<&BTreeMap<String, String>>,
    ) {
        if let Some(detail) = self.detail(i, status, failure, update_headers) {
            self.shared.events.emit_vc_event(
                &self.config,
                &self.info.vc,
                &self.info.transaction_id.to_string(),
                STREAMING_STATUS,
                detail,
            );
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
