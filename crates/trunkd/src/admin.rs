//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz`,
//! `POST /reload`, the record spool's `GET /records/backlog` and
//! `POST /records/flush`, `POST /sip-media-applications/{id}/calls`
//! (CreateSipMediaApplicationCall) and
//! `POST /sip-media-applications/{id}/calls/{txn}`
//! (UpdateSipMediaApplicationCall). Bound to loopback by default (SPEC §8).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use tracing::error;

use crate::daemon::Shared;

/// Serves the admin API on `listener`, over TLS when `tls` is given
/// (`[admin] tls_cert_file`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/reload", post(reload))
        .route("/records/backlog", get(records_backlog))
        .route("/records/flush", post(records_flush))
        .route(
            "/sip-media-applications/{sma_id}/calls/{transaction_id}",
            post(update_sma_call),
        )
        .route(
            "/sip-media-applications/{sma_id}/calls",
            post(create_sma_call),
        )
        .merge(crate::api::router())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            crate::api::gate,
        ))
        .with_state(shared.clone());
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        None => axum::serve(listener, app).await,
        Some(config) => {
            let timeout = shared.tls.handshake_timeout();
            // `tap_io` gives the TLS listener axum's `ConnectInfo` of the
            // peer's address, as the plain listener has.
            let tls =
                crate::admin_tls::TlsListener::start(listener, config, timeout).tap_io(|_| {});
            axum::serve(tls, app).await
        }
    };
    if let Err(e) = served {
        error!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // Read at the scrape: the relay threads count their relays themselves.
    if let Some(loads) = crate::media_anchor::relay_loads() {
        shared.metrics.set_relay_loads(&loads);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let summary = crate::summary(&shared.config().resources);
    (StatusCode::OK, format!("ok: {summary}\n"))
}

/// 200 with a summary, or 422 with every error of the rejected file.
async fn reload(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.reload().await {
        Ok(summary) => (StatusCode::OK, summary + "\n"),
        Err(errors) => (StatusCode::UNPROCESSABLE_ENTITY, errors + "\n"),
    }
}

fn backlog_json() -> String {
    let backlog = crate::records::spool()
        .map(|s| s.backlog())
        .unwrap_or(crate::records::Backlog {
            sinks: Vec::new(),
            spool_bytes: 0,
        });
    serde_json::to_string(&backlog).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// `{"sinks":[{"id","pending_records","pending_bytes","oldest_age_seconds"}],"spool_bytes"}`
async fn records_backlog() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], backlog_json())
}

/// Every sink's uploader retries its pending records now; answers with
/// the backlog as it stands (`trunkd records flush` polls until empty).
async fn records_flush() -> impl IntoResponse {
    // Records still queued for the writer are not in the spool yet: let
    // them reach it first, so an empty backlog means every record is there.
    let _ = tokio::task::spawn_blocking(|| {
        crate::records::writer::drain(std::time::Duration::from_secs(5))
    })
    .await;
    if let Some(s) = crate::records::spool() {
        s.flush();
    }
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        backlog_json(),
    )
}

/// Arguments an update may carry (trunkd's bounds).
const MAX_ARGUMENTS: usize = 20;
const MAX_ARGUMENT_BYTES: usize = 1024;

/// CreateSipMediaApplicationCall: `{"FromPhoneNumber", "ToPhoneNumber",
/// "SipHeaders"?, "ArgumentsMap"?}` places a call through the carriers
/// whose application gets NEW_OUTBOUND_CALL (with the arguments), RINGING
/// and CALL_ANSWERED. 201 with `{"SipMediaApplicationCall":
/// {"TransactionId":…}}`; 400 for a bad body, 404 for no such
/// application, 503 when the daemon cannot place calls.
async fn create_sma_call(
    State(shared): State<Arc<Shared>>,
    Path(sma_id): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    let config = shared.config();
    let Some(sma) = config.resources.sip_media_application(&sma_id) else {
        return crate::api::not_found(format!("no SIP media application {sma_id:?}"));
    };
    let request = match parse_create_call(&body) {
        Ok(r) => r,
        Err(why) => return crate::api::error(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    let Some(engine) = shared.engine_tx.get() else {
        return crate::api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the SIP engine is not running",
        );
    };
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        return crate::api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no OS randomness",
        );
    }
    let transaction_id = trunkd_core::TransactionId::from_random_bytes(bytes);
    let (from, to, headers, arguments) = request;
    let call = crate::application::OutboundCall {
        transaction_id,
        sma_id: sma.id.clone(),
        from,
        to,
        headers,
        arguments,
    };
    if engine
        .send(crate::engine::shell::Input::PlaceApplicationCall(Box::new(
            call,
        )))
        .await
        .is_err()
    {
        return crate::api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the SIP engine is not running",
        );
    }
    crate::api::json_response(
        StatusCode::CREATED,
        serde_json::json!({"SipMediaApplicationCall": {"TransactionId": transaction_id.to_string()}}),
    )
}

/// The numbers, headers and arguments of a CreateSipMediaApplicationCall.
type CreateCall = (
    String,
    String,
    Vec<(String, String)>,
    std::collections::BTreeMap<String, String>,
);

fn parse_create_call(body: &[u8]) -> Result<CreateCall, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let number = |name: &str| -> Result<String, String> {
        let n = v
            .get(name)
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("{name} (an E.164 number) is required"))?;
        let digits = n.strip_prefix('+').unwrap_or("");
        if !(2..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{name} {n:?} is not an E.164 number"));
        }
        Ok(n.to_owned())
    };
    let from = number("FromPhoneNumber")?;
    let to = number("ToPhoneNumber")?;
    let mut headers = Vec::new();
    if let Some(h) = v.get("SipHeaders") {
        let Some(h) = h.as_object() else {
            return Err("SipHeaders must be an object of strings".into());
        };
        for (k, val) in h {
            let Some(val) = val.as_str() else {
                return Err(format!("the value of SipHeader {k:?} is not a string"));
            };
            // Only the headers the managed service lets an application set:
            // `X-` headers and User-to-User, no line breaks.
            let allowed = k.len() > 2 && k[..2].eq_ignore_ascii_case("x-")
                || k.eq_ignore_ascii_case("User-to-User");
            let clean = |s: &str| !s.is_empty() && s.bytes().all(|b| b >= 0x20 && b != 0x7f);
            if !allowed || !clean(k) || !clean(val) || k.contains(':') || k.contains(' ') {
                return Err(format!("SipHeader {k:?} is not allowed"));
            }
            headers.push((k.clone(), val.to_owned()));
        }
    }
    let mut arguments = std::collections::BTreeMap::new();
    if let Some(a) = v.get("ArgumentsMap") {
        let Some(a) = a.as_object() else {
            return Err("ArgumentsMap must be an object of strings".into());
        };
        if a.len() > MAX_ARGUMENTS {
            return Err(format!("at most {MAX_ARGUMENTS} arguments are accepted"));
        }
        for (k, val) in a {
            let Some(val) = val.as_str() else {
                return Err(format!("the value of argument {k:?} is not a string"));
            };
            if k.len() > MAX_ARGUMENT_BYTES || val.len() > MAX_ARGUMENT_BYTES {
                return Err(format!(
                    "argument {k:?}: keys and values are at most {MAX_ARGUMENT_BYTES} bytes"
                ));
            }
            arguments.insert(k.clone(), val.to_owned());
        }
    }
    Ok((from, to, headers, arguments))
}

/// UpdateSipMediaApplicationCall: `{"Arguments": {"k": "v", …}}` becomes
/// a CALL_UPDATE_REQUESTED to the call's application. 200 with
/// `{"SipMediaApplicationCall":{"TransactionId":…}}` as the managed
/// service answers; 400 for a bad body, 404 for no such call, 429 when
/// the call has updates waiting already.
async fn update_sma_call(
    State(shared): State<Arc<Shared>>,
    Path((sma_id, transaction_id)): Path<(String, String)>,
    body: Bytes,
) -> axum::response::Response {
    let arguments = match parse_arguments(&body) {
        Ok(a) => a,
        Err(why) => return crate::api::error(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    use crate::application::webhook::UpdateError;
    match shared.sma_calls.update(&sma_id, &transaction_id, arguments) {
        Ok(()) => crate::api::json_response(
            StatusCode::OK,
            serde_json::json!({"SipMediaApplicationCall": {"TransactionId": transaction_id}}),
        ),
        Err(UpdateError::NotFound) => {
            crate::api::not_found("no such call of this SIP media application in progress")
        }
        Err(UpdateError::Busy) => crate::api::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "the call has updates waiting; try again",
        ),
    }
}

fn parse_arguments(body: &[u8]) -> Result<std::collections::BTreeMap<String, String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(args) = v.get("Arguments").and_then(|a| a.as_object()) else {
        return Err("Arguments (an object of strings) is required".into());
    };
    if args.len() > MAX_ARGUMENTS {
        return Err(format!("at most {MAX_ARGUMENTS} Arguments are accepted"));
    }
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in args {
        let Some(v) = v.as_str() else {
            return Err(format!("the value of Argument {k:?} is not a string"));
        };
        if k.len() > MAX_ARGUMENT_BYTES || v.len() > MAX_ARGUMENT_BYTES {
            return Err(format!(
                "Argument {k:?}: keys and values are at most {MAX_ARGUMENT_BYTES} bytes"
            ));
        }
        out.insert(k.clone(), v.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{parse_arguments, parse_create_call};

    #[test]
    fn a_create_call_needs_e164_numbers_and_takes_only_x_headers() {
        let (from, to, headers, args) = parse_create_call(
            br#"{"FromPhoneNumber":"+14155550100","ToPhoneNumber":"+12065550100",
                "SipHeaders":{"X-Campaign":"c7","User-to-User":"00ff"},
                "ArgumentsMap":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(
            (from.as_str(), to.as_str()),
            ("+14155550100", "+12065550100")
        );
        assert_eq!(
            headers,
            [
                ("User-to-User".to_owned(), "00ff".to_owned()),
                ("X-Campaign".to_owned(), "c7".to_owned())
            ]
        );
        assert_eq!(args.get("k").map(String::as_str), Some("v"));
        let refused = |body: &str| parse_create_call(body.as_bytes()).unwrap_err();
        assert_eq!(
            refused(r#"{"FromPhoneNumber":"4155550100","ToPhoneNumber":"+12065550100"}"#),
            "FromPhoneNumber \"4155550100\" is not an E.164 number"
        );
        assert_eq!(
            refused(r#"{"FromPhoneNumber":"+14155550100"}"#),
            "ToPhoneNumber (an E.164 number) is required"
        );
        assert_eq!(
            refused(
                r#"{"FromPhoneNumber":"+14155550100","ToPhoneNumber":"+12065550100","SipHeaders":{"Via":"x"}}"#
            ),
            "SipHeader \"Via\" is not allowed"
        );
        assert_eq!(
            refused(
                r#"{"FromPhoneNumber":"+14155550100","ToPhoneNumber":"+12065550100","SipHeaders":{"X-A":"a\r\nVia: x"}}"#
            ),
            "SipHeader \"X-A\" is not allowed"
        );
        assert_eq!(
            refused(
                r#"{"FromPhoneNumber":"+14155550100","ToPhoneNumber":"+12065550100","ArgumentsMap":{"a":1}}"#
            ),
            "the value of argument \"a\" is not a string"
        );
    }

    #[test]
    fn update_arguments_are_an_object_of_strings() {
        let ok = parse_arguments(br#"{"Arguments":{"b":"2","a":"1"}}"#).unwrap();
        assert_eq!(
            ok.into_iter().collect::<Vec<_>>(),
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            parse_arguments(br#"{"Arguments":{"a":1}}"#).unwrap_err(),
            "the value of Argument \"a\" is not a string"
        );
        assert_eq!(
            parse_arguments(b"{}").unwrap_err(),
            "Arguments (an object of strings) is required"
        );
        assert!(parse_arguments(b"nope")
            .unwrap_err()
            .starts_with("the body is not JSON"));
        let many: serde_json::Map<String, serde_json::Value> = (0..21)
            .map(|i| (format!("k{i}"), serde_json::Value::String("v".into())))
            .collect();
        let body = serde_json::json!({ "Arguments": many }).to_string();
        assert_eq!(
            parse_arguments(body.as_bytes()).unwrap_err(),
            "at most 20 Arguments are accepted"
        );
    }
}
