//! baresip, a real SIP softphone with its own SRTP stack (libre/libsrtp),
//! as the customer's phone: SRTP (`mediaenc=srtp-mand`) through trunkd to a
//! plain-RTP SIPp carrier, audio flowing both ways (SPEC §2.4 interworking).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::media::{config, metric_lines, CARRIER, PBX};
use crate::support::*;

/// A headless baresip with a config directory of its own. Killed (by the
/// PID it was started with) when dropped.
pub struct Baresip {
    child: Option<Child>,
    pub dir: PathBuf,
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
        let v = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16;
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
        let dir = temp_dir(&format!("baresip-{tag}"));
        let tone = dir.join("tone.wav");
        write_tone(&tone, tone_seconds);
        let sip = free_port_on(ip);
        let rtp = free_port_on(ip);
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
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip is installed (scripts/test installs it)");
        Baresip {
            child: Some(child),
            dir,
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
    assert!(phone.wait(Duration::from_secs(15)), "baresip quits after the call");
    let (ok, text) = uas.wait(Duration::from_secs(10));
    let log = phone.log();
    assert!(ok, "the carrier's call completed:\n{text}\nbaresip:\n{log}\ntrunkd:\n{}", d.log());
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
    assert!(sent >= 100, "baresip's SRTP was authenticated and counted: {l}");
    assert_eq!(l["cust2vc_packets_lost"], 0, "{l}");
    assert_eq!(l["vc2rem_rtp_packets"], sent, "all of it reached the plain carrier: {l}");
    let echoed = l["rem2vc_rtp_packets"].as_u64().unwrap();
    assert!(echoed >= sent - 5, "the carrier echoed it: {l}");
    assert_eq!(l["vc2cust_rtp_packets"], echoed, "and trunkd encrypted it back: {l}");
    assert_eq!(
        d.metric("media_packets_dropped_total{reason=\"srtp\"}").unwrap_or(0.0),
        0.0,
        "no SRTP packet of baresip's failed authentication"
    );
}
