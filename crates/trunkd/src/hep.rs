//! HEP v3 export (`[hep]`): a copy of every SIP message trunkd receives
//! or sends, with its real addresses and the time it crossed the socket,
//! to a Homer or sngrep collector over UDP.
//!
//! The transports call [`HepExporter::capture`] where they hold the raw
//! bytes, the peer's address and the listener's: that never blocks — a
//! bounded queue feeds one sender thread, and a full queue drops the copy
//! and counts it (`hep_messages_total{result="dropped"}`). Signalling
//! must not wait on monitoring. Encoding is [`trunkd_sip::hep`]'s.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use trunkd_config::HepSettings;
use trunkd_sip::hep::{encode, HepMessage, HepPayload, HepTransport};

use crate::metrics::ResultLabel;

/// Copies waiting for the sender thread; past this they are dropped.
pub const QUEUE_MESSAGES: usize = 8192;

/// One message as it crossed a socket.
pub struct Captured {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: HepTransport,
    pub wall: SystemTime,
    pub bytes: Bytes,
}

/// The transports' side of the queue.
pub struct HepExporter {
    tx: SyncSender<Captured>,
    counts: Family<ResultLabel, Counter>,
}

impl HepExporter {
    /// Starts the sender thread when `[hep] enabled`; `None` otherwise.
    pub fn start(
        settings: &HepSettings,
        counts: Family<ResultLabel, Counter>,
    ) -> std::io::Result<Option<HepExporter>> {
        if !settings.enabled {
            return Ok(None);
        }
        let any: SocketAddr = if settings.collector.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(any)?;
        sock.connect(settings.collector)?;
        let (tx, rx) = sync_channel(QUEUE_MESSAGES);
        let sender = Sender {
            sock,
            capture_id: settings.capture_id,
            password: settings.password.clone(),
            counts: counts.clone(),
        };
        std::thread::Builder::new()
            .name("hep".into())
            .spawn(move || sender.run(rx))?;
        Ok(Some(HepExporter { tx, counts }))
    }

    /// Queues a copy of a message; never blocks.
    pub fn capture(&self, c: Captured) {
        match self.tx.try_send(c) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped(),
        }
    }

    fn dropped(&self) {
        self.counts
            .get_or_create(&ResultLabel { result: "dropped" })
            .inc();
    }
}

struct Sender {
    sock: UdpSocket,
    capture_id: u32,
    password: Option<String>,
    counts: Family<ResultLabel, Counter>,
}

impl Sender {
    fn run(self, rx: Receiver<Captured>) {
        while let Ok(c) = rx.recv() {
            let result = match self.send(&c) {
                Ok(()) => "sent",
                Err(e) => {
                    tracing::debug!(error = %e, "HEP packet not sent");
                    "dropped"
                }
            };
            self.counts.get_or_create(&ResultLabel { result }).inc();
        }
    }

    fn send(&self, c: &Captured) -> anyhow::Result<()> {
        let since = c.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let packet = encode(&HepMessage {
            src: c.src,
            dst: c.dst,
            transport: c.transport,
            seconds: since.as_secs() as u32,
            micros: since.subsec_micros(),
            kind: HepPayload::Sip,
            capture_id: self.capture_id,
            auth_key: self.password.as_deref(),
            correlation_id: None,
            payload: &c.bytes,
        })?;
        self.sock.send(&packet)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(collector: SocketAddr) -> HepSettings {
        HepSettings {
            enabled: true,
            collector,
            capture_id: 7,
            password: None,
        }
    }

    #[test]
    fn a_captured_message_reaches_the_collector_and_counts_as_sent() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let counts = Family::<ResultLabel, Counter>::default();
        let hep = HepExporter::start(&settings(collector.local_addr().unwrap()), counts.clone())
            .unwrap()
            .unwrap();
        let c = Captured {
            src: "127.0.0.1:5060".parse().unwrap(),
            dst: "127.0.0.1:5080".parse().unwrap(),
            transport: HepTransport::Udp,
            wall: UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            bytes: Bytes::from_static(b"OPTIONS sip:a SIP/2.0\r\n\r\n"),
        };
        let want = encode(&HepMessage {
            src: c.src,
            dst: c.dst,
            transport: HepTransport::Udp,
            seconds: 1_700_000_000,
            micros: 123_456,
            kind: HepPayload::Sip,
            capture_id: 7,
            auth_key: None,
            correlation_id: None,
            payload: &c.bytes,
        })
        .unwrap();
        hep.capture(c);
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &want[..]);
        // The count follows the send on the sender thread.
        for _ in 0..100 {
            if counts.get_or_create(&ResultLabel { result: "sent" }).get() == 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("not counted as sent");
    }

    #[test]
    fn disabled_starts_nothing() {
        let mut s = settings("127.0.0.1:9".parse().unwrap());
        s.enabled = false;
        assert!(HepExporter::start(&s, Family::default()).unwrap().is_none());
    }
}
