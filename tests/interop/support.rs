//! Test support: start the real `trunkd` binary on free loopback ports,
//! talk HTTP to its admin listener, run SIPp against it, and clean up by the
//! PID we started (never by name).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const TRUNKD: &str = env!("CARGO_BIN_EXE_trunkd");

/// The repository root (tests/sipp lives there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "trunkd-it-{tag}-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports, each free for both UDP and TCP on 127.0.0.1 right
/// now, and never handed out before in this test process.
///
/// Every candidate's sockets stay bound until all `N` are found, so the
/// kernel cannot offer the same port twice in one set (a SeaweedFS server
/// once got its S3 and volume gRPC ports equal and did not start). The
/// process-wide record keeps a port given to one test from being given
/// to another test running in parallel before the first one binds it.
pub fn free_ports<const N: usize>() -> [u16; N] {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    let mut found = 0;
    for _ in 0..100 * N {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        held.push((tcp, udp));
        if !handed_out.insert(port) {
            continue;
        }
        ports[found] = port;
        found += 1;
        if found == N {
            return ports;
        }
    }
    panic!("no {N} free ports");
}

/// Ports a test daemon listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub sip: u16,
    pub admin: u16,
}

impl Ports {
    pub fn pick() -> Ports {
        let [sip, admin] = free_ports();
        Ports { sip, admin }
    }
}

/// A small valid configuration listening on `ports`, with `extra` appended
/// (more resources). Two VCs, a group, a carrier, numbers, an SMA, a rule.
pub fn config_text(ports: Ports, extra: &str) -> String {
    format!(
        r#"
[daemon]
state_dir = "var"

[sip]
udp = ["127.0.0.1:{sip}"]
tcp = ["127.0.0.1:{sip}"]

[admin]
listen = "127.0.0.1:{admin}"

[logging]
level = "debug"

[[carriers]]
id = "carrier-a"
source_cidrs = ["127.0.0.1/32"]
hosts = [ {{ host = "127.0.0.1", port = 5080 }} ]

[[voice_connectors]]
id = "vc-east"
[voice_connectors.termination]
cidr_allowed_list = ["127.0.0.0/8"]
calling_regions = ["US"]
[voice_connectors.origination]
routes = [ {{ host = "127.0.0.1", port = 5090 }} ]

[[voice_connectors]]
id = "vc-west"
[voice_connectors.origination]
routes = [ {{ host = "127.0.0.1", port = 5091 }} ]

[[voice_connector_groups]]
id = "grp-main"
voice_connector_items = [ {{ voice_connector_id = "vc-east", priority = 1 }}, {{ voice_connector_id = "vc-west", priority = 2 }} ]

[[numbers]]
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"

[[numbers]]
e164_phone_number = "+12065550150"
product_type = "SipMediaApplicationDialIn"

[[sip_media_applications]]
id = "sma-ivr"
endpoints = [ {{ url = "http://127.0.0.1:8080/sma", priority = 1 }} ]

[[sip_rules]]
id = "rule-1"
trigger_type = "ToPhoneNumber"
trigger_value = "+12065550150"
target_applications = [ {{ sip_media_application_id = "sma-ivr", priority = 1 }} ]
{extra}
"#,
        sip = ports.sip,
        admin = ports.admin,
    )
}

/// A running `trunkd run`, killed (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ports: Ports,
}

impl Daemon {
    /// Writes `text` as the config in a fresh directory and starts trunkd
    /// on it; returns once `/healthz` answers.
    pub fn start(tag: &str, ports: Ports, text: &str) -> Daemon {
        Daemon::start_in(temp_dir(tag), ports, text)
    }

    /// Like [`Daemon::start`] in an existing directory: a restart that
    /// finds the previous run's state (spool, records). The log is
    /// appended to.
    pub fn start_in(dir: PathBuf, ports: Ports, text: &str) -> Daemon {
        let config = dir.join("trunkd.toml");
        std::fs::write(&config, text).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("trunkd.log"))
            .unwrap();
        let child = Command::new(TRUNKD)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn trunkd");
        let mut d = Daemon {
            child: Some(child),
            dir,
            config,
            ports,
        };
        d.wait_healthy();
        d
    }

    /// SIGKILL, as a crash would: nothing is flushed, nothing cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts trunkd again on the same directory and configuration (its
    /// log appended to the same file); returns once `/healthz` answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill it first");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("trunkd.log"))
            .unwrap();
        self.child = Some(
            Command::new(TRUNKD)
                .args(["run", "--config"])
                .arg(&self.config)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn trunkd"),
        );
        self.wait_healthy();
    }

    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.admin))
    }

    pub fn sip(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.sip))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("trunkd.log")).unwrap_or_default()
    }

    /// Waits until `/healthz` answers; fails at once, with the log's tail,
    /// if the daemon exits first (a listener it could not bind, say).
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        // An admin listener over TLS does not answer this plain client:
        // then the log's "ready" line says it.
        let tls_admin =
            std::fs::read_to_string(&self.config).is_ok_and(|t| t.contains("tls_cert_file"));
        while Instant::now() < deadline {
            if tls_admin && self.log().contains("trunkd ready") {
                return;
            }
            if let Ok((200, _)) = http(self.admin(), "GET", "/healthz") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "trunkd exited ({status}) before it was healthy; log tail:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "trunkd did not become healthy in 15 s; log tail:\n{}",
            self.log_tail(60)
        );
    }

    /// The last `lines` lines of the log: a failure's cause is at the end,
    /// and a whole debug log is cut short by CI before it gets there.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the child we spawned and still own.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// The current /metrics text.
    pub fn metrics(&self) -> String {
        let (status, body) = http(self.admin(), "GET", "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        body
    }

    /// The value of one sample (`name{labels}` exactly as exposed), if any.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics(), series)
    }

    /// Polls until `series` has `value` (bounded), then returns it.
    pub fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.metric(series) == Some(value) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{series} never became {value}; metrics:\n{}\nlog:\n{}",
            self.metrics(),
            self.log()
        );
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("trunkd did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A minimal HTTP/1.1 exchange: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Runs SIPp (bounded by `-timeout`) and returns its output.
pub fn sipp(args: &[&str]) -> Output {
    // Defaults first: a test's own `-timeout` comes later and wins.
    let out = Command::new("sipp")
        .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sipp is installed (scripts/test installs sip-tester)");
    out
}

/// Runs the OPTIONS scenario `calls` times over `transport` (`u1` or `t1`)
/// against `target`; panics with SIPp's output if any call failed.
pub fn sipp_options(target: SocketAddr, transport: &str, calls: u32) {
    let scenario = repo().join("tests/sipp/options.xml");
    let out = sipp(&[
        "-sf",
        scenario.to_str().unwrap(),
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-m",
        &calls.to_string(),
        "-r",
        "50",
        &target.to_string(),
    ]);
    assert!(
        out.status.success(),
        "sipp OPTIONS over {transport} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A SIPp process in the background (a UAS playing carrier or customer
/// route), killed by its PID on drop.
pub struct SippBg {
    child: Option<Child>,
    pub name: String,
}

/// Whether a UDP or TCP socket is bound to `ip:port` (or to the wildcard
/// address on `port`), from /proc/net: a read-only look that cannot take
/// the port from the process about to bind it, as a probe bind could.
pub fn port_bound(ip: &str, port: u16) -> bool {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    // /proc/net prints each 32-bit word of the address as the host reads
    // it (little-endian here), then the port in hex.
    let hex = |octets: &[u8]| {
        octets
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .collect::<String>()
    };
    let (files, want, any) = match addr {
        std::net::IpAddr::V4(a) => (
            ["/proc/net/udp", "/proc/net/tcp"],
            hex(&a.octets()),
            hex(&[0; 4]),
        ),
        std::net::IpAddr::V6(a) => (
            ["/proc/net/udp6", "/proc/net/tcp6"],
            hex(&a.octets()),
            hex(&[0; 16]),
        ),
    };
    let port = format!("{port:04X}");
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|local| local.split_once(':'))
                    .is_some_and(|(a, p)| p == port && (a == want || a == any))
            })
        })
    })
}

impl SippBg {
    /// Starts `sipp -sf tests/sipp/<scenario>` listening on `ip:port`.
    pub fn uas(scenario: &str, ip: &str, port: u16, extra: &[&str]) -> SippBg {
        let sf = repo().join("tests/sipp").join(scenario);
        let child = Command::new("sipp")
            .args([
                "-sf",
                sf.to_str().unwrap(),
                "-i",
                ip,
                "-p",
                &port.to_string(),
                "-nostdin",
                "-timeout",
                "30s",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipp is installed (scripts/test installs sip-tester)");
        let mut bg = SippBg {
            child: Some(child),
            name: scenario.to_owned(),
        };
        // Once SIPp has bound its port, the kernel queues what arrives even
        // before SIPp reads: wait for that, not for a fixed time (a fixed
        // 150 ms was a guess that a cold, loaded machine can outrun).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_bound(ip, port) && Instant::now() < deadline {
            let exited = bg
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                // It could not bind (or the scenario is bad): the test's
                // own assertions report what it printed.
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bg
    }

    /// Waits (bounded) for the UAS to finish its `-m` calls; returns its
    /// output and whether it succeeded.
    pub fn wait(&mut self, limit: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                return (status.success(), text);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                return (
                    false,
                    format!(
                        "{} did not finish\n{}",
                        self.name,
                        String::from_utf8_lossy(&out.stdout)
                    ),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SippBg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a SIPp UAC scenario to completion (bounded by SIPp's `-timeout`).
pub fn sipp_uac(scenario: &str, ip: &str, target: SocketAddr, extra: &[&str]) -> Output {
    let sf = repo().join("tests/sipp").join(scenario);
    let port = free_port_on(ip);
    let mut args: Vec<String> = vec![
        "-sf".into(),
        sf.to_str().unwrap().into(),
        "-i".into(),
        ip.into(),
        "-p".into(),
        port.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(target.to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sipp(&argv)
}

/// SIPp's count of successful and failed calls from its final statistics.
pub fn sipp_counts(out: &Output) -> (u64, u64) {
    let text = String::from_utf8_lossy(&out.stdout);
    let grab = |label: &str| {
        text.lines()
            .filter(|l| l.contains(label))
            .filter_map(|l| {
                l.split('|')
                    .nth(2)
                    .and_then(|c| c.trim().parse::<u64>().ok())
            })
            .next_back()
            .unwrap_or(0)
    };
    (grab("Successful call"), grab("Failed call"))
}

pub fn out_text(out: &Output) -> String {
    format!(
        "status {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port free for UDP and TCP on `ip` (any 127.0.0.0/8 address).
pub fn free_port_on(ip: &str) -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind((ip, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// Every CDR file under `dir`, parsed.
pub fn cdrs(dir: &Path) -> Vec<serde_json::Value> {
    records_in(dir, "Amazon-Chime-Voice-Connector-CDRs")
}

/// Every SDR under a records directory (SPEC §5.2).
pub fn sdrs(dir: &Path) -> Vec<serde_json::Value> {
    records_in(dir, "Amazon-Chime-Voice-Connector-SDRs")
}

/// Every record under `dir` whose key has `folder` in it.
fn records_in(dir: &Path, folder: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with(".tmp") && p.to_string_lossy().contains(folder)
            {
                let text = std::fs::read_to_string(&p).unwrap();
                let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
                v["_key"] = serde_json::Value::String(
                    p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                );
                out.push(v);
            }
        }
    }
    out
}

/// Polls (bounded) until `n` CDRs exist under `dir`.
pub fn wait_cdrs(dir: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = cdrs(dir);
        if c.len() >= n || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `port_bound` reads /proc/net right for both families and both
/// transports (SippBg waits on it).
#[test]
fn port_bound_sees_udp_and_tcp_sockets_on_either_family() {
    for ip in ["127.0.0.2", "::1"] {
        let udp = UdpSocket::bind((ip, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        assert!(port_bound(ip, port), "UDP {ip}:{port}");
        drop(udp);
        assert!(!port_bound(ip, port), "UDP {ip}:{port} after close");
        let tcp = TcpListener::bind((ip, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        assert!(port_bound(ip, port), "TCP {ip}:{port}");
    }
}
