//! baresip, a real SIP softphone with its own TLS and SRTP stack (libre),
//! as the customer's phone: SRTP (`mediaenc=srtp-mand`) through trunkd to
//! and from a plain-RTP SIPp carrier, audio flowing both ways (SPEC §2.4
//! interworking), over UDP and over TLS (`;transport=tls`) to a voice
//! connector that requires encryption.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::media::{config, metric_lines, CARRIER, PBX};
use crate::support::*;
use crate::tls::{cert_dir, tls_daemon_sections, write_leaf, Ca};

/// A headless baresip with a config directory of its own. Killed (by the
/// PID it was started with) when dropped.
pub struct Baresip {
    child: Option<Child>,
    /// Its stdin, when started with [`Baresip::start_keyed`]: the stdio
    /// module reads keys from it (digits in a call are sent as DTMF).
    keys: Option<std::process::ChildStdin>,
    pub dir: PathBuf,
    /// SIP over UDP/TCP; baresip listens for TLS on the next port when it
    /// has a certificate.
    pub sip_port: u16,
}

/// A port on `ip` free for UDP and TCP whose successor is free for TCP.
fn port_pair_on(ip: &str) -> u16 {
    for _ in 0..50 {
        let p = free_port_on(ip);
        if p < u16::MAX && std::net::TcpListener::bind((ip, p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair on {ip}");
}

/// A 16-bit mono 8 kHz WAV of a 440 Hz tone: baresip's audio source.
fn write_tone(path: &Path, seconds: u32) {
    let samples = 8000 * seconds;
    let mut wav = Vec::with_capacity(44 + 2 * samples as usize);
    let data_len = 2 * samples;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let v =
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16;
        wav.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, wav).unwrap();
}

impl Baresip {
    /// Starts baresip listening for SIP on `ip` with one account line
    /// (`account`, baresip's accounts-file syntax), running `commands` at
    /// start and quitting after `quit_after` at the latest. Its audio
    /// source is a tone of `tone_seconds`; when the tone ends the call is
    /// hung up.
    pub fn start(
        tag: &str,
        ip: &str,
        account: &str,
        commands: &[String],
        tone_seconds: u32,
        quit_after: Duration,
        extra_config: &str,
    ) -> Baresip {
        Self::spawn(
            tag,
            ip,
            account,
            commands,
            tone_seconds,
            quit_after,
            extra_config,
            false,
        )
    }

    /// As [`Baresip::start`], with a pipe for stdin: [`Baresip::press`]
    /// types keys into its console.
    pub fn start_keyed(
        tag: &str,
        ip: &str,
        account: &str,
        commands: &[String],
        tone_seconds: u32,
        quit_after: Duration,
        extra_config: &str,
    ) -> Baresip {
        Self::spawn(
            tag,
            ip,
            account,
            commands,
            tone_seconds,
            quit_after,
            extra_config,
            true,
        )
    }

    /// Types `keys` into baresip's console (in a call, digits are DTMF).
    pub fn press(&mut self, keys: &str) {
        use std::io::Write;
        let stdin = self.keys.as_mut().expect("started with start_keyed");
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        tag: &str,
        ip: &str,
        account: &str,
        commands: &[String],
        tone_seconds: u32,
        quit_after: Duration,
        extra_config: &str,
        keyed: bool,
    ) -> Baresip {
        let dir = temp_dir(&format!("baresip-{tag}"));
        let tone = dir.join("tone.wav");
        write_tone(&tone, tone_seconds);
        let sip = port_pair_on(ip);
        // baresip may bind its RTP sockets on the wildcard address: give it
        // a range of its own below the ephemeral ports, which the other
        // tests pick their listeners from.
        static NEXT_RTP: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(27_000);
        let rtp = NEXT_RTP.fetch_add(40, std::sync::atomic::Ordering::Relaxed);
        let cfg = format!(
            "poll_method epoll\n\
             sip_listen {ip}:{sip}\n\
             audio_player aufile,{played}\n\
             audio_source aufile,{tone}\n\
             audio_alert aufile,/dev/null\n\
             rtp_ports {rtp}-{rtp_end}\n\
             module_path /usr/lib/baresip/modules\n\
             module stdio.so\n\
             module g711.so\n\
             module aufile.so\n\
             module srtp.so\n\
             module_app account.so\n\
             module_app menu.so\n\
             {extra_config}\n",
            played = dir.join("played.wav").display(),
            tone = tone.display(),
            rtp_end = rtp + 20,
        );
        std::fs::write(dir.join("config"), cfg).unwrap();
        std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&dir);
        for c in commands {
            cmd.arg("-e").arg(c);
        }
        cmd.arg("-t").arg(quit_after.as_secs().max(1).to_string());
        let mut child = cmd
            .stdin(if keyed { Stdio::piped() } else { Stdio::null() })
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip is installed (scripts/test installs it)");
        Baresip {
            keys: child.stdin.take(),
            child: Some(child),
            dir,
            sip_port: sip,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Waits (bounded) for baresip to quit.
    pub fn wait(&mut self, limit: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn baresip_srtp_call_to_a_plain_sipp_carrier_carries_audio_both_ways() {
    let ports = Ports::pick();
    let carrier = free_port_on(CARRIER);
    let uas_media = free_port_on(CARRIER).to_string();
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-rtp_echo", "-mp", &uas_media],
    );
    let d = Daemon::start("baresip-srtp", ports, &config(ports, carrier, ""));
    let mut phone = Baresip::start(
        "srtp-out",
        PBX,
        &format!(
            "<sip:+12065550100@{}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU",
            d.sip()
        ),
        &[format!("/dial sip:+12065550199@{}", d.sip())],
        3,
        Duration::from_secs(10),
        "",
    );
    assert!(
        phone.wait(Duration::from_secs(15)),
        "baresip quits after the call"
    );
    let (ok, text) = uas.wait(Duration::from_secs(10));
    let log = phone.log();
    assert!(
        ok,
        "the carrier's call completed:\n{text}\nbaresip:\n{log}\ntrunkd:\n{}",
        d.log()
    );
    assert!(
        log.contains("SRTP is Enabled"),
        "baresip negotiated SRTP with trunkd:\n{log}"
    );
    assert!(
        log.contains("incoming rtp for 'audio' established"),
        "baresip accepted trunkd's SRTP:\n{log}"
    );
    assert!(!log.to_ascii_lowercase().contains("unprotect"), "{log}");

    let lines = metric_lines(&d);
    let l = lines.last().expect("a media metric line");
    let sent = l["cust2vc_rtp_packets"].as_u64().unwrap();
    // 3 s of 20 ms packets; baresip starts sending as soon as SRTP is up.
    assert!(
        sent >= 100,
        "baresip's SRTP was authenticated and counted: {l}"
    );
    assert_eq!(l["cust2vc_packets_lost"], 0, "{l}");
    assert_eq!(
        l["vc2rem_rtp_packets"], sent,
        "all of it reached the plain carrier: {l}"
    );
    let echoed = l["rem2vc_rtp_packets"].as_u64().unwrap();
    assert!(echoed >= sent - 5, "the carrier echoed it: {l}");
    assert_eq!(
        l["vc2cust_rtp_packets"], echoed,
        "and trunkd encrypted it back: {l}"
    );
    // baresip 1.0 sends its closing RTCP BYE after it has torn its SRTP
    // context down: in the clear, on the SRTP leg, so it fails
    // authentication (trunkd's log shows a 60-byte RTCP packet). That one
    // packet, when it arrives before trunkd ends the call, is the only
    // drop allowed.
    let dropped = d
        .metric("media_packets_dropped_total{reason=\"srtp\"}")
        .unwrap_or(0.0);
    assert!(
        dropped <= 1.0,
        "{dropped} SRTP packets of baresip's failed authentication"
    );
}

/// A TLS lab: trunkd with a TLS listener and a VC that requires
/// encryption, whose PBX is baresip on 127.0.0.3 (TLS route), and a plain
/// SIPp carrier on 127.0.0.2.
/// The lab's certificates: a test CA, trunkd's for 127.0.0.1 and
/// baresip's for 127.0.0.3.
pub(crate) struct Certs {
    dir: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Certs {
    pub(crate) fn new(tag: &str) -> Certs {
        let dir = cert_dir(tag);
        let ca = Ca::new();
        let ca_file = ca.write(&dir);
        let (cert, key) = write_leaf(&dir, "server", &ca.issue(&["127.0.0.1"]));
        // baresip's certificate, key in the same file (its sip_certificate).
        let pbx = ca.issue(&[PBX]);
        std::fs::write(dir.join("pbx.pem"), format!("{}{}", pbx.0, pbx.1)).unwrap();
        Certs {
            dir,
            ca: ca_file,
            cert,
            key,
        }
    }

    /// baresip's TLS config lines: its certificate and the test CA.
    pub(crate) fn baresip(&self) -> String {
        format!(
            "sip_certificate {}\nsip_cafile {}\n",
            self.dir.join("pbx.pem").display(),
            self.ca.display()
        )
    }
}

struct TlsLab {
    d: Daemon,
    tls: u16,
}

fn tls_lab(tag: &str, certs: &Certs, carrier_port: u16, pbx_tls_port: u16) -> TlsLab {
    let (cert, key, ca_file) = (&certs.cert, &certs.key, &certs.ca);
    let ports = Ports::pick();
    let tls = free_port();
    let text = tls_daemon_sections(ports, tls, cert, key, ca_file)
        + &format!(
            r#"
[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.2/32"]
hosts = [ {{ host = "127.0.0.2", port = {carrier_port} }} ]
[[voice_connectors]]
id = "vc-east"
require_encryption = true
[voice_connectors.termination]
# baresip's outgoing TLS connections are not bound to its SIP address:
# the kernel picks 127.0.0.1 as their source.
cidr_allowed_list = ["127.0.0.3/32", "127.0.0.1/32"]
calling_regions = ["US"]
[voice_connectors.origination]
routes = [ {{ host = "127.0.0.3", port = {pbx_tls_port}, protocol = "TLS" }} ]
[voice_connectors.logging]
enable_media_metric_logs = true
[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"
"#
        );
    let d = Daemon::start(tag, ports, &text);
    TlsLab { d, tls }
}

#[test]
fn baresip_over_tls_with_srtp_calls_out_to_a_plain_carrier() {
    let carrier = free_port_on(CARRIER);
    let uas_media = free_port_on(CARRIER).to_string();
    let mut uas = SippBg::uas(
        "uas_answer.xml",
        CARRIER,
        carrier,
        &["-m", "1", "-rtp_echo", "-mp", &uas_media],
    );
    let certs = Certs::new("baresip-tls-out");
    let lab = tls_lab("baresip-tls-out", &certs, carrier, 9);
    let trunkd_tls = format!("127.0.0.1:{};transport=tls", lab.tls);
    let mut phone = Baresip::start(
        "tls-out",
        PBX,
        &format!("<sip:+12065550100@{trunkd_tls}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU"),
        &[format!("/dial sip:+12065550199@{trunkd_tls}")],
        3,
        Duration::from_secs(10),
        &certs.baresip(),
    );
    assert!(
        phone.wait(Duration::from_secs(15)),
        "baresip quits after the call"
    );
    let (ok, text) = uas.wait(Duration::from_secs(10));
    let log = phone.log();
    assert!(
        ok,
        "the call completed:\n{text}\nbaresip:\n{log}\ntrunkd:\n{}",
        lab.d.log()
    );
    assert!(log.contains("SRTP is Enabled"), "{log}");
    let l = metric_lines(&lab.d)
        .last()
        .cloned()
        .expect("a media metric line");
    let sent = l["cust2vc_rtp_packets"].as_u64().unwrap();
    assert!(sent >= 100, "{l}");
    assert_eq!(l["vc2rem_rtp_packets"], sent, "{l}");
    assert!(
        l["vc2cust_rtp_packets"].as_u64().unwrap() >= sent - 5,
        "{l}"
    );
    // INVITE, ACK and BYE came over TLS; the 200 went back over it.
    let got = lab
        .d
        .metric("sip_messages_received_total{transport=\"tls\",kind=\"request\"}");
    assert!(got.is_some_and(|n| n >= 3.0), "{got:?}");
    let ok = lab
        .d
        .metric("sip_responses_sent_total{transport=\"tls\",class=\"2xx\"}");
    assert!(ok.is_some_and(|n| n >= 2.0), "{ok:?}");
}

#[test]
fn a_plain_carrier_calls_baresip_over_tls_with_srtp_required() {
    let certs = Certs::new("baresip-tls-in");
    let phone = Baresip::start(
        "tls-in",
        PBX,
        &format!("<sip:+12065550100@{PBX}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU;answermode=auto"),
        &[],
        10,
        Duration::from_secs(12),
        &certs.baresip(),
    );
    let lab = tls_lab("baresip-tls-in", &certs, 9, phone.sip_port + 1);
    let uac_media = free_port_on(CARRIER).to_string();
    let out = sipp_uac(
        "uac_pcap_audio.xml",
        CARRIER,
        lab.d.sip(),
        &[
            "-s",
            "+12065550100",
            "-key",
            "caller",
            "+14155550123",
            "-m",
            "1",
            "-d",
            "2500",
            "-mp",
            &uac_media,
        ],
    );
    let log = phone.log();
    assert!(
        out.status.success(),
        "{}\nbaresip:\n{log}\ntrunkd:\n{}",
        out_text(&out),
        lab.d.log()
    );
    assert!(
        log.contains("SRTP is Enabled"),
        "baresip got an SRTP offer:\n{log}"
    );
    let l = metric_lines(&lab.d)
        .last()
        .cloned()
        .expect("a media metric line");
    let from_carrier = l["rem2vc_rtp_packets"].as_u64().unwrap();
    assert!(from_carrier > 0, "{l}");
    assert_eq!(
        l["vc2cust_rtp_packets"], from_carrier,
        "all of it encrypted to baresip: {l}"
    );
    assert!(
        l["cust2vc_rtp_packets"].as_u64().unwrap() > 0,
        "baresip's SRTP came back: {l}"
    );
    assert_eq!(l["vc2rem_rtp_packets"], l["cust2vc_rtp_packets"], "{l}");
}
