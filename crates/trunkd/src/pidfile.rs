//! The pid file: written atomically at start, removed at exit, read by
//! `trunkd reload`. A stale file (its process gone) is replaced; a live
//! trunkd holding it stops a second start on the same file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub struct PidFile {
    path: PathBuf,
}

/// The pid in `path`, if the file exists and holds one.
pub fn read(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn is_running_trunkd(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "trunkd")
}

impl PidFile {
    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        if let Some(pid) = read(path) {
            if pid != std::process::id() as i32 && is_running_trunkd(pid) {
                bail!(
                    "{} names pid {pid}, a running trunkd: stop it first or set daemon.pid_file",
                    path.display()
                );
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path) == Some(std::process::id() as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
