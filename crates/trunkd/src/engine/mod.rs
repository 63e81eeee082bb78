//! The SIP engine.
//!
//! * [`machine`]: the sans-IO [`Engine`] — transaction layer, dispatch of
//!   messages to calls, the caps and the admission state;
//! * [`invite`]: the INVITE policy, one pure decision per new INVITE;
//! * [`shell`]: the tokio task around the engine, which moves bytes, time,
//!   call tasks, media anchors and record files in and out of it.
//!
//! Data path (docs/architecture.md): transport tasks parse messages and
//! send them to the shell, which hands them to the engine; what the engine
//! transmits goes to the transports, a call it admits gets a media anchor
//! and a task, and what it has for a call goes to that call's queue.

pub mod invite;
pub mod machine;
pub mod shell;

#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;

use bytes::Bytes;
pub use shell::{EngineTask, EngineTx, Input};
use trunkd_sip::Request;

/// The session description of a request: its body when that is SDP, the
/// SDP part of a multipart body (RFC 5621), else nothing.
pub fn session_sdp(req: &Request) -> Bytes {
    let content_type = req.headers.get("Content-Type").map(|v| &v[..]);
    trunkd_sip::session_sdp(content_type, &req.body).unwrap_or_default()
}
