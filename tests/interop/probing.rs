//! OPTIONS probing of carrier hosts (SPEC §3.2 `[probing]`) through the
//! real binary, with SIPp carriers: a host that stops answering goes down
//! within the configured time, calls then go straight to the other host
//! with no post-dial delay, and the host comes back up once it answers
//! again. State is in `/metrics` and in `trunkd Route State Change`
//! events.

use std::time::{Duration, Instant};

use crate::calls::{assert_ok, host, pbx_calls, Lab, CARRIER};
use crate::support::*;

fn probe_series(port: u16) -> String {
    format!("route_probe_up{{route=\"{CARRIER}:{port}/UDP\"}}")
}

/// Polls (bounded by `limit`) until `series` is `value`; returns how long
/// that took.
fn wait_for(d: &Daemon, series: &str, value: f64, limit: Duration) -> Duration {
    let t = Instant::now();
    while t.elapsed() < limit {
        if d.metric(series) == Some(value) {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{series} never became {value} within {limit:?}:\n{}",
        d.metrics()
    );
}

#[test]
fn a_carrier_host_that_stops_answering_is_skipped_until_it_answers_again() {
    let ports = Ports::pick();
    let (p1, p2) = (free_port_on(CARRIER), free_port_on(CARRIER));
    let first = SippBg::uas("uas_probed.xml", CARRIER, p1, &[]);
    let _second = SippBg::uas("uas_probed.xml", CARRIER, p2, &[]);
    let hosts = format!(
        "{}, {}",
        host(CARRIER, p1, ", priority = 1"),
        host(CARRIER, p2, ", priority = 2")
    );
    let lab = Lab {
        hosts: &hosts,
        ..Default::default()
    };
    let text = format!(
        r#"{}
[routing]
hop_timeout_ms = 8000

[probing]
interval_seconds = 1
timeout_ms = 500
failure_threshold = 2
success_threshold = 1

[[event_targets]]
id = "ops"
type = "file"
path = "var/events.jsonl"
"#,
        lab.config(ports)
    );
    let d = Daemon::start("probing", ports, &text);
    wait_for(&d, &probe_series(p1), 1.0, Duration::from_secs(5));
    wait_for(&d, &probe_series(p2), 1.0, Duration::from_secs(5));
    // Both answer: replies are counted as ok.
    let ok = |p: u16| {
        d.metric(&format!(
            "route_probes_total{{route=\"{CARRIER}:{p}/UDP\",result=\"ok\"}}"
        ))
        .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while ok(p1) < 2.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok(p1) >= 2.0, "{}", d.metrics());

    // The first host dies: two failed probes (1 s apart, 0.5 s each) take
    // it down in about 2.5 s. What is asserted is that it took exactly
    // `failure_threshold` failures (a count, not a stopwatch: the suite
    // runs many daemons at once on two cores); the wait is only bounded.
    drop(first);
    let failed_before = d
        .metric(&format!(
            "route_probes_total{{route=\"{CARRIER}:{p1}/UDP\",result=\"failed\"}}"
        ))
        .unwrap_or(0.0);
    wait_for(&d, &probe_series(p1), 0.0, Duration::from_secs(20));
    let failed = d
        .metric(&format!(
            "route_probes_total{{route=\"{CARRIER}:{p1}/UDP\",result=\"failed\"}}"
        ))
        .unwrap_or(0.0)
        - failed_before;
    assert!(
        (2.0..=3.0).contains(&failed),
        "down after {failed} failed probes (threshold 2; a third may end before this scrape)"
    );

    // A call now goes to the second host at once: no hop timeout is spent
    // on the dead one.
    let t = Instant::now();
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer");
    let setup = t.elapsed();
    // A try on the dead host would have cost its whole hop timeout (8 s)
    // before the second host; the failure count below says it was never
    // tried at all.
    assert!(setup < Duration::from_secs(6), "the call took {setup:?}");
    assert_eq!(
        d.metric(&format!(
            "route_failures_total{{route=\"{CARRIER}:{p1}/UDP\"}}"
        )),
        None,
        "the call never tried the host that is down"
    );

    // The first host answers again: up after one accepted reply.
    let _again = SippBg::uas("uas_probed.xml", CARRIER, p1, &[]);
    wait_for(&d, &probe_series(p1), 1.0, Duration::from_secs(5));

    // Both transitions are events to the daemon-wide targets (a carrier's
    // host), saying that probing saw them.
    let events = d.dir.join("var/events.jsonl");
    let route = format!("{CARRIER}:{p1}/UDP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let states = loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let states: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["detail"]["route"] == route.as_str())
            .map(|e| {
                (
                    e["detail"]["state"].as_str().unwrap_or_default().to_owned(),
                    e["detail"]["source"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        if states.len() >= 2 || Instant::now() > deadline {
            break states;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        states,
        [
            ("DOWN".to_owned(), "probe".to_owned()),
            ("UP".to_owned(), "probe".to_owned())
        ]
    );
}
