//! The phone-number inventory (SPEC §7, §11): list with filters, get,
//! update (calling name, name, product type), associate with and
//! disassociate from a voice connector or group, delete to the deletion
//! queue (`DeleteInProgress`, no calls), restore within the hold
//! (`[admin] number_restore_days`, 7 by default) and the purge after it.
//!
//! Deletion is `deleted_at = "<RFC 3339 time>"` on the number in the file:
//! the queue survives restarts, shows in the file, and an operator can
//! still restore by hand.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use trunkd_config::edit::Section;
use trunkd_core::resources::{Assignment, Number, NumberStatus, PortInStatus, ProductType};
use trunkd_core::E164;

use super::resources::Target;
use super::{body_json, error, json_response, not_found, query_pairs, write_error};
use crate::daemon::{Shared, WriteError};

/// The most numbers one list answer holds (`max-results`).
const MAX_RESULTS: usize = 1000;
/// The most numbers one associate request may name.
const MAX_ASSOCIATE: usize = 1000;

fn status_name(s: NumberStatus) -> &'static str {
    match s {
        NumberStatus::Unassigned => "Unassigned",
        NumberStatus::Assigned => "Assigned",
        NumberStatus::DeleteInProgress => "DeleteInProgress",
        NumberStatus::Deleted => "Deleted",
    }
}

fn product_name(p: ProductType) -> &'static str {
    match p {
        ProductType::VoiceConnector => "VoiceConnector",
        ProductType::SipMediaApplicationDialIn => "SipMediaApplicationDialIn",
    }
}

fn port_in_name(p: PortInStatus) -> &'static str {
    match p {
        PortInStatus::Submitted => "Submitted",
        PortInStatus::PendingDocuments => "PendingDocuments",
        PortInStatus::Foc => "Foc",
        PortInStatus::Exception => "Exception",
        PortInStatus::ChangeRequested => "ChangeRequested",
        PortInStatus::CancelRequested => "CancelRequested",
        PortInStatus::Cancelled => "Cancelled",
        PortInStatus::Completed => "Completed",
    }
}

fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    trunkd_core::events::envelope::iso8601_seconds(ms)
}

/// The association as the managed service lists it.
fn association(a: &Assignment) -> Option<(&'static str, String)> {
    match a {
        Assignment::Unassigned => None,
        Assignment::VoiceConnector(v) => Some(("VoiceConnectorId", v.to_string())),
        Assignment::VoiceConnectorGroup(g) => Some(("VoiceConnectorGroupId", g.to_string())),
        Assignment::SipRule(r) => Some(("SipRuleId", r.to_string())),
    }
}

fn view(n: &Number, now: SystemTime, hold: Duration) -> Value {
    let e164 = n.e164_phone_number.to_string();
    let country = trunkd_core::country::country_of(n.e164_phone_number).map(|c| c.to_string());
    json!({
        "PhoneNumberId": e164,
        "E164PhoneNumber": e164,
        "Country": country,
        "ProductType": product_name(n.product_type),
        "Status": status_name(n.status_with_hold(now, hold)),
        "CallingName": n.calling_name,
        "Name": n.name,
        "Associations": association(&n.assignment)
            .map(|(name, value)| vec![json!({"Name": name, "Value": value})])
            .unwrap_or_default(),
        "DeletionTimestamp": n.deleted_at.map(rfc3339),
        "PortInStatus": n.port_in_status.map(port_in_name),
    })
}

fn parse_e164(s: &str) -> Result<E164, Response> {
    s.parse::<E164>().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("{s:?} is not an E.164 number"),
        )
    })
}

/// ListPhoneNumbers: `status`, `product-type`, `filter-name` (one of
/// `VoiceConnectorId`, `VoiceConnectorGroupId`, `SipRuleId`) with
/// `filter-value`, `max-results` (1–1000, 100) and `next-token` (from the
/// previous answer). Sorted by number.
pub async fn list(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let config = shared.config();
    let hold = config.settings.admin.number_restore;
    let now = SystemTime::now();
    let (mut status, mut product, mut filter_name, mut filter_value) = (None, None, None, None);
    let (mut max, mut start) = (100usize, 0usize);
    for (k, v) in query_pairs(query.as_deref()) {
        match k.as_str() {
            "status" => match v.as_str() {
                "Unassigned" | "Assigned" | "DeleteInProgress" | "Deleted" => status = Some(v),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("status {v:?} is not one of Unassigned, Assigned, DeleteInProgress, Deleted"),
                    )
                }
            },
            "product-type" => match v.as_str() {
                "VoiceConnector" | "SipMediaApplicationDialIn" => product = Some(v),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("product-type {v:?} is not one of VoiceConnector, SipMediaApplicationDialIn"),
                    )
                }
            },
            "filter-name" => match v.as_str() {
                "VoiceConnectorId" | "VoiceConnectorGroupId" | "SipRuleId" => filter_name = Some(v),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("filter-name {v:?} is not one of VoiceConnectorId, VoiceConnectorGroupId, SipRuleId"),
                    )
                }
            },
            "filter-value" => filter_value = Some(v),
            "max-results" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_RESULTS).contains(&n) => max = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("max-results {v:?} is not a number from 1 to {MAX_RESULTS}"),
                    )
                }
            },
            "next-token" => match v.parse::<usize>() {
                Ok(n) => start = n,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("next-token {v:?} is not a token this API gave"),
                    )
                }
            },
            _ => {}
        }
    }
    if filter_name.is_some() != filter_value.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "filter-name and filter-value go together",
        );
    }
    let mut selected: Vec<&Number> = config
        .resources
        .numbers()
        .filter(|n| {
            status
                .as_deref()
                .is_none_or(|s| status_name(n.status_with_hold(now, hold)) == s)
        })
        .filter(|n| {
            product
                .as_deref()
                .is_none_or(|p| product_name(n.product_type) == p)
        })
        .filter(|n| match (&filter_name, &filter_value) {
            (Some(name), Some(value)) => {
                association(&n.assignment).is_some_and(|(nm, v)| nm == name && &v == value)
            }
            _ => true,
        })
        .collect();
    selected.sort_by_key(|n| n.e164_phone_number.to_string());
    let page: Vec<Value> = selected
        .iter()
        .skip(start)
        .take(max)
        .map(|n| view(n, now, hold))
        .collect();
    let next = (start + max < selected.len()).then(|| (start + max).to_string());
    json_response(
        StatusCode::OK,
        json!({"PhoneNumbers": page, "NextToken": next}),
    )
}

pub async fn get(State(shared): State<Arc<Shared>>, Path(e164): Path<String>) -> Response {
    let n = match parse_e164(&e164) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let config = shared.config();
    match config.resources.number(n) {
        Some(number) => json_response(
            StatusCode::OK,
            json!({"PhoneNumber": view(number, SystemTime::now(), config.settings.admin.number_restore)}),
        ),
        None => not_found(format!("{e164} is not in the number inventory")),
    }
}

/// UpdatePhoneNumber (`{"CallingName","Name","ProductType"}`, a field left
/// out keeps its value, `""` removes a name) or, with
/// `?operation=restore`, RestorePhoneNumber.
pub async fn update_or_restore(
    State(shared): State<Arc<Shared>>,
    Path(e164): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let n = match parse_e164(&e164) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let op = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "operation")
        .map(|(_, v)| v);
    match op.as_deref() {
        None => update(shared, n, &body).await,
        Some("restore") => restore(shared, n).await,
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("operation {other:?} is not restore"),
        ),
    }
}

async fn update(shared: Arc<Shared>, n: E164, body: &Bytes) -> Response {
    let v = match body_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut changes: Vec<(&'static str, Option<String>)> = Vec::new();
    for (field, key) in [
        ("CallingName", "calling_name"),
        ("Name", "name"),
        ("ProductType", "product_type"),
    ] {
        match v.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() && field != "ProductType" => {
                changes.push((key, None))
            }
            Some(Value::String(s)) => changes.push((key, Some(s.clone()))),
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("{field} must be a string"),
                )
            }
        }
    }
    if changes.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "nothing to update: give CallingName, Name or ProductType",
        );
    }
    let id = n.to_string();
    let written = shared
        .write_file(move |doc, config| {
            if config.resources.number(n).is_none() {
                return Err(WriteError::NotFound(format!(
                    "{id} is not in the number inventory"
                )));
            }
            for (key, value) in changes {
                doc.set_str(Section::Numbers, &id, key, value.as_deref())
                    .map_err(|e| WriteError::NotFound(e.to_string()))?;
            }
            Ok(())
        })
        .await;
    answer_with_number(written, n)
}

/// `{"PhoneNumber": …}` of `n` as `config` has it.
pub(super) fn reply(config: &trunkd_config::Config, n: E164) -> Response {
    match config.resources.number(n) {
        Some(number) => json_response(
            StatusCode::OK,
            json!({"PhoneNumber": view(number, SystemTime::now(), config.settings.admin.number_restore)}),
        ),
        None => not_found(format!("{n} is not in the number inventory")),
    }
}

fn answer_with_number(
    written: Result<Arc<trunkd_config::Config>, WriteError>,
    n: E164,
) -> Response {
    match written {
        Ok(config) => reply(&config, n),
        Err(e) => write_error(e),
    }
}

/// DeletePhoneNumber: to the deletion queue. Refused while anything uses
/// the number (disassociate first, as the managed service asks).
pub async fn delete(State(shared): State<Arc<Shared>>, Path(e164): Path<String>) -> Response {
    let n = match parse_e164(&e164) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let id = n.to_string();
    let written = shared
        .write_file(move |doc, config| {
            let Some(number) = config.resources.number(n) else {
                return Err(WriteError::NotFound(format!(
                    "{id} is not in the number inventory"
                )));
            };
            if number.deleted_at.is_some() {
                return Err(WriteError::Refused {
                    status: 400,
                    code: "BadRequest",
                    message: format!("{id} is in the deletion queue already"),
                });
            }
            if let Some(b) = trunkd_core::deletion::phone_number(&config.resources, n) {
                return Err(WriteError::Refused {
                    status: 409,
                    code: b.code,
                    message: b.message,
                });
            }
            doc.set_str(
                Section::Numbers,
                &id,
                "deleted_at",
                Some(&rfc3339(SystemTime::now())),
            )
            .map_err(|e| WriteError::NotFound(e.to_string()))
        })
        .await;
    match written {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => write_error(e),
    }
}

/// RestorePhoneNumber: back from the deletion queue, unassigned.
async fn restore(shared: Arc<Shared>, n: E164) -> Response {
    let id = n.to_string();
    let written = shared
        .write_file(move |doc, config| {
            let Some(number) = config.resources.number(n) else {
                return Err(WriteError::NotFound(format!(
                    "{id} is not in the number inventory"
                )));
            };
            let hold = config.settings.admin.number_restore;
            match number.status_with_hold(SystemTime::now(), hold) {
                NumberStatus::DeleteInProgress => {}
                NumberStatus::Deleted => {
                    return Err(WriteError::NotFound(format!(
                        "{id} was deleted more than {} days ago and is purged",
                        hold.as_secs() / 86_400
                    )))
                }
                _ => {
                    return Err(WriteError::Refused {
                        status: 400,
                        code: "BadRequest",
                        message: format!("{id} is not in the deletion queue"),
                    })
                }
            }
            doc.set_str(Section::Numbers, &id, "deleted_at", None)
                .map_err(|e| WriteError::NotFound(e.to_string()))
        })
        .await;
    answer_with_number(written, n)
}

/// Associate (or disassociate) numbers with a VC or group:
/// `{"E164PhoneNumbers":[…],"ForceAssociate":bool}`; answers 200 with
/// `{"PhoneNumberErrors":[{"PhoneNumberId","ErrorCode","ErrorMessage"}]}`
/// for the numbers that could not be changed (the others are).
pub async fn associate(
    shared: Arc<Shared>,
    target: Target,
    query: Option<&str>,
    body: &Bytes,
) -> Response {
    let op = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "operation")
        .map(|(_, v)| v);
    let associate = match op.as_deref() {
        Some("associate-phone-numbers") => true,
        Some("disassociate-phone-numbers") => false,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                "operation {other:?} is not associate-phone-numbers or disassociate-phone-numbers"
            ),
            )
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "operation (associate-phone-numbers or disassociate-phone-numbers) is required",
            )
        }
    };
    let v = match body_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(list) = v.get("E164PhoneNumbers").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "E164PhoneNumbers (an array of numbers) is required",
        );
    };
    if list.is_empty() || list.len() > MAX_ASSOCIATE {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("E164PhoneNumbers holds 1 to {MAX_ASSOCIATE} numbers"),
        );
    }
    let force = match v.get("ForceAssociate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "ForceAssociate must be true or false",
            )
        }
    };
    let mut numbers = Vec::with_capacity(list.len());
    for item in list {
        match item.as_str().map(|s| (s, s.parse::<E164>())) {
            Some((_, Ok(n))) => numbers.push(n),
            Some((s, Err(_))) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("{s:?} is not an E.164 number"),
                )
            }
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "E164PhoneNumbers holds strings",
                )
            }
        }
    }
    let errors = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let errs = errors.clone();
    let written = shared
        .write_file(move |doc, config| {
            let r = &config.resources;
            let exists = match &target {
                Target::Vc(id) => r.voice_connector(id).is_some(),
                Target::Group(id) => r.voice_connector_group(id).is_some(),
            };
            let (key, other_key, what, id) = match &target {
                Target::Vc(id) => ("voice_connector_id", "voice_connector_group_id", "voice connector", id),
                Target::Group(id) => ("voice_connector_group_id", "voice_connector_id", "voice connector group", id),
            };
            if !exists {
                return Err(WriteError::NotFound(format!("no {what} {id:?}")));
            }
            let fail = |n: &E164, code: &str, message: String| {
                if let Ok(mut e) = errs.lock() {
                    e.push(json!({"PhoneNumberId": n.to_string(), "ErrorCode": code, "ErrorMessage": message}));
                }
            };
            for n in &numbers {
                let Some(number) = r.number(*n) else {
                    fail(n, "NotFound", format!("{n} is not in the number inventory"));
                    continue;
                };
                let e = n.to_string();
                if associate {
                    if number.deleted_at.is_some() {
                        fail(n, "BadRequest", format!("{n} is in the deletion queue; restore it first"));
                        continue;
                    }
                    if number.product_type != ProductType::VoiceConnector {
                        fail(n, "BadRequest", format!("{n} has product type SipMediaApplicationDialIn; a {what} takes VoiceConnector numbers"));
                        continue;
                    }
                    if target.is(&number.assignment) {
                        continue;
                    }
                    if number.assignment != Assignment::Unassigned && !force {
                        let (name, value) = association(&number.assignment).unwrap_or(("", String::new()));
                        fail(n, "PhoneNumberAssociationsExist", format!("{n} is assigned to {name} {value:?}; set ForceAssociate to move it"));
                        continue;
                    }
                    doc.set_str(Section::Numbers, &e, other_key, None)
                        .and_then(|()| doc.set_str(Section::Numbers, &e, key, Some(id)))
                        .map_err(|err| WriteError::Io(err.to_string()))?;
                } else {
                    if !target.is(&number.assignment) {
                        fail(n, "BadRequest", format!("{n} is not assigned to {what} {id:?}"));
                        continue;
                    }
                    doc.set_str(Section::Numbers, &e, key, None)
                        .map_err(|err| WriteError::Io(err.to_string()))?;
                }
            }
            Ok(())
        })
        .await;
    match written {
        Ok(_) => {
            let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
            json_response(StatusCode::OK, json!({ "PhoneNumberErrors": errors }))
        }
        Err(e) => write_error(e),
    }
}

/// Purges, once a minute, the numbers whose hold in the deletion queue is
/// over: they leave the file (the audit log says so, as `trunkd`).
pub async fn purge_task(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        purge_once(&shared).await;
    }
}

/// One purge pass; returns the numbers purged.
pub async fn purge_once(shared: &Shared) -> Vec<String> {
    let config = shared.config();
    let hold = config.settings.admin.number_restore;
    let now = SystemTime::now();
    let due: Vec<String> = config
        .resources
        .numbers()
        .filter(|n| n.status_with_hold(now, hold) == NumberStatus::Deleted)
        .map(|n| n.e164_phone_number.to_string())
        .collect();
    if due.is_empty() {
        return due;
    }
    let list = due.clone();
    match shared
        .write_file(move |doc, _| {
            for n in &list {
                doc.remove(Section::Numbers, n)
                    .map_err(|e| WriteError::Io(e.to_string()))?;
            }
            Ok(())
        })
        .await
    {
        Ok(config) => {
            tracing::info!(
                numbers = due.len(),
                "purged numbers past their deletion hold"
            );
            let line = json!({
                "time": rfc3339(SystemTime::now()),
                "token": "trunkd", "role": "-", "source": "-", "method": "-", "path": "-",
                "action": "PurgePhoneNumbers", "parameters": {"E164PhoneNumbers": due},
                "status": 200, "result": "ok",
            });
            let _ = shared.audit.append(&config.settings.admin.audit_log, &line);
            due
        }
        Err(e) => {
            tracing::warn!(error = ?e, "numbers past their deletion hold not purged; retried in a minute");
            Vec::new()
        }
    }
}
