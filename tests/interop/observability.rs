//! The Grafana dashboard and the Prometheus alert rules (issue 14,
//! docs/observability.md) checked against the real thing: `promtool check
//! rules` and `promtool test rules` (Debian package `prometheus`) on
//! deploy/prometheus/, the dashboard JSON's shape, and every metric name the
//! dashboard's queries and the rules' expressions use looked up in the
//! `/metrics` of a running daemon that has carried a call with RTP and RTCP,
//! failed an admission, uploaded to a (dead) record sink and probed routes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::ua::*;

const PBX: &str = "127.0.0.3";
const CARRIER: &str = "127.0.0.2";

/// Names the queries use that a daemon only exports after events this test
/// does not cause. Each needs a reason; everything else must be scraped.
const ONLY_AFTER_EVENTS: &[(&str, &str)] = &[
    (
        "sma_invocations_total",
        "first series at an application call's first webhook request; no SMA call here (tests/interop/sma.rs covers it)",
    ),
    (
        "voice_connector_throttles_total",
        "first series when a VC's cps_limit refuses a call (tests/interop/calls.rs cps_limit_throttles_with_503_and_retry_after)",
    ),
    (
        "sip_requests_refused_total",
        "first series when [security] refuses a request (scanner, flood, call caps)",
    ),
    (
        "route_failures_total",
        "first series at a route's first hop failure",
    ),
    (
        "media_packets_dropped_total",
        "first series at the first media packet not relayed",
    ),
    (
        "tls_certificate_not_after_timestamp_seconds",
        "a series per [tls] certificate file; this daemon has none \
         (certificate_expiry_is_exported_for_every_certificate_file covers it)",
    ),
];

/// Names the rules use for metrics trunkd does not export yet (the rule
/// waits for them; docs/observability.md). The test insists they are
/// absent, so that this list is emptied when the metric lands.
const PROPOSED: &[&str] = &[];

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

/// promtool from `$PATH`; a clear failure when it is not installed.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found on PATH: install the Debian package `prometheus` \
                 (scripts/test installs it) to check deploy/prometheus/"
            )
        })
}

fn run_promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One alerting rule as written in the rules file.
#[derive(Debug)]
struct Rule {
    alert: String,
    expr: String,
    text: String,
}

/// The alerting rules of a rules file: a small reader of the layout
/// deploy/prometheus/trunkd-alerts.yml uses (`- alert:` items, `expr:` on
/// one line or as a `|` block), enough to get every expression out without
/// a YAML dependency; promtool checks the YAML itself.
fn rules(text: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert:") {
            rules.push(Rule {
                alert: name.trim().to_string(),
                expr: String::new(),
                text: String::new(),
            });
            continue;
        }
        if t.starts_with("- name:") || t.starts_with('#') {
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        rule.text.push_str(line);
        rule.text.push('\n');
        if let Some(expr) = t.strip_prefix("expr:") {
            let expr = expr.trim();
            if expr == "|" || expr == ">" {
                let indent = line.len() - t.len();
                while let Some(next) = lines.peek() {
                    let nt = next.trim_start();
                    if !nt.is_empty() && next.len() - nt.len() <= indent {
                        break;
                    }
                    rule.expr.push_str(nt);
                    rule.expr.push('\n');
                    lines.next();
                }
            } else {
                rule.expr = expr.to_string();
            }
        }
    }
    rules
}

/// Keywords (`by (…)` and the like take a label list, skipped), binary
/// operators and literals.
#[rustfmt::skip]
const PROMQL_KEYWORDS: &[&str] = &[
    "and", "or", "unless", "offset", "bool", "inf", "nan", "by", "without", "on", "ignoring",
    "group_left", "group_right", "atan2",
];

/// Aggregation operators: reserved words, followed by `(` or by `by (…)`.
#[rustfmt::skip]
const PROMQL_AGGREGATIONS: &[&str] = &[
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
];

/// Metric names in a PromQL expression (or a Grafana query): identifiers
/// that are not function or aggregation names (followed by `(`), not
/// keywords, and not inside label matchers `{…}`, ranges `[…]`, strings,
/// or the label lists of `by`/`without`/`on`/`ignoring`/`group_*`.
/// Grafana's `$variables` are skipped wherever they stand.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let skip_to = |mut i: usize, open: u8, close: u8| {
        let mut depth = 0usize;
        while i < b.len() {
            if b[i] == b'"' || b[i] == b'\'' {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            } else if b[i] == open {
                depth += 1;
            } else if b[i] == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            i += 1;
        }
        i
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => i = skip_to(i, b'{', b'}'),
            b'[' => i = skip_to(i, b'[', b']'),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (ident(b[i]) || b[i] == b'.') {
                    i += 1;
                }
            }
            b'$' => {
                i += 1;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let call = j < b.len() && b[j] == b'(';
                let lower = word.to_ascii_lowercase();
                if PROMQL_AGGREGATIONS.contains(&lower.as_str()) {
                    // `sum by (…) (…)`: the label list goes with `by`.
                } else if PROMQL_KEYWORDS.contains(&lower.as_str()) {
                    if call && lower != "atan2" {
                        i = skip_to(j, b'(', b')');
                    }
                } else if !call {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(deploy("grafana/trunkd.json")).expect("read dashboard");
    serde_json::from_str(&text).expect("deploy/grafana/trunkd.json is JSON")
}

/// Every query of the dashboard: panel targets and query variables.
fn dashboard_queries(d: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap_or_default().to_string());
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(metric, label): the metric is the first argument.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split(',').next())
                .unwrap_or(q);
            out.push(inner.to_string());
        }
    }
    out
}

#[test]
fn metric_names_are_parsed_out_of_promql() {
    let got = metric_names(
        r#"sum by (voice_connector_id, direction) (rate(voice_connector_calls_answered_total{voice_connector_id=~"$voice_connector_id", x="a{b"}[$__rate_interval]))
           / on (job) group_left (region) histogram_quantile(0.95, sum by (le) (rate(voice_connector_mos_bucket[15m] offset 15m)))
           and time() - config_last_reload_success_timestamp_seconds > 14 * 86400 unless route_up == bool 1e3"#,
    );
    let want: BTreeSet<String> = [
        "voice_connector_calls_answered_total",
        "voice_connector_mos_bucket",
        "config_last_reload_success_timestamp_seconds",
        "route_up",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let text = std::fs::read_to_string(deploy("prometheus/trunkd-alerts.yml")).unwrap();
    let rules = rules(&text);
    let (ok, out) = run_promtool(&["check", "rules", "trunkd-alerts.yml"]);
    assert!(ok, "promtool check rules:\n{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "promtool sees other rules than this test reads:\n{out}\n{rules:#?}"
    );
    let (ok, out) = run_promtool(&["test", "rules", "trunkd-alerts.test.yml"]);
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // What pages an operator (issue 14), each with a delay, a severity
    // and words for the operator; each has a unit test where it fires.
    let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    for want in [
        "TrunkdVoiceConnectorAnswerRatioCollapse",
        "TrunkdAllProbedRoutesDown",
        "TrunkdMosLow",
        "TrunkdRecordsSpoolBacklog",
        "TrunkdRecordsSpoolGrowing",
        "TrunkdEventsBacklogGrowing",
        "TrunkdConfigReloadFailed",
        "TrunkdCertificateExpiring",
    ] {
        assert!(names.contains(want), "no alert {want}: {names:?}");
    }
    let tests = std::fs::read_to_string(deploy("prometheus/trunkd-alerts.test.yml")).unwrap();
    for r in &rules {
        assert!(!r.expr.trim().is_empty(), "{} has no expr", r.alert);
        assert!(r.text.contains("for: "), "{} has no `for:`", r.alert);
        assert!(
            r.text.contains("severity: critical") || r.text.contains("severity: warning"),
            "{} has no severity",
            r.alert
        );
        assert!(r.text.contains("summary: "), "{} has no summary", r.alert);
        assert!(
            r.text.contains("description: "),
            "{} has no description",
            r.alert
        );
        let fires = tests
            .split("alertname: ")
            .skip(1)
            .any(|t| t.starts_with(&format!("{}\n", r.alert)) && t.contains("- exp_labels:"));
        assert!(fires, "no unit test where {} fires", r.alert);
    }
}

#[test]
fn the_dashboard_is_an_importable_grafana_dashboard() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{}",
        d["schemaVersion"]
    );
    assert_eq!(d["uid"], "trunkd-overview");
    let vars = d["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let vc = var("voice_connector_id");
    assert_eq!(vc["type"], "query");
    assert_eq!(
        vc["query"]["query"],
        "label_values(voice_connector_call_attempts_total, voice_connector_id)"
    );
    assert_eq!(vc["datasource"]["uid"], "${datasource}");

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{}", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().expect("title");
        titles.push(title.to_string());
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!metric_names(expr).is_empty(), "panel {title}: {expr:?}");
            assert!(t["refId"].as_str().is_some(), "panel {title}");
        }
    }
    // What issue 14 asks the dashboard to show.
    for want in [
        "Call attempts by VC and direction",
        "Active calls",
        "Answer ratio",
        "Admission rejections by reason",
        "SIP responses sent by class, per VC",
        "Throttles (calls-per-second limit)",
        "Jitter p95 by VC and direction",
        "RTT p95 by VC and side",
        "MOS by VC and side (mean and 5th percentile)",
        "Packet loss by VC and direction",
        "Route state (probing)",
        "Records spool",
        "Events queued and delivered",
        "Streaming frames dropped",
        "Config reloads",
        "Invocations by application and result",
    ] {
        assert!(
            titles.iter().any(|t| t == want),
            "no panel {want:?}: {titles:?}"
        );
    }
}

/// Sends `n` paced RTP packets (20 ms of PCMU each, 5 ms apart).
fn send_rtp(from: &std::net::UdpSocket, to: std::net::SocketAddr, n: u16, ssrc: u32) {
    for seq in 0..n {
        from.send_to(&rtp_packet(seq, u32::from(seq) * 160, ssrc), to)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sample names (`name{…} value` → `name`) of a scrape.
fn scraped_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

fn wait_for_names(d: &Daemon, names: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let m = d.metrics();
        let have = scraped_names(&m);
        let missing: Vec<&&str> = names.iter().filter(|n| !have.contains(**n)).collect();
        if missing.is_empty() {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "never scraped {missing:?} within {limit:?}:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_metric_the_dashboard_and_the_rules_use_is_exported() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    // A dead port for the record sink: uploads are tried and retried.
    let dead = free_port();
    let base = format!(
        r#"
[daemon]
state_dir = "var"
[sip]
udp = ["127.0.0.1:{sip}"]
tcp = []
[admin]
listen = "127.0.0.1:{admin}"
[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.2/32"]
hosts = [ {{ host = "127.0.0.2", port = {carrier} }} ]
[[voice_connectors]]
id = "vc-east"
[voice_connectors.termination]
cidr_allowed_list = ["127.0.0.3/32"]
calling_regions = ["US"]
cps_limit = 100
[voice_connectors.origination]
routes = [ {{ host = "127.0.0.4", port = {pbx_port}, protocol = "UDP" }} ]
[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"
[[sip_media_applications]]
id = "sma-ivr"
endpoints = [ {{ url = "http://127.0.0.1:{dead}/sma", priority = 1 }} ]
[[event_targets]]
id = "ops"
type = "file"
path = "var/events.jsonl"
[records]
upload_retry_initial_ms = 200
upload_retry_max_seconds = 2
[[records.sinks]]
id = "s3"
type = "s3"
endpoint = "http://127.0.0.1:{dead}"
bucket = "cdrs"
prefix = "trunkd"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "not-a-secret"
"#,
        sip = ports.sip,
        admin = ports.admin,
        carrier = callee.sip_addr().port(),
        pbx_port = free_port_on("127.0.0.4"),
    );
    let d = Daemon::start("observability", ports, &base);

    // A termination call with RTP both ways and an RTCP SR/RR pair, so the
    // per-VC call and media families (jitter, RTT, MOS) have samples.
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let b_side = offer.sdp_rtp();
    let b_rtcp = std::net::SocketAddr::new(b_side.ip(), b_side.port() + 1);
    let a_rtcp = std::net::SocketAddr::new(dialog.trunkd_rtp.ip(), dialog.trunkd_rtp.port() + 1);
    send_rtp(&caller.rtp, dialog.trunkd_rtp, 50, 0x1111);
    send_rtp(&callee.rtp, b_side, 50, 0x2222);
    let ntp: u64 = 0xE8A1_B2C3_0004_0000;
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0x2222u32.to_be_bytes());
    sr.extend_from_slice(&ntp.to_be_bytes());
    sr.extend_from_slice(&[0u8; 12]);
    callee.rtcp.send_to(&sr, b_rtcp).unwrap();
    let mut buf = [0u8; 1500];
    let _ = caller.rtcp.recv_from(&mut buf);
    let lsr = ((ntp >> 16) & 0xffff_ffff) as u32;
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x1111u32.to_be_bytes());
    rr.extend_from_slice(&0x2222u32.to_be_bytes());
    rr.extend_from_slice(&[0u8; 12]); // loss, highest seq, jitter
    rr.extend_from_slice(&lsr.to_be_bytes());
    rr.extend_from_slice(&0u32.to_be_bytes()); // DLSR
    caller.rtcp.send_to(&rr, a_rtcp).unwrap();
    let _ = callee.rtcp.recv_from(&mut buf);
    hang_up(&caller, &callee, &mut dialog, "+12065550100");

    // A refused call: a number that is not E.164 (admission rejection,
    // a 4xx of the VC).
    let refused = send_invite(
        &caller,
        d.sip(),
        "12345",
        "+12065550100",
        &caller.sdp("sendrecv"),
    );
    let answer = caller.recv_until(Duration::from_secs(5), |m| {
        m.status().is_some_and(|s| s >= 400) && m.header("Call-ID").is_some_and(|c| c == refused)
    });
    assert!(
        answer.status().is_some_and(|s| (400..500).contains(&s)),
        "{answer:?}"
    );

    // A reload that turns OPTIONS probing on: route_probe_up and
    // route_probes_total appear (the test carrier does not answer OPTIONS:
    // the route goes down, which is a sample all the same, and an event).
    let probing = format!(
        "{base}\n[probing]\ninterval_seconds = 1\ntimeout_ms = 300\nfailure_threshold = 1\nsuccess_threshold = 1\n"
    );
    std::fs::write(&d.config, probing).unwrap();
    d.signal(libc::SIGHUP);

    let m = wait_for_names(
        &d,
        &[
            "voice_connector_mos_count",
            "voice_connector_rtt_seconds_count",
            "voice_connector_jitter_seconds_count",
            "voice_connector_admission_rejections_total",
            "route_probe_up",
            // The first probe's end, and the route's state change event
            // it causes, delivered to the file target.
            "route_probes_total",
            "events_total",
            "records_uploads_total",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(
        metric_value(&m, "config_reloads_total{result=\"success\"}"),
        Some(1.0),
        "{m}"
    );
    // vc-east's origination route, joined by the per-VC route alert.
    let pbx_route = format!(
        "route_info{{route=\"127.0.0.4:{}/UDP\",voice_connector_id=\"vc-east\"}}",
        base.split("host = \"127.0.0.4\", port = ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap()
    );
    assert_eq!(metric_value(&m, &pbx_route), Some(1.0), "{m}");
    let have = scraped_names(&m);

    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut wherefrom: Vec<(String, String)> = Vec::new();
    for q in dashboard_queries(&dashboard()) {
        for n in metric_names(&q) {
            wherefrom.push((n.clone(), format!("dashboard: {q}")));
            used.insert(n);
        }
    }
    let text = std::fs::read_to_string(deploy("prometheus/trunkd-alerts.yml")).unwrap();
    for r in rules(&text) {
        for n in metric_names(&r.expr) {
            wherefrom.push((n.clone(), format!("alert {}", r.alert)));
            used.insert(n);
        }
    }
    assert!(used.len() >= 40, "the parser found too few names: {used:?}");

    let mut missing = Vec::new();
    for n in &used {
        if have.contains(n) {
            continue;
        }
        if ONLY_AFTER_EVENTS.iter().any(|(a, _)| a == n) || PROPOSED.contains(&n.as_str()) {
            continue;
        }
        let uses: Vec<&String> = wherefrom
            .iter()
            .filter(|(w, _)| w == n)
            .map(|(_, q)| q)
            .collect();
        missing.push(format!("{n} (used by {uses:?})"));
    }
    assert!(
        missing.is_empty(),
        "names the dashboard or the rules use that trunkd does not export:\n{}\n\nscraped: {have:?}",
        missing.join("\n")
    );
    for p in PROPOSED {
        assert!(
            used.contains(*p),
            "{p} is no longer used: take it off PROPOSED"
        );
        assert!(
            !have.contains(*p),
            "trunkd exports {p} now: take it off PROPOSED and the 'waiting' notes in \
             deploy/prometheus/trunkd-alerts.yml and docs/observability.md"
        );
    }
    for (n, _) in ONLY_AFTER_EVENTS {
        assert!(
            used.contains(*n),
            "{n} is no longer used: take it off ONLY_AFTER_EVENTS"
        );
    }
}

/// `tls_certificate_not_after_timestamp_seconds{file}`: a daemon with a
/// TLS listener, its `cert_file` and an SNI certificate, each with a
/// notAfter of the test's choosing; /metrics shows both, and a reload with
/// a renewed certificate and no SNI entry shows the new date and drops the
/// SNI file's series.
#[test]
fn certificate_expiry_is_exported_for_every_certificate_file() {
    use crate::tls::{tls_daemon_sections, write_leaf, Ca};
    let certs = temp_dir("obs-cert-expiry");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Ca::new();
    let leaf = |y, m, d| {
        let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.not_after = rcgen::date_time_ymd(y, m, d);
        ca.sign(p)
    };
    // 2031-05-17T00:00:00Z and 2030-01-02T00:00:00Z.
    let (cert, key) = write_leaf(&certs, "server", &leaf(2031, 5, 17));
    let (sni_cert, sni_key) = write_leaf(&certs, "edge", &leaf(2030, 1, 2));
    let ca_file = ca.write(&certs);
    let ports = Ports::pick();
    let base = tls_daemon_sections(ports, free_port(), &cert, &key, &ca_file);
    let with_sni = base.replace(
        "[sip]\n",
        &format!(
            "sni_certificates = [ {{ server_name = \"edge.trunkd.example\", cert_file = {sni_cert:?}, key_file = {sni_key:?} }} ]\n[sip]\n"
        ),
    );
    assert_ne!(with_sni, base);
    let d = Daemon::start("obs-cert-expiry", ports, &with_sni);
    let series = |f: &std::path::Path| {
        format!(
            "tls_certificate_not_after_timestamp_seconds{{file=\"{}\"}}",
            f.display()
        )
    };
    assert_eq!(d.metric(&series(&cert)), Some(1_936_742_400.0));
    assert_eq!(d.metric(&series(&sni_cert)), Some(1_893_542_400.0));

    // Renewed to 2032-02-29, the SNI entry gone: reloaded.
    write_leaf(&certs, "server", &leaf(2032, 2, 29));
    std::fs::write(&d.config, &base).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_metric("config_reloads_total{result=\"success\"}", 1.0);
    assert_eq!(d.metric(&series(&cert)), Some(1_961_625_600.0));
    assert_eq!(d.metric(&series(&sni_cert)), None);
}
