//! Streaming of bridged calls (SPEC §2.6, docs/streaming.md) through the
//! real binary: SIPp plays Debian's `g711a.pcap` from the PBX to a carrier
//! that echoes it, and a WebSocket consumer in this test (tokio-tungstenite
//! on 127.0.0.1) receives both legs; WAV files, events, SDR and CDR are
//! read back from the daemon's directory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::media::{config, metric_lines, CARRIER, PBX};
use crate::support::*;
use crate::ua::*;

const G711A_PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

/// The RTP payloads of a pcap file of Ethernet/IPv4/UDP/RTP packets.
fn pcap_rtp_payloads(path: &str) -> Vec<Vec<u8>> {
    let d = std::fs::read(path).expect("sip-tester's g711a.pcap");
    assert_eq!(&d[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    assert_eq!(d[20], 1, "Ethernet link type");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= d.len() {
        let incl = u32::from_le_bytes(d[off + 8..off + 12].try_into().unwrap()) as usize;
        let pkt = &d[off + 16..off + 16 + incl];
        off += 16 + incl;
        let ip = &pkt[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let rtp = &ip[ihl + 8..];
        let cc = usize::from(rtp[0] & 0x0f);
        out.push(rtp[12 + 4 * cc..].to_vec());
    }
    out
}

/// The pcap's audio as the streams must carry it: A-law decoded, 16-bit.
fn expected_pcm() -> Vec<i16> {
    let payloads = pcap_rtp_payloads(G711A_PCAP);
    assert_eq!(payloads.len(), 236);
    payloads
        .iter()
        .flatten()
        .map(|b| trunkd_media::endpoint::g711::alaw_decode(*b))
        .collect()
}

/// What a test consumer does with a connection.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// Completes the handshake and reads every message until the close.
    Read,
    /// Accepts the TCP connection and never reads a byte (not even the
    /// handshake): a consumer that is there and stuck.
    Stall,
    /// Completes the handshake, reads the start frame, then stops reading
    /// (with a small receive buffer, so the sender's writes block soon).
    StopReading,
}

type Conn = Arc<Mutex<(Vec<Message>, bool)>>;

/// A WebSocket consumer on 127.0.0.1 (its own runtime, dropped with it).
pub(crate) struct Consumer {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Conn>>>,
    secure: bool,
    _rt: tokio::runtime::Runtime,
}

/// One connection: the handshake, then its messages into `conn`.
async fn serve<S>(stream: S, mode: Mode, conn: Conn)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(m)) = ws.next().await {
        if mode == Mode::StopReading {
            conn.lock().unwrap().0.push(m.clone());
            // Holds the connection, reads no more.
            std::future::pending::<()>().await;
        }
        let close = m.is_close();
        conn.lock().unwrap().0.push(m);
        if close {
            break;
        }
    }
    conn.lock().unwrap().1 = true;
}

impl Consumer {
    pub(crate) fn start(mode: Mode) -> Consumer {
        Consumer::start_with(mode, None)
    }

    /// With `tls`, a `wss://` consumer.
    fn start_with(mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Consumer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                if mode == Mode::StopReading {
                    socket.set_recv_buffer_size(2048)?;
                }
                socket.bind("127.0.0.1:0".parse().unwrap())?;
                socket.listen(16)
            })
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let all = conns.clone();
        let secure = tls.is_some();
        rt.spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let conn: Conn = Arc::default();
                all.lock().unwrap().push(conn.clone());
                if mode == Mode::Stall {
                    held.push(tcp);
                    continue;
                }
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                serve(s, mode, conn).await;
                            }
                        }
                        None => serve(tcp, mode, conn).await,
                    }
                });
            }
        });
        Consumer {
            addr,
            conns,
            secure,
            _rt: rt,
        }
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}/audio", self.addr)
    }

    /// Waits (bounded) until `n` connections were made and closed; returns
    /// their messages.
    pub(crate) fn closed(&self, n: usize) -> Vec<Vec<Message>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let conns = self.conns.lock().unwrap();
            let done = conns.iter().filter(|c| c.lock().unwrap().1).count();
            if done >= n || Instant::now() > deadline {
                return conns.iter().map(|c| c.lock().unwrap().0.clone()).collect();
            }
            drop(conns);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// `[voice_connectors.streaming]` of vc-east with `keys`, and a file event
/// target "log" (appended at the end of `config`).
fn with_streaming(ports: Ports, carrier: u16, keys: &str) -> String {
    let section = format!(
        "[voice_connectors.streaming]\ndisabled = false\nnotification_targets = [\"log\"]\n{keys}\n"
    );
    let mut text = config(ports, carrier, &section);
    text.push_str(
        "\n[[event_targets]]\nid = \"log\"\ntype = \"file\"\npath = \"var/events.jsonl\"\n",
    );
    text
}

/// One call from the PBX (SIPp playing g711a.pcap) to an echoing carrier.
fn g711a_call(d: &Daemon, carrier: u16, uas_media: &str) -> SippBg {
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-rtp_echo", "-mp", uas_media],
    );
    let uac_media = free_port_on(PBX).to_string();
    let out = sipp_uac(
        "uac_g711a.xml",
        PBX,
        d.sip(),
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            "1",
            "-d",
            "8000",
            "-mp",
            &uac_media,
        ],
    );
    assert!(out.status.success(), "{}", out_text(&out));
    let (ok, text) = uas.wait(Duration::from_secs(10));
    assert!(ok, "{text}");
    uas
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls (bounded) until a record of `kind` (cdrs/sdrs) exists.
fn wait_records(dir: &Path, list: fn(&Path) -> Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = list(dir);
        if !r.is_empty() || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stream's PCM (its binary frames, each checked to be 320 bytes).
pub(crate) fn stream_pcm(messages: &[Message]) -> Vec<i16> {
    let mut pcm = Vec::new();
    for m in messages {
        if let Message::Binary(b) = m {
            assert_eq!(b.len(), 320, "every frame is 20 ms of mono 16-bit PCM");
            pcm.extend(b.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]])));
        }
    }
    pcm
}

fn text(m: &Message) -> serde_json::Value {
    text_of(m)
}

pub(crate) fn text_of(m: &Message) -> serde_json::Value {
    serde_json::from_str(m.to_text().expect("a text frame")).expect("JSON")
}

#[test]
fn a_sipp_g711a_call_streams_both_legs_sample_for_sample_to_websocket_and_wav() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas_media = free_port_on(CARRIER).to_string();
    let consumer = Consumer::start(Mode::Read);
    let keys = format!(
        "data_retention_in_hours = 1\nsinks = [ {{ type = \"websocket\", url = \"{}\" }}, {{ type = \"wav\", directory = \"var/audio\" }} ]",
        consumer.url()
    );
    let d = Daemon::start(
        "stream-g711a",
        ports,
        &with_streaming(ports, carrier, &keys),
    );
    let _uas = g711a_call(&d, carrier, &uas_media);
    let expected = expected_pcm();
    let records = d.dir.join("var/records");
    let cdrs = wait_records(&records, cdrs);
    assert_eq!(cdrs.len(), 1);
    let cdr = &cdrs[0];
    assert_eq!(cdr["Streaming"], true, "{cdr}");
    let txn = cdr["TransactionId"].as_str().unwrap().to_owned();

    // Two connections, one per leg, each: start, frames, end, close.
    let conns = consumer.closed(2);
    assert_eq!(conns.len(), 2, "one connection per leg");
    let mut legs = Vec::new();
    for c in &conns {
        let start = text(&c[0]);
        assert_eq!(start["event"], "start");
        assert_eq!(start["transactionId"], txn.as_str());
        assert_eq!(start["voiceConnectorId"], "vc-east");
        assert_eq!(start["callId"], cdr["CallId"]);
        assert_eq!(start["direction"], "Outbound");
        assert_eq!(start["from"], "+12065550100");
        assert_eq!(start["to"], "+12065550199");
        assert_eq!(start["codec"], "PCMA");
        assert_eq!(start["sampleRate"], 8000);
        assert_eq!(start["channels"], 1);
        let n = c.len();
        assert!(c[n - 1].is_close(), "closed at the end");
        let end = text(&c[n - 2]);
        assert_eq!(end["event"], "end");
        assert_eq!(end["leg"], start["leg"]);
        let pcm = stream_pcm(&c[1..n - 2]);
        assert_eq!(pcm.len(), expected.len(), "{} leg", start["leg"]);
        assert!(
            pcm == expected,
            "{} leg: the pcap's audio, sample for sample",
            start["leg"]
        );
        legs.push(start["leg"].as_str().unwrap().to_owned());
    }
    legs.sort();
    assert_eq!(legs, ["callee", "caller"]);

    // The same audio in one WAV file per leg.
    for leg in ["caller", "callee"] {
        let path = d.dir.join(format!("var/audio/{txn}-{leg}.wav"));
        let r = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            (
                r.spec().channels,
                r.spec().sample_rate,
                r.spec().bits_per_sample
            ),
            (1, 8000, 16)
        );
        assert_eq!(r.duration() as usize, expected.len(), "{leg}: 7.08 s");
        let samples: Vec<i16> = r.into_samples().map(|s| s.unwrap()).collect();
        assert!(samples == expected, "{leg}.wav holds the pcap's audio");
    }

    // One SDR, before the CDR, with the call's TransactionId.
    let sdrs = sdrs(&records);
    assert_eq!(sdrs.len(), 1);
    assert_eq!(sdrs[0]["TransactionId"], txn.as_str());
    assert_eq!(sdrs[0]["Status"], "Completed");
    assert_eq!(sdrs[0]["StatusMessage"], "Streaming succeeded");

    // STARTED then ENDED for each stream (2 sinks × 2 legs).
    d.wait_metric("events_total{target=\"log\",result=\"delivered\"}", 8.0);
    let events = json_lines(&d.dir.join("var/events.jsonl"));
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["detail"]["streamingStatus"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["STARTED"; 4]
            .iter()
            .chain(["ENDED"; 4].iter())
            .copied()
            .collect::<Vec<_>>()
    );
    let started = &events[0]["detail"];
    assert_eq!(
        events[0]["detail-type"],
        "Chime VoiceConnector Streaming Status"
    );
    assert_eq!(started["transactionId"], txn.as_str());
    assert_eq!(started["isCaller"], true);
    assert_eq!(started["mediaType"], "audio/L16");
    assert_eq!(started["streamArn"], consumer.url().as_str());
    assert_eq!(started["inviteHeaders"]["call-id"], cdr["CallId"]);
    assert_eq!(events[1]["detail"]["isCaller"], false);
    assert!(events[4]["detail"]["endTime"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    // Metrics: every frame sent, none dropped; the streams are closed.
    let m = d.metrics();
    let frames = expected.len() as f64 / 160.0;
    assert_eq!(
        metric_value(&m, "streaming_frames_total{sink=\"wav\",result=\"sent\"}"),
        Some(2.0 * frames),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "streaming_frames_total{sink=\"websocket\",result=\"sent\"}"
        ),
        Some(2.0 * frames)
    );
    assert_eq!(
        metric_value(
            &m,
            "streaming_frames_total{sink=\"websocket\",result=\"dropped\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&m, "streaming_streams_active{sink=\"websocket\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&m, "streaming_tap_packets_dropped_total"),
        Some(0.0)
    );
}

#[test]
fn a_consumer_that_never_answers_the_handshake_is_given_up_and_rtp_is_untouched() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas_media = free_port_on(CARRIER).to_string();
    let consumer = Consumer::start(Mode::Stall);
    let keys = format!(
        "max_reconnects = 0\nqueue_frames = 10\nsinks = [ {{ type = \"websocket\", url = \"{}\" }} ]",
        consumer.url()
    );
    let d = Daemon::start(
        "stream-stall",
        ports,
        &with_streaming(ports, carrier, &keys),
    );
    let _uas = g711a_call(&d, carrier, &uas_media);
    let records = d.dir.join("var/records");
    let cdrs = wait_records(&records, cdrs);
    assert_eq!(cdrs[0]["Streaming"], true);
    assert_eq!(
        consumer.connections(),
        2,
        "one connection per leg, no reconnect"
    );

    // The carrier got every packet the PBX sent (and the PBX the echo).
    let lines = metric_lines(&d);
    let l = lines.last().expect("a media metric line");
    assert_eq!(l["cust2vc_rtp_packets"], 236, "{l}");
    assert_eq!(l["vc2rem_rtp_packets"], 236, "{l}");
    assert_eq!(l["rem2vc_rtp_packets"], 236, "{l}");
    assert_eq!(l["vc2cust_rtp_packets"], 236, "{l}");

    // The frames were dropped and counted; the streams failed.
    let m = d.metrics();
    let dropped = metric_value(
        &m,
        "streaming_frames_total{sink=\"websocket\",result=\"dropped\"}",
    )
    .unwrap();
    assert!(
        dropped >= 2.0 * 300.0,
        "most of 2 × 354 frames dropped: {m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "streaming_frames_total{sink=\"websocket\",result=\"sent\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&m, "streaming_failures_total{sink=\"websocket\"}"),
        Some(2.0)
    );
    let sdrs = wait_records(&records, sdrs);
    assert_eq!(sdrs[0]["Status"], "Failed", "{}", sdrs[0]);
    d.wait_metric("events_total{target=\"log\",result=\"delivered\"}", 4.0);
    let events = json_lines(&d.dir.join("var/events.jsonl"));
    let failed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["detail"]["streamingStatus"] == "FAILED")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed[0]["detail"]["failureReason"]
        .as_str()
        .unwrap()
        .contains(&consumer.url()));
}

#[test]
fn a_stereo_wav_with_retention_zero_is_deleted_once_the_records_are_written() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let keys = "channels = \"stereo\"\ndata_retention_in_hours = 0\nsinks = [ { type = \"wav\", directory = \"var/audio\" } ]";
    let d = Daemon::start(
        "stream-retention",
        ports,
        &with_streaming(ports, callee.sip_addr().port(), keys),
    );
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let b_side = offer.sdp_rtp();
    for seq in 0..25u16 {
        caller
            .rtp
            .send_to(&rtp_packet(seq, u32::from(seq) * 160, 1), dialog.trunkd_rtp)
            .unwrap();
        callee
            .rtp
            .send_to(&rtp_packet(seq, u32::from(seq) * 160, 2), b_side)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // While the call lasts, its stereo file is being written.
    let file = |d: &Daemon| -> Vec<String> {
        std::fs::read_dir(d.dir.join("var/audio"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let during = file(&d);
    assert_eq!(during.len(), 1, "{during:?}");
    assert!(during[0].ends_with("-stereo.wav"), "{during:?}");
    hang_up(&caller, &callee, &mut dialog, "+12065550100");
    let records = d.dir.join("var/records");
    let cdrs = wait_records(&records, cdrs);
    assert_eq!(cdrs[0]["Streaming"], true);
    assert_eq!(sdrs(&records).len(), 1);
    d.wait_metric("streaming_wav_files_swept_total", 1.0);
    assert_eq!(file(&d), Vec::<String>::new(), "kept none after the call");
}

#[test]
fn a_consumer_that_stops_reading_costs_frames_not_rtp() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas_media = free_port_on(CARRIER).to_string();
    let consumer = Consumer::start(Mode::StopReading);
    let keys = format!(
        "queue_frames = 10\nsinks = [ {{ type = \"websocket\", url = \"{}\" }} ]",
        consumer.url()
    );
    let d = Daemon::start("stream-stop", ports, &with_streaming(ports, carrier, &keys));
    let _uas = g711a_call(&d, carrier, &uas_media);
    let records = d.dir.join("var/records");
    let cdrs = wait_records(&records, cdrs);
    assert_eq!(cdrs[0]["Streaming"], true);
    let lines = metric_lines(&d);
    let l = lines.last().expect("a media metric line");
    for k in [
        "cust2vc_rtp_packets",
        "vc2rem_rtp_packets",
        "rem2vc_rtp_packets",
        "vc2cust_rtp_packets",
    ] {
        assert_eq!(l[k], 236, "{k}: {l}");
    }
    let m = d.metrics();
    let dropped = metric_value(
        &m,
        "streaming_frames_total{sink=\"websocket\",result=\"dropped\"}",
    )
    .unwrap();
    let sent = metric_value(
        &m,
        "streaming_frames_total{sink=\"websocket\",result=\"sent\"}",
    )
    .unwrap();
    assert!(dropped > 0.0, "frames were dropped: {m}");
    assert!(sent > 0.0, "until the consumer's buffers were full: {m}");
    assert_eq!(
        consumer.connections(),
        2,
        "no reconnect: the connection stayed up"
    );
    // The end could not be delivered either: each stream was given up.
    let sdrs = wait_records(&records, sdrs);
    assert_eq!(sdrs[0]["Status"], "Failed", "{}", sdrs[0]);
    d.wait_metric("events_total{target=\"log\",result=\"delivered\"}", 4.0);
    let events = json_lines(&d.dir.join("var/events.jsonl"));
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["detail"]["streamingStatus"] == "FAILED")
        .map(|e| e["detail"]["failureReason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["the sink did not take the end of the stream in time"; 2]
    );
}

/// The PCM of `rtp_packet(seq, …)` packets (PCMU), as a stream carries it.
fn ua_pcm(seqs: std::ops::Range<u16>) -> Vec<i16> {
    seqs.flat_map(|seq| {
        rtp_packet(seq, 0, 0)[12..]
            .iter()
            .map(|b| trunkd_media::endpoint::g711::ulaw_decode(*b))
            .collect::<Vec<_>>()
    })
    .collect()
}

/// SPEC §2.6 and the issue's proof: an SRTP call streams its decrypted
/// audio; a hold and a resume (re-INVITEs) each give UPDATED (with the
/// re-INVITE's headers) and the streams go on; a reload that disables streaming mid-call changes
/// nothing for the call (its snapshot), only for later calls.
#[test]
fn an_srtp_call_streams_across_hold_resume_and_a_reload_that_disables_streaming() {
    use trunkd_media::sdes::{CryptoAttr, KeyMaterial};
    use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};

    let ports = Ports::pick();
    let (pbx, carrier) = (Ua::new(PBX), Ua::new(CARRIER));
    let consumer = Consumer::start(Mode::Read);
    let keys = format!(
        "sinks = [ {{ type = \"websocket\", url = \"{}\" }} ]",
        consumer.url()
    );
    let d = Daemon::start(
        "stream-srtp",
        ports,
        &with_streaming(ports, carrier.sip_addr().port(), &keys),
    );
    let key = CryptoAttr {
        tag: 1,
        suite: CryptoSuite::Aes128CmHmacSha1_80,
        key: KeyMaterial::generate(CryptoSuite::Aes128CmHmacSha1_80).unwrap(),
    };
    let offer = pbx.sdp_with("RTP/SAVP", "sendrecv", &[key.to_value()]);
    let (mut dialog, at_carrier, ok) = call_with(
        &pbx,
        &carrier,
        d.sip(),
        "+12065550199",
        "+12065550100",
        &offer,
        &carrier.sdp("sendrecv"),
    );
    let ours = ok
        .body()
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| CryptoAttr::parse(v).unwrap())
        .expect("trunkd's key");
    let mut pbx_srtp = LegCrypto::new(&LegKeys {
        suite: ours.suite,
        peer: ours.key.clone(),
        ours: key.key.clone(),
    })
    .unwrap();
    let b_side = at_carrier.sdp_rtp();
    let send = |srtp: &mut LegCrypto, seqs: std::ops::Range<u16>| {
        for seq in seqs {
            let plain = rtp_packet(seq, u32::from(seq) * 160, 0x5151);
            pbx.rtp
                .send_to(&srtp.protect_rtp(&plain).unwrap(), dialog.trunkd_rtp)
                .unwrap();
            carrier
                .rtp
                .send_to(&rtp_packet(seq, u32::from(seq) * 160, 0x6262), b_side)
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    send(&mut pbx_srtp, 0..10);

    // A reload that turns streaming off: later calls, not this one.
    let file = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        file.replacen("disabled = false", "disabled = true", 1),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_metric("config_reloads_total{result=\"success\"}", 1.0);

    // The carrier puts the call on hold (sendonly; the PBX answers
    // recvonly), nothing flows for a while, then it resumes (sendrecv).
    let from = at_carrier.header("To").unwrap();
    let to = at_carrier.header("From").unwrap();
    let call_id = at_carrier.header("Call-ID").unwrap();
    let target = at_carrier
        .header("Contact")
        .unwrap()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let reinvite = |cseq: u32, ours: &str, theirs: &str| {
        let sdp = carrier.sdp(ours);
        let text = format!(
            "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sreinv{cseq};rport\r\nMax-Forwards: 70\r\nFrom: {from};tag={tag}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:ua@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            me = carrier.sip_addr(),
            tag = carrier.tag,
            len = sdp.len()
        );
        carrier.send(at_carrier.from, &text);
        let relayed = pbx.recv_until(Duration::from_secs(5), |m| {
            m.first_line().starts_with("INVITE ")
        });
        let answer = pbx.sdp_with("RTP/SAVP", theirs, &[key.to_value()]);
        pbx.respond(&relayed, "200 OK", Some(&answer));
        let ok2 = carrier.recv_until(Duration::from_secs(5), |m| {
            m.status() == Some(200) && m.header("CSeq").is_some_and(|c| c.contains("INVITE"))
        });
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sreinv{cseq}ack\r\nMax-Forwards: 70\r\nFrom: {from};tag={tag}\r\nTo: {to2}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            me = carrier.sip_addr(),
            tag = carrier.tag,
            to2 = ok2.header("To").unwrap()
        );
        carrier.send(at_carrier.from, &ack);
        pbx.recv_until(Duration::from_secs(5), |m| {
            m.first_line().starts_with("ACK ")
        });
    };
    reinvite(1, "sendonly", "recvonly");
    std::thread::sleep(Duration::from_millis(300));
    reinvite(2, "sendrecv", "sendrecv");
    send(&mut pbx_srtp, 10..20);
    hang_up(&pbx, &carrier, &mut dialog, "+12065550100");

    // Both legs, decrypted, all twenty packets, across both.
    let conns = consumer.closed(2);
    assert_eq!(conns.len(), 2);
    let expected = ua_pcm(0..20);
    for c in &conns {
        let start = text(&c[0]);
        assert_eq!(start["codec"], "PCMU");
        let n = c.len();
        let pcm = stream_pcm(&c[1..n - 2]);
        assert!(
            pcm == expected,
            "{} leg: {} samples",
            start["leg"],
            pcm.len()
        );
    }
    let records = d.dir.join("var/records");
    let cdrs = wait_records(&records, cdrs);
    assert_eq!(cdrs[0]["Streaming"], true);
    d.wait_metric("events_total{target=\"log\",result=\"delivered\"}", 8.0);
    let events = json_lines(&d.dir.join("var/events.jsonl"));
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["detail"]["streamingStatus"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["STARTED", "STARTED", "UPDATED", "UPDATED", "UPDATED", "UPDATED", "ENDED", "ENDED"]
    );
    for (i, cseq) in [
        (2, "1 INVITE"),
        (3, "1 INVITE"),
        (4, "2 INVITE"),
        (5, "2 INVITE"),
    ] {
        let updated = &events[i]["detail"];
        assert_eq!(updated["updateHeaders"]["cseq"], cseq);
        assert_eq!(updated["updateHeaders"]["call-id"], call_id.as_str());
        assert_eq!(updated["updateHeaders"]["content-type"], "application/sdp");
    }
    assert!(events[0]["detail"].get("updateHeaders").is_none());

    // A call after the reload is not streamed (past the VC's one call per
    // second).
    std::thread::sleep(Duration::from_millis(1100));
    let (mut dialog, _) = call(&pbx, &carrier, d.sip(), "+12065550199", "+12065550100");
    hang_up(&pbx, &carrier, &mut dialog, "+12065550100");
    let cdrs = wait_cdrs(&records, 2);
    assert_eq!(cdrs.len(), 2);
    assert_eq!(
        cdrs.iter().filter(|c| c["Streaming"] == true).count(),
        1,
        "only the call that started before the reload"
    );
    assert_eq!(consumer.connections(), 2);
}

/// SIPp plays Debian's `dtmf_2833_0.pcap` (key 0, RFC 4733, no audio)
/// through trunkd to an echoing carrier; the stereo stream gets the key
/// once from each leg, as JSON text frames.
#[test]
fn rfc4733_keys_reach_a_stereo_consumer_once_per_press_and_leg() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas_media = free_port_on(CARRIER).to_string();
    let consumer = Consumer::start(Mode::Read);
    let keys = format!(
        "channels = \"stereo\"\nsinks = [ {{ type = \"websocket\", url = \"{}\" }} ]",
        consumer.url()
    );
    let d = Daemon::start("stream-dtmf", ports, &with_streaming(ports, carrier, &keys));
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-rtp_echo", "-mp", &uas_media],
    );
    let uac_media = free_port_on(PBX).to_string();
    let out = sipp_uac(
        "uac_pcap_audio.xml",
        PBX,
        d.sip(),
        &[
            "-s",
            "+12065550199",
            "-key",
            "caller",
            "+12065550100",
            "-m",
            "1",
            "-d",
            "2500",
            "-mp",
            &uac_media,
        ],
    );
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(uas.wait(Duration::from_secs(10)).0);
    let conns = consumer.closed(1);
    assert_eq!(conns.len(), 1, "one connection for the call in stereo");
    let c = &conns[0];
    let start = text(&c[0]);
    assert_eq!(start["leg"], "both");
    assert_eq!(start["channels"], 2);
    assert_eq!(
        start["codec"], "PCMU",
        "the offer's first codec: no audio came"
    );
    let texts: Vec<serde_json::Value> = c[1..c.len() - 2].iter().map(text).collect();
    assert_eq!(
        texts,
        [
            serde_json::json!({"event": "dtmf", "digit": "0", "leg": "caller"}),
            serde_json::json!({"event": "dtmf", "digit": "0", "leg": "callee"}),
        ]
    );
    assert_eq!(text(&c[c.len() - 2])["event"], "end");
}

/// A `wss://` consumer whose certificate trunkd verifies with `[tls]
/// ca_file` (as for every outgoing TLS connection) gets the call's audio.
#[test]
fn a_wss_consumer_gets_the_audio_over_tls_verified_with_the_ca_file() {
    use rustls::pki_types::pem::PemObject;

    let ca = crate::tls::Ca::new();
    let certs = crate::tls::cert_dir("stream-wss");
    let ca_file = ca.write(&certs);
    let leaf = ca.issue(&["127.0.0.1"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![crate::tls::der(&leaf.0)],
            rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).unwrap(),
        )
        .unwrap();
    let consumer = Consumer::start_with(
        Mode::Read,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
    );
    assert!(consumer.url().starts_with("wss://127.0.0.1:"));
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let keys = format!(
        "channels = \"stereo\"\nsinks = [ {{ type = \"websocket\", url = \"{}\" }} ]",
        consumer.url()
    );
    let text = with_streaming(ports, callee.sip_addr().port(), &keys).replacen(
        "[daemon]\n",
        &format!("[tls]\nca_file = {ca_file:?}\n\n[daemon]\n"),
        1,
    );
    let d = Daemon::start("stream-wss", ports, &text);
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let b_side = offer.sdp_rtp();
    for seq in 0..10u16 {
        caller
            .rtp
            .send_to(&rtp_packet(seq, u32::from(seq) * 160, 1), dialog.trunkd_rtp)
            .unwrap();
        callee
            .rtp
            .send_to(&rtp_packet(seq + 100, u32::from(seq) * 160, 2), b_side)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    hang_up(&caller, &callee, &mut dialog, "+12065550100");
    let conns = consumer.closed(1);
    assert_eq!(conns.len(), 1, "{}", d.log());
    let c = &conns[0];
    assert_eq!(text_of(&c[0])["channels"], 2);
    // Stereo: caller left, callee right, ten frames of 640 bytes.
    let mut left = Vec::new();
    let mut right = Vec::new();
    for m in &c[1..c.len() - 2] {
        let Message::Binary(b) = m else {
            panic!("{m:?}")
        };
        assert_eq!(b.len(), 640);
        for pair in b.chunks_exact(4) {
            left.push(i16::from_le_bytes([pair[0], pair[1]]));
            right.push(i16::from_le_bytes([pair[2], pair[3]]));
        }
    }
    assert!(left == ua_pcm(0..10), "caller on the left");
    assert!(right == ua_pcm(100..110), "callee on the right");
}

/// An origination call (carrier → the number's VC → the PBX's route) is
/// streamed too: the caller is the carrier's leg, the direction Inbound.
#[test]
fn an_origination_call_is_streamed_with_the_carrier_as_caller() {
    let ports = Ports::pick();
    let consumer = Consumer::start(Mode::Read);
    let (carrier, pbx) = (Ua::new(CARRIER), Ua::new(crate::calls::ROUTES));
    let streaming = format!(
        "[voice_connectors.streaming]\ndisabled = false\nsinks = [ {{ type = \"websocket\", url = \"{}\" }} ]\n",
        consumer.url()
    );
    let route = format!(
        "{{ host = \"{}\", port = {} }}",
        crate::calls::ROUTES,
        pbx.sip_addr().port()
    );
    let hosts = crate::calls::host(CARRIER, 9, "");
    let lab = crate::calls::Lab {
        hosts: &hosts,
        east_termination: &streaming,
        east_routes: &route,
        ..Default::default()
    };
    let d = Daemon::start("stream-origination", ports, &lab.config(ports));
    let (mut dialog, offer) = call(&carrier, &pbx, d.sip(), "+12065550100", "+12065550199");
    let b_side = offer.sdp_rtp();
    for seq in 0..5u16 {
        carrier
            .rtp
            .send_to(&rtp_packet(seq, u32::from(seq) * 160, 1), dialog.trunkd_rtp)
            .unwrap();
        pbx.rtp
            .send_to(&rtp_packet(seq + 50, u32::from(seq) * 160, 2), b_side)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    hang_up(&carrier, &pbx, &mut dialog, "+12065550199");
    let conns = consumer.closed(2);
    assert_eq!(conns.len(), 2, "{}", d.log());
    let mut seen = Vec::new();
    for c in &conns {
        let start = text(&c[0]);
        assert_eq!(start["direction"], "Inbound");
        assert_eq!(start["from"], "+12065550199");
        assert_eq!(start["to"], "+12065550100");
        let pcm = stream_pcm(&c[1..c.len() - 2]);
        let leg = start["leg"].as_str().unwrap().to_owned();
        let expected = if leg == "caller" {
            ua_pcm(0..5)
        } else {
            ua_pcm(50..55)
        };
        assert!(
            pcm == expected,
            "{leg}: the {} audio",
            if leg == "caller" {
                "carrier's"
            } else {
                "PBX's"
            }
        );
        seen.push(leg);
    }
    seen.sort();
    assert_eq!(seen, ["callee", "caller"]);
    let cdrs = wait_records(&d.dir.join("var/records"), cdrs);
    assert_eq!(
        (
            cdrs[0]["Direction"].as_str(),
            cdrs[0]["Streaming"].as_bool()
        ),
        (Some("Inbound"), Some(true))
    );
}

/// `record_store = true`: the call's WAV files also go to the record store
/// (spool, local records directory and every S3 sink: SeaweedFS here)
/// under `Amazon-Chime-Voice-Connector-Audio/wav/<vc>/…`, byte for byte,
/// even with a retention of 0 that deletes the streaming copy.
#[test]
fn wav_files_go_to_the_record_store_when_asked() {
    use crate::weed::{Weed, SECRET_KEY};
    let weed = Weed::start("stream-audio");
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let keys = "channels = \"stereo\"\ndata_retention_in_hours = 0\nrecord_store = true\nsinks = [ { type = \"wav\", directory = \"var/audio\" } ]";
    let mut text = with_streaming(ports, callee.sip_addr().port(), keys);
    text.push_str(&crate::record_store::records_section(&[(
        "s3",
        &weed.endpoint(),
        SECRET_KEY,
    )]));
    let d = Daemon::start("stream-audio", ports, &text);
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");
    let b_side = offer.sdp_rtp();
    for seq in 0..25u16 {
        caller
            .rtp
            .send_to(&rtp_packet(seq, u32::from(seq) * 160, 1), dialog.trunkd_rtp)
            .unwrap();
        callee
            .rtp
            .send_to(&rtp_packet(seq, u32::from(seq) * 160, 2), b_side)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    hang_up(&caller, &callee, &mut dialog, "+12065550100");
    let records = d.dir.join("var/records");
    let cdrs = wait_records(&records, cdrs);
    let txn = cdrs[0]["TransactionId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (key, bytes) = loop {
        let found = weed
            .objects()
            .into_iter()
            .find(|(k, _)| k.contains("Amazon-Chime-Voice-Connector-Audio/wav/vc-east/"));
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no audio object in the bucket\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(key.ends_with(&format!("_{txn}-stereo.wav")), "{key}");
    assert!(bytes.starts_with(b"RIFF"), "a WAV file");
    // The local copy of the record store holds the same bytes (the
    // bucket's key is the sink's prefix and the record's key).
    let record_key = key.strip_prefix(crate::weed::PREFIX).unwrap_or(&key);
    let local = std::fs::read(records.join(record_key))
        .unwrap_or_else(|e| panic!("local copy {record_key}: {e}"));
    assert!(local == bytes, "the local copy and the object differ");
}
