//! The project's own benchmark floor (ANCHORS.md, "a bare user-space
//! relay"): `calls` relays of two sockets each, no SDP, no stats, no timers,
//! on one thread. Call `i` listens on `first_port + 2i` (leg A) and
//! `first_port + 2i + 1` (leg B); each side's first source is latched.
//!
//! `cargo run --release -p trunkd-media --example bare_relay -- 127.0.0.1 40000 600`

use std::net::IpAddr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_relay <ip> <first_port> <calls>";
    let ip: IpAddr = args.next().ok_or(usage)?.parse()?;
    let first: u16 = args.next().ok_or(usage)?.parse()?;
    let calls: u16 = args.next().ok_or(usage)?.parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let mut relays = tokio::task::JoinSet::new();
        for i in 0..calls {
            let port = first + 2 * i;
            let a = std::net::UdpSocket::bind((ip, port))?;
            let b = std::net::UdpSocket::bind((ip, port + 1))?;
            relays.spawn(trunkd_media::bare_relay(a, b));
        }
        eprintln!(
            "bare_relay: {calls} calls on {ip}:{first}..{}",
            first + 2 * calls - 1
        );
        while let Some(done) = relays.join_next().await {
            done??;
        }
        Ok(())
    })
}
