//! The daemon's own log: `tracing` to stderr, text or JSON, level from the
//! configuration unless `RUST_LOG` is set.

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
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
