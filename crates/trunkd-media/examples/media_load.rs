//! Media load generator for `scripts/bench-media` (ANCHORS.md, media part):
//! sets up `--calls N` calls through a target, streams G.711-like RTP both
//! ways (a 172-byte packet every 20 ms per direction, so 100 relayed packets
//! per second per call) for `--secs S`, then tears the calls down.
//!
//! Targets:
//!
//! * `--target trunkd --sip 127.0.0.1:PORT --callee-sip 127.0.0.2:PORT2`: a
//!   running trunkd whose carrier host is `127.0.0.2:PORT2` and whose voice
//!   connector admits `127.0.0.3`. One UDP socket per side carries all SIP;
//!   per call the caller (127.0.0.3) sends an INVITE with SDP for
//!   `+1206555NNNN` (NNNN = the call's index, which is how the callee side
//!   pairs trunkd's B-leg INVITE with the call), the callee answers 200 with
//!   SDP, the caller ACKs. Teardown: BYE from the caller.
//! * `--target rtpengine --ng 127.0.0.1:PORT`: rtpengine's ng control
//!   protocol (bencode over UDP): `offer` with the caller's SDP, `answer`
//!   with the callee's, `delete` at the end.
//! * `--target bare [--relay 127.0.0.1:FIRST]`: the project's floor,
//!   `trunkd_media::bare_relay`, one per call. With `--relay`, an external
//!   relay in the `bare_relay` example's layout (call `i` on `FIRST + 2i`
//!   and `FIRST + 2i + 1`); without it, relays on a thread of this process
//!   (its CPU is that thread's).
//! * `--target direct`: no relay at all, the phones send to each other (the
//!   generator's own latency baseline).
//!
//! Media (`--media`, trunkd and rtpengine only; bare and direct are plain):
//!
//! * `rtp` (default): plain RTP/AVP on both legs.
//! * `srtp`: SDES-keyed SRTP (AES_CM_128_HMAC_SHA1_80) on both legs. The
//!   caller offers `RTP/SAVP` with one `a=crypto:1` and its own key; the
//!   callee takes the AES_CM_128_HMAC_SHA1_80 line of the offer it gets
//!   (trunkd's B-leg INVITE, whose carrier host needs `srtp = "offer"`, or
//!   rtpengine's offer reply) and answers with that tag and its own key.
//!   rtpengine is told `transport-protocol: RTP/SAVP`, `DTLS: off`.
//! * `srtp-rtp`: SRTP on the caller's leg, plain on the callee's
//!   (interworking); rtpengine is told `transport-protocol: RTP/AVP`.
//!
//! An SRTP phone protects every packet it sends with its own key and
//! unprotects every packet it gets with the key the hop announced to it
//! (`trunkd_media::LegCrypto`, the same transform trunkd uses); a datagram
//! that fails is counted (`srtp_failed`) and, not received, lost. The
//! generator's own crypto is its CPU, not the target's.
//!
//! Call setup is paced (`--rate`, default 200 calls/s). RTP starts once every
//! call is up: each side first sends one priming packet (so relays that latch
//! on the first packet know both peers; not counted), then every phone sends
//! on its own phase within the 20 ms period (spread evenly over the calls, the
//! two directions of a call 10 ms apart), in 250 µs slots, from one
//! single-threaded level-triggered epoll loop that receives one datagram per
//! readiness event.
//!
//! Latency: each packet carries its send time (CLOCK_REALTIME, read just
//! before `sendto`); the receiving socket has `SO_TIMESTAMPNS`, so the
//! receive time is the kernel's (taken when the relay's `sendto` hands the
//! datagram to loopback), and the generator's own wake-up delay is not
//! counted. With `--target direct` it is a few µs: what a relay shows is
//! what the relay hop adds.
//!
//! Measured over a steady window (from `--warmup` seconds after RTP starts
//! to `--tail` seconds before it stops): relayed packets, latency
//! percentiles, and with `--pid` the target's CPU (sum of
//! `/proc/PID/task/*/schedstat`) and VmRSS (before any call and at the end of
//! the window). Sent/received/lost count every packet of the whole stream;
//! the count closes 500 ms after the last send.
//!
//! `--perf-ctl FIFO`: the control FIFO of a `perf stat -D -1 --control
//! fifo:FIFO` attached to the target (started disabled, by
//! `scripts/bench-media --syscalls`). The generator writes `enable` at the
//! window's start and `disable` at its end, so what perf counts is the
//! target's work over exactly the window the CPU figures cover.
//!
//! Prints a summary on stderr and one `media_load key=value ...` line on
//! stdout (what the script parses).
//!
//! `cargo run --release -p trunkd-media --example media_load -- --target bare --calls 100 --secs 5`

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use trunkd_media::sdes::{CryptoAttr, KeyMaterial};
use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};

const PKT_LEN: usize = 172;
const PERIOD_NS: u64 = 20_000_000;
/// Sends are grouped into slots of this length (fewer wake-ups).
const SLOT_NS: u64 = 250_000;
const MAGIC: &[u8; 4] = b"TKML";
const PRIME: &[u8; 4] = b"TKPR";
/// Latency histogram: 1 µs bins up to 200 ms.
const HIST_US: usize = 200_000;
const MAX_CALLS: usize = 1000;
/// Linux, all architectures trunkd runs on (asm-generic/socket.h).
const SO_TIMESTAMPNS: libc::c_int = 35;
const SCM_TIMESTAMPNS: libc::c_int = SO_TIMESTAMPNS;
const T1: Duration = Duration::from_millis(500);
/// epoll data of the signalling sockets (phones use their index).
const SIG_TOKEN: u64 = u64::MAX;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The one SRTP suite the phones use: rtpengine's default and the suite of
/// ANCHORS.md-era deployments, so trunkd and rtpengine do the same work.
const SUITE: CryptoSuite = CryptoSuite::Aes128CmHmacSha1_80;

/// What the two legs of a call carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MediaMode {
    /// Plain RTP both ways.
    Rtp,
    /// SRTP (SDES) on both legs: the hop decrypts and re-encrypts.
    Srtp,
    /// SRTP on the caller's leg, plain RTP on the callee's (interworking).
    SrtpRtp,
}

impl MediaMode {
    fn name(self) -> &'static str {
        match self {
            MediaMode::Rtp => "rtp",
            MediaMode::Srtp => "srtp",
            MediaMode::SrtpRtp => "srtp-rtp",
        }
    }

    /// Whether the caller's (`callee = false`) or callee's leg is SRTP.
    fn srtp_leg(self, callee: bool) -> bool {
        match self {
            MediaMode::Rtp => false,
            MediaMode::Srtp => true,
            MediaMode::SrtpRtp => !callee,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Trunkd,
    Rtpengine,
    Bare,
    Direct,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Trunkd => "trunkd",
            Target::Rtpengine => "rtpengine",
            Target::Bare => "bare",
            Target::Direct => "direct",
        }
    }
}

struct Opts {
    target: Target,
    media: MediaMode,
    calls: usize,
    secs: f64,
    rate: f64,
    sip: SocketAddr,
    callee_sip: SocketAddr,
    caller_ip: Ipv4Addr,
    ng: SocketAddr,
    relay: Option<SocketAddr>,
    pid: Option<u32>,
    perf_ctl: Option<std::path::PathBuf>,
    warmup: f64,
    tail: f64,
}

const USAGE: &str = "usage: media_load --target trunkd|rtpengine|bare|direct --calls N --secs S \
[--media rtp|srtp|srtp-rtp] \
[--rate CALLS_PER_S] [--sip 127.0.0.1:PORT] [--callee-sip 127.0.0.2:PORT] [--caller-ip 127.0.0.3] \
[--ng 127.0.0.1:PORT] [--relay 127.0.0.1:FIRST_PORT] [--pid PID] [--perf-ctl FIFO] [--warmup S] [--tail S]";

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        target: Target::Bare,
        media: MediaMode::Rtp,
        calls: 100,
        secs: 15.0,
        rate: 200.0,
        sip: "127.0.0.1:5060".parse()?,
        callee_sip: "127.0.0.2:5080".parse()?,
        caller_ip: Ipv4Addr::new(127, 0, 0, 3),
        ng: "127.0.0.1:2223".parse()?,
        relay: None,
        pid: None,
        perf_ctl: None,
        warmup: 2.0,
        tail: 1.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--target" => {
                o.target = match val()?.as_str() {
                    "trunkd" => Target::Trunkd,
                    "rtpengine" => Target::Rtpengine,
                    "bare" => Target::Bare,
                    "direct" => Target::Direct,
                    t => return Err(format!("unknown target {t}\n{USAGE}").into()),
                }
            }
            "--media" => {
                o.media = match val()?.as_str() {
                    "rtp" => MediaMode::Rtp,
                    "srtp" => MediaMode::Srtp,
                    "srtp-rtp" => MediaMode::SrtpRtp,
                    m => return Err(format!("unknown media mode {m}\n{USAGE}").into()),
                }
            }
            "--calls" => o.calls = val()?.parse()?,
            "--secs" => o.secs = val()?.parse()?,
            "--rate" => o.rate = val()?.parse()?,
            "--sip" => o.sip = val()?.parse()?,
            "--callee-sip" => o.callee_sip = val()?.parse()?,
            "--caller-ip" => o.caller_ip = val()?.parse()?,
            "--ng" => o.ng = val()?.parse()?,
            "--relay" => o.relay = Some(val()?.parse()?),
            "--pid" => o.pid = Some(val()?.parse()?),
            "--perf-ctl" => o.perf_ctl = Some(val()?.into()),
            "--warmup" => o.warmup = val()?.parse()?,
            "--tail" => o.tail = val()?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}").into()),
        }
    }
    if o.calls == 0 || o.calls > MAX_CALLS {
        return Err(format!("--calls must be 1..={MAX_CALLS} on this machine").into());
    }
    if !(1.0..=30.0).contains(&o.secs) {
        return Err("--secs must be 1..=30".into());
    }
    if o.warmup + o.tail >= o.secs {
        return Err("--warmup + --tail must be shorter than --secs".into());
    }
    if o.media != MediaMode::Rtp && matches!(o.target, Target::Bare | Target::Direct) {
        // Neither has signalling to carry keys: the floor is plain RTP only.
        return Err("--media srtp/srtp-rtp needs --target trunkd or rtpengine".into());
    }
    if !(1.0..=5000.0).contains(&o.rate) {
        return Err("--rate must be 1..=5000 calls/s".into());
    }
    Ok(o)
}

// --- system helpers -----------------------------------------------------------

fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn schedstat_ns(path: impl AsRef<std::path::Path>) -> u64 {
    schedstat(path)[0]
}

/// A thread's `schedstat`: time on the CPU (ns), time runnable but waiting
/// for a CPU (ns), and how many times it was scheduled in.
fn schedstat(path: impl AsRef<std::path::Path>) -> [u64; 3] {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let mut v = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    [
        v.next().unwrap_or(0),
        v.next().unwrap_or(0),
        v.next().unwrap_or(0),
    ]
}

/// [`schedstat`] summed over the threads of `pid`.
fn process_schedstat(pid: &str) -> [u64; 3] {
    let mut sum = [0u64; 3];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(|t| t.ok()) {
            let v = schedstat(t.path().join("schedstat"));
            for i in 0..3 {
                sum[i] += v[i];
            }
        }
    }
    sum
}

/// CPU time of every thread of `pid` (`self` for this process), minus the
/// thread `except`.
fn process_cpu_ns(pid: &str, except: Option<i32>) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| except.is_none_or(|tid| t.file_name().to_str() != Some(&tid.to_string())))
        .map(|t| schedstat_ns(t.path().join("schedstat")))
        .sum()
}

/// The target's resident memory in KiB: all of it (`VmRSS`, what the
/// issue's figures count) and its anonymous part (`RssAnon`: heap, stacks,
/// buffers, without the code and read-only data the first calls page in
/// from the binary, which is a one-off whatever the number of calls).
#[derive(Clone, Copy)]
struct Rss {
    total: u64,
    anon: u64,
}

fn rss_kib(pid: u32) -> Option<Rss> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Rss {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
    })
}

/// CPU time of every thread on the machine, by (pid, tid). `/proc/stat`
/// is no use for this: its busy time is sampled at the tick, and a relay
/// that wakes 10,000 times a second for a few µs is mostly missed in a VM.
fn all_tasks_cpu_ns() -> HashMap<(u32, u32), u64> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.filter_map(|p| p.ok()) {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.filter_map(|t| t.ok()) {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                out.insert((pid, tid), schedstat_ns(t.path().join("schedstat")));
            }
        }
    }
    out
}

/// Steal time of all CPUs (ns): what the hypervisor took from this VM's
/// CPUs while they had work. A guest cannot see or schedule around it, so a
/// relay thread whose CPU is stolen for a millisecond delays every packet
/// queued behind it: the tail latency of a VM under load is partly the
/// host's, and this says how much of it was there.
fn steal_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("cpu "))?;
            // cpu user nice system idle iowait irq softirq steal ...
            line.split_whitespace().nth(8)?.parse::<u64>().ok()
        })
        .map_or(0, |ticks| ticks * 1_000_000_000 / hz)
}

fn bind_udp(ip: IpAddr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind((ip, 0))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn set_timestamping(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a c_int option value we own.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            &on as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram with the kernel's receive time (ns, CLOCK_REALTIME) if the
/// socket has `SO_TIMESTAMPNS`.
fn recv_timestamped(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<i64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; we point it at our iovec and
    // control buffer, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg on our socket with the msghdr set up above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = None;
    // SAFETY: walking the control messages the kernel wrote into `control`,
    // with the CMSG_* macros bounded by msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SCM_TIMESTAMPNS {
                let t: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                ts = Some(t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, ts))
}

struct Epoll(RawFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        // Level-triggered: one receive per event; a socket with more data is
        // reported again by the next wait.
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: registering our own fd with our own epoll instance.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` (ns precision); returns the number of events.
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the events buffer is ours and its length is passed.
        let n = unsafe {
            libc::epoll_pwait2(
                self.0,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                &ts,
                std::ptr::null(),
            )
        };
        n.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: closing the epoll fd we created.
        unsafe { libc::close(self.0) };
    }
}

/// Waits until one of `fds` is readable or `timeout` passed.
fn poll_readable(fds: &[RawFd], timeout: Duration) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(1000) as libc::c_int;
    // SAFETY: poll over our own pollfd array.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
}

// --- phones -------------------------------------------------------------------

/// One side of one call: its RTP socket and where it sends.
struct Phone {
    sock: UdpSocket,
    dest: Option<SocketAddr>,
    seq: u16,
    sent: u64,
    received: u64,
    /// SRTP legs: the key this phone encrypts with (announced in its SDP).
    key: Option<KeyMaterial>,
    /// SRTP legs, once the hop's key is known: protects with `key`,
    /// unprotects with the hop's.
    crypto: Option<LegCrypto>,
    /// Datagrams that failed to authenticate/decrypt (counted as lost).
    srtp_failed: u64,
}

impl Phone {
    fn port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// This phone's SDP; `tag` is the `a=crypto` tag to use (offer: 1;
    /// answer: the tag the phone picked from the offer).
    fn sdp(&self, ip: Ipv4Addr, id: usize, tag: u32) -> String {
        let crypto = self.key.as_ref().map(|k| CryptoAttr {
            tag,
            suite: SUITE,
            key: k.clone(),
        });
        phone_sdp(ip, self.port(), id, crypto.as_ref())
    }

    /// Keys the phone's SRTP from the hop's `a=crypto` (what the hop
    /// encrypts towards this phone with). Plain phones ignore it.
    fn key_from(&mut self, hop: &CryptoAttr) -> std::result::Result<(), String> {
        let Some(ours) = self.key.clone() else {
            return Ok(());
        };
        let c = LegCrypto::new(&LegKeys {
            suite: hop.suite,
            peer: hop.key.clone(),
            ours,
        })
        .map_err(|e| format!("SRTP context: {e}"))?;
        self.crypto = Some(c);
        Ok(())
    }
}

/// The SDP a phone offers or answers with: RTP/SAVP with one `a=crypto`
/// when it has a key, plain RTP/AVP otherwise.
fn phone_sdp(ip: Ipv4Addr, port: u16, id: usize, crypto: Option<&CryptoAttr>) -> String {
    let (proto, attr) = match crypto {
        Some(c) => ("RTP/SAVP", format!("a=crypto:{}\r\n", c.to_value())),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=ml {id} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n{attr}"
    )
}

/// The first `a=crypto` of an SDP with the phones' suite (tag and the
/// sender's key), skipping lines that do not parse (other suites, MKIs).
fn sdp_crypto(sdp: &str) -> Option<CryptoAttr> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=crypto:"))
        .filter_map(|v| CryptoAttr::parse(v).ok())
        .find(|c| c.suite == SUITE)
}

/// The RTP address an SDP names: the first audio m= line's port and the
/// c= that applies to it (media-level if present, else session-level).
fn sdp_rtp(sdp: &str) -> Option<SocketAddr> {
    let mut session_c = None;
    let mut media_c = None;
    let mut port = None;
    let mut in_audio = false;
    for l in sdp.lines() {
        let l = l.trim_end();
        if let Some(rest) = l.strip_prefix("m=") {
            if port.is_some() {
                break;
            }
            in_audio = rest.starts_with("audio ");
            if in_audio {
                port = rest.split(' ').nth(1).and_then(|p| p.parse::<u16>().ok());
            }
        } else if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            let ip = c.split('/').next()?.trim().parse::<Ipv4Addr>().ok()?;
            if in_audio {
                media_c = Some(ip);
            } else if port.is_none() {
                session_c = Some(ip);
            }
        }
    }
    let ip = media_c.or(session_c)?;
    Some(SocketAddr::new(IpAddr::V4(ip), port?))
}

// --- signalling ---------------------------------------------------------------

/// How calls are set up and torn down on a target.
trait Signalling {
    fn fds(&self) -> Vec<RawFd>;
    /// Starts call `i` (phones `2i` and `2i + 1`).
    fn start_call(&mut self, i: usize, phones: &mut [Phone], now: Instant);
    fn end_call(&mut self, i: usize, now: Instant);
    /// Reads everything pending on the signalling sockets.
    fn on_readable(&mut self, phones: &mut [Phone], now: Instant);
    /// Retransmissions and give-ups.
    fn on_timer(&mut self, now: Instant);
    /// `Some(true)`: up; `Some(false)`: failed; `None`: in progress.
    fn setup_result(&self, i: usize) -> Option<bool>;
    /// Teardown finished (or given up) for call `i`.
    fn ended(&self, i: usize) -> bool;
    /// Failures so far, with a few reasons.
    fn problems(&self) -> (u64, Vec<String>);
}

/// No signalling: the relay's addresses are known in advance.
struct Fixed {
    dests: Vec<(SocketAddr, SocketAddr)>,
}

impl Signalling for Fixed {
    fn fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    fn start_call(&mut self, i: usize, phones: &mut [Phone], _now: Instant) {
        phones[2 * i].dest = Some(self.dests[i].0);
        phones[2 * i + 1].dest = Some(self.dests[i].1);
    }
    fn end_call(&mut self, _i: usize, _now: Instant) {}
    fn on_readable(&mut self, _phones: &mut [Phone], _now: Instant) {}
    fn on_timer(&mut self, _now: Instant) {}
    fn setup_result(&self, _i: usize) -> Option<bool> {
        Some(true)
    }
    fn ended(&self, _i: usize) -> bool {
        true
    }
    fn problems(&self) -> (u64, Vec<String>) {
        (0, Vec::new())
    }
}

// --- SIP (trunkd) ---------------------------------------------------------------

/// The value of the first header named `names` (long and compact form).
fn header<'a>(msg: &'a str, names: &[&str]) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim();
        names
            .iter()
            .any(|w| n.eq_ignore_ascii_case(w))
            .then(|| v.trim())
    })
}

fn header_lines<'a>(msg: &'a str, names: &[&str]) -> Vec<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter(|l| {
            l.split_once(':').is_some_and(|(n, _)| {
                let n = n.trim();
                names.iter().any(|w| n.eq_ignore_ascii_case(w))
            })
        })
        .collect()
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn cseq_method(msg: &str) -> Option<&str> {
    header(msg, &["cseq"])?.split_whitespace().nth(1)
}

/// The URI inside a Contact header value (`<sip:...>` or bare).
fn contact_uri(v: &str) -> String {
    if let (Some(a), Some(b)) = (v.find('<'), v.find('>')) {
        if a < b {
            return v[a + 1..b].to_owned();
        }
    }
    v.split(';').next().unwrap_or(v).trim().to_owned()
}

/// Call index from the dialled number `+1206555NNNN` in a Request-URI.
fn call_index_from_ruri(msg: &str) -> Option<usize> {
    let uri = msg.split(' ').nth(1)?;
    let user = uri.strip_prefix("sip:")?.split('@').next()?;
    let digits: String = user.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.get(digits.len().checked_sub(4)?..)?.parse().ok()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SipState {
    Idle,
    /// INVITE sent, nothing back yet.
    Calling,
    /// A provisional response came.
    Proceeding,
    Up,
    Failed,
    /// BYE sent.
    Ending,
    Ended,
}

struct SipCall {
    state: SipState,
    /// Last (re)transmission of the INVITE or BYE.
    sent_at: Instant,
    started_at: Instant,
    tries: u32,
    last_request: String,
    /// From the 200: To (with tag), Contact URI, Route set.
    to: String,
    remote_target: String,
    routes: Vec<String>,
    ack: String,
}

/// The callee's side of one B-leg dialog (keyed by trunkd's Call-ID).
struct CalleeDialog {
    ok: String,
    to: SocketAddr,
    acked: bool,
    sent_at: Instant,
    tries: u32,
}

struct SipUa {
    caller: UdpSocket,
    callee: UdpSocket,
    trunkd: SocketAddr,
    caller_ip: Ipv4Addr,
    callee_ip: Ipv4Addr,
    calls: Vec<SipCall>,
    callee_dialogs: HashMap<String, CalleeDialog>,
    tag: String,
    buf: Vec<u8>,
    failures: u64,
    reasons: Vec<String>,
}

impl SipUa {
    fn new(
        trunkd: SocketAddr,
        callee_sip: SocketAddr,
        caller_ip: Ipv4Addr,
        n: usize,
    ) -> Result<SipUa> {
        let IpAddr::V4(callee_ip) = callee_sip.ip() else {
            return Err("--callee-sip must be IPv4".into());
        };
        let caller = bind_udp(IpAddr::V4(caller_ip))?;
        let callee = UdpSocket::bind(callee_sip)
            .map_err(|e| format!("binding the callee's SIP socket {callee_sip}: {e}"))?;
        callee.set_nonblocking(true)?;
        let now = Instant::now();
        let calls = (0..n)
            .map(|_| SipCall {
                state: SipState::Idle,
                sent_at: now,
                started_at: now,
                tries: 0,
                last_request: String::new(),
                to: String::new(),
                remote_target: String::new(),
                routes: Vec::new(),
                ack: String::new(),
            })
            .collect();
        Ok(SipUa {
            caller,
            callee,
            trunkd,
            caller_ip,
            callee_ip,
            calls,
            callee_dialogs: HashMap::new(),
            tag: format!("ml{}", std::process::id()),
            buf: vec![0u8; 65536],
            failures: 0,
            reasons: Vec::new(),
        })
    }

    fn caller_addr(&self) -> SocketAddr {
        self.caller.local_addr().expect("bound socket")
    }

    fn call_id(&self, i: usize) -> String {
        format!("ml-{}-{i}@{}", self.tag, self.caller_ip)
    }

    /// Branch parameter stem of call `i`'s transactions (a token: no `@`).
    fn branch(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    fn fail(&mut self, i: usize, why: String) {
        if let Some(c) = self.calls.get_mut(i) {
            c.state = SipState::Failed;
        }
        self.failures += 1;
        if self.reasons.len() < 5 {
            self.reasons.push(format!("call {i}: {why}"));
        }
    }

    fn send_caller(&self, text: &str) {
        let _ = self.caller.send_to(text.as_bytes(), self.trunkd);
    }

    fn dialled(i: usize) -> String {
        format!("+1206555{i:04}")
    }

    fn caller_from(&self, i: usize) -> String {
        format!("<sip:+12065550100@{}>;tag={}-{i}", self.caller_ip, self.tag)
    }

    fn ack_for(&self, i: usize) -> String {
        let c = &self.calls[i];
        let mut routes = String::new();
        for r in &c.routes {
            routes.push_str(&format!("Route: {r}\r\n"));
        }
        format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{br}-ack;rport\r\nMax-Forwards: 70\r\n{routes}\
             From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            uri = c.remote_target,
            me = self.caller_addr(),
            from = self.caller_from(i),
            to = c.to,
            cid = self.call_id(i),
            br = self.branch(i),
        )
    }

    fn on_caller_msg(&mut self, text: &str, phones: &mut [Phone]) {
        let Some(cid) = header(text, &["call-id", "i"]) else {
            return;
        };
        let Some(i) = cid
            .strip_prefix(&format!("ml-{}-", self.tag))
            .and_then(|r| r.split('@').next())
            .and_then(|r| r.parse::<usize>().ok())
            .filter(|&i| i < self.calls.len())
        else {
            return;
        };
        if status(text).is_none() {
            // A request from trunkd to the caller (BYE on its own, OPTIONS…).
            let method = text.split(' ').next().unwrap_or("");
            if method != "ACK" {
                let r = response(text, "200 OK", &self.tag, self.caller_addr(), None);
                let _ = self.caller.send_to(r.as_bytes(), self.trunkd);
            }
            if method == "BYE" && self.calls[i].state == SipState::Up {
                self.fail(i, "trunkd sent BYE during the load".into());
            }
            return;
        }
        let code = status(text).unwrap_or(0);
        match cseq_method(text) {
            Some("INVITE") => {
                let state = self.calls[i].state;
                let trying = matches!(state, SipState::Calling | SipState::Proceeding);
                match code {
                    100..=199 if state == SipState::Calling => {
                        self.calls[i].state = SipState::Proceeding;
                    }
                    100..=199 => {}
                    200..=299 if trying => {
                        let Some(dest) = sdp_rtp(body(text)) else {
                            self.fail(i, "200 without usable SDP".into());
                            return;
                        };
                        phones[2 * i].dest = Some(dest);
                        if phones[2 * i].key.is_some() {
                            // trunkd answers an SRTP offer in kind, with its own key.
                            let keyed = match sdp_crypto(body(text)) {
                                Some(c) => phones[2 * i].key_from(&c),
                                None => {
                                    Err("200 without an AES_CM_128_HMAC_SHA1_80 a=crypto".into())
                                }
                            };
                            if let Err(e) = keyed {
                                self.fail(i, e);
                                return;
                            }
                        }
                        let mut rr: Vec<String> = header_lines(text, &["record-route"])
                            .iter()
                            .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
                            .collect();
                        rr.reverse();
                        let c = &mut self.calls[i];
                        c.to = header(text, &["to", "t"]).unwrap_or("").to_owned();
                        c.remote_target = header(text, &["contact", "m"])
                            .map(contact_uri)
                            .unwrap_or_else(|| format!("sip:{}", self.trunkd));
                        c.routes = rr;
                        c.state = SipState::Up;
                        let ack = self.ack_for(i);
                        self.send_caller(&ack);
                        self.calls[i].ack = ack;
                    }
                    200..=299 => {
                        // A retransmitted 200: our ACK was lost.
                        let ack = self.calls[i].ack.clone();
                        if !ack.is_empty() {
                            self.send_caller(&ack);
                        }
                    }
                    300.. => {
                        // ACK for a non-2xx final: same branch as the INVITE.
                        let to = header(text, &["to", "t"]).unwrap_or("").to_owned();
                        let ack = format!(
                            "ACK sip:{user}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{br}-inv;rport\r\n\
                             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\n\
                             Content-Length: 0\r\n\r\n",
                            user = Self::dialled(i),
                            t = self.trunkd,
                            me = self.caller_addr(),
                            from = self.caller_from(i),
                            cid = self.call_id(i),
                            br = self.branch(i),
                        );
                        self.send_caller(&ack);
                        if trying {
                            let line = text.lines().next().unwrap_or("").to_owned();
                            self.fail(i, line);
                        }
                    }
                    _ => {}
                }
            }
            Some("BYE") if code >= 200 => {
                let c = &mut self.calls[i];
                if c.state == SipState::Ending {
                    c.state = SipState::Ended;
                }
            }
            _ => {}
        }
    }

    fn on_callee_msg(&mut self, text: &str, from: SocketAddr, phones: &mut [Phone], now: Instant) {
        if status(text).is_some() {
            return;
        }
        let method = text.split(' ').next().unwrap_or("").to_owned();
        let cid = header(text, &["call-id", "i"]).unwrap_or("").to_owned();
        let me = self.callee.local_addr().expect("bound socket");
        match method.as_str() {
            "INVITE" => {
                if let Some(d) = self.callee_dialogs.get(&cid) {
                    // trunkd retransmitted: answer again.
                    let _ = self.callee.send_to(d.ok.as_bytes(), d.to);
                    return;
                }
                let Some(i) = call_index_from_ruri(text).filter(|&i| i < self.calls.len()) else {
                    let r = response(text, "404 Not Found", &self.tag, me, None);
                    let _ = self.callee.send_to(r.as_bytes(), from);
                    return;
                };
                let Some(dest) = sdp_rtp(body(text)) else {
                    let r = response(text, "488 Not Acceptable Here", &self.tag, me, None);
                    let _ = self.callee.send_to(r.as_bytes(), from);
                    self.fail(i, "INVITE at the callee without usable SDP".into());
                    return;
                };
                phones[2 * i + 1].dest = Some(dest);
                // An SRTP callee takes the offer's AES_CM_128_HMAC_SHA1_80 line
                // (its tag, trunkd's key for it) and answers with its own key.
                let mut tag = 1;
                if phones[2 * i + 1].key.is_some() {
                    let keyed = match sdp_crypto(body(text)) {
                        Some(c) => {
                            tag = c.tag;
                            phones[2 * i + 1].key_from(&c)
                        }
                        None => Err("trunkd's INVITE has no AES_CM_128_HMAC_SHA1_80 a=crypto \
                                     (is the carrier's srtp = \"offer\"?)"
                            .into()),
                    };
                    if let Err(e) = keyed {
                        let r = response(text, "488 Not Acceptable Here", &self.tag, me, None);
                        let _ = self.callee.send_to(r.as_bytes(), from);
                        self.fail(i, e);
                        return;
                    }
                }
                let sdp = phones[2 * i + 1].sdp(self.callee_ip, 2 * i + 1, tag);
                let ok = response(
                    text,
                    "200 OK",
                    &format!("{}-b{i}", self.tag),
                    me,
                    Some(&sdp),
                );
                let _ = self.callee.send_to(ok.as_bytes(), from);
                self.callee_dialogs.insert(
                    cid,
                    CalleeDialog {
                        ok,
                        to: from,
                        acked: false,
                        sent_at: now,
                        tries: 0,
                    },
                );
            }
            "ACK" => {
                if let Some(d) = self.callee_dialogs.get_mut(&cid) {
                    d.acked = true;
                }
            }
            _ => {
                // BYE, OPTIONS, re-INVITE refreshes, CANCEL: 200.
                let r = response(text, "200 OK", &self.tag, me, None);
                let _ = self.callee.send_to(r.as_bytes(), from);
            }
        }
    }
}

/// A response to `req`, copying Via/From/Call-ID/CSeq and tagging To.
fn response(req: &str, status: &str, tag: &str, contact: SocketAddr, body: Option<&str>) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    let head = req.split("\r\n\r\n").next().unwrap_or("");
    for l in head.split("\r\n").skip(1) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(l);
                out.push_str("\r\n");
            }
            "to" | "t" if !l.contains("tag=") => out.push_str(&format!("{l};tag={tag}\r\n")),
            "to" | "t" => {
                out.push_str(l);
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str(&format!("Contact: <sip:ml@{contact}>\r\n"));
    match body {
        Some(b) => out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out
}

impl Signalling for SipUa {
    fn fds(&self) -> Vec<RawFd> {
        vec![self.caller.as_raw_fd(), self.callee.as_raw_fd()]
    }

    fn start_call(&mut self, i: usize, phones: &mut [Phone], now: Instant) {
        let sdp = phones[2 * i].sdp(self.caller_ip, 2 * i, 1);
        let invite = format!(
            "INVITE sip:{user}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{br}-inv;rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:{user}@{t}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:ml@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            user = Self::dialled(i),
            t = self.trunkd,
            me = self.caller_addr(),
            from = self.caller_from(i),
            cid = self.call_id(i),
            br = self.branch(i),
            len = sdp.len(),
        );
        self.send_caller(&invite);
        let c = &mut self.calls[i];
        c.state = SipState::Calling;
        c.sent_at = now;
        c.started_at = now;
        c.tries = 0;
        c.last_request = invite;
    }

    fn end_call(&mut self, i: usize, now: Instant) {
        if self.calls[i].state != SipState::Up {
            return;
        }
        let c = &self.calls[i];
        let mut routes = String::new();
        for r in &c.routes {
            routes.push_str(&format!("Route: {r}\r\n"));
        }
        let bye = format!(
            "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{br}-bye;rport\r\nMax-Forwards: 70\r\n{routes}\
             From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            uri = c.remote_target,
            me = self.caller_addr(),
            from = self.caller_from(i),
            to = c.to,
            cid = self.call_id(i),
            br = self.branch(i),
        );
        self.send_caller(&bye);
        let c = &mut self.calls[i];
        c.state = SipState::Ending;
        c.sent_at = now;
        c.started_at = now;
        c.tries = 0;
        c.last_request = bye;
    }

    fn on_readable(&mut self, phones: &mut [Phone], now: Instant) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Ok((n, _)) = self.caller.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.on_caller_msg(&text, phones);
        }
        while let Ok((n, from)) = self.callee.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.on_callee_msg(&text, from, phones, now);
        }
        self.buf = buf;
    }

    fn on_timer(&mut self, now: Instant) {
        for i in 0..self.calls.len() {
            let c = &self.calls[i];
            let age = now.saturating_duration_since(c.started_at);
            match c.state {
                SipState::Calling | SipState::Ending => {
                    let limit = if c.state == SipState::Calling { 10 } else { 5 };
                    if age > Duration::from_secs(limit) {
                        if c.state == SipState::Ending {
                            self.calls[i].state = SipState::Ended;
                            self.failures += 1;
                            if self.reasons.len() < 5 {
                                self.reasons.push(format!("call {i}: no answer to BYE"));
                            }
                        } else {
                            self.fail(i, "no answer to INVITE".into());
                        }
                    } else if now.saturating_duration_since(c.sent_at)
                        >= (T1 * (1 << c.tries.min(3)))
                    {
                        let req = c.last_request.clone();
                        self.send_caller(&req);
                        let c = &mut self.calls[i];
                        c.sent_at = now;
                        c.tries += 1;
                    }
                }
                SipState::Proceeding if age > Duration::from_secs(10) => {
                    self.fail(i, "no final answer to INVITE".into());
                }
                _ => {}
            }
        }
        for d in self.callee_dialogs.values_mut() {
            if !d.acked
                && d.tries < 6
                && now.saturating_duration_since(d.sent_at) >= T1 * (1 << d.tries.min(3))
            {
                let _ = self.callee.send_to(d.ok.as_bytes(), d.to);
                d.sent_at = now;
                d.tries += 1;
            }
        }
    }

    fn setup_result(&self, i: usize) -> Option<bool> {
        match self.calls[i].state {
            SipState::Up => Some(true),
            SipState::Failed => Some(false),
            _ => None,
        }
    }

    fn ended(&self, i: usize) -> bool {
        !matches!(self.calls[i].state, SipState::Up | SipState::Ending)
    }

    fn problems(&self) -> (u64, Vec<String>) {
        (self.failures, self.reasons.clone())
    }
}

// --- rtpengine ng ---------------------------------------------------------------

/// A bencode value (BEP 3): what the ng protocol speaks.
#[derive(Debug, Clone, PartialEq)]
enum Bv {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<Bv>),
    /// Keys in insertion order (rtpengine does not sort them).
    Dict(Vec<(Vec<u8>, Bv)>),
}

impl Bv {
    fn s(v: &str) -> Bv {
        Bv::Str(v.as_bytes().to_vec())
    }

    fn dict(pairs: &[(&str, Bv)]) -> Bv {
        Bv::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&Bv> {
        match self {
            Bv::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Bv::Str(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bv::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bv::Str(s) => {
                out.extend_from_slice(format!("{}:", s.len()).as_bytes());
                out.extend_from_slice(s);
            }
            Bv::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Bv::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    out.extend_from_slice(format!("{}:", k.len()).as_bytes());
                    out.extend_from_slice(k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value at the start of `b`; returns it and its length.
    fn decode(b: &[u8]) -> Option<(Bv, usize)> {
        match *b.first()? {
            b'i' => {
                let end = b.iter().position(|&c| c == b'e')?;
                let v = std::str::from_utf8(&b[1..end]).ok()?.parse().ok()?;
                Some((Bv::Int(v), end + 1))
            }
            b'l' => {
                let mut at = 1;
                let mut items = Vec::new();
                while *b.get(at)? != b'e' {
                    let (v, n) = Bv::decode(&b[at..])?;
                    items.push(v);
                    at += n;
                }
                Some((Bv::List(items), at + 1))
            }
            b'd' => {
                let mut at = 1;
                let mut items = Vec::new();
                while *b.get(at)? != b'e' {
                    let (Bv::Str(k), n) = Bv::decode(&b[at..])? else {
                        return None;
                    };
                    at += n;
                    let (v, n) = Bv::decode(&b[at..])?;
                    at += n;
                    items.push((k, v));
                }
                Some((Bv::Dict(items), at + 1))
            }
            b'0'..=b'9' => {
                let colon = b.iter().position(|&c| c == b':')?;
                let len: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
                let s = b.get(colon + 1..colon + 1 + len)?.to_vec();
                Some((Bv::Str(s), colon + 1 + len))
            }
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NgState {
    Idle,
    Offering,
    Answering,
    Up,
    Failed,
    Deleting,
    Deleted,
}

struct NgCall {
    state: NgState,
    sent_at: Instant,
    started_at: Instant,
    tries: u32,
    /// The request in flight (resent with the same cookie: rtpengine
    /// answers a repeated cookie from its cache).
    request: Vec<u8>,
    callee_sdp: String,
}

struct NgClient {
    media: MediaMode,
    sock: UdpSocket,
    addr: SocketAddr,
    caller_ip: Ipv4Addr,
    callee_ip: Ipv4Addr,
    calls: Vec<NgCall>,
    tag: String,
    buf: Vec<u8>,
    failures: u64,
    reasons: Vec<String>,
}

impl NgClient {
    fn new(addr: SocketAddr, caller_ip: Ipv4Addr, n: usize, media: MediaMode) -> Result<NgClient> {
        let sock = bind_udp(addr.ip())?;
        let now = Instant::now();
        Ok(NgClient {
            media,
            sock,
            addr,
            caller_ip,
            callee_ip: Ipv4Addr::new(127, 0, 0, 2),
            calls: (0..n)
                .map(|_| NgCall {
                    state: NgState::Idle,
                    sent_at: now,
                    started_at: now,
                    tries: 0,
                    request: Vec::new(),
                    callee_sdp: String::new(),
                })
                .collect(),
            tag: format!("ml{}", std::process::id()),
            buf: vec![0u8; 65536],
            failures: 0,
            reasons: Vec::new(),
        })
    }

    fn call_id(&self, i: usize) -> String {
        format!("ml-{}-{i}", self.tag)
    }

    fn send(&mut self, i: usize, kind: char, cmd: Bv, now: Instant) {
        let mut out = format!("{}-{i}-{kind} ", self.tag).into_bytes();
        cmd.encode(&mut out);
        let _ = self.sock.send_to(&out, self.addr);
        let c = &mut self.calls[i];
        c.request = out;
        c.sent_at = now;
        c.tries = 0;
    }

    fn fail(&mut self, i: usize, why: String) {
        self.calls[i].state = NgState::Failed;
        self.failures += 1;
        if self.reasons.len() < 5 {
            self.reasons.push(format!("call {i}: {why}"));
        }
    }

    fn on_reply(&mut self, data: &[u8], phones: &mut [Phone], now: Instant) {
        let Some(sp) = data.iter().position(|&c| c == b' ') else {
            return;
        };
        let cookie = String::from_utf8_lossy(&data[..sp]).into_owned();
        let mut parts = cookie.rsplitn(3, '-');
        let (Some(kind), Some(i)) = (parts.next(), parts.next()) else {
            return;
        };
        let Some(i) = i.parse::<usize>().ok().filter(|&i| i < self.calls.len()) else {
            return;
        };
        let Some((reply, _)) = Bv::decode(&data[sp + 1..]) else {
            self.fail(i, "undecodable ng reply".into());
            return;
        };
        let result = reply.get("result").and_then(Bv::as_str).unwrap_or("");
        if result != "ok" {
            let why = reply
                .get("error-reason")
                .and_then(Bv::as_str)
                .unwrap_or(result)
                .to_owned();
            if matches!(self.calls[i].state, NgState::Offering | NgState::Answering) {
                self.fail(i, format!("{kind}: {why}"));
            } else if self.calls[i].state == NgState::Deleting {
                self.calls[i].state = NgState::Deleted;
            }
            return;
        }
        let sdp = reply.get("sdp").and_then(Bv::as_str);
        match (kind, self.calls[i].state) {
            ("o", NgState::Offering) => {
                // The offer as the callee gets it: where the callee sends.
                let Some(dest) = sdp.and_then(sdp_rtp) else {
                    self.fail(i, "offer reply without usable SDP".into());
                    return;
                };
                phones[2 * i + 1].dest = Some(dest);
                // As with trunkd: the SRTP callee takes rtpengine's
                // AES_CM_128_HMAC_SHA1_80 line and answers with its own key.
                let mut tag = 1;
                if phones[2 * i + 1].key.is_some() {
                    let keyed = match sdp.and_then(sdp_crypto) {
                        Some(c) => {
                            tag = c.tag;
                            phones[2 * i + 1].key_from(&c)
                        }
                        None => {
                            Err("offer reply without an AES_CM_128_HMAC_SHA1_80 a=crypto".into())
                        }
                    };
                    if let Err(e) = keyed {
                        self.fail(i, e);
                        return;
                    }
                }
                let callee_sdp = phones[2 * i + 1].sdp(self.callee_ip, 2 * i + 1, tag);
                let cmd = Bv::dict(&[
                    ("command", Bv::s("answer")),
                    ("call-id", Bv::s(&self.call_id(i))),
                    ("from-tag", Bv::s(&format!("f{i}"))),
                    ("to-tag", Bv::s(&format!("t{i}"))),
                    ("sdp", Bv::s(&callee_sdp)),
                ]);
                self.calls[i].callee_sdp = callee_sdp;
                self.calls[i].state = NgState::Answering;
                self.send(i, 'a', cmd, now);
            }
            ("a", NgState::Answering) => {
                let Some(dest) = sdp.and_then(sdp_rtp) else {
                    self.fail(i, "answer reply without usable SDP".into());
                    return;
                };
                phones[2 * i].dest = Some(dest);
                if phones[2 * i].key.is_some() {
                    let keyed = match sdp.and_then(sdp_crypto) {
                        Some(c) => phones[2 * i].key_from(&c),
                        None => {
                            Err("answer reply without an AES_CM_128_HMAC_SHA1_80 a=crypto".into())
                        }
                    };
                    if let Err(e) = keyed {
                        self.fail(i, e);
                        return;
                    }
                }
                self.calls[i].state = NgState::Up;
            }
            ("d", NgState::Deleting) => self.calls[i].state = NgState::Deleted,
            _ => {}
        }
    }
}

impl Signalling for NgClient {
    fn fds(&self) -> Vec<RawFd> {
        vec![self.sock.as_raw_fd()]
    }

    fn start_call(&mut self, i: usize, phones: &mut [Phone], now: Instant) {
        let sdp = phones[2 * i].sdp(self.caller_ip, 2 * i, 1);
        let mut pairs = vec![
            ("command", Bv::s("offer")),
            ("call-id", Bv::s(&self.call_id(i))),
            ("from-tag", Bv::s(&format!("f{i}"))),
            ("sdp", Bv::s(&sdp)),
        ];
        match self.media {
            MediaMode::Rtp => {}
            // rtpengine keeps the offer's protocol unless told; say it
            // anyway, and no DTLS: SDES only, as the phones speak it.
            MediaMode::Srtp => {
                pairs.push(("transport-protocol", Bv::s("RTP/SAVP")));
                pairs.push(("DTLS", Bv::s("off")));
            }
            MediaMode::SrtpRtp => {
                pairs.push(("transport-protocol", Bv::s("RTP/AVP")));
                pairs.push(("DTLS", Bv::s("off")));
            }
        }
        let cmd = Bv::dict(&pairs);
        self.calls[i].state = NgState::Offering;
        self.calls[i].started_at = now;
        self.send(i, 'o', cmd, now);
    }

    fn end_call(&mut self, i: usize, now: Instant) {
        if self.calls[i].state != NgState::Up {
            return;
        }
        let cmd = Bv::dict(&[
            ("command", Bv::s("delete")),
            ("call-id", Bv::s(&self.call_id(i))),
            ("from-tag", Bv::s(&format!("f{i}"))),
        ]);
        self.calls[i].state = NgState::Deleting;
        self.calls[i].started_at = now;
        self.send(i, 'd', cmd, now);
    }

    fn on_readable(&mut self, phones: &mut [Phone], now: Instant) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
            self.on_reply(&buf[..n], phones, now);
        }
        self.buf = buf;
    }

    fn on_timer(&mut self, now: Instant) {
        for i in 0..self.calls.len() {
            let c = &self.calls[i];
            if !matches!(
                c.state,
                NgState::Offering | NgState::Answering | NgState::Deleting
            ) {
                continue;
            }
            if now.saturating_duration_since(c.started_at) > Duration::from_secs(5) {
                if c.state == NgState::Deleting {
                    self.calls[i].state = NgState::Deleted;
                    self.failures += 1;
                } else {
                    self.fail(i, "no ng reply".into());
                }
            } else if now.saturating_duration_since(c.sent_at) >= Duration::from_secs(1) {
                let _ = self.sock.send_to(&c.request, self.addr);
                let c = &mut self.calls[i];
                c.sent_at = now;
                c.tries += 1;
            }
        }
    }

    fn setup_result(&self, i: usize) -> Option<bool> {
        match self.calls[i].state {
            NgState::Up => Some(true),
            NgState::Failed => Some(false),
            _ => None,
        }
    }

    fn ended(&self, i: usize) -> bool {
        !matches!(self.calls[i].state, NgState::Up | NgState::Deleting)
    }

    fn problems(&self) -> (u64, Vec<String>) {
        (self.failures, self.reasons.clone())
    }
}

// --- in-process bare relay -------------------------------------------------------

/// Starts `n` bare relays on a current-thread runtime on their own thread;
/// returns each call's (leg A, leg B) addresses and the thread's tid.
fn start_inprocess_bare(n: usize) -> Result<(Vec<(SocketAddr, SocketAddr)>, i32)> {
    let (tx, rx) = std_mpsc::channel();
    std::thread::Builder::new()
        .name("bare-relay".into())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let mut addrs = Vec::with_capacity(n);
                for _ in 0..n {
                    let pair = (|| -> io::Result<_> {
                        let a = bind_udp([127, 0, 0, 1].into())?;
                        let b = bind_udp([127, 0, 0, 1].into())?;
                        Ok((a, b))
                    })();
                    match pair {
                        Ok((a, b)) => {
                            addrs.push((
                                a.local_addr().expect("bound"),
                                b.local_addr().expect("bound"),
                            ));
                            tokio::spawn(trunkd_media::bare_relay(a, b));
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
                let _ = tx.send(Ok((addrs, tid)));
                // Runs until the process exits.
                std::future::pending::<()>().await;
            });
        })?;
    rx.recv()?.map_err(Into::into)
}

// --- the run ----------------------------------------------------------------------

/// Drives setup (`start = true`) or teardown of the calls in `which`, paced
/// at `rate` per second, until each is done or `limit` passed.
fn drive(
    sig: &mut dyn Signalling,
    phones: &mut [Phone],
    which: &[usize],
    rate: f64,
    start: bool,
    limit: Duration,
) {
    let fds = sig.fds();
    let t0 = Instant::now();
    let mut launched = 0;
    loop {
        let now = Instant::now();
        let due = ((now - t0).as_secs_f64() * rate) as usize + 1;
        while launched < which.len() && launched < due {
            let i = which[launched];
            if start {
                sig.start_call(i, phones, now);
            } else {
                sig.end_call(i, now);
            }
            launched += 1;
        }
        sig.on_readable(phones, now);
        sig.on_timer(now);
        let done = launched == which.len()
            && which.iter().all(|&i| {
                if start {
                    sig.setup_result(i).is_some()
                } else {
                    sig.ended(i)
                }
            });
        if done || now - t0 > limit {
            return;
        }
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        } else {
            poll_readable(&fds, Duration::from_millis(2));
        }
    }
}

#[derive(Default, Clone)]
struct Snapshot {
    at: Option<Instant>,
    target_ns: u64,
    /// The target's run-queue wait (ns) and times scheduled in.
    target_wait_ns: u64,
    target_slices: u64,
    gen_ns: u64,
    all: HashMap<(u32, u32), u64>,
    /// Time the host ran something else while this VM's CPUs wanted to
    /// run (`/proc/stat` steal, all CPUs).
    steal_ns: u64,
}

impl Snapshot {
    /// CPU of every thread between `self` and `later` (threads that ended
    /// in between are missed; threads that started are counted whole).
    fn all_delta_ns(&self, later: &Snapshot) -> u64 {
        later
            .all
            .iter()
            .map(|(k, &v)| v.saturating_sub(self.all.get(k).copied().unwrap_or(0)))
            .sum()
    }
}

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("media_load: {e}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<()> {
    let o = parse_opts()?;
    let n = o.calls;
    let callee_ip = match (o.target, o.callee_sip.ip()) {
        (Target::Trunkd, IpAddr::V4(ip)) => ip,
        _ => Ipv4Addr::new(127, 0, 0, 2),
    };
    let rss_before = o.pid.and_then(rss_kib);

    // Phones: 2i is call i's caller, 2i + 1 its callee.
    let mut phones = Vec::with_capacity(2 * n);
    for k in 0..2 * n {
        let ip = if k % 2 == 0 { o.caller_ip } else { callee_ip };
        let sock = bind_udp(IpAddr::V4(ip))
            .map_err(|e| format!("binding a phone socket on {ip}: {e} (is {ip} on lo?)"))?;
        set_timestamping(sock.as_raw_fd())?;
        let key = if o.media.srtp_leg(k % 2 == 1) {
            Some(KeyMaterial::generate(SUITE).map_err(|e| format!("SRTP key: {e}"))?)
        } else {
            None
        };
        phones.push(Phone {
            sock,
            dest: None,
            seq: 0,
            sent: 0,
            received: 0,
            key,
            crypto: None,
            srtp_failed: 0,
        });
    }

    let mut inproc_tid = None;
    let mut sig: Box<dyn Signalling> = match o.target {
        Target::Trunkd => Box::new(SipUa::new(o.sip, o.callee_sip, o.caller_ip, n)?),
        Target::Rtpengine => Box::new(NgClient::new(o.ng, o.caller_ip, n, o.media)?),
        Target::Bare => {
            let dests = match o.relay {
                Some(first) => (0..n)
                    .map(|i| {
                        let p = first.port() + 2 * i as u16;
                        (
                            SocketAddr::new(first.ip(), p),
                            SocketAddr::new(first.ip(), p + 1),
                        )
                    })
                    .collect(),
                None => {
                    let (dests, tid) = start_inprocess_bare(n)?;
                    inproc_tid = Some(tid);
                    dests
                }
            };
            Box::new(Fixed { dests })
        }
        Target::Direct => {
            let dests = (0..n)
                .map(|i| {
                    (
                        phones[2 * i + 1].sock.local_addr().expect("bound"),
                        phones[2 * i].sock.local_addr().expect("bound"),
                    )
                })
                .collect();
            Box::new(Fixed { dests })
        }
    };

    // --- setup
    let all: Vec<usize> = (0..n).collect();
    let t_setup = Instant::now();
    drive(
        sig.as_mut(),
        &mut phones,
        &all,
        o.rate,
        true,
        Duration::from_secs_f64(n as f64 / o.rate + 15.0),
    );
    let setup_s = t_setup.elapsed().as_secs_f64();
    let up: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| sig.setup_result(i) == Some(true))
        .collect();
    let setup_failed = n - up.len();
    eprintln!(
        "media_load: {}: {}/{} calls up in {:.2} s",
        o.target.name(),
        up.len(),
        n,
        setup_s
    );
    if up.is_empty() {
        let (_, reasons) = sig.problems();
        return Err(format!("no call came up: {}", reasons.join("; ")).into());
    }

    // --- epoll over the phones of live calls and the signalling sockets
    let ep = Epoll::new()?;
    for &i in &up {
        for k in [2 * i, 2 * i + 1] {
            ep.add(phones[k].sock.as_raw_fd(), k as u64)?;
        }
    }
    for fd in sig.fds() {
        ep.add(fd, SIG_TOKEN)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = [0u8; 2048];

    // Priming: one packet per phone so latching relays know both sides.
    // SRTP phones protect it too (sequence number 0, the phone's SSRC):
    // an SRTP hop latches only on a packet that authenticates.
    let mut pkt = [0u8; PKT_LEN];
    pkt[0] = 0x80;
    for &i in &up {
        for k in [2 * i, 2 * i + 1] {
            pkt[8..12].copy_from_slice(&(k as u32).to_be_bytes());
            pkt[12..16].copy_from_slice(PRIME);
            let p = &mut phones[k];
            if let Some(d) = p.dest {
                match &mut p.crypto {
                    Some(c) => {
                        if let Ok(wire) = c.protect_rtp(&pkt) {
                            let _ = p.sock.send_to(&wire, d);
                        }
                    }
                    None => {
                        let _ = p.sock.send_to(&pkt, d);
                    }
                }
            }
        }
    }
    let prime_end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < prime_end {
        let nev = ep.wait(&mut events, Duration::from_millis(5));
        for ev in &events[..nev] {
            if ev.u64 == SIG_TOKEN {
                sig.on_readable(&mut phones, Instant::now());
            } else {
                let _ = recv_timestamped(phones[ev.u64 as usize].sock.as_raw_fd(), &mut buf);
            }
        }
    }

    // The send schedule: each phone's offset in the 20 ms period, in slots.
    let m = up.len() as u64;
    let mut schedule: Vec<(u64, usize)> = Vec::with_capacity(2 * up.len());
    for (j, &i) in up.iter().enumerate() {
        let a = (j as u64 * PERIOD_NS / m) / SLOT_NS * SLOT_NS;
        let b = ((j as u64 * PERIOD_NS / m + PERIOD_NS / 2) % PERIOD_NS) / SLOT_NS * SLOT_NS;
        schedule.push((a, 2 * i));
        schedule.push((b, 2 * i + 1));
    }
    schedule.sort_unstable();

    let mut hist = vec![0u32; HIST_US + 1];
    let mut lat_max_us = 0u64;
    let mut misrouted = 0u64;
    let mut window_pkts = 0u64;
    let mut no_kernel_ts = 0u64;
    let mut snap0 = Snapshot::default();
    let mut snap1 = Snapshot::default();
    let mut rss_load = None;
    let target_pid = o.pid.map(|p| p.to_string());
    let snapshot = |at: Instant| {
        let [target_ns, target_wait_ns, target_slices] = match (&target_pid, inproc_tid) {
            (Some(p), _) => process_schedstat(p),
            (None, Some(tid)) => schedstat(format!("/proc/self/task/{tid}/schedstat")),
            (None, None) => [0; 3],
        };
        Snapshot {
            at: Some(at),
            target_ns,
            target_wait_ns,
            target_slices,
            gen_ns: process_cpu_ns("self", inproc_tid),
            all: all_tasks_cpu_ns(),
            steal_ns: steal_ns(),
        }
    };

    // Opened now, not at the window's edges. Non-blocking, so a perf that is
    // not there (no reader) is an error here instead of a hang.
    // perf may still be starting: its FIFO has no reader (ENXIO) until it
    // has opened it, so that is retried for up to 5 s.
    let mut perf_ctl = match &o.perf_ctl {
        Some(path) => {
            let mut tries = 0;
            loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path)
                {
                    Ok(f) => break Some(f),
                    Err(e) if e.raw_os_error() == Some(libc::ENXIO) && tries < 50 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(format!("--perf-ctl {}: {e}", path.display()).into()),
                }
            }
        }
        None => None,
    };
    let mut perf = |cmd: &[u8]| -> Result<()> {
        if let Some(f) = perf_ctl.as_mut() {
            f.write_all(cmd).map_err(|e| format!("--perf-ctl: {e}"))?;
        }
        Ok(())
    };

    pkt[12..16].copy_from_slice(MAGIC);
    let start = Instant::now();
    let win_start = start + Duration::from_secs_f64(o.warmup);
    let win_end = start + Duration::from_secs_f64(o.secs - o.tail);
    let stream_end = start + Duration::from_secs_f64(o.secs);
    let drain_end = stream_end + Duration::from_millis(500);
    let mut base = start;
    let mut next = 0usize;
    let mut in_window = false;
    let mut sending = true;
    loop {
        let now = Instant::now();
        if sending && now >= stream_end {
            sending = false;
        }
        if !sending && now >= drain_end {
            break;
        }
        if sending {
            while base + Duration::from_nanos(schedule[next].0) <= now {
                let k = schedule[next].1;
                let p = &mut phones[k];
                if let Some(d) = p.dest {
                    p.seq = p.seq.wrapping_add(1);
                    pkt[2..4].copy_from_slice(&p.seq.to_be_bytes());
                    pkt[4..8].copy_from_slice(&(u32::from(p.seq) * 160).to_be_bytes());
                    pkt[8..12].copy_from_slice(&(k as u32).to_be_bytes());
                    pkt[16..24].copy_from_slice(&realtime_ns().to_be_bytes());
                    // The send time is read before encryption, so the latency
                    // includes this phone's protect; the receiver's unprotect
                    // comes after the kernel timestamp and is not counted.
                    let ok = match &mut p.crypto {
                        Some(c) => match c.protect_rtp(&pkt) {
                            Ok(wire) => p.sock.send_to(&wire, d).is_ok(),
                            Err(_) => false,
                        },
                        None => p.sock.send_to(&pkt, d).is_ok(),
                    };
                    if ok {
                        p.sent += 1;
                    }
                }
                next += 1;
                if next == schedule.len() {
                    next = 0;
                    base += Duration::from_nanos(PERIOD_NS);
                }
            }
        }
        if !in_window && snap0.at.is_none() && now >= win_start {
            perf(b"enable\n")?;
            snap0 = snapshot(now);
            in_window = true;
        }
        if in_window && now >= win_end {
            snap1 = snapshot(now);
            perf(b"disable\n")?;
            in_window = false;
            rss_load = o.pid.and_then(rss_kib);
        }
        let mut wake = if sending {
            base + Duration::from_nanos(schedule[next].0)
        } else {
            drain_end
        };
        if snap0.at.is_none() {
            wake = wake.min(win_start);
        } else if in_window {
            wake = wake.min(win_end);
        }
        let nev = ep.wait(&mut events, wake.saturating_duration_since(Instant::now()));
        for ev in &events[..nev] {
            if ev.u64 == SIG_TOKEN {
                sig.on_readable(&mut phones, Instant::now());
                continue;
            }
            let k = ev.u64 as usize;
            let Ok((len, kts)) = recv_timestamped(phones[k].sock.as_raw_fd(), &mut buf) else {
                continue;
            };
            // SRTP phones see the payload (and the send time in it) only
            // after unprotect; a datagram that does not authenticate or
            // decrypt is counted and, not being received, lost.
            let decrypted;
            let plain: &[u8] = match &mut phones[k].crypto {
                Some(c) => match c.unprotect_rtp(&buf[..len]) {
                    Ok(p) => {
                        decrypted = p;
                        &decrypted
                    }
                    Err(_) => {
                        phones[k].srtp_failed += 1;
                        continue;
                    }
                },
                None => &buf[..len],
            };
            let buf = plain;
            if buf.len() != PKT_LEN || &buf[12..16] != MAGIC {
                continue;
            }
            let from = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
            if from != k ^ 1 {
                misrouted += 1;
                continue;
            }
            phones[k].received += 1;
            if in_window {
                window_pkts += 1;
                let tx = i64::from_be_bytes(buf[16..24].try_into().expect("8 bytes"));
                let rx = kts.unwrap_or_else(|| {
                    no_kernel_ts += 1;
                    realtime_ns()
                });
                let us = ((rx - tx).max(0) / 1000) as u64;
                lat_max_us = lat_max_us.max(us);
                hist[(us as usize).min(HIST_US)] += 1;
            }
        }
    }

    // --- teardown
    let t_down = Instant::now();
    drive(
        sig.as_mut(),
        &mut phones,
        &up,
        (o.rate * 2.0).max(500.0),
        false,
        Duration::from_secs(15),
    );
    let teardown_s = t_down.elapsed().as_secs_f64();

    // --- report
    let sent: u64 = phones.iter().map(|p| p.sent).sum();
    let received: u64 = phones.iter().map(|p| p.received).sum();
    let lost = sent.saturating_sub(received);
    let srtp_failed: u64 = phones.iter().map(|p| p.srtp_failed).sum();
    let calls_with_loss = up
        .iter()
        .filter(|&&i| {
            phones[2 * i].sent > phones[2 * i + 1].received
                || phones[2 * i + 1].sent > phones[2 * i].received
        })
        .count();
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    let pct = |q: f64| -> f64 {
        if total == 0 {
            return f64::NAN;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0u64;
        for (us, &c) in hist.iter().enumerate() {
            acc += u64::from(c);
            if acc >= want {
                return us as f64;
            }
        }
        HIST_US as f64
    };
    let (window_s, cpu_pct, us_per_pkt, gen_pct, other_pct) = match (snap0.at, snap1.at) {
        (Some(a), Some(b)) => {
            let w = (b - a).as_secs_f64();
            let tgt = (snap1.target_ns - snap0.target_ns) as f64;
            let measured = o.pid.is_some() || inproc_tid.is_some();
            (
                w,
                if measured {
                    tgt / 1e9 / w * 100.0
                } else {
                    f64::NAN
                },
                if measured && window_pkts > 0 {
                    tgt / 1e3 / window_pkts as f64
                } else {
                    f64::NAN
                },
                (snap1.gen_ns - snap0.gen_ns) as f64 / 1e9 / w * 100.0,
                // Everything else that ran: other processes, and kernel
                // threads (ksoftirqd when packet delivery is deferred).
                snap0
                    .all_delta_ns(&snap1)
                    .saturating_sub(snap1.gen_ns - snap0.gen_ns)
                    .saturating_sub(snap1.target_ns - snap0.target_ns) as f64
                    / 1e9
                    / w
                    * 100.0,
            )
        }
        _ => (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN),
    };
    // How often the target was scheduled in per relayed packet (wake-ups:
    // what a relay's cost per packet mostly is, ANCHORS.md), and how long
    // its threads waited for a CPU (% of the window, summed over threads).
    let (wakeups_per_pkt, runq_wait_pct) = match (snap0.at, snap1.at) {
        (Some(_), Some(_)) if window_pkts > 0 && (o.pid.is_some() || inproc_tid.is_some()) => (
            (snap1.target_slices - snap0.target_slices) as f64 / window_pkts as f64,
            (snap1.target_wait_ns - snap0.target_wait_ns) as f64 / 1e9 / window_s * 100.0,
        ),
        _ => (f64::NAN, f64::NAN),
    };
    // The host's steal over the window, in % of one CPU like the others.
    let steal_pct = match (snap0.at, snap1.at) {
        (Some(_), Some(_)) if window_s > 0.0 => {
            snap1.steal_ns.saturating_sub(snap0.steal_ns) as f64 / 1e9 / window_s * 100.0
        }
        _ => f64::NAN,
    };
    let (problems, reasons) = sig.problems();
    let per_call = |f: fn(Rss) -> u64| match (rss_before, rss_load) {
        (Some(a), Some(b)) => (f(b) as f64 - f(a) as f64) / up.len() as f64,
        _ => f64::NAN,
    };
    let rss_per_call = per_call(|r| r.total);
    let anon_per_call = per_call(|r| r.anon);
    let fmt = |v: Option<Rss>| v.map_or("nan".to_owned(), |v| v.total.to_string());
    eprintln!(
        "media_load: {}: {} calls, sent {sent}, received {received}, lost {lost} ({calls_with_loss} calls), \
         misrouted {misrouted}, SRTP failures {srtp_failed} (media {media}); window {window_s:.1} s, {:.0} relayed pkt/s; latency p50 {} / p99 {} / p99.9 {} / max {lat_max_us} µs; \
         target CPU {cpu_pct:.1} %, {us_per_pkt:.2} µs/pkt, {wakeups_per_pkt:.2} wake-ups/pkt, run-queue wait {runq_wait_pct:.1} %; generator CPU {gen_pct:.1} %, other threads {other_pct:.1} %, host steal {steal_pct:.1} %",
        o.target.name(),
        up.len(),
        window_pkts as f64 / window_s,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        media = o.media.name(),
    );
    for r in &reasons {
        eprintln!("media_load: problem: {r}");
    }
    if no_kernel_ts > 0 {
        eprintln!(
            "media_load: {no_kernel_ts} packets without a kernel timestamp (user-space time used)"
        );
    }
    println!(
        "media_load target={} media={} calls={n} up={} setup_failed={setup_failed} signalling_problems={problems} \
         setup_s={setup_s:.2} teardown_s={teardown_s:.2} sent={sent} received={received} lost={lost} \
         calls_with_loss={calls_with_loss} misrouted={misrouted} srtp_failed={srtp_failed} window_s={window_s:.2} window_pkts={window_pkts} \
         pps={:.0} p50_us={} p99_us={} p999_us={} max_us={lat_max_us} cpu_pct={cpu_pct:.2} us_per_pkt={us_per_pkt:.3} \
         wakeups_per_pkt={wakeups_per_pkt:.3} runq_wait_pct={runq_wait_pct:.2} \
         rss0_kib={} rss1_kib={} rss_per_call_kib={rss_per_call:.1} anon_per_call_kib={anon_per_call:.1} gen_cpu_pct={gen_pct:.1} other_cpu_pct={other_pct:.1} steal_pct={steal_pct:.1}",
        o.target.name(),
        o.media.name(),
        up.len(),
        window_pkts as f64 / window_s,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        fmt(rss_before),
        fmt(rss_load),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    // Examples are not tested by `cargo test` unless asked; the pieces worth
    // a test are exercised by `cargo test --example media_load`.
    use super::*;

    #[test]
    fn bencode_round_trip() {
        let v = Bv::dict(&[
            ("command", Bv::s("offer")),
            ("flags", Bv::List(vec![Bv::s("a"), Bv::Int(-3)])),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, b"d7:command5:offer5:flagsl1:ai-3eee");
        assert_eq!(Bv::decode(&out), Some((v, out.len())));
    }

    #[test]
    fn sdp_address() {
        let s = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n";
        assert_eq!(sdp_rtp(s), Some("10.0.0.2:4000".parse().unwrap()));
        let s = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(sdp_rtp(s), Some("10.0.0.1:4000".parse().unwrap()));
    }

    #[test]
    fn srtp_sdp_names_the_key_and_is_picked_by_suite() {
        let key = KeyMaterial::generate(SUITE).unwrap();
        let attr = CryptoAttr {
            tag: 5,
            suite: SUITE,
            key: key.clone(),
        };
        let sdp = phone_sdp(Ipv4Addr::new(127, 0, 0, 2), 4000, 1, Some(&attr));
        assert!(sdp.contains("RTP/SAVP"));
        // Another suite's line first (as trunkd offers six): the phones'
        // suite is found by name, not position.
        let offer = sdp.replace(
            "a=crypto:",
            "a=crypto:1 AEAD_AES_256_GCM inline:garbage\r\na=crypto:",
        );
        let got = sdp_crypto(&offer).unwrap();
        assert_eq!((got.tag, got.key), (5, key));
        assert!(phone_sdp(Ipv4Addr::LOCALHOST, 4000, 1, None).contains("RTP/AVP"));
        assert!(sdp_crypto("m=audio 4000 RTP/AVP 0\r\n").is_none());
    }

    #[test]
    fn call_index() {
        let m = "INVITE sip:+12065550042@127.0.0.2:5080 SIP/2.0\r\n\r\n";
        assert_eq!(call_index_from_ruri(m), Some(42));
    }
}
