//! The daemon's own log: `tracing` to stderr, text or JSON, level from the
//! configuration unless `RUST_LOG` is set.
//!
//! JSON (`[logging] format = "json"`): one object per line with
//! `timestamp`, `level`, `target`, the event's fields (`message` and the
//! rest) and, flattened in, the fields of every span the line was logged
//! in, outermost first. A call's task runs in a span with its
//! `transaction_id` (the CDR's `TransactionId`), so every line of that call
//! carries `"transaction_id": "…"` at the top level, where a log pipeline
//! (Loki, Elasticsearch, `jq 'select(.transaction_id == …)'`) filters on it
//! without knowing span names. An event field wins over a span field of the
//! same name.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;
use trunkd_config::{LogFormat, LoggingSettings};

pub fn init(settings: &LoggingSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling run twice in one process) is harmless.
    let _ = match settings.format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The JSON line format described in the module docs.
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut obj = Map::new();
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        obj.insert("timestamp".into(), Value::String(ts));
        let meta = event.metadata();
        obj.insert("level".into(), Value::String(meta.level().to_string()));
        obj.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    // JsonFields renders a span's fields as one object.
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&fields.fields) {
                        obj.extend(m);
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut obj));
        let line = serde_json::to_string(&Value::Object(obj)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_in_a_call_span_carries_its_fields_at_the_top_level() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("call", transaction_id = "txn-1", vc = "vc-east");
            let _e = span.enter();
            tracing::info!(hop = 2, status = 503u16, "hop failed");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["transaction_id"], "txn-1");
        assert_eq!(v["vc"], "vc-east");
        assert_eq!(v["message"], "hop failed");
        assert_eq!(v["hop"], 2);
        assert_eq!(v["status"], 503);
        assert_eq!(v["level"], "INFO");
        assert!(v["timestamp"].as_str().unwrap().len() >= 20, "{v}");
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
    }
}
