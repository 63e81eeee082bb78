//! Audio sources of application actions (SPEC §6): a local WAV file, an
//! http(s) URL, or an object of an S3-compatible bucket (one of the
//! `[[records.sinks]]`, whose endpoint and credentials it uses), decoded to
//! 8 kHz samples for the call task.
//!
//! URLs and S3 objects are fetched once and kept, decoded, in a cache shared by every
//! call (least recently used out first), so a prompt that every caller
//! hears costs one download. Files are read each time: operators edit
//! them in place, and the page cache already keeps them.
//!
//! Every fetch is bounded: a file or download larger than
//! `[applications] audio_max_file_bytes` is refused before it is read
//! whole, and the caller bounds the time (the driver never waits on a
//! fetch in its own loop).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStore;
use thiserror::Error;
use trunkd_config::RecordSinkSettings;
use trunkd_media::endpoint::wav::{read_wav_8k, WavError};

use crate::records::upload::store_for;

/// Decoded 8 kHz mono samples.
pub type Samples = Arc<[i16]>;

/// Why an audio source could not be used. The driver reports it as the
/// managed service's `InvalidAudioSource`.
#[derive(Debug, Error)]
pub enum AudioError {
    #[error("the file {0} cannot be read: {1}")]
    File(String, std::io::Error),
    #[error("the audio is {0} bytes; at most {1} are accepted")]
    TooLarge(u64, u64),
    #[error("the URL could not be fetched: {0}")]
    Fetch(String),
    #[error("the URL answered HTTP {0}")]
    Status(u16),
    #[error("the object could not be fetched from the bucket: {0}")]
    Store(String),
    #[error("not a usable WAV file: {0}")]
    Wav(#[from] WavError),
}

struct Entry {
    samples: Samples,
    bytes: u64,
    used: u64,
}

/// The decoded audio of URLs, least recently used out first.
pub struct AudioCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, Entry>,
    total: u64,
    clock: u64,
}

impl AudioCache {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The cached samples of `url`, marked as just used.
    pub fn get(&self, url: &str) -> Option<Samples> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let now = inner.clock;
        let e = inner.entries.get_mut(url)?;
        e.used = now;
        Some(e.samples.clone())
    }

    /// Keeps `samples` for `url`, dropping the least recently used entries
    /// until the cache holds at most `capacity` bytes. Audio larger than
    /// the whole cache is not kept.
    pub fn insert(&self, url: &str, samples: Samples, capacity: u64) {
        let bytes = samples.len() as u64 * 2;
        if bytes > capacity {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.entries.remove(url) {
            inner.total -= old.bytes;
        }
        while inner.total + bytes > capacity {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.total -= e.bytes;
            }
        }
        inner.total += bytes;
        inner.entries.insert(
            url.to_owned(),
            Entry {
                samples,
                bytes,
                used,
            },
        );
    }

    /// Bytes of decoded audio held.
    #[cfg(test)]
    pub fn size(&self) -> u64 {
        self.inner.lock().map(|i| i.total).unwrap_or(0)
    }
}

impl Default for AudioCache {
    fn default() -> Self {
        Self::new()
    }
}

/// `path` as a `File` source names it: absolute, or relative to `base`
/// (the configuration file's directory).
pub fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads and decodes a WAV file of at most `max_bytes`.
pub async fn read_file(path: PathBuf, max_bytes: u64) -> Result<Samples, AudioError> {
    let shown = path.display().to_string();
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, AudioError> {
        use std::io::Read;
        let f = std::fs::File::open(&path).map_err(|e| AudioError::File(shown.clone(), e))?;
        let mut bytes = Vec::new();
        f.take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| AudioError::File(shown, e))?;
        Ok(bytes)
    })
    .await
    .map_err(|e| AudioError::Fetch(e.to_string()))??;
    decode(bytes, max_bytes).await
}

/// Downloads `url` (at most `max_bytes`, within `timeout`) and decodes it;
/// from the cache when it was fetched before.
pub async fn fetch_url(
    http: &reqwest::Client,
    cache: &AudioCache,
    url: &str,
    max_bytes: u64,
    cache_bytes: u64,
    timeout: Duration,
) -> Result<Samples, AudioError> {
    if let Some(s) = cache.get(url) {
        return Ok(s);
    }
    let download = async {
        let mut resp = http
            .get(url)
            .send()
            .await
            .map_err(|e| AudioError::Fetch(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(AudioError::Status(resp.status().as_u16()));
        }
        if let Some(n) = resp.content_length().filter(|n| *n > max_bytes) {
            return Err(AudioError::TooLarge(n, max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| AudioError::Fetch(e.without_url().to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > max_bytes {
                return Err(AudioError::TooLarge(body.len() as u64, max_bytes));
            }
        }
        Ok(body)
    };
    let body = tokio::time::timeout(timeout, download)
        .await
        .map_err(|_| AudioError::Fetch(format!("no complete answer within {timeout:?}")))??;
    let samples = decode(body, max_bytes).await?;
    cache.insert(url, samples.clone(), cache_bytes);
    Ok(samples)
}

/// Gets `key` from `sink`'s bucket (at most `max_bytes`; the caller
/// bounds the time) and decodes it; from the cache when it was fetched
/// before. `key` is the object's whole key: the sink's `prefix` (where
/// records go) is not applied.
pub async fn fetch_s3(
    sink: &RecordSinkSettings,
    cache: &AudioCache,
    key: &str,
    max_bytes: u64,
    cache_bytes: u64,
) -> Result<Samples, AudioError> {
    let name = format!("s3://{}/{key}", sink.bucket);
    if let Some(s) = cache.get(&name) {
        return Ok(s);
    }
    let store = store_for(sink).map_err(|e| AudioError::Store(e.to_string()))?;
    let path = object_store::path::Path::parse(key)
        .map_err(|e| AudioError::Store(format!("the key {key:?} is not usable: {e}")))?;
    let got = store.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            AudioError::Store(format!("no object {key:?} in the bucket {}", sink.bucket))
        }
        e => AudioError::Store(e.to_string()),
    })?;
    let size = got.meta.size;
    if size > max_bytes {
        return Err(AudioError::TooLarge(size, max_bytes));
    }
    let body = got
        .bytes()
        .await
        .map_err(|e| AudioError::Store(e.to_string()))?;
    let samples = decode(body.to_vec(), max_bytes).await?;
    cache.insert(&name, samples.clone(), cache_bytes);
    Ok(samples)
}

async fn decode(bytes: Vec<u8>, max_bytes: u64) -> Result<Samples, AudioError> {
    if bytes.len() as u64 > max_bytes {
        return Err(AudioError::TooLarge(bytes.len() as u64, max_bytes));
    }
    // Decoding (and 16 kHz filtering) is CPU work: off the async threads.
    let samples = tokio::task::spawn_blocking(move || read_wav_8k(std::io::Cursor::new(bytes)))
        .await
        .map_err(|e| AudioError::Fetch(e.to_string()))??;
    Ok(samples.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Samples {
        vec![1i16; n].into()
    }

    #[test]
    fn the_cache_drops_the_least_recently_used_first() {
        let c = AudioCache::new();
        c.insert("a", samples(100), 600);
        c.insert("b", samples(100), 600);
        c.insert("c", samples(100), 600);
        assert_eq!(c.size(), 600);
        // "a" used again: "b" is now the oldest.
        assert!(c.get("a").is_some());
        c.insert("d", samples(100), 600);
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some());
        assert!(c.get("c").is_some());
        assert!(c.get("d").is_some());
        assert_eq!(c.size(), 600);
    }

    #[test]
    fn audio_larger_than_the_cache_is_not_kept() {
        let c = AudioCache::new();
        c.insert("a", samples(100), 600);
        c.insert("big", samples(1000), 600);
        assert!(c.get("big").is_none());
        assert!(c.get("a").is_some());
        assert_eq!(c.size(), 200);
    }

    #[tokio::test]
    async fn a_file_over_the_cap_is_refused() {
        let dir = std::env::temp_dir().join(format!("trunkd-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("p.wav");
        trunkd_media::endpoint::wav::write_wav_file_8k(&p, &[7i16; 4000]).unwrap();
        let got = read_file(p.clone(), 1024).await;
        assert!(matches!(got, Err(AudioError::TooLarge(_, 1024))), "{got:?}");
        let ok = read_file(p, 1 << 20).await.unwrap();
        assert_eq!(ok.len(), 4000);
        assert!(ok.iter().all(|s| *s == 7));
        let _ = std::fs::remove_dir_all(dir);
    }
}
