//! SIP media applications end to end (SPEC §6, docs/sma.md): the real
//! binary, a caller on the carrier's loopback address (the small UA of
//! `ua.rs`, so the test sees every RTP byte), and an application written
//! in Python (tests/peers/sma_app.py) that answers from a script, checks
//! the Standard Webhooks signature itself, and logs every event it got —
//! the tests assert on exactly what the application received.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::calls::{host, records, Lab, CARRIER};
use crate::support::*;
use crate::ua::*;
use crate::weed::{Weed, BUCKET};

/// The Standard Webhooks example secret.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const NUMBER: &str = "+12065550150";
pub(crate) const CALLER: &str = "+14155550123";

/// The application: a Python process answering from `script`.
pub(crate) struct App {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl App {
    pub(crate) fn start(dir: &Path, name: &str, script: Value, secret: Option<&str>) -> App {
        Self::start_with(dir, name, script, secret, free_port(), &[])
    }

    fn start_with(
        dir: &Path,
        name: &str,
        script: Value,
        secret: Option<&str>,
        port: u16,
        extra: &[&str],
    ) -> App {
        let script_path = dir.join(format!("{name}.json"));
        std::fs::write(&script_path, script.to_string()).unwrap();
        let log = dir.join(format!("{name}.jsonl"));
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/peers/sma_app.py"))
            .args(["--port", &port.to_string(), "--script"])
            .arg(&script_path)
            .arg("--log")
            .arg(&log);
        if let Some(s) = secret {
            cmd.args(["--secret", s]);
        }
        cmd.args(extra);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "the application did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        App { child, log, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sma", self.port)
    }

    /// The paths of the GETs received so far (audio fetched).
    fn gets(&self) -> Vec<String> {
        let mut p = self.log.clone().into_os_string();
        p.push(".gets");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every request received so far, as logged.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Waits (bounded) until `n` requests arrived; returns them.
    pub(crate) fn wait_requests(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "the application got {} requests, not {n}: {r:#?}",
                r.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event types of `requests`, in order.
pub(crate) fn types(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            r["event"]["InvocationEventType"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

/// A daemon whose SIP media application `sma-ivr` has `endpoints` (a TOML
/// array) and `extra` lines (its secret); `[applications]` gets `apps`.
fn daemon(tag: &str, endpoints: &str, extra: &str, apps: &str) -> Daemon {
    let ports = Ports::pick();
    let lab = Lab {
        hosts: &host(CARRIER, 9, ""),
        ..Default::default()
    };
    let text = format!(
        r#"{base}
[[numbers]]
e164_phone_number = "{NUMBER}"
product_type = "SipMediaApplicationDialIn"

[[sip_media_applications]]
id = "sma-ivr"
endpoints = {endpoints}
{extra}

[[sip_rules]]
id = "rule-1"
trigger_type = "ToPhoneNumber"
trigger_value = "{NUMBER}"
target_applications = [ {{ sip_media_application_id = "sma-ivr", priority = 1 }} ]

[applications]
{apps}
"#,
        base = lab.config(ports)
    );
    Daemon::start(tag, ports, &text)
}

pub(crate) fn endpoint(url: &str, priority: u8) -> String {
    format!("{{ url = \"{url}\", priority = {priority} }}")
}

/// μ-law decoding, written here from G.711 rather than taken from trunkd.
pub(crate) fn ulaw(byte: u8) -> i16 {
    let b = !byte;
    let exponent = (b >> 4) & 7;
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if b & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// A prompt of `n` samples that μ-law carries exactly: decoded bytes of a
/// fixed pseudo-random sequence.
pub(crate) fn prompt_samples(n: usize) -> Vec<i16> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ulaw((x >> 16) as u8)
        })
        .collect()
}

/// A 16-bit mono 8 kHz WAV file.
pub(crate) fn write_wav(path: &Path, samples: &[i16]) {
    let data = (samples.len() * 2) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// The samples of a 16-bit mono WAV file (its `data` chunk).
fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"RIFF");
    assert_eq!(&b[8..12], b"WAVE");
    let mut i = 12;
    let mut rate = 0;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = &b[i + 8..(i + 8 + len).min(b.len())];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM");
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit");
        }
        if id == b"data" {
            let s = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, s);
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

/// What the caller's RTP thread is asked to do.
enum Rtp {
    /// Send this DTMF key as RFC 4733 events (PT 101) instead of audio.
    Key(u8),
    Stop,
}

/// Sends a loud 400 Hz square wave (μ-law) every 20 ms to `to` from the
/// caller's RTP socket, RFC 4733 key presses when asked; one SSRC.
fn caller_rtp(
    sock: &UdpSocket,
    to: SocketAddr,
) -> (mpsc::Sender<Rtp>, std::thread::JoinHandle<()>) {
    let sock = sock.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let ssrc = 0x5AA5_0001u32;
        let (mut seq, mut ts) = (0u16, 0u32);
        let mut next = Instant::now();
        let header = |pt: u8, marker: bool, seq: u16, ts: u32| {
            let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p
        };
        loop {
            match rx.try_recv() {
                Ok(Rtp::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Ok(Rtp::Key(event)) => {
                    // 100 ms pressed, then three end packets (RFC 4733 §2.5.1.4).
                    let start = ts;
                    for i in 0..8u16 {
                        let duration = (u16::min(i + 1, 5)) * 160;
                        let end = i >= 5;
                        let mut p = header(101, i == 0, seq, start);
                        p.extend_from_slice(&[event, if end { 0x80 | 10 } else { 10 }]);
                        p.extend_from_slice(&duration.to_be_bytes());
                        let _ = sock.send_to(&p, to);
                        seq = seq.wrapping_add(1);
                        if i < 5 {
                            ts = ts.wrapping_add(160);
                            next += Duration::from_millis(20);
                            std::thread::sleep(next.saturating_duration_since(Instant::now()));
                        }
                    }
                    continue;
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let mut p = header(0, false, seq, ts);
            p.extend((0..160).map(|i| if (i / 10) % 2 == 0 { 0x8f } else { 0x0f }));
            let _ = sock.send_to(&p, to);
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            next += Duration::from_millis(20);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    (tx, t)
}

/// The caller's answered call.
pub(crate) struct Call {
    pub(crate) ua: Ua,
    call_id: String,
    to: String,
    trunkd: SocketAddr,
    pub(crate) trunkd_rtp: SocketAddr,
    cseq: u32,
}

impl Call {
    /// Calls the rule's number; returns once trunkd answered (and ACKs).
    pub(crate) fn place(d: &Daemon) -> Call {
        let ua = Ua::new(CARRIER);
        let call_id = send_invite(&ua, d.sip(), NUMBER, CALLER, &ua.sdp("sendrecv"));
        let ok = ua.recv_until(Duration::from_secs(10), |m| {
            m.status().is_some_and(|s| s >= 200)
        });
        assert_eq!(ok.status(), Some(200), "{}", ok.text);
        let to = ok.header("To").unwrap();
        let c = Call {
            trunkd_rtp: ok.sdp_rtp(),
            ua,
            call_id,
            to,
            trunkd: d.sip(),
            cseq: 1,
        };
        c.in_dialog("ACK", 1, None);
        c
    }

    fn in_dialog(&self, method: &str, cseq: u32, body: Option<(&str, &str)>) {
        let (ct, b) = body.map_or((String::new(), ""), |(t, b)| {
            (format!("Content-Type: {t}\r\n"), b)
        });
        let msg = format!(
            "{method} sip:trunkd@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{cid}-{method}{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:{CALLER}@{ip}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n{ct}Content-Length: {len}\r\n\r\n{b}",
            t = self.trunkd,
            me = self.ua.sip_addr(),
            ip = self.ua.ip,
            tag = self.ua.tag,
            to = self.to,
            cid = self.call_id,
            len = b.len(),
        );
        self.ua.send(self.trunkd, &msg);
    }

    /// A key as SIP INFO (application/dtmf-relay); waits for its 200.
    fn info_key(&mut self, key: char) {
        self.cseq += 1;
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        self.in_dialog("INFO", self.cseq, Some(("application/dtmf-relay", &body)));
        let cseq = format!("{} INFO", self.cseq);
        let r = self.ua.recv_until(Duration::from_secs(5), |m| {
            m.status().is_some() && m.header("CSeq").as_deref() == Some(cseq.as_str())
        });
        assert_eq!(r.status(), Some(200), "{}", r.text);
    }

    /// Waits for trunkd's BYE and answers it.
    pub(crate) fn expect_bye(&self) {
        let bye = self.ua.recv_until(Duration::from_secs(10), |m| {
            m.first_line().starts_with("BYE ")
        });
        self.ua.respond(&bye, "200 OK", None);
    }

    /// The caller hangs up; waits for the 200.
    pub(crate) fn bye(&mut self) {
        self.cseq += 1;
        self.in_dialog("BYE", self.cseq, None);
        let cseq = format!("{} BYE", self.cseq);
        let r = self.ua.recv_until(Duration::from_secs(5), |m| {
            m.status().is_some() && m.header("CSeq").as_deref() == Some(cseq.as_str())
        });
        assert_eq!(r.status(), Some(200));
    }
}

/// Receives PCMU packets (PT 0) until `samples` samples arrived.
pub(crate) fn receive_audio(sock: &UdpSocket, samples: usize) -> Vec<i16> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < samples {
        assert!(
            Instant::now() < deadline,
            "only {} samples of the prompt arrived",
            out.len()
        );
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                out.extend(buf[12..n].iter().map(|&b| ulaw(b)));
            }
        }
    }
    out
}

pub(crate) fn wait_gauges_zero(d: &Daemon) {
    d.wait_metric(
        "sma_active_calls{sip_media_application_id=\"sma-ivr\"}",
        0.0,
    );
    d.wait_metric("sip_engine_calls", 0.0);
}

/// The IVR: a prompt heard sample for sample, digits by RFC 4733 and by
/// SIP INFO collected, a message recorded, the application's Hangup a
/// BYE; every event signed and as the contract has it.
#[test]
fn sma_ivr_plays_collects_digits_records_and_hangs_up() {
    let dir = temp_dir("sma-ivr-app");
    let prompt = prompt_samples(8000);
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "PlayAudioAndGetDigits", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"},
                    "MinNumberOfDigits": 2, "MaxNumberOfDigits": 5,
                    "TerminatorDigits": ["#"],
                    "InBetweenDigitsDurationInMilliseconds": 5000}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "RecordAudio", "Parameters": {
                    "DurationInSeconds": 2,
                    "RecordingDestination": {"Type": "File", "Path": "messages"}}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {"SipResponseCode": "0"}}]}},
            {"expect": "HANGUP", "answer": {"SchemaVersion": "1.0", "Actions": []}}
        ]),
        Some(SECRET),
    );
    let d = daemon(
        "sma-ivr",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        &format!("webhook_secret = \"{SECRET}\""),
        "",
    );
    write_wav(&d.dir.join("prompt.wav"), &prompt);
    // The series exists before the first call.
    assert_eq!(
        d.metric("sma_active_calls{sip_media_application_id=\"sma-ivr\"}"),
        Some(0.0)
    );
    let mut call = Call::place(&d);
    d.wait_metric(
        "sma_active_calls{sip_media_application_id=\"sma-ivr\"}",
        1.0,
    );
    let (rtp, sender) = caller_rtp(&call.ua.rtp, call.trunkd_rtp);
    // The prompt, exactly.
    let heard = receive_audio(&call.ua.rtp, prompt.len());
    assert_eq!(heard.len(), prompt.len());
    let first_diff = heard.iter().zip(&prompt).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "the prompt arrived altered");
    // 1 (RFC 4733), 2 (INFO), 3 (RFC 4733), # (INFO) ends the collection.
    rtp.send(Rtp::Key(1)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    call.info_key('2');
    std::thread::sleep(Duration::from_millis(300));
    rtp.send(Rtp::Key(3)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    call.info_key('#');
    // The recording runs its 2 s while the caller talks, then the Hangup.
    call.expect_bye();
    rtp.send(Rtp::Stop).unwrap();
    sender.join().unwrap();

    let got = app.wait_requests(4);
    assert_eq!(
        types(&got),
        [
            "NEW_INBOUND_CALL",
            "ACTION_SUCCESSFUL",
            "ACTION_SUCCESSFUL",
            "HANGUP"
        ]
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["signature_ok"], json!(true), "request {i} signed");
        assert_eq!(r["content_type"], json!("application/json"));
        assert_eq!(r["event"]["SchemaVersion"], json!("1.0"));
        assert_eq!(r["event"]["Sequence"], json!(i + 1));
        let cd = &r["event"]["CallDetails"];
        assert_eq!(cd["SipMediaApplicationId"], json!("sma-ivr"));
        assert_eq!(cd["SipRuleId"], json!("rule-1"));
        let p = &cd["Participants"][0];
        assert_eq!(p["CallId"], json!(call.call_id));
        assert_eq!(p["ParticipantTag"], json!("LEG-A"));
        assert_eq!(p["To"], json!(NUMBER));
        assert_eq!(p["From"], json!(CALLER));
        assert_eq!(p["Direction"], json!("Inbound"));
        assert!(p["StartTimeInMilliseconds"].is_string());
    }
    let ids: std::collections::BTreeSet<_> =
        got.iter().map(|r| r["webhook_id"].to_string()).collect();
    assert_eq!(ids.len(), 4, "a fresh webhook-id per invocation");
    let digits = &got[1]["event"]["ActionData"];
    assert_eq!(digits["Type"], json!("PlayAudioAndGetDigits"));
    assert_eq!(digits["ReceivedDigits"], json!("123"));
    let rec = &got[2]["event"]["ActionData"];
    assert_eq!(rec["Type"], json!("RecordAudio"));
    assert_eq!(rec["RecordingDestination"]["Type"], json!("File"));
    let path = PathBuf::from(rec["RecordingDestination"]["Path"].as_str().unwrap());
    let txn = got[0]["event"]["CallDetails"]["TransactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(path, d.dir.join("messages").join(format!("{txn}-1.wav")));
    assert!(rec.get("RecordingTerminatorUsed").is_none(), "{rec}");
    let hangup = &got[3]["event"];
    assert_eq!(
        hangup["CallDetails"]["Participants"][0]["Status"],
        json!("Disconnected")
    );
    assert_eq!(hangup["ActionData"]["Type"], json!("Hangup"));
    // The message: about 2 s of the caller's square wave.
    let (rate, samples) = read_wav(&path);
    assert_eq!(rate, 8000);
    let secs = samples.len() as f64 / 8000.0;
    assert!((1.7..=2.3).contains(&secs), "recorded {secs} s");
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 4000).count();
    assert!(
        loud > samples.len() / 2,
        "the recording is not the caller's audio ({loud} of {} loud)",
        samples.len()
    );
    // The call's CDR, filed under the SMA id (it has no voice connector).
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    let c = &cdrs[0];
    assert!(
        c["_key"]
            .as_str()
            .unwrap()
            .starts_with("Amazon-Chime-Voice-Connector-CDRs/json/sma-ivr/"),
        "{c}"
    );
    assert_eq!(c["TransactionId"], json!(txn));
    assert_eq!(c["CallId"], json!(call.call_id));
    assert_eq!(c["VoiceConnectorId"], json!("sma-ivr"));
    assert_eq!(c["Direction"], json!("Inbound"));
    assert_eq!(c["Status"], json!("Completed"));
    assert_eq!(c["SourcePhoneNumber"], json!(CALLER));
    assert_eq!(c["DestinationPhoneNumber"], json!(NUMBER));
    wait_gauges_zero(&d);
}

/// A background ReceiveDigits hears keys pressed during a Pause: the
/// application gets DIGITS_RECEIVED with them while the Pause runs, and
/// its answer runs once the Pause is over.
#[test]
fn sma_receive_digits_hears_keys_pressed_during_a_pause() {
    let dir = temp_dir("sma-rd-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "ReceiveDigits", "Parameters": {
                    "InputDigitsRegex": "^\\d{2}$",
                    "InBetweenDigitsDurationInMilliseconds": 800,
                    "FlushDigitsDurationInMilliseconds": 5000}},
                {"Type": "Pause", "Parameters": {"DurationInMilliseconds": 6000}}]}},
            {"expect": "DIGITS_RECEIVED", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {}}]}}
        ]),
        None,
    );
    let d = daemon(
        "sma-rd",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        "",
    );
    let mut call = Call::place(&d);
    std::thread::sleep(Duration::from_millis(200));
    call.info_key('4');
    call.info_key('2');
    // Heard while the Pause still runs (keys are not held until it ends).
    let pressed = Instant::now();
    app.wait_requests(2);
    assert!(
        pressed.elapsed() < Duration::from_secs(3),
        "DIGITS_RECEIVED came only after the Pause: {:?}",
        pressed.elapsed()
    );
    call.expect_bye();
    let got = app.wait_requests(3);
    assert_eq!(
        types(&got),
        ["NEW_INBOUND_CALL", "DIGITS_RECEIVED", "HANGUP"]
    );
    let data = &got[1]["event"]["ActionData"];
    assert_eq!(data["Type"], json!("ReceiveDigits"));
    assert_eq!(data["ReceivedDigits"], json!("42"));
    wait_gauges_zero(&d);
}

/// The caller hangs up first: HANGUP names LEG-A, without ActionData.
#[test]
fn sma_caller_hangs_up_first() {
    let dir = temp_dir("sma-bye-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Answer", "Parameters": {}},
                {"Type": "Pause", "Parameters": {"DurationInMilliseconds": 30000}}]}}
        ]),
        None,
    );
    let d = daemon(
        "sma-bye",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        "",
    );
    let mut call = Call::place(&d);
    std::thread::sleep(Duration::from_millis(300));
    call.bye();
    let got = app.wait_requests(2);
    assert_eq!(types(&got), ["NEW_INBOUND_CALL", "HANGUP"]);
    assert_eq!(got[0]["signature_ok"], Value::Null);
    let h = &got[1]["event"];
    assert_eq!(
        h["CallDetails"]["Participants"][0]["ParticipantTag"],
        json!("LEG-A")
    );
    assert_eq!(
        h["CallDetails"]["Participants"][0]["Status"],
        json!("Disconnected")
    );
    assert!(h.get("ActionData").is_none(), "{h}");
    wait_gauges_zero(&d);
}

/// The first endpoint answers 500, the second (priority 2) is used and
/// answers garbage twice: INVALID_LAMBDA_RESPONSE, then the call is
/// refused 480 before its answer. HANGUP still goes out.
#[test]
fn sma_500_moves_to_the_next_endpoint_and_garbage_twice_ends_the_call() {
    let dir = temp_dir("sma-fail-app");
    let first = App::start(
        &dir,
        "first",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": "500"},
            {"expect": "INVALID_LAMBDA_RESPONSE", "answer": "500"}
        ]),
        None,
    );
    let second = App::start(
        &dir,
        "second",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": "garbage"},
            {"expect": "INVALID_LAMBDA_RESPONSE", "answer": "garbage"}
        ]),
        None,
    );
    let d = daemon(
        "sma-fail",
        &format!(
            "[ {}, {} ]",
            endpoint(&second.url(), 2),
            endpoint(&first.url(), 1)
        ),
        "",
        "",
    );
    let ua = Ua::new(CARRIER);
    send_invite(&ua, d.sip(), NUMBER, CALLER, &ua.sdp("sendrecv"));
    let fin = ua.recv_until(Duration::from_secs(10), |m| {
        m.status().is_some_and(|s| s >= 200)
    });
    assert_eq!(fin.status(), Some(480), "{}", fin.text);
    let cdrs = wait_cdrs(&records(&d), 1);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0]["VoiceConnectorId"], json!("sma-ivr"));
    assert_eq!(cdrs[0]["Status"], json!("Failed"), "{}", cdrs[0]);
    // Every invocation starts at the first endpoint; it answers the HANGUP.
    let f = first.wait_requests(3);
    assert_eq!(
        types(&f),
        ["NEW_INBOUND_CALL", "INVALID_LAMBDA_RESPONSE", "HANGUP"]
    );
    let s = second.wait_requests(2);
    assert_eq!(types(&s), ["NEW_INBOUND_CALL", "INVALID_LAMBDA_RESPONSE"]);
    // A retry keeps its Sequence and body.
    assert_eq!(f[0]["event"], s[0]["event"]);
    assert_eq!(f[0]["webhook_id"], s[0]["webhook_id"]);
    assert_eq!(s[1]["event"]["Sequence"], json!(2));
    assert_eq!(s[1]["event"]["ErrorType"], json!("InvalidLambdaResponse"));
    assert_eq!(f[1]["event"], s[1]["event"]);
    assert_eq!(f[2]["event"]["Sequence"], json!(3));
    wait_gauges_zero(&d);
}

/// The first endpoint does not answer in time (it sleeps past the
/// response timeout): the second answers, and the call goes on.
#[test]
fn sma_a_slow_endpoint_is_given_up_for_the_next() {
    let dir = temp_dir("sma-slow-app");
    let first = App::start(
        &dir,
        "first",
        json!([{"expect": "NEW_INBOUND_CALL", "sleep": 3,
                "answer": {"SchemaVersion": "1.0", "Actions": [{"Type": "Hangup", "Parameters": {}}]}}]),
        None,
    );
    let second = App::start(
        &dir,
        "second",
        json!([{"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
            {"Type": "Pause", "Parameters": {"DurationInMilliseconds": 200}},
            {"Type": "Hangup", "Parameters": {}}]}}]),
        None,
    );
    let d = daemon(
        "sma-slow",
        &format!(
            "[ {}, {} ]",
            endpoint(&first.url(), 1),
            endpoint(&second.url(), 2)
        ),
        "",
        "response_timeout_ms = 700",
    );
    let call = Call::place(&d);
    call.expect_bye();
    let s = second.wait_requests(1);
    assert_eq!(types(&s)[0], "NEW_INBOUND_CALL");
    // The HANGUP: to the first endpoint (it answers, late or not), or on
    // to the second after its timeout; either way it arrives once more.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all: Vec<String> = types(&first.requests())
            .into_iter()
            .chain(types(&second.requests()))
            .collect();
        if all.iter().any(|t| t == "HANGUP") {
            break;
        }
        assert!(Instant::now() < deadline, "no HANGUP: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_gauges_zero(&d);
}

/// No endpoint reachable: 480, and nothing is left behind.
/// A loopback address where nothing in the suite listens.
const NOBODY: &str = "127.0.0.66";

#[test]
fn sma_no_endpoint_reachable_is_480() {
    // An address no test listens on: a port freed on 127.0.0.1 could be
    // taken by a parallel test's server before trunkd connects.
    let closed = free_port_on(NOBODY);
    let d = daemon(
        "sma-unreachable",
        &format!(
            "[ {} ]",
            endpoint(&format!("http://{NOBODY}:{closed}/sma"), 1)
        ),
        "",
        "",
    );
    let ua = Ua::new(CARRIER);
    send_invite(&ua, d.sip(), NUMBER, CALLER, &ua.sdp("sendrecv"));
    let fin = ua.recv_until(Duration::from_secs(10), |m| {
        m.status().is_some_and(|s| s >= 200)
    });
    assert_eq!(fin.status(), Some(480), "{}", fin.text);
    wait_gauges_zero(&d);
    assert_eq!(
        d.metric(
            "sma_invocations_total{sip_media_application_id=\"sma-ivr\",event_type=\"NEW_INBOUND_CALL\",result=\"unreachable\"}"
        ),
        Some(1.0)
    );
}

/// SIPp as the caller: keys by RFC 4733 from Debian's captures
/// (`dtmf_2833_1.pcap`, `dtmf_2833_9.pcap`) and by SIP INFO, interleaved;
/// the application gets exactly those keys, in order.
#[test]
fn sma_sipp_caller_keys_by_rfc4733_captures_and_info() {
    let dir = temp_dir("sma-sipp-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "PlayAudioAndGetDigits", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"},
                    "MinNumberOfDigits": 1, "MaxNumberOfDigits": 8,
                    "TerminatorDigits": ["#"],
                    "InBetweenDigitsDurationInMilliseconds": 5000}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {}}]}}
        ]),
        Some(SECRET),
    );
    let d = daemon(
        "sma-sipp",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        &format!("webhook_secret = \"{SECRET}\""),
        "",
    );
    write_wav(&d.dir.join("prompt.wav"), &prompt_samples(4000));
    let media = free_port_on(CARRIER).to_string();
    let out = sipp_uac(
        "uac_sma_ivr.xml",
        CARRIER,
        d.sip(),
        &[
            "-s", NUMBER, "-key", "caller", CALLER, "-m", "1", "-mp", &media,
        ],
    );
    assert!(
        out.status.success(),
        "sipp: {}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let got = app.wait_requests(3);
    assert_eq!(
        types(&got),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP"]
    );
    assert!(got.iter().all(|r| r["signature_ok"] == json!(true)));
    assert_eq!(
        got[1]["event"]["ActionData"]["ReceivedDigits"],
        json!("159")
    );
    wait_gauges_zero(&d);
}

/// An answered call whose application then answers garbage twice is
/// ended with a BYE.
#[test]
fn sma_garbage_twice_after_the_answer_is_a_bye() {
    let dir = temp_dir("sma-garbage-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Pause", "Parameters": {"DurationInMilliseconds": 300}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": "garbage"},
            {"expect": "INVALID_LAMBDA_RESPONSE", "answer": "garbage"}
        ]),
        None,
    );
    let d = daemon(
        "sma-garbage",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        "",
    );
    let call = Call::place(&d);
    call.expect_bye();
    let got = app.wait_requests(4);
    assert_eq!(
        types(&got),
        [
            "NEW_INBOUND_CALL",
            "ACTION_SUCCESSFUL",
            "INVALID_LAMBDA_RESPONSE",
            "HANGUP"
        ]
    );
    let ilr = &got[2]["event"];
    assert_eq!(ilr["ErrorType"], json!("InvalidLambdaResponse"));
    assert!(ilr["ErrorMessage"]
        .as_str()
        .unwrap()
        .starts_with("The response is not valid JSON"));
    wait_gauges_zero(&d);
}

/// A URL audio source is fetched once and served from the cache to the
/// next call (the caller hears it exactly both times); a missing file and
/// an S3 source (no `[[records.sinks]]` has its bucket here) fail the action with
/// InvalidAudioSource and the call goes on.
#[test]
fn sma_url_audio_is_fetched_once_and_bad_sources_fail_the_action() {
    let dir = temp_dir("sma-url-app");
    let prompt = prompt_samples(1600);
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    write_wav(&media.join("hello.wav"), &prompt);
    let port_hint = "{URL}";
    let play = |source: Value| json!({"Type": "PlayAudio", "Parameters": {"AudioSource": source}});
    let answer = |actions: Vec<Value>| json!({"SchemaVersion": "1.0", "Actions": actions});
    // The URL is only known once the app runs: the script names it by a
    // placeholder the app's own port replaces.
    let url = json!({"Type": "URL", "Uri": port_hint});
    let script = json!([
        {"expect": "NEW_INBOUND_CALL", "answer": answer(vec![play(url.clone())])},
        {"expect": "ACTION_SUCCESSFUL", "answer": answer(vec![play(json!({"Type": "File", "Path": "missing.wav"}))])},
        {"expect": "ACTION_FAILED", "answer": answer(vec![play(json!({"Type": "S3", "BucketName": "b", "Key": "k.wav"}))])},
        {"expect": "ACTION_FAILED", "answer": answer(vec![json!({"Type": "Hangup", "Parameters": {}})])},
        {"expect": "HANGUP", "answer": answer(vec![])},
        {"expect": "NEW_INBOUND_CALL", "answer": answer(vec![play(url), json!({"Type": "Hangup", "Parameters": {}})])},
        {"expect": "HANGUP", "answer": answer(vec![])}
    ]);
    let port = free_port();
    let text = script.to_string().replace(
        port_hint,
        &format!("http://127.0.0.1:{port}/media/hello.wav"),
    );
    let app = App::start_with(
        &dir,
        "app",
        serde_json::from_str(&text).unwrap(),
        None,
        port,
        &["--media", media.to_str().unwrap()],
    );
    let d = daemon(
        "sma-url",
        &format!(
            "[ {} ]",
            endpoint(&format!("http://127.0.0.1:{port}/sma"), 1)
        ),
        "",
        "",
    );
    for round in 0..2 {
        let call = Call::place(&d);
        let heard = receive_audio(&call.ua.rtp, prompt.len());
        assert_eq!(heard, prompt, "call {round}: the prompt arrived altered");
        call.expect_bye();
        // The script is one for both calls: the first call's HANGUP first.
        app.wait_requests(5);
    }
    let got = app.wait_requests(7);
    assert_eq!(
        types(&got),
        [
            "NEW_INBOUND_CALL",
            "ACTION_SUCCESSFUL",
            "ACTION_FAILED",
            "ACTION_FAILED",
            "HANGUP",
            "NEW_INBOUND_CALL",
            "HANGUP"
        ]
    );
    let missing = &got[2]["event"]["ActionData"];
    assert_eq!(missing["ErrorType"], json!("InvalidAudioSource"));
    assert!(
        missing["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("missing.wav"),
        "{missing}"
    );
    let s3 = &got[3]["event"]["ActionData"];
    assert_eq!(s3["ErrorType"], json!("InvalidAudioSource"));
    assert!(
        s3["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("no [[records.sinks]] has the bucket \"b\""),
        "{s3}"
    );
    assert_eq!(
        app.gets(),
        ["/media/hello.wav"],
        "fetched once, then cached"
    );
    assert_eq!(
        d.metric(
            "sma_action_failures_total{sip_media_application_id=\"sma-ivr\",error_type=\"InvalidAudioSource\"}"
        ),
        Some(2.0)
    );
    wait_gauges_zero(&d);
}

/// `POST` with a JSON body to the admin listener: (status, body).
pub(crate) fn admin_post(d: &Daemon, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&d.admin(), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        d.admin(),
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// UpdateSipMediaApplicationCall: the admin operation reaches the call's
/// application as CALL_UPDATE_REQUESTED with its arguments, and the
/// answer's actions run (here a Hangup once the running Pause is over).
#[test]
fn sma_update_call_sends_call_update_requested() {
    let dir = temp_dir("sma-update-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Answer", "Parameters": {}},
                {"Type": "Pause", "Parameters": {"DurationInMilliseconds": 1500}}]}},
            {"expect": "CALL_UPDATE_REQUESTED", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {}}]}}
        ]),
        None,
    );
    let d = daemon(
        "sma-update",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        "",
    );
    let call = Call::place(&d);
    let txn = app.wait_requests(1)[0]["event"]["CallDetails"]["TransactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = admin_post(
        &d,
        &format!("/sip-media-applications/other-sma/calls/{txn}"),
        r#"{"Arguments":{"a":"1"}}"#,
    );
    assert_eq!(status, 404, "another application's call");
    let (status, body) = admin_post(
        &d,
        &format!("/sip-media-applications/sma-ivr/calls/{txn}"),
        r#"{"Arguments":{"a":1}}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = admin_post(
        &d,
        &format!("/sip-media-applications/sma-ivr/calls/{txn}"),
        r#"{"Arguments":{"Key":"Value","n":"2"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"SipMediaApplicationCall": {"TransactionId": txn}})
    );
    call.expect_bye();
    let got = app.wait_requests(3);
    assert_eq!(
        types(&got),
        ["NEW_INBOUND_CALL", "CALL_UPDATE_REQUESTED", "HANGUP"]
    );
    assert_eq!(
        got[1]["event"]["ActionData"],
        json!({"Type": "CallUpdateRequest", "Parameters": {"Arguments": {"Key": "Value", "n": "2"}}})
    );
    wait_gauges_zero(&d);
    let (status, _) = admin_post(
        &d,
        &format!("/sip-media-applications/sma-ivr/calls/{txn}"),
        r#"{"Arguments":{}}"#,
    );
    assert_eq!(status, 404, "the call is over");
}

/// A recording ended by one of its terminators says which; without a
/// destination it goes to `[applications] recording_directory`.
#[test]
fn sma_record_audio_stopped_by_a_terminator_reports_it() {
    let dir = temp_dir("sma-rec-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "RecordAudio", "Parameters": {
                    "DurationInSeconds": 30, "RecordingTerminators": ["*", "#"]}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {}}]}}
        ]),
        None,
    );
    let d = daemon(
        "sma-rec",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        "recording_directory = \"recs\"",
    );
    let mut call = Call::place(&d);
    let (rtp, sender) = caller_rtp(&call.ua.rtp, call.trunkd_rtp);
    std::thread::sleep(Duration::from_millis(700));
    call.info_key('*');
    call.expect_bye();
    rtp.send(Rtp::Stop).unwrap();
    sender.join().unwrap();
    let got = app.wait_requests(3);
    assert_eq!(
        types(&got),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP"]
    );
    let rec = &got[1]["event"]["ActionData"];
    assert_eq!(rec["RecordingTerminatorUsed"], json!("*"));
    let txn = got[0]["event"]["CallDetails"]["TransactionId"]
        .as_str()
        .unwrap();
    let path = d.dir.join("recs").join(format!("{txn}-1.wav"));
    assert_eq!(
        rec["RecordingDestination"],
        json!({"Type": "File", "Path": path.display().to_string()})
    );
    let (_, samples) = read_wav(&path);
    let secs = samples.len() as f64 / 8000.0;
    assert!((0.3..=1.5).contains(&secs), "recorded {secs} s");
    wait_gauges_zero(&d);
}

/// The caller gives up (CANCEL) while the application has not answered
/// yet: 487, and the application still hears of the call's end.
#[test]
fn sma_caller_cancels_before_the_application_answers() {
    let dir = temp_dir("sma-cancel-app");
    let app = App::start(
        &dir,
        "app",
        json!([{"expect": "NEW_INBOUND_CALL", "sleep": 1.5, "answer": {"SchemaVersion": "1.0", "Actions": [
            {"Type": "Answer", "Parameters": {}}]}}]),
        None,
    );
    let d = daemon(
        "sma-cancel",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        "",
    );
    let ua = Ua::new(CARRIER);
    let call_id = send_invite(&ua, d.sip(), NUMBER, CALLER, &ua.sdp("sendrecv"));
    app.wait_requests(1);
    let cancel = format!(
        "CANCEL sip:{NUMBER}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-1;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{CALLER}@{ip}>;tag={tag}\r\nTo: <sip:{NUMBER}@{t}>\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        t = d.sip(),
        me = ua.sip_addr(),
        ip = ua.ip,
        tag = ua.tag,
    );
    ua.send(d.sip(), &cancel);
    let fin = ua.recv_until(Duration::from_secs(10), |m| {
        m.status().is_some_and(|s| s >= 200)
            && m.header("CSeq").is_some_and(|c| c.ends_with("INVITE"))
    });
    assert_eq!(fin.status(), Some(487), "{}", fin.text);
    let got = app.wait_requests(2);
    assert_eq!(types(&got), ["NEW_INBOUND_CALL", "HANGUP"]);
    assert_eq!(
        got[1]["event"]["CallDetails"]["Participants"][0]["Status"],
        json!("Disconnected")
    );
    wait_gauges_zero(&d);
}

/// InputDigitsRegex as the managed service applies it: keys that do not
/// match are a failed attempt — the FailureAudioSource plays and the
/// prompt again (Repeat 2) — and the keys of the next attempt count.
#[test]
fn sma_digits_not_matching_the_regex_play_the_failure_prompt_and_retry() {
    let dir = temp_dir("sma-regex-app");
    let prompt = prompt_samples(800);
    let failure: Vec<i16> = prompt.iter().rev().copied().collect();
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "PlayAudioAndGetDigits", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"},
                    "FailureAudioSource": {"Type": "File", "Path": "failure.wav"},
                    "InputDigitsRegex": "^1\\d$",
                    "MinNumberOfDigits": 2, "MaxNumberOfDigits": 4,
                    "TerminatorDigits": ["#"], "Repeat": 2,
                    "InBetweenDigitsDurationInMilliseconds": 3000}}]}},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {}}]}}
        ]),
        None,
    );
    let d = daemon(
        "sma-regex",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        "",
    );
    write_wav(&d.dir.join("prompt.wav"), &prompt);
    write_wav(&d.dir.join("failure.wav"), &failure);
    let mut call = Call::place(&d);
    assert_eq!(receive_audio(&call.ua.rtp, prompt.len()), prompt);
    for k in ['5', '5', '#'] {
        call.info_key(k);
    }
    assert_eq!(
        receive_audio(&call.ua.rtp, failure.len()),
        failure,
        "the failure prompt"
    );
    assert_eq!(
        receive_audio(&call.ua.rtp, prompt.len()),
        prompt,
        "the prompt again"
    );
    for k in ['1', '2', '#'] {
        call.info_key(k);
    }
    call.expect_bye();
    let got = app.wait_requests(3);
    assert_eq!(
        types(&got),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP"]
    );
    assert_eq!(got[1]["event"]["ActionData"]["ReceivedDigits"], json!("12"));
    wait_gauges_zero(&d);
}

/// S3 audio and recordings against a real store (SeaweedFS, with
/// credentials): the prompt the test put in the bucket is heard sample for
/// sample; a RecordAudio to an S3 destination lands in the bucket as the
/// ActionData names it and holds the caller's audio; a bucket no sink has
/// fails the action (InvalidActionParameter) and the call goes on.
#[test]
fn sma_s3_prompt_is_played_and_a_recording_lands_in_the_bucket() {
    let weed = Weed::start("sma-s3");
    let dir = temp_dir("sma-s3-app");
    let prompt = prompt_samples(4000);
    write_wav(&dir.join("welcome.wav"), &prompt);
    weed.put_object(
        "prompts/welcome.wav",
        &std::fs::read(dir.join("welcome.wav")).unwrap(),
    );
    let answer = |actions: Vec<Value>| json!({"SchemaVersion": "1.0", "Actions": actions});
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": answer(vec![json!({"Type": "PlayAudio", "Parameters": {
                "AudioSource": {"Type": "S3", "BucketName": BUCKET, "Key": "prompts/welcome.wav"}}})])},
            {"expect": "ACTION_SUCCESSFUL", "answer": answer(vec![json!({"Type": "RecordAudio", "Parameters": {
                "DurationInSeconds": 2,
                "RecordingDestination": {"Type": "S3", "BucketName": BUCKET, "Prefix": "messages"}}})])},
            {"expect": "ACTION_SUCCESSFUL", "answer": answer(vec![json!({"Type": "RecordAudio", "Parameters": {
                "DurationInSeconds": 2,
                "RecordingDestination": {"Type": "S3", "BucketName": "nobody-has-it", "Prefix": "m"}}})])},
            {"expect": "ACTION_FAILED", "answer": answer(vec![json!({"Type": "Hangup", "Parameters": {}})])},
            {"expect": "HANGUP", "answer": answer(vec![])}
        ]),
        None,
    );
    let d = daemon(
        "sma-s3",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        &format!(
            "\n{}",
            crate::record_store::records_section(&[(
                "s3",
                &weed.endpoint(),
                crate::weed::SECRET_KEY
            )])
        ),
    );
    let call = Call::place(&d);
    let (rtp, sender) = caller_rtp(&call.ua.rtp, call.trunkd_rtp);
    let heard = receive_audio(&call.ua.rtp, prompt.len());
    assert_eq!(heard, prompt, "the prompt from the bucket arrived altered");
    call.expect_bye();
    rtp.send(Rtp::Stop).unwrap();
    sender.join().unwrap();
    let got = app.wait_requests(5);
    assert_eq!(
        types(&got),
        [
            "NEW_INBOUND_CALL",
            "ACTION_SUCCESSFUL",
            "ACTION_SUCCESSFUL",
            "ACTION_FAILED",
            "HANGUP"
        ]
    );
    let txn = got[0]["event"]["CallDetails"]["TransactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec = &got[2]["event"]["ActionData"];
    assert_eq!(rec["Type"], json!("RecordAudio"));
    let key = format!("messages/{txn}-1.wav");
    assert_eq!(
        rec["RecordingDestination"],
        json!({"Type": "S3", "BucketName": BUCKET, "Key": key})
    );
    let failed = &got[3]["event"]["ActionData"];
    assert_eq!(failed["ErrorType"], json!("InvalidActionParameter"));
    assert!(
        failed["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("no [[records.sinks]] has the bucket \"nobody-has-it\""),
        "{failed}"
    );
    // The upload runs after the action: wait for the object (bounded).
    let deadline = Instant::now() + Duration::from_secs(15);
    let bytes = loop {
        if let Some(b) = weed.objects().remove(&key) {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never reached the bucket: {:?}",
            weed.objects().keys().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let local = dir.join("from-bucket.wav");
    std::fs::write(&local, &bytes).unwrap();
    let (rate, samples) = read_wav(&local);
    assert_eq!(rate, 8000);
    let secs = samples.len() as f64 / 8000.0;
    assert!((1.7..=2.3).contains(&secs), "recorded {secs} s");
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 4000).count();
    assert!(
        loud > samples.len() / 2,
        "the recording is not the caller's audio ({loud} of {} loud)",
        samples.len()
    );
    // Once uploaded, the local copy is gone.
    let spare = d
        .dir
        .join("var")
        .join("sma-recordings")
        .join(format!("{txn}-1.wav"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while spare.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!spare.exists(), "{} kept after the upload", spare.display());
    wait_gauges_zero(&d);
}

/// A 16-bit PCM WAV file: (channels, rate, interleaved samples).
fn read_wav_channels(bytes: &[u8]) -> (u16, u32, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF");
    let mut i = 12;
    let (mut channels, mut rate) = (0, 0);
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let len = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = &bytes[i + 8..(i + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        }
        if id == b"data" {
            let s = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (channels, rate, s);
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// Where `needle` starts in `hay`, if it is there whole.
fn find(hay: &[i16], needle: &[i16]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// StartCallRecording/StopCallRecording: BOTH is a stereo file, the
/// caller left and trunkd's prompt right (sample for sample), in the
/// File destination's directory; INCOMING to an S3 destination still
/// running at hangup is finished and lands in the bucket.
#[test]
fn sma_call_recording_both_tracks_to_a_file_and_incoming_to_the_bucket() {
    let weed = Weed::start("sma-callrec");
    let dir = temp_dir("sma-callrec-app");
    let prompt = prompt_samples(4000);
    let answer = |actions: Vec<Value>| json!({"SchemaVersion": "1.0", "Actions": actions});
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": answer(vec![
                json!({"Type": "StartCallRecording", "Parameters": {
                    "Track": "BOTH", "Destination": {"Type": "File", "Path": "calls"}}}),
                json!({"Type": "PlayAudio", "Parameters": {
                    "AudioSource": {"Type": "File", "Path": "prompt.wav"}}}),
                json!({"Type": "Pause", "Parameters": {"DurationInMilliseconds": 1000}}),
                json!({"Type": "StopCallRecording", "Parameters": {}}),
                json!({"Type": "Hangup", "Parameters": {}})])},
            {"expect": "HANGUP", "answer": answer(vec![])},
            {"expect": "NEW_INBOUND_CALL", "answer": answer(vec![
                json!({"Type": "StartCallRecording", "Parameters": {
                    "Track": "INCOMING",
                    "Destination": {"Type": "S3", "Location": format!("{BUCKET}/calls")}}})])},
            {"expect": "ACTION_SUCCESSFUL", "answer": answer(vec![
                json!({"Type": "Pause", "Parameters": {"DurationInMilliseconds": 1500}}),
                json!({"Type": "Hangup", "Parameters": {}})])},
            {"expect": "HANGUP", "answer": answer(vec![])}
        ]),
        None,
    );
    let d = daemon(
        "sma-callrec",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        "",
        &format!(
            "\n{}",
            crate::record_store::records_section(&[(
                "s3",
                &weed.endpoint(),
                crate::weed::SECRET_KEY
            )])
        ),
    );
    write_wav(&d.dir.join("prompt.wav"), &prompt);

    // 1: BOTH, to a file.
    let call = Call::place(&d);
    let (rtp, sender) = caller_rtp(&call.ua.rtp, call.trunkd_rtp);
    let heard = receive_audio(&call.ua.rtp, prompt.len());
    assert_eq!(heard, prompt);
    call.expect_bye();
    rtp.send(Rtp::Stop).unwrap();
    sender.join().unwrap();
    let got = app.wait_requests(2);
    assert_eq!(types(&got), ["NEW_INBOUND_CALL", "HANGUP"]);
    let txn = got[0]["event"]["CallDetails"]["TransactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = d.dir.join("calls").join(format!("{txn}-call-1.wav"));
    let (channels, rate, s) = read_wav_channels(&std::fs::read(&path).unwrap());
    assert_eq!((channels, rate), (2, 8000));
    let left: Vec<i16> = s.iter().step_by(2).copied().collect();
    let right: Vec<i16> = s.iter().skip(1).step_by(2).copied().collect();
    let secs = left.len() as f64 / 8000.0;
    // The prompt (0.5 s) and the pause (1 s), from the answer on.
    assert!((1.3..=2.2).contains(&secs), "recorded {secs} s");
    let loud = left.iter().filter(|s| s.unsigned_abs() > 4000).count();
    assert!(
        loud > left.len() / 2,
        "the left channel is not the caller ({loud} of {} loud)",
        left.len()
    );
    assert!(
        find(&right, &prompt).is_some(),
        "the right channel does not hold the prompt"
    );
    assert!(
        find(&left, &prompt[..160]).is_none(),
        "the prompt leaked into the caller's channel"
    );

    // 2: INCOMING, to the bucket, still running at the hangup.
    let call = Call::place(&d);
    let (rtp, sender) = caller_rtp(&call.ua.rtp, call.trunkd_rtp);
    call.expect_bye();
    rtp.send(Rtp::Stop).unwrap();
    sender.join().unwrap();
    let got = app.wait_requests(5);
    assert_eq!(
        types(&got[2..]),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP"]
    );
    let txn = got[2]["event"]["CallDetails"]["TransactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = format!("calls/{txn}-call-1.wav");
    let data = &got[3]["event"]["ActionData"];
    assert_eq!(data["Type"], json!("StartCallRecording"));
    assert_eq!(
        data["CallRecordingDestination"],
        json!({"Type": "S3", "BucketName": BUCKET, "Key": key})
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let bytes = loop {
        if let Some(b) = weed.objects().remove(&key) {
            break b;
        }
        assert!(Instant::now() < deadline, "{key} never reached the bucket");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (channels, rate, s) = read_wav_channels(&bytes);
    assert_eq!((channels, rate), (1, 8000));
    let secs = s.len() as f64 / 8000.0;
    assert!((1.2..=2.0).contains(&secs), "recorded {secs} s");
    let loud = s.iter().filter(|s| s.unsigned_abs() > 4000).count();
    assert!(loud > s.len() / 2, "{loud} of {} loud", s.len());
    wait_gauges_zero(&d);
}

/// The issue's proof: baresip calls the rule's number over TLS with SRTP
/// required; the application plays a prompt and collects a digit, which
/// baresip sends as DTMF from its console; the prompt reaches baresip
/// (decrypted, in its aufile output) and the application gets the digit.
#[test]
fn sma_baresip_srtp_over_tls_hears_the_prompt_and_sends_a_digit() {
    use crate::baresip::{Baresip, Certs};
    let dir = temp_dir("sma-baresip-app");
    let prompt = prompt_samples(8000);
    let answer = |actions: Vec<Value>| json!({"SchemaVersion": "1.0", "Actions": actions});
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": answer(vec![json!({"Type": "PlayAudioAndGetDigits", "Parameters": {
                "AudioSource": {"Type": "File", "Path": "prompt.wav"},
                "MinNumberOfDigits": 1, "MaxNumberOfDigits": 1,
                "InBetweenDigitsDurationInMilliseconds": 8000}})])},
            {"expect": "ACTION_SUCCESSFUL", "answer": answer(vec![json!({"Type": "Hangup", "Parameters": {}})])},
            {"expect": "HANGUP", "answer": answer(vec![])}
        ]),
        None,
    );
    let certs = Certs::new("sma-baresip");
    let ports = Ports::pick();
    let tls = free_port();
    let text = crate::tls::tls_daemon_sections(ports, tls, &certs.cert, &certs.key, &certs.ca)
        + &format!(
            r#"
[[carriers]]
id = "carrier-a"
# baresip's TLS connections come from 127.0.0.1 whatever it listens on.
source_cidrs = ["127.0.0.1/32", "127.0.0.2/32"]
hosts = [ {{ host = "127.0.0.2", port = 9 }} ]
[[numbers]]
e164_phone_number = "{NUMBER}"
product_type = "SipMediaApplicationDialIn"
[[sip_media_applications]]
id = "sma-ivr"
endpoints = [ {} ]
[[sip_rules]]
id = "rule-1"
trigger_type = "ToPhoneNumber"
trigger_value = "{NUMBER}"
target_applications = [ {{ sip_media_application_id = "sma-ivr", priority = 1 }} ]
"#,
            endpoint(&app.url(), 1)
        );
    let d = Daemon::start("sma-baresip", ports, &text);
    write_wav(&d.dir.join("prompt.wav"), &prompt);
    let target = format!("127.0.0.1:{tls};transport=tls");
    let mut phone = Baresip::start_keyed(
        "sma-srtp",
        CARRIER,
        &format!("<sip:{CALLER}@{target}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU"),
        &[format!("/dial sip:{NUMBER}@{target}")],
        6,
        Duration::from_secs(12),
        // sndfile dumps what baresip decoded (`…-dec.wav`) and sent.
        &format!(
            "{}module sndfile.so\nsnd_path {}\n",
            certs.baresip(),
            dir.display()
        ),
    );
    let got = app.wait_requests(1);
    assert_eq!(types(&got), ["NEW_INBOUND_CALL"]);
    // The prompt is 1 s: press the key once it has played.
    std::thread::sleep(Duration::from_millis(1500));
    phone.press("7");
    let got = app.wait_requests(3);
    let log = phone.log();
    assert_eq!(
        types(&got),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP"],
        "baresip:\n{log}"
    );
    assert_eq!(got[1]["event"]["ActionData"]["ReceivedDigits"], json!("7"));
    assert!(phone.wait(Duration::from_secs(15)), "baresip quits");
    let log = phone.log();
    assert!(log.contains("SRTP is Enabled"), "{log}");
    // What baresip played out: the prompt, decrypted and decoded.
    let dump = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("no sndfile dump in {}:\n{log}", dir.display()));
    let (channels, rate, played) = read_wav_channels(&std::fs::read(&dump).unwrap());
    assert_eq!((channels, rate), (1, 8000));
    // baresip's μ-law table decodes the zero code to 2 (trunkd and this
    // test to 0); every other sample must be the prompt's, in order, from
    // a fifth of a second in (baresip's jitter buffer may drop the first
    // packets).
    let same = |a: i16, b: i16| a == b || (a == 0 && b == 2);
    let at = played
        .windows(160)
        .position(|w| w.iter().zip(&prompt[1600..1760]).all(|(&p, &q)| same(q, p)))
        .unwrap_or_else(|| {
            panic!(
                "the prompt's start is not in baresip's output ({} samples)",
                played.len()
            )
        });
    let (heard, expected) = (&played[at..], &prompt[1600..]);
    let n = heard.len().min(expected.len());
    assert!(n >= 4800, "only {n} samples of the prompt were played out");
    let first_diff = (0..n).find(|&i| !same(expected[i], heard[i]));
    assert_eq!(first_diff, None, "the prompt arrived altered");
    // The session was SRTP: the call came over TLS.
    let tls_requests = d.metric("sip_messages_received_total{transport=\"tls\",kind=\"request\"}");
    assert!(tls_requests.is_some_and(|n| n >= 2.0), "{tls_requests:?}");
    wait_gauges_zero(&d);
}

/// The RecordAudio of the silence tests: 30 s at most, `#` ends it, and 2 s
/// (`silence` s) at or below SilenceThreshold 200 ends it first.
fn record_until_silence(silence: u32) -> Value {
    json!({"SchemaVersion": "1.0", "Actions": [
        {"Type": "RecordAudio", "Parameters": {
            "DurationInSeconds": 30,
            "SilenceDurationInSeconds": silence,
            "SilenceThreshold": 200,
            "RecordingTerminators": ["#"],
            "RecordingDestination": {"Type": "File", "Path": "messages"}}}]})
}

/// SilenceDurationInSeconds with quiet packets still flowing: the caller
/// speaks (a loud square wave) for 1 s, then sends line noise (well below
/// SilenceThreshold 200) for 6 s; the recording ends 2 s into the noise —
/// not at DurationInSeconds — and, as the managed service reports a
/// silence stop, without RecordingTerminatorUsed.
#[test]
fn sma_record_audio_ends_after_silence_duration_below_the_threshold() {
    let dir = temp_dir("sma-silence-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": record_until_silence(2)},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {}}]}}
        ]),
        Some(SECRET),
    );
    let d = daemon(
        "sma-silence",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        &format!("webhook_secret = \"{SECRET}\""),
        "",
    );
    let call = Call::place(&d);
    let started = Instant::now();
    let sock = call.ua.rtp.try_clone().unwrap();
    let to = call.trunkd_rtp;
    let sender = std::thread::spawn(move || {
        let mut next = Instant::now();
        for seq in 0..350u16 {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&0x51E0_0001u32.to_be_bytes());
            if seq < 50 {
                p.extend((0..160).map(|i| if (i / 10) % 2 == 0 { 0x8f } else { 0x0f }));
            } else {
                // μ-law ±8: line noise.
                p.extend((0..160).map(|i| if i % 2 == 0 { 0xfb } else { 0x7b }));
            }
            let _ = sock.send_to(&p, to);
            next += Duration::from_millis(20);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    let got = app.wait_requests(2);
    let ended = started.elapsed();
    call.expect_bye();
    sender.join().unwrap();
    assert!(
        ended >= Duration::from_millis(2800) && ended < Duration::from_millis(4500),
        "the recording ended after {ended:?}"
    );
    let rec = &got[1]["event"]["ActionData"];
    assert_eq!(
        got[1]["event"]["InvocationEventType"],
        json!("ACTION_SUCCESSFUL")
    );
    assert_eq!(rec["Type"], json!("RecordAudio"));
    assert_eq!(rec["Parameters"]["SilenceDurationInSeconds"], json!(2));
    assert_eq!(rec["Parameters"]["SilenceThreshold"], json!(200));
    assert!(rec.get("RecordingTerminatorUsed").is_none(), "{rec}");
    let path = PathBuf::from(rec["RecordingDestination"]["Path"].as_str().unwrap());
    let (rate, samples) = read_wav(&path);
    assert_eq!(rate, 8000);
    let secs = samples.len() as f64 / 8000.0;
    assert!((2.6..=3.6).contains(&secs), "recorded {secs} s");
    // The speech is in it, then the quiet.
    let loud = samples[..8000]
        .iter()
        .filter(|s| s.unsigned_abs() > 4000)
        .count();
    assert!(loud > 4000, "{loud} loud samples in the first second");
    assert!(
        samples[9000..].iter().all(|s| s.unsigned_abs() < 200),
        "the tail is the line noise"
    );
    wait_gauges_zero(&d);
}

/// The same with SIPp as the caller: it plays Debian's g711a.pcap (7 s of
/// speech, PCMA) and then sends nothing; the recording ends about
/// SilenceDurationInSeconds after the speech, the application hangs up,
/// and SIPp sees the BYE.
#[test]
fn sma_sipp_caller_speaks_then_falls_silent_and_the_recording_ends() {
    let dir = temp_dir("sma-sipp-silence-app");
    let app = App::start(
        &dir,
        "app",
        json!([
            {"expect": "NEW_INBOUND_CALL", "answer": record_until_silence(2)},
            {"expect": "ACTION_SUCCESSFUL", "answer": {"SchemaVersion": "1.0", "Actions": [
                {"Type": "Hangup", "Parameters": {}}]}}
        ]),
        Some(SECRET),
    );
    let d = daemon(
        "sma-sipp-silence",
        &format!("[ {} ]", endpoint(&app.url(), 1)),
        &format!("webhook_secret = \"{SECRET}\""),
        "",
    );
    let media = free_port_on(CARRIER).to_string();
    let started = Instant::now();
    let out = sipp_uac(
        "uac_sma_record.xml",
        CARRIER,
        d.sip(),
        &[
            "-s", NUMBER, "-key", "caller", CALLER, "-m", "1", "-mp", &media,
        ],
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "sipp: {}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(took < Duration::from_secs(15), "the call took {took:?}");
    let got = app.wait_requests(3);
    assert_eq!(
        types(&got),
        ["NEW_INBOUND_CALL", "ACTION_SUCCESSFUL", "HANGUP"]
    );
    let rec = &got[1]["event"]["ActionData"];
    assert!(rec.get("RecordingTerminatorUsed").is_none(), "{rec}");
    let path = PathBuf::from(rec["RecordingDestination"]["Path"].as_str().unwrap());
    let (rate, samples) = read_wav(&path);
    assert_eq!(rate, 8000);
    let secs = samples.len() as f64 / 8000.0;
    assert!((6.0..=10.0).contains(&secs), "recorded {secs} s");
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 1000).count();
    assert!(
        loud > 8000,
        "the speech is in it ({loud} samples above 1000)"
    );
    wait_gauges_zero(&d);
}
