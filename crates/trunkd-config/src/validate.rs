//! From the file's raw shape to validated settings and resources.
//!
//! Validation never stops at the first problem: each check records an error
//! naming the resource and field and carries on, so an operator fixes a file
//! in one round. Cross-references (a number's VC, a group's members, a rule's
//! SMAs) are checked after every resource's own fields.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use trunkd_core::routing::rfc3263::DnsLookup;
use trunkd_core::secret::{decode_hex, DigestCredential, DigestSecret, Secret};
use trunkd_core::types::is_hostname;
use trunkd_core::*;

use crate::error::ConfigError;
use crate::schema;
use crate::settings::*;
use crate::time::parse_rfc3339;

/// Collects errors for one file.
pub(crate) struct Report<'a> {
    file: &'a Path,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Report {
            file,
            errors: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        resource: Option<&str>,
        field: impl Into<String>,
        reason: impl Display,
    ) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            resource: resource.map(str::to_owned),
            field: field.into(),
            reason: reason.to_string(),
        });
    }
}

/// Where in the file a value is: a resource label and a field prefix.
#[derive(Clone)]
struct At<'r> {
    resource: Option<&'r str>,
    prefix: String,
}

impl<'r> At<'r> {
    fn section(name: &str) -> Self {
        At {
            resource: None,
            prefix: name.to_owned(),
        }
    }

    fn resource(label: &'r str) -> Self {
        At {
            resource: Some(label),
            prefix: String::new(),
        }
    }

    fn field(&self, name: impl Display) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn sub(&self, name: impl Display) -> At<'r> {
        At {
            resource: self.resource,
            prefix: self.field(name),
        }
    }
}

/// Field checks that report into a [`Report`] at a place.
struct Check<'a, 'b, 'r> {
    report: &'b mut Report<'a>,
    at: At<'r>,
}

impl Check<'_, '_, '_> {
    fn err(&mut self, field: impl Display, reason: impl Display) {
        let f = self.at.field(field);
        self.report.push(self.at.resource, f, reason);
    }

    /// The section-level error (field = the prefix itself).
    fn err_here(&mut self, reason: impl Display) {
        let f = self.at.prefix.clone();
        self.report.push(self.at.resource, f, reason);
    }

    fn parse<T: FromStr>(&mut self, field: &str, value: &str) -> Option<T>
    where
        T::Err: Display,
    {
        match value.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(field, e);
                None
            }
        }
    }

    fn opt_parse<T: FromStr>(&mut self, field: &str, value: &Option<String>) -> Option<T>
    where
        T::Err: Display,
    {
        value.as_deref().and_then(|v| self.parse(field, v))
    }

    fn required<'v>(&mut self, field: &str, value: &'v Option<String>) -> Option<&'v str> {
        match value.as_deref() {
            Some(v) => Some(v),
            None => {
                self.err(field, "is required");
                None
            }
        }
    }

    /// A secret given one of three ways (SPEC §3.2): inline as `<field>`,
    /// in a file named by `<field>_file` (its content, one trailing newline
    /// trimmed), or in the environment variable named by `<field>_env`.
    /// Exactly one must be set; a missing file or variable is an error
    /// naming the field, never the secret. `None` when no way is set and
    /// `required` is false, or on error.
    fn secret(
        &mut self,
        field: &str,
        source: &SecretSource<'_>,
        base: &Path,
        required: bool,
    ) -> Option<Secret> {
        let file_field = format!("{field}_file");
        let env_field = format!("{field}_env");
        let given = [source.inline, source.file, source.env]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given > 1 {
            self.err(
                field,
                format!("set only one of {field}, {file_field}, {env_field}"),
            );
            return None;
        }
        let value = if let Some(v) = source.inline {
            v.to_owned()
        } else if let Some(f) = source.file {
            let path = resolve(base, f);
            match std::fs::read_to_string(&path) {
                Ok(v) => v.strip_suffix('\n').unwrap_or(&v).to_owned(),
                Err(e) => {
                    self.err(&file_field, format!("{}: {e}", path.display()));
                    return None;
                }
            }
        } else if let Some(name) = source.env {
            match std::env::var(name) {
                Ok(v) => v,
                Err(_) => {
                    self.err(
                        &env_field,
                        format!("environment variable {name:?} is not set"),
                    );
                    return None;
                }
            }
        } else {
            if required {
                self.err(
                    field,
                    format!("is required (or {file_field}, or {env_field})"),
                );
            }
            return None;
        };
        if value.is_empty() {
            self.err(field, "must not be empty");
            return None;
        }
        Some(Secret::new(value))
    }

    fn range(&mut self, field: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> i64 {
        let v = value.unwrap_or(default);
        if (min..=max).contains(&v) {
            v
        } else {
            self.err(field, format!("{v} is out of range {min}..={max}"));
            default
        }
    }

    fn max_len(&mut self, field: &str, value: &str, max: usize) {
        let n = value.chars().count();
        if n > max {
            self.err(
                field,
                format!("is {n} characters long, at most {max} are allowed"),
            );
        }
    }

    fn cidrs(&mut self, field: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            match parse_cidr(s) {
                Some(n) => out.push(n),
                None => self.err(
                    format!("{field}[{i}]"),
                    format!("{s:?} is not a CIDR (e.g. 192.0.2.0/24) or an IP address"),
                ),
            }
        }
        out
    }

    fn tags(&mut self, tags: &BTreeMap<String, String>) -> Tags {
        if tags.len() > 50 {
            self.err(
                "tags",
                format!("has {} tags, at most 50 are allowed", tags.len()),
            );
        }
        for (k, v) in tags {
            if k.is_empty() || k.chars().count() > 128 {
                self.err(
                    format!("tags.{k}"),
                    "a tag key must be 1 to 128 characters long",
                );
            }
            if v.chars().count() > 256 {
                self.err(
                    format!("tags.{k}"),
                    "a tag value must be at most 256 characters long",
                );
            }
        }
        tags.clone()
    }

    fn route(&mut self, r: &schema::Route, max_priority: u8) -> Option<Route> {
        let host = self
            .required("host", &r.host)
            .and_then(|h| self.parse::<Host>("host", h));
        let protocol = match &r.protocol {
            Some(p) => self.parse::<Transport>("protocol", p),
            None => Some(Transport::Udp),
        };
        let default_port = if protocol == Some(Transport::Tls) {
            5061
        } else {
            5060
        };
        let port = Port::new(r.port.unwrap_or(default_port))
            .map_err(|e| self.err("port", e))
            .ok();
        let priority = Priority::new(r.priority.unwrap_or(1), max_priority)
            .map_err(|e| self.err("priority", e))
            .ok();
        let weight = Weight::new(r.weight.unwrap_or(1))
            .map_err(|e| self.err("weight", e))
            .ok();
        let srtp = match r.srtp.as_deref() {
            None | Some("auto") => Some(None),
            Some(p) => self.parse::<SrtpPolicy>("srtp", p).map(Some),
        };
        let tls_server_name = match (&r.tls_server_name, protocol) {
            (None, _) => Some(None),
            (Some(n), Some(Transport::Tls)) if is_hostname(n) => Some(Some(n.to_ascii_lowercase())),
            (Some(n), Some(Transport::Tls)) => {
                self.err("tls_server_name", format!("{n:?} is not a DNS name"));
                None
            }
            (Some(_), _) => {
                self.err("tls_server_name", "is only used with protocol = \"TLS\"");
                None
            }
        };
        // RFC 3263 §4.2: an explicit port means A/AAAA only (what every
        // existing route with host and port keeps doing); a name without a
        // port is looked up with SRV, and with NAPTR first when the
        // transport is not fixed either.
        let dns = match (&host, r.port, &r.protocol) {
            (Some(Host::Name(_)), None, None) => DnsLookup::Naptr,
            (Some(Host::Name(_)), None, Some(_)) => DnsLookup::Srv,
            _ => DnsLookup::Address,
        };
        Some(Route {
            dns,
            host: host?,
            port: port?,
            protocol: protocol?,
            priority: priority?,
            weight: weight?,
            srtp: srtp?,
            tls_server_name: tls_server_name?,
        })
    }
}

/// Accepts `a.b.c.d/n`, `v6/n`, or a bare address meaning one host.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// The three ways a secret can be given in the file; see [`Check::secret`].
#[derive(Debug, Default, Clone, Copy)]
struct SecretSource<'v> {
    inline: Option<&'v str>,
    file: Option<&'v str>,
    env: Option<&'v str>,
}

/// `[[records.sinks]]`: each with a unique id, type "s3", an http(s)
/// endpoint, a bucket, an access key id and its secret.
fn record_sinks(
    report: &mut Report<'_>,
    base: &Path,
    raw: &[schema::RecordSink],
) -> Vec<RecordSinkSettings> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let lbl = label("records.sinks", "id", s.id.as_deref(), i);
        let mut c = Check {
            report,
            at: At::resource(&lbl),
        };
        let id = match s.id.as_deref() {
            None => {
                c.err("id", "is required");
                None
            }
            Some("") => {
                c.err("id", "must not be empty");
                None
            }
            Some(id)
                if !id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) =>
            {
                c.err("id", "may hold only letters, digits, '-', '_' and '.'");
                None
            }
            Some(id) => {
                if !seen.insert(id) {
                    c.err("id", "is a duplicate: another records sink has the same id");
                }
                Some(id.to_owned())
            }
        };
        match c.required("type", &s.kind) {
            Some("s3") | None => {}
            Some(t) => c.err("type", format!("{t:?} is not one of s3")),
        }
        let endpoint = c.required("endpoint", &s.endpoint).and_then(|e| {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            match rest {
                Some(host) if !host.is_empty() && !host.starts_with('/') => Some(e.to_owned()),
                _ => {
                    c.err(
                        "endpoint",
                        format!("{e:?} is not an http:// or https:// URL"),
                    );
                    None
                }
            }
        });
        let bucket = c.required("bucket", &s.bucket).and_then(|b| {
            let ok = (3..=63).contains(&b.len())
                && b.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-.".contains(ch));
            if ok {
                Some(b.to_owned())
            } else {
                c.err(
                    "bucket",
                    format!("{b:?} is not a bucket name (3 to 63 of a-z, 0-9, '-', '.')"),
                );
                None
            }
        });
        let access_key_id = c
            .required("access_key_id", &s.access_key_id)
            .map(str::to_owned);
        let secret = c.secret(
            "secret_access_key",
            &SecretSource {
                inline: s.secret_access_key.as_deref(),
                file: s.secret_access_key_file.as_deref(),
                env: s.secret_access_key_env.as_deref(),
            },
            base,
            true,
        );
        if let (Some(id), Some(endpoint), Some(bucket), Some(access_key_id), Some(secret)) =
            (id, endpoint, bucket, access_key_id, secret)
        {
            out.push(RecordSinkSettings {
                id,
                endpoint,
                bucket,
                region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
                prefix: s.prefix.clone().unwrap_or_default(),
                access_key_id,
                secret_access_key: secret,
            });
        }
    }
    out
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A label for the `i`th resource of `section`: by id when it has a valid-
/// looking one, else by index.
fn label(section: &str, key: &str, id: Option<&str>, i: usize) -> String {
    match id {
        Some(id) if !id.is_empty() && !id.contains([']', '\n']) => format!("{section}[{key}={id}]"),
        _ => format!("{section}[{i}]"),
    }
}

pub(crate) fn resource_label(section: &str, file: &schema::File, i: usize) -> String {
    let id = match section {
        "carriers" => file.carriers.get(i).and_then(|r| r.id.as_deref()),
        "voice_connectors" => file.voice_connectors.get(i).and_then(|r| r.id.as_deref()),
        "voice_connector_groups" => file
            .voice_connector_groups
            .get(i)
            .and_then(|r| r.id.as_deref()),
        "numbers" => {
            let n = file
                .numbers
                .get(i)
                .and_then(|r| r.e164_phone_number.as_deref());
            return label(section, "e164_phone_number", n, i);
        }
        "sip_media_applications" => file
            .sip_media_applications
            .get(i)
            .and_then(|r| r.id.as_deref()),
        "sip_rules" => file.sip_rules.get(i).and_then(|r| r.id.as_deref()),
        "event_targets" => file.event_targets.get(i).and_then(|r| r.id.as_deref()),
        _ => None,
    };
    label(section, "id", id, i)
}

/// Checks ids are present, valid and unique in a section; returns the
/// parsed id per entry (None where invalid).
fn ids<T, Id: FromStr + Clone + Eq + std::hash::Hash>(
    report: &mut Report<'_>,
    section: &str,
    items: &[T],
    id_of: impl Fn(&T) -> Option<&str>,
) -> Vec<Option<Id>>
where
    Id::Err: Display,
{
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let lbl = label(section, "id", id_of(item), i);
        let id = match id_of(item) {
            None => {
                report.push(Some(&lbl), "id", "is required");
                None
            }
            Some(s) => match s.parse::<Id>() {
                Ok(id) => Some(id),
                Err(e) => {
                    report.push(Some(&lbl), "id", e);
                    None
                }
            },
        };
        if let Some(id) = &id {
            if !seen.insert(id.clone()) {
                report.push(
                    Some(&lbl),
                    "id",
                    "is a duplicate: another resource of this kind has the same id",
                );
            }
        }
        out.push(id);
    }
    out
}

fn unique_priorities(
    c: &mut Check<'_, '_, '_>,
    field: &str,
    prios: impl Iterator<Item = Option<i64>>,
) {
    let mut seen = HashMap::new();
    for (i, p) in prios.enumerate() {
        if let Some(p) = p {
            if let Some(first) = seen.insert(p, i) {
                c.err(
                    format!("{field}[{i}].priority"),
                    format!("{p} is already used by {field}[{first}]; priorities must be unique"),
                );
            }
        }
    }
}

pub(crate) struct Validated {
    pub settings: Settings,
    pub resources: Resources,
}

/// Validates a deserialized file. `file` names it in errors; relative paths
/// resolve against `base`.
pub(crate) fn validate(
    raw: &schema::File,
    report: &mut Report<'_>,
    base: &Path,
    now: SystemTime,
) -> Option<Validated> {
    let settings = settings(raw, report, base);
    let region = settings
        .as_ref()
        .map(|s| s.daemon.region.clone())
        .unwrap_or_else(|| "local".into());
    let limits = limits(raw, report);

    let carrier_ids: Vec<Option<CarrierId>> =
        ids(report, "carriers", &raw.carriers, |c| c.id.as_deref());
    let vc_ids: Vec<Option<VcId>> = ids(report, "voice_connectors", &raw.voice_connectors, |v| {
        v.id.as_deref()
    });
    let group_ids: Vec<Option<GroupId>> = ids(
        report,
        "voice_connector_groups",
        &raw.voice_connector_groups,
        |g| g.id.as_deref(),
    );
    let sma_ids: Vec<Option<SmaId>> = ids(
        report,
        "sip_media_applications",
        &raw.sip_media_applications,
        |s| s.id.as_deref(),
    );
    let rule_ids: Vec<Option<RuleId>> =
        ids(report, "sip_rules", &raw.sip_rules, |r| r.id.as_deref());

    let known_carriers: HashSet<&str> = raw
        .carriers
        .iter()
        .filter_map(|c| c.id.as_deref())
        .collect();
    let known_vcs: HashSet<&str> = raw
        .voice_connectors
        .iter()
        .filter_map(|v| v.id.as_deref())
        .collect();
    let known_groups: HashSet<&str> = raw
        .voice_connector_groups
        .iter()
        .filter_map(|g| g.id.as_deref())
        .collect();
    let known_smas: HashSet<&str> = raw
        .sip_media_applications
        .iter()
        .filter_map(|s| s.id.as_deref())
        .collect();

    if raw.voice_connectors.len() > limits.max_voice_connectors {
        report.push(
            None,
            "voice_connectors",
            format!(
                "has {} voice connectors, limits.max_voice_connectors is {}",
                raw.voice_connectors.len(),
                limits.max_voice_connectors
            ),
        );
    }
    if raw.voice_connector_groups.len() > limits.max_voice_connector_groups {
        report.push(
            None,
            "voice_connector_groups",
            format!(
                "has {} groups, limits.max_voice_connector_groups is {}",
                raw.voice_connector_groups.len(),
                limits.max_voice_connector_groups
            ),
        );
    }
    if raw.numbers.len() > limits.max_numbers {
        report.push(
            None,
            "numbers",
            format!(
                "has {} numbers, limits.max_numbers is {}",
                raw.numbers.len(),
                limits.max_numbers
            ),
        );
    }

    let carriers: Vec<Option<Carrier>> = raw
        .carriers
        .iter()
        .zip(carrier_ids)
        .enumerate()
        .map(|(i, (c, id))| carrier(report, &resource_label("carriers", raw, i), c, id))
        .collect();

    let mut usernames: HashMap<String, String> = HashMap::new();
    let client_ca = raw.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
    let vcs: Vec<Option<VoiceConnector>> = raw
        .voice_connectors
        .iter()
        .zip(vc_ids)
        .enumerate()
        .map(|(i, (v, id))| {
            let lbl = resource_label("voice_connectors", raw, i);
            voice_connector(
                report,
                &lbl,
                v,
                id,
                &region,
                &limits,
                (&known_carriers, !raw.carriers.is_empty()),
                &mut usernames,
                base,
                client_ca,
            )
        })
        .collect();

    let groups: Vec<Option<VoiceConnectorGroup>> = raw
        .voice_connector_groups
        .iter()
        .zip(group_ids)
        .enumerate()
        .map(|(i, (g, id))| {
            group(
                report,
                &resource_label("voice_connector_groups", raw, i),
                g,
                id,
                &limits,
                &known_vcs,
            )
        })
        .collect();

    let smas: Vec<Option<SipMediaApplication>> = raw
        .sip_media_applications
        .iter()
        .zip(sma_ids)
        .enumerate()
        .map(|(i, (s, id))| {
            sma(
                report,
                &resource_label("sip_media_applications", raw, i),
                s,
                id,
                &region,
                base,
            )
        })
        .collect();

    // Numbers before rules: a ToPhoneNumber rule must find its number.
    let mut numbers: Vec<Option<Number>> = Vec::with_capacity(raw.numbers.len());
    let mut number_index: HashMap<E164, usize> = HashMap::with_capacity(raw.numbers.len());
    for (i, n) in raw.numbers.iter().enumerate() {
        let lbl = resource_label("numbers", raw, i);
        let parsed = number(report, &lbl, n, &known_vcs, &known_groups, now);
        // Index invalid entries too (by their number, when it parses), so a
        // rule that names one does not add a second, misleading error.
        let key = parsed
            .as_ref()
            .map(|p| p.e164_phone_number)
            .or_else(|| n.e164_phone_number.as_deref()?.parse().ok());
        if let Some(key) = key {
            if number_index.insert(key, i).is_some() {
                report.push(
                    Some(&lbl),
                    "e164_phone_number",
                    "is a duplicate: the number is listed twice",
                );
            }
        }
        numbers.push(parsed);
    }

    let mut triggers = HashSet::new();
    let mut rules = Vec::with_capacity(raw.sip_rules.len());
    for (i, (r, id)) in raw.sip_rules.iter().zip(rule_ids).enumerate() {
        let lbl = resource_label("sip_rules", raw, i);
        let rule = sip_rule(report, &lbl, r, id, &known_smas);
        if let Some(rule) = &rule {
            if !triggers.insert(rule.trigger.clone()) {
                report.push(
                    Some(&lbl),
                    "trigger_value",
                    "is a duplicate: another SIP rule has the same trigger",
                );
            }
            if let SipRuleTrigger::ToPhoneNumber(e) = &rule.trigger {
                let entry = number_index.get(e).map(|&j| numbers[j].as_mut());
                match entry {
                    // Listed, but invalid: its own error says why.
                    Some(None) => {}
                    None => report.push(Some(&lbl), "trigger_value", format!("{e} is not in the number inventory ([[numbers]])")),
                    Some(Some(n)) if n.product_type != ProductType::SipMediaApplicationDialIn => report.push(
                        Some(&lbl),
                        "trigger_value",
                        format!("{e} has product_type VoiceConnector; a SIP rule needs a SipMediaApplicationDialIn number"),
                    ),
                    Some(Some(n)) if n.deleted_at.is_some() => {
                        report.push(Some(&lbl), "trigger_value", format!("{e} is in the deletion queue"))
                    }
                    Some(Some(n)) => n.assignment = Assignment::SipRule(rule.id.clone()),
                }
            }
        }
        rules.push(rule);
    }

    notification_target_references(raw, report);

    if !report.errors.is_empty() {
        return None;
    }
    let resources = Resources::new(
        vcs.into_iter().flatten().collect(),
        groups.into_iter().flatten().collect(),
        carriers.into_iter().flatten().collect(),
        numbers.into_iter().flatten().collect(),
        smas.into_iter().flatten().collect(),
        rules.into_iter().flatten().collect(),
        limits,
    );
    Some(Validated {
        settings: settings?,
        resources,
    })
}

/// Each VC's `notification_targets` must name `[[event_targets]]` ids.
fn notification_target_references(raw: &schema::File, report: &mut Report<'_>) {
    let known: HashSet<&str> = raw
        .event_targets
        .iter()
        .filter_map(|t| t.id.as_deref())
        .collect();
    for (i, v) in raw.voice_connectors.iter().enumerate() {
        let Some(list) = v
            .streaming
            .as_ref()
            .and_then(|s| s.notification_targets.as_ref())
        else {
            continue;
        };
        let lbl = resource_label("voice_connectors", raw, i);
        for (j, t) in list.iter().enumerate() {
            if !known.contains(t.as_str()) {
                report.push(
                    Some(&lbl),
                    format!("streaming.notification_targets[{j}]"),
                    format!("{t:?} is not the id of an [[event_targets]] entry"),
                );
            }
        }
    }
}

fn limits(raw: &schema::File, report: &mut Report<'_>) -> Limits {
    let d = Limits::default();
    let l = &raw.limits;
    let mut c = Check {
        report,
        at: At::section("limits"),
    };
    let mut get = |name: &str, v: Option<i64>, default: usize| {
        c.range(name, v, default as i64, 1, 10_000_000) as usize
    };
    Limits {
        max_routes_per_voice_connector: get(
            "max_routes_per_voice_connector",
            l.max_routes_per_voice_connector,
            d.max_routes_per_voice_connector,
        ),
        max_voice_connectors_per_group: get(
            "max_voice_connectors_per_group",
            l.max_voice_connectors_per_group,
            d.max_voice_connectors_per_group,
        ),
        max_voice_connector_groups: get(
            "max_voice_connector_groups",
            l.max_voice_connector_groups,
            d.max_voice_connector_groups,
        ),
        max_voice_connectors: get(
            "max_voice_connectors",
            l.max_voice_connectors,
            d.max_voice_connectors,
        ),
        max_numbers: get("max_numbers", l.max_numbers, d.max_numbers),
    }
}

fn settings(raw: &schema::File, report: &mut Report<'_>, base: &Path) -> Option<Settings> {
    let before = report.errors.len();

    let d = &raw.daemon;
    let mut c = Check {
        report,
        at: At::section("daemon"),
    };
    let region = d.region.clone().unwrap_or_else(|| "local".into());
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        c.err(
            "region",
            format!("{region:?} must be 1 to 32 characters of a-z, 0-9 and '-'"),
        );
    }
    let account_id = d
        .account_id
        .clone()
        .unwrap_or_else(|| "000000000000".into());
    if account_id.is_empty() {
        c.err("account_id", "must not be empty");
    }
    c.max_len("account_id", &account_id, 64);
    let outbound_host_domain = d
        .outbound_host_domain
        .clone()
        .unwrap_or_else(|| "trunkd.local".into())
        .to_ascii_lowercase();
    if !is_hostname(&outbound_host_domain) {
        c.err(
            "outbound_host_domain",
            format!("{outbound_host_domain:?} is not a valid host name"),
        );
    }
    let state_dir = resolve(base, d.state_dir.as_deref().unwrap_or("var"));
    let pid_file = d
        .pid_file
        .as_deref()
        .map(|p| resolve(base, p))
        .unwrap_or_else(|| state_dir.join("trunkd.pid"));

    let s = &raw.sip;
    let mut c = Check {
        report,
        at: At::section("sip"),
    };
    let default_listener = || Some(vec!["127.0.0.1:5060".to_string()]);
    let mut listeners = |name: &str, list: Option<Vec<String>>| -> Vec<SocketAddr> {
        let list = list.unwrap_or_default();
        let mut out = Vec::new();
        for (i, a) in list.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(sa) => out.push(sa),
                Err(_) => c.err(
                    format!("{name}[{i}]"),
                    format!("{a:?} is not a socket address (e.g. 127.0.0.1:5060 or [::1]:5060)"),
                ),
            }
        }
        out
    };
    let udp = listeners("udp", s.udp.clone().or_else(default_listener));
    let tcp = listeners("tcp", s.tcp.clone().or_else(default_listener));
    let tls_listeners = listeners("tls", s.tls.clone());
    if udp.is_empty() && tcp.is_empty() && tls_listeners.is_empty() {
        c.err_here("has no listener: set at least one of udp, tcp, tls");
    }
    if !tls_listeners.is_empty() && raw.tls.is_none() {
        c.err(
            "tls",
            "TLS listeners need a [tls] section with cert_file and key_file",
        );
    }
    if let Some(a) = &s.advertised_address {
        if a.parse::<IpAddr>().is_err() && !is_hostname(a) {
            c.err(
                "advertised_address",
                format!("{a:?} is neither an IP address nor a host name"),
            );
        }
    }
    let max_message_bytes = c.range(
        "max_message_bytes",
        s.max_message_bytes,
        65535,
        1024,
        1_048_576,
    ) as usize;
    let max_tcp_connections = c.range(
        "max_tcp_connections",
        s.max_tcp_connections,
        1024,
        1,
        1_000_000,
    ) as usize;
    let tcp_idle = c.range(
        "tcp_idle_timeout_seconds",
        s.tcp_idle_timeout_seconds,
        300,
        1,
        86_400,
    ) as u64;
    let max_transactions = c.range(
        "max_transactions",
        s.max_transactions,
        crate::settings::DEFAULT_MAX_TRANSACTIONS as i64,
        1_000,
        10_000_000,
    ) as usize;
    let udp_receive_buffer_bytes = c.range(
        "udp_receive_buffer_bytes",
        s.udp_receive_buffer_bytes,
        crate::settings::DEFAULT_UDP_RECEIVE_BUFFER_BYTES as i64,
        0,
        1 << 30,
    ) as usize;
    let sip = SipSettings {
        udp,
        tcp,
        tls: tls_listeners,
        advertised_address: s.advertised_address.clone(),
        max_message_bytes,
        max_tcp_connections,
        tcp_idle_timeout: Duration::from_secs(tcp_idle),
        // 0 (the default): half the CPUs, decided by the daemon at start.
        threads: NonZeroUsize::new(c.range("threads", s.threads, 0, 0, 64) as usize),
        max_transactions,
        udp_receive_buffer_bytes,
    };

    let tls = raw.tls.as_ref().map(|t| {
        let mut c = Check {
            report,
            at: At::section("tls"),
        };
        let file = |c: &mut Check, name: &str, v: &Option<String>| {
            let p = resolve(base, v.as_deref()?);
            if !p.is_file() {
                c.err(
                    name,
                    format!("{} does not exist or is not a file", p.display()),
                );
            }
            Some(p)
        };
        let cert_file = file(&mut c, "cert_file", &t.cert_file);
        let key_file = file(&mut c, "key_file", &t.key_file);
        let ca_file = file(&mut c, "ca_file", &t.ca_file);
        let client_ca_file = file(&mut c, "client_ca_file", &t.client_ca_file);
        match (&cert_file, &key_file) {
            (Some(_), None) => c.err("key_file", "is required when cert_file is set"),
            (None, Some(_)) => c.err("cert_file", "is required when key_file is set"),
            (None, None) if !sip.tls.is_empty() => {
                c.err("cert_file", "is required: sip.tls has listeners");
                c.err("key_file", "is required: sip.tls has listeners");
            }
            _ => {}
        }
        let handshake = c.range(
            "handshake_timeout_seconds",
            t.handshake_timeout_seconds,
            5,
            1,
            60,
        ) as u64;
        let mut sni_certificates: Vec<SniCertificate> = Vec::new();
        for (i, s) in t.sni_certificates.iter().flatten().enumerate() {
            let field = |f: &str| format!("sni_certificates[{i}].{f}");
            let name = match s.server_name.as_deref() {
                Some(n) if is_hostname(n) => Some(n.to_ascii_lowercase()),
                Some(n) => {
                    c.err(field("server_name"), format!("{n:?} is not a DNS name"));
                    None
                }
                None => {
                    c.err(field("server_name"), "is required");
                    None
                }
            };
            if let Some(n) = &name {
                if sni_certificates.iter().any(|o| &o.server_name == n) {
                    c.err(field("server_name"), format!("{n} is listed twice"));
                }
            }
            if cert_file.is_none() {
                c.err(
                    field("server_name"),
                    "needs tls.cert_file: it serves clients that send no or another name",
                );
            }
            let cert = file(&mut c, &field("cert_file"), &s.cert_file);
            let key = file(&mut c, &field("key_file"), &s.key_file);
            if s.cert_file.is_none() {
                c.err(field("cert_file"), "is required");
            }
            if s.key_file.is_none() {
                c.err(field("key_file"), "is required");
            }
            if let (Some(server_name), Some(cert_file), Some(key_file)) = (name, cert, key) {
                sni_certificates.push(SniCertificate {
                    server_name,
                    cert_file,
                    key_file,
                });
            }
        }
        TlsSettings {
            cert_file,
            key_file,
            ca_file,
            verify_server: t.verify_server.unwrap_or(true),
            client_ca_file,
            handshake_timeout: Duration::from_secs(handshake),
            sni_certificates,
        }
    });

    let m = &raw.media;
    let mut c = Check {
        report,
        at: At::section("media"),
    };
    let address = match &m.address {
        Some(a) => c
            .parse::<IpAddr>("address", a)
            .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let advertised_address = c.opt_parse::<IpAddr>("advertised_address", &m.advertised_address);
    let port_min = c.range("port_min", m.port_min, 5000, 1024, 65535) as u16;
    let port_max = c.range("port_max", m.port_max, 65000, 1024, 65535) as u16;
    if port_min >= port_max {
        c.err(
            "port_max",
            format!("{port_max} must be greater than port_min ({port_min})"),
        );
    }
    let inactivity = c.range(
        "inactivity_timeout_seconds",
        m.inactivity_timeout_seconds,
        60,
        0,
        86_400,
    ) as u64;
    let media = MediaSettings {
        address,
        advertised_address,
        port_min,
        port_max,
        inactivity_timeout: (inactivity > 0).then(|| Duration::from_secs(inactivity)),
        strict_latching: m.strict_latching.unwrap_or(false),
        // 0 (the default): one per CPU, decided by the daemon at start.
        relay_threads: NonZeroUsize::new(
            c.range("relay_threads", m.relay_threads, 0, 0, 64) as usize
        ),
        // 0 (the default): the media crate's own figure.
        relays_per_thread: NonZeroUsize::new(c.range(
            "relays_per_thread",
            m.relays_per_thread,
            0,
            0,
            100_000,
        ) as usize),
    };

    let mut c = Check {
        report,
        at: At::section("admin"),
    };
    let listen = match &raw.admin.listen {
        Some(a) => c
            .parse::<SocketAddr>("listen", a)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9060))),
        None => SocketAddr::from(([127, 0, 0, 1], 9060)),
    };
    let tokens = admin_tokens(&mut c, raw.admin.tokens.as_deref().unwrap_or_default());
    if tokens.is_empty() && !listen.ip().is_loopback() {
        c.err(
            "listen",
            format!("{listen} is not a loopback address: an admin API reachable from the network needs tokens"),
        );
    }
    let audit_log = raw
        .admin
        .audit_log
        .as_deref()
        .map(|p| resolve(base, p))
        .unwrap_or_else(|| state_dir.join("audit.jsonl"));
    let open_metrics = raw.admin.open_metrics.unwrap_or(true);
    let status_sample_seconds = c.range(
        "status_sample_seconds",
        raw.admin.status_sample_seconds,
        60,
        1,
        3600,
    ) as u64;
    let number_restore_days = c.range(
        "number_restore_days",
        raw.admin.number_restore_days,
        7,
        1,
        365,
    ) as u64;
    let admin_tls_cert = raw.admin.tls_cert_file.as_deref().map(|p| resolve(base, p));
    let admin_tls_key = raw.admin.tls_key_file.as_deref().map(|p| resolve(base, p));
    if admin_tls_cert.is_some() != admin_tls_key.is_some() {
        c.err(
            if admin_tls_cert.is_some() {
                "tls_key_file"
            } else {
                "tls_cert_file"
            },
            "is required with the other (tls_cert_file and tls_key_file go together)",
        );
    }

    let r = &raw.records;
    let mut c = Check {
        report,
        at: At::section("records"),
    };
    let max_spool_bytes = c.range("max_spool_bytes", r.max_spool_bytes, 1 << 30, 0, i64::MAX);
    let retry_initial_ms = c.range(
        "upload_retry_initial_ms",
        r.upload_retry_initial_ms,
        1000,
        1,
        3_600_000,
    );
    let retry_max_s = c.range(
        "upload_retry_max_seconds",
        r.upload_retry_max_seconds,
        60,
        1,
        86_400,
    );
    let records = RecordsSettings {
        enabled: r.enabled.unwrap_or(true),
        directory: r
            .directory
            .as_deref()
            .map(|p| resolve(base, p))
            .unwrap_or_else(|| state_dir.join("records")),
        key_prefix: r.key_prefix.clone().unwrap_or_default(),
        service_code: r
            .service_code
            .clone()
            .unwrap_or_else(|| "AmazonChimeVoiceConnector".into()),
        spool_directory: r
            .spool_directory
            .as_deref()
            .map(|p| resolve(base, p))
            .unwrap_or_else(|| state_dir.join("spool")),
        max_spool_bytes: max_spool_bytes as u64,
        upload_retry_initial: Duration::from_millis(retry_initial_ms as u64),
        upload_retry_max: Duration::from_secs(retry_max_s as u64),
        sinks: record_sinks(report, base, &r.sinks),
    };

    let l = &raw.logging;
    let mut c = Check {
        report,
        at: At::section("logging"),
    };
    let format = match l.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(f) => {
            c.err("format", format!("{f:?} is not one of text, json"));
            LogFormat::Text
        }
    };
    let level = l.level.clone().unwrap_or_else(|| "info".into());
    if !matches!(
        level.as_str(),
        "trace" | "debug" | "info" | "warn" | "error"
    ) {
        c.err(
            "level",
            format!("{level:?} is not one of trace, debug, info, warn, error"),
        );
    }
    let sip_log_max_bytes = c.range(
        "sip_log_max_bytes",
        l.sip_log_max_bytes,
        64 << 20,
        4096,
        1 << 40,
    ) as u64;
    let sip_log_max_age_hours = c.range(
        "sip_log_max_age_hours",
        l.sip_log_max_age_hours,
        24,
        1,
        8760,
    ) as u64;
    let sip_log_keep_files =
        c.range("sip_log_keep_files", l.sip_log_keep_files, 10, 0, 1000) as usize;
    let logging = LoggingSettings {
        sip_log_max_bytes,
        sip_log_max_age: Duration::from_secs(sip_log_max_age_hours * 3600),
        sip_log_keep_files,
        directory: l
            .directory
            .as_deref()
            .map(|p| resolve(base, p))
            .unwrap_or_else(|| state_dir.join("logs")),
        format,
        level,
    };

    let h = &raw.hep;
    let mut c = Check {
        report,
        at: At::section("hep"),
    };
    let collector = match h.collector.as_deref() {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9060))),
        Some(a) => c.parse::<SocketAddr>("collector", a),
    }
    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9060)));
    match h.transport.as_deref() {
        None | Some("udp") => {}
        Some(t) => c.err("transport", format!("{t:?} is not one of udp")),
    }
    let hep = HepSettings {
        enabled: h.enabled.unwrap_or(false),
        collector,
        capture_id: c.range("capture_id", h.capture_id, 0, 0, i64::from(u32::MAX)) as u32,
        password: h.password.clone(),
    };

    let r = &raw.routing;
    let mut c = Check {
        report,
        at: At::section("routing"),
    };
    let hop_timeout_ms = c.range("hop_timeout_ms", r.hop_timeout_ms, 8000, 100, 64_000) as u64;
    let deadline = c.range("deadline_seconds", r.deadline_seconds, 30, 1, 600) as u64;
    let hold_down = c.range("hold_down_seconds", r.hold_down_seconds, 30, 0, 86_400) as u64;
    let emergency_numbers = r.emergency_numbers.clone().unwrap_or_default();
    for (i, n) in emergency_numbers.iter().enumerate() {
        if n.is_empty() || n.len() > 15 || !n.bytes().all(|b| b.is_ascii_digit()) {
            c.err(
                format!("emergency_numbers[{i}]"),
                format!("{n:?} must be 1 to 15 digits"),
            );
        }
    }
    let mut dns_servers = Vec::new();
    for (i, s) in r.dns_servers.iter().flatten().enumerate() {
        let parsed = s.parse::<std::net::SocketAddr>().ok().or_else(|| {
            s.parse::<IpAddr>()
                .ok()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        });
        match parsed {
            Some(a) => dns_servers.push(a),
            None => c.err(
                format!("dns_servers[{i}]"),
                format!("{s:?} is not an IP address or ip:port (e.g. \"127.0.0.1:53\")"),
            ),
        }
    }
    let probing = probing(&raw.probing, report);
    let routing = RoutingSettings {
        hop_timeout: Duration::from_millis(hop_timeout_ms),
        deadline: Duration::from_secs(deadline),
        hold_down: Duration::from_secs(hold_down),
        emergency_numbers,
        probing,
        dns_servers,
    };

    let sec = &raw.security;
    let mut c = Check {
        report,
        at: At::section("security"),
    };
    let scanner_user_agents = sec.scanner_user_agents.clone().unwrap_or_else(|| {
        [
            "friendly-scanner",
            "sipvicious",
            "sipcli",
            "sip-scan",
            "sipsak",
            "iwar",
            "sivus",
            "vaxsipuseragent",
            "pplsip",
            "smap",
        ]
        .map(str::to_owned)
        .to_vec()
    });
    let rate_limit_per_source = c.range(
        "rate_limit_per_source",
        sec.rate_limit_per_source,
        100,
        0,
        1_000_000,
    ) as u32;
    let rate_limit_action = match sec.rate_limit_action.as_deref() {
        None | Some("drop") => RateLimitAction::Drop,
        Some("503") => RateLimitAction::Reject,
        Some(a) => {
            c.err(
                "rate_limit_action",
                format!("{a:?} is not one of drop, 503"),
            );
            RateLimitAction::Drop
        }
    };
    let max_calls = c.range("max_calls", sec.max_calls, 10_000, 1, 1_000_000) as usize;
    let max_calls_per_source = c.range(
        "max_calls_per_source",
        sec.max_calls_per_source,
        0,
        0,
        1_000_000,
    ) as usize;
    let max_tcp_per_source = c.range(
        "max_tcp_connections_per_source",
        sec.max_tcp_connections_per_source,
        32,
        1,
        1_000_000,
    ) as usize;
    let auth_failures_per_source = c.range(
        "auth_failures_per_source",
        sec.auth_failures_per_source,
        10,
        0,
        1_000_000,
    ) as u32;
    let auth_failure_window = Duration::from_secs(c.range(
        "auth_failure_window_seconds",
        sec.auth_failure_window_seconds,
        60,
        1,
        86_400,
    ) as u64);
    let auth_block =
        Duration::from_secs(
            c.range("auth_block_seconds", sec.auth_block_seconds, 300, 1, 86_400) as u64,
        );
    let security = SecuritySettings {
        scanner_user_agents,
        rate_limit_per_source,
        rate_limit_action,
        max_calls,
        max_calls_per_source,
        max_tcp_connections_per_source: max_tcp_per_source,
        auth_failures_per_source,
        auth_failure_window,
        auth_block,
    };

    let (events, event_targets) = events(raw, report, base, &state_dir);
    let applications = applications(raw, report, base, &state_dir);

    (report.errors.len() == before).then_some(Settings {
        daemon: DaemonSettings {
            region,
            account_id,
            outbound_host_domain,
            state_dir,
            pid_file,
        },
        sip,
        tls,
        media,
        admin: AdminSettings {
            listen,
            tokens,
            audit_log,
            open_metrics,
            status_sample: Duration::from_secs(status_sample_seconds),
            number_restore: Duration::from_secs(number_restore_days * 86_400),
            tls_cert_file: admin_tls_cert,
            tls_key_file: admin_tls_key,
        },
        records,
        logging,
        routing,
        security,
        events,
        event_targets,
        applications,
        hep,
    })
}

/// `[admin] tokens`: unique names, a known role, a 64-hex-digit SHA-256.
fn admin_tokens(c: &mut Check<'_, '_, '_>, raw: &[schema::AdminToken]) -> Vec<AdminToken> {
    let mut out: Vec<AdminToken> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let field = |f: &str| format!("tokens[{i}].{f}");
        let name = match t.name.as_deref() {
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                n.to_owned()
            }
            Some(n) => {
                c.err(
                    field("name"),
                    format!("{n:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
                );
                continue;
            }
            None => {
                c.err(field("name"), "is required");
                continue;
            }
        };
        if out.iter().any(|o| o.name == name) {
            c.err(field("name"), format!("{name:?} is used by another token"));
        }
        let role = match t.role.as_deref() {
            Some("read-only") => AdminRole::ReadOnly,
            Some("operator") => AdminRole::Operator,
            Some("admin") => AdminRole::Admin,
            Some(r) => {
                c.err(
                    field("role"),
                    format!("{r:?} is not one of read-only, operator, admin"),
                );
                continue;
            }
            None => {
                c.err(field("role"), "is required");
                continue;
            }
        };
        let sha256 = match t.token_sha256.as_deref().and_then(hex32) {
            Some(h) => h,
            None => {
                // Never echo the value: someone may have pasted the token.
                c.err(
                    field("token_sha256"),
                    "must be the 64 hex digits of the token's SHA-256 (sha256sum), not the token",
                );
                continue;
            }
        };
        if out.iter().any(|o| o.sha256 == sha256) {
            c.err(
                field("token_sha256"),
                "is the same token as another entry's",
            );
        }
        out.push(AdminToken { name, role, sha256 });
    }
    out
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(chunk[0])? * 16 + digit(chunk[1])?) as u8;
    }
    Some(out)
}

/// `[probing]` (SPEC §3.2): off (`None`) unless `interval_seconds` > 0.
fn probing(
    p: &schema::Probing,
    report: &mut Report<'_>,
) -> Option<trunkd_core::routing::probe::ProbeSettings> {
    use std::num::NonZeroU32;
    use trunkd_core::routing::probe::{AcceptedReplies, ProbeSettings};
    let mut c = Check {
        report,
        at: At::section("probing"),
    };
    let interval = c.range("interval_seconds", p.interval_seconds, 0, 0, 3600) as u64;
    let timeout_ms = c.range("timeout_ms", p.timeout_ms, 2000, 100, 32_000) as u64;
    if interval > 0 && timeout_ms > interval * 1000 {
        c.err(
            "timeout_ms",
            format!("{timeout_ms} is longer than interval_seconds ({interval} s)"),
        );
    }
    let failures = c.range("failure_threshold", p.failure_threshold, 3, 1, 100) as u32;
    let successes = c.range("success_threshold", p.success_threshold, 2, 1, 100) as u32;
    let accepted = match &p.accepted_replies {
        None => AcceptedReplies::default_set(),
        Some(list) if list.is_empty() => {
            c.err(
                "accepted_replies",
                "is empty: no reply could bring a route up",
            );
            AcceptedReplies::default_set()
        }
        Some(list) => AcceptedReplies::parse(list).unwrap_or_else(|e| {
            c.err("accepted_replies", e.to_string());
            AcceptedReplies::default_set()
        }),
    };
    (interval > 0).then(|| ProbeSettings {
        interval: Duration::from_secs(interval),
        timeout: Duration::from_millis(timeout_ms),
        failure_threshold: NonZeroU32::new(failures).unwrap_or(NonZeroU32::MIN),
        success_threshold: NonZeroU32::new(successes).unwrap_or(NonZeroU32::MIN),
        accepted,
    })
}

/// `[applications]` (SPEC §6, docs/sma.md).
fn applications(
    raw: &schema::File,
    report: &mut Report<'_>,
    base: &Path,
    state_dir: &Path,
) -> ApplicationsSettings {
    let a = &raw.applications;
    let mut c = Check {
        report,
        at: At::section("applications"),
    };
    let response_timeout = Duration::from_millis(c.range(
        "response_timeout_ms",
        a.response_timeout_ms,
        5000,
        100,
        60_000,
    ) as u64);
    let max_actions = c.range("max_actions", a.max_actions, 10, 1, 100) as usize;
    let audio_cache_bytes = c.range(
        "audio_cache_bytes",
        a.audio_cache_bytes,
        64 * 1024 * 1024,
        0,
        16 * 1024 * 1024 * 1024,
    ) as u64;
    let audio_max_file_bytes = c.range(
        "audio_max_file_bytes",
        a.audio_max_file_bytes,
        8 * 1024 * 1024,
        1024,
        128 * 1024 * 1024,
    ) as u64;
    let outbound_ring_timeout = Duration::from_secs(c.range(
        "outbound_ring_timeout_seconds",
        a.outbound_ring_timeout_seconds,
        60,
        1,
        600,
    ) as u64);
    let recording_directory = a
        .recording_directory
        .as_deref()
        .map(|p| resolve(base, p))
        .unwrap_or_else(|| state_dir.join("sma-recordings"));
    ApplicationsSettings {
        response_timeout,
        max_actions,
        audio_cache_bytes,
        audio_max_file_bytes,
        recording_directory,
        outbound_ring_timeout,
    }
}

/// `[[event_targets]]` and `[events]` (SPEC §3.2, docs/events.md).
fn events(
    raw: &schema::File,
    report: &mut Report<'_>,
    base: &Path,
    state_dir: &Path,
) -> (EventsSettings, Vec<EventTarget>) {
    use trunkd_core::events::signing::WebhookKey;
    use trunkd_core::events::TargetId;

    let ids: Vec<Option<TargetId>> = ids(report, "event_targets", &raw.event_targets, |t| {
        t.id.as_deref()
    });
    let mut targets = Vec::new();
    for (i, (t, id)) in raw.event_targets.iter().zip(ids).enumerate() {
        let lbl = label("event_targets", "id", t.id.as_deref(), i);
        let mut c = Check {
            report,
            at: At::resource(&lbl),
        };
        let kind = match t.kind.as_deref() {
            Some("webhook") => {
                let url = match c.required("url", &t.url) {
                    Some(u)
                        if (u.starts_with("http://") || u.starts_with("https://"))
                            && u.len() > "https://".len() =>
                    {
                        Some(u.to_owned())
                    }
                    Some(u) => {
                        c.err("url", format!("{u:?} is not an http:// or https:// URL"));
                        None
                    }
                    None => None,
                };
                let source = SecretSource {
                    inline: t.secret.as_deref(),
                    file: t.secret_file.as_deref(),
                    env: t.secret_env.as_deref(),
                };
                let key = c.secret("secret", &source, base, true).and_then(|s| {
                    WebhookKey::from_whsec(s.expose())
                        .map_err(|e| c.err("secret", e))
                        .ok()
                });
                if t.path.is_some() {
                    c.err("path", "is only used with type = \"file\"");
                }
                url.zip(key)
                    .map(|(url, key)| EventTargetKind::Webhook { url, key })
            }
            Some("file") => {
                for (field, set) in [
                    ("url", t.url.is_some()),
                    (
                        "secret",
                        t.secret.is_some() || t.secret_file.is_some() || t.secret_env.is_some(),
                    ),
                ] {
                    if set {
                        c.err(field, "is only used with type = \"webhook\"");
                    }
                }
                c.required("path", &t.path).map(|p| EventTargetKind::File {
                    path: resolve(base, p),
                })
            }
            Some(other) => {
                c.err("type", format!("{other:?} is not one of webhook, file"));
                None
            }
            None => {
                c.err("type", "is required (webhook or file)");
                None
            }
        };
        if let (Some(id), Some(kind)) = (id, kind) {
            targets.push(EventTarget { id, kind });
        }
    }

    let e = &raw.events;
    let mut c = Check {
        report,
        at: At::section("events"),
    };
    let queue_directory = e
        .queue_directory
        .as_deref()
        .map(|p| resolve(base, p))
        .unwrap_or_else(|| state_dir.join("events"));
    let max_queued_events = c.range(
        "max_queued_events",
        e.max_queued_events,
        10_000,
        1,
        10_000_000,
    ) as usize;
    let max_age =
        Duration::from_secs(
            c.range("max_age_seconds", e.max_age_seconds, 86_400, 1, 30 * 86_400) as u64,
        );
    let retry_initial =
        Duration::from_millis(
            c.range("retry_initial_ms", e.retry_initial_ms, 1000, 1, 3_600_000) as u64,
        );
    let retry_max =
        Duration::from_secs(
            c.range("retry_max_seconds", e.retry_max_seconds, 300, 1, 86_400) as u64,
        );
    if retry_max < retry_initial {
        c.err(
            "retry_max_seconds",
            "must not be shorter than retry_initial_ms",
        );
    }
    let request_timeout = Duration::from_secs(c.range(
        "request_timeout_seconds",
        e.request_timeout_seconds,
        5,
        1,
        300,
    ) as u64);
    let known: HashSet<&str> = raw
        .event_targets
        .iter()
        .filter_map(|t| t.id.as_deref())
        .collect();
    let daemon_targets = match &e.targets {
        None => targets.iter().map(|t| t.id.clone()).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                if !known.contains(s.as_str()) {
                    c.err(
                        format!("targets[{i}]"),
                        format!("{s:?} is not the id of an [[event_targets]] entry"),
                    );
                } else if let Ok(id) = s.parse::<TargetId>() {
                    out.push(id);
                }
            }
            out
        }
    };
    (
        EventsSettings {
            queue_directory,
            max_queued_events,
            max_age,
            retry_initial,
            retry_max,
            request_timeout,
            targets: daemon_targets,
        },
        targets,
    )
}

fn carrier(
    report: &mut Report<'_>,
    lbl: &str,
    c: &schema::Carrier,
    id: Option<CarrierId>,
) -> Option<Carrier> {
    let mut ck = Check {
        report,
        at: At::resource(lbl),
    };
    if c.hosts.is_empty() {
        ck.err("hosts", "must list at least one host");
    }
    let mut hosts = Vec::with_capacity(c.hosts.len());
    for (i, h) in c.hosts.iter().enumerate() {
        let mut hc = Check {
            report: ck.report,
            at: ck.at.sub(format!("hosts[{i}]")),
        };
        hosts.extend(hc.route(h, Priority::MAX));
    }
    let source_cidrs = ck.cidrs("source_cidrs", &c.source_cidrs);
    let credentials = c.credentials.as_ref().and_then(|cr| {
        let mut cc = Check {
            report: ck.report,
            at: ck.at.sub("credentials"),
        };
        let username = cc.required("username", &cr.username).map(str::to_owned);
        let password = cc
            .required("password", &cr.password)
            .map(|p| Secret::new(p.to_owned()));
        if username.as_deref() == Some("") {
            cc.err("username", "must not be empty");
        }
        Some(OutboundCredentials {
            username: username?,
            password: password?,
        })
    });
    if c.credentials.is_some() && credentials.is_none() {
        return None;
    }
    hosts.sort_by_key(|h| h.priority);
    (hosts.len() == c.hosts.len() && source_cidrs.len() == c.source_cidrs.len())
        .then_some(())
        .and(Some(Carrier {
            id: id?,
            hosts,
            source_cidrs,
            credentials,
        }))
}

#[allow(clippy::too_many_arguments)]
fn voice_connector(
    report: &mut Report<'_>,
    lbl: &str,
    v: &schema::VoiceConnector,
    id: Option<VcId>,
    region: &str,
    limits: &Limits,
    (known_carriers, any_carrier): (&HashSet<&str>, bool),
    usernames: &mut HashMap<String, String>,
    base: &Path,
    client_ca: bool,
) -> Option<VoiceConnector> {
    let before = report.errors.len();
    let mut c = Check {
        report,
        at: At::resource(lbl),
    };
    let name = v.name.clone().or_else(|| v.id.clone()).unwrap_or_default();
    c.max_len("name", &name, 256);
    let network_type = match &v.network_type {
        Some(n) => c
            .parse::<NetworkType>("network_type", n)
            .unwrap_or_default(),
        None => NetworkType::Ipv4Only,
    };
    let tags = c.tags(&v.tags);

    let termination = match &v.termination {
        None => Termination {
            disabled: true,
            cidr_allowed_list: Vec::new(),
            credentials: Vec::new(),
            cps_limit: CpsLimit::DEFAULT,
            calling_regions: Vec::new(),
            default_phone_number: None,
            carriers: Vec::new(),
            require_client_certificate: false,
        },
        Some(t) => {
            let mut tc = Check {
                report: c.report,
                at: c.at.sub("termination"),
            };
            let cidr_allowed_list = tc.cidrs("cidr_allowed_list", &t.cidr_allowed_list);
            let mut credentials = Vec::new();
            for (i, cr) in t.credentials.iter().enumerate() {
                let mut cc = Check {
                    report: tc.report,
                    at: tc.at.sub(format!("credentials[{i}]")),
                };
                let Some(username) = cc.required("username", &cr.username) else {
                    continue;
                };
                if username.is_empty() {
                    cc.err("username", "must not be empty");
                }
                if let Some(other) = usernames.insert(username.to_owned(), lbl.to_owned()) {
                    cc.err("username", format!("{username:?} is already used by {other}; a digest username identifies one voice connector"));
                }
                let secret = match (&cr.password, &cr.ha1_md5, &cr.ha1_sha256) {
                    (Some(p), None, None) if !p.is_empty() => {
                        Some(DigestSecret::Password(Secret::new(p.clone())))
                    }
                    (Some(_), None, None) => {
                        cc.err("password", "must not be empty");
                        None
                    }
                    (None, Some(h), None) => match decode_hex::<16>(h) {
                        Some(b) => Some(DigestSecret::Ha1Md5(b)),
                        None => {
                            cc.err("ha1_md5", "must be 32 hexadecimal digits");
                            None
                        }
                    },
                    (None, None, Some(h)) => match decode_hex::<32>(h) {
                        Some(b) => Some(DigestSecret::Ha1Sha256(b)),
                        None => {
                            cc.err("ha1_sha256", "must be 64 hexadecimal digits");
                            None
                        }
                    },
                    _ => {
                        cc.err_here("needs exactly one of password, ha1_md5, ha1_sha256");
                        None
                    }
                };
                if let Some(secret) = secret {
                    credentials.push(DigestCredential {
                        username: username.to_owned(),
                        secret,
                    });
                }
            }
            let cps_limit = CpsLimit::new(t.cps_limit.unwrap_or(1))
                .map_err(|e| tc.err("cps_limit", e))
                .unwrap_or(CpsLimit::DEFAULT);
            let mut calling_regions = Vec::new();
            for (i, r) in t.calling_regions.iter().enumerate() {
                if let Some(cty) = tc.parse::<Country>(&format!("calling_regions[{i}]"), r) {
                    if calling_regions.contains(&cty) {
                        tc.err(
                            format!("calling_regions[{i}]"),
                            format!("{cty} is listed twice"),
                        );
                    }
                    calling_regions.push(cty);
                }
            }
            let default_phone_number =
                tc.opt_parse::<E164>("default_phone_number", &t.default_phone_number);
            let mut carriers = Vec::new();
            for (i, cid) in t.carriers.iter().enumerate() {
                let field = format!("carriers[{i}]");
                if !known_carriers.contains(cid.as_str()) {
                    tc.err(&field, format!("carrier {cid:?} does not exist"));
                } else if let Some(cid) = tc.parse::<CarrierId>(&field, cid) {
                    if carriers.contains(&cid) {
                        tc.err(&field, format!("carrier {cid} is listed twice"));
                    }
                    carriers.push(cid);
                }
            }
            if !t.disabled && !any_carrier {
                tc.err_here("is enabled but the file has no [[carriers]] to send calls to");
            }
            if t.require_client_certificate && !client_ca {
                tc.err(
                    "require_client_certificate",
                    "needs tls.client_ca_file: client certificates are verified against it",
                );
            }
            Termination {
                disabled: t.disabled,
                cidr_allowed_list,
                credentials,
                cps_limit,
                calling_regions,
                default_phone_number,
                carriers,
                require_client_certificate: t.require_client_certificate,
            }
        }
    };

    let origination = match &v.origination {
        None => Origination {
            disabled: true,
            routes: Vec::new(),
        },
        Some(o) => {
            let mut oc = Check {
                report: c.report,
                at: c.at.sub("origination"),
            };
            if o.routes.len() > limits.max_routes_per_voice_connector {
                oc.err(
                    "routes",
                    format!(
                        "has {} routes, limits.max_routes_per_voice_connector is {}",
                        o.routes.len(),
                        limits.max_routes_per_voice_connector
                    ),
                );
            }
            if !o.disabled && o.routes.is_empty() {
                oc.err("routes", "origination is enabled but has no routes");
            }
            let mut routes = Vec::new();
            for (i, r) in o.routes.iter().enumerate() {
                let mut rc = Check {
                    report: oc.report,
                    at: oc.at.sub(format!("routes[{i}]")),
                };
                let Some(route) = rc.route(r, Priority::MAX) else {
                    continue;
                };
                if v.require_encryption && route.protocol != Transport::Tls {
                    rc.err(
                        "protocol",
                        format!(
                            "is {} but the voice connector has require_encryption = true; use TLS",
                            route.protocol
                        ),
                    );
                }
                if v.require_encryption
                    && matches!(route.srtp, Some(SrtpPolicy::Off | SrtpPolicy::Offer))
                {
                    rc.err(
                        "srtp",
                        "must be auto or require: the voice connector has require_encryption = true",
                    );
                }
                if network_type == NetworkType::Ipv4Only
                    && matches!(route.host, Host::Ip(IpAddr::V6(_)))
                {
                    rc.err("host", "is an IPv6 address but network_type is IPV4_ONLY");
                }
                routes.push(route);
            }
            routes.sort_by_key(|r| r.priority);
            Origination {
                disabled: o.disabled,
                routes,
            }
        }
    };

    let logging = VcLogging {
        enable_sip_logs: v.logging.enable_sip_logs,
        enable_media_metric_logs: v.logging.enable_media_metric_logs,
    };

    let streaming = match &v.streaming {
        None => Streaming::default(),
        Some(s) => {
            let mut sc = Check {
                report: c.report,
                at: c.at.sub("streaming"),
            };
            let hours = sc.range(
                "data_retention_in_hours",
                s.data_retention_in_hours,
                0,
                0,
                87_600,
            ) as u32;
            let mut sinks = Vec::new();
            for (i, k) in s.sinks.iter().enumerate() {
                let mut kc = Check {
                    report: sc.report,
                    at: sc.at.sub(format!("sinks[{i}]")),
                };
                match k.kind.as_deref() {
                    Some("websocket") => match kc.required("url", &k.url) {
                        Some(u) if u.starts_with("ws://") || u.starts_with("wss://") => {
                            sinks.push(StreamingSink::WebSocket { url: u.to_owned() })
                        }
                        Some(u) => kc.err("url", format!("{u:?} is not a ws:// or wss:// URL")),
                        None => {}
                    },
                    Some("wav") => {
                        if let Some(d) = kc.required("directory", &k.directory) {
                            sinks.push(StreamingSink::Wav {
                                directory: resolve(base, d),
                            });
                        }
                    }
                    Some(other) => {
                        kc.err("type", format!("{other:?} is not one of websocket, wav"))
                    }
                    None => kc.err("type", "is required (websocket or wav)"),
                }
            }
            if !s.disabled && s.sinks.is_empty() {
                sc.err("sinks", "streaming is enabled but has no sinks");
            }
            // Whether each names a configured target is checked once every
            // target is known (`notification_target_references`).
            let mut notification_targets = Vec::new();
            if let Some(list) = &s.notification_targets {
                if !(1..=3).contains(&list.len()) {
                    sc.err(
                        "notification_targets",
                        format!("has {} ids; 1 to 3 are allowed", list.len()),
                    );
                }
                for (i, t) in list.iter().enumerate() {
                    if let Some(id) = sc.parse(&format!("notification_targets[{i}]"), t) {
                        notification_targets.push(id);
                    }
                }
            }
            let channels = match s.channels.as_deref() {
                None | Some("per_leg") => StreamChannels::PerLeg,
                Some("stereo") => StreamChannels::Stereo,
                Some(other) => {
                    sc.err(
                        "channels",
                        format!("{other:?} is not one of per_leg, stereo"),
                    );
                    StreamChannels::PerLeg
                }
            };
            let defaults = StreamReconnect::default();
            let max_attempts = sc.range(
                "max_reconnects",
                s.max_reconnects,
                i64::from(defaults.max_attempts),
                0,
                100,
            ) as u32;
            let initial_ms = sc.range(
                "reconnect_initial_ms",
                s.reconnect_initial_ms,
                defaults.initial.as_millis() as i64,
                10,
                60_000,
            ) as u64;
            let max_ms = sc.range(
                "reconnect_max_ms",
                s.reconnect_max_ms,
                defaults.max.as_millis() as i64,
                10,
                300_000,
            ) as u64;
            if max_ms < initial_ms {
                sc.err(
                    "reconnect_max_ms",
                    format!("{max_ms} is below reconnect_initial_ms ({initial_ms})"),
                );
            }
            let queue_frames = sc.range(
                "queue_frames",
                s.queue_frames,
                DEFAULT_STREAM_QUEUE_FRAMES as i64,
                10,
                15_000,
            ) as usize;
            Streaming {
                disabled: s.disabled,
                data_retention_in_hours: hours,
                sinks,
                notification_targets,
                channels,
                reconnect: StreamReconnect {
                    max_attempts,
                    initial: Duration::from_millis(initial_ms),
                    max: Duration::from_millis(max_ms.max(initial_ms)),
                },
                queue_frames,
                record_store: s.record_store,
            }
        }
    };

    let emergency = v.emergency.as_ref().and_then(|e| {
        let mut ec = Check {
            report: c.report,
            at: c.at.sub("emergency"),
        };
        let country = ec
            .required("calling_country", &e.calling_country)
            .and_then(|s| ec.parse::<Country>("calling_country", s));
        let number = ec
            .required("emergency_phone_number", &e.emergency_phone_number)
            .and_then(|s| ec.parse::<E164>("emergency_phone_number", s));
        let test = ec.opt_parse::<E164>("test_phone_number", &e.test_phone_number);
        let callback = ec.opt_parse::<E164>("callback_phone_number", &e.callback_phone_number);
        Some(Emergency {
            calling_country: country?,
            emergency_phone_number: number?,
            test_phone_number: test,
            callback_phone_number: callback,
        })
    });

    if report.errors.len() != before {
        return None;
    }
    Some(VoiceConnector {
        id: id?,
        name,
        aws_region: v.aws_region.clone().unwrap_or_else(|| region.to_owned()),
        require_encryption: v.require_encryption,
        network_type,
        tags,
        termination,
        origination,
        logging,
        streaming,
        emergency,
    })
}

fn group(
    report: &mut Report<'_>,
    lbl: &str,
    g: &schema::VoiceConnectorGroup,
    id: Option<GroupId>,
    limits: &Limits,
    known_vcs: &HashSet<&str>,
) -> Option<VoiceConnectorGroup> {
    let before = report.errors.len();
    let mut c = Check {
        report,
        at: At::resource(lbl),
    };
    let name = g.name.clone().or_else(|| g.id.clone()).unwrap_or_default();
    c.max_len("name", &name, 256);
    let tags = c.tags(&g.tags);
    let n = g.voice_connector_items.len();
    if n == 0 {
        c.err(
            "voice_connector_items",
            "must list at least one voice connector",
        );
    } else if n > limits.max_voice_connectors_per_group {
        c.err(
            "voice_connector_items",
            format!(
                "has {n} voice connectors, limits.max_voice_connectors_per_group is {}",
                limits.max_voice_connectors_per_group
            ),
        );
    }
    unique_priorities(
        &mut c,
        "voice_connector_items",
        g.voice_connector_items.iter().map(|i| i.priority),
    );
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for (i, it) in g.voice_connector_items.iter().enumerate() {
        let mut ic = Check {
            report: c.report,
            at: c.at.sub(format!("voice_connector_items[{i}]")),
        };
        let vc = ic
            .required("voice_connector_id", &it.voice_connector_id)
            .and_then(|v| {
                if !known_vcs.contains(v) {
                    ic.err(
                        "voice_connector_id",
                        format!("voice connector {v:?} does not exist"),
                    );
                    return None;
                }
                if !seen.insert(v) {
                    ic.err(
                        "voice_connector_id",
                        format!("voice connector {v:?} is listed twice"),
                    );
                }
                ic.parse::<VcId>("voice_connector_id", v)
            });
        let prio = match it.priority {
            Some(p) => Priority::new(p, 99).map_err(|e| ic.err("priority", e)).ok(),
            None => {
                ic.err("priority", "is required");
                None
            }
        };
        if let (Some(vc), Some(priority)) = (vc, prio) {
            items.push(GroupItem {
                voice_connector_id: vc,
                priority,
            });
        }
    }
    items.sort_by_key(|i| i.priority);
    if report.errors.len() != before {
        return None;
    }
    Some(VoiceConnectorGroup {
        id: id?,
        name,
        voice_connector_items: items,
        tags,
    })
}

fn number(
    report: &mut Report<'_>,
    lbl: &str,
    n: &schema::Number,
    known_vcs: &HashSet<&str>,
    known_groups: &HashSet<&str>,
    now: SystemTime,
) -> Option<Number> {
    let before = report.errors.len();
    let mut c = Check {
        report,
        at: At::resource(lbl),
    };
    let e164 = c
        .required("e164_phone_number", &n.e164_phone_number)
        .and_then(|s| c.parse::<E164>("e164_phone_number", s));
    let product_type = match n.product_type.as_deref() {
        None | Some("VoiceConnector") => ProductType::VoiceConnector,
        Some("SipMediaApplicationDialIn") => ProductType::SipMediaApplicationDialIn,
        Some(p) => {
            c.err(
                "product_type",
                format!("{p:?} is not one of VoiceConnector, SipMediaApplicationDialIn"),
            );
            ProductType::VoiceConnector
        }
    };
    let assignment = match (&n.voice_connector_id, &n.voice_connector_group_id) {
        (Some(_), Some(_)) => {
            c.err("voice_connector_group_id", "the number is assigned twice: set voice_connector_id or voice_connector_group_id, not both");
            Assignment::Unassigned
        }
        (Some(v), None) if !known_vcs.contains(v.as_str()) => {
            c.err(
                "voice_connector_id",
                format!("voice connector {v:?} does not exist"),
            );
            Assignment::Unassigned
        }
        (None, Some(g)) if !known_groups.contains(g.as_str()) => {
            c.err(
                "voice_connector_group_id",
                format!("voice connector group {g:?} does not exist"),
            );
            Assignment::Unassigned
        }
        (Some(v), None) => c
            .parse::<VcId>("voice_connector_id", v)
            .map(Assignment::VoiceConnector)
            .unwrap_or(Assignment::Unassigned),
        (None, Some(g)) => c
            .parse::<GroupId>("voice_connector_group_id", g)
            .map(Assignment::VoiceConnectorGroup)
            .unwrap_or(Assignment::Unassigned),
        (None, None) => Assignment::Unassigned,
    };
    if product_type == ProductType::SipMediaApplicationDialIn
        && assignment != Assignment::Unassigned
    {
        c.err("product_type", "a SipMediaApplicationDialIn number is used by SIP rules and cannot be assigned to a voice connector or group");
    }
    if let Some(name) = &n.calling_name {
        let len = name.chars().count();
        if !(2..=15).contains(&len)
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == ' ')
        {
            c.err(
                "calling_name",
                format!("{name:?} must be 2 to 15 characters of A-Z, a-z, 0-9 and space"),
            );
        }
    }
    if let Some(name) = &n.name {
        c.max_len("name", name, 256);
    }
    let deleted_at = n
        .deleted_at
        .as_deref()
        .and_then(|s| match parse_rfc3339(s) {
            Some(t) => Some(t),
            None => {
                c.err(
                    "deleted_at",
                    format!("{s:?} is not an RFC 3339 time such as 2026-11-20T10:00:00Z"),
                );
                None
            }
        });
    if deleted_at.is_some() && assignment != Assignment::Unassigned {
        c.err(
            "deleted_at",
            "a number in the deletion queue cannot be assigned",
        );
    }
    if deleted_at.is_some_and(|t| t > now) {
        c.err("deleted_at", "is in the future");
    }
    let port_in_status = n.port_in_status.as_deref().and_then(|s| {
        let st = match s {
            "Submitted" => PortInStatus::Submitted,
            "PendingDocuments" => PortInStatus::PendingDocuments,
            "Foc" => PortInStatus::Foc,
            "Exception" => PortInStatus::Exception,
            "ChangeRequested" => PortInStatus::ChangeRequested,
            "CancelRequested" => PortInStatus::CancelRequested,
            "Cancelled" => PortInStatus::Cancelled,
            "Completed" => PortInStatus::Completed,
            _ => {
                c.err("port_in_status", format!("{s:?} is not one of Submitted, PendingDocuments, Foc, Exception, ChangeRequested, CancelRequested, Cancelled, Completed"));
                return None;
            }
        };
        Some(st)
    });
    if report.errors.len() != before {
        return None;
    }
    Some(Number {
        e164_phone_number: e164?,
        product_type,
        assignment,
        calling_name: n.calling_name.clone(),
        name: n.name.clone(),
        deleted_at,
        port_in_status,
    })
}

fn sma(
    report: &mut Report<'_>,
    lbl: &str,
    s: &schema::SipMediaApplication,
    id: Option<SmaId>,
    region: &str,
    base: &Path,
) -> Option<SipMediaApplication> {
    let before = report.errors.len();
    let mut c = Check {
        report,
        at: At::resource(lbl),
    };
    let name = s.name.clone().or_else(|| s.id.clone()).unwrap_or_default();
    c.max_len("name", &name, 256);
    let tags = c.tags(&s.tags);
    if s.endpoints.is_empty() {
        c.err("endpoints", "must list at least one endpoint");
    }
    unique_priorities(&mut c, "endpoints", s.endpoints.iter().map(|e| e.priority));
    let mut endpoints = Vec::new();
    for (i, e) in s.endpoints.iter().enumerate() {
        let mut ec = Check {
            report: c.report,
            at: c.at.sub(format!("endpoints[{i}]")),
        };
        let url = ec.required("url", &e.url).and_then(|u| {
            let rest = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"));
            let host = rest.map(|r| r.split(['/', '?']).next().unwrap_or(""));
            match host {
                Some(h) if !h.is_empty() => Some(u.to_owned()),
                _ => {
                    ec.err(
                        "url",
                        format!("{u:?} is not an http:// or https:// URL with a host"),
                    );
                    None
                }
            }
        });
        let priority = Priority::new(e.priority.unwrap_or(1), Priority::MAX)
            .map_err(|er| ec.err("priority", er))
            .ok();
        if let (Some(url), Some(priority)) = (url, priority) {
            endpoints.push(SmaEndpoint { url, priority });
        }
    }
    endpoints.sort_by_key(|e| e.priority);
    // A `whsec_` key (Standard Webhooks), as event targets take theirs.
    let source = SecretSource {
        inline: s.webhook_secret.as_deref(),
        file: s.webhook_secret_file.as_deref(),
        env: s.webhook_secret_env.as_deref(),
    };
    let webhook_secret = c
        .secret("webhook_secret", &source, base, false)
        .and_then(|k| {
            trunkd_core::events::signing::WebhookKey::from_whsec(k.expose())
                .map_err(|e| c.err("webhook_secret", e))
                .ok()
        });
    if report.errors.len() != before {
        return None;
    }
    Some(SipMediaApplication {
        id: id?,
        name,
        aws_region: s.aws_region.clone().unwrap_or_else(|| region.to_owned()),
        endpoints,
        webhook_secret,
        tags,
    })
}

fn sip_rule(
    report: &mut Report<'_>,
    lbl: &str,
    r: &schema::SipRule,
    id: Option<RuleId>,
    known_smas: &HashSet<&str>,
) -> Option<SipRule> {
    let before = report.errors.len();
    let mut c = Check {
        report,
        at: At::resource(lbl),
    };
    let name = r.name.clone().or_else(|| r.id.clone()).unwrap_or_default();
    c.max_len("name", &name, 256);
    let value = c.required("trigger_value", &r.trigger_value);
    let trigger = match (c.required("trigger_type", &r.trigger_type), value) {
        (Some("ToPhoneNumber"), Some(v)) => c
            .parse::<E164>("trigger_value", v)
            .map(SipRuleTrigger::ToPhoneNumber),
        (Some("RequestUriHostname"), Some(v)) => {
            if is_hostname(v) {
                Some(SipRuleTrigger::RequestUriHostname(v.to_ascii_lowercase()))
            } else {
                c.err("trigger_value", format!("{v:?} is not a valid host name"));
                None
            }
        }
        (Some(t @ ("ToPhoneNumber" | "RequestUriHostname")), None) => {
            let _ = t;
            None
        }
        (Some(t), _) => {
            c.err(
                "trigger_type",
                format!("{t:?} is not one of ToPhoneNumber, RequestUriHostname"),
            );
            None
        }
        (None, _) => None,
    };
    if !r.disabled && r.target_applications.is_empty() {
        c.err(
            "target_applications",
            "an enabled SIP rule needs at least one target application",
        );
    }
    unique_priorities(
        &mut c,
        "target_applications",
        r.target_applications.iter().map(|t| t.priority),
    );
    let mut targets = Vec::new();
    for (i, t) in r.target_applications.iter().enumerate() {
        let mut tc = Check {
            report: c.report,
            at: c.at.sub(format!("target_applications[{i}]")),
        };
        let sma = tc
            .required("sip_media_application_id", &t.sip_media_application_id)
            .and_then(|s| {
                if !known_smas.contains(s) {
                    tc.err(
                        "sip_media_application_id",
                        format!("SIP media application {s:?} does not exist"),
                    );
                    return None;
                }
                tc.parse::<SmaId>("sip_media_application_id", s)
            });
        let priority = Priority::new(t.priority.unwrap_or(1), 25)
            .map_err(|e| tc.err("priority", e))
            .ok();
        if let (Some(sma), Some(priority)) = (sma, priority) {
            targets.push(SipRuleTarget {
                sip_media_application_id: sma,
                priority,
            });
        }
    }
    targets.sort_by_key(|t| t.priority);
    if report.errors.len() != before {
        return None;
    }
    Some(SipRule {
        id: id?,
        name,
        trigger: trigger?,
        disabled: r.disabled,
        target_applications: targets,
    })
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    fn check(source: SecretSource<'_>, required: bool) -> (Option<String>, Vec<String>) {
        let file = Path::new("trunkd.toml");
        let mut report = Report::new(file);
        let mut c = Check {
            report: &mut report,
            at: At::resource("event_targets[ops]"),
        };
        let base = std::env::temp_dir();
        let got = c.secret("secret", &source, &base, required);
        let errors = report
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect();
        (got.map(|s| s.expose().to_owned()), errors)
    }

    #[test]
    fn a_secret_comes_inline_from_a_file_or_from_the_environment() {
        let inline = SecretSource {
            inline: Some("whsec_abc"),
            ..Default::default()
        };
        assert_eq!(check(inline, true), (Some("whsec_abc".into()), vec![]));

        let path = std::env::temp_dir().join(format!("trunkd-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let name = path.to_string_lossy().into_owned();
        let file = SecretSource {
            file: Some(&name),
            ..Default::default()
        };
        assert_eq!(check(file, true), (Some("from-file".into()), vec![]));
        std::fs::remove_file(&path).unwrap();

        std::env::set_var("TRUNKD_TEST_SECRET_SOURCE", "from-env");
        let env = SecretSource {
            env: Some("TRUNKD_TEST_SECRET_SOURCE"),
            ..Default::default()
        };
        assert_eq!(check(env, true), (Some("from-env".into()), vec![]));
    }

    #[test]
    fn two_ways_a_missing_way_or_an_empty_secret_are_errors_that_never_show_it() {
        let both = SecretSource {
            inline: Some("s3cr3t"),
            env: Some("X"),
            ..Default::default()
        };
        let (got, errors) = check(both, true);
        assert_eq!(got, None);
        assert_eq!(
            errors,
            vec!["secret: set only one of secret, secret_file, secret_env".to_owned()]
        );
        assert!(!errors.concat().contains("s3cr3t"));

        let (got, errors) = check(SecretSource::default(), true);
        assert_eq!(got, None);
        assert_eq!(
            errors,
            vec!["secret: is required (or secret_file, or secret_env)".to_owned()]
        );
        assert_eq!(check(SecretSource::default(), false), (None, vec![]));

        let unset = SecretSource {
            env: Some("TRUNKD_TEST_SECRET_SOURCE_UNSET"),
            ..Default::default()
        };
        assert_eq!(
            check(unset, true).1,
            vec![
                "secret_env: environment variable \"TRUNKD_TEST_SECRET_SOURCE_UNSET\" is not set"
                    .to_owned()
            ]
        );
        let empty = SecretSource {
            inline: Some(""),
            ..Default::default()
        };
        assert_eq!(
            check(empty, true).1,
            vec!["secret: must not be empty".to_owned()]
        );
    }
}
