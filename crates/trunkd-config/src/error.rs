//! Configuration errors that name the file, the resource and the field.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration file.
///
/// Displayed as `FILE: RESOURCE.FIELD: REASON`, e.g.
/// `config/trunkd.toml: voice_connectors[id=vc-east].origination.routes[2].weight: 0 is out of range 1..=100`.
/// A resource is named by its id (`[id=…]`), a number by its E.164
/// (`[e164_phone_number=…]`); a resource without a usable id by its 0-based
/// index. Daemon settings have no resource: `sip.max_message_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// `voice_connectors[id=vc-east]`, or `None` for daemon settings and for
    /// errors about the file as a whole.
    pub resource: Option<String>,
    /// The field inside the resource, e.g. `origination.routes[2].weight`;
    /// empty when the error is about the whole resource or file.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        match (&self.resource, self.field.is_empty()) {
            (Some(r), false) => write!(f, "{r}.{}: ", self.field)?,
            (Some(r), true) => write!(f, "{r}: ")?,
            (None, false) => write!(f, "{}: ", self.field)?,
            (None, true) => {}
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file, in file order as far as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            e.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
