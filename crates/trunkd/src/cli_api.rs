//! `trunkd numbers …`, `trunkd calls`, `trunkd routes`: the common reads
//! and the number lifecycle, through the running daemon's admin API (so
//! the same roles, audit log and file rules apply as for any client).
//! Lists print as aligned columns; `--json` prints the API's answer.

use std::path::Path;

use anyhow::{anyhow, bail};
use serde_json::Value;

use crate::admin_client::{message, request, AdminEndpoint};

fn admin(config: &Path) -> AdminEndpoint {
    AdminEndpoint::of(config)
}

/// Sends the request; a non-2xx answer is an error with the API's message.
fn call(config: &Path, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<Value> {
    let (status, text) = request(&admin(config), method, path, body)?;
    if !(200..300).contains(&status) {
        bail!("HTTP {status}: {}", message(&text));
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| anyhow!("the answer is not JSON ({e}): {text}"))
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub enum NumbersCommand {
    List {
        status: Option<String>,
        voice_connector: Option<String>,
    },
    Show(String),
    Delete(String),
    Restore(String),
    Assign {
        number: String,
        voice_connector: Option<String>,
        group: Option<String>,
        force: bool,
    },
    Unassign {
        number: String,
        voice_connector: Option<String>,
        group: Option<String>,
    },
    SetCallingName {
        number: String,
        name: String,
    },
}

pub fn numbers(config: &Path, cmd: NumbersCommand, json: bool) -> anyhow::Result<String> {
    let target = |vc: &Option<String>, group: &Option<String>| -> anyhow::Result<String> {
        match (vc, group) {
            (Some(v), None) => Ok(format!("/voice-connectors/{v}")),
            (None, Some(g)) => Ok(format!("/voice-connector-groups/{g}")),
            _ => bail!("give exactly one of --voice-connector and --group"),
        }
    };
    let v = match &cmd {
        NumbersCommand::List {
            status,
            voice_connector,
        } => {
            let mut q = vec!["max-results=1000".to_owned()];
            if let Some(st) = status {
                q.push(format!("status={st}"));
            }
            if let Some(vc) = voice_connector {
                q.push(format!("filter-name=VoiceConnectorId&filter-value={vc}"));
            }
            let mut all = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let mut path = format!("/phone-numbers?{}", q.join("&"));
                if let Some(t) = &next {
                    path.push_str(&format!("&next-token={t}"));
                }
                let page = call(config, "GET", &path, None)?;
                all.extend(page["PhoneNumbers"].as_array().cloned().unwrap_or_default());
                next = page["NextToken"].as_str().map(str::to_owned);
                if next.is_none() {
                    break;
                }
            }
            Value::Array(all)
        }
        NumbersCommand::Show(n) => call(config, "GET", &format!("/phone-numbers/{n}"), None)?,
        NumbersCommand::Delete(n) => {
            call(config, "DELETE", &format!("/phone-numbers/{n}"), None)?;
            return Ok(format!("{n}: in the deletion queue"));
        }
        NumbersCommand::Restore(n) => call(
            config,
            "POST",
            &format!("/phone-numbers/{n}?operation=restore"),
            None,
        )?,
        NumbersCommand::Assign {
            number,
            voice_connector,
            group,
            force,
        } => {
            let path = target(voice_connector, group)?;
            let body = serde_json::json!({"E164PhoneNumbers": [number], "ForceAssociate": force});
            call(
                config,
                "POST",
                &format!("{path}?operation=associate-phone-numbers"),
                Some(&body.to_string()),
            )?
        }
        NumbersCommand::Unassign {
            number,
            voice_connector,
            group,
        } => {
            let path = target(voice_connector, group)?;
            let body = serde_json::json!({"E164PhoneNumbers": [number]});
            call(
                config,
                "POST",
                &format!("{path}?operation=disassociate-phone-numbers"),
                Some(&body.to_string()),
            )?
        }
        NumbersCommand::SetCallingName { number, name } => call(
            config,
            "POST",
            &format!("/phone-numbers/{number}"),
            Some(&serde_json::json!({ "CallingName": name }).to_string()),
        )?,
    };
    if json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    if let Some(errors) = v.get("PhoneNumberErrors").and_then(Value::as_array) {
        if let Some(e) = errors.first() {
            bail!(
                "{}: {} ({})",
                s(&e["PhoneNumberId"]),
                s(&e["ErrorMessage"]),
                s(&e["ErrorCode"])
            );
        }
        return Ok("done".into());
    }
    let rows: Vec<Value> = match v {
        Value::Array(a) => a,
        other => vec![other.get("PhoneNumber").cloned().unwrap_or(other)],
    };
    Ok(table(
        &[
            "NUMBER",
            "STATUS",
            "PRODUCT",
            "ASSIGNED TO",
            "CALLING NAME",
            "DELETED AT",
        ],
        rows.iter()
            .map(|n| {
                let assoc = n["Associations"]
                    .as_array()
                    .and_then(|a| a.first())
                    .map(|a| format!("{} {}", s(&a["Name"]), s(&a["Value"])))
                    .unwrap_or_else(|| "-".into());
                vec![
                    s(&n["E164PhoneNumber"]),
                    s(&n["Status"]),
                    s(&n["ProductType"]),
                    assoc,
                    s(&n["CallingName"]),
                    s(&n["DeletionTimestamp"]),
                ]
            })
            .collect(),
    ))
}

/// `trunkd calls`: live calls with their quality, like `rtpengine-ctl
/// list`; `hangup` ends one.
pub fn calls(config: &Path, hangup: Option<&str>, json: bool) -> anyhow::Result<String> {
    if let Some(txn) = hangup {
        call(config, "DELETE", &format!("/calls/{txn}"), None)?;
        return Ok(format!("{txn}: hanging up"));
    }
    let v = call(config, "GET", "/calls", None)?;
    if json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let calls = v["Calls"].as_array().cloned().unwrap_or_default();
    let quality = |c: &Value, side: &str| {
        let q = &c["Quality"][side];
        if q.is_null() {
            return "-".to_owned();
        }
        let mos = q["Mos"]
            .as_f64()
            .map(|m| format!("{m:.2}"))
            .unwrap_or("-".into());
        let jitter = q["JitterMicroseconds"]
            .as_u64()
            .map(|j| format!("{:.1}ms", j as f64 / 1000.0))
            .unwrap_or("-".into());
        format!("mos {mos} jit {jitter} lost {}", s(&q["PacketsLost"]))
    };
    let mut out = table(
        &[
            "TRANSACTION",
            "KIND",
            "DIR",
            "VC",
            "FROM",
            "TO",
            "SECS",
            "CUSTOMER",
            "REMOTE",
        ],
        calls
            .iter()
            .map(|c| {
                vec![
                    s(&c["TransactionId"]),
                    s(&c["Kind"]),
                    s(&c["Direction"]),
                    s(&c["VoiceConnectorId"]),
                    s(&c["FromPhoneNumber"]),
                    s(&c["ToPhoneNumber"]),
                    s(&c["DurationSeconds"]),
                    quality(c, "Customer"),
                    quality(c, "Remote"),
                ]
            })
            .collect(),
    );
    out.push_str(&format!("\n{} call(s)", calls.len()));
    Ok(out)
}

/// `trunkd routes`: every carrier host and origination route with what
/// calls and probing last saw.
pub fn routes(config: &Path, json: bool) -> anyhow::Result<String> {
    let v = call(config, "GET", "/routes", None)?;
    if json {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let routes = v["Routes"].as_array().cloned().unwrap_or_default();
    Ok(table(
        &["ROUTE", "OWNER", "PRIORITY", "WEIGHT", "CALLS", "PROBE"],
        routes
            .iter()
            .map(|r| {
                let owner = r["Owner"]
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .map(|(k, v)| format!("{} {}", k.trim_end_matches("Id"), s(v)))
                    .unwrap_or_else(|| "-".into());
                vec![
                    s(&r["Route"]),
                    owner,
                    s(&r["Priority"]),
                    s(&r["Weight"]),
                    s(&r["CallState"]),
                    s(&r["ProbeState"]),
                ]
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_align_to_the_widest_cell() {
        assert_eq!(
            table(
                &["A", "LONG HEADER"],
                vec![
                    vec!["wide cell".into(), "x".into()],
                    vec!["-".into(), "y".into()]
                ]
            ),
            "A          LONG HEADER\nwide cell  x\n-          y"
        );
    }
}
