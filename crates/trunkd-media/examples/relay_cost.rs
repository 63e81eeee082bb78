//! CPU cost per relayed packet of the full relay (`relay::spawn`: latching,
//! counters, observer hook, inactivity timer, 4 sockets per call) against
//! the bare relay (`bare_relay`: 2 sockets per call, nothing else), with the
//! ANCHORS.md load: per call a 172-byte RTP packet every 20 ms each way.
//!
//! The in-process relays run on a current-thread runtime on their own
//! thread, whose CPU time (`/proc/thread-self/schedstat`) is divided by the
//! packets the phones received; the phones are one generator thread that
//! sends a burst every 20 ms and drains its sockets before the next one.
//! An external relay (another process using `bare_relay`'s port layout:
//! call `i` on 127.0.0.1 ports `first + 2i` and `first + 2i + 1`, e.g. the
//! `bare_relay` example or a C floor relay) is measured from
//! `/proc/<pid>/task/*/schedstat`. Kinds alternate within each round,
//! because only a side-by-side ratio means anything on a shared machine.
//!
//! `cargo run --release -p trunkd-media --example relay_cost -- CALLS SECS ROUNDS [PID FIRST_PORT]`

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use trunkd_media::{Leg, LegSetup, LegSockets, MediaSocket, RelayConfig};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Full,
    Bare,
    External { pid: u32, first_port: u16 },
}

fn thread_cpu_ns() -> u64 {
    schedstat_ns("/proc/thread-self/schedstat")
}

fn schedstat_ns(path: impl AsRef<std::path::Path>) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .map(|t| schedstat_ns(t.path().join("schedstat")))
        .sum()
}

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// Returns CPU-µs per relayed packet and relayed packets per second.
fn run(kind: Kind, calls: usize, secs: u64) -> (f64, f64) {
    let phones: Vec<(UdpSocket, UdpSocket)> = (0..calls).map(|_| (bind(), bind())).collect();
    let addrs: Vec<(SocketAddr, SocketAddr)> = phones
        .iter()
        .map(|(a, b)| (a.local_addr().unwrap(), b.local_addr().unwrap()))
        .collect();

    let measuring = Arc::new(AtomicBool::new(false));
    let (targets_tx, targets_rx) = std_mpsc::channel();
    let (cpu_tx, cpu_rx) = std_mpsc::channel::<u64>();
    let m = measuring.clone();
    let relay_thread = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut targets = Vec::new();
                let mut handles = Vec::new();
                for (i, (pa, pb)) in addrs.into_iter().enumerate() {
                    match kind {
                        Kind::Full => {
                            let leg = |peer: SocketAddr| LegSetup {
                                sockets: LegSockets {
                                    rtp: MediaSocket::try_from(bind()).unwrap(),
                                    rtcp: MediaSocket::try_from(bind()).unwrap(),
                                    ports: None,
                                },
                                peer_rtp: Some(peer),
                                peer_rtcp: None,
                            };
                            let h = trunkd_media::spawn(
                                RelayConfig::default(),
                                leg(pa),
                                leg(pb),
                                trunkd_media::media_events().0,
                            )
                            .unwrap();
                            targets.push((h.local_rtp(Leg::A), h.local_rtp(Leg::B)));
                            handles.push(h);
                        }
                        Kind::Bare => {
                            let (a, b) = (bind(), bind());
                            targets.push((a.local_addr().unwrap(), b.local_addr().unwrap()));
                            tokio::spawn(trunkd_media::bare_relay(a, b));
                        }
                        Kind::External { first_port, .. } => {
                            let port = first_port + 2 * i as u16;
                            targets.push((
                                SocketAddr::from(([127, 0, 0, 1], port)),
                                SocketAddr::from(([127, 0, 0, 1], port + 1)),
                            ));
                        }
                    }
                }
                targets_tx.send(targets).unwrap();
                let cpu = || match kind {
                    Kind::External { pid, .. } => process_cpu_ns(pid),
                    _ => thread_cpu_ns(),
                };
                // Warm up (latching, caches), then measure.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let c0 = cpu();
                m.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                m.store(false, Ordering::SeqCst);
                let c1 = cpu();
                cpu_tx.send(c1 - c0).unwrap();
                drop(handles);
            });
        })
        .unwrap();

    let targets: Vec<(SocketAddr, SocketAddr)> = targets_rx.recv().unwrap();
    let received = AtomicU64::new(0);
    let pkt = [0x80u8; 172];
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut tick = start;
    let (mut first, mut last) = (None, None);
    while start.elapsed() < Duration::from_secs(secs + 2) {
        for ((a, b), (ta, tb)) in phones.iter().zip(&targets) {
            let _ = a.send_to(&pkt, ta);
            let _ = b.send_to(&pkt, tb);
        }
        tick += Duration::from_millis(20);
        if let Some(d) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let on = measuring.load(Ordering::Relaxed);
        for (a, b) in &phones {
            for s in [a, b] {
                while s.recv_from(&mut buf).is_ok() {
                    if on {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if on {
            first.get_or_insert_with(Instant::now);
            last = Some(Instant::now());
        }
    }
    let cpu_ns = cpu_rx.recv().unwrap();
    relay_thread.join().unwrap();
    let pkts = received.load(Ordering::Relaxed).max(1);
    let measured = match (first, last) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64() + 0.02,
        _ => secs as f64,
    };
    (cpu_ns as f64 / 1000.0 / pkts as f64, pkts as f64 / measured)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let calls = arg(0, 100) as usize;
    let secs = arg(1, 5);
    let rounds = arg(2, 2) as usize;
    let mut kinds = vec![Kind::Bare, Kind::Full];
    if args.len() >= 5 {
        kinds.push(Kind::External {
            pid: arg(3, 0) as u32,
            first_port: arg(4, 40000) as u16,
        });
    }
    for round in 0..rounds {
        for &kind in &kinds {
            let (us, pps) = run(kind, calls, secs);
            println!(
                "round {round} {kind:?}: {calls} calls, {pps:.0} relayed pkt/s, {us:.2} CPU-us per packet"
            );
        }
    }
}
