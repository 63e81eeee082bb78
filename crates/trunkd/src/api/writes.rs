//! Creating and changing resources and their settings (SPEC §11): each
//! request names the managed service's fields, which map one to one onto
//! the file's keys (`CpsLimit` → `cps_limit`). The request is turned into
//! edits of the entry in the file, and the edited file is validated exactly
//! as a reload would: a wrong value is answered 422 with the validation
//! error naming the file's field, so the rules live in one place
//! (trunkd-config) and the API cannot accept what the file would refuse.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use trunkd_config::edit::{toml_edit, Document, Section};

use super::{body_json, error, json_response, query_pairs, write_error};
use crate::daemon::{Shared, WriteError};

/// How a request field becomes a file key: its name, and the renames of
/// the fields of the objects it holds (routes, items, endpoints).
struct Field {
    api: &'static str,
    key: &'static str,
    inner: &'static [(&'static str, &'static str)],
}

const fn f(api: &'static str, key: &'static str) -> Field {
    Field {
        api,
        key,
        inner: &[],
    }
}

const ROUTE: &[(&str, &str)] = &[
    ("Host", "host"),
    ("Port", "port"),
    ("Protocol", "protocol"),
    ("Priority", "priority"),
    ("Weight", "weight"),
];

const VC: &[Field] = &[
    f("Name", "name"),
    f("AwsRegion", "aws_region"),
    f("RequireEncryption", "require_encryption"),
    f("NetworkType", "network_type"),
];
const TERMINATION: &[Field] = &[
    f("Disabled", "disabled"),
    f("CpsLimit", "cps_limit"),
    f("DefaultPhoneNumber", "default_phone_number"),
    f("CallingRegions", "calling_regions"),
    f("CidrAllowedList", "cidr_allowed_list"),
    f("Carriers", "carriers"),
    f("RequireClientCertificate", "require_client_certificate"),
];
const ORIGINATION: &[Field] = &[
    f("Disabled", "disabled"),
    Field {
        api: "Routes",
        key: "routes",
        inner: ROUTE,
    },
];
const STREAMING: &[Field] = &[
    f("Disabled", "disabled"),
    f("DataRetentionInHours", "data_retention_in_hours"),
    Field {
        api: "Sinks",
        key: "sinks",
        inner: &[("Type", "type"), ("Url", "url"), ("Directory", "directory")],
    },
];
const EMERGENCY: &[Field] = &[
    f("EmergencyPhoneNumber", "emergency_phone_number"),
    f("TestPhoneNumber", "test_phone_number"),
    f("CallingCountry", "calling_country"),
    f("CallbackPhoneNumber", "callback_phone_number"),
];
const GROUP: &[Field] = &[
    f("Name", "name"),
    Field {
        api: "VoiceConnectorItems",
        key: "voice_connector_items",
        inner: &[
            ("VoiceConnectorId", "voice_connector_id"),
            ("Priority", "priority"),
        ],
    },
];
const SMA: &[Field] = &[
    f("Name", "name"),
    f("AwsRegion", "aws_region"),
    Field {
        api: "Endpoints",
        key: "endpoints",
        inner: &[
            ("Url", "url"),
            ("LambdaArn", "url"),
            ("Priority", "priority"),
        ],
    },
];
const RULE: &[Field] = &[
    f("Name", "name"),
    f("TriggerType", "trigger_type"),
    f("TriggerValue", "trigger_value"),
    f("Disabled", "disabled"),
    Field {
        api: "TargetApplications",
        key: "target_applications",
        inner: &[
            ("SipMediaApplicationId", "sip_media_application_id"),
            ("Priority", "priority"),
            ("AwsRegion", ""),
        ],
    },
];
const NUMBER: &[Field] = &[
    f("ProductType", "product_type"),
    f("CallingName", "calling_name"),
    f("Name", "name"),
];

/// A JSON value as a TOML value; objects' keys renamed by `inner` (a key
/// renamed to `""` is accepted and dropped). The file has no floats and no
/// nulls.
fn to_toml(v: &Value, inner: &[(&str, &str)], at: &str) -> Result<toml_edit::Value, String> {
    Ok(match v {
        Value::Bool(b) => toml_edit::Value::from(*b),
        Value::String(s) => toml_edit::Value::from(s.as_str()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml_edit::Value::from(i),
            None => return Err(format!("{at} must be a whole number")),
        },
        Value::Array(items) => {
            let mut a = toml_edit::Array::new();
            for (i, item) in items.iter().enumerate() {
                a.push(to_toml(item, inner, &format!("{at}[{i}]"))?);
            }
            toml_edit::Value::Array(a)
        }
        Value::Object(map) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, v) in map {
                let Some((_, key)) = inner.iter().find(|(api, _)| api == k) else {
                    return Err(format!("{at}.{k} is not a field this API knows"));
                };
                if key.is_empty() || v.is_null() {
                    continue;
                }
                t.insert(*key, to_toml(v, &[], &format!("{at}.{k}"))?);
            }
            toml_edit::Value::InlineTable(t)
        }
        Value::Null => return Err(format!("{at} cannot be null")),
    })
}

/// The edits `body` asks for: `(key, value)` for each field given (`None`
/// to remove it: JSON null). Unknown fields are refused, so a typo is
/// never silently ignored.
fn edits(body: &Map<String, Value>, fields: &[Field], skip: &[&str]) -> Result<Patch, String> {
    let mut out = Vec::new();
    for (k, v) in body {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let Some(field) = fields.iter().find(|f| f.api == k) else {
            let known: Vec<&str> = fields.iter().map(|f| f.api).collect();
            return Err(format!(
                "{k} is not a field this API knows here (known: {})",
                known.join(", ")
            ));
        };
        let value = match v {
            Value::Null => None,
            v => Some(to_toml(v, field.inner, k)?),
        };
        out.push((field.key.to_owned(), value));
    }
    Ok(out)
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// The object under `key` of the body (`{"Termination": {...}}`), or the
/// body itself when it has no such wrapper.
fn inner_object(body: &Value, key: &str) -> Result<Map<String, Value>, Response> {
    match body.get(key) {
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(bad(format!("{key} must be an object"))),
        None => body
            .as_object()
            .cloned()
            .ok_or_else(|| bad("the body must be a JSON object")),
    }
}

/// A resource id the file accepts (1–64 of `A-Z a-z 0-9 . _ -`), made from
/// a name when the request gives none, with a random suffix so two
/// resources of one name do not collide.
fn new_id(given: Option<&Value>, name: Option<&Value>) -> Result<String, Response> {
    if let Some(v) = given {
        return v
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad("the id must be a string"));
    }
    let base: String = name
        .and_then(Value::as_str)
        .unwrap_or("resource")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no OS randomness for an id",
        )
    })?;
    let base: String = base.chars().take(48).collect();
    let base = if base.is_empty() {
        "resource".into()
    } else {
        base
    };
    Ok(format!("{base}-{}", u32::from_le_bytes(r) % 1_000_000))
}

/// Keys (under the entry or a settings table) and their new values
/// (`None`: removed).
type Patch = Vec<(String, Option<toml_edit::Value>)>;

/// Applies `patch` under `prefix` of entry `id`.
fn apply(
    doc: &mut Document,
    section: Section,
    id: &str,
    prefix: &[&str],
    patch: Patch,
) -> Result<(), WriteError> {
    for (key, value) in patch {
        let mut path: Vec<&str> = prefix.to_vec();
        path.push(&key);
        doc.set_path(section, id, &path, value)
            .map_err(|e| WriteError::NotFound(e.to_string()))?;
    }
    Ok(())
}

/// Which resource kind a request is about, for lookups and messages.
#[derive(Clone, Copy)]
enum Kind {
    Vc,
    Group,
    Sma,
    Rule,
}

impl Kind {
    fn section(self) -> Section {
        match self {
            Kind::Vc => Section::VoiceConnectors,
            Kind::Group => Section::VoiceConnectorGroups,
            Kind::Sma => Section::SipMediaApplications,
            Kind::Rule => Section::SipRules,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Vc => "voice connector",
            Kind::Group => "voice connector group",
            Kind::Sma => "SIP media application",
            Kind::Rule => "SIP rule",
        }
    }

    fn exists(self, r: &trunkd_core::Resources, id: &str) -> bool {
        match self {
            Kind::Vc => r.voice_connector(id).is_some(),
            Kind::Group => r.voice_connector_group(id).is_some(),
            Kind::Sma => r.sip_media_application(id).is_some(),
            Kind::Rule => r.sip_rules().iter().any(|x| x.id.as_str() == id),
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            Kind::Vc => VC,
            Kind::Group => GROUP,
            Kind::Sma => SMA,
            Kind::Rule => RULE,
        }
    }

    fn id_field(self) -> &'static str {
        match self {
            Kind::Vc => "VoiceConnectorId",
            Kind::Group => "VoiceConnectorGroupId",
            Kind::Sma => "SipMediaApplicationId",
            Kind::Rule => "SipRuleId",
        }
    }
}

/// Changes entry `id` of `kind` (at `prefix` inside it) and answers with
/// `reply` of the resource as it is then in force.
async fn change(
    shared: Arc<Shared>,
    kind: Kind,
    id: String,
    prefix: &'static [&'static str],
    patch: Patch,
    remove: bool,
    reply: fn(&Shared, &str) -> Response,
) -> Response {
    let what = kind.what();
    let target = id.clone();
    let written = shared
        .write_file(move |doc, config| {
            if !kind.exists(&config.resources, &target) {
                return Err(WriteError::NotFound(format!("no {what} {target:?}")));
            }
            if remove {
                // `prefix` names the settings sub-table to remove.
                return doc
                    .set_path(kind.section(), &target, prefix, None)
                    .map_err(|e| WriteError::NotFound(e.to_string()));
            }
            apply(doc, kind.section(), &target, prefix, patch)
        })
        .await;
    match written {
        Ok(_) if remove => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => reply(&shared, &id),
        Err(e) => write_error(e),
    }
}

/// Adds an entry of `kind` built from the body's fields.
async fn create(
    shared: Arc<Shared>,
    kind: Kind,
    body: Bytes,
    reply: fn(&Shared, &str) -> Response,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(obj) = v.as_object() else {
        return bad("the body must be a JSON object");
    };
    let id = match new_id(obj.get(kind.id_field()), obj.get("Name")) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let patch = match edits(obj, kind.fields(), &[kind.id_field()]) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    let what = kind.what();
    let new = id.clone();
    let written = shared
        .write_file(move |doc, config| {
            if kind.exists(&config.resources, &new) {
                return Err(WriteError::Refused {
                    status: 409,
                    code: "Conflict",
                    message: format!("a {what} {new:?} exists already"),
                });
            }
            let mut entry = toml_edit::Table::new();
            entry.insert("id", toml_edit::value(new.as_str()));
            for (key, value) in patch {
                if let Some(v) = value {
                    entry.insert(&key, toml_edit::Item::Value(v));
                }
            }
            doc.append(kind.section(), entry)
                .map_err(|e| WriteError::Io(e.to_string()))
        })
        .await;
    match written {
        Ok(_) => {
            let mut r = reply(&shared, &id);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => write_error(e),
    }
}

fn reply_vc(shared: &Shared, id: &str) -> Response {
    let config = shared.config();
    match config.resources.voice_connector(id) {
        Some(vc) => json_response(
            StatusCode::OK,
            json!({"VoiceConnector": super::resources::vc_view(vc, &config.settings.daemon.outbound_host_domain)}),
        ),
        None => super::not_found(format!("no voice connector {id:?}")),
    }
}

fn reply_group(shared: &Shared, id: &str) -> Response {
    match shared.config().resources.voice_connector_group(id) {
        Some(g) => json_response(
            StatusCode::OK,
            json!({"VoiceConnectorGroup": super::resources::group_view(g)}),
        ),
        None => super::not_found(format!("no voice connector group {id:?}")),
    }
}

fn reply_sma(shared: &Shared, id: &str) -> Response {
    match shared.config().resources.sip_media_application(id) {
        Some(s) => json_response(
            StatusCode::OK,
            json!({"SipMediaApplication": super::resources::sma_view(s)}),
        ),
        None => super::not_found(format!("no SIP media application {id:?}")),
    }
}

fn reply_rule(shared: &Shared, id: &str) -> Response {
    let config = shared.config();
    match config
        .resources
        .sip_rules()
        .iter()
        .find(|r| r.id.as_str() == id)
    {
        Some(r) => json_response(
            StatusCode::OK,
            json!({"SipRule": super::resources::rule_view(r)}),
        ),
        None => super::not_found(format!("no SIP rule {id:?}")),
    }
}

pub async fn create_vc(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    create(shared, Kind::Vc, body, reply_vc).await
}
pub async fn create_group(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    create(shared, Kind::Group, body, reply_group).await
}
pub async fn create_sma(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    create(shared, Kind::Sma, body, reply_sma).await
}
pub async fn create_rule(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    create(shared, Kind::Rule, body, reply_rule).await
}

/// `PUT /{kind}/{id}`: the fields given change, the others stay.
async fn update(
    shared: Arc<Shared>,
    kind: Kind,
    id: String,
    body: Bytes,
    reply: fn(&Shared, &str) -> Response,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(obj) = v.as_object() else {
        return bad("the body must be a JSON object");
    };
    let patch = match edits(obj, kind.fields(), &[kind.id_field()]) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    change(shared, kind, id, &[], patch, false, reply).await
}

pub async fn update_vc(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    update(shared, Kind::Vc, id, body, reply_vc).await
}
pub async fn update_group(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    update(shared, Kind::Group, id, body, reply_group).await
}
pub async fn update_sma(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    update(shared, Kind::Sma, id, body, reply_sma).await
}
pub async fn update_rule(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    update(shared, Kind::Rule, id, body, reply_rule).await
}

/// A VC settings section: its wrapper key in requests, its sub-table in
/// the file, its fields.
async fn put_settings(
    shared: Arc<Shared>,
    id: String,
    body: Bytes,
    wrapper: &'static str,
    table: &'static [&'static str],
    fields: &'static [Field],
    reply: fn(&Shared, &str) -> Response,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let obj = match inner_object(&v, wrapper) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let patch = match edits(&obj, fields, &[]) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    change(shared, Kind::Vc, id, table, patch, false, reply).await
}

fn reply_settings_ok(shared: &Shared, id: &str) -> Response {
    // The caller GETs the section to see it; the write's answer is the VC.
    reply_vc(shared, id)
}

pub async fn put_termination(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    put_settings(
        shared,
        id,
        body,
        "Termination",
        &["termination"],
        TERMINATION,
        reply_settings_ok,
    )
    .await
}
pub async fn put_origination(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    put_settings(
        shared,
        id,
        body,
        "Origination",
        &["origination"],
        ORIGINATION,
        reply_settings_ok,
    )
    .await
}
pub async fn put_emergency(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // The managed service's shape: {"EmergencyCallingConfiguration":
    // {"DNIS":[{…}]}}; trunkd keeps one DNIS entry per VC.
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ecc = match inner_object(&v, "EmergencyCallingConfiguration") {
        Ok(o) => o,
        Err(r) => return r,
    };
    let dnis = match ecc.get("DNIS") {
        Some(Value::Array(a)) if a.len() == 1 => a[0].clone(),
        Some(Value::Array(a)) if a.is_empty() => {
            return change(
                shared,
                Kind::Vc,
                id,
                &["emergency"],
                Vec::new(),
                true,
                reply_vc,
            )
            .await
        }
        _ => return bad("EmergencyCallingConfiguration.DNIS must hold one entry"),
    };
    let Some(obj) = dnis.as_object() else {
        return bad("EmergencyCallingConfiguration.DNIS[0] must be an object");
    };
    let patch = match edits(obj, EMERGENCY, &[]) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    change(
        shared,
        Kind::Vc,
        id,
        &["emergency"],
        patch,
        false,
        reply_settings_ok,
    )
    .await
}
pub async fn put_streaming(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut obj = match inner_object(&v, "StreamingConfiguration") {
        Ok(o) => o,
        Err(r) => return r,
    };
    // StreamingNotificationTargets: [{"NotificationTarget": id}] → ids.
    let targets = obj.remove("StreamingNotificationTargets");
    let mut patch = match edits(&obj, STREAMING, &[]) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    if let Some(t) = targets {
        let Some(items) = t.as_array() else {
            return bad("StreamingNotificationTargets must be an array");
        };
        let mut a = toml_edit::Array::new();
        for item in items {
            match item.get("NotificationTarget").and_then(Value::as_str) {
                Some(id) => a.push(id),
                None => {
                    return bad("each StreamingNotificationTargets entry needs NotificationTarget")
                }
            }
        }
        patch.push((
            "notification_targets".to_owned(),
            Some(toml_edit::Value::Array(a)),
        ));
    }
    change(
        shared,
        Kind::Vc,
        id,
        &["streaming"],
        patch,
        false,
        reply_settings_ok,
    )
    .await
}

pub async fn delete_termination(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    change(
        shared,
        Kind::Vc,
        id,
        &["termination"],
        Vec::new(),
        true,
        reply_vc,
    )
    .await
}
pub async fn delete_origination(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    change(
        shared,
        Kind::Vc,
        id,
        &["origination"],
        Vec::new(),
        true,
        reply_vc,
    )
    .await
}
pub async fn delete_streaming(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    change(
        shared,
        Kind::Vc,
        id,
        &["streaming"],
        Vec::new(),
        true,
        reply_vc,
    )
    .await
}
pub async fn delete_emergency(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    change(
        shared,
        Kind::Vc,
        id,
        &["emergency"],
        Vec::new(),
        true,
        reply_vc,
    )
    .await
}

/// ListVoiceConnectorTerminationCredentials: the user names, never the
/// passwords.
pub async fn get_credentials(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let config = shared.config();
    match config.resources.voice_connector(&id) {
        Some(vc) => json_response(
            StatusCode::OK,
            json!({"Usernames": vc.termination.credentials.iter().map(|c| c.username.clone()).collect::<Vec<_>>()}),
        ),
        None => super::not_found(format!("no voice connector {id:?}")),
    }
}

/// PutVoiceConnectorTerminationCredentials (`{"Credentials":[{"Username",
/// "Password"}]}`: added, or replacing the same user name) and, with
/// `?operation=delete`, DeleteVoiceConnectorTerminationCredentials
/// (`{"Usernames":[…]}`).
pub async fn post_credentials(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let delete = query_pairs(query.as_deref())
        .iter()
        .any(|(k, v)| k == "operation" && v == "delete");
    let mut set: Vec<(String, String)> = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    if delete {
        let Some(names) = v.get("Usernames").and_then(Value::as_array) else {
            return bad("Usernames (an array) is required");
        };
        for n in names {
            match n.as_str() {
                Some(s) => remove.push(s.to_owned()),
                None => return bad("Usernames holds strings"),
            }
        }
    } else {
        let Some(creds) = v.get("Credentials").and_then(Value::as_array) else {
            return bad("Credentials (an array of {Username, Password}) is required");
        };
        for c in creds {
            match (
                c.get("Username").and_then(Value::as_str),
                c.get("Password").and_then(Value::as_str),
            ) {
                (Some(u), Some(p)) => set.push((u.to_owned(), p.to_owned())),
                _ => return bad("each credential needs Username and Password strings"),
            }
        }
    }
    let target = id.clone();
    let written = shared
        .write_file(move |doc, config| {
            let Some(vc) = config.resources.voice_connector(&target) else {
                return Err(WriteError::NotFound(format!(
                    "no voice connector {target:?}"
                )));
            };
            // The credentials as they stand, rewritten as one array: each
            // existing entry keeps its own fields (HA1 digests included).
            let existing = doc.get_array(
                Section::VoiceConnectors,
                &target,
                &["termination", "credentials"],
            );
            let mut out = toml_edit::Array::new();
            for item in existing.iter() {
                let user = item
                    .as_inline_table()
                    .and_then(|t| t.get("username"))
                    .and_then(|u| u.as_str())
                    .unwrap_or_default()
                    .to_owned();
                if remove.contains(&user) || set.iter().any(|(u, _)| *u == user) {
                    continue;
                }
                out.push(item.clone());
            }
            for (u, p) in &set {
                let mut t = toml_edit::InlineTable::new();
                t.insert("username", u.as_str().into());
                t.insert("password", p.as_str().into());
                out.push(t);
            }
            let _ = vc.id.as_str();
            doc.set_path(
                Section::VoiceConnectors,
                &target,
                &["termination", "credentials"],
                Some(toml_edit::Value::Array(out)),
            )
            .map_err(|e| WriteError::NotFound(e.to_string()))
        })
        .await;
    match written {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => write_error(e),
    }
}

/// `POST /phone-numbers` (trunkd's own: the managed service orders numbers
/// from carriers, which is out of scope): adds a number to the inventory,
/// unassigned. `{"E164PhoneNumber","ProductType","CallingName","Name"}`.
pub async fn create_number(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(obj) = v.as_object() else {
        return bad("the body must be a JSON object");
    };
    let Some(e164) = obj
        .get("E164PhoneNumber")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return bad("E164PhoneNumber (a string) is required");
    };
    let patch = match edits(obj, NUMBER, &["E164PhoneNumber"]) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    let n = e164.clone();
    let written = shared
        .write_file(move |doc, config| {
            if let Ok(parsed) = n.parse::<trunkd_core::E164>() {
                if config.resources.number(parsed).is_some() {
                    return Err(WriteError::Refused {
                        status: 409,
                        code: "Conflict",
                        message: format!("{n} is in the inventory already"),
                    });
                }
            }
            let mut entry = toml_edit::Table::new();
            entry.insert("e164_phone_number", toml_edit::value(n.as_str()));
            for (key, value) in patch {
                if let Some(v) = value {
                    entry.insert(&key, toml_edit::Item::Value(v));
                }
            }
            doc.append(Section::Numbers, entry)
                .map_err(|e| WriteError::Io(e.to_string()))
        })
        .await;
    match written {
        Ok(config) => match e164
            .parse::<trunkd_core::E164>()
            .ok()
            .and_then(|p| config.resources.number(p).map(|_| p))
        {
            Some(p) => {
                let mut r = super::numbers::reply(&config, p);
                *r.status_mut() = StatusCode::CREATED;
                r
            }
            None => super::not_found(format!("{e164} is not in the inventory")),
        },
        Err(e) => write_error(e),
    }
}

/// The resource a tagging request names: an ARN of the managed service's
/// shape (`arn:aws:chime:<region>:<account>:vc/<id>`, `vcg/<id>`,
/// `sma/<id>`) or the short `vc/<id>` form.
fn tagged(arn: &str) -> Option<(Kind, String)> {
    let tail = arn.rsplit(':').next().unwrap_or(arn);
    let (kind, id) = tail.split_once('/')?;
    let kind = match kind {
        "vc" | "voice-connector" => Kind::Vc,
        "vcg" | "voice-connector-group" => Kind::Group,
        "sma" | "sip-media-application" => Kind::Sma,
        _ => return None,
    };
    (!id.is_empty()).then(|| (kind, id.to_owned()))
}

fn tags_of(r: &trunkd_core::Resources, kind: Kind, id: &str) -> Option<Vec<Value>> {
    let tags = match kind {
        Kind::Vc => r.voice_connector(id).map(|v| &v.tags),
        Kind::Group => r.voice_connector_group(id).map(|g| &g.tags),
        Kind::Sma => r.sip_media_application(id).map(|s| &s.tags),
        Kind::Rule => None,
    }?;
    Some(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

/// ListTagsForResource: `GET /tags?arn=<ARN>` → `{"Tags":[{"Key","Value"}]}`.
pub async fn list_tags(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let arn = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "arn")
        .map(|(_, v)| v);
    let Some((kind, id)) = arn.as_deref().and_then(tagged) else {
        return bad("arn (…:vc/<id>, …:vcg/<id> or …:sma/<id>) is required");
    };
    match tags_of(&shared.config().resources, kind, &id) {
        Some(tags) => json_response(StatusCode::OK, json!({ "Tags": tags })),
        None => super::not_found(format!("no {} {id:?}", kind.what())),
    }
}

/// TagResource (`?operation=tag-resource`, `{"ResourceARN","Tags":[{"Key",
/// "Value"}]}`) and UntagResource (`?operation=untag-resource`,
/// `{"ResourceARN","TagKeys":[…]}`): the resource's `tags` table in the
/// file.
pub async fn post_tags(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let op = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "operation")
        .map(|(_, v)| v);
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some((kind, id)) = v
        .get("ResourceARN")
        .and_then(Value::as_str)
        .and_then(tagged)
    else {
        return bad("ResourceARN (…:vc/<id>, …:vcg/<id> or …:sma/<id>) is required");
    };
    let patch: Patch = match op.as_deref() {
        Some("tag-resource") => {
            let Some(tags) = v.get("Tags").and_then(Value::as_array) else {
                return bad("Tags (an array of {Key, Value}) is required");
            };
            let mut p = Vec::new();
            for t in tags {
                match (
                    t.get("Key").and_then(Value::as_str),
                    t.get("Value").and_then(Value::as_str),
                ) {
                    (Some(k), Some(val)) => {
                        p.push((k.to_owned(), Some(toml_edit::Value::from(val))))
                    }
                    _ => return bad("each tag needs Key and Value strings"),
                }
            }
            p
        }
        Some("untag-resource") => {
            let Some(keys) = v.get("TagKeys").and_then(Value::as_array) else {
                return bad("TagKeys (an array of strings) is required");
            };
            let mut p = Vec::new();
            for k in keys {
                match k.as_str() {
                    Some(k) => p.push((k.to_owned(), None)),
                    None => return bad("TagKeys holds strings"),
                }
            }
            p
        }
        _ => return bad("operation (tag-resource or untag-resource) is required"),
    };
    change(shared, kind, id, &["tags"], patch, false, |_, _| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_fields_map_onto_file_keys_and_unknown_ones_are_named() {
        let body = json!({"CpsLimit": 5, "CallingRegions": ["US", "CA"], "Disabled": false, "DefaultPhoneNumber": null});
        let patch = edits(body.as_object().unwrap(), TERMINATION, &[]).unwrap();
        let rendered: Vec<(String, String)> = patch
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.as_ref()
                        .map(|v| v.to_string().trim().to_owned())
                        .unwrap_or("-".into()),
                )
            })
            .collect();
        assert_eq!(
            rendered,
            [
                ("calling_regions".to_owned(), r#"["US", "CA"]"#.to_owned()),
                ("cps_limit".to_owned(), "5".to_owned()),
                ("default_phone_number".to_owned(), "-".to_owned()),
                ("disabled".to_owned(), "false".to_owned()),
            ]
        );
        let routes =
            json!({"Routes": [{"Host": "10.0.0.1", "Port": 5060, "Priority": 1, "Weight": 10}]});
        let patch = edits(routes.as_object().unwrap(), ORIGINATION, &[]).unwrap();
        assert_eq!(
            patch[0].1.as_ref().unwrap().to_string().trim(),
            r#"[{ host = "10.0.0.1", port = 5060, priority = 1, weight = 10 }]"#
        );
        assert_eq!(
            edits(json!({"CPSLimit": 5}).as_object().unwrap(), TERMINATION, &[]).unwrap_err(),
            "CPSLimit is not a field this API knows here (known: Disabled, CpsLimit, DefaultPhoneNumber, CallingRegions, CidrAllowedList, Carriers, RequireClientCertificate)"
        );
        assert_eq!(
            edits(
                json!({"CpsLimit": 1.5}).as_object().unwrap(),
                TERMINATION,
                &[]
            )
            .unwrap_err(),
            "CpsLimit must be a whole number"
        );
        assert_eq!(
            edits(
                json!({"Routes": [{"Hostname": "x"}]}).as_object().unwrap(),
                ORIGINATION,
                &[]
            )
            .unwrap_err(),
            "Routes[0].Hostname is not a field this API knows"
        );
    }

    #[test]
    fn ids_come_from_names_when_none_is_given() {
        let id = new_id(None, Some(&json!("Main PBX (East)"))).unwrap();
        assert!(id.starts_with("main-pbx-east-"), "{id}");
        assert_eq!(new_id(Some(&json!("vc-9")), None).unwrap(), "vc-9");
    }
}
