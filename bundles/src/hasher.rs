//! sha256 of entry content on a thread of its own, so hashing a decoded
//! buffer runs beside the sink copying and writing the same bytes instead of
//! before it. The queue is short: the hasher lags the sink by a few reads,
//! and the buffers it still holds count against the decoder's budget.

use crate::decode::SharedChunk;
use crate::{Error, Result};
use crossbeam_channel::{bounded, Sender};
use sha2::{Digest, Sha256};
use std::thread::JoinHandle;

/// Reads (each at most the sink's buffer size) queued ahead of the hasher.
const QUEUE: usize = 4;

enum Job {
    Data(SharedChunk),
    /// Reply with the digest of everything since the last Finish, and reset.
    Finish(Sender<[u8; 32]>),
}

pub struct HashThread {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl HashThread {
    /// `recycle` takes back decode buffers the hasher is the last to read.
    pub fn start(recycle: Option<Sender<Vec<u8>>>) -> Self {
        let (tx, rx) = bounded::<Job>(QUEUE);
        let thread = std::thread::spawn(move || {
            let mut hash = Sha256::new();
            for job in rx {
                match job {
                    Job::Data(chunk) => {
                        hash.update(chunk.bytes());
                        chunk.release(recycle.as_ref());
                    }
                    Job::Finish(reply) => {
                        let _ = reply.send(hash.finalize_reset().into());
                    }
                }
            }
        });
        HashThread {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| Error::Invalid("sha256 thread stopped unexpectedly".into()))
    }

    /// Hashes `chunk` next (in the order of calls).
    pub fn update(&self, chunk: SharedChunk) -> Result<()> {
        self.send(Job::Data(chunk))
    }

    /// The hex digest of every chunk since the previous `finish`.
    pub fn finish(&self) -> Result<String> {
        let (tx, rx) = bounded(1);
        self.send(Job::Finish(tx))?;
        let digest = rx
            .recv()
            .map_err(|_| Error::Invalid("sha256 thread stopped unexpectedly".into()))?;
        Ok(hex::encode(digest))
    }
}

impl Drop for HashThread {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
