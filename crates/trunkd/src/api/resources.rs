//! Voice connectors, groups, SIP media applications, SIP rules, their
//! settings, termination health and route state, in the managed service's
//! shapes (PascalCase, one wrapper object per response).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use trunkd_config::edit::Section;
use trunkd_core::resources::{
    Assignment, Route, SipRuleTrigger, StreamingSink, VoiceConnector, VoiceConnectorGroup,
};

use super::{body_json, error, json_response, not_found, write_error};
use crate::daemon::{Shared, WriteError};

fn route_view(r: &Route) -> Value {
    json!({
        "Host": r.host.to_string(),
        "Port": r.port.get(),
        "Protocol": r.protocol.to_string(),
        "Priority": r.priority.get(),
        "Weight": r.weight.get(),
    })
}

pub(super) fn vc_view(vc: &VoiceConnector, domain: &str) -> Value {
    json!({
        "VoiceConnectorId": vc.id.as_str(),
        "Name": vc.name,
        "AwsRegion": vc.aws_region,
        "OutboundHostName": format!("{}.{domain}", vc.id.as_str()),
        "RequireEncryption": vc.require_encryption,
        "NetworkType": format!("{:?}", vc.network_type),
        "Tags": vc.tags,
    })
}

pub(super) fn group_view(g: &VoiceConnectorGroup) -> Value {
    json!({
        "VoiceConnectorGroupId": g.id.as_str(),
        "Name": g.name,
        "VoiceConnectorItems": g.voice_connector_items.iter().map(|i| json!({
            "VoiceConnectorId": i.voice_connector_id.as_str(),
            "Priority": i.priority.get(),
        })).collect::<Vec<_>>(),
        "Tags": g.tags,
    })
}

/// The VC `id` of the running snapshot, or the 404 to answer.
fn with_vc<T>(
    shared: &Shared,
    id: &str,
    f: impl FnOnce(&VoiceConnector, &trunkd_config::Config) -> T,
) -> Result<T, Response> {
    let config = shared.config();
    match config.resources.voice_connector(id) {
        Some(vc) => Ok(f(vc, &config)),
        None => Err(not_found(format!("no voice connector {id:?}"))),
    }
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

pub async fn list_vcs(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.config();
    let domain = &config.settings.daemon.outbound_host_domain;
    let vcs: Vec<Value> = config
        .resources
        .voice_connectors()
        .iter()
        .map(|vc| vc_view(vc, domain))
        .collect();
    ok(json!({ "VoiceConnectors": vcs }))
}

pub async fn get_vc(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    with_vc(&shared, &id, |vc, c| {
        ok(json!({"VoiceConnector": vc_view(vc, &c.settings.daemon.outbound_host_domain)}))
    })
    .unwrap_or_else(|r| r)
}

pub async fn get_termination(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    with_vc(&shared, &id, |vc, _| {
        let t = &vc.termination;
        ok(json!({"Termination": {
            "Disabled": t.disabled,
            "CpsLimit": t.cps_limit.get(),
            "DefaultPhoneNumber": t.default_phone_number.map(|n| n.to_string()),
            "CallingRegions": t.calling_regions.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "CidrAllowedList": t.cidr_allowed_list.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "Carriers": t.carriers.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            // Never the passwords: only who may authenticate.
            "Credentials": t.credentials.iter().map(|c| json!({"Username": c.username})).collect::<Vec<_>>(),
            "RequireClientCertificate": t.require_client_certificate,
        }}))
    })
    .unwrap_or_else(|r| r)
}

/// GetVoiceConnectorTerminationHealth: the last OPTIONS ping from the
/// customer's side, time and source.
pub async fn get_termination_health(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = with_vc(&shared, &id, |_, _| ()) {
        return r;
    }
    let health = shared.metrics.last_ping(&id).map(|(at, from)| {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        json!({
            "Timestamp": trunkd_core::events::envelope::iso8601_seconds(ms),
            "Source": from.ip().to_string(),
        })
    });
    ok(json!({ "TerminationHealth": health.unwrap_or(Value::Null) }))
}

pub async fn get_origination(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    with_vc(&shared, &id, |vc, _| {
        ok(json!({"Origination": {
            "Disabled": vc.origination.disabled,
            "Routes": vc.origination.routes.iter().map(route_view).collect::<Vec<_>>(),
        }}))
    })
    .unwrap_or_else(|r| r)
}

pub async fn get_logging(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    with_vc(&shared, &id, |vc, _| {
        ok(json!({"LoggingConfiguration": {
            "EnableSIPLogs": vc.logging.enable_sip_logs,
            "EnableMediaMetricLogs": vc.logging.enable_media_metric_logs,
        }}))
    })
    .unwrap_or_else(|r| r)
}

/// PutVoiceConnectorLoggingConfiguration: `{"LoggingConfiguration":
/// {"EnableSIPLogs": bool, "EnableMediaMetricLogs": bool}}`; a field left
/// out keeps its value.
pub async fn put_logging(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(lc) = v.get("LoggingConfiguration").and_then(Value::as_object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "LoggingConfiguration (an object) is required",
        );
    };
    let mut changes: Vec<(&'static str, bool)> = Vec::new();
    for (field, key) in [
        ("EnableSIPLogs", "enable_sip_logs"),
        ("EnableMediaMetricLogs", "enable_media_metric_logs"),
    ] {
        match lc.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => changes.push((key, *b)),
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("LoggingConfiguration.{field} must be true or false"),
                )
            }
        }
    }
    let vc_id = id.clone();
    let written = shared
        .write_file(move |doc, config| {
            if config.resources.voice_connector(&vc_id).is_none() {
                return Err(WriteError::NotFound(format!(
                    "no voice connector {vc_id:?}"
                )));
            }
            for (key, value) in changes {
                doc.set_nested_bool(Section::VoiceConnectors, &vc_id, "logging", key, value)
                    .map_err(|e| WriteError::Io(e.to_string()))?;
            }
            Ok(())
        })
        .await;
    match written {
        Ok(_) => get_logging(State(shared), Path(id)).await,
        Err(e) => write_error(e),
    }
}

pub async fn get_streaming(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    with_vc(&shared, &id, |vc, _| {
        let s = &vc.streaming;
        ok(json!({"StreamingConfiguration": {
            "Disabled": s.disabled,
            "DataRetentionInHours": s.data_retention_in_hours,
            "StreamingNotificationTargets": s.notification_targets.iter()
                .map(|t| json!({"NotificationTarget": t.as_str()})).collect::<Vec<_>>(),
            "Sinks": s.sinks.iter().map(|k| match k {
                StreamingSink::WebSocket { url } => json!({"Type": "websocket", "Url": url}),
                StreamingSink::Wav { directory } => json!({"Type": "wav", "Directory": directory.display().to_string()}),
            }).collect::<Vec<_>>(),
        }}))
    })
    .unwrap_or_else(|r| r)
}

pub async fn get_emergency(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    with_vc(&shared, &id, |vc, _| {
        let dnis: Vec<Value> = vc
            .emergency
            .iter()
            .map(|e| {
                json!({
                    "EmergencyPhoneNumber": e.emergency_phone_number.to_string(),
                    "TestPhoneNumber": e.test_phone_number.map(|n| n.to_string()),
                    "CallingCountry": e.calling_country.to_string(),
                    "CallbackPhoneNumber": e.callback_phone_number.map(|n| n.to_string()),
                })
            })
            .collect();
        ok(json!({"EmergencyCallingConfiguration": {"DNIS": dnis}}))
    })
    .unwrap_or_else(|r| r)
}

/// DeleteVoiceConnector: refused while numbers are assigned to it or a
/// group lists it.
pub async fn delete_vc(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    delete_resource(
        shared,
        id,
        Section::VoiceConnectors,
        "voice connector",
        |r, id| {
            if r.voice_connector(id).is_none() {
                return Err(None);
            }
            trunkd_core::deletion::voice_connector(r, id).map_or(Ok(()), |b| Err(Some(b)))
        },
    )
    .await
}

pub async fn delete_group(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    delete_resource(
        shared,
        id,
        Section::VoiceConnectorGroups,
        "voice connector group",
        |r, id| {
            if r.voice_connector_group(id).is_none() {
                return Err(None);
            }
            trunkd_core::deletion::voice_connector_group(r, id).map_or(Ok(()), |b| Err(Some(b)))
        },
    )
    .await
}

pub async fn delete_sma(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    delete_resource(
        shared,
        id,
        Section::SipMediaApplications,
        "SIP media application",
        |r, id| {
            if r.sip_media_application(id).is_none() {
                return Err(None);
            }
            trunkd_core::deletion::sip_media_application(r, id).map_or(Ok(()), |b| Err(Some(b)))
        },
    )
    .await
}

pub async fn delete_rule(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    delete_resource(shared, id, Section::SipRules, "SIP rule", |r, id| {
        if !r.sip_rules().iter().any(|rule| rule.id.as_str() == id) {
            return Err(None);
        }
        trunkd_core::deletion::sip_rule(r, id).map_or(Ok(()), |b| Err(Some(b)))
    })
    .await
}

/// Deletes `id` from `section` when `check` (on the running snapshot)
/// allows it: `Err(None)` is "no such resource", `Err(Some(b))` a rule of
/// the managed service that refuses it.
async fn delete_resource(
    shared: Arc<Shared>,
    id: String,
    section: Section,
    what: &'static str,
    check: fn(&trunkd_core::Resources, &str) -> Result<(), Option<trunkd_core::deletion::Blocker>>,
) -> Response {
    let written = shared
        .write_file(move |doc, config| {
            match check(&config.resources, &id) {
                Ok(()) => {}
                Err(None) => return Err(WriteError::NotFound(format!("no {what} {id:?}"))),
                Err(Some(b)) => {
                    return Err(WriteError::Refused {
                        status: 409,
                        code: b.code,
                        message: b.message,
                    })
                }
            }
            doc.remove(section, &id)
                .map_err(|e| WriteError::NotFound(e.to_string()))
        })
        .await;
    match written {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => write_error(e),
    }
}

pub async fn list_groups(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.config();
    let groups: Vec<Value> = config
        .resources
        .voice_connector_groups()
        .iter()
        .map(group_view)
        .collect();
    ok(json!({ "VoiceConnectorGroups": groups }))
}

pub async fn get_group(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let config = shared.config();
    match config.resources.voice_connector_group(&id) {
        Some(g) => ok(json!({ "VoiceConnectorGroup": group_view(g) })),
        None => not_found(format!("no voice connector group {id:?}")),
    }
}

/// `POST /voice-connectors/{id}?operation=associate-phone-numbers` and
/// `disassociate-phone-numbers`.
pub async fn vc_operation(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    super::numbers::associate(shared, Target::Vc(id), query.as_deref(), &body).await
}

/// The same on `/voice-connector-groups/{id}`.
pub async fn group_operation(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    super::numbers::associate(shared, Target::Group(id), query.as_deref(), &body).await
}

/// What numbers are associated with.
#[derive(Clone, Debug)]
pub enum Target {
    Vc(String),
    Group(String),
}

impl Target {
    pub fn is(&self, a: &Assignment) -> bool {
        match (self, a) {
            (Target::Vc(id), Assignment::VoiceConnector(v)) => v.as_str() == id,
            (Target::Group(id), Assignment::VoiceConnectorGroup(g)) => g.as_str() == id,
            _ => false,
        }
    }
}

pub async fn list_smas(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.config();
    let smas: Vec<Value> = config
        .resources
        .sip_media_applications()
        .iter()
        .map(sma_view)
        .collect();
    ok(json!({ "SipMediaApplications": smas }))
}

pub(super) fn sma_view(s: &trunkd_core::resources::SipMediaApplication) -> Value {
    json!({
        "SipMediaApplicationId": s.id.as_str(),
        "Name": s.name,
        "AwsRegion": s.aws_region,
        // trunkd's endpoints are webhook URLs where the managed service
        // names Lambda ARNs; never the webhook secret.
        "Endpoints": s.endpoints.iter().map(|e| json!({"Url": e.url, "Priority": e.priority.get()})).collect::<Vec<_>>(),
        "Tags": s.tags,
    })
}

pub async fn get_sma(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let config = shared.config();
    match config.resources.sip_media_application(&id) {
        Some(s) => ok(json!({ "SipMediaApplication": sma_view(s) })),
        None => not_found(format!("no SIP media application {id:?}")),
    }
}

pub(super) fn rule_view(r: &trunkd_core::resources::SipRule) -> Value {
    let (trigger_type, trigger_value) = match &r.trigger {
        SipRuleTrigger::ToPhoneNumber(n) => ("ToPhoneNumber", n.to_string()),
        SipRuleTrigger::RequestUriHostname(h) => ("RequestUriHostname", h.clone()),
    };
    json!({
        "SipRuleId": r.id.as_str(),
        "Name": r.name,
        "Disabled": r.disabled,
        "TriggerType": trigger_type,
        "TriggerValue": trigger_value,
        "TargetApplications": r.target_applications.iter().map(|t| json!({
            "SipMediaApplicationId": t.sip_media_application_id.as_str(),
            "Priority": t.priority.get(),
        })).collect::<Vec<_>>(),
    })
}

pub async fn list_rules(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.config();
    let rules: Vec<Value> = config.resources.sip_rules().iter().map(rule_view).collect();
    ok(json!({ "SipRules": rules }))
}

pub async fn get_rule(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let config = shared.config();
    match config
        .resources
        .sip_rules()
        .iter()
        .find(|r| r.id.as_str() == id)
    {
        Some(r) => ok(json!({ "SipRule": rule_view(r) })),
        None => not_found(format!("no SIP rule {id:?}")),
    }
}

/// Every carrier host and origination route with what calls and OPTIONS
/// probing last saw of it (`up`, `down`, or unknown: `null`).
pub async fn list_routes(State(shared): State<Arc<Shared>>) -> Response {
    ok(json!({ "Routes": routes(&shared) }))
}

/// Every route with its call and probe state (`GET /routes`, the status
/// page).
pub fn routes(shared: &Shared) -> Vec<Value> {
    let config = shared.config();
    let states = shared.metrics.route_states();
    let state_of = |key: &str| states.iter().find(|(k, _)| k == key).map(|(_, s)| *s);
    let word = |b: Option<bool>| b.map(|up| if up { "UP" } else { "DOWN" });
    let mut out = Vec::new();
    let mut push = |owner: Value, r: &Route| {
        let key = crate::metrics::route_key(r);
        let s = state_of(&key).unwrap_or_default();
        let mut v = route_view(r);
        if let Some(o) = v.as_object_mut() {
            o.insert("Route".into(), Value::String(key));
            o.insert("Owner".into(), owner);
            o.insert("CallState".into(), json!(word(s.call_up)));
            o.insert("ProbeState".into(), json!(word(s.probe_up)));
        }
        out.push(v);
    };
    for c in config.resources.carriers() {
        for h in &c.hosts {
            push(json!({"CarrierId": c.id.as_str()}), h);
        }
    }
    for vc in config.resources.voice_connectors() {
        for r in &vc.origination.routes {
            push(json!({"VoiceConnectorId": vc.id.as_str()}), r);
        }
    }
    out
}
