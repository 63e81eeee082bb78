//! The admin API (SPEC §11): the managed service's REST resources over the
//! admin listener, JSON with the PascalCase fields the managed service
//! sends, so scripts written for it map over.
//!
//! * [`auth`]: which role each route needs and which token a request
//!   carries (pure);
//! * [`audit`]: one JSON line per mutating request;
//! * [`resources`]: voice connectors, groups, SIP media applications, SIP
//!   rules, termination health and route state;
//! * [`numbers`]: the phone-number inventory and its lifecycle (update,
//!   delete to the deletion queue, restore, purge);
//! * [`calls`]: calls in progress;
//! * [`status`]: the status page (`GET /status`), HTML with quality plots.
//!
//! Every write goes through `Shared::write_file`: the operator's file is
//! edited in place (comments kept), validated as a reload would, written
//! atomically and put in force; a file edited by hand since it was loaded
//! is never overwritten (409). The OpenAPI document of all of it is
//! `docs/openapi.json`, served at `/openapi.json`.

// Handlers return an early answer as `Err(Response)`: a cold path, where
// boxing would only add noise.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod auth;
pub mod calls;
pub mod numbers;
pub mod resources;
pub mod status;
pub mod writes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::daemon::{Shared, WriteError};

/// The largest request body the API reads (a bulk associate of numbers).
pub const MAX_BODY: usize = 1 << 20;

/// The OpenAPI document, kept in the repository.
const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// The routes of the resource API (the listener adds its own).
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/routes", get(resources::list_routes))
        .route(
            "/voice-connectors",
            get(resources::list_vcs).post(writes::create_vc),
        )
        .route(
            "/voice-connectors/{id}",
            get(resources::get_vc)
                .put(writes::update_vc)
                .delete(resources::delete_vc)
                .post(resources::vc_operation),
        )
        .route(
            "/voice-connectors/{id}/termination",
            get(resources::get_termination)
                .put(writes::put_termination)
                .delete(writes::delete_termination),
        )
        .route(
            "/voice-connectors/{id}/termination/credentials",
            get(writes::get_credentials).post(writes::post_credentials),
        )
        .route(
            "/voice-connectors/{id}/termination/health",
            get(resources::get_termination_health),
        )
        .route(
            "/voice-connectors/{id}/origination",
            get(resources::get_origination)
                .put(writes::put_origination)
                .delete(writes::delete_origination),
        )
        .route(
            "/voice-connectors/{id}/logging-configuration",
            get(resources::get_logging).put(resources::put_logging),
        )
        .route(
            "/voice-connectors/{id}/streaming-configuration",
            get(resources::get_streaming)
                .put(writes::put_streaming)
                .delete(writes::delete_streaming),
        )
        .route(
            "/voice-connectors/{id}/emergency-calling-configuration",
            get(resources::get_emergency)
                .put(writes::put_emergency)
                .delete(writes::delete_emergency),
        )
        .route(
            "/voice-connector-groups",
            get(resources::list_groups).post(writes::create_group),
        )
        .route(
            "/voice-connector-groups/{id}",
            get(resources::get_group)
                .put(writes::update_group)
                .delete(resources::delete_group)
                .post(resources::group_operation),
        )
        .route(
            "/sip-media-applications",
            get(resources::list_smas).post(writes::create_sma),
        )
        .route(
            "/sip-media-applications/{id}",
            get(resources::get_sma)
                .put(writes::update_sma)
                .delete(resources::delete_sma),
        )
        .route(
            "/sip-rules",
            get(resources::list_rules).post(writes::create_rule),
        )
        .route(
            "/sip-rules/{id}",
            get(resources::get_rule)
                .put(writes::update_rule)
                .delete(resources::delete_rule),
        )
        .route(
            "/phone-numbers",
            get(numbers::list).post(writes::create_number),
        )
        .route(
            "/phone-numbers/{e164}",
            get(numbers::get)
                .post(numbers::update_or_restore)
                .delete(numbers::delete),
        )
        .route("/tags", get(writes::list_tags).post(writes::post_tags))
        .route("/status", get(status::page))
        .route("/calls", get(list_calls))
        .route("/calls/{txn}", get(get_call).delete(hang_up_call))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.to_owned(),
    )
        .into_response()
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// An error as the managed service shapes them: `{"Code","Message"}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json_response(status, json!({"Code": code, "Message": message.into()}))
}

pub fn not_found(what: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "NotFound", what)
}

/// The answer to a write that did not happen.
pub fn write_error(e: WriteError) -> Response {
    match e {
        WriteError::Conflict(m) => error(StatusCode::CONFLICT, "Conflict", m),
        WriteError::Invalid(errors) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"Code": "Unprocessable", "Message": "the change would make the configuration invalid", "Errors": errors}),
        ),
        WriteError::Refused {
            status,
            code,
            message,
        } => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message,
        ),
        WriteError::NotFound(m) => not_found(m),
        WriteError::Io(m) => {
            tracing::error!(error = %m, "admin API write failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailure", m)
        }
    }
}

/// A request body as JSON, or the 400 to answer.
pub fn body_json(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body must be a JSON object",
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// `name=value` pairs of a query string (percent-decoded).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The caller of a request, once authenticated.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name; `"local"` when no tokens are configured.
    pub name: String,
    pub role: &'static str,
}

/// Authentication, authorization and the audit log, around every route of
/// the admin listener.
pub async fn gate(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    use trunkd_config::AdminRole;
    let config = shared.config();
    let admin = &config.settings.admin;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let need = auth::required_role(&method, &path, admin.open_metrics);
    let caller = if admin.tokens.is_empty() {
        // No tokens: the listener is on loopback (validation insists) and
        // whoever reaches it may do everything.
        Caller {
            name: "local".into(),
            role: AdminRole::Admin.as_str(),
        }
    } else {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match (need, auth::authenticate(&admin.tokens, header)) {
            (auth::Need::Open, t) => Caller {
                name: t.map(|t| t.name.clone()).unwrap_or_else(|| "-".into()),
                role: t.map(|t| t.role.as_str()).unwrap_or("-"),
            },
            (auth::Need::Role(_), None) => {
                let message = if header.is_some() {
                    "the bearer token is not valid"
                } else {
                    "an Authorization: Bearer token is required"
                };
                let mut r = error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"trunkd\""),
                );
                if method != Method::GET && method != Method::HEAD {
                    audit(
                        &shared,
                        &config,
                        peer,
                        "-",
                        "-",
                        &method,
                        &path_and_query,
                        &[],
                        401,
                    );
                }
                return r;
            }
            (auth::Need::Role(role), Some(t)) if t.role < role => {
                if method != Method::GET && method != Method::HEAD {
                    audit(
                        &shared,
                        &config,
                        peer,
                        &t.name,
                        t.role.as_str(),
                        &method,
                        &path_and_query,
                        &[],
                        403,
                    );
                }
                return error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "token {:?} has the role {}; this needs {}",
                        t.name,
                        t.role.as_str(),
                        role.as_str()
                    ),
                );
            }
            (auth::Need::Role(_), Some(t)) => Caller {
                name: t.name.clone(),
                role: t.role.as_str(),
            },
        }
    };
    if method == Method::GET || method == Method::HEAD {
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    // A mutating request: its body is read here (bounded) so the audit
    // line can carry its parameters, then handed on unchanged.
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            audit(
                &shared,
                &config,
                peer,
                &caller.name,
                caller.role,
                &method,
                &path_and_query,
                &[],
                413,
            );
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BadRequest",
                format!("the body is larger than {MAX_BODY} bytes"),
            );
        }
    };
    let mut request = Request::from_parts(parts, Body::from(bytes.clone()));
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    audit(
        &shared,
        &config,
        peer,
        &caller.name,
        caller.role,
        &method,
        &path_and_query,
        &bytes,
        status,
    );
    if response.status().is_success() && changes_config(&path) {
        shared.events.emit_daemon_event(
            trunkd_core::events::envelope::CONFIGURATION_CHANGED,
            json!({
                "token": caller.name,
                "action": audit_action(&method, &path_and_query),
                "method": method.as_str(),
                "path": path_and_query,
                "parameters": audit::parameters(&bytes),
            }),
        );
    }
    response
}

/// Writes that change the configuration file (an event each), as opposed
/// to calls, reloads and record flushes.
fn changes_config(path: &str) -> bool {
    let first = path.split('/').find(|s| !s.is_empty()).unwrap_or("");
    matches!(
        first,
        "voice-connectors" | "voice-connector-groups" | "phone-numbers" | "sip-rules"
    ) || (first == "sip-media-applications" && !path.contains("/calls"))
}

/// The managed service's name for what a request does.
pub fn audit_action(method: &Method, path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let op = query_pairs(Some(query))
        .into_iter()
        .find(|(k, _)| k == "operation")
        .map(|(_, v)| v);
    let name = match (method.as_str(), seg.as_slice(), op.as_deref()) {
        ("POST", ["reload"], _) => "Reload",
        ("POST", ["records", "flush"], _) => "FlushRecords",
        ("POST", ["phone-numbers", _], Some("restore")) => "RestorePhoneNumber",
        ("POST", ["phone-numbers", _], _) => "UpdatePhoneNumber",
        ("DELETE", ["phone-numbers", _], _) => "DeletePhoneNumber",
        ("POST", ["voice-connectors", _], Some("associate-phone-numbers")) => {
            "AssociatePhoneNumbersWithVoiceConnector"
        }
        ("POST", ["voice-connectors", _], Some("disassociate-phone-numbers")) => {
            "DisassociatePhoneNumbersFromVoiceConnector"
        }
        ("POST", ["voice-connector-groups", _], Some("associate-phone-numbers")) => {
            "AssociatePhoneNumbersWithVoiceConnectorGroup"
        }
        ("POST", ["voice-connector-groups", _], Some("disassociate-phone-numbers")) => {
            "DisassociatePhoneNumbersFromVoiceConnectorGroup"
        }
        ("DELETE", ["voice-connectors", _], _) => "DeleteVoiceConnector",
        ("PUT", ["voice-connectors", _, "logging-configuration"], _) => {
            "PutVoiceConnectorLoggingConfiguration"
        }
        ("DELETE", ["voice-connector-groups", _], _) => "DeleteVoiceConnectorGroup",
        ("DELETE", ["sip-media-applications", _], _) => "DeleteSipMediaApplication",
        ("DELETE", ["sip-rules", _], _) => "DeleteSipRule",
        ("POST", ["sip-media-applications", _, "calls"], _) => "CreateSipMediaApplicationCall",
        ("POST", ["sip-media-applications", _, "calls", _], _) => "UpdateSipMediaApplicationCall",
        ("DELETE", ["calls", _], _) => "HangUpCall",
        _ => return format!("{method} {path}"),
    };
    name.to_owned()
}

#[allow(clippy::too_many_arguments)]
fn audit(
    shared: &Shared,
    config: &trunkd_config::Config,
    peer: SocketAddr,
    token: &str,
    role: &str,
    method: &Method,
    path_and_query: &str,
    body: &[u8],
    status: u16,
) {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let line = json!({
        "time": trunkd_core::events::envelope::iso8601_seconds(ms),
        "event_timestamp": ms,
        "token": token,
        "role": role,
        "source": peer.to_string(),
        "method": method.as_str(),
        "path": path_and_query,
        "action": audit_action(method, path_and_query),
        "parameters": audit::parameters(body),
        "status": status,
        "result": if (200..300).contains(&status) { "ok" } else { "refused" },
    });
    if let Err(e) = shared.audit.append(&config.settings.admin.audit_log, &line) {
        tracing::error!(error = %e, file = %config.settings.admin.audit_log.display(), "audit log not written");
        shared.metrics.audit_failures.inc();
    }
}

async fn list_calls(State(shared): State<Arc<Shared>>) -> Response {
    let mut out = Vec::new();
    for c in shared.calls.snapshot() {
        out.push(call_view(&c).await);
    }
    json_response(StatusCode::OK, json!({ "Calls": out }))
}

async fn get_call(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(txn): axum::extract::Path<String>,
) -> Response {
    match shared
        .calls
        .snapshot()
        .into_iter()
        .find(|c| c.transaction_id == txn)
    {
        Some(c) => json_response(StatusCode::OK, json!({ "Call": call_view(&c).await })),
        None => not_found(format!("no call {txn:?} in progress")),
    }
}

async fn hang_up_call(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(txn): axum::extract::Path<String>,
) -> Response {
    if shared.calls.hang_up(&txn) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(format!("no call {txn:?} in progress"))
    }
}

/// A call's quality so far, customer side then remote side (the figures
/// of its media metric lines); `None` without a relay or once it stopped.
/// `GET /calls` and the status page's sampler both read it.
pub(crate) async fn call_sides(
    c: &calls::Snapshot,
) -> Option<(
    trunkd_core::quality::SideStats,
    trunkd_core::quality::SideStats,
)> {
    // Held only for this one snapshot: a call that ends meanwhile finds its
    // relay stopping when this handle goes (its task's own stop is then a
    // no-op), never kept alive.
    let relay = c.relay.as_ref().and_then(std::sync::Weak::upgrade)?;
    let stats = relay.stats().await.ok()?;
    let (customer, remote) = match c.direction {
        trunkd_core::cdr::Direction::Outbound => (trunkd_media::Leg::A, trunkd_media::Leg::B),
        trunkd_core::cdr::Direction::Inbound => (trunkd_media::Leg::B, trunkd_media::Leg::A),
    };
    Some((
        crate::media_lines::side(&stats, customer),
        crate::media_lines::side(&stats, remote),
    ))
}

/// One call with its quality so far (the same figures as its media metric
/// lines: customer and remote side).
async fn call_view(c: &calls::Snapshot) -> Value {
    let direction = match c.direction {
        trunkd_core::cdr::Direction::Inbound => "Inbound",
        trunkd_core::cdr::Direction::Outbound => "Outbound",
    };
    let mut quality = Value::Null;
    if let Some((customer, remote)) = call_sides(c).await {
        let side = |s: &trunkd_core::quality::SideStats| {
            json!({
                "PacketsReceived": s.to_vc.rtp_packets,
                "PacketsSent": s.from_vc.rtp_packets,
                "PacketsLost": s.to_vc.packets_lost,
                "JitterMicroseconds": s.to_vc.jitter_us,
                "RoundTripTimeMicroseconds": s.rtt.map(|d| d.as_micros() as u64),
                "Mos": s.mos,
            })
        };
        quality = json!({"Customer": side(&customer), "Remote": side(&remote)});
    }
    json!({
        "TransactionId": c.transaction_id,
        "VoiceConnectorId": c.owner,
        "Kind": c.kind,
        "Direction": direction,
        "FromPhoneNumber": c.from,
        "ToPhoneNumber": c.to,
        "StartTimeEpochMilliseconds": c.start_epoch_ms,
        "DurationSeconds": c.duration_seconds,
        "Quality": quality,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_actions_have_the_managed_service_names() {
        assert_eq!(
            query_pairs(Some("status=Assigned&filter-value=%2B1206+x&x")),
            [
                ("status".to_owned(), "Assigned".to_owned()),
                ("filter-value".to_owned(), "+1206 x".to_owned()),
                ("x".to_owned(), String::new())
            ]
        );
        assert_eq!(
            query_pairs(Some("a=%zz%4")),
            [("a".to_owned(), "%zz%4".to_owned())]
        );
        assert_eq!(
            audit_action(
                &Method::POST,
                "/phone-numbers/+12065550100?operation=restore"
            ),
            "RestorePhoneNumber"
        );
        assert_eq!(
            audit_action(
                &Method::POST,
                "/voice-connectors/vc-1?operation=associate-phone-numbers"
            ),
            "AssociatePhoneNumbersWithVoiceConnector"
        );
        assert_eq!(audit_action(&Method::DELETE, "/calls/t1"), "HangUpCall");
        assert_eq!(audit_action(&Method::PATCH, "/x"), "PATCH /x");
    }
}
