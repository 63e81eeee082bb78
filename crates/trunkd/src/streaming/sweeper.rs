//! Deletes streamed WAV files past their VC's `data_retention_in_hours`
//! (SPEC §2.6), once a minute, off the call path (a blocking thread).
//!
//! With retention 0 a call deletes its own files right after its records
//! are written ([`super::delete_files`]); the sweeper then only removes
//! files nobody has written for [`ZERO_RETENTION_GRACE`] (left by a crash,
//! or by a recording session), never a file a call may still be writing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};
use trunkd_config::Config;
use trunkd_core::StreamingSink;

use crate::daemon::Shared;

/// How often the sweeper runs.
pub const PERIOD: Duration = Duration::from_secs(60);

/// Age after which a file in a directory of a VC with retention 0 is swept.
pub const ZERO_RETENTION_GRACE: Duration = Duration::from_secs(3600);

/// Each WAV sink directory of an enabled VC and the age past which its files
/// go (the shortest retention of the VCs that share it).
pub fn directories(config: &Config) -> Vec<(PathBuf, Duration)> {
    let mut out: Vec<(PathBuf, Duration)> = Vec::new();
    for vc in config.resources.voice_connectors() {
        let s = &vc.streaming;
        if s.disabled {
            continue;
        }
        let age = match s.data_retention_in_hours {
            0 => ZERO_RETENTION_GRACE,
            h => Duration::from_secs(u64::from(h) * 3600),
        };
        for sink in &s.sinks {
            if let StreamingSink::Wav { directory } = sink {
                match out.iter_mut().find(|(d, _)| d == directory) {
                    Some((_, a)) => *a = (*a).min(age),
                    None => out.push((directory.clone(), age)),
                }
            }
        }
    }
    out
}

/// Deletes the `.wav` files directly under `dir` last modified at least
/// `max_age` before `now`. Returns how many were deleted.
pub fn sweep_dir(dir: &Path, max_age: Duration, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("wav") {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= max_age);
        if old {
            match std::fs::remove_file(&path) {
                Ok(()) => n += 1,
                Err(e) => {
                    warn!(error = %e, path = %path.display(), "cannot delete an expired WAV file")
                }
            }
        }
    }
    n
}

/// Runs forever: one sweep per [`PERIOD`].
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        let dirs = directories(&shared.config());
        if dirs.is_empty() {
            continue;
        }
        let swept = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            dirs.iter()
                .map(|(d, age)| sweep_dir(d, *age, now))
                .sum::<usize>()
        })
        .await
        .unwrap_or(0);
        if swept > 0 {
            info!(files = swept, "expired streamed WAV files deleted");
            shared
                .metrics
                .streaming
                .wav_files_swept
                .inc_by(swept as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wav_files_past_the_age_are_deleted() {
        let dir = std::env::temp_dir().join(format!("trunkd-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        let old = now - Duration::from_secs(7200);
        for (name, mtime) in [("old.wav", old), ("new.wav", now), ("old.txt", old)] {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            f.set_modified(mtime).unwrap();
        }
        assert_eq!(sweep_dir(&dir, Duration::from_secs(3600), now), 1);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["new.wav", "old.txt"]);
        assert_eq!(sweep_dir(&dir.join("missing"), Duration::ZERO, now), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
