//! Reading a file (and `TRUNKD__…` environment overrides) with the `config`
//! crate into the raw [`schema::File`], reporting every unknown key and the
//! first type error with its path.

use std::path::Path;

use config::{Environment, File, FileFormat};

use crate::schema;
use crate::validate::{resource_label, Report};

/// Top-level sections that are arrays of resources: a path into one of them
/// is shown with the resource's id instead of its index.
const RESOURCE_SECTIONS: [&str; 7] = [
    "carriers",
    "voice_connectors",
    "voice_connector_groups",
    "numbers",
    "sip_media_applications",
    "sip_rules",
    "event_targets",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn ignored_segments(path: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
    use serde_ignored::Path as P;
    match path {
        P::Root => {}
        P::Seq { parent, index } => {
            ignored_segments(parent, out);
            out.push(Seg::Index(*index));
        }
        P::Map { parent, key } => {
            ignored_segments(parent, out);
            out.push(Seg::Key(key.clone()));
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_segments(parent, out)
        }
    }
}

/// Splits a path into (resource label, field) the way errors show them.
fn place(segs: &[Seg], label_of: impl Fn(&str, usize) -> String) -> (Option<String>, String) {
    let (resource, rest) = match segs {
        [Seg::Key(section), Seg::Index(i), rest @ ..]
            if RESOURCE_SECTIONS.contains(&section.as_str()) =>
        {
            (Some(label_of(section, *i)), rest)
        }
        _ => (None, segs),
    };
    let mut field = String::new();
    for s in rest {
        match s {
            Seg::Key(k) => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(k);
            }
            Seg::Index(i) => field.push_str(&format!("[{i}]")),
        }
    }
    (resource, field)
}

fn builder(path: &Path) -> config::ConfigBuilder<config::builder::DefaultState> {
    config::Config::builder()
        .add_source(File::from(path).format(FileFormat::Toml).required(true))
        .add_source(
            Environment::with_prefix("TRUNKD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("sip.udp")
                .with_list_parse_key("sip.tcp")
                .with_list_parse_key("sip.tls"),
        )
}

/// Reads `path` plus environment overrides. `None` when nothing usable could
/// be read; every problem is in `report`.
pub(crate) fn read(path: &Path, report: &mut Report<'_>) -> Option<schema::File> {
    let cfg = match builder(path).build() {
        Ok(c) => c,
        Err(e) => {
            report.push(None, "", e);
            return None;
        }
    };
    let mut unknown: Vec<Vec<Seg>> = Vec::new();
    let mut on_ignored = |p: serde_ignored::Path<'_>| {
        let mut segs = Vec::new();
        ignored_segments(&p, &mut segs);
        unknown.push(segs);
    };
    // Deserialization consumes the tree; on the (rare) error path it is read
    // again for resource labels rather than cloned up front for every load.
    let de = serde_ignored::Deserializer::new(cfg, &mut on_ignored);
    let result: Result<schema::File, _> = serde_path_to_error::deserialize(de);
    match result {
        Ok(file) => {
            // Unknown keys are errors, but the rest of the file is still
            // validated so that one run reports everything.
            let mut places: Vec<_> = unknown
                .iter()
                .map(|segs| place(segs, |s, i| resource_label(s, &file, i)))
                .collect();
            places.sort();
            for (resource, field) in places {
                report.push(resource.as_deref(), field, "unknown key");
            }
            Some(file)
        }
        Err(e) => {
            let segs: Vec<Seg> = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    _ => None,
                })
                .collect();
            let tree = builder(path).build().ok();
            let label = |section: &str, i: usize| {
                tree.as_ref()
                    .and_then(|t| id_from_value(t, section, i))
                    .unwrap_or_else(|| format!("{section}[{i}]"))
            };
            let mut places: Vec<_> = unknown.iter().map(|u| place(u, label)).collect();
            places.sort();
            for (resource, field) in places {
                report.push(resource.as_deref(), field, "unknown key");
            }
            let (resource, field) = place(&segs, label);
            report.push(
                resource.as_deref(),
                field,
                clean_type_error(&e.into_inner().to_string()),
            );
            None
        }
    }
}

/// The resource label from the untyped tree, used when typed
/// deserialization failed and there is no typed file to ask.
fn id_from_value(cfg: &config::Config, section: &str, i: usize) -> Option<String> {
    let list = cfg.get_array(section).ok()?;
    let table = list.get(i)?.clone().into_table().ok()?;
    let key = if section == "numbers" {
        "e164_phone_number"
    } else {
        "id"
    };
    let id = table.get(key)?.clone().into_string().ok()?;
    Some(format!("{section}[{key}={id}]"))
}

/// The config crate appends "for key `…`" / "in …" to type errors; the path
/// is already shown in front, so keep only the reason.
fn clean_type_error(msg: &str) -> String {
    let msg = msg.split(" for key `").next().unwrap_or(msg);
    msg.split(" in ").next().unwrap_or(msg).trim().to_owned()
}

/// Where a daemon started from `path` listens for admin requests and keeps
/// its pid file, read leniently: `trunkd reload` needs these even when the
/// rest of the (new) file is invalid, so that the daemon itself can reject
/// it, log it and count it. Missing or unreadable values fall back to the
/// defaults.
pub fn daemon_endpoints(path: &Path) -> (std::net::SocketAddr, std::path::PathBuf) {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let cfg = builder(path).build().ok();
    let get = |key: &str| cfg.as_ref().and_then(|c| c.get_string(key).ok());
    let admin = get("admin.listen")
        .and_then(|a| a.parse().ok())
        .unwrap_or(([127, 0, 0, 1], 9060).into());
    let state_dir = base.join(get("daemon.state_dir").unwrap_or_else(|| "var".into()));
    let pid_file = get("daemon.pid_file")
        .map(|p| base.join(p))
        .unwrap_or_else(|| state_dir.join("trunkd.pid"));
    (admin, pid_file)
}

/// The admin listener's certificate file (`[admin] tls_cert_file`), read
/// leniently like [`daemon_endpoints`]: the CLI speaks TLS to the daemon
/// when it is set, trusting exactly that certificate.
pub fn admin_tls_cert(path: &Path) -> Option<std::path::PathBuf> {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let cfg = builder(path).build().ok()?;
    cfg.get_string("admin.tls_cert_file")
        .ok()
        .map(|p| base.join(p))
}
