//! `trunkd reload`: ask the running daemon to re-read its file.
//!
//! First `POST /reload` on the admin listener named in the file, which
//! answers with the outcome (and every error when the new file is invalid);
//! when nothing listens there, SIGHUP to the pid in the pid file, whose
//! outcome is only in the daemon's log and `config_reloads_total`.

use std::path::Path;

use anyhow::{anyhow, bail};

pub fn reload(config: &Path) -> anyhow::Result<String> {
    // The running daemon validates the file itself (and counts a rejected
    // one); we only need where it listens, read leniently.
    let (admin, pid_file) = trunkd_config::daemon_endpoints(config);
    match post_reload(&crate::admin_client::AdminEndpoint::of(config)) {
        Ok((200, body)) => Ok(body.trim().to_owned()),
        Ok((status @ (401 | 403), body)) => bail!(
            "the admin API refused the reload (HTTP {status}): {}; set TRUNKD_ADMIN_TOKEN (or TRUNKD_ADMIN_TOKEN_FILE) to an operator token",
            crate::admin_client::message(&body)
        ),
        Ok((status, body)) => bail!(
            "the daemon refused the new configuration (HTTP {status}):\n{}",
            body.trim()
        ),
        Err(http_err) => {
            let pid = crate::pidfile::read(&pid_file).ok_or_else(|| {
                anyhow!(
                    "no admin listener at {admin} ({http_err}) and no pid in {}",
                    pid_file.display()
                )
            })?;
            // SAFETY: kill(2) with a pid read from our own pid file; no memory is shared.
            let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
            if rc != 0 {
                bail!(
                    "sending SIGHUP to pid {pid}: {}",
                    std::io::Error::last_os_error()
                );
            }
            Ok(format!(
                "sent SIGHUP to pid {pid}; see the daemon's log for the outcome"
            ))
        }
    }
}

fn post_reload(endpoint: &crate::admin_client::AdminEndpoint) -> anyhow::Result<(u16, String)> {
    crate::admin_client::request(endpoint, "POST", "/reload", None)
}
