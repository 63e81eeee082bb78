//! Events (SPEC §5.4) through the real binary: a Standard Webhooks receiver
//! written in Python (tests/peers/webhook_receiver.py, an independent
//! implementation of the verification) on loopback, a JSON-lines file
//! target, SIPREC sessions for the streaming status events, reloads of a
//! broken file, a restart with events queued, and the maximum age.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::calls::{Lab, PBX};
use crate::recording::{m_ports, packet, wait_answer};
use crate::support::*;

/// The Standard Webhooks example secret; its base64 body is what a leak
/// would most likely show.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_BODY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A carrier host nobody calls in these tests.
const CARRIER_HOST: &str = "{ host = \"127.0.0.2\", port = 9 }";

/// The Python receiver, stopped by its PID on drop.
struct Receiver {
    child: Child,
    out: PathBuf,
}

impl Receiver {
    fn start(port: u16, out: &Path, fail_first: u32) -> Receiver {
        let child = Command::new("python3")
            .arg(repo().join("tests/peers/webhook_receiver.py"))
            .args(["--port", &port.to_string(), "--secret", SECRET, "--out"])
            .arg(out)
            .args(["--fail-first", &fail_first.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the webhook receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Receiver {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Every accepted delivery: {"webhook_id", "timestamp", "event"}.
    fn accepted(&self) -> Vec<serde_json::Value> {
        json_lines(&self.out)
    }

    /// Waits (bounded) until `n` deliveries were accepted.
    fn wait(&self, n: usize, log: impl Fn() -> String) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events arrived: {got:#?}\n{}",
                got.len(),
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deliveries whose signature or timestamp did not verify.
    fn invalid(&self) -> Vec<serde_json::Value> {
        json_lines(&PathBuf::from(format!("{}.invalid", self.out.display())))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child we spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The secret in a file outside the daemon's directory, so that nothing
/// the run writes there may contain it.
fn secret_file() -> PathBuf {
    let path = temp_dir("events-secret").join("webhook.secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    path
}

/// `[[event_targets]]` "ops" (webhook on `port`), "log" (file) when
/// `file`, and `[events]` with short retries.
fn targets(port: u16, file: bool, events: &str) -> String {
    let mut t = format!(
        "[[event_targets]]\nid = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/events\"\nsecret_file = \"{}\"\n\n",
        secret_file().display()
    );
    if file {
        t.push_str(
            "[[event_targets]]\nid = \"log\"\ntype = \"file\"\npath = \"var/events.jsonl\"\n\n",
        );
    }
    t.push_str(&format!(
        "[events]\nretry_initial_ms = 100\nretry_max_seconds = 1\nrequest_timeout_seconds = 2\n{events}\n"
    ));
    t
}

fn streaming(directory: &str, notification_targets: &str) -> String {
    format!(
        "[voice_connectors.streaming]\n\
         disabled = false\n\
         sinks = [ {{ type = \"wav\", directory = \"{directory}\" }} ]\n\
         notification_targets = {notification_targets}\n"
    )
}

/// One recorded SIPREC session of ~1 s with 10 packets on each stream;
/// returns once the SRC's scenario ended.
fn siprec_session(d: &Daemon, n: usize) {
    let trace = d.dir.join(format!("src-{n}.msg"));
    let target = d.sip().to_string();
    let mut src = SippBg::uas(
        "uac_siprec.xml",
        PBX,
        free_port_on(PBX),
        &[
            "-s",
            "srs",
            "-key",
            "caller",
            "src",
            "-m",
            "1",
            "-d",
            "800",
            "-trace_msg",
            "-message_file",
            trace.to_str().unwrap(),
            &target,
        ],
    );
    let p = m_ports(&wait_answer(&trace));
    let rtp = UdpSocket::bind((PBX, 0)).unwrap();
    for seq in 0..10 {
        for (stream, pt) in [(0u8, 0u8), (1, 8)] {
            let to = SocketAddr::from(([127, 0, 0, 1], p[usize::from(stream)]));
            rtp.send_to(&packet(stream, pt, seq).0, to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ok, text) = src.wait(Duration::from_secs(15));
    assert!(ok, "the SRC's scenario: {text}");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_no_secret_under(dir: &Path) {
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET_BODY),
            "{} contains the webhook secret",
            f.display()
        );
    }
}

/// (a) + (e): three SIPREC sessions, the receiver failing its first five
/// requests: every streaming status event arrives, STARTED before ENDED
/// per transaction id and stream, every signature valid (the receiver
/// verifies), the file target holds the same envelopes, and no file the
/// run wrote contains the secret.
#[test]
fn recording_sessions_emit_signed_streaming_events_that_survive_failures() {
    let port = free_port();
    let dir = temp_dir("events-receiver");
    let receiver = Receiver::start(port, &dir.join("events.jsonl"), 5);
    let ports = Ports::pick();
    let top = targets(port, true, "");
    let east = streaming("audio", r#"["ops", "log"]"#);
    let lab = Lab {
        hosts: CARRIER_HOST,
        top: &top,
        east_termination: &east,
        ..Default::default()
    };
    let d = Daemon::start("events-siprec", ports, &lab.config(ports));
    for n in 0..3 {
        siprec_session(&d, n);
    }
    // 3 sessions × 2 streams × (STARTED, ENDED).
    let got = receiver.wait(12, || d.log());
    assert_eq!(got.len(), 12, "{got:#?}");
    assert_eq!(receiver.invalid(), Vec::<serde_json::Value>::new());

    let mut per_stream: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
    for line in &got {
        let e = &line["event"];
        assert_eq!(line["webhook_id"], e["id"], "webhook-id is the event id");
        assert_eq!(e["version"], "0");
        assert_eq!(e["source"], "trunkd");
        assert_eq!(e["detail-type"], "Chime VoiceConnector Streaming Status");
        assert_eq!(e["account"], "000000000000");
        assert_eq!(e["region"], "local");
        assert_eq!(e["resources"], serde_json::json!([]));
        let time = e["time"].as_str().unwrap();
        assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
        let detail = &e["detail"];
        assert_eq!(detail["voiceConnectorId"], "vc-east");
        assert_eq!(detail["mediaType"], "audio/L16");
        assert_eq!(detail["direction"], "Outbound");
        assert_eq!(detail["toNumber"], "srs");
        assert_eq!(detail["inviteHeaders"]["cseq"], "1 INVITE");
        let txn = detail["transactionId"].as_str().unwrap().to_owned();
        let index = detail["sdp"]["mediaIndex"].as_u64().unwrap();
        let label = detail["sdp"]["mediaLabel"].as_str().unwrap();
        assert_eq!(label, (index + 1).to_string());
        assert_eq!(detail["isCaller"], index == 0);
        let wav = d.dir.join("audio").join(format!("{txn}-{index}.wav"));
        assert_eq!(detail["streamArn"], format!("file://{}", wav.display()));
        let status = detail["streamingStatus"].as_str().unwrap().to_owned();
        match status.as_str() {
            "STARTED" => {
                assert!(detail.get("endTime").is_none());
                let xml = detail["siprecMetadata"].as_str().unwrap();
                assert!(
                    xml.contains(r#"<recording xmlns="urn:ietf:params:xml:ns:recording:1">"#),
                    "{xml}"
                );
            }
            "ENDED" => assert!(
                detail["endTime"].as_str().unwrap() >= detail["startTime"].as_str().unwrap()
            ),
            other => panic!("unexpected status {other}: {e}"),
        }
        per_stream.entry((txn, index)).or_default().push(status);
    }
    assert_eq!(per_stream.len(), 6, "{per_stream:?}");
    for (k, statuses) in &per_stream {
        assert_eq!(statuses, &["STARTED", "ENDED"], "{k:?}");
    }
    // Failed attempts were retried: five 500s, then everything delivered.
    d.wait_metric("events_total{target=\"ops\",result=\"delivered\"}", 12.0);
    assert!(
        d.metric("events_total{target=\"ops\",result=\"retried\"}")
            .unwrap_or(0.0)
            >= 5.0
    );
    d.wait_metric("events_queued{target=\"ops\"}", 0.0);

    // (e) The file target got the same envelopes, byte for byte the JSON
    // that was signed.
    d.wait_metric("events_total{target=\"log\",result=\"delivered\"}", 12.0);
    let file = json_lines(&d.dir.join("var/events.jsonl"));
    let by_id = |v: &[serde_json::Value]| -> BTreeMap<String, serde_json::Value> {
        v.iter()
            .map(|e| (e["id"].as_str().unwrap().to_owned(), e.clone()))
            .collect()
    };
    let hooked: Vec<serde_json::Value> = got.iter().map(|l| l["event"].clone()).collect();
    assert_eq!(by_id(&file), by_id(&hooked));
    // In order per transaction in the file, too.
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    for e in &file {
        let k = (
            e["detail"]["transactionId"].as_str().unwrap().to_owned(),
            e["detail"]["sdp"]["mediaIndex"].as_u64().unwrap(),
        );
        let started = e["detail"]["streamingStatus"] == "STARTED";
        assert_eq!(seen.insert(k.clone()), started, "{k:?} out of order");
    }
    // Delivered events leave no journal file behind.
    assert_eq!(
        files_under(&d.dir.join("var/events")),
        Vec::<PathBuf>::new()
    );
    assert_no_secret_under(&d.dir);
}

/// Writes a file that does not validate over the daemon's config and
/// sends SIGHUP; returns the valid text to restore.
fn break_and_reload(d: &Daemon) -> String {
    let valid = std::fs::read_to_string(&d.config).unwrap();
    let broken = valid.replacen("[daemon]\n", "[daemon]\nbogus_key = 1\n", 1);
    assert_ne!(broken, valid);
    std::fs::write(&d.config, broken).unwrap();
    d.signal(libc::SIGHUP);
    valid
}

/// (d): a reload of a broken file emits "trunkd Configuration Reload
/// Failed" to the daemon-wide targets, with the errors.
#[test]
fn a_failed_reload_is_an_event_with_its_errors() {
    let port = free_port();
    let dir = temp_dir("events-reload");
    let receiver = Receiver::start(port, &dir.join("events.jsonl"), 0);
    let ports = Ports::pick();
    let top = targets(port, false, "");
    let lab = Lab {
        hosts: CARRIER_HOST,
        top: &top,
        ..Default::default()
    };
    let d = Daemon::start("events-reload", ports, &lab.config(ports));
    // Every configured target has its gauge from the start.
    d.wait_metric("events_queued{target=\"ops\"}", 0.0);
    let valid = break_and_reload(&d);
    let got = receiver.wait(1, || d.log());
    assert_eq!(got.len(), 1, "{got:#?}");
    let e = &got[0]["event"];
    assert_eq!(e["detail-type"], "trunkd Configuration Reload Failed");
    assert_eq!(e["detail"]["file"], d.config.display().to_string());
    let errors = e["detail"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let err = errors[0].as_str().unwrap();
    assert!(err.starts_with(&d.config.display().to_string()), "{err}");
    assert!(err.contains("daemon.bogus_key"), "{err}");
    assert_eq!(receiver.invalid(), Vec::<serde_json::Value>::new());
    std::fs::write(&d.config, valid).unwrap();
    assert_no_secret_under(&d.dir);
}

/// (b): the receiver is down; two events are queued (journalled); trunkd
/// stops (SIGTERM); the receiver comes up; trunkd starts again and delivers
/// them, with the ids they had.
#[test]
fn queued_events_survive_a_restart_and_are_delivered() {
    let port = free_port();
    let dir = temp_dir("events-restart");
    let ports = Ports::pick();
    let top = targets(port, false, "");
    let lab = Lab {
        hosts: CARRIER_HOST,
        top: &top,
        ..Default::default()
    };
    let mut d = Daemon::start("events-restart", ports, &lab.config(ports));
    let valid = break_and_reload(&d);
    d.wait_metric("config_reloads_total{result=\"failure\"}", 1.0);
    d.signal(libc::SIGHUP);
    d.wait_metric("config_reloads_total{result=\"failure\"}", 2.0);
    d.wait_metric("events_queued{target=\"ops\"}", 2.0);
    let journal = d.dir.join("var/events");
    let queued: Vec<String> = {
        let mut f: Vec<String> = files_under(&journal)
            .iter()
            .map(|p| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                v["id"].as_str().unwrap().to_owned()
            })
            .collect();
        f.sort();
        f
    };
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert!(d.stop().success());
    std::fs::write(&d.config, valid).unwrap();

    let receiver = Receiver::start(port, &dir.join("events.jsonl"), 0);
    let d2 = restart(&mut d);
    let got = receiver.wait(2, || d2.log());
    let mut ids: Vec<String> = got
        .iter()
        .map(|l| l["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, queued);
    d2.wait_metric("events_total{target=\"ops\",result=\"delivered\"}", 2.0);
    assert_eq!(files_under(&journal), Vec::<PathBuf>::new());
    assert_eq!(receiver.invalid(), Vec::<serde_json::Value>::new());
}

/// Starts trunkd again on `d`'s directory and file (the log is appended).
fn restart(d: &mut Daemon) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(d.dir.join("trunkd.log"))
        .unwrap();
    let child = Command::new(TRUNKD)
        .args(["run", "--config"])
        .arg(&d.config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn trunkd");
    let d2 = Daemon {
        child: Some(child),
        dir: d.dir.clone(),
        config: d.config.clone(),
        ports: d.ports,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(http(d2.admin(), "GET", "/healthz"), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "trunkd did not restart:\n{}",
            d2.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d2
}

/// (c): with nobody listening, an event older than `max_age_seconds` is
/// dropped and counted, and leaves the journal.
#[test]
fn an_event_past_its_maximum_age_is_dropped_and_counted() {
    let port = free_port(); // nobody listens: connection refused
    let ports = Ports::pick();
    let top = targets(port, false, "max_age_seconds = 1");
    let lab = Lab {
        hosts: CARRIER_HOST,
        top: &top,
        ..Default::default()
    };
    let d = Daemon::start("events-max-age", ports, &lab.config(ports));
    let valid = break_and_reload(&d);
    d.wait_metric("config_reloads_total{result=\"failure\"}", 1.0);
    std::fs::write(&d.config, valid).unwrap();
    d.wait_metric(
        "events_total{target=\"ops\",result=\"dropped_max_age\"}",
        1.0,
    );
    assert!(
        d.metric("events_total{target=\"ops\",result=\"retried\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        d.metric("events_total{target=\"ops\",result=\"delivered\"}"),
        None
    );
    d.wait_metric("events_queued{target=\"ops\"}", 0.0);
    assert_eq!(
        files_under(&d.dir.join("var/events")),
        Vec::<PathBuf>::new()
    );
}

/// A session whose WAV files cannot be created (the sink's directory is
/// under a regular file): STARTED, then FAILED with the reason, per stream.
#[test]
fn a_recording_that_cannot_be_written_is_a_failed_streaming_event() {
    let ports = Ports::pick();
    let top = "[[event_targets]]\nid = \"log\"\ntype = \"file\"\npath = \"var/events.jsonl\"\n";
    let east = streaming("trunkd.toml/audio", r#"["log"]"#);
    let lab = Lab {
        hosts: CARRIER_HOST,
        top,
        east_termination: &east,
        ..Default::default()
    };
    let d = Daemon::start("events-failed", ports, &lab.config(ports));
    siprec_session(&d, 0);
    d.wait_metric("events_total{target=\"log\",result=\"delivered\"}", 4.0);
    let events = json_lines(&d.dir.join("var/events.jsonl"));
    let got: Vec<(u64, String)> = events
        .iter()
        .map(|e| {
            let detail = &e["detail"];
            (
                detail["sdp"]["mediaIndex"].as_u64().unwrap(),
                detail["streamingStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (0, "STARTED".to_owned()),
            (1, "STARTED".to_owned()),
            (0, "FAILED".to_owned()),
            (1, "FAILED".to_owned())
        ]
    );
    for e in &events[2..] {
        assert_eq!(
            e["detail"]["failureReason"],
            "Recording could not be written"
        );
        assert!(e["detail"]["failTime"].as_str().unwrap().ends_with('Z'));
        assert!(e["detail"].get("endTime").is_none());
    }
}
