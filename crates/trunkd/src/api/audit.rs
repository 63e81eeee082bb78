//! The audit log (SPEC §8): one JSON line per mutating request on the
//! admin listener, written whatever the outcome — who (token name and
//! role), when, from where, what (method, path, the action's name and its
//! parameters with secrets redacted) and the result.
//!
//! Lines are appended and synced before the response leaves, so an
//! operator who saw a change answered also finds it in the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// Keys whose values never reach the log: passwords, webhook secrets,
/// tokens and keys, whatever their exact spelling.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "key", "authorization"]
        .iter()
        .any(|s| k.contains(s))
}

/// `v` with every secret value replaced by `"REDACTED"`.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() {
                        Value::String("REDACTED".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// The parameters of a request as the log shows them: its JSON body
/// redacted, the raw text of a body that is not JSON cut to 1 KiB (it may
/// hold anything, so only its length is kept), or null.
pub fn parameters(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => redact(&v),
        Err(_) => serde_json::json!({ "unparsed_body_bytes": body.len() }),
    }
}

/// The audit log file, opened on first use (its path may change on reload).
#[derive(Default)]
pub struct AuditLog {
    file: Mutex<Option<(PathBuf, std::fs::File)>>,
}

impl AuditLog {
    /// Appends `line` to `path` and syncs it.
    pub fn append(&self, path: &Path, line: &Value) -> std::io::Result<()> {
        let mut text = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let reopen = guard.as_ref().is_none_or(|(p, _)| p != path);
        if reopen {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            *guard = Some((path.to_path_buf(), f));
        }
        let Some((_, f)) = guard.as_mut() else {
            return Err(std::io::Error::other("audit log not open"));
        };
        f.write_all(&text)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_nothing_else() {
        let body = serde_json::json!({
            "Credentials": [{"Username": "pbx1", "Password": "hunter2"}],
            "webhook_secret": "whsec_abc", "Name": "Main", "ApiKey": "k",
            "Nested": {"token_sha256": "ff", "Port": 5060}
        });
        assert_eq!(
            redact(&body),
            serde_json::json!({
                "Credentials": [{"Username": "pbx1", "Password": "REDACTED"}],
                "webhook_secret": "REDACTED", "Name": "Main", "ApiKey": "REDACTED",
                "Nested": {"token_sha256": "REDACTED", "Port": 5060}
            })
        );
        assert_eq!(parameters(b""), Value::Null);
        assert_eq!(
            parameters(b"password=x"),
            serde_json::json!({"unparsed_body_bytes": 10})
        );
    }
}
