//! The status page (`GET /status`, read-only): one server-rendered HTML
//! page with inline SVG plots, so a browser needs a single GET (with the
//! same bearer token as every other read) and nothing from the network.
//!
//! * calls in progress, each with the per-sample MOS, jitter and loss of
//!   both sides (customer, remote), from the same relay figures as
//!   `GET /calls` and the media metric lines ([`super::call_sides`]);
//! * per voice connector, calls started, answered and failed per sample
//!   interval over the last 60 samples (deltas of the Prometheus counters);
//! * route states, as `GET /routes` shows them.
//!
//! There is no history anywhere else, so [`run_sampler`] keeps one here:
//! every `[admin] status_sample_seconds` (60 by default) it records each
//! call's figures and each VC's counters. Memory is bounded: 60 samples
//! per call (a call's history goes when the call ends) and 60 per VC.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use trunkd_core::quality::SideStats;

use crate::daemon::Shared;

/// Samples kept per call and per VC (an hour at the default interval).
pub const KEEP: usize = 60;

/// One side's quality at one sample; `None` where not measured yet.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SideSample {
    pub mos: Option<f64>,
    pub jitter_ms: Option<f64>,
    /// Packets lost towards trunkd as a percentage of those expected
    /// (received + lost), over the call so far.
    pub loss_pct: Option<f64>,
}

impl SideSample {
    /// The plotted figures of one side, from the figures `GET /calls` shows.
    pub fn of(s: &SideStats) -> Self {
        let received = s.to_vc.rtp_packets;
        SideSample {
            mos: s.mos,
            jitter_ms: s.to_vc.jitter_us.map(|us| us as f64 / 1000.0),
            loss_pct: s.to_vc.packets_lost.and_then(|lost| {
                let expected = received + lost;
                (expected > 0).then(|| 100.0 * lost as f64 / expected as f64)
            }),
        }
    }
}

/// One sample of a call: seconds since it started, customer, remote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallSample {
    pub at_seconds: u64,
    pub customer: SideSample,
    pub remote: SideSample,
}

/// One sample of a VC: calls started, answered and failed since the
/// previous sample (both directions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcSample {
    pub started: u64,
    pub answered: u64,
    pub failed: u64,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, VecDeque<CallSample>>,
    vcs: BTreeMap<String, VecDeque<VcSample>>,
    /// The counters at the previous sample, per VC.
    totals: HashMap<String, VcSample>,
}

/// The sampled history behind the page.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == KEEP {
        q.pop_front();
    }
    q.push_back(v);
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one sample of the calls in progress (`live`: transaction
    /// id and sample); calls not in `live` have ended and are forgotten.
    pub fn record_calls(&self, live: Vec<(String, CallSample)>) {
        let mut g = self.lock();
        g.calls.retain(|txn, _| live.iter().any(|(t, _)| t == txn));
        for (txn, s) in live {
            push(g.calls.entry(txn).or_default(), s);
        }
    }

    /// Records the VCs' cumulative counters: each VC gets the difference
    /// from the previous sample (the first sample of a VC counts from 0,
    /// so calls placed before the first sample show in it).
    pub fn record_vcs(&self, totals: HashMap<String, VcSample>) {
        let mut g = self.lock();
        for (vc, now) in &totals {
            let before = g.totals.get(vc).copied().unwrap_or_default();
            let delta = VcSample {
                started: now.started.saturating_sub(before.started),
                answered: now.answered.saturating_sub(before.answered),
                failed: now.failed.saturating_sub(before.failed),
            };
            push(g.vcs.entry(vc.clone()).or_default(), delta);
        }
        g.totals = totals;
    }

    pub fn call(&self, txn: &str) -> Vec<CallSample> {
        self.lock()
            .calls
            .get(txn)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn vcs(&self) -> Vec<(String, Vec<VcSample>)> {
        self.lock()
            .vcs
            .iter()
            .map(|(k, q)| (k.clone(), q.iter().copied().collect()))
            .collect()
    }
}

/// Per-VC totals of `voice_connector_call_attempts`, `_calls_answered` and
/// `_call_failures` (both directions summed), read from the Prometheus
/// text: the families offer no other way to list their series, and
/// creating series to read them would add zero lines to `/metrics`.
pub fn vc_totals(metrics_text: &str) -> HashMap<String, VcSample> {
    let mut out: HashMap<String, VcSample> = HashMap::new();
    for line in metrics_text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let Some(rest) = labels.split("voice_connector_id=\"").nth(1) else {
            continue;
        };
        let Some(vc) = rest.split('"').next() else {
            continue;
        };
        let field = match name {
            "voice_connector_call_attempts_total" => 0,
            "voice_connector_calls_answered_total" => 1,
            "voice_connector_call_failures_total" => 2,
            _ => continue,
        };
        let e = out.entry(vc.to_owned()).or_default();
        let v = value.max(0.0) as u64;
        match field {
            0 => e.started += v,
            1 => e.answered += v,
            _ => e.failed += v,
        }
    }
    out
}

/// Takes one sample of every call and VC.
pub async fn sample(shared: &Shared) {
    let mut live = Vec::new();
    for c in shared.calls.snapshot() {
        let (customer, remote) = match super::call_sides(&c).await {
            Some((a, b)) => (SideSample::of(&a), SideSample::of(&b)),
            None => Default::default(),
        };
        live.push((
            c.transaction_id.clone(),
            CallSample {
                at_seconds: c.duration_seconds,
                customer,
                remote,
            },
        ));
    }
    shared.status.record_calls(live);
    shared
        .status
        .record_vcs(vc_totals(&shared.metrics.encode()));
}

/// Samples every `[admin] status_sample_seconds` (read again each time, so
/// a reload applies) until the daemon's tasks are dropped.
pub async fn run_sampler(shared: Arc<Shared>) {
    loop {
        let every = shared.config().settings.admin.status_sample;
        tokio::time::sleep(every).await;
        sample(&shared).await;
    }
}

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One plotted series: its name, colour and points (x, y).
type Series<'a> = (&'a str, &'a str, Vec<(u64, f64)>);

const W: f64 = 200.0;
const H: f64 = 60.0;

/// One small line plot: `series` are (name, colour, points of (x, y));
/// y from 0 to `y_max` (or the largest value). Each point is a `<circle>`
/// with `data-series`, `data-x` and `data-value`, the exact figure.
fn line_plot(title: &str, y_max: Option<f64>, series: &[Series<'_>]) -> String {
    let xs = series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let x_max = xs.clone().max().unwrap_or(0).max(1) as f64;
    let x_min = xs.min().unwrap_or(0) as f64;
    let top = y_max.unwrap_or_else(|| {
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9)
    });
    let sx = |x: u64| {
        if x_max > x_min {
            4.0 + (x as f64 - x_min) / (x_max - x_min) * (W - 8.0)
        } else {
            W / 2.0
        }
    };
    let sy = |y: f64| H - 4.0 - (y / top).clamp(0.0, 1.0) * (H - 16.0);
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure><figcaption>{} (max {:.2})</figcaption><svg class=\"plot\" data-plot=\"{}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\"><rect width=\"{W}\" height=\"{H}\" fill=\"#fafafa\" stroke=\"#ccc\"/>",
        esc(title),
        top,
        esc(title)
    );
    for (name, colour, points) in series {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y) in points {
            let _ = write!(
                out,
                "<circle r=\"2\" fill=\"{colour}\" cx=\"{:.1}\" cy=\"{:.1}\" data-series=\"{}\" data-x=\"{x}\" data-value=\"{y}\"><title>{}: {y:.3}</title></circle>",
                sx(x),
                sy(y),
                esc(name),
                esc(name)
            );
        }
    }
    out.push_str("</svg></figure>");
    out
}

/// The plots of one call: MOS, jitter (ms) and loss (%), both sides.
fn call_plots(txn: &str, samples: &[CallSample]) -> String {
    type Pick = fn(&SideSample) -> Option<f64>;
    let metrics: [(&str, Option<f64>, Pick); 3] = [
        ("MOS", Some(4.5), |s| s.mos),
        ("jitter ms", None, |s| s.jitter_ms),
        ("loss %", None, |s| s.loss_pct),
    ];
    let mut out = format!("<div class=\"plots\" data-call=\"{}\">", esc(txn));
    for (title, max, pick) in metrics {
        let side = |f: fn(&CallSample) -> &SideSample| -> Vec<(u64, f64)> {
            samples
                .iter()
                .filter_map(|s| pick(f(s)).map(|v| (s.at_seconds, v)))
                .collect()
        };
        out.push_str(&line_plot(
            title,
            max,
            &[
                ("customer", "#1f77b4", side(|s| &s.customer)),
                ("remote", "#d62728", side(|s| &s.remote)),
            ],
        ));
    }
    out.push_str("</div>");
    out
}

/// Bars of calls started per sample (answered green, failed red, others
/// grey), one group per sample, with the figures as `data-` attributes.
fn vc_plot(vc: &str, samples: &[VcSample]) -> String {
    let top = samples
        .iter()
        .map(|s| s.started.max(s.answered + s.failed))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bw = W / KEEP as f64;
    let mut out = format!(
        "<svg class=\"plot\" data-vc=\"{}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\"><rect width=\"{W}\" height=\"{H}\" fill=\"#fafafa\" stroke=\"#ccc\"/>",
        esc(vc)
    );
    let offset = KEEP - samples.len().min(KEEP);
    for (i, s) in samples.iter().enumerate() {
        let x = (offset + i) as f64 * bw;
        let h = |n: u64| n as f64 / top * (H - 8.0);
        let started = h(s.started);
        let answered = h(s.answered);
        let failed = h(s.failed);
        let _ = write!(
            out,
            "<g data-started=\"{}\" data-answered=\"{}\" data-failed=\"{}\"><title>started {}, answered {}, failed {}</title><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{started:.1}\" fill=\"#bbb\"/><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{answered:.1}\" fill=\"#2ca02c\"/><rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{failed:.1}\" fill=\"#d62728\"/></g>",
            s.started, s.answered, s.failed, s.started, s.answered, s.failed,
            H - started,
            bw * 0.9,
            H - answered - failed,
            bw * 0.9,
            H - failed,
            bw * 0.9,
        );
    }
    out.push_str("</svg>");
    out
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => esc(s),
        serde_json::Value::Null => "-".into(),
        other => esc(&other.to_string()),
    }
}

/// `GET /status`.
pub async fn page(State(shared): State<Arc<Shared>>) -> Response {
    let interval = shared.config().settings.admin.status_sample.as_secs();
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>trunkd status</title><style>body{font-family:sans-serif;margin:1em;color:#222}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}figure{display:inline-block;margin:2px 6px}figcaption{font-size:11px}.up{color:#2ca02c}.down{color:#d62728}.legend span{margin-right:1em}.plots{white-space:nowrap}</style></head><body><h1>trunkd status</h1>",
    );
    let _ = write!(
        html,
        "<p>One sample every {interval} s, the last {KEEP} kept. <span class=\"legend\"><span style=\"color:#1f77b4\">&#9632; customer side</span><span style=\"color:#d62728\">&#9632; remote side</span></span></p>"
    );

    // Calls in progress, with a sample taken now for those without one
    // yet (a call younger than one interval still shows its figures).
    let calls = shared.calls.snapshot();
    let _ = write!(html, "<h2>Calls in progress ({})</h2>", calls.len());
    html.push_str("<table id=\"calls\"><tr><th>Transaction</th><th>Voice connector</th><th>Direction</th><th>From</th><th>To</th><th>Duration (s)</th><th>Quality per sample</th></tr>");
    for c in &calls {
        let mut samples = shared.status.call(&c.transaction_id);
        if samples.is_empty() {
            if let Some((a, b)) = super::call_sides(c).await {
                samples.push(CallSample {
                    at_seconds: c.duration_seconds,
                    customer: SideSample::of(&a),
                    remote: SideSample::of(&b),
                });
            }
        }
        let direction = match c.direction {
            trunkd_core::cdr::Direction::Inbound => "Inbound",
            trunkd_core::cdr::Direction::Outbound => "Outbound",
        };
        let _ = write!(
            html,
            "<tr data-txn=\"{}\"><td>{}</td><td>{}</td><td>{direction}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.transaction_id),
            esc(&c.transaction_id),
            esc(c.owner.as_deref().unwrap_or("-")),
            esc(&c.from),
            esc(&c.to),
            c.duration_seconds,
            call_plots(&c.transaction_id, &samples),
        );
    }
    html.push_str("</table>");

    // Calls per VC.
    let _ = write!(
        html,
        "<h2>Calls per voice connector (per {interval} s: started grey, answered green, failed red)</h2><table id=\"vcs\"><tr><th>Voice connector</th><th>Started</th><th>Answered</th><th>Failed</th><th>Last {KEEP} samples</th></tr>"
    );
    for (vc, samples) in shared.status.vcs() {
        let sum = |f: fn(&VcSample) -> u64| samples.iter().map(f).sum::<u64>();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(if vc.is_empty() { "(unidentified)" } else { &vc }),
            sum(|s| s.started),
            sum(|s| s.answered),
            sum(|s| s.failed),
            vc_plot(&vc, &samples)
        );
    }
    html.push_str("</table>");

    // Routes.
    html.push_str("<h2>Routes</h2><table id=\"routes\"><tr><th>Route</th><th>Owner</th><th>Calls</th><th>Probe</th></tr>");
    for r in super::resources::routes(&shared) {
        let owner = r
            .get("Owner")
            .and_then(|o| o.as_object())
            .and_then(|o| o.values().next())
            .map(text)
            .unwrap_or_else(|| "-".into());
        let state = |k: &str| {
            let v = r.get(k).cloned().unwrap_or_default();
            let class = match v.as_str() {
                Some("UP") => "up",
                Some("DOWN") => "down",
                _ => "",
            };
            format!("<td class=\"{class}\">{}</td>", text(&v))
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{owner}</td>{}{}</tr>",
            text(&r.get("Route").cloned().unwrap_or_default()),
            state("CallState"),
            state("ProbeState"),
        );
    }
    html.push_str("</table></body></html>\n");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn plots_carry_escaped_ids_and_exact_figures() {
        let svg = vc_plot(
            "<vc\"1>",
            &[VcSample {
                started: 3,
                answered: 2,
                failed: 1,
            }],
        );
        assert!(svg.contains("data-vc=\"&lt;vc&quot;1&gt;\""), "{svg}");
        assert!(svg.contains("data-started=\"3\" data-answered=\"2\" data-failed=\"1\""));
        let sample = CallSample {
            at_seconds: 60,
            customer: SideSample {
                mos: Some(4.25),
                jitter_ms: Some(1.5),
                loss_pct: Some(5.0),
            },
            remote: SideSample::default(),
        };
        let html = call_plots("t&1", &[sample]);
        assert!(html.starts_with("<div class=\"plots\" data-call=\"t&amp;1\">"));
        assert!(html.contains("data-series=\"customer\" data-x=\"60\" data-value=\"4.25\""));
        assert!(html.contains("data-series=\"customer\" data-x=\"60\" data-value=\"1.5\""));
        assert!(html.contains("data-series=\"customer\" data-x=\"60\" data-value=\"5\""));
        assert!(
            !html.contains("data-series=\"remote\""),
            "nothing measured: no point"
        );
    }

    #[test]
    fn history_is_bounded_and_forgets_ended_calls() {
        let h = History::default();
        let s = |t| CallSample {
            at_seconds: t,
            customer: SideSample::default(),
            remote: SideSample::default(),
        };
        for t in 0..100 {
            h.record_calls(vec![("a".into(), s(t)), ("b".into(), s(t))]);
        }
        let a = h.call("a");
        assert_eq!(a.len(), KEEP);
        assert_eq!(a[0].at_seconds, 40);
        assert_eq!(a[KEEP - 1].at_seconds, 99);
        h.record_calls(vec![("b".into(), s(100))]);
        assert!(h.call("a").is_empty());
        assert_eq!(h.call("b").len(), KEEP);
    }

    #[test]
    fn vc_samples_are_counter_deltas_bounded_to_an_hour() {
        let text = "# HELP x\n\
voice_connector_call_attempts_total{voice_connector_id=\"vc-1\",region=\"us-east-1\",direction=\"inbound\"} 3\n\
voice_connector_call_attempts_total{voice_connector_id=\"vc-1\",region=\"us-east-1\",direction=\"outbound\"} 2\n\
voice_connector_calls_answered_total{voice_connector_id=\"vc-1\",region=\"us-east-1\",direction=\"outbound\"} 4\n\
voice_connector_call_failures_total{voice_connector_id=\"vc-1\",region=\"us-east-1\",direction=\"outbound\"} 1\n\
voice_connector_calls_active{voice_connector_id=\"vc-1\",region=\"us-east-1\",direction=\"outbound\"} 9\n";
        let t = vc_totals(text);
        assert_eq!(
            t["vc-1"],
            VcSample {
                started: 5,
                answered: 4,
                failed: 1
            }
        );
        let h = History::default();
        h.record_vcs(t.clone());
        h.record_vcs(t.clone());
        let mut more = t;
        if let Some(v) = more.get_mut("vc-1") {
            v.started += 2;
        }
        h.record_vcs(more.clone());
        let vcs = h.vcs();
        assert_eq!(vcs[0].1[0].started, 5);
        assert_eq!(vcs[0].1[1], VcSample::default());
        assert_eq!(vcs[0].1[2].started, 2);
        for _ in 0..100 {
            h.record_vcs(more.clone());
        }
        assert_eq!(h.vcs()[0].1.len(), KEEP);
    }

    #[test]
    fn loss_is_a_percentage_of_expected_packets() {
        let mut s = SideStats::default();
        s.to_vc.rtp_packets = 195;
        s.to_vc.packets_lost = Some(5);
        s.to_vc.jitter_us = Some(1500);
        let p = SideSample::of(&s);
        assert_eq!(p.loss_pct, Some(2.5));
        assert_eq!(p.jitter_ms, Some(1.5));
        assert_eq!(p.mos, None);
    }
}
