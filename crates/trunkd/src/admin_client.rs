//! The CLI's side of the admin API: one blocking HTTP/1.1 exchange with
//! the running daemon's admin listener (read from the configuration file),
//! with the operator's bearer token when one is given.
//!
//! The token comes from `TRUNKD_ADMIN_TOKEN` or from the file named by
//! `TRUNKD_ADMIN_TOKEN_FILE` (one trailing newline trimmed), never from the
//! command line, where every user of the machine could read it in `ps`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, Context};

/// The bearer token for the admin API, if the operator gave one.
pub fn token() -> anyhow::Result<Option<String>> {
    if let Ok(t) = std::env::var("TRUNKD_ADMIN_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(Some(t.trim().to_owned()));
        }
    }
    if let Some(path) = std::env::var_os("TRUNKD_ADMIN_TOKEN_FILE") {
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("reading TRUNKD_ADMIN_TOKEN_FILE {}", path.to_string_lossy())
        })?;
        let t = text.strip_suffix('\n').unwrap_or(&text).trim();
        if t.is_empty() {
            return Err(anyhow!(
                "TRUNKD_ADMIN_TOKEN_FILE {} is empty",
                path.to_string_lossy()
            ));
        }
        return Ok(Some(t.to_owned()));
    }
    Ok(None)
}

/// Where the daemon of a configuration file answers: its admin listener,
/// over TLS (pinned to its own certificate) when `[admin] tls_cert_file`
/// is set.
pub struct AdminEndpoint {
    pub addr: SocketAddr,
    tls_cert: Option<std::path::PathBuf>,
}

impl AdminEndpoint {
    pub fn of(config: &std::path::Path) -> AdminEndpoint {
        AdminEndpoint {
            addr: trunkd_config::daemon_endpoints(config).0,
            tls_cert: trunkd_config::admin_tls_cert(config),
        }
    }
}

/// `method path` with an optional JSON `body`: (status, body).
pub fn request(
    endpoint: &AdminEndpoint,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let admin = endpoint.addr;
    let token = token()?;
    let tcp = TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .with_context(|| format!("connecting to the admin listener {admin}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut s: Box<dyn ReadWrite> = match &endpoint.tls_cert {
        None => Box::new(tcp),
        Some(cert) => {
            let config = crate::tls::pinned_client_config(cert).map_err(|e| anyhow!("{e}"))?;
            let name = rustls::pki_types::ServerName::IpAddress(admin.ip().into());
            let conn = rustls::ClientConnection::new(config, name)
                .map_err(|e| anyhow!("TLS to {admin}: {e}"))?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()?;
    let mut resp = String::new();
    // A TLS peer that closes without close_notify ends the body all the
    // same (HTTP/1.1 with Connection: close, the length is in the header).
    match s.read_to_string(&mut resp) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response from {admin}"))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The `Message` of an API error body, or the body itself.
pub fn message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let m = v.get("Message")?.as_str()?.to_owned();
            let errors = v
                .get("Errors")
                .and_then(|e| e.as_array())
                .map(|e| {
                    e.iter()
                        .filter_map(|x| x.as_str())
                        .map(|x| format!("\n  {x}"))
                        .collect::<String>()
                })
                .unwrap_or_default();
            Some(m + &errors)
        })
        .unwrap_or_else(|| body.trim().to_owned())
}
