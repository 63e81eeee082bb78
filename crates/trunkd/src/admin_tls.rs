//! The admin listener over TLS (`[admin] tls_cert_file`): an axum
//! `Listener` whose connections have finished their handshake.

use std::sync::Arc;

use tracing::debug;

/// The admin listener over TLS: a task accepts TCP connections and runs
/// each handshake in its own task under the handshake timeout (a slow or
/// silent client holds one of [`MAX_HANDSHAKES`] slots, never the
/// listener), and hands finished connections to axum.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    local: std::net::SocketAddr,
    accepter: tokio::task::JoinHandle<()>,
}

/// Handshakes in progress at once on the admin listener.
const MAX_HANDSHAKES: usize = 64;

impl TlsListener {
    pub fn start(
        tcp: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
        timeout: std::time::Duration,
    ) -> TlsListener {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, ready) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let accepter = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "admin TLS handshake failed"),
                        Err(_) => debug!(%peer, "admin TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        TlsListener {
            ready,
            local,
            accepter,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepter.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepter ended (the runtime is stopping): nothing more
            // will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
