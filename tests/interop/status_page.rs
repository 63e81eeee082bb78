//! The status page (`GET /status`, docs/status-page.md): a call with 5 %
//! loss and an RTT from RTCP, sampled every second; the plotted figures
//! must be the ones `GET /calls` gives, and headless Chromium must render
//! the page.
//!
//! The daemon runs without tokens (a loopback listener, the open API):
//! `chromium --screenshot` cannot send an Authorization header, and a
//! token never goes in a URL.

use std::time::{Duration, Instant};

use crate::media::{config, CARRIER, PBX};
use crate::support::*;
use crate::ua::*;

/// Every `data-value` of the `<circle>`s of one series in one plot of one
/// call's plots, in order.
fn plotted(html: &str, txn: &str, plot: &str, series: &str) -> Vec<f64> {
    let start = html
        .find(&format!("data-call=\"{txn}\""))
        .unwrap_or_else(|| panic!("no plots for {txn}"));
    let call = &html[start..];
    let call = &call[..call.find("</div>").expect("plots end")];
    let p = call
        .find(&format!("data-plot=\"{plot}\""))
        .unwrap_or_else(|| panic!("no {plot} plot"));
    let svg = &call[p..call[p..].find("</svg>").map(|e| p + e).expect("svg end")];
    svg.split("<circle")
        .skip(1)
        .filter(|c| c.contains(&format!("data-series=\"{series}\"")))
        .map(|c| {
            let v = c.split("data-value=\"").nth(1).expect("data-value");
            v[..v.find('"').expect("quote")].parse().expect("a number")
        })
        .collect()
}

/// `GET /status` with an optional bearer token: (status, body).
fn get_status(addr: std::net::SocketAddr, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

#[test]
fn with_tokens_the_status_page_needs_a_read_only_one() {
    let ports = Ports::pick();
    // The SHA-256 of `t-read`, a read-only token.
    let text = config(ports, free_port(), "").replace(
        "[admin]\n",
        "[admin]\ntokens = [ { name = \"grafana\", role = \"read-only\", token_sha256 = \"37b8d57153bffdf023160736edb4fcb922a1b6b6ce2dba953f4b571880757b47\" } ]\n",
    );
    let d = Daemon::start("status-page-tokens", ports, &text);
    let (status, body) = get_status(d.admin(), None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(get_status(d.admin(), Some("t-wrong")).0, 401);
    let (status, body) = get_status(d.admin(), Some("t-read"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<h2>Calls in progress (0)</h2>"), "{body}");
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24, "{} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn the_status_page_plots_what_get_calls_says_and_chromium_renders_it() {
    let ports = Ports::pick();
    let (caller, callee) = (Ua::new(PBX), Ua::new(CARRIER));
    let text = config(ports, callee.sip_addr().port(), "")
        .replace("[admin]\n", "[admin]\nstatus_sample_seconds = 1\n");
    let d = Daemon::start("status-page", ports, &text);
    let (mut dialog, offer) = call(&caller, &callee, d.sip(), "+12065550199", "+12065550100");

    // 5 % loss from the PBX: every 20th of 200 packets never sent.
    for seq in (0..200u16).filter(|s| s % 20 != 10) {
        caller
            .rtp
            .send_to(
                &rtp_packet(seq, u32::from(seq) * 40, 0xabc),
                dialog.trunkd_rtp,
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let (got, _) = receive_rtp(&callee.rtp, 190, Duration::from_secs(5));
    assert_eq!(got.len(), 190);
    // An SR from the carrier and the PBX's RR naming it: an RTT, so a MOS,
    // on the customer side (as in media.rs).
    let b_rtcp = std::net::SocketAddr::new(offer.sdp_rtp().ip(), offer.sdp_rtp().port() + 1);
    let a_rtcp = std::net::SocketAddr::new(dialog.trunkd_rtp.ip(), dialog.trunkd_rtp.port() + 1);
    let ntp: u64 = 0xE8A1_B2C3_0004_0000;
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0x2222u32.to_be_bytes());
    sr.extend_from_slice(&ntp.to_be_bytes());
    sr.extend_from_slice(&[0u8; 12]);
    callee.rtcp.send_to(&sr, b_rtcp).unwrap();
    let mut buf = [0u8; 1500];
    caller.rtcp.recv_from(&mut buf).expect("the SR is relayed");
    let lsr = ((ntp >> 16) & 0xffff_ffff) as u32;
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&0x1111u32.to_be_bytes());
    rr.extend_from_slice(&0x2222u32.to_be_bytes());
    rr.extend_from_slice(&[0u8; 12]);
    rr.extend_from_slice(&lsr.to_be_bytes());
    rr.extend_from_slice(&0u32.to_be_bytes());
    caller.rtcp.send_to(&rr, a_rtcp).unwrap();
    let _ = callee.rtcp.recv_from(&mut buf);

    // The media is quiet now: wait for samples taken after it (1 s apart).
    std::thread::sleep(Duration::from_millis(3500));
    let (status, body) = http(d.admin(), "GET", "/calls").unwrap();
    assert_eq!(status, 200, "{body}");
    let calls: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c = &calls["Calls"][0];
    let txn = c["TransactionId"].as_str().expect("a call in progress");
    let q = &c["Quality"]["Customer"];
    let received = q["PacketsReceived"].as_u64().unwrap();
    let lost = q["PacketsLost"].as_u64().unwrap();
    assert_eq!((received, lost), (190, 10));
    let mos = q["Mos"].as_f64().expect("a MOS with the RTT");
    let jitter_ms = q["JitterMicroseconds"].as_u64().unwrap() as f64 / 1000.0;

    let (status, html) = http(d.admin(), "GET", "/status").unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(html.contains(&format!("<tr data-txn=\"{txn}\"><td>{txn}</td><td>vc-east</td><td>Outbound</td><td>{}</td><td>{}</td>", c["FromPhoneNumber"].as_str().unwrap(), c["ToPhoneNumber"].as_str().unwrap())), "{html}");
    let mos_points = plotted(&html, txn, "MOS", "customer");
    assert!(mos_points.len() >= 3, "a sample a second: {mos_points:?}");
    // The page prints the exact figure; serde_json's default float parser
    // may land one ulp off it, so the two are compared to 1e-9.
    let plotted_mos = *mos_points.last().expect("a MOS point");
    assert!(
        (plotted_mos - mos).abs() < 1e-9,
        "{plotted_mos} vs {mos}: {html}"
    );
    assert_eq!(
        plotted(&html, txn, "jitter ms", "customer").last(),
        Some(&jitter_ms)
    );
    assert_eq!(plotted(&html, txn, "loss %", "customer").last(), Some(&5.0));
    assert!(
        plotted(&html, txn, "MOS", "remote").is_empty(),
        "no RTT on the carrier's side, so no MOS plotted: {html}"
    );
    // The VC's calls: one attempt, answered, in the first sample.
    assert!(
        html.contains("<tr><td>vc-east</td><td>1</td><td>1</td><td>0</td>"),
        "{html}"
    );
    assert!(html.contains("data-started=\"1\" data-answered=\"1\" data-failed=\"0\""));
    // The carrier's route, as GET /routes shows it.
    assert!(html.contains("<table id=\"routes\">"));
    let route = format!(
        "<tr><td>127.0.0.2:{}/UDP</td><td>carrier-a</td>",
        callee.sip_addr().port()
    );
    assert!(html.contains(&route), "{html}");

    // Headless Chromium renders it (bounded; only our own child is killed).
    let dir = temp_dir("status-shot");
    let shot = dir.join("status.png");
    let mut child = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", dir.join("profile").display()),
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
            &format!("http://{}/status", d.admin()),
        ])
        .env("HOME", &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium (Debian package `chromium`, installed by scripts/test)");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(png_size(&png), (1280, 1600));
    assert!(
        png.len() > 20_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("TRUNKD_STATUS_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);

    hang_up(&caller, &callee, &mut dialog, "+12065550100");
}
