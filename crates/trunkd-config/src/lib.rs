//! trunkd-config: the TOML file, read with the `config` crate (file plus
//! `TRUNKD__SECTION__KEY` environment overrides), validated completely into
//! daemon [`Settings`] and a `trunkd_core::Resources` snapshot.
//!
//! [`load`] is the only way in. It reports every problem it finds, each
//! naming the file, the resource and the field (see [`ConfigError`]); a
//! caller that gets `Err` keeps whatever configuration it was running.

pub mod edit;
mod error;
mod load;
mod schema;
mod settings;
mod time;
mod validate;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use error::{ConfigError, ConfigErrors};
pub use load::{admin_tls_cert, daemon_endpoints};
pub use settings::*;
pub use time::parse_rfc3339;
pub use trunkd_core::Resources;
pub use validate::parse_cidr;

/// A validated configuration: one immutable snapshot of a file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, as given.
    pub path: PathBuf,
    pub settings: Settings,
    pub resources: Resources,
}

/// Reads and validates `path` (plus `TRUNKD__…` environment overrides).
/// Relative paths inside the file are relative to its directory.
///
/// # Errors
/// Every problem found, in file order as far as possible.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_at(path, SystemTime::now())
}

/// [`load`] with an explicit `now` (deletion-queue checks), for tests.
///
/// # Errors
/// As [`load`].
pub fn load_at(path: &Path, now: SystemTime) -> Result<Config, ConfigErrors> {
    let mut report = validate::Report::new(path);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let validated = load::read(path, &mut report)
        .and_then(|raw| validate::validate(&raw, &mut report, &base, now));
    match validated {
        Some(v) if report.errors.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            settings: v.settings,
            resources: v.resources,
        }),
        _ => Err(ConfigErrors(report.errors)),
    }
}
