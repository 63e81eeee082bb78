//! The foundation: check-config, run, OPTIONS over UDP and TCP, /healthz,
//! /metrics, reload (SIGHUP, `trunkd reload`, POST /reload) and SIGTERM.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn check_config_accepts_the_bundled_example_and_summarises_it() {
    let out = Command::new(TRUNKD)
        .args(["check-config", "--config"])
        .arg(repo().join("config/trunkd.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(": OK: 2 voice_connectors, 1 voice_connector_groups, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 sip_media_applications, 1 sip_rules"),
        "{stdout}"
    );
}

#[test]
fn check_config_prints_every_error_with_file_resource_and_field() {
    let dir = temp_dir("check");
    let path = dir.join("bad.toml");
    let text = config_text(
        Ports {
            sip: 5060,
            admin: 9060,
        },
        "",
    )
    .replace(
        "routes = [ { host = \"127.0.0.1\", port = 5090 } ]",
        "routes = [ { host = \"127.0.0.1\", port = 5090, weight = 0 } ]",
    )
    .replace(
        "calling_regions = [\"US\"]",
        "calling_regions = [\"US\"]\ncps_limit = 0",
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(TRUNKD)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert!(
        stderr.contains(&format!(
            "{p}: voice_connectors[id=vc-east].termination.cps_limit: 0 is out of range 1..=100000"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{p}: voice_connectors[id=vc-east].origination.routes[0].weight: 0 is out of range 1..=100")), "{stderr}");
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn run_refuses_an_invalid_file() {
    let dir = temp_dir("refuse");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[sip]\nudp = [\"nonsense\"]\n").unwrap();
    let out = Command::new(TRUNKD)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("sip.udp[0]: \"nonsense\" is not a socket address"));
}

#[test]
fn options_is_answered_over_udp_and_tcp_and_counted() {
    let ports = Ports::pick();
    let d = Daemon::start("options", ports, &config_text(ports, ""));
    sipp_options(d.sip(), "u1", 3);
    sipp_options(d.sip(), "t1", 3);
    let m = d.metrics();
    assert!(
        metric_value(
            &m,
            "sip_messages_received_total{transport=\"udp\",kind=\"request\"}"
        )
        .unwrap()
            >= 3.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "sip_messages_received_total{transport=\"tcp\",kind=\"request\"}"
        )
        .unwrap()
            >= 3.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "sip_responses_sent_total{transport=\"udp\",class=\"2xx\"}"
        )
        .unwrap()
            >= 3.0,
        "{m}"
    );
}

#[test]
fn healthz_and_metrics_describe_the_running_configuration() {
    let ports = Ports::pick();
    let d = Daemon::start("metrics", ports, &config_text(ports, ""));
    let (status, body) = http(d.admin(), "GET", "/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("ok: 2 voice_connectors"), "{body}");
    let m = d.metrics();
    for needle in [
        "trunkd_build_info{version=\"",
        "config_reloads_total{result=\"success\"} 0",
        "config_reloads_total{result=\"failure\"} 0",
        "config_resources{kind=\"voice_connectors\"} 2",
        "config_resources{kind=\"numbers\"} 2",
        "config_resources{kind=\"sip_rules\"} 1",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
}

const THIRD_VC: &str = r#"
[[voice_connectors]]
id = "vc-north"
[voice_connectors.origination]
routes = [ { host = "127.0.0.1", port = 5092 } ]
"#;

#[test]
fn sighup_swaps_a_valid_file_and_keeps_the_old_one_when_invalid() {
    let ports = Ports::pick();
    let d = Daemon::start("sighup", ports, &config_text(ports, ""));

    std::fs::write(&d.config, config_text(ports, THIRD_VC)).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_metric("config_reloads_total{result=\"success\"}", 1.0);
    assert_eq!(
        d.metric("config_resources{kind=\"voice_connectors\"}"),
        Some(3.0)
    );

    // An invalid file: counted, logged with its precise error, not applied.
    std::fs::write(
        &d.config,
        config_text(ports, THIRD_VC).replace("port = 5092", "port = 0"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_metric("config_reloads_total{result=\"failure\"}", 1.0);
    assert_eq!(
        d.metric("config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(
        d.metric("config_resources{kind=\"voice_connectors\"}"),
        Some(3.0)
    );
    assert!(
        d.log().contains(
            "voice_connectors[id=vc-north].origination.routes[0].port: 0 is out of range 1..=65535"
        ),
        "{}",
        d.log()
    );
    // The old snapshot still serves.
    sipp_options(d.sip(), "u1", 1);
    let (status, body) = http(d.admin(), "GET", "/healthz").unwrap();
    assert_eq!(
        (status, body.starts_with("ok: 3 voice_connectors")),
        (200, true),
        "{body}"
    );
}

#[test]
fn trunkd_reload_reports_the_outcome() {
    let ports = Ports::pick();
    let d = Daemon::start("reload-cli", ports, &config_text(ports, ""));
    std::fs::write(&d.config, config_text(ports, THIRD_VC)).unwrap();
    let out = Command::new(TRUNKD)
        .args(["reload", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 voice_connectors"));

    std::fs::write(
        &d.config,
        config_text(ports, THIRD_VC).replace("\"vc-north\"", "\"VC North\""),
    )
    .unwrap();
    let out = Command::new(TRUNKD)
        .args(["reload", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("voice_connectors[id=VC North].id: contains 'V'"),
        "{stderr}"
    );
    assert_eq!(
        d.metric("config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    assert_eq!(
        d.metric("config_resources{kind=\"voice_connectors\"}"),
        Some(3.0)
    );
}

#[test]
fn malformed_input_is_answered_or_dropped_and_never_stops_service() {
    let ports = Ports::pick();
    let d = Daemon::start("malformed", ports, &config_text(ports, ""));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = sock.local_addr().unwrap();
    // Garbage of every kind: dropped without an answer.
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"",
        b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        &[0xffu8; 3000][..],
    ] {
        sock.send_to(junk, d.sip()).unwrap();
    }
    // A request without Call-ID: 400 naming it.
    let bad = format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bad1\r\nMax-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(bad.as_bytes(), d.sip()).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("a 400 for the request without Call-ID");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(
        resp.starts_with("SIP/2.0 400 Missing Call-ID\r\n"),
        "{resp}"
    );
    assert!(resp.contains("branch=z9hG4bK-bad1"), "{resp}");
    // A bad version: 505.
    let v7 = bad
        .replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia")
        .replace("CSeq", "Call-ID: v7@test\r\nCSeq");
    sock.send_to(v7.as_bytes(), d.sip()).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("a 505");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 505 "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Still serving.
    sipp_options(d.sip(), "u1", 2);
    let m = d.metrics();
    assert!(
        metric_value(
            &m,
            "sip_malformed_messages_total{transport=\"udp\",action=\"dropped\"}"
        )
        .unwrap()
            >= 4.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "sip_malformed_messages_total{transport=\"udp\",action=\"rejected\"}"
        )
        .unwrap()
            >= 2.0,
        "{m}"
    );
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_pid_file() {
    let ports = Ports::pick();
    let mut d = Daemon::start("sigterm", ports, &config_text(ports, ""));
    let pid_file = d.dir.join("var/trunkd.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        d.pid().to_string()
    );
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(!pid_file.exists());
}

/// The receive buffer the kernel reports for the daemon's UDP socket bound
/// to 127.0.0.1:`port`: the socket found through /proc (its inode in
/// /proc/net/udp, then the daemon's descriptor with that inode), copied
/// into this process with pidfd_getfd(2) and asked with SO_RCVBUF. `None`
/// where the kernel refuses the copy (no pidfd_getfd, no permission).
fn daemon_udp_rcvbuf(pid: i32, port: u16) -> Option<usize> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let local = format!("0100007F:{port:04X}");
    let udp = std::fs::read_to_string("/proc/net/udp").ok()?;
    let inode = udp
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&local.as_str()))?
        .get(9)?
        .to_string();
    let want = format!("socket:[{inode}]");
    let fd: i32 = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))?
        .file_name()
        .to_str()?
        .parse()
        .ok()?;
    // SAFETY: plain syscalls; each descriptor returned is checked and then
    // owned (closed on drop).
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return None;
    }
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let copy = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd,
            0,
        )
    };
    if copy < 0 {
        return None;
    }
    let copy = unsafe { OwnedFd::from_raw_fd(copy as i32) };
    socket2::SockRef::from(&copy).recv_buffer_size().ok()
}

/// `[sip] udp_receive_buffer_bytes`: the daemon's SIP UDP socket gets the
/// buffer asked for, up to `net.core.rmem_max`; asked for more, the daemon
/// still serves and warns that the kernel capped it.
#[test]
fn the_sip_udp_listener_gets_its_receive_buffer_and_a_capped_one_is_warned_about() {
    let Some(rmem_max) = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        return; // Not Linux: nothing to check.
    };
    let with_buffer = |ports: Ports, bytes: usize| {
        config_text(ports, "").replacen(
            "[sip]\n",
            &format!("[sip]\nudp_receive_buffer_bytes = {bytes}\n"),
            1,
        )
    };
    let capped = "the kernel caps it at net.core.rmem_max";

    // Within the cap: what was asked (Linux reports twice what it keeps).
    let asked = (1 << 20).min(rmem_max);
    let ports = Ports::pick();
    let d = Daemon::start("rcvbuf", ports, &with_buffer(ports, asked));
    sipp_options(d.sip(), "u1", 1);
    if let Some(rb) = daemon_udp_rcvbuf(d.pid(), ports.sip) {
        assert_eq!(rb, 2 * asked, "rmem_max {rmem_max}");
    }
    assert!(!d.log().contains(capped), "{}", d.log());
    drop(d);

    // Beyond the cap: the cap, and a warning (where twice the cap is still
    // a valid setting).
    if 2 * rmem_max > 1 << 30 {
        return;
    }
    let ports = Ports::pick();
    let d = Daemon::start("rcvbuf-capped", ports, &with_buffer(ports, 2 * rmem_max));
    sipp_options(d.sip(), "u1", 1);
    if let Some(rb) = daemon_udp_rcvbuf(d.pid(), ports.sip) {
        assert_eq!(rb, 2 * rmem_max);
    }
    assert!(d.log().contains(capped), "{}", d.log());
}
