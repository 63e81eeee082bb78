//! A WebSocket sink stream (SPEC §2.6): one connection per leg (or per call
//! in stereo). First a JSON text frame `{"event":"start", …}`, then binary
//! frames of 20 ms of 16-bit little-endian PCM, DTMF as
//! `{"event":"dtmf","digit":"5","leg":"caller"}`, and at the end
//! `{"event":"end", …}` and a close.
//!
//! A connection that fails or drops is reconnected during the call (the
//! start frame sent again), at most `max_reconnects` times, spaced by
//! [`trunkd_core::backoff::Backoff`]; while it waits the frames are dropped
//! (never queued without bound), and when the reconnects are used up the
//! stream is given up (a FAILED event). The task never blocks anyone but
//! itself: the pump fills its queue with `try_send`.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn};
use trunkd_core::backoff::Backoff;
use trunkd_core::StreamReconnect;

use super::metrics::StreamingMetrics;
use super::{CallInfo, LegName, SinkMsg, SinkReport};

/// Longest wait for a connection (TCP and the WebSocket handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The connection's socket send buffer (the kernel doubles it): about two
/// seconds of mono audio. Without it the kernel lets a consumer that stopped
/// reading absorb megabytes per connection before a write waits; with it,
/// such a consumer costs frames (dropped and counted) after a second or
/// two, and memory stays bounded.
const SEND_BUFFER: u32 = 32 * 1024;

pub(crate) struct WsParams {
    pub url: String,
    /// The start frame without `codec` (known from the first packet).
    pub start: serde_json::Value,
    pub end: serde_json::Value,
    pub reconnect: StreamReconnect,
    pub metrics: StreamingMetrics,
    /// For `wss://`: trunkd's TLS client (`[tls] ca_file` or the system's
    /// roots, as for every outgoing TLS connection).
    pub tls: tokio_rustls::TlsConnector,
}

/// The start frame's fields (SPEC §2.6), but `codec`.
pub(crate) fn start_frame(info: &CallInfo, leg: LegName) -> serde_json::Value {
    json!({
        "event": "start",
        "transactionId": info.transaction_id.to_string(),
        "voiceConnectorId": info.vc.as_str(),
        "callId": info.call_id,
        "direction": info.direction_str(),
        "from": info.from,
        "to": info.to,
        "leg": leg.as_str(),
        "sampleRate": 8000,
        "channels": leg.channels(),
    })
}

pub(crate) fn end_frame(info: &CallInfo, leg: LegName) -> serde_json::Value {
    json!({
        "event": "end",
        "transactionId": info.transaction_id.to_string(),
        "callId": info.call_id,
        "leg": leg.as_str(),
    })
}

/// A plain or TLS connection.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// Runs one stream until its queue closes (the call ended).
pub(crate) async fn run(p: WsParams, mut rx: mpsc::Receiver<SinkMsg>) -> SinkReport {
    let mut report = SinkReport::default();
    let mut start = p.start.clone();
    let mut codec_known = false;
    let mut conn: Option<Ws> = None;
    let backoff = Backoff {
        initial: p.reconnect.initial,
        max: p.reconnect.max,
    };
    // Connection attempts so far (the first is not a reconnect).
    let mut attempts = 0u32;
    let mut next_try = Instant::now();
    while let Some(msg) = rx.recv().await {
        let frame = match msg {
            SinkMsg::Start { codec } => {
                start["codec"] = json!(codec);
                codec_known = true;
                None
            }
            SinkMsg::Audio(pcm) => Some(Message::Binary(pcm)),
            SinkMsg::Dtmf { digit, leg } => Some(Message::text(
                json!({"event": "dtmf", "digit": digit.to_string(), "leg": leg.as_str()})
                    .to_string(),
            )),
        };
        if report.failure.is_some() || !codec_known {
            if frame.is_some() {
                p.metrics.frame("websocket", "dropped", 1);
            }
            continue;
        }
        if conn.is_none() {
            if Instant::now() < next_try {
                if frame.is_some() {
                    p.metrics.frame("websocket", "dropped", 1);
                }
                continue;
            }
            if attempts > 0 {
                if attempts > p.reconnect.max_attempts {
                    let why = format!(
                        "WebSocket sink {} given up after {} reconnects",
                        p.url, p.reconnect.max_attempts
                    );
                    report.failure = Some(why);
                    continue;
                }
                p.metrics.reconnects.inc();
            }
            attempts += 1;
            match connect(&p.url, &p.tls, &start).await {
                Ok(ws) => {
                    info!(url = %p.url, attempt = attempts, "streaming WebSocket connected");
                    conn = Some(ws);
                }
                Err(why) => {
                    warn!(url = %p.url, attempt = attempts, error = %why, "streaming WebSocket connection failed");
                    if attempts > p.reconnect.max_attempts {
                        report.failure = Some(format!("WebSocket sink {}: {why}", p.url));
                    }
                    next_try = Instant::now() + backoff.delay(attempts, random());
                    if frame.is_some() {
                        p.metrics.frame("websocket", "dropped", 1);
                    }
                    continue;
                }
            }
        }
        let (Some(ws), Some(frame)) = (conn.as_mut(), frame) else {
            continue;
        };
        match ws.send(frame).await {
            Ok(()) => {
                report.sent += 1;
                p.metrics.frame("websocket", "sent", 1);
            }
            Err(e) => {
                debug!(url = %p.url, error = %e, "streaming WebSocket lost");
                p.metrics.frame("websocket", "dropped", 1);
                conn = None;
                next_try = Instant::now() + backoff.delay(attempts, random());
            }
        }
    }
    if let Some(mut ws) = conn {
        let _ = ws.send(Message::text(p.end.to_string())).await;
        let _ = ws.close(None).await;
    }
    report
}

/// Connects and sends the start frame.
async fn connect(
    url: &str,
    tls: &tokio_rustls::TlsConnector,
    start: &serde_json::Value,
) -> Result<Ws, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake(url, tls)).await {
        Ok(Ok(mut ws)) => {
            ws.send(Message::text(start.to_string()))
                .await
                .map_err(|e| e.to_string())?;
            Ok(ws)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no connection in {CONNECT_TIMEOUT:?}")),
    }
}

/// TCP (with [`SEND_BUFFER`]), TLS for `wss://`, and the WebSocket
/// handshake.
async fn handshake(url: &str, tls: &tokio_rustls::TlsConnector) -> Result<Ws, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(format!("{url}: not a ws:// or wss:// URL")),
    };
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .collect();
    let mut last = format!("{host}: no address");
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| e.to_string())?;
        let _ = socket.set_send_buffer_size(SEND_BUFFER);
        let tcp = match socket.connect(addr).await {
            Ok(tcp) => tcp,
            Err(e) => {
                last = format!("{addr}: {e}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if secure {
            let name = crate::tls::server_name(host, addr.ip());
            Box::new(
                tls.connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS to {addr}: {e}"))?,
            )
        } else {
            Box::new(tcp)
        };
        let (ws, _) = tokio_tungstenite::client_async(url, io)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(ws);
    }
    Err(last)
}

/// A uniform draw in [0, 1) for the backoff's jitter.
fn random() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use tokio::net::TcpListener;

    use super::*;

    fn params(url: String, max_attempts: u32, metrics: &StreamingMetrics) -> WsParams {
        WsParams {
            url,
            start: json!({"event": "start", "leg": "caller"}),
            end: json!({"event": "end", "leg": "caller"}),
            reconnect: StreamReconnect {
                max_attempts,
                initial: Duration::from_millis(10),
                max: Duration::from_millis(20),
            },
            metrics: metrics.clone(),
            tls: no_tls(),
        }
    }

    /// A TLS client that trusts nothing (the tests use ws://).
    fn no_tls() -> tokio_rustls::TlsConnector {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }

    fn as_json(m: &Message) -> serde_json::Value {
        serde_json::from_str(m.to_text().unwrap()).unwrap()
    }

    /// A consumer that drops the first connection after the start and one
    /// frame: the stream reconnects and starts again with the start frame.
    #[tokio::test]
    async fn a_dropped_connection_is_reconnected_with_the_start_frame_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/audio", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut first = Vec::new();
            for _ in 0..2 {
                first.push(ws.next().await.unwrap().unwrap());
            }
            drop(ws);
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut second = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                second.push(m);
            }
            (first, second)
        });
        let metrics = StreamingMetrics::default();
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(run(params(url, 3, &metrics), rx));
        tx.send(SinkMsg::Start { codec: "PCMU" }).await.unwrap();
        for i in 0..30u8 {
            tx.send(SinkMsg::Audio(Bytes::from(vec![i; 320])))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.send(SinkMsg::Dtmf {
            digit: '#',
            leg: LegName::Caller,
        })
        .await
        .unwrap();
        drop(tx);
        let report = task.await.unwrap();
        let (first, second) = server.await.unwrap();
        assert_eq!(as_json(&first[0])["codec"], "PCMU");
        assert_eq!(first[1], Message::Binary(Bytes::from(vec![0u8; 320])));
        let start = as_json(&second[0]);
        assert_eq!(
            (start["event"].as_str(), start["codec"].as_str()),
            (Some("start"), Some("PCMU"))
        );
        let n = second.len();
        assert!(second[n - 1].is_close());
        assert_eq!(as_json(&second[n - 2])["event"], "end");
        assert_eq!(
            as_json(&second[n - 3]),
            json!({"event": "dtmf", "digit": "#", "leg": "caller"})
        );
        assert!(matches!(&second[n - 4], Message::Binary(b) if b[..] == [29u8; 320][..]));
        assert_eq!(metrics.reconnects.get(), 1);
        assert_eq!(report.failure, None);
        // Frames sent on either connection, or lost while it was down.
        let sent = metrics
            .frames
            .get_or_create(&super::super::metrics::FrameLabels {
                sink: "websocket",
                result: "sent",
            })
            .get();
        assert_eq!(sent, report.sent);
        assert!(report.sent >= 20, "{report:?}");
    }

    #[tokio::test]
    async fn a_consumer_that_is_not_there_is_given_up_after_the_reconnects() {
        // A port with nothing listening: bind, read the port, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let metrics = StreamingMetrics::default();
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(run(
            params(format!("ws://127.0.0.1:{port}/"), 2, &metrics),
            rx,
        ));
        tx.send(SinkMsg::Start { codec: "PCMA" }).await.unwrap();
        for _ in 0..20 {
            tx.send(SinkMsg::Audio(Bytes::from(vec![0u8; 320])))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        drop(tx);
        let report = task.await.unwrap();
        assert_eq!(report.sent, 0);
        let why = report.failure.expect("given up");
        assert!(
            why.starts_with(&format!("WebSocket sink ws://127.0.0.1:{port}/")),
            "{why}"
        );
        assert_eq!(
            metrics.reconnects.get(),
            2,
            "two reconnects after the first attempt"
        );
    }

    #[tokio::test]
    async fn other_schemes_are_refused_at_connect() {
        let e = handshake("http://127.0.0.1:1/", &no_tls())
            .await
            .err()
            .unwrap();
        assert!(e.contains("not a ws:// or wss:// URL"), "{e}");
    }
}
