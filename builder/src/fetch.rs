//! Shared download machinery: one HTTP client, the cache, a bound on
//! concurrent transfers, a per-digest lock (so two jobs wanting the same
//! digest download it once), progress and counters.

use crate::cache::{Cache, CommitError};
use crate::error::{Error, Result};
use crate::progress::Progress;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes received from the network.
    pub downloaded_bytes: AtomicU64,
    pub downloads: AtomicU64,
    /// Files and blobs found in the cache.
    pub cache_hits: AtomicU64,
}

#[derive(Clone)]
pub struct Ctx {
    pub http: reqwest::Client,
    pub cache: Cache,
    pub progress: Progress,
    pub stats: Arc<Stats>,
    slots: Arc<Semaphore>,
    locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

/// Where the expected digest of a download comes from (for error messages).
pub struct Expect<'a> {
    pub sha256: &'a str,
    pub from: &'a str,
}

impl Ctx {
    pub fn new(cache: Cache, progress: Progress, concurrency: usize) -> Result<Ctx> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Http {
                url: "(client)".into(),
                reason: e.to_string(),
            })?;
        Ok(Ctx {
            http,
            cache,
            progress,
            stats: Arc::default(),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            locks: Arc::default(),
        })
    }

    /// A transfer slot; hold it while bytes flow.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed")
    }

    /// Serialises work on one digest across jobs.
    pub async fn lock_digest(&self, hex: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.locks.lock().await;
            map.entry(hex.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// GET a small text file (a checksum file), cached by its upstream URL:
    /// release checksum files do not change.
    pub async fn checksum_text(&self, upstream: &str, url: &str) -> Result<String> {
        let path = self.cache.checksum_path(upstream);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(text);
        }
        let _slot = self.slot().await;
        let resp = self.get(upstream, url).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| http_err(upstream, url, e.to_string()))?;
        self.stats
            .downloaded_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let text = String::from_utf8(body.to_vec()).map_err(|_| Error::ChecksumFile {
            url: url.into(),
            reason: "not UTF-8 text".into(),
        })?;
        self.cache.put_meta(&path, text.as_bytes())?;
        Ok(text)
    }

    /// GET a small signed text (a repository's `InRelease`, `repomd.xml`)
    /// fresh each build: it names the current packages. At most `limit` bytes.
    pub async fn fresh_bytes(&self, upstream: &str, url: &str, limit: usize) -> Result<Vec<u8>> {
        let _slot = self.slot().await;
        let resp = self.get(upstream, url).await?;
        let mut body = resp.bytes_stream();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| http_err(upstream, url, e.to_string()))?;
            if out.len() + chunk.len() > limit {
                return Err(http_err(
                    upstream,
                    url,
                    format!("larger than {limit} bytes"),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        self.stats
            .downloaded_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// Like [`Ctx::checksum_text`], but bypasses (and replaces) the cached copy:
    /// for an index that gained entries since it was cached.
    pub async fn refetch_checksum_text(&self, upstream: &str, url: &str) -> Result<String> {
        let path = self.cache.checksum_path(upstream);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(&path, e));
            }
        }
        self.checksum_text(upstream, url).await
    }

    /// Ensures the file with `expect.sha256` is in the cache, downloading it
    /// from `url` (the mirrored form of `upstream`) when missing. `label` names
    /// the file in progress and errors.
    pub async fn file(
        &self,
        label: &str,
        upstream: &str,
        url: &str,
        expect: Expect<'_>,
    ) -> Result<u64> {
        let _guard = self.lock_digest(expect.sha256).await;
        if let Some(size) = self.cache.blob_size(expect.sha256) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("cached: {label} ({})", expect.sha256);
            return Ok(size);
        }
        let _slot = self.slot().await;
        let resp = self.get(upstream, url).await?;
        let task = self.progress.task(label, resp.content_length());
        let mut w = self.cache.writer()?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| http_err(upstream, url, e.to_string()))?;
            w.write(&chunk)?;
            task.inc(chunk.len() as u64);
            self.stats
                .downloaded_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        drop(task);
        let cache = self.cache.clone();
        let expected = expect.sha256.to_string();
        let committed = tokio::task::spawn_blocking(move || w.commit(&cache, Some(&expected)))
            .await
            .map_err(|e| Error::Usage(format!("internal: {e}")))?;
        match committed {
            Ok((_, size)) => {
                self.stats.downloads.fetch_add(1, Ordering::Relaxed);
                self.progress
                    .line(format!("fetched {label} ({})", human(size)));
                Ok(size)
            }
            Err(CommitError::Io(e)) => Err(*e),
            Err(CommitError::Mismatch { actual }) => Err(Error::Digest {
                file: label.to_string(),
                url: if url == upstream {
                    url.to_string()
                } else {
                    format!("{url} (mirror of {upstream})")
                },
                expected: expect.sha256.to_string(),
                expected_from: expect.from.to_string(),
                actual,
            }),
        }
    }

    async fn get(&self, upstream: &str, url: &str) -> Result<reqwest::Response> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| http_err(upstream, url, error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(http_err(upstream, url, format!("HTTP {}", resp.status())));
        }
        Ok(resp)
    }
}

fn http_err(upstream: &str, url: &str, reason: String) -> Error {
    let url = if url == upstream {
        url.to_string()
    } else {
        format!("{url} (mirror of {upstream})")
    };
    Error::Http { url, reason }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub fn human(n: u64) -> String {
    humansize::format_size(n, humansize::BINARY)
}
