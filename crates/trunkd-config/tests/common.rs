//! Shared fixtures: a valid file with every kind of resource, and a loader
//! that writes a variant of it to a temporary file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const VALID: &str = r#"
[daemon]
region = "local"
outbound_host_domain = "trunkd.local"

[sip]
udp = ["127.0.0.1:5060"]
tcp = ["127.0.0.1:5060"]

[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.1/32"]
hosts = [ { host = "127.0.0.1", port = 5080, protocol = "UDP", priority = 1, weight = 100 } ]

[[voice_connectors]]
id = "vc-east"
name = "East PBX"
tags = { team = "voice" }

[voice_connectors.termination]
cidr_allowed_list = ["127.0.0.0/8"]
cps_limit = 10
calling_regions = ["US", "CA"]
credentials = [ { username = "pbx1", password = "secret1" } ]

[voice_connectors.origination]
routes = [ { host = "127.0.0.1", port = 5090, protocol = "UDP", priority = 1, weight = 10 },
           { host = "127.0.0.1", port = 5091, protocol = "TCP", priority = 2, weight = 10 },
           { host = "127.0.0.1", port = 5092, protocol = "UDP", priority = 2, weight = 20 } ]

[[voice_connectors]]
id = "vc-west"

[voice_connectors.origination]
routes = [ { host = "127.0.0.1", port = 5093 } ]

[[voice_connector_groups]]
id = "grp-main"
voice_connector_items = [ { voice_connector_id = "vc-east", priority = 1 },
                          { voice_connector_id = "vc-west", priority = 2 } ]

[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"

[[numbers]]
e164_phone_number = "+12065550101"
voice_connector_group_id = "grp-main"

[[numbers]]
e164_phone_number = "+12065550150"
product_type = "SipMediaApplicationDialIn"

[[sip_media_applications]]
id = "sma-ivr"
endpoints = [ { url = "http://127.0.0.1:8080/sma", priority = 1 } ]

[[sip_rules]]
id = "rule-1"
trigger_type = "ToPhoneNumber"
trigger_value = "+12065550150"
target_applications = [ { sip_media_application_id = "sma-ivr", priority = 1 } ]
"#;

static N: AtomicUsize = AtomicUsize::new(0);

/// Writes `text` to a fresh file named `trunkd.toml` in its own directory.
pub fn write(text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "trunkd-config-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trunkd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Loads `text` and returns its error lines with the file name replaced by
/// `F`, or an empty list when it is valid.
#[allow(dead_code)]
pub fn errors(text: &str) -> Vec<String> {
    let path = write(text);
    let prefix = format!("{}: ", path.display());
    match trunkd_config::load(&path) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .iter()
            .map(|e| e.to_string().replacen(&prefix, "F: ", 1))
            .collect(),
    }
}
