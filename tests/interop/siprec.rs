//! SIPREC offers as real recording clients send them (tests/siprec/, with
//! their sources in its README) through the real binary: SIPp plays each
//! SRC with the offer's own headers and multipart body, the test sends the
//! RTP of every stream, and trunkd must answer 200 with every stream
//! recvonly on its address (labels kept, as many m-lines as offered),
//! record each stream to WAV sample for sample, and emit STARTED/ENDED
//! events carrying the metadata as sent. A malformed metadata part gets
//! 400 with a Warning and leaves nothing behind; a re-INVITE with updated
//! metadata gives UPDATED events.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trunkd_media::endpoint::g711::{alaw_decode, ulaw_decode};

use crate::calls::{records, Lab, PBX};
use crate::recording::{packet, received};
use crate::support::*;

const PACKETS: u16 = 30;

/// A corpus offer: its extra INVITE headers and its body, with the SDP's
/// connection addresses made the SRC's (the test sends RTP from `PBX`).
struct Offer {
    headers: String,
    body: String,
}

impl Offer {
    fn load(name: &'static str) -> Offer {
        let path = repo().join("tests/siprec").join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&path).unwrap();
        let (headers, body) = text.split_once("\n\n").unwrap();
        Offer {
            headers: headers.to_owned(),
            body: body.replace("IN IP4 127.0.0.1", &format!("IN IP4 {PBX}")),
        }
    }

    /// The metadata XML of the offer.
    fn metadata(&self) -> &str {
        metadata_of(&self.body)
    }

    /// The `a=label` of each offered m-line.
    fn labels(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("a=label:"))
            .map(str::to_owned)
            .collect()
    }
}

fn metadata_of(body: &str) -> &str {
    let start = body.find("<?xml").unwrap();
    let end = body.rfind("recording>").unwrap() + "recording>".len();
    &body[start..end]
}

/// XML as SIPp sends a scenario's lines: leading blanks dropped, CRLF.
fn as_sent(xml: &str) -> String {
    xml.replace('\r', "")
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// A SIPp SRC scenario: the INVITE (to `user`, or to trunkd's address
/// alone) with `headers` and `body`; then either `final_status` (a
/// refusal, ACKed) or 200, ACK, an optional re-INVITE with `update`
/// (headers, body), and the SRC's BYE after `-d` ms.
fn scenario(
    user: Option<&str>,
    headers: &str,
    body: &str,
    final_status: u16,
    update: Option<(&str, &str)>,
) -> String {
    let ruri = match user {
        Some(u) => format!("sip:{u}@[remote_ip]:[remote_port]"),
        None => "sip:[remote_ip]:[remote_port]".to_owned(),
    };
    let common = |method: &str, cseq: u32, to_tag: &str| {
        format!(
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
             From: <sip:src@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n\
             To: <{ruri}>{to_tag}\nCall-ID: [call_id]\nCSeq: {cseq} {method}\n\
             Contact: <sip:src@[local_ip]:[local_port];transport=[transport]>;+sip.src\n\
             Max-Forwards: 70\n"
        )
    };
    let invite = format!(
        "<send retrans=\"500\" start_txn=\"invite\"><![CDATA[\n\nINVITE {ruri} SIP/2.0\n{}\
         User-Agent: sipp-trunkd-test\n{headers}\nContent-Length: [len]\n\n{body}\n]]></send>\n\
         <recv response=\"100\" optional=\"true\" response_txn=\"invite\" />\n\
         <recv response=\"180\" optional=\"true\" response_txn=\"invite\" />\n\
         <recv response=\"183\" optional=\"true\" response_txn=\"invite\" />\n",
        common("INVITE", 1, "")
    );
    let rest = if final_status != 200 {
        // The ACK of a non-2xx final has the INVITE's branch (element 0).
        format!(
            "<recv response=\"{final_status}\" response_txn=\"invite\" />\n\
             <send ack_txn=\"invite\"><![CDATA[\n\nACK {ruri} SIP/2.0\n\
             Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-5]\n\
             From: <sip:src@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n\
             To: <{ruri}>[peer_tag_param]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\n\
             Content-Length: 0\n\n]]></send>\n"
        )
    } else {
        let in_dialog = |method: &str, cseq: u32| {
            common(method, cseq, "[peer_tag_param]").replacen(
                "[local_port];branch=[branch]\n",
                "[local_port];branch=[branch]\n[routes]\n",
                1,
            )
        };
        let ack = |cseq: u32| {
            format!(
                "<send ack_txn=\"{}\"><![CDATA[\n\nACK [next_url] SIP/2.0\n{}Content-Length: 0\n\n]]></send>\n",
                if cseq == 1 { "invite" } else { "reinvite" },
                in_dialog("ACK", cseq)
            )
        };
        let mut s = format!(
            "<recv response=\"200\" rrs=\"true\" response_txn=\"invite\"><action>\
             <ereg regexp=\"a=recvonly\" search_in=\"body\" check_it=\"true\" assign_to=\"r1\" />\
             </action></recv>\n{}",
            ack(1)
        );
        if let Some((h, b)) = update {
            s.push_str(&format!(
                "<pause milliseconds=\"300\"/>\n\
                 <send retrans=\"500\" start_txn=\"reinvite\"><![CDATA[\n\nINVITE [next_url] SIP/2.0\n{}\
                 {h}\nContent-Length: [len]\n\n{b}\n]]></send>\n\
                 <recv response=\"100\" optional=\"true\" response_txn=\"reinvite\" />\n\
                 <recv response=\"200\" response_txn=\"reinvite\"><action>\
                 <ereg regexp=\"a=recvonly\" search_in=\"body\" check_it=\"true\" assign_to=\"r2\" />\
                 </action></recv>\n{}",
                in_dialog("INVITE", 2),
                ack(2)
            ));
        }
        let bye_cseq = if update.is_some() { 3 } else { 2 };
        s.push_str(&format!(
            "<pause/>\n<send retrans=\"500\" start_txn=\"bye\"><![CDATA[\n\nBYE [next_url] SIP/2.0\n{}\
             Content-Length: 0\n\n]]></send>\n<recv response=\"200\" response_txn=\"bye\" />\n",
            in_dialog("BYE", bye_cseq)
        ));
        s.push_str("<Reference variables=\"r1");
        if update.is_some() {
            s.push_str(",r2");
        }
        s.push_str("\" />\n");
        s
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n\
         <scenario name=\"trunkd siprec corpus\">\n{invite}{rest}</scenario>\n"
    )
}

/// The lab: vc-east records to `audio/` and sends its streaming events
/// to a file target.
fn lab_daemon(tag: &str) -> Daemon {
    let ports = Ports::pick();
    let top = "[[event_targets]]\nid = \"log\"\ntype = \"file\"\npath = \"var/events.jsonl\"\n\n\
               [events]\nretry_initial_ms = 100\nretry_max_seconds = 1\nrequest_timeout_seconds = 2\n";
    let east = "[voice_connectors.streaming]\ndisabled = false\n\
                sinks = [ { type = \"wav\", directory = \"audio\" } ]\n\
                notification_targets = [\"log\"]\n";
    // A carrier that nothing reaches (a recording is never forwarded).
    let hosts = crate::calls::host(crate::calls::CARRIER, 9, "");
    let lab = Lab {
        hosts: &hosts,
        top,
        east_termination: east,
        ..Default::default()
    };
    Daemon::start(tag, ports, &lab.config(ports))
}

/// Writes `scenario` to a file and starts SIPp on it as the SRC, holding
/// the session `hold_ms`; `trace` gets its messages.
fn start_src(
    d: &Daemon,
    dir: &Path,
    name: &str,
    scenario: &str,
    hold_ms: u32,
    trace: &Path,
) -> SippBg {
    let sf = dir.join(format!("{name}.xml"));
    std::fs::write(&sf, scenario).unwrap();
    let target = d.sip().to_string();
    SippBg::uas(
        sf.to_str().unwrap(),
        PBX,
        free_port_on(PBX),
        &[
            "-m",
            "1",
            "-d",
            &hold_ms.to_string(),
            "-trace_msg",
            "-message_file",
            trace.to_str().unwrap(),
            &target,
        ],
    )
}

/// Waits (bounded) for the final response to the INVITE (CSeq 1) in the
/// trace; returns it whole (LF line ends).
fn wait_final(trace: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = received(trace)
            .into_iter()
            .find(|m| m.contains("CSeq: 1 INVITE") && !m.starts_with("SIP/2.0 1"));
        if let Some(m) = answer {
            return m;
        }
        assert!(Instant::now() < deadline, "no final to the SIPREC INVITE");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// (port, first payload type, label, direction) of each m-line of an SDP.
fn answered_streams(sdp: &str) -> Vec<(u16, u8, Option<String>, Option<String>)> {
    let mut out: Vec<(u16, u8, Option<String>, Option<String>)> = Vec::new();
    for l in sdp.lines() {
        if let Some(m) = l.strip_prefix("m=audio ") {
            let f: Vec<&str> = m.split(' ').collect();
            out.push((f[0].parse().unwrap(), f[2].parse().unwrap(), None, None));
        } else if let (Some(label), Some(last)) = (l.strip_prefix("a=label:"), out.last_mut()) {
            last.2 = Some(label.to_owned());
        } else if let Some(last) = out.last_mut() {
            if ["a=recvonly", "a=sendonly", "a=sendrecv", "a=inactive"].contains(&l) {
                last.3 = Some(l[2..].to_owned());
            }
        }
    }
    out
}

/// Sends PACKETS packets on each answered stream from the SRC's address;
/// returns each stream's expected samples.
fn send_media(streams: &[(u16, u8, Option<String>, Option<String>)]) -> Vec<Vec<i16>> {
    let rtp = UdpSocket::bind((PBX, 0)).unwrap();
    let mut expected = vec![Vec::new(); streams.len()];
    for seq in 0..PACKETS {
        for (i, (port, pt, _, _)) in streams.iter().enumerate() {
            let (pkt, payload) = packet(i as u8, *pt, seq);
            rtp.send_to(&pkt, SocketAddr::from(([127, 0, 0, 1], *port)))
                .unwrap();
            let decode = if *pt == 0 { ulaw_decode } else { alaw_decode };
            expected[i].extend(payload.iter().map(|b| decode(*b)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    expected
}

fn events(d: &Daemon) -> Vec<serde_json::Value> {
    std::fs::read_to_string(d.dir.join("var/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The streaming events of transaction `txn`, waited for (bounded) until
/// there are `n`: (status, mediaIndex) → detail.
fn wait_events(d: &Daemon, txn: &str, n: usize) -> BTreeMap<(String, u64), serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: BTreeMap<(String, u64), serde_json::Value> = events(d)
            .into_iter()
            .map(|e| e["detail"].clone())
            .filter(|det| det["transactionId"] == txn)
            .map(|det| {
                (
                    (
                        det["streamingStatus"].as_str().unwrap().to_owned(),
                        det["sdp"]["mediaIndex"].as_u64().unwrap(),
                    ),
                    det,
                )
            })
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} events for {txn}: {got:#?}\n{}",
            got.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cdr_of(d: &Daemon, n: usize, call_id: &str) -> serde_json::Value {
    let cdrs = wait_cdrs(&records(d), n);
    cdrs.into_iter()
        .find(|c| c["CallId"] == call_id)
        .unwrap_or_else(|| panic!("no CDR for {call_id}\n{}", d.log()))
}

fn wav(d: &Daemon, txn: &str, index: usize) -> PathBuf {
    d.dir.join("audio").join(format!("{txn}-{index}.wav"))
}

/// (corpus offer, Request-URI user, CDR source, CDR destination).
const CORPUS: &[(&str, Option<&str>, &str, &str)] = &[
    ("cisco-cube", Some("srs"), "src", "srs"),
    ("oracle-acme", Some("srs"), "src", "srs"),
    ("avaya-oracle", Some("srs"), "src", "srs"),
    ("sonus-ribbon", Some("srs"), "src", "srs"),
    ("avaya-sbce", Some("srs"), "src", "srs"),
    // No Request-URI user: the numbers are the metadata's participants'.
    ("intrado-viper", None, "4058327108", ""),
    ("broadworks-order", None, "+15550100", "+15550199"),
];

#[test]
fn every_corpus_offer_is_answered_recorded_and_reported_and_bad_metadata_leaves_nothing() {
    let d = lab_daemon("siprec-corpus");
    let dir = temp_dir("siprec-corpus");
    for (n, (name, user, source, destination)) in CORPUS.iter().enumerate() {
        let offer = Offer::load(name);
        let trace = dir.join(format!("{name}.msg"));
        let sc = scenario(*user, &offer.headers, &offer.body, 200, None);
        let mut src = start_src(&d, &dir, name, &sc, 1000, &trace);
        let ok = wait_final(&trace);
        assert!(ok.starts_with("SIP/2.0 200"), "{name}: {ok}\n{}", d.log());
        let sdp = ok.split_once("\n\n").map_or("", |(_, b)| b);
        assert!(sdp.contains("\nc=IN IP4 127.0.0.1\n"), "{name}: {sdp}");
        let streams = answered_streams(sdp);
        let labels: Vec<Option<String>> = streams.iter().map(|s| s.2.clone()).collect();
        let offered: Vec<Option<String>> = offer.labels().into_iter().map(Some).collect();
        assert_eq!(
            labels, offered,
            "{name}: labels kept, one m-line per offered"
        );
        assert!(
            streams
                .iter()
                .all(|s| s.0 != 0 && s.3.as_deref() == Some("recvonly")),
            "{name}: {sdp}"
        );
        let expected = send_media(&streams);
        let (done, text) = src.wait(Duration::from_secs(15));
        assert!(done, "{name}: the SRC's scenario: {text}");

        let call_id = header(&ok, "Call-ID").unwrap();
        let cdr = cdr_of(&d, n + 1, call_id);
        assert_eq!(cdr["Streaming"], true, "{name}: {cdr}");
        assert_eq!(cdr["SourcePhoneNumber"], *source, "{name}");
        assert_eq!(cdr["DestinationPhoneNumber"], *destination, "{name}");
        let txn = cdr["TransactionId"].as_str().unwrap();
        for (i, samples) in expected.iter().enumerate() {
            let path = wav(&d, txn, i);
            let got = trunkd_media::endpoint::wav::read_wav_file_8k(&path)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}\n{}", path.display(), d.log()));
            assert!(got == *samples, "{name} stream {i}: samples differ");
        }
        let evs = wait_events(&d, txn, 2 * streams.len());
        for (i, s) in streams.iter().enumerate() {
            for status in ["STARTED", "ENDED"] {
                let e = &evs[&(status.to_owned(), i as u64)];
                assert_eq!(e["sdp"]["mediaLabel"].as_str(), s.2.as_deref(), "{name}");
                let xml = e["siprecMetadata"].as_str().unwrap_or_default();
                assert_eq!(as_sent(xml), as_sent(offer.metadata()), "{name} {status}");
            }
        }
        // The caller's stream: the first participant's (the metadata's
        // associations), whatever its position.
        let caller: Vec<bool> = (0..streams.len())
            .map(|i| evs[&("STARTED".to_owned(), i as u64)]["isCaller"] == true)
            .collect();
        let want = match *name {
            "sonus-ribbon" => vec![false, true],
            _ if streams.len() == 1 => vec![true],
            _ => vec![true, false],
        };
        assert_eq!(caller, want, "{name}");
        eprintln!("{name}: answered, {} streams recorded", streams.len());
    }
    d.wait_metric(
        "siprec_sessions_total{outcome=\"answered\"}",
        CORPUS.len() as f64,
    );

    // A malformed metadata part (a stream label no m-line has): 400 with
    // the reason, nothing started, and nothing left allocated.
    let offer = Offer::load("cisco-cube");
    let body = offer.body.replace("<label>2</label>", "<label>7</label>");
    let trace = dir.join("bad.msg");
    let sc = scenario(Some("srs"), &offer.headers, &body, 400, None);
    let mut src = start_src(&d, &dir, "bad", &sc, 0, &trace);
    let refusal = wait_final(&trace);
    assert!(
        refusal.starts_with("SIP/2.0 400 Invalid SIPREC Metadata\n"),
        "{refusal}"
    );
    assert_eq!(
        header(&refusal, "Warning"),
        Some("399 trunkd \"metadata stream label \\\"7\\\" is on no SDP m-line\"")
    );
    let (done, text) = src.wait(Duration::from_secs(15));
    assert!(done, "the refused SRC: {text}");
    d.wait_metric("siprec_sessions_total{outcome=\"refused_metadata\"}", 1.0);
    d.wait_metric("sip_engine_calls", 0.0);
    d.wait_metric("media_ports_in_use", 0.0);
    let refused = cdr_of(&d, CORPUS.len() + 1, header(&refusal, "Call-ID").unwrap());
    assert_eq!(refused["Streaming"], false);
    assert_ne!(refused["Status"], "Completed", "{refused}");
    assert_eq!(
        std::fs::read_dir(d.dir.join("audio")).unwrap().count(),
        CORPUS
            .iter()
            .map(|(n, ..)| Offer::load(n).labels().len())
            .sum::<usize>(),
        "no file for the refused session"
    );
}

#[test]
fn a_re_invite_with_updated_metadata_gives_updated_events() {
    let d = lab_daemon("siprec-update");
    let dir = temp_dir("siprec-update");
    let offer = Offer::load("cisco-cube");
    // RFC 7866 §7.1.2: a third participant joins; the callee's streams
    // change hands.
    let joined = "<participant participant_id=\"kQNhKFdEEeeJ+9D/VsPGWA==\">\n\
                  <nameID aor=\"sip:7302@127.0.0.1\">\n<name xml:lang=\"en\">7302</name>\n</nameID>\n\
                  </participant>\n</recording>";
    let update_body = offer.body.replacen("</recording>", joined, 1);
    let trace = dir.join("src.msg");
    let sc = scenario(
        Some("srs"),
        &offer.headers,
        &offer.body,
        200,
        Some((&offer.headers, &update_body)),
    );
    let mut src = start_src(&d, &dir, "update", &sc, 600, &trace);
    let ok = wait_final(&trace);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", d.log());
    let streams = answered_streams(ok.split_once("\n\n").map_or("", |(_, b)| b));
    send_media(&streams);
    let (done, text) = src.wait(Duration::from_secs(15));
    assert!(done, "the SRC's scenario: {text}\n{}", d.log());
    let reinvite_ok = received(&trace)
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 2 INVITE"))
        .expect("a 200 to the re-INVITE");
    let answer = answered_streams(reinvite_ok.split_once("\n\n").map_or("", |(_, b)| b));
    assert_eq!(answer, streams, "the re-INVITE keeps the streams recvonly");

    let cdr = cdr_of(&d, 1, header(&ok, "Call-ID").unwrap());
    let txn = cdr["TransactionId"].as_str().unwrap();
    let evs = wait_events(&d, txn, 6);
    assert_eq!(
        evs.keys()
            .map(|(s, i)| format!("{s}/{i}"))
            .collect::<Vec<_>>(),
        [
            "ENDED/0",
            "ENDED/1",
            "STARTED/0",
            "STARTED/1",
            "UPDATED/0",
            "UPDATED/1"
        ]
    );
    for i in 0..2u64 {
        let up = &evs[&("UPDATED".to_owned(), i)];
        let h = &up["updateHeaders"];
        assert_eq!(h["cseq"], "2 INVITE", "{up}");
        assert_eq!(h["call-id"], cdr["CallId"]);
        assert!(
            h["content-type"]
                .as_str()
                .unwrap()
                .starts_with("multipart/mixed"),
            "{up}"
        );
        assert!(
            h["content-length"]
                .as_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
                > 0
        );
        assert!(h["from"].as_str().unwrap().contains("sip:src@"), "{up}");
        assert!(
            h["contact"].as_str().unwrap().ends_with(";+sip.src"),
            "{up}"
        );
        assert!(up.get("endTime").is_none());
        let xml = up["siprecMetadata"].as_str().unwrap();
        assert_eq!(as_sent(xml), as_sent(metadata_of(&update_body)));
        // The ENDED after it carries the metadata as last updated.
        let ended = &evs[&("ENDED".to_owned(), i)];
        assert_eq!(ended["siprecMetadata"], up["siprecMetadata"]);
        let started = &evs[&("STARTED".to_owned(), i)];
        assert_eq!(
            as_sent(started["siprecMetadata"].as_str().unwrap()),
            as_sent(offer.metadata())
        );
        assert!(started.get("updateHeaders").is_none());
    }
}

/// SPEC §2.6: a recording session's audio also goes to the VC's WebSocket
/// sinks, streamed like a bridged call's: the SRC's first stream as the
/// caller, its second as the callee, each sample for sample; the CDR says
/// Streaming and an SDR is written.
#[test]
fn a_recording_session_is_streamed_to_the_websocket_sink() {
    use crate::streaming::{stream_pcm, text_of, Consumer, Mode};
    let consumer = Consumer::start(Mode::Read);
    let ports = Ports::pick();
    let top = "[[event_targets]]\nid = \"log\"\ntype = \"file\"\npath = \"var/events.jsonl\"\n";
    let east = format!(
        "[voice_connectors.streaming]\ndisabled = false\n\
         sinks = [ {{ type = \"websocket\", url = \"{}\" }} ]\n\
         notification_targets = [\"log\"]\n",
        consumer.url()
    );
    let hosts = crate::calls::host(crate::calls::CARRIER, 9, "");
    let lab = Lab {
        hosts: &hosts,
        top,
        east_termination: &east,
        ..Default::default()
    };
    let d = Daemon::start("siprec-ws", ports, &lab.config(ports));
    let dir = temp_dir("siprec-ws");
    let offer = Offer::load("cisco-cube");
    let trace = dir.join("ws.msg");
    let sc = scenario(Some("srs"), &offer.headers, &offer.body, 200, None);
    let mut src = start_src(&d, &dir, "ws", &sc, 1000, &trace);
    let ok = wait_final(&trace);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", d.log());
    let sdp = ok.split_once("\n\n").map_or("", |(_, b)| b);
    let streams = answered_streams(sdp);
    assert_eq!(streams.len(), 2, "{sdp}");
    let expected = send_media(&streams);
    let (done, text) = src.wait(Duration::from_secs(15));
    assert!(done, "{text}");
    let conns = consumer.closed(2);
    assert_eq!(conns.len(), 2, "one connection per leg");
    let mut by_leg = BTreeMap::new();
    for messages in &conns {
        let start = text_of(&messages[0]);
        assert_eq!(start["event"], "start");
        assert_eq!(start["voiceConnectorId"], "vc-east");
        assert_eq!(start["sampleRate"], 8000);
        by_leg.insert(
            start["leg"].as_str().unwrap().to_owned(),
            stream_pcm(messages),
        );
    }
    assert!(
        by_leg["caller"] == expected[0],
        "the caller is the first stream"
    );
    assert!(
        by_leg["callee"] == expected[1],
        "the callee is the second stream"
    );
    let call_id = header(&ok, "Call-ID").unwrap();
    let cdr = cdr_of(&d, 1, call_id);
    assert_eq!(cdr["Streaming"], true, "{cdr}");
    let sdrs = crate::support::sdrs(&records(&d));
    assert!(
        sdrs.iter()
            .any(|s| s["TransactionId"] == cdr["TransactionId"] && s["Status"] == "Completed"),
        "{sdrs:?}"
    );
}
